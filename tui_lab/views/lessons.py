"""Views of the results of lessons 04 (one GPU or two), 05 and 06, laid out for about 70 columns."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tui_lab.formatting import fixed, seconds
from tui_lab.lab.memory import KvCapacityResult, PrecisionResult, PreemptionResult
from tui_lab.lab.tensor_parallel import TpResult
from tui_lab.lab.traffic import (
    AnswerLatencyResult,
    EnergyResult,
    InterferenceResult,
    LoadLoopResult,
    SpeculationResult,
    ToolMetricsResult,
)


def _table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], width: int) -> Table:
    table = Table(title=title, title_justify="left", expand=False, width=min(width, 72), pad_edge=False)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def _tail(figures: dict[str, object], key: str, needs: int) -> str:
    """A tail latency in seconds, or why there is none (the lab's rule: p90 from 5 samples, p99 from 100)."""
    value = figures.get(key)
    if isinstance(value, (int, float)):
        return seconds(value)
    return f"n too small ({figures.get('n', 0)} < {needs})"


def _note(text: str) -> list[Text]:
    return [Text(text, style="yellow")] if text else []


def precision_view(r: PrecisionResult, width: int) -> RenderableType:
    """Weight formats: GB and floor computed for the chosen architecture; the loaded engine's step measured."""
    rows = [(row.dtype, fixed(row.weight_gb), fixed(row.floor_ms, "{:.3f}"), fixed(row.measured_ms, "{:.3f}"))
            for row in r.rows]
    head = Text(f"Measured here: the loaded model on {r.engine} ({r.device}), batch 1: "
                f"{fixed(r.loaded_step_ms, '{:.2f}')} ms per step. The table is {r.model}: another model unless you "
                "loaded it, and its floors are computed.")
    title = f"{r.model} at {r.bandwidth_gbs:g} GB/s, batch 1: floors computed"
    return Group(head, _table(title, ("weights", "GB", "floor ms", "measured ms"), rows, width), *_note(r.note))


def kv_view(r: KvCapacityResult, width: int) -> RenderableType:
    """KV bytes per token by model and design, and the measured largest batch."""
    short = {"nemotron-nano-9b-v2": "nemotron-9b", "gemma-3-270m": "gemma-270m"}
    rows = [(f"{short.get(d['model'], d['model'])} {d['design'].replace('as shipped', 'shipped')}",
             str(d["kv_heads"]), fixed(d["bytes_per_token"] / 1024, "{:.1f}"),
             fixed(d["fixed_state_bytes"] / 2**20, "{:.0f}"), str(d["max_batch"])) for d in r.designs]
    title = f"KV cache at {r.context} tokens, {r.kv_dtype}, {r.free_gib:.0f} GiB card"
    lines: list[RenderableType] = [
             _table(title, ("model · design", "KV h", "KiB/tok", "state MiB", "max batch"), rows, width),
             Text(f"measured: {fixed(r.measured_max_batch, '{}')} sequences ({r.measured_how})")]
    if r.fp8_max_batch is not None:
        lines.append(Text(f"fp8 KV cache: {r.fp8_max_batch} sequences"))
    if r.throughput_tok_s:
        lines.append(Text("throughput: " + ", ".join(f"{k} {fixed(v, '{:.0f}')} tok/s"
                                                      for k, v in r.throughput_tok_s.items())))
    return Group(*lines, *_note(r.note))


def _spark(values: Sequence[float], width: int) -> str:
    bars = "▁▂▃▄▅▆▇█"
    if not values:
        return ""
    step = max(1, len(values) // max(1, width))
    vs = list(values)[::step][:width]
    top = max(vs) or 1
    return "".join(bars[min(7, int(v / top * 7))] for v in vs)


def preemption_view(r: PreemptionResult, width: int) -> RenderableType:
    """Running / waiting / KV usage over time, and the preemption total."""
    w = max(10, min(width, 72) - 12)
    cache = f" · KV cache {r.kv_capacity_tokens} tokens" if r.kv_capacity_tokens else ""
    lines = [Text(f"{r.num_requests} requests · counters: {r.source}{cache}")]
    series = (("running", [float(s["running"]) for s in r.samples]),
              ("waiting", [float(s["waiting"]) for s in r.samples]),
              ("KV use", [u for s in r.samples if (u := s["kv_usage"]) is not None]))
    for label, vals in series:
        if vals:
            lines.append(Text(f"{label:<9} {_spark(vals, w)} max {max(vals):g}"))
    lines.append(Text(f"preemptions: {fixed(r.preemptions, '{}', 'not counted')} · peak waiting {r.peak_waiting}"
                      f" · TTFT p90 {fixed((r.summary.get('ttft_s') or {}).get('p90'), '{:.3f}')} s"))
    return Group(*lines, *_note(r.note))


def tp_view(r: TpResult, width: int) -> RenderableType:
    """TP=1 vs TP=2: the modelled figures (and what they assume), then the measurements if any."""
    rows = [(f"TP={d['tp']} b={d['batch']}", fixed(d["weight_gib_per_gpu"], "{:.1f}"),
             fixed(d["memory_floor_ms"], "{:.2f}"), fixed(d["allreduce_ms"], "{:.2f}"),
             fixed(d["kv_room_gib_per_gpu"], "{:.0f}"), str(d["max_batch"]))
            for d in r.predicted]
    parts: list[RenderableType] = [
        _table(f"{r.model}, modelled: per GPU, per decode step", ("", "GiB w", "floor ms", "AR ms", "KV GiB", "max b"),
               rows, width),
        Text(f"modelled card: {r.card}", style="dim")]
    parts += [Text(f"assumed: {a}", style="dim") for a in r.assumptions]
    for m in r.measured:
        steps = ", ".join(f"b{b} {fixed(v, '{:.2f}')} ms" for b, v in m.step_ms.items())
        parts.append(Text(f"TP={m.tp} measured: {steps}; TTFT {fixed(m.ttft_ms, '{:.1f}')} ms; "
                          f"KV {fixed(m.kv_gib_per_gpu, '{:.0f}')} GiB/GPU"))
    how = ("measured" if r.source == "measured"
           else "modelled (memory floor + all-reduces), not measured")
    parts.append(Text(f"TP=2 / TP=1 step at batch 1: {fixed(r.tp2_over_tp1_batch1)}, {how}"))
    return Group(*parts, *_note(r.note))


def load_view(r: LoadLoopResult, width: int) -> RenderableType:
    """Little's law and coordinated omission."""
    lc = r.little or {}
    om = r.omission
    predicted = (f"L = {r.rate:g}/s × W" if r.mode == "open" else f"L = {r.concurrency} users")
    rows = [("λ measured (req/s)", fixed(lc.get("arrival_rate"))),
            ("W (s)", fixed(lc.get("mean_time_in_system_s"), "{:.3f}")),
            ("L measured (λ·W)", fixed(lc.get("mean_in_system"))),
            (f"predicted: {predicted}", fixed(lc.get("predicted_in_system"))),
            ("measured / predicted", fixed(lc.get("ratio"))),
            ("most in system", str(r.max_in_system)),
            ("E2E p90 from send", _tail(om, "measured_p90_s", 5)),
            ("E2E p90 from schedule", _tail(om, "intended_p90_s", 5)),
            ("E2E p99 from send", _tail(om, "measured_p99_s", 100)),
            ("E2E p99 from schedule", _tail(om, "intended_p99_s", 100)),
            ("mean send delay (s)", fixed(om.get("mean_send_delay_s"), "{:.3f}"))]
    title = f"{r.mode} loop · concurrency {r.concurrency} · schedule {r.rate:g} req/s"
    return Group(_table(title, ("", "value"), rows, width), *_note(r.note))


def interference_view(r: InterferenceResult, width: int) -> RenderableType:
    """Running streams' ITL and the long prompt's TTFT per configuration."""
    rows = [(row.label, fixed(row.itl_p50_ms, "{:.1f}"), fixed(row.itl_p99_ms, "{:.1f}", "n < 100"),
             fixed(row.itl_max_ms, "{:.1f}"), fixed(row.long_ttft_ms, "{:.0f}")) for row in r.rows]
    title = f"{r.streams} streams + a {r.long_prompt_words}-word prompt (ms)"
    return Group(_table(title, ("", "ITL p50", "ITL p99", "ITL max", "long TTFT"), rows, width), *_note(r.note))


def speculation_view(r: SpeculationResult, width: int) -> RenderableType:
    """Speculation off/on × repetitive/fresh: what the stream carried, and what vLLM's counters say."""
    def drafted(row: Any) -> str:
        return f"{row.drafted_steps}/{row.steps}" if row.drafted_steps is not None and row.steps else "—"

    rows = [(f"{row.speculation.removeprefix('n-gram ')} · {row.text}", fixed(row.tpot_ms, "{:.1f}"),
             fixed(row.tokens_per_event), fixed(row.tokens_per_step), drafted(row), fixed(row.acceptance, "{:.0%}"),
             fixed(row.mean_acceptance_length)) for row in r.rows]
    head = _table(f"n-gram speculation, k={r.k} (TPOT in ms)",
                  ("", "TPOT", "tok/chunk", "tok/step", "drafted", "accept", "acc. len"), rows, width)
    legend = [Text(line, style="dim") for line in (
        "tok/chunk: the reply's tokens over the chunks the stream carried (measured at the client).",
        "tok/step: the reply's tokens over every engine step, drafted or not (vLLM's step counter).",
        "drafted: steps in which the n-gram lookup found a draft, of all steps; the others make one token.",
        "accept: accepted draft tokens / drafted tokens. acc. len: vLLM's mean acceptance length, "
        "1 + accepted / drafts, over drafted steps only, so it is above tok/step whenever some steps had no draft.",
    )]
    speed = Text(f"speed-up (TPOT off / on): repetitive {fixed(r.speedup_repetitive, '{:.2f}×')}, "
                 f"fresh {fixed(r.speedup_fresh, '{:.2f}×')}")
    return Group(head, speed, *legend, *_note(r.note))


def tools_view(r: ToolMetricsResult, width: int) -> RenderableType:
    """Each tool's ITL / TPOT / throughput on the same trace."""
    rows = [(d["tool"], fixed(d["itl_mean_ms"], "{:.2f}"), fixed(d["itl_p99_ms"], "{:.2f}", "n < 100"),
             fixed(d["tpot_mean_ms"], "{:.2f}"), fixed(d["throughput_tok_s"], "{:.0f}")) for d in r.rows]
    defs = [Text(f"{d['tool']}: {d['definition']}", style="dim") for d in r.rows]
    return Group(_table(f"One trace, five definitions (lab TPOT {r.weighting}-weighted)",
                        ("tool", "ITL ms", "ITL p99", "TPOT ms", "tok/s"), rows, width), *defs)


def energy_view(r: EnergyResult, width: int) -> RenderableType:
    """Throughput, TPOT, J/token and cost per million per batch size."""
    rows = [(str(p.batch_size), fixed(p.tokens_per_s, "{:.0f}"), fixed(p.tpot_ms), fixed(p.joules_per_token, "{:.3f}"),
             fixed(p.cost_per_million, "{:.2f}")) for p in r.points]
    title = f"Energy and cost at {r.price_per_hour:g}/hour ({r.device})"
    return Group(_table(title, ("batch", "tok/s", "TPOT ms", "J/token", "per 1M tok"), rows, width),
                 Text(f"energy: {r.energy_source}", style="dim"), *_note(r.note))


def answer_view(r: AnswerLatencyResult, width: int) -> RenderableType:
    """TTFT vs time to first answer token."""
    rows = [(q["request_id"], fixed(q["ttft_ms"], "{:.0f}"), fixed(q["ttfa_ms"], "{:.0f}"), str(q["think_tokens"]))
            for q in r.requests[:16]]
    return Group(_table("First token vs first answer token (ms)", ("request", "TTFT", "first answer", "think tok"),
                        rows, width), *_note(r.note))


VIEWS: dict[type, Callable[..., RenderableType]] = {
    PrecisionResult: precision_view,
    KvCapacityResult: kv_view,
    PreemptionResult: preemption_view,
    TpResult: tp_view,
    LoadLoopResult: load_view,
    InterferenceResult: interference_view,
    SpeculationResult: speculation_view,
    ToolMetricsResult: tools_view,
    EnergyResult: energy_view,
    AnswerLatencyResult: answer_view,
}
"""The result types this module draws, and the view of each (``tui_lab.views.view_for`` looks here)."""
