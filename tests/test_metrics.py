"""Metrics on hand-computed traces (definitions: METRICS.md).

Every expected value below is worked out by hand in the comment beside it.
"""

from __future__ import annotations

import math

import pytest

from tui_lab.metrics import (
    BUDGET_PRESETS,
    SLO,
    ModelShape,
    RequestTrace,
    TradeoffPoint,
    budget_pick,
    decode_speed,
    decode_step_floor_s,
    e2e,
    goodput,
    itl_samples,
    knee_by_balance,
    knee_by_gain,
    kv_bytes_per_sequence,
    max_sequences,
    output_throughput,
    percentile,
    prefill_floor_s,
    prefill_speed,
    summarize,
    summarize_run,
    tpot,
    ttft,
)


def trace(
    rid: str, t_send: float, times: list[float], tokens: list[int] | None = None, prompt: int = 0
) -> RequestTrace:
    """A trace with one event per time (``tokens`` gives tokens per event, default 1 each)."""
    tr = RequestTrace(rid, t_send=t_send, prompt_tokens=prompt)
    for t, n in zip(times, tokens or [1] * len(times), strict=True):
        tr.add(t, n)
    return tr


# Request A: sent at 10.0, tokens at 10.5, 10.6, 10.8, 11.1  (n = 4)
A = trace("a", 10.0, [10.5, 10.6, 10.8, 11.1], prompt=50)
# Request B: sent at 10.0, tokens at 10.7, 10.9              (n = 2)
B = trace("b", 10.0, [10.7, 10.9], prompt=20)


def test_ttft_e2e_tpot_on_a_hand_trace() -> None:
    assert ttft(A) == pytest.approx(0.5)  # 10.5 - 10.0
    assert e2e(A) == pytest.approx(1.1)  # 11.1 - 10.0
    assert tpot(A) == pytest.approx(0.2)  # (1.1 - 0.5) / (4 - 1)
    assert ttft(B) == pytest.approx(0.7)
    assert e2e(B) == pytest.approx(0.9)
    assert tpot(B) == pytest.approx(0.2)  # (0.9 - 0.7) / 1


def test_decode_and_prefill_speed() -> None:
    assert decode_speed(A) == pytest.approx(5.0)  # 1 / 0.2 s
    assert prefill_speed(A) == pytest.approx(100.0)  # 50 prompt tokens / 0.5 s
    assert prefill_speed(B) == pytest.approx(20 / 0.7)
    # Without a prompt length there is no prefill speed.
    assert prefill_speed(trace("x", 0.0, [1.0])) is None


def test_pooled_itl_samples() -> None:
    # A: 0.1, 0.2, 0.3 ; B: 0.2 → pooled over requests, one sample per gap.
    gaps = itl_samples([A, B])
    assert sorted(gaps) == pytest.approx([0.1, 0.2, 0.2, 0.3])


def test_multi_token_events_count_tokens_but_one_gap_each() -> None:
    # Sent at 0; event 1 at 1.0 carries 1 token, event 2 at 2.0 carries 3 tokens, event 3 at 2.5 carries 1.
    tr = trace("m", 0.0, [1.0, 2.0, 2.5], tokens=[1, 3, 1])
    assert tr.output_tokens == 5
    assert itl_samples([tr]) == pytest.approx([1.0, 0.5])  # one gap per event, not per token
    assert ttft(tr) == pytest.approx(1.0)
    assert e2e(tr) == pytest.approx(2.5)
    assert tpot(tr) == pytest.approx((2.5 - 1.0) / (5 - 1))  # n counts tokens: 0.375


def test_output_throughput() -> None:
    # 6 tokens / (11.1 last token - 10.0 first send) = 6 / 1.1
    assert output_throughput([A, B]) == pytest.approx(6 / 1.1)
    # Different send times: the window starts at the earliest send.
    late = trace("c", 10.5, [10.6])
    assert output_throughput([A, late]) == pytest.approx(5 / 1.1)
    assert output_throughput([]) is None


def test_zero_token_request() -> None:
    empty = trace("z", 5.0, [])
    assert empty.output_tokens == 0
    assert ttft(empty) is None and e2e(empty) is None and tpot(empty) is None
    assert decode_speed(empty) is None and prefill_speed(empty) is None
    assert itl_samples([empty]) == []
    assert output_throughput([empty]) is None


def test_zero_token_request_window() -> None:
    empty = trace("z", 5.0, [])
    # The window opens at the earliest send time (5.0), even for a request that produced nothing:
    # it was waiting, so the system was busy with it. 4 tokens / (11.1 - 5.0).
    assert output_throughput([A, empty]) == pytest.approx(4 / 6.1)
    summary = summarize_run([A, empty])
    assert summary.ttft_s.n == 1  # only A has a TTFT
    assert summary.requests == 2 and summary.output_tokens == 4


def test_one_token_request() -> None:
    one = trace("o", 0.0, [0.25])
    assert ttft(one) == pytest.approx(0.25)
    assert e2e(one) == pytest.approx(0.25)
    assert tpot(one) is None  # n - 1 = 0: undefined, not zero
    assert decode_speed(one) is None
    assert itl_samples([one]) == []
    assert output_throughput([one]) == pytest.approx(4.0)  # 1 token / 0.25 s


def test_goodput_and_slo() -> None:
    # A: TTFT 0.5, TPOT 0.2, E2E 1.1 ; B: TTFT 0.7, TPOT 0.2, E2E 0.9; duration 1.1 s.
    assert goodput([A, B], SLO(ttft_s=0.6)) == pytest.approx(1 / 1.1)  # only A
    assert goodput([A, B], SLO(ttft_s=1.0, tpot_s=0.25)) == pytest.approx(2 / 1.1)
    assert goodput([A, B], SLO(e2e_s=1.0)) == pytest.approx(1 / 1.1)  # only B
    assert goodput([A, B], SLO(tpot_s=0.1)) == 0.0
    one = trace("o", 0.0, [0.25])
    assert SLO(tpot_s=0.001).met_by(one)  # TPOT undefined for one token: nothing to violate
    assert not SLO().met_by(trace("z", 0.0, []))  # no output never counts
    assert goodput([], SLO()) is None


def test_percentile_linear_interpolation() -> None:
    xs = [1.0, 2.0, 3.0, 4.0]
    # position = (n - 1) · q = 3 · 0.5 = 1.5 → 2 + 0.5 · (3 - 2) = 2.5
    assert percentile(xs, 50) == pytest.approx(2.5)
    # 3 · 0.9 = 2.7 → 3 + 0.7 · 1 = 3.7
    assert percentile(xs, 90) == pytest.approx(3.7)
    assert percentile(xs, 0) == 1.0 and percentile(xs, 100) == 4.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == pytest.approx(2.5)  # order does not matter
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile(xs, 101)


def test_summarize_hides_tails_when_n_is_too_small() -> None:
    four = summarize([0.1, 0.2, 0.3, 0.4])
    assert four.n == 4 and four.p50 == pytest.approx(0.25)
    assert four.p90 is None and four.label(90) == "n too small"
    assert four.p99 is None and four.label(99) == "n too small"
    assert four.mean == pytest.approx(0.25)
    five = summarize([1, 2, 3, 4, 5])
    assert five.p90 == pytest.approx(4.6)  # 4 · 0.9 = 3.6 → 4 + 0.6
    assert five.p99 is None
    hundred = summarize(range(1, 101))
    assert hundred.p99 == pytest.approx(99.01)  # 99 · 0.99 = 98.01 → 99 + 0.01
    none = summarize([None, float("nan")])
    assert none.n == 0 and none.p50 is None and none.label(50) == "no samples"
    assert summarize([None, 2.0]).n == 1
    assert five.to_dict() == {"p50": 3.0, "p90": pytest.approx(4.6), "p99": None, "mean": 3.0, "n": 5}


def test_summarize_run_from_the_same_timestamps() -> None:
    s = summarize_run([A, B])
    assert s.ttft_s.p50 == pytest.approx(0.6)  # median of 0.5, 0.7
    assert s.e2e_s.p50 == pytest.approx(1.0)  # median of 1.1, 0.9
    assert s.tpot_s.p50 == pytest.approx(0.2)
    assert s.itl_s.n == 4 and s.itl_s.p50 == pytest.approx(0.2)
    assert s.output_tokens_per_s == pytest.approx(6 / 1.1)
    assert s.decode_tokens_per_s.p50 == pytest.approx(5.0)
    d = s.to_dict()
    assert set(d) >= {"ttft_s", "e2e_s", "tpot_s", "itl_s", "output_tokens_per_s"}
    assert d["ttft_s"]["n"] == 2


def test_never_submitted_request_does_not_poison_throughput() -> None:
    # A request stopped before it was sent has no send time (NaN in RunRecorder); it must be ignored.
    # (min() over floats with a NaN depends on the order, so both orders are checked.)
    unsent = RequestTrace("u", t_send=float("nan"))
    for traces in ([A, unsent], [unsent, A]):
        assert output_throughput(traces) == pytest.approx(4 / 1.1)
        assert goodput(traces, SLO()) == pytest.approx(1 / 1.1)
        assert summarize_run(traces).output_tokens_per_s == pytest.approx(4 / 1.1)
    assert output_throughput([unsent]) is None


def pts(pairs: list[tuple[float, float]], **lat: list[float]) -> list[TradeoffPoint]:
    """Tradeoff points from (x, throughput) pairs and optional latency series."""
    out = []
    for i, (x, thr) in enumerate(pairs):
        out.append(TradeoffPoint(x=x, throughput=thr, latency={k: v[i] for k, v in lat.items()}))
    return out


def test_knee_by_gain_on_doublings() -> None:
    # 1→2: +80 %, 2→4: +50 %, 4→8: +5 % (< 10 %) → knee at 4.
    points = pts([(1, 100), (2, 180), (4, 270), (8, 283.5)])
    knee = knee_by_gain(points, threshold_pct=10)
    assert knee is not None and knee.x == 4
    assert knee.gain_pct == pytest.approx(5.0)
    assert knee.threshold_pct == 10


def test_knee_by_gain_normalises_uneven_steps() -> None:
    # 1 → 8 is three doublings: 100 → 800 is (8)^(1/3) - 1 = +100 % per doubling.
    # 8 → 32 is two doublings: 800 → 968 is (1.21)^(1/2) - 1 = +10 % per doubling (not < 10 %).
    # 32 → 64: 968 → 1016.4 is +5 % → knee at 32.
    points = pts([(1, 100), (8, 800), (32, 968), (64, 1016.4)])
    knee = knee_by_gain(points, threshold_pct=10)
    assert knee is not None and knee.x == 32
    assert knee.gain_pct == pytest.approx(5.0)
    # With a 12 % threshold the 8 → 32 step (+10 % per doubling) already stops paying.
    assert knee_by_gain(points, threshold_pct=12).x == 8
    # Unsorted input gives the same answer.
    assert knee_by_gain(list(reversed(points)), threshold_pct=10).x == 32


def test_knee_not_reached_and_too_few_points() -> None:
    knee = knee_by_gain(pts([(1, 100), (2, 190), (4, 350)]), threshold_pct=10)
    assert knee is not None and knee.x == 4 and knee.method.startswith("not reached")
    assert knee.gain_pct == pytest.approx(350 / 190 * 100 - 100)
    assert knee_by_gain(pts([(1, 100)])) is None
    assert knee_by_gain(pts([(1, 0), (2, 0)])) is None  # no throughput: nothing to compare


def test_knee_by_balance() -> None:
    # Throughput 100, 200, 300 → inverted normalised 1, 0.5, 0; latency 1, 2, 5 → normalised 0, 0.25, 1.
    # Gaps: |0 - 1| = 1, |0.25 - 0.5| = 0.25, |1 - 0| = 1 → x = 2.
    points = pts([(1, 100), (2, 200), (4, 300)], e2e_p50=[1.0, 2.0, 5.0])
    assert knee_by_balance(points) == 2
    assert knee_by_balance(points[:1]) is None
    assert knee_by_balance(pts([(1, 100), (2, 200)], ttft_p50=[1.0, 2.0])) is None  # key missing


def test_budget_pick() -> None:
    points = pts(
        [(1, 100), (8, 500), (32, 900), (64, 1000)],
        e2e_p50=[1.0, 1.5, 2.5, 4.0],
        e2e_p90=[1.1, 1.9, 3.5, None],
    )
    assert budget_pick(points, {"e2e_p50": 3.0}).x == 32
    assert budget_pick(points, {"e2e_p50": 5.0}).x == 64
    assert budget_pick(points, {"e2e_p50": 3.0, "e2e_p90": 2.0}).x == 8
    # A point missing the limited figure (p90 with too few samples) does not qualify.
    assert budget_pick(points, {"e2e_p90": 10.0}).x == 32
    assert budget_pick(points, {"e2e_p50": 0.5}) is None
    assert budget_pick(points, {"ttft_p90": 1.0}) is None  # nobody has the figure
    chat = BUDGET_PRESETS["chat"]
    assert "rule of thumb" in chat.note and set(chat.limits) == {"ttft_p90", "tpot_p90"}


# Gemma-3-270M-like shape: 18 layers, 1 KV head, head_dim 256, bf16 KV; 15 of 18 layers slide over 512.
GEMMA = ModelShape(
    params=268_000_000, bytes_per_param=2, layers=18, kv_heads=1, head_dim=256,
    kv_bytes_per_elem=2, sliding_window=512, sliding_layers=15,
)


def test_kv_bytes_full_attention() -> None:
    shape = ModelShape(params=1_000, bytes_per_param=2, layers=4, kv_heads=2, head_dim=8, kv_bytes_per_elem=2)
    # per position per layer: 2 (K and V) · 2 heads · 8 dims · 2 bytes = 64 B; 4 layers · 10 tokens → 2560 B.
    assert kv_bytes_per_sequence(shape, 10) == 2560
    assert kv_bytes_per_sequence(shape, 0) == 0


def test_kv_bytes_with_sliding_window_layers() -> None:
    per = 2 * 1 * 256 * 2  # 1024 B per position per layer
    # 300 tokens: inside the window, every layer holds 300 positions.
    assert kv_bytes_per_sequence(GEMMA, 300) == 18 * 300 * per
    # 2000 tokens: 3 global layers hold 2000, 15 sliding layers hold only 512.
    assert kv_bytes_per_sequence(GEMMA, 2000) == (3 * 2000 + 15 * 512) * per


def test_decode_and_prefill_floors() -> None:
    shape = ModelShape(params=1_000_000, bytes_per_param=2, layers=2, kv_heads=1, head_dim=4, kv_bytes_per_elem=2)
    # weights 2 MB; KV per sequence of 100 tokens: 2 layers · 100 · (2·1·4·2 = 16 B) = 3200 B.
    # 2 sequences → (2_000_000 + 6_400) / 1e9 B/s = 2.0064 ms.
    assert decode_step_floor_s(shape, [100, 100], 1e9) == pytest.approx(2.0064e-3)
    assert decode_step_floor_s(shape, [], 1e9) == pytest.approx(2e-3)  # weights alone
    # 2 · 1e6 params · 50 tokens / 1e12 FLOP/s = 1e-4 s.
    assert prefill_floor_s(shape, 50, 1e12) == pytest.approx(1e-4)
    # 1 MB free / 3200 B per sequence → 312 sequences (floor).
    assert max_sequences(shape, 100, 1_000_000) == 312
    assert max_sequences(shape, 0, 1_000_000) == 0
    assert GEMMA.weight_bytes == 536_000_000
    assert math.isfinite(decode_step_floor_s(GEMMA, [2000] * 8, 3.35e12))


def test_one_noisy_dip_does_not_decide_the_knee() -> None:
    # 4 → 8 dips (-3 %), 8 → 16 recovers (+66 %): noise. 16 → 32 (+4 %) and 32 → 64 (+1 %) stay low: the knee.
    points = pts([(1, 100), (2, 180), (4, 300), (8, 290), (16, 480), (32, 500), (64, 505)])
    knee = knee_by_gain(points, threshold_pct=10)
    assert knee is not None and knee.x == 16 and knee.dips == (4,)
    assert knee.method.startswith("gain per doubling (stayed below")
    # A drop at the last step has nothing after it to confirm it: taken, and said so.
    last = knee_by_gain(pts([(1, 100), (2, 180), (4, 185)]), threshold_pct=10)
    assert last.x == 2 and "last step" in last.method
    # Dips only: the knee is not reached.
    assert knee_by_gain(pts([(1, 100), (2, 95), (4, 200)]), threshold_pct=10).method.startswith("not reached")
