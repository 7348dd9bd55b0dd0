"""The live figures line: elapsed, tokens/s, TTFT, ITL and TPOT percentiles, tokens done."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui_lab.formatting import MISSING, rate, seconds
from tui_lab.metrics import Percentiles
from tui_lab.metrics.percentiles import MIN_SAMPLES_P90
from tui_lab.ui.live import LiveFigures
from tui_lab.views.style import PARTIAL_STYLE


def pct(p: Percentiles) -> str:
    """'p50/p90'; a tail that needs more samples shows as 'n<5' (percentiles.MIN_SAMPLES_P90)."""
    p90 = seconds(p.p90) if p.p90 is not None else (MISSING if p.n == 0 else f"n<{MIN_SAMPLES_P90}")
    return f"{seconds(p.p50)}/{p90}"


def render_figures(fig: LiveFigures | None, state: str) -> Text:
    """Two short lines that fit 80 columns."""
    if fig is None:
        return Text("elapsed —  ·  tokens 0/0  ·  — tok/s", style="dim")
    out = Text()
    out.append(f"{state:<9}", PARTIAL_STYLE if state in ("stopped", "partial", "failed") else "bold")
    out.append(f" {seconds(fig.elapsed_s):>8} · tokens {fig.tokens_done}/{fig.tokens_total}")
    out.append(f" · {rate(fig.system_tokens_per_s)} (system) · done {fig.finished}/{fig.requests}\n")
    out.append("p50/p90 ", "dim")
    out.append(f"TTFT {pct(fig.ttft)} · ITL {pct(fig.itl)} · TPOT {pct(fig.tpot)}")
    return out


class FiguresView(Static):
    """Live figures of the run in progress (redrawn ≤ 4 Hz)."""

    def show(self, fig: LiveFigures | None, state: str) -> None:
        """Redraw."""
        self.update(render_figures(fig, state), layout=False)  # a fixed two lines: no layout pass
