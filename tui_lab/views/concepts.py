"""Views of the concept experiments (``tui_lab.lab.concepts``), laid out for about 70 columns.

Every figure says whether it was measured or computed; numbers go through ``tui_lab.formatting``.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Group, RenderableType
from rich.text import Text

from tui_lab.formatting import milliseconds, number, percent, rate, significant, size
from tui_lab.lab.concepts import DisaggResult, GuidedResult, LmHeadResult, LoraResult
from tui_lab.views.lessons import _note, _table


def _share(part: float | None, whole: float | None) -> str:
    if part is None or not whole:
        return "—"
    share = 100 * part / whole
    return f"{significant(share, 2)} %" if share < 10 else percent(share)


def _bandwidth(gbs: float | None) -> str:
    if gbs is None:
        return "—"
    return number(gbs * 1000, "MB/s") if gbs < 1 else number(gbs, "GB/s")


def _dim(text: str) -> Text:
    """A line that explains a term of the table above it."""
    return Text(text, style="dim")


def lm_head_view(r: LmHeadResult, width: int) -> RenderableType:
    """The measured split of a decode step, then the computed share of every architecture."""
    parts: list[RenderableType] = []
    if r.step_ms is not None:
        rows = [("whole step", milliseconds(r.step_ms), "100 %"),
                ("layers (body)", milliseconds(r.body_ms), _share(r.body_ms, r.step_ms)),
                ("LM head", milliseconds(r.head_ms), _share(r.head_ms, r.step_ms)),
                ("pick (argmax)", milliseconds(r.pick_ms), _share(r.pick_ms, r.step_ms))]
        title = f"{r.model}, {r.dtype} on {r.device}, batch {r.batch_size}: median of {r.steps} steps (measured)"
        parts.append(_table(title, ("", "time", "share"), rows, width))
        parts.append(Text(f"The head's matrix is {size(r.head_bytes)} of the {size(r.bytes_per_step)} of weights "
                          f"a step reads: {percent(r.head_share_bytes_pct)} (computed). It was read at "
                          f"{number(r.head_gb_s, 'GB/s')} (measured)."))
        parts.append(Text(f"The head's product alone (measured): {milliseconds(r.full_matmul_ms)} at "
                          f"{number(r.vocab)} entries, {milliseconds(r.small_matmul_ms)} at {number(r.small_vocab)}."))
    shares = [(row.model, number(row.vocab), number(row.head_params / 1e6, "M"),
               number(row.read_per_step / 1e6, "M"), percent(row.head_share_pct)) for row in r.rows]
    parts.append(_table("The head's share of the weights a decode step reads (computed)",
                        ("model", "vocab", "head", "read/step", "share"), shares, width))
    return Group(*parts, *_note(r.note))


def guided_view(r: GuidedResult, width: int) -> RenderableType:
    """Free and guided rows side by side (all measured), then the per-token overhead."""
    rows = [(row.label, milliseconds(row.ttft_ms), milliseconds(row.tpot_ms), number(row.output_tokens, digits=2),
             f"{row.valid}/{row.requests}") for row in r.rows]
    what = "JSON schema" if r.constraint == "json" else "regular expression"
    parts: list[RenderableType] = [
        _table(f"Guided decoding with a {what}, on {r.engine} (measured, medians)",
               ("", "TTFT", "TPOT", "tokens", "valid"), rows, width)]
    if r.tpot_overhead_pct is not None:
        parts.append(Text(f"Per token, guided decoding cost {percent(r.tpot_overhead_pct, 1)} over free text "
                          f"({milliseconds(r.tpot_guided_ms)} against {milliseconds(r.tpot_free_ms)})."))
    if r.first_request_extra_ms is not None:
        parts.append(Text(f"The first guided batch waited {milliseconds(r.first_request_extra_ms)} longer for its "
                          "first token: the grammar is compiled once per schema, then cached."))
    parts.append(_dim("valid: replies that parse as JSON with every required key (or match the whole pattern)."))
    return Group(*parts, *_note(r.note))


def disagg_view(r: DisaggResult, width: int) -> RenderableType:
    """Measured prefill and decode, then the computed cost of moving or reloading the prompt's KV cache."""
    measured = [
        (f"prefill, {number(r.prompt_tokens)} tokens", milliseconds(r.prefill_ms),
         rate(r.prefill_tokens_per_s)),
        (f"decode step, batch {r.batch_size}", milliseconds(r.decode_step_ms), ""),
        ("one prefill lasts", number(r.prefill_in_decode_steps, "steps"), "of that batch"),
    ]
    computed = [
        (f"KV cache of the prompt ({r.kv_shapes}, bf16)", size(r.kv_bytes), ""),
        (f"to the decode worker at {number(r.link_gbs, 'GB/s')}", milliseconds(r.transfer_ms),
         _share(r.transfer_ms, r.prefill_ms) + " of the prefill"),
        (f"back from host memory at {number(r.host_gbs, 'GB/s')}", milliseconds(r.reload_ms),
         _share(r.reload_ms, r.prefill_ms) + " of the prefill"),
        ("a link beats recomputing above", _bandwidth(r.break_even_gbs), ""),
        (f"prefill workers per decode worker, {number(r.reply_tokens)}-token replies",
         number(r.prefill_per_decode_worker), ""),
    ]
    return Group(
        _table(f"Measured here ({r.engine} on {r.device})", ("", "time", ""), measured, width),
        _table("Computed from those figures (links are assumptions)", ("", "value", ""), computed, width),
        *_note(r.note))


def lora_view(r: LoraResult, width: int) -> RenderableType:
    """The computed cost of one adapter, then the measured batches on the LoRA-enabled engine."""
    parts: list[RenderableType] = []
    c = r.cost
    if c is not None:
        rows = [("parameters", number(c.params / 1e6, "M"), _share(c.params, c.base_bytes / 2)),
                ("bytes read per step, bf16", size(c.bytes), _share(c.bytes, c.base_bytes)),
                ("FLOPs per token", number(c.flops_per_token / 1e6, "MFLOP"),
                 _share(c.flops_per_token, c.base_flops_per_token))]
        parts.append(_table(f"One rank-{c.rank} adapter on {r.model}, every linear layer of {c.layers} (computed)",
                            ("", "adds", "of the base"), rows, width))
    if r.rows:
        batches = [(row.label, str(row.adapters), milliseconds(row.tpot_ms), rate(row.tokens_per_s))
                   for row in r.rows]
        parts.append(_table(f"Batches on vLLM with LoRA on (measured, medians; {r.engine})",
                            ("", "adapters", "TPOT", "throughput"), batches, width))
        if r.overhead_pct is not None:
            parts.append(Text(f"The mixed batch's steps took {percent(r.overhead_pct, 1)} longer than the base "
                              "model's alone."))
        parts.append(_dim("The adapters are untrained (random weights): their cost is real, their text is not."))
    return Group(*parts, *_note(r.note))


VIEWS: dict[type, Callable[..., RenderableType]] = {
    LmHeadResult: lm_head_view,
    GuidedResult: guided_view,
    DisaggResult: disagg_view,
    LoraResult: lora_view,
}
"""The result types this module draws, and the view of each (``tui_lab.views.view_for`` looks here)."""
