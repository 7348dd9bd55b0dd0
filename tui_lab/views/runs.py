"""Views of a run (``RunResult``) and of a sweep (``SweepResult``): the figures, then what they mean."""

from __future__ import annotations

from collections.abc import Callable

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tui_lab.formatting import MISSING, rate, seconds
from tui_lab.lab.run import RunResult
from tui_lab.lab.sweep import SweepPoint, SweepResult
from tui_lab.metrics import Percentiles
from tui_lab.views.style import ERROR_STYLE, NOTE_STYLE, PARTIAL_STYLE

SWEEP_THROUGHPUT_NOTE = ("mean/run tok/s = mean of each run's output throughput; window tok/s = Σ output tokens / "
                         "(last token − first send) over all measured runs of the point")


def cell(p: Percentiles, q: int) -> str:
    """Percentile ``q`` of ``p`` in seconds, or why there is none ("n too small")."""
    value = {50: p.p50, 90: p.p90, 99: p.p99}[q]
    return seconds(value) if value is not None else p.label(q)


def _table(title: str | None = None) -> Table:
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)


def run_view(result: RunResult, width: int) -> RenderableType:
    """TTFT, E2E, TPOT and ITL percentiles with their n, then throughput and per-user speed."""
    s = result.summary()
    table = _table()
    for name in ("metric", "p50", "p90", "p99", "n"):
        table.add_column(name, justify="left" if name == "metric" else "right", no_wrap=True)
    for name, p in (("TTFT", s.ttft_s), ("E2E", s.e2e_s), ("TPOT", s.tpot_s), ("ITL", s.itl_s)):
        table.add_row(name, cell(p, 50), cell(p, 90), cell(p, 99), str(p.n))
    plural = "s" if s.requests != 1 else ""
    lines: list[RenderableType] = [table, Text.assemble(
        ("output throughput ", "bold"), rate(s.output_tokens_per_s),
        f" ({s.output_tokens} tokens from {s.requests} request{plural}, wall {seconds(result.wall_s)})")]
    if s.decode_tokens_per_s.p50 is not None:
        lines.append(Text(f"per-user decode speed (1/TPOT), p50: {rate(s.decode_tokens_per_s.p50)}"))
    setup = result.setup_note()
    if setup:
        lines.append(Text(setup, NOTE_STYLE))
    if s.cut:
        lines.append(Text(f"{s.cut} request{'s' if s.cut != 1 else ''} cut mid-stream (stopped or failed): their "
                          "tokens count in the throughput, their latency does not", PARTIAL_STYLE))
    if result.partial:
        reason = result.error or "not every request finished"
        lines.append(Text(f"PARTIAL RESULTS ({reason}): the figures cover the tokens received so far", PARTIAL_STYLE))
    return Group(*lines)


SWEEP_COLUMNS = ("config", "TTFT p50", "TTFT p90", "E2E p50", "E2E p90", "TPOT p50", "TPOT p90", "mean/run tok/s",
                 "window tok/s", "")
"""The columns of a sweep's table (the CLI prints its rows as the points come, with ``sweep_cells``)."""


def point_row(point: SweepPoint, figures: Callable[[SweepPoint], list[str]]) -> list[str]:
    """A table row for a point of a sweep (of batch sizes or of loads): its label, its ``figures`` (dashes
    for a point that failed or was skipped, with why in the last column) and whether it is partial."""
    if point.status in ("error", "skipped"):
        return [point.label] + [MISSING] * 8 + [point.error or point.status]
    return [point.label, *figures(point), "partial" if point.partial else ""]


def sweep_cells(point: SweepPoint) -> list[str]:
    """One row of a sweep's table: the point's label, latency percentiles, both throughputs and its state."""
    return point_row(point, lambda p: [
        cell(p.ttft_s, 50), cell(p.ttft_s, 90), cell(p.e2e_s, 50), cell(p.e2e_s, 90), cell(p.tpot_s, 50),
        cell(p.tpot_s, 90), rate(p.output_tokens_per_s, ""), rate(p.window_output_tokens_per_s, "")])


def sweep_view(result: SweepResult, width: int) -> RenderableType:
    """One row per point, then the knee, the budget pick and the notes."""
    table = _table(f"{result.plan.kind} sweep · {result.plan.runs} runs after {result.plan.warmup} warm-up per point")
    for i, name in enumerate(SWEEP_COLUMNS):
        table.add_column(name, justify="left" if i in (0, len(SWEEP_COLUMNS) - 1) else "right", no_wrap=i == 0)
    for point in result.points:
        cells = sweep_cells(point)
        style = ERROR_STYLE if point.status in ("error", "skipped") else PARTIAL_STYLE if point.partial else ""
        table.add_row(*cells, style=style)
    notes = [SWEEP_THROUGHPUT_NOTE, result.knee_note(), result.budget_note(), *result.messages]
    return Group(table, *[Text(n, NOTE_STYLE) for n in notes])


VIEWS: dict[type, Callable[..., RenderableType]] = {
    RunResult: run_view,
    SweepResult: sweep_view,
}
"""The result types this module draws, and the view of each (``tui_lab.views.view_for`` looks here)."""
