"""Lessons 04 (TP step), 05 and 06: calculators on hand-computed numbers, experiments on the scripted engine."""

from __future__ import annotations

import pickle

import pytest

from tui_lab.engines.scripted import ScriptedEngine, ScriptedServingEngine
from tui_lab.errors import InvalidInput
from tui_lab.lab.experiment import RunContext
from tui_lab.lab.inventory import get
from tui_lab.metrics.latency import RequestTrace
from tui_lab.metrics.memory import kv_bytes_per_token_layer, kv_design, mamba_state_bytes, tp_figures, weight_bytes
from tui_lab.metrics.toolmetrics import (
    answer_start,
    coordinated_omission,
    cost_per_million_tokens,
    joules_per_token,
    little_check,
    parse_goodput,
    poisson_arrivals,
    tool_numbers,
    vllm_bench_json,
)
from tui_lab.models.arch import ARCH_MODELS

LLAMA = ARCH_MODELS["llama-3-8b"].config
NEMO = ARCH_MODELS["nemotron-nano-9b-v2"].config
GEMMA = ARCH_MODELS["gemma-3-270m"].config


# ------------------------------------------------------------------------------------------ calculators


def test_llama_kv_bytes_per_token_bf16() -> None:
    # 2 (K and V) · 32 layers · 8 KV heads · 128 dims · 2 bytes
    d = kv_design("llama-3-8b", LLAMA, "as shipped", context=4096)
    assert d.bytes_per_token == 2 * 32 * 8 * 128 * 2 == 131072
    assert kv_bytes_per_token_layer(LLAMA) == 2 * 8 * 128 * 2
    assert kv_design("llama-3-8b", LLAMA, "as shipped", 4096, "fp8").bytes_per_token == 65536


def test_designs_scale_with_kv_heads() -> None:
    mha = kv_design("llama-3-8b", LLAMA, "mha", 1024)
    mqa = kv_design("llama-3-8b", LLAMA, "mqa", 1024)
    assert mha.bytes_per_token == 2 * 32 * 32 * 128 * 2  # 32 KV heads
    assert mqa.bytes_per_token == 2 * 32 * 1 * 128 * 2


def test_gemma_sliding_layers_stop_growing_at_the_window() -> None:
    # 18 layers, 15 sliding (window 512), 1 KV head of 256 dims, bf16: 1024 bytes per token-layer.
    d = kv_design("gemma-3-270m", GEMMA, "as shipped", context=4096)
    assert d.sliding_layers == 15
    assert d.bytes_per_sequence == 3 * 4096 * 1024 + 15 * 512 * 1024


def test_nemotron_has_four_attention_layers_and_a_fixed_state() -> None:
    d = kv_design("nemotron-nano-9b-v2", NEMO, "as shipped", context=1000)
    assert d.attention_layers == 4
    assert d.bytes_per_token == 2 * 4 * 8 * 128 * 2
    # 27 Mamba layers · (conv: 3 · (128·80 + 2·8·128) + ssm: 128·80·128) · 2 bytes
    assert mamba_state_bytes(NEMO) == 27 * (3 * (10240 + 2048) + 10240 * 128) * 2
    longer = kv_design("nemotron-nano-9b-v2", NEMO, "as shipped", context=2000)
    assert longer.fixed_state_bytes == d.fixed_state_bytes


def test_weight_bytes_halve_per_format() -> None:
    bf16, fp8, int4 = (weight_bytes(LLAMA, dt) for dt in ("bf16", "fp8", "int4"))
    assert bf16 == 2 * fp8 == 4 * int4
    assert 16.0e9 < bf16 < 16.1e9  # 8.03 B parameters


def test_tp_figures_split_weights_and_count_allreduces() -> None:
    one = tp_figures(LLAMA, 1, 32, 1024, 141e9, 4.8e12, 450e9, 10e-6)
    two = tp_figures(LLAMA, 2, 32, 1024, 141e9, 4.8e12, 450e9, 10e-6)
    assert two.weight_bytes_per_gpu == one.weight_bytes_per_gpu / 2
    assert one.allreduces_per_step == 0 and two.allreduces_per_step == 64
    assert two.allreduce_bytes == 32 * 4096 * 2
    # ring all-reduce over 2 GPUs moves the whole message once per GPU: 262144 B at 450 GB/s + 10 µs, 64 times
    assert two.allreduce_s_per_step == pytest.approx(64 * (262144 / 450e9 + 10e-6))
    assert two.max_batch > 2 * one.max_batch


# ----------------------------------------------------------------------------------------- trace math


def _trace(rid: str, send: float, times: list[float], counts: list[int] | None = None) -> RequestTrace:
    tr = RequestTrace(rid, t_send=send, prompt_tokens=5)
    for t, n in zip(times, counts or [1] * len(times), strict=True):
        tr.add(t, n)
    return tr


def test_little_law_is_checked_against_the_settings() -> None:
    traces = [_trace("a", 0.0, [1.0, 2.0]), _trace("b", 1.0, [2.0, 4.0])]
    lc = little_check(traces)
    assert lc is not None
    assert lc.arrival_rate == pytest.approx(2 / 4)
    assert lc.mean_time_in_system_s == pytest.approx((2 + 3) / 2)
    assert lc.mean_in_system == pytest.approx(5 / 4)
    assert lc.predicted_in_system is None  # λ·W over the window equals L by construction: nothing to check
    # Open loop offered at 1 req/s: the engine finished only 0.5 req/s, so L falls short of 1 × W.
    open_loop = little_check(traces, offered_rate=1.0)
    assert open_loop.predicted_in_system == pytest.approx(2.5) and open_loop.ratio == pytest.approx(0.5)
    # Closed loop of 2 users: one of them was idle for a second, so L is 1.25 and not 2.
    closed = little_check(traces, users=2)
    assert closed.predicted_in_system == 2.0 and closed.ratio == pytest.approx(5 / 8)
    # Two users busy from start to end: L is 2.
    busy = little_check([_trace("a", 0.0, [1.0, 2.0]), _trace("b", 0.0, [1.5, 2.0])], users=2)
    assert busy.ratio == pytest.approx(1.0)


def test_coordinated_omission_counts_the_wait_before_sending() -> None:
    # Scheduled at 0 and 0.5, but the second was sent only at 2.0 (closed loop) and done at 3.0.
    traces = [_trace("a", 0.0, [1.0, 2.0]), _trace("b", 2.0, [2.5, 3.0])]
    om = coordinated_omission(traces, [0.0, 0.5])
    assert om.measured_p50_s == pytest.approx(1.5)
    assert om.intended_p50_s == pytest.approx((2.0 + 2.5) / 2)
    assert om.mean_send_delay_s == pytest.approx(1.5 / 2)


def test_poisson_arrivals_are_seeded_and_have_the_rate() -> None:
    a = poisson_arrivals(2000, 10.0, seed=1)
    assert a == poisson_arrivals(2000, 10.0, seed=1)
    assert a[0] == 0.0 and 2000 / a[-1] == pytest.approx(10.0, rel=0.1)


def test_tool_definitions_differ_as_documented() -> None:
    # send 0, first token 1.0, then one chunk of 3 tokens at 1.3 (so 4 tokens in 2 events)
    tr = _trace("a", 0.0, [1.0, 1.3], [1, 3])
    rows = {r.tool: r for r in tool_numbers([tr])}
    # The lab's ITL (METRICS.md, tui_lab.metrics.itl_samples): one gap per token event, as in the live views.
    assert rows["lab"].itl_mean_s == pytest.approx(0.3)
    assert rows["vllm bench serve"].itl_mean_s == pytest.approx(0.3)  # one chunk gap
    assert rows["AIPerf"].itl_mean_s == pytest.approx(0.3 / 3)  # (E2E - TTFT) / (n - 1)
    assert rows["LLMPerf"].itl_mean_s == pytest.approx(1.3 / 4)  # E2E / n
    assert rows["guidellm"].tpot_mean_s == pytest.approx(1.3 / 4)  # TTFT included


def test_request_and_token_weighting_differ() -> None:
    short = _trace("s", 0.0, [0.1, 0.2])  # TPOT 0.1, 1 decode token
    long = _trace("l", 0.0, [0.1] + [0.1 + 0.01 * i for i in range(1, 10)])  # TPOT 0.01, 9 decode tokens
    req = tool_numbers([short, long], "request")[0].tpot_mean_s
    tok = tool_numbers([short, long], "token")[0].tpot_mean_s
    assert req == pytest.approx((0.1 + 0.01) / 2)
    assert tok == pytest.approx((0.1 * 1 + 0.01 * 9) / 10)
    with pytest.raises(ValueError):
        tool_numbers([short], "bytes")


def test_goodput_syntax_and_vllm_json_fields() -> None:
    assert parse_goodput("ttft:500,tpot:50 e2el:2000") == {"ttft": 500.0, "tpot": 50.0, "e2el": 2000.0}
    for bad in ("", "ttft", "speed:3", "ttft:abc", "ttft:-1"):
        with pytest.raises(ValueError):
            parse_goodput(bad)
    fast = _trace("a", 0.0, [0.1, 0.2, 0.3])
    slow = _trace("b", 0.0, [0.9, 1.0])
    doc = vllm_bench_json([fast, slow], {"ttft": 500})
    assert doc["completed"] == 2 and doc["total_output_tokens"] == 5
    assert doc["duration"] == pytest.approx(1.0)
    assert doc["request_goodput"] == pytest.approx(1.0)  # one of two met the TTFT limit, in 1 s
    assert doc["itls"][0] == pytest.approx([0.1, 0.1])
    assert doc["median_ttft_ms"] == pytest.approx(500.0)
    assert {"mean_tpot_ms", "p99_itl_ms", "std_e2el_ms", "output_throughput"} <= set(doc)


def test_answer_start_skips_the_think_section() -> None:
    assert answer_start(["Hello", " world"]) == 0
    assert answer_start(["<think>", "hmm", "</think>", "\n", "Yes"]) == 4
    assert answer_start(["<think>", "hmm", "</think> Yes"]) == 2
    assert answer_start(["<think>", "still"]) is None


def test_energy_and_cost() -> None:
    assert joules_per_token(1_000, 11_000, 20) == pytest.approx(0.5)
    assert joules_per_token(None, 5, 1) is None and joules_per_token(9, 5, 1) is None
    assert cost_per_million_tokens(3.6, 1000.0) == pytest.approx(1.0)
    assert cost_per_million_tokens(3.6, 0.0) is None


# ----------------------------------------------------------------------------------------- experiments


def _ctx(engine_name: str = "scripted", serving: bool = False) -> RunContext:
    """A scripted engine (``serving``: one that takes requests while others run, as the load modes need, on the
    real clock the load's arrivals are timed with)."""
    engine = ScriptedServingEngine(real_time=True) if serving else ScriptedEngine()
    engine.load()

    def factory(name: str, **options: object) -> ScriptedEngine:
        return ScriptedEngine()

    return RunContext(engine=engine, engine_name=engine_name, engine_factory=factory)


PRESETS = {
    "weight_precision": {"max_new_tokens": 8},
    "kv_capacity": {"probe_limit": 4, "probe_tokens": 2, "compare_fp8": True},
    "preemption": {"num_requests": 6, "max_new_tokens": 8},
    "one_gpu_or_two": {"sweep": [1, 2], "max_new_tokens": 4},
    "load_loop": {"num_requests": 6, "concurrency": 2, "max_new_tokens": 4},
    "interference": {"streams": 2, "stream_tokens": 8, "long_prompt_words": 40, "arrive_after_s": 0.0},
    "speculation": {"max_new_tokens": 8},
    "tool_metrics": {"batch_size": 3, "max_new_tokens": 6},
    "energy_cost": {"batch_sizes": [1, 2], "max_new_tokens": 4},
    "answer_latency": {"max_new_tokens": 4},
}


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("engine_name", ["scripted", "vllm"])
def test_experiment_runs_headless_and_pickles(name: str, engine_name: str) -> None:
    """Each experiment runs on the scripted engine, both as itself and standing in for vLLM's variants."""
    exp = get(name)
    result = exp.run(exp.validate(PRESETS[name]), _ctx(engine_name))
    assert isinstance(result.to_dict(), dict)
    again = pickle.loads(pickle.dumps(result))
    assert again.to_dict() == result.to_dict()
    from tui_lab.views import view_for

    assert view_for(type(result)) is not None


GPU_DEVICE = "cuda (NVIDIA H100 80GB HBM3)"
"""What the transformers engine reports on a GPU: a CUDA device with the card's name."""


def test_is_cuda_reads_every_way_a_device_is_written() -> None:
    from tui_lab.engines.base import cuda_index, is_cuda

    for device in ("cuda", "CUDA", "cuda:1", GPU_DEVICE, "cuda:0 (NVIDIA H200)"):
        assert is_cuda(device), device
    for device in ("cpu", "scripted", "remote 127.0.0.1:8000", "auto", "none", "unknown", "cudax", ""):
        assert not is_cuda(device), device

    class TorchLike:
        type, index = "cuda", 3

    assert is_cuda(TorchLike()) and cuda_index(TorchLike()) == 3
    assert cuda_index("cuda:2 (NVIDIA H100)") == 2 and cuda_index(GPU_DEVICE) == 0 and cuda_index("cuda") == 0


def _gpu_ctx(engine_name: str) -> RunContext:
    """A scripted engine that reports a GPU the way the real engines do."""
    from dataclasses import replace

    ctx = _ctx(engine_name)
    ctx.engine._info = replace(ctx.engine.info, device=GPU_DEVICE)
    return ctx


def test_energy_is_measured_when_the_engine_reports_a_named_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from tui_lab.lab import traffic

    counter = iter(range(1_000_000, 10_000_000, 250_000))  # NVML's energy counter, in mJ, read before/after
    monkeypatch.setattr(traffic, "_energy_mj", lambda: next(counter))
    exp = get("energy_cost")
    result = exp.run(exp.validate({"batch_sizes": [1, 2], "max_new_tokens": 4}), _gpu_ctx("scripted"))
    assert result.energy_source.startswith("NVML") and result.note == ""
    assert [p.joules_per_token for p in result.points] == [pytest.approx(250 / 4), pytest.approx(250 / 8)]


def test_fp8_weights_are_timed_on_vllm_with_a_named_cuda_device() -> None:
    exp = get("weight_precision")
    result = exp.run(exp.validate({"max_new_tokens": 4}), _gpu_ctx("vllm"))
    fp8 = next(r for r in result.rows if r.dtype == "fp8")
    assert fp8.measured_ms is not None and "H100/H200" not in result.note


def test_memory_lessons_read_the_card_the_engine_runs_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """An H100 (3.35 TB/s, 80 GiB) is computed with as an H100, not as an H200."""
    from tui_lab import telemetry
    from tui_lab.telemetry import CardSpecs

    asked: list[int] = []

    def h100(index: int = 0) -> CardSpecs:
        asked.append(index)
        return CardSpecs("NVIDIA H100 80GB HBM3", 80 * 2**30, 3352.32, index)

    monkeypatch.setattr(telemetry, "card_specs", h100)
    weights = get("weight_precision")
    result = weights.run(weights.validate({"max_new_tokens": 4}), _gpu_ctx("scripted"))
    assert result.bandwidth_gbs == pytest.approx(3352.32)
    assert "3,352 GB/s read from the NVIDIA H100 80GB HBM3" in result.note
    bf16 = next(r for r in result.rows if r.dtype == "bf16")
    assert bf16.floor_ms == pytest.approx(bf16.weight_gb / 3352.32 * 1000)
    kv = get("kv_capacity")
    result = kv.run(kv.validate({"probe_limit": 2, "probe_tokens": 2}), _gpu_ctx("scripted"))
    assert result.free_gib == pytest.approx(80.0) and "80 GiB read from the NVIDIA H100" in result.note
    assert asked == [0, 0]
    # A value given by the learner is used as given.
    given = weights.run(weights.validate({"max_new_tokens": 4, "bandwidth_gbs": 1000.0}), _gpu_ctx("scripted"))
    assert given.bandwidth_gbs == 1000.0 and "as given" in given.note and asked == [0, 0]


def test_memory_lessons_without_a_gpu_say_the_h200_datasheet_stands_in(monkeypatch: pytest.MonkeyPatch) -> None:
    from tui_lab import telemetry

    monkeypatch.setattr(telemetry, "card_specs", lambda index=0: None)
    weights = get("weight_precision")
    result = weights.run(weights.validate({"max_new_tokens": 4}), _ctx("scripted"))
    assert result.bandwidth_gbs == 4800.0
    assert "no GPU here: the NVIDIA H200 datasheet's 4,800 GB/s stands in" in result.note
    kv = get("kv_capacity")
    result = kv.run(kv.validate({"probe_limit": 2, "probe_tokens": 2}), _ctx("scripted"))
    assert result.free_gib == pytest.approx(141e9 / 2**30) and "H200 datasheet's 141 GB" in result.note


def test_bad_params_say_what_to_do() -> None:
    with pytest.raises(InvalidInput, match="takes"):
        get("kv_capacity").validate({"kontext": 3})
    with pytest.raises(InvalidInput, match="concurrency must be in 1..1024"):
        get("load_loop").validate({"concurrency": 0})
    with pytest.raises(InvalidInput, match="one of"):
        get("one_gpu_or_two").validate({"model": "gpt-5"})


def test_one_gpu_or_two_says_why_without_two_gpus() -> None:
    exp = get("one_gpu_or_two")
    result = exp.run(exp.validate({"sweep": [1]}), _ctx("scripted"))
    assert result.source == "modelled" and result.measured == []
    assert "\n" not in result.note and "figures" in result.note
    assert result.tp2_over_tp1_batch1 is not None and result.tp2_over_tp1_batch1 < 1.0


def test_kv_probe_stops_at_out_of_memory() -> None:
    engine = ScriptedEngine(fail_at_batch=4)
    engine.load()
    exp = get("kv_capacity")
    result = exp.run(exp.validate({"probe_limit": 64, "probe_tokens": 2}), RunContext(engine=engine))
    assert result.measured_max_batch == 2 and "out of memory" in result.measured_how


def test_preemption_counters_from_the_trace() -> None:
    from tui_lab.engines.base import SamplingParams
    from tui_lab.lab.memory import counters_from_trace
    from tui_lab.lab.run import RequestResult, RunResult

    a = RequestResult("a", "p", _trace("a", 0.0, [1.0, 2.0]))
    b = RequestResult("b", "p", _trace("b", 0.0, [2.0, 3.0]))
    samples = counters_from_trace(RunResult([a, b], SamplingParams()))
    at1 = next(s for s in samples if s["t"] == 1.0)
    assert at1["running"] == 1 and at1["waiting"] == 1


def test_vllm_serving_options_map_to_engine_args() -> None:
    from tui_lab.engines.vllm_engine import SchedulerCounters, serving_engine_args, serving_options

    args = serving_engine_args(serving_options(quantization="fp8", kv_cache_dtype="fp8", ngram_speculative_tokens=3,
                                               enable_chunked_prefill=True, max_num_batched_tokens=256,
                                               num_kv_blocks=40))
    assert args["quantization"] == "fp8" and args["kv_cache_dtype"] == "fp8"
    assert args["speculative_config"]["method"] == "ngram" and args["speculative_config"]["num_speculative_tokens"] == 3
    assert args["max_num_batched_tokens"] == 256 and args["num_gpu_blocks_override"] == 40
    assert serving_engine_args(serving_options()) == {}
    with pytest.raises(InvalidInput):
        serving_options(quantization="int3")

    class Sched:
        num_running_reqs, num_waiting_reqs, kv_cache_usage, spec_decoding_stats = 3, 5, 0.9, None

    class Iter:
        num_preempted_reqs = 2

    c = SchedulerCounters()
    c.record(Sched(), Iter())
    c.record(Sched(), Iter())
    snap = c.snapshot()
    assert (snap["running"], snap["waiting"], snap["preemptions"], snap["steps"]) == (3, 5, 4, 2)


# ----------------------------------------------------------------------------------------- the lessons


CORE = {"generate", "batch_sweep", "length_sweep", "sampling_grid", "cpu_vs_gpu", "kv_cache_compare", "tokenize",
        "padding", "logits", "modalities", "roofline", "graphs_compare", "prefix_cache", "queueing",
        "static_vs_continuous"}
"""Lesson 01-04's own experiments (test_lessons.py runs those)."""
MEASURED_ELSEWHERE = {"lm_head_share", "structured_output", "lora_adapters"}
"""Their predictions need the model's layers or vLLM: tests/test_concepts.py resolves them there."""


def _object_steps() -> list:
    from tui_lab.lessons import experiments_named, load_lessons

    return [(lesson, step) for lesson, step in experiments_named(load_lessons())
            if step.experiment not in CORE | MEASURED_ELSEWHERE]


@pytest.mark.parametrize("pair", _object_steps(), ids=lambda p: f"{p[0].id}-{p[1].key}")
def test_lesson_step_runs_and_its_prediction_resolves(pair: tuple) -> None:
    """The lesson's own preset runs on the scripted engine and the predicted metric is a number."""
    from tui_lab.lessons import resolve_metric

    _lesson, step = pair
    exp = get(step.experiment)
    result = exp.run(exp.validate(step.params), _ctx("scripted", serving=step.experiment == "load_run"))
    if step.predict is not None:
        value = resolve_metric(result, step.predict.metric)
        assert value is not None and value > 0, f"{step.predict.metric} not in the {step.experiment} result"


def test_lessons_05_and_06_name_their_experiments() -> None:
    from tui_lab.lessons import load_lessons

    by_id = {lesson.id: {s.experiment for s in lesson.steps} for lesson in load_lessons()}
    assert {"weight_precision", "kv_capacity", "preemption"} <= by_id["05"]
    assert {"load_loop", "interference", "speculation", "tool_metrics", "energy_cost"} <= by_id["06"]
    assert "one_gpu_or_two" in by_id["04"] and "answer_latency" in by_id["02"]


def test_run_writes_a_vllm_bench_json(tmp_path, capsys) -> None:
    import json

    from tui_lab.cli import main

    out = tmp_path / "bench.json"
    assert main(["run", "--engine", "scripted", "-q", "--batch-size", "3", "--max-tokens", "5",
                 "--vllm-bench-json", str(out), "--goodput", "ttft:5000,tpot:100"]) == 0
    doc = json.loads(out.read_text())
    assert doc["completed"] == 3 and doc["total_output_tokens"] == 15
    assert doc["request_goodput"] > 0 and doc["goodput"] == {"ttft": 5000.0, "tpot": 100.0}
    assert len(doc["itls"]) == 3 and len(doc["itls"][0]) == 4


def test_bad_goodput_is_a_usage_error(capsys) -> None:
    from tui_lab.cli import main

    assert main(["run", "--engine", "scripted", "-q", "--goodput", "speed:3"]) == 2
    assert "KEY:MS pairs" in capsys.readouterr().err


def test_load_loop_uses_the_load_driver_when_there_is_one(monkeypatch) -> None:
    """With a driver whose engine takes sessions, both loops go through it (its trace, its schedule)."""
    from types import SimpleNamespace

    import tui_lab.lab.traffic as traffic

    seen = {}

    class Plan:
        def __init__(self, **kw: object) -> None:
            self.__dict__.update(kw)
            self.label = "rate" if kw["request_rate"] else "concurrency"

    def execute_load(engine, plan, stop, sink):
        seen["plan"] = plan
        return SimpleNamespace(traces=[_trace("a", 0.0, [1.0, 2.0]), _trace("b", 0.5, [2.0, 2.5])])

    fake = SimpleNamespace(LoadPlan=Plan, execute_load=execute_load, supports_sessions=lambda e: True,
                           arrival_offsets=lambda n, rate, burst, seed: [0.0, 0.5][:n])
    monkeypatch.setattr(traffic, "load_driver", lambda: fake)
    exp = get("load_loop")
    result = exp.run(exp.validate({"mode": "open", "num_requests": 2, "rate": 2.0}), _ctx())
    assert seen["plan"].request_rate == 2.0 and seen["plan"].concurrency is None
    assert result.mode == "open" and result.note == ""
    # Offered 2 req/s; the two requests (2 s each) finished over 2.5 s: L = 4 / 2.5 = 1.6 against 2 × W = 4.
    assert result.little["offered_rate"] == 2.0
    assert result.little["ratio"] == pytest.approx(1.6 / 4.0)
    assert result.omission["mean_send_delay_s"] == pytest.approx(0.0)


def test_open_loop_without_a_session_engine_says_so() -> None:
    exp = get("load_loop")
    result = exp.run(exp.validate({"mode": "open", "num_requests": 4, "max_new_tokens": 2}), _ctx())
    assert result.mode == "closed" and "open-loop" in result.note and "\n" not in result.note


def test_vllm_engine_checks_serving_options_before_loading() -> None:
    from tui_lab.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine(device="cpu", kv_cache_dtype="fp8", ngram_speculative_tokens=2)
    assert engine.serving["kv_cache_dtype"] == "fp8" and engine.scheduler_stats()["preemptions"] == 0
    with pytest.raises(InvalidInput, match="kv_cache_dtype"):
        VLLMEngine(device="cpu", kv_cache_dtype="int2")
    with pytest.raises(TypeError):
        VLLMEngine(device="cpu", no_such_option=1)


def test_interference_says_when_the_long_prompt_could_not_run() -> None:
    """A long prompt the engine refuses (longer than its context) is named in the note, not lost on its thread."""

    class ShortContext(ScriptedEngine):
        def stream(self, requests, sampling, stop=None):
            if any(r.request_id == "long" for r in requests):
                raise InvalidInput("prompt (4876 tokens) + max new tokens (4) exceed the context of 4608 tokens")
            return super().stream(requests, sampling, stop)

    engine = ScriptedEngine()
    engine.load()

    def factory(name: str, **options: object) -> ScriptedEngine:
        return ShortContext()

    exp = get("interference")
    params = exp.validate({"streams": 2, "stream_tokens": 8, "long_prompt_words": 40, "arrive_after_s": 0.0})
    result = exp.run(params, RunContext(engine=engine, engine_name="vllm", engine_factory=factory))
    assert [row.label for row in result.rows] == ["streams alone"]
    assert "chunked prefill off could not run: the long prompt could not run: prompt (4876 tokens)" in result.note
    assert "chunked, budget 256 could not run" in result.note


def test_speculation_warms_each_engine_up_before_its_measured_rows() -> None:
    """A fresh engine's first steps pay one-time costs; they must not land in the first measured row."""
    calls: list[tuple[int, int]] = []

    class Counting(ScriptedEngine):
        def stream(self, requests, sampling, stop=None):
            calls.append((id(self), sampling.max_new_tokens))
            return super().stream(requests, sampling, stop)

    engine = Counting()
    engine.load()
    exp = get("speculation")
    result = exp.run(exp.validate({"max_new_tokens": 32}),
                     RunContext(engine=engine, engine_name="vllm", engine_factory=lambda name, **o: Counting()))
    assert [(r.speculation, r.text) for r in result.rows] == [
        ("off", "repetitive"), ("off", "fresh"), ("n-gram k=4", "repetitive"), ("n-gram k=4", "fresh")]
    engines = list(dict.fromkeys(e for e, _ in calls))
    assert len(engines) == 2
    for e in engines:
        assert [n for who, n in calls if who == e] == [16, 32, 32]  # the warm-up, then the two rows
