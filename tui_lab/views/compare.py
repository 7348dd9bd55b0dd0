"""Views of the lesson 01 comparisons: CPU against GPU, and decoding without and with a KV cache."""

from __future__ import annotations

from collections.abc import Callable

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tui_lab.engines.base import is_cuda
from tui_lab.formatting import blocks, rate, ratio, seconds
from tui_lab.lab.compare import DeviceComparison, KVCacheComparison
from tui_lab.views.fit import bar_cells, natural_width
from tui_lab.views.style import ERROR_STYLE, NOTE_STYLE, PARTIAL_STYLE, TTFT_STYLE

BAR_WIDTH = 24
"""Cells of the longest bar; the others scale to it."""
LEAST_BAR = 3
"""Fewer cells than this say nothing: the bar column goes, so the figures keep their room."""


def _sized_bar(value: float | None, scale: float, style: str, cells: int) -> Text:
    """A bar of at most ``cells`` cells for ``value`` on a ``scale`` that fills them."""
    return Text(blocks(value, scale, cells), style)


def device_view(result: DeviceComparison, width: int) -> RenderableType:
    """Per-run E2E bars for each device, with the median and spread, sized to ``width`` cells.

    The figures keep their room first: where a bar of ``LEAST_BAR`` cells does not fit, the bar column goes,
    and then the space between columns narrows. A device that did not run takes one short row; why is said
    under the table, where it can wrap.
    """
    devices = result.devices
    scale = max((r.e2e_s or 0.0 for d in devices for r in d.runs), default=0.0)
    room = [1]

    def build(cells: int) -> Table:
        table = Table(title="CPU vs GPU · E2E per run (same prompt, greedy)", expand=False,
                      box=box.SIMPLE_HEAD, padding=(0, room[0]), pad_edge=room[0] > 0)
        columns = ("device", "run", "E2E", *([""] if cells else []), "tok/s", "spread")
        for col in columns:
            table.add_column(col, no_wrap=True)

        def row(*cells_: str | Text, bar: Text | None = None) -> None:
            first, rest = cells_[:3], cells_[3:]
            table.add_row(*first, *([bar or ""] if cells else []), *rest)

        for d in devices:
            if not d.available:
                row(d.device, "—", Text("not run", "yellow"), "", "")
                continue
            style = "green" if is_cuda(d.device) else "cyan"
            for r in d.runs:
                row(d.device, str(r.run_index), seconds(r.e2e_s), rate(r.tokens_per_s, ""), "",
                    bar=_sized_bar(r.e2e_s, scale, style, cells))
            row(Text(d.device, "bold"), "median", Text(seconds(d.median_e2e_s), "bold"),
                Text(rate(d.median_tokens_per_s, ""), "bold"),
                f"{d.spread_pct:.0f}%" if d.spread_pct is not None else "—",
                bar=_sized_bar(d.median_e2e_s, scale, "bold " + style, cells))
        return table

    cells = bar_cells(build, width, BAR_WIDTH, LEAST_BAR)
    if natural_width(build(cells)) > width:
        cells = 0
        if natural_width(build(cells)) > width:
            room[0] = 0
    foot = Text()
    for d in devices:
        if not d.available and d.reason and d.reason not in getattr(result, "note", ""):
            foot.append(f"{d.device} not run: {d.reason}\n", "yellow")
    foot.append(getattr(result, "note", ""), "bold")
    return Group(build(cells), foot)


def kv_view(result: KVCacheComparison, width: int) -> RenderableType:
    """Step times of the naive loop against the KV-cache loop (the last run's), every run's E2E, and the ratio
    with its spread — or, when the comparison was cut short, that nothing is compared."""
    modes = result.modes
    scale = max((t for m in modes for t in m.step_times_s[1:]), default=0.0)

    def build(cells: int) -> Table:
        table = Table(title=f"without and with a KV cache ({result.runs} runs each, interleaved)",
                      box=box.SIMPLE_HEAD, padding=(0, 1))
        for col in ("mode", "E2E median", "tok/s", "growth", "steps"):
            table.add_column(col, no_wrap=True)
        for m in modes:
            name = "no cache" if m.kv_cache is False else m.mode
            if m.error and not m.complete_runs:
                table.add_row(name, Text(m.error, ERROR_STYLE), "", "", "", "")
                continue
            found = m.e2e_spread
            e2e = seconds(m.e2e_s)
            if found is not None and found.n > 1:
                e2e += f" ±{50 * found.relative:.0f}%"  # half the range, around the median
            growth = m.growth()
            spark = Text()
            for t in m.step_times_s[1:][-cells:]:
                level = 0 if scale <= 0 else min(7, int(t / scale * 7))
                spark.append("▁▂▃▄▅▆▇█"[level], TTFT_STYLE if m.kv_cache is False else "green")
            table.add_row(name, e2e, rate(m.tokens_per_s), "—" if growth is None else ratio(growth), spark)
        return table

    cells = bar_cells(build, width, BAR_WIDTH)
    foot = Text()
    if any(m.kv_cache is False for m in modes):
        foot.append("no cache: every step recomputes the whole sequence (steps: the last run's, left to "
                    "right). ", NOTE_STYLE)
    measured = result.ratio
    style = "bold" if measured is not None and measured.measurable else PARTIAL_STYLE
    foot.append(result.note + ". ", style)
    if result.same_text is not None:
        foot.append("Same text from both loops." if result.same_text else "The texts differ (they should not).")
    return Group(build(cells), foot)


VIEWS: dict[type, Callable[..., RenderableType]] = {
    DeviceComparison: device_view,
    KVCacheComparison: kv_view,
}
"""The result types this module draws, and the view of each (``tui_lab.views.view_for`` looks here)."""
