"""The top line: what is loaded, the run settings, the experiment in the panel and what the lab is doing."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui_lab.params import shown
from tui_lab.ui.settings import LabSettings
from tui_lab.ui.theme import NARROW_WIDTH


class StatusLine(Static):
    """One fixed line, redrawn when the settings, the experiment or the state change (values as typed)."""

    def show(self, settings: LabSettings, experiment: str, state: str) -> None:
        """Redraw (narrow terminals drop the title)."""
        s = settings
        mode = "greedy" if s.greedy else f"T={shown(s.temperature)} top-p={shown(s.top_p)} top-k={s.top_k}"
        status = Text()
        if self.app.size.width >= NARROW_WIDTH:
            status.append("inference-lab · ", "bold")
        status.append(f"{s.label()} · batch {s.batch_size} · {s.max_new_tokens} tok · {mode} · ")
        status.append(experiment, "bold cyan")
        status.append(f" · {state}")
        self.update(status, layout=False)  # one fixed line: no layout pass
