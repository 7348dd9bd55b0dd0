"""Views of the serving experiments' results (``tui_lab.lab.serving``): tables with bars, laid out for a width.

Each view takes the result (the dataclass, or its ``to_dict()`` form read back from a saved file).
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tui_lab.formatting import blocks, milliseconds, percent, rate, seconds
from tui_lab.views.fit import bar_cells
from tui_lab.views.style import TTFT_STYLE

WAIT_STYLE = "yellow"
DECODE_STYLE = "green"
NOTE_STYLE = "bold"
MAX_ROWS = 64
"""Per-request rows drawn at most (the result keeps them all)."""


LANE_WIDTH = 20
"""Cells of a per-request timeline; the panel is ~80-90 columns wide, so tables stay compact."""
IN_TABLE_BAR = 12

SHORT_MODES = {
    "static_hf": "static HF",
    "static_vllm": "static vLLM",
    "continuous_vllm": "continuous vLLM",
}


def _data(result: Any) -> dict:
    to_dict = getattr(result, "to_dict", None)
    data = to_dict() if callable(to_dict) else result
    if not isinstance(data, dict):
        raise TypeError(f"a serving result is a dataclass with to_dict() or a dict, not {type(data).__name__}")
    return data


def _table(title: str) -> Table:
    return Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, expand=False,
                 title_justify="left")


def _bar(value: float | None, scale: float, style: str, width: int = IN_TABLE_BAR) -> Text:
    return Text(blocks(value, scale, width), style)


def _p(stats: dict | None, key: str) -> float | None:
    return None if not stats else stats.get(key)


def _timeline(wait: float | None, first: float | None, end: float | None, scale: float,
              width: int = LANE_WIDTH) -> Text:
    """One request on a shared time axis: waiting ░, until its first token █ (magenta), decoding █ (green)."""
    text = Text()
    if end is None or scale <= 0:
        return text

    def cells(t: float | None) -> int:
        return 0 if t is None else max(0, min(width, round(t / scale * width)))

    w, f, e = cells(wait), cells(first), cells(end)
    f = max(f, w)
    e = max(e, f + 1)
    text.append("░" * w, WAIT_STYLE)
    text.append("█" * (f - w), TTFT_STYLE)
    text.append("█" * min(width - f, e - f), DECODE_STYLE)
    return text


def _legend(wait: str) -> Text:
    text = Text("░", WAIT_STYLE)
    text.append(f" {wait}  ")
    text.append("█", TTFT_STYLE)
    text.append(" until the first token  ")
    text.append("█", DECODE_STYLE)
    text.append(" decode")
    return text


def render_graphs(result: Any, width: int | None = None) -> RenderableType:
    """Decode step times eager vs CUDA graphs, per mode and per run, sized to ``width`` cells."""
    data = _data(result)
    modes = data.get("modes", [])
    scale = max((r.get("step_ms_p50") or 0.0 for m in modes for r in m.get("runs", [])), default=0.0)

    def build(cells: int) -> Table:
        table = _table(f"decode step: eager vs CUDA graphs · batch {data.get('batch_size')}, "
                       f"{data.get('max_new_tokens')} tokens")
        for col in ("mode", "run", "step p50", "", "p90", "tok/s", "busy"):
            table.add_column(col, no_wrap=True)
        for m in modes:
            if not m.get("available", True):
                table.add_row(m["label"], "—", Text(f"not run: {m.get('reason')}", "yellow"), "", "", "", "")
                continue
            style = "green" if m.get("cuda_graphs") else "cyan"
            for r in m.get("runs", []):
                table.add_row(m["label"], str(r["run_index"]), milliseconds(r.get("step_ms_p50")),
                              _bar(r.get("step_ms_p50"), scale, style, cells), "", rate(r.get("tokens_per_s")), "")
            steps = m.get("step_ms") or {}
            table.add_row(Text(m["label"], "bold"), "all", Text(milliseconds(steps.get("p50")), "bold"),
                          _bar(steps.get("p50"), scale, "bold " + style, cells), milliseconds(steps.get("p90")),
                          Text(rate(m.get("tokens_per_s")), "bold"), percent(m.get("gpu_busy_pct")))
            if m.get("reason"):
                table.add_row("", "", Text(str(m["reason"]), "red"), "", "", "", "")
        return table

    cells = IN_TABLE_BAR if width is None else bar_cells(build, width, IN_TABLE_BAR)
    caption = Text("busy: share of the time the GPU was running kernels", "dim")
    return Group(build(cells), caption, Text(data.get("note", ""), NOTE_STYLE))


def render_prefix(result: Any, width: int | None = None) -> RenderableType:
    """TTFT with the prefix cache off and on, with vLLM's own prefill time, sized to ``width`` cells."""
    data = _data(result)
    modes = data.get("modes", [])
    scale = max((_p(m.get("ttft_s"), "p50") or 0.0 for m in modes), default=0.0)
    def build(cells: int) -> Table:
        table = _table(f"prefix caching · {data.get('num_requests')} requests share "
                       f"{data.get('shared_prefix_words')} words, {data.get('max_new_tokens')} tokens each")
        for col in ("cache", "1st req", "TTFT p50", "", "p90", "prefill", "TPOT p50"):
            table.add_column(col, no_wrap=True)
        for m in modes:
            name = "on" if m.get("enable_prefix_caching") else "off"
            if not m.get("available", True):
                table.add_row(name, Text(f"not run: {m.get('reason')}", "yellow"), "", "", "", "", "")
                continue
            style = "green" if m.get("enable_prefix_caching") else "cyan"
            ttft = m.get("ttft_s") or {}
            table.add_row(name, seconds(m.get("first_request_ttft_s")),
                          Text(seconds(ttft.get("p50")), "bold"), _bar(ttft.get("p50"), scale, style, cells),
                          seconds(ttft.get("p90")), seconds(_p(m.get("engine_prefill_s"), "p50")),
                          seconds(_p(m.get("tpot_s"), "p50")))
        return table

    table = build(IN_TABLE_BAR if width is None else bar_cells(build, width, IN_TABLE_BAR))
    caption = Text("1st req: the request that fills the cache (not in the percentiles) · prefill: vLLM's own "
                   "scheduled → first token", "dim")
    return Group(table, caption, Text(data.get("note", ""), NOTE_STYLE))


def render_queueing(result: Any) -> RenderableType:
    """Each request on one time axis (submission order): waiting, prefill, decode — the waves show."""
    data = _data(result)
    rows = data.get("requests", [])
    scale = max((r.get("e2e_s") or 0.0 for r in rows), default=0.0)
    table = _table(f"queueing · {data.get('num_requests')} requests at once, max_num_seqs="
                   f"{data.get('max_num_seqs')}, {data.get('max_new_tokens')} tokens each")
    for col in ("#", "wave", "queued", "TTFT", "E2E", "timeline"):
        table.add_column(col, no_wrap=True)
    for r in rows[:MAX_ROWS]:
        queued = r.get("queued_s")
        table.add_row(str(r["index"]), "—" if r.get("wave") is None else str(r["wave"]), seconds(queued),
                      seconds(r.get("ttft_s")), seconds(r.get("e2e_s")),
                      _timeline(queued, r.get("ttft_s"), r.get("e2e_s"), scale))
    parts: list[RenderableType] = [table]
    if rows:
        parts.append(_legend("waiting for a slot"))
    if len(rows) > MAX_ROWS:
        parts.append(Text(f"… {len(rows) - MAX_ROWS} more requests in the saved result"))
    summary = data.get("summary") or {}
    if summary:
        ttft = summary.get("ttft_s") or {}
        line = Text()
        line.append(f"TTFT p50 {seconds(ttft.get('p50'))} · p90 {seconds(ttft.get('p90'))} · ",
                    "bold")
        line.append(f"throughput {rate(summary.get('output_tokens_per_s'))}")
        parts.append(line)
    parts.append(Text(data.get("note", ""), NOTE_STYLE))
    return Group(*parts)


def _wait(row: dict) -> float | None:
    if row.get("wait_s") is None and row.get("engine_queued_s") is None:
        return None
    return (row.get("wait_s") or 0.0) + (row.get("engine_queued_s") or 0.0)


def _engine_of(mode: dict) -> str:
    engine = mode.get("engine") or {}
    return str(engine.get("engine") or mode.get("key", "?").split("_")[-1])


def render_batching(result: Any, width: int | None = None) -> RenderableType:
    """Static vs continuous batching: totals per mode, then every request on a shared time axis
    (its lanes sized to ``width`` cells)."""
    data = _data(result)
    modes = data.get("modes", [])
    table = _table(f"static vs continuous batching · {len(data.get('lengths', []))} replies of "
                   f"{min(data.get('lengths') or [0])}–{max(data.get('lengths') or [0])} tokens, "
                   f"{data.get('slots')} slots")
    for col in ("mode", "wall", "tok/s", "E2E p50", "p90", "steps", "idle"):
        table.add_column(col, no_wrap=True)
    for m in modes:
        name = SHORT_MODES.get(m.get("key", ""), m.get("label", "?"))
        if not m.get("available", True):
            table.add_row(name, Text(f"not run: {m.get('reason')}", "yellow"), "", "", "", "", "")
            continue
        e2e = m.get("e2e_s") or {}
        table.add_row(name, Text(seconds(m.get("wall_s")), "bold"), rate(m.get("tokens_per_s")),
                      seconds(e2e.get("p50")), seconds(e2e.get("p90")),
                      "—" if m.get("batch_steps") is None else str(m["batch_steps"]),
                      "—" if m.get("padded_steps") is None else str(m["padded_steps"]))
    caption = Text("HF: the transformers engine · steps: decode steps the static batches ran (each as long as "
                   "its longest reply) · idle: sequence-steps whose slot was held by a finished reply", "dim")
    # Modes on the same engine share a time axis (the policy is what differs); engines of very different
    # speed get their own, or the fast one's lanes shrink to a cell.
    scales: dict[str, float] = {}
    for m in modes:
        key = _engine_of(m)
        longest = max((r.get("e2e_s") or 0.0 for r in m.get("requests", [])), default=0.0)
        scales[key] = max(scales.get(key, 0.0), longest)
    def build(cells: int) -> Table:
        lanes = _table("each request, from the moment all arrived (one time axis per engine)")
        for col in ("mode", "req", "tokens", "E2E", "timeline"):
            lanes.add_column(col, no_wrap=True)
        for m in modes:
            name = SHORT_MODES.get(m.get("key", ""), m.get("key", "?"))
            for r in m.get("requests", [])[:MAX_ROWS]:
                lanes.add_row(name, r["request_id"], f"{r.get('output_tokens')}/{r.get('target_tokens')}",
                              seconds(r.get("e2e_s")),
                              _timeline(_wait(r), r.get("ttft_s"), r.get("e2e_s"), scales.get(_engine_of(m), 0.0),
                                        cells))
        return lanes

    lanes = build(LANE_WIDTH if width is None else bar_cells(build, width, LANE_WIDTH, least=8))
    return Group(table, caption, lanes, _legend("waiting (for its batch, or for a free slot)"),
                 Text(data.get("note", ""), NOTE_STYLE))
