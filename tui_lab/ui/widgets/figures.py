"""The live figures: state, elapsed, tokens, tokens/s and requests done, then the p50/p90 line.

The figures break between whole items (never inside one) to fit the panel's width, and the view is as tall
as its lines: the p50/p90 line is never pushed out of sight by a long first line.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui_lab.formatting import MISSING, rate, seconds
from tui_lab.metrics import Percentiles
from tui_lab.metrics.percentiles import MIN_SAMPLES_P90
from tui_lab.ui.live import LiveFigures
from tui_lab.views.style import PARTIAL_STYLE

SEPARATOR = " · "


def pct(p: Percentiles) -> str:
    """'p50/p90'; a tail that needs more samples shows as 'n<5' (percentiles.MIN_SAMPLES_P90)."""
    p90 = seconds(p.p90) if p.p90 is not None else (MISSING if p.n == 0 else f"n<{MIN_SAMPLES_P90}")
    return f"{seconds(p.p50)}/{p90}"


def _fold(items: list[Text], width: int) -> list[Text]:
    """``items`` joined by " · " into lines of at most ``width`` cells, breaking only between items."""
    lines: list[Text] = []
    for item in items:
        if lines and lines[-1].cell_len + len(SEPARATOR) + item.cell_len <= width:
            lines[-1].append(SEPARATOR)
            lines[-1].append_text(item)
        else:
            lines.append(item.copy())
    return lines


def render_figures(fig: LiveFigures | None, state: str, width: int = 80) -> Text:
    """The figures in lines of at most ``width`` cells: the run's progress, then the p50/p90 latencies."""
    if fig is None:
        return Text("\n".join(line.plain for line in _fold(
            [Text("elapsed —"), Text("tokens 0/0"), Text("— tok/s")], width)), style="dim")
    head = Text(f"{state:<9}", PARTIAL_STYLE if state in ("stopped", "partial", "failed") else "bold")
    head.append(f" {seconds(fig.elapsed_s):>8}")
    progress = [head, Text(f"tokens {fig.tokens_done}/{fig.tokens_total}"),
                Text(f"{rate(fig.system_tokens_per_s)} (system)"), Text(f"done {fig.finished}/{fig.requests}")]
    latency = [Text.assemble(("p50/p90", "dim"), f" TTFT {pct(fig.ttft)}"), Text(f"ITL {pct(fig.itl)}"),
               Text(f"TPOT {pct(fig.tpot)}")]
    return Text("\n").join([*_fold(progress, width), *_fold(latency, width)])


class FiguresView(Static):
    """Live figures of the run in progress (redrawn ≤ 4 Hz), as tall as its lines at the panel's width."""

    DEFAULT_CSS = """
    FiguresView {
        height: 2;
    }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._last: tuple[LiveFigures | None, str] = (None, "idle")

    def show(self, fig: LiveFigures | None, state: str) -> None:
        """Redraw; a layout pass only when the number of lines changes."""
        self._last = (fig, state)
        text = render_figures(fig, state, max(20, self.content_region.width or 80))
        lines = len(text.plain.split("\n"))
        height = self.styles.height
        if height is None or height.value != lines:
            self.styles.height = lines
            self.update(text)
        else:
            self.update(text, layout=False)

    def on_resize(self) -> None:
        """Fold the figures again for the new width."""
        self.show(*self._last)
