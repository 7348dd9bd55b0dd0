"""Measurements that contradict what they are meant to show, named with the reason.

A teaching tool must not show a number that breaks its own lesson without a word: a floor above
the measurement it bounds, a "first call" that paid no warm-up, a cost that was meant to grow and
stayed flat. ``caveats(result)`` returns one plain sentence per such case (none when the result is
sound); the app prints them under the result's view and ``inference-lab experiment`` under its text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tui_lab.lab.compare import KVCacheComparison
    from tui_lab.lab.pipeline import LogitsView, RooflineView

FIRST_CALL_WARM = 1.1
"""A first call within 10 % of the best call paid no visible one-time cost."""
FLAT_GROWTH = 1.1
"""Recomputing a growing sequence that slows the step by less than 10 % over the run shows no growth."""


def caveats(result: object) -> list[str]:
    """Sentences naming the measurements in ``result`` that cannot be trusted for what they show, and why."""
    from tui_lab.lab.compare import KVCacheComparison
    from tui_lab.lab.pipeline import LogitsView, RooflineView

    if isinstance(result, RooflineView):
        return _roofline(result)
    if isinstance(result, LogitsView):
        return _logits(result)
    if isinstance(result, KVCacheComparison):
        return _kv_cache(result)
    return []


def _roofline(r: RooflineView) -> list[str]:
    out = []
    over = [m for m in r.measurements if m.ttft_ms and m.prefill_floor_ms and m.prefill_floor_ms > m.ttft_ms]
    if over:
        m = over[0]
        out.append(
            f"The prefill floor ({m.prefill_floor_ms:.1f} ms at batch {m.batch_size}) is above the measured TTFT "
            f"({m.ttft_ms:.1f} ms), so it is not a floor here: the peak compute it assumes "
            f"({r.peak_tflops or 0:,.2f} TFLOP/s, {r.peak_tflops_method}) is lower than what the prefill reached. "
            "A short matmul timing underestimates a busy or throttled machine; set peak_tflops from the "
            "datasheet to get a floor you can trust.")
    fast = [m for m in r.measurements if m.floor_fraction and m.floor_fraction > 1.0]
    if fast:
        m = fast[0]
        out.append(
            f"The decode step at batch {m.batch_size} ({m.step_ms:.2f} ms) is faster than its bandwidth floor "
            f"({m.floor_ms:.2f} ms): the measured bandwidth ({r.bandwidth_gb_s:,.1f} GB/s, {r.bandwidth_method}) "
            "is below what the step used (caches can serve a small model's weights). Read the floor as "
            "approximate.")
    return out


def _logits(r: LogitsView) -> list[str]:
    if r.first_forward_ms and r.forward_ms and r.first_forward_ms <= FIRST_CALL_WARM * r.forward_ms:
        return [f"The first call ({r.first_forward_ms:.1f} ms) was no slower than the best "
                f"({r.forward_ms:.1f} ms): the one-time costs (allocation, kernel selection) were paid before, "
                "when the engine warmed up or ran earlier, so this run cannot show them. Reload the model (m) "
                "and run this step first to see a cold call."]
    return []


def _kv_cache(r: KVCacheComparison) -> list[str]:
    naive = r.mode(False)
    growth = naive.growth() if naive is not None and not naive.error else None
    if growth is not None and growth < FLAT_GROWTH:
        return [f"Without the cache the step grew only ×{growth:.2f} over {r.max_new_tokens} tokens, though "
                "recomputing a longer sequence costs more: at this length the extra positions are too few to "
                "show over each step's fixed costs (launches, the LM head). Raise max new tokens (e.g. 256) to "
                "see the growth."]
    return []
