"""Measurements that contradict their lesson are named, with the reason; sound ones are not."""

from __future__ import annotations

from tui_lab.lab.caveats import caveats
from tui_lab.lab.compare import KVCacheComparison, ModeTiming
from tui_lab.lab.pipeline import DecodeMeasurement, LogitsView, RooflineView


def _logits(first_ms: float, best_ms: float) -> LogitsView:
    return LogitsView(prompts=["a"], input_shape=(1, 2), logits_shape=(1, 2, 10), logits_bytes=80, dtype="float32",
                      forward_ms=best_ms, first_forward_ms=first_ms, top=[[]], greedy=[], k=1, device="cpu")


def test_a_first_call_as_fast_as_the_best_is_named():
    assert caveats(_logits(first_ms=850.0, best_ms=200.0)) == []
    (line,) = caveats(_logits(first_ms=2690.6, best_ms=2690.6))
    assert "no slower than the best" in line and "2690.6" in line


def _measure(step_ms: float, floor_ms: float, ttft_ms: float, prefill_floor_ms: float) -> DecodeMeasurement:
    return DecodeMeasurement(batch_size=1, step_ms=step_ms, floor_ms=floor_ms, floor_at_seq_len_ms=floor_ms,
                             context_tokens=20, bytes_per_step=1e9, achieved_gb_s=1e9 / step_ms / 1e6,
                             floor_fraction=floor_ms / step_ms, tokens_per_s=1000 / step_ms, prompt_tokens=16,
                             ttft_ms=ttft_ms, prefill_floor_ms=prefill_floor_ms)


def _roofline(*measurements: DecodeMeasurement) -> RooflineView:
    return RooflineView(model="m", device="cpu", dtype="float32", params=1, weight_bytes=1e9, layers=1, kv_heads=1,
                        head_dim=8, sliding_window=None, sliding_layers=0, kv_bytes_per_token=16.0,
                        bandwidth_gb_s=20.0, bandwidth_method="measured: copy", datasheet_gb_s=None, peak_tflops=0.2,
                        peak_tflops_method="measured: 1024×1024 matmul", seq_len=1024, kv_bytes_at_seq_len=1.0,
                        sequences_at_seq_len=1, measurements=list(measurements), free_bytes=1.0,
                        free_bytes_method="given", kv_fits=[])


def test_a_floor_above_its_measurement_is_named():
    assert caveats(_roofline(_measure(step_ms=60.0, floor_ms=50.0, ttft_ms=90.0, prefill_floor_ms=40.0))) == []
    lines = caveats(_roofline(_measure(step_ms=40.0, floor_ms=50.0, ttft_ms=30.0, prefill_floor_ms=45.0)))
    assert len(lines) == 2
    assert "prefill floor (45.0 ms at batch 1) is above the measured TTFT (30.0 ms)" in lines[0]
    assert "faster than its bandwidth floor" in lines[1]


def _kv(steps: list[float]) -> KVCacheComparison:
    return KVCacheComparison(prompt="a", max_new_tokens=len(steps),
                             modes=[ModeTiming("no cache", False, step_times_s=[0.5, *steps], e2e_runs_s=[sum(steps)]),
                                    ModeTiming("KV cache", True, step_times_s=[0.5, *[0.1] * len(steps)],
                                               e2e_runs_s=[1.0])])


def test_a_recompute_cost_that_stays_flat_is_named():
    assert caveats(_kv([0.10 + 0.01 * i for i in range(16)])) == []  # grows ×2.1
    (line,) = caveats(_kv([0.10] * 8 + [0.102] * 8))
    assert "grew only ×1.02" in line and "max new tokens" in line


def test_other_results_have_no_caveats():
    assert caveats(None) == [] and caveats({"x": 1}) == []
