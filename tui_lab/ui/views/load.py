"""Views of the load experiments' results (``tui_lab.lab.load``): one load, and a load sweep.

Each table names its throughput: "window tok/s" is Σ output tokens / (last token − first send) over the
measured window (what ``vllm bench serve`` calls output throughput); "mean/run tok/s" the mean of each
run's own rate. Client queue time (waiting for a slot before the send) has its own column, never inside TTFT.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tui_lab.lab.load import THROUGHPUT_NOTE, LoadRun, LoadSweepResult
from tui_lab.metrics import Percentiles
from tui_lab.ui.theme import format_rate, format_seconds
from tui_lab.ui.views.registry import renders


def _pct(p: Percentiles, q: int) -> str:
    value = p.p50 if q == 50 else p.p90
    return format_seconds(value) if value is not None else p.label(q)


@renders(LoadRun)
def view_load_run(result: LoadRun, width: int) -> RenderableType:
    """Latency percentiles, client queue time and window throughput of one load."""
    s = result.run.summary()
    table = Table(title=f"{result.plan.label} · {result.plan.num_requests} requests", title_justify="left",
                  header_style="bold")
    for name in ("metric", "p50", "p90", "n"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for name, p in (("TTFT (from the send)", s.ttft_s), ("TPOT", s.tpot_s), ("ITL", s.itl_s), ("E2E", s.e2e_s),
                    ("client queue time", result.client_queue_s)):
        table.add_row(name, _pct(p, 50), _pct(p, 90), str(p.n))
    lines = [Text.assemble(("window output throughput ", "bold"), format_rate(result.window_output_tokens_per_s),
                           f" · at most {result.max_in_flight} in flight")]
    if result.cold is not None:
        cold = format_seconds(result.cold.ttft_s)
        lines.append(Text(f"cold request (sent alone first, not in the table): TTFT {cold}", style="dim"))
    if result.run.partial:
        lines.append(Text(f"partial: {result.run.error or 'stopped before every request finished'}", style="yellow"))
    return Group(table, *lines)


@renders(LoadSweepResult)
def view_load_sweep(result: LoadSweepResult, width: int) -> RenderableType:
    """One row per concurrency or rate, then the knee, the budget pick and the cold request."""
    table = Table(header_style="bold")
    for name in ("config", "TTFT p50", "TPOT p50", "E2E p50", "queue p50", "window tok/s", "mean/run tok/s"):
        table.add_column(name, justify="left" if name == "config" else "right")
    for p in result.points:
        sp = p.point
        if sp.status in ("error", "skipped"):
            table.add_row(sp.label, Text(sp.error or sp.status, style="red"), "", "", "", "", "")
            continue
        label = sp.label + (" (partial)" if sp.partial else "")
        table.add_row(label, _pct(sp.ttft_s, 50), _pct(sp.tpot_s, 50), _pct(sp.e2e_s, 50), _pct(p.client_queue_s, 50),
                      format_rate(p.window_output_tokens_per_s), format_rate(p.mean_run_output_tokens_per_s))
    notes = [result.knee_note(), result.budget_note(), result.cold_note(), THROUGHPUT_NOTE, *result.messages]
    return Group(table, *[Text(n, style="dim") for n in notes])
