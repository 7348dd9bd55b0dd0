"""Views of the load experiments' results (``tui_lab.lab.load``): one load, and a load sweep.

Each table names its throughput: "window tok/s" is Σ output tokens / (last token − first send) over the
measured window (what ``vllm bench serve`` calls output throughput); "mean/run tok/s" the mean of each
run's own rate. Client queue time (waiting for a slot before the send) has its own column, never inside TTFT.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tui_lab.formatting import rate, seconds
from tui_lab.lab.load import THROUGHPUT_NOTE, LoadPoint, LoadRun, LoadSweepResult
from tui_lab.views.runs import cell, point_row

LOAD_COLUMNS = ("config", "TTFT p50", "TTFT p90", "TPOT p50", "TPOT p90", "E2E p50", "queue p50", "window tok/s",
                "mean/run tok/s", "")
"""The columns of a load sweep's table (the CLI prints its rows as the points come, with ``load_cells``)."""


def load_cells(point: LoadPoint) -> list[str]:
    """One row of a load sweep's table."""
    return point_row(point.point, lambda p: [
        cell(p.ttft_s, 50), cell(p.ttft_s, 90), cell(p.tpot_s, 50), cell(p.tpot_s, 90), cell(p.e2e_s, 50),
        cell(point.client_queue_s, 50), rate(point.window_output_tokens_per_s, ""),
        rate(point.mean_run_output_tokens_per_s, "")])


SPLIT_NAMES = {"client_queue_s": "client queue", "to_engine_s": "to engine", "engine_queue_s": "engine queue",
               "to_engine_and_queue_s": "to engine + engine queue", "prefill_s": "prefill",
               "queue_and_prefill_s": "queue + prefill (one span from the client)"}


def ttft_split_line(split: dict[str, float]) -> Text | None:
    """"arrival → first token, median: client queue 1.2 s + to engine 3 ms + … = 1.4 s (client queue 82 %)"."""
    if not split.get("n"):
        return None
    parts = " + ".join(f"{name} {seconds(split[key])}" for key, name in SPLIT_NAMES.items() if key in split)
    return Text.assemble(("arrival → first token, medians: ", "bold"), parts,
                         f" (whole: {seconds(split.get('arrival_to_first_s'))}; client queue "
                         f"{split.get('client_queue_pct', 0.0):.0f} % of all of it)")


def view_load_run(result: LoadRun, width: int) -> RenderableType:
    """Latency percentiles, client queue time and window throughput of one load."""
    s = result.run.summary()
    table = Table(title=f"{result.plan.label} · {result.plan.num_requests} requests", title_justify="left",
                  header_style="bold")
    for name in ("metric", "p50", "p90", "n"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for name, p in (("TTFT (from the send)", s.ttft_s), ("TPOT", s.tpot_s), ("ITL", s.itl_s), ("E2E", s.e2e_s),
                    ("client queue time", result.client_queue_s)):
        table.add_row(name, cell(p, 50), cell(p, 90), str(p.n))
    lines = [Text.assemble(("window output throughput ", "bold"), rate(result.window_output_tokens_per_s),
                           f" · at most {result.max_in_flight} in flight")]
    split = ttft_split_line(result.ttft_split)
    if split:
        lines.append(split)
    if result.cold is not None:
        cold = seconds(result.cold.ttft_s)
        lines.append(Text(f"cold request (sent alone first, not in the table): TTFT {cold}", style="dim"))
    if result.cut:
        lines.append(Text(f"{result.cut} cut mid-stream: left out of the latency figures", style="yellow"))
    if result.input_note:
        lines.append(Text(result.input_note, style="dim"))
    if result.run.partial:
        lines.append(Text(f"partial: {result.run.error or 'stopped before every request finished'}", style="yellow"))
    return Group(table, *lines)


def view_load_sweep(result: LoadSweepResult, width: int) -> RenderableType:
    """One row per concurrency or rate, then the knee, the budget pick and the cold request."""
    table = Table(header_style="bold")
    for i, name in enumerate(LOAD_COLUMNS):
        table.add_column(name, justify="left" if i in (0, len(LOAD_COLUMNS) - 1) else "right")
    for point in result.points:
        style = "red" if point.point.status in ("error", "skipped") else "yellow" if point.point.partial else ""
        table.add_row(*load_cells(point), style=style)
    notes = [result.knee_note(), result.budget_note(), result.cold_note(), THROUGHPUT_NOTE, *result.messages]
    return Group(table, *[Text(n, style="dim") for n in notes])


VIEWS: dict[type, Callable[..., RenderableType]] = {
    LoadRun: view_load_run,
    LoadSweepResult: view_load_sweep,
}
"""The result types this module draws, and the view of each (``tui_lab.views.view_for`` looks here)."""
