"""The lab layer with the scripted engine and a fake clock: prompts, sweeps, comparisons, experiments, export."""

from __future__ import annotations

import csv
import json
import os
import threading
from collections.abc import Iterator, Sequence

import pytest

from tests.lab_helpers import sweep_plan, validate_params
from tui_lab.engines.base import Request, SamplingParams
from tui_lab.engines.events import RequestSubmitted, StreamEvent, TokenEvent, TokenStep
from tui_lab.engines.scripted import FakeClock, ScriptedEngine, StepModel
from tui_lab.errors import DeviceUnavailable, InvalidInput, OutOfMemory, error_text
from tui_lab.lab.compare import cpu_vs_gpu, kv_cache_compare
from tui_lab.lab.export import csv_text, export_format, to_jsonable, write_csv, write_json
from tui_lab.lab.inventory import get, names
from tui_lab.lab.prompts import all_prompts, prompt_schedule
from tui_lab.lab.run import sampling_from
from tui_lab.lab.sweep import SweepPlan, SweepPoint, run_sweep, sampling_grid

# ------------------------------------------------------------------------------------------------ test engines


class RecordingEngine(ScriptedEngine):
    """The scripted engine, recording every batch it is asked to run; optionally slow on its first run."""

    def __init__(self, cold_start_s: float = 0.0, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.calls: list[list[str]] = []
        self.cold_start_s = cold_start_s

    def stream(
        self, requests: Sequence[Request], sampling: SamplingParams, stop: threading.Event | None = None
    ) -> Iterator[StreamEvent]:
        self.calls.append([r.prompt for r in requests])
        first = len(self.calls) == 1
        for event in super().stream(requests, sampling, stop):
            yield event
            if first and self.cold_start_s and isinstance(event, RequestSubmitted):
                # A cold first run (allocator, kernels, caches): what warm-up runs exist to absorb.
                self.clock.advance(self.cold_start_s)
                first = False


class StopDuring(ScriptedEngine):
    """Sets ``stop`` after the first token event of its ``call``-th run (a learner pressing stop)."""

    def __init__(self, stop: threading.Event, call: int) -> None:
        super().__init__()
        self.stop_event = stop
        self.call = call
        self.calls = 0

    def stream(
        self, requests: Sequence[Request], sampling: SamplingParams, stop: threading.Event | None = None
    ) -> Iterator[StreamEvent]:
        self.calls += 1
        for event in super().stream(requests, sampling, stop):
            yield event
            if self.calls == self.call and isinstance(event, (TokenEvent, TokenStep)):
                self.stop_event.set()


class FailMidRun(ScriptedEngine):
    """Runs out of memory after its first tokens at batch sizes >= ``at``."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def stream(
        self, requests: Sequence[Request], sampling: SamplingParams, stop: threading.Event | None = None
    ) -> Iterator[StreamEvent]:
        for event in super().stream(requests, sampling, stop):
            yield event
            if len(requests) >= self.at and isinstance(event, (TokenEvent, TokenStep)):
                raise OutOfMemory("out of memory while decoding", hint="use a smaller batch", largest_batch=8)


class RecomputeEngine(ScriptedEngine):
    """Models the no-cache loop: each decode step costs more as the sequence grows (kv_cache=False)."""

    def __init__(self, kv_cache: bool = True) -> None:
        super().__init__(clock=FakeClock())
        self.kv_cache = kv_cache
        self._step = 0

    def _sleep(self, seconds: float) -> None:
        if not self.kv_cache:
            self._step += 1
            seconds += 0.002 * self._step
        super()._sleep(seconds)

    def stream(self, requests, sampling, stop=None):  # noqa: ANN001, ANN201
        self._step = 0  # every run recomputes from its own first token
        yield from super().stream(requests, sampling, stop)


def loaded(engine: ScriptedEngine) -> ScriptedEngine:
    engine.load()
    return engine


def plan(**kw: object) -> SweepPlan:
    base: dict = {"values": (1, 4, 16), "runs": 2, "warmup": 1, "max_new_tokens": 8}
    base.update(kw)
    return SweepPlan(**base)


# ----------------------------------------------------------------------------------------------------- prompts


def test_prompt_schedule_is_deterministic_varied_and_prefix_stable() -> None:
    a = prompt_schedule(32, seed=7)
    assert a == prompt_schedule(32, seed=7)
    assert len(set(a)) == 32  # no duplicates inside one batch
    assert prompt_schedule(8, seed=7) == a[:8]  # a smaller batch runs the first prompts of the larger
    assert prompt_schedule(8, seed=8) != a[:8]
    assert prompt_schedule(0) == []
    big = prompt_schedule(len(all_prompts()) + 10, seed=1)
    assert len(big) == len(all_prompts()) + 10
    assert len(set(big[: len(all_prompts())])) == len(all_prompts())
    lengths = {len(p.split()) for p in all_prompts()}
    assert max(lengths) - min(lengths) >= 5  # prompts of different lengths, so padding shows
    with pytest.raises(ValueError):
        prompt_schedule(-1)


# ------------------------------------------------------------------------------------------------------ sweeps


def test_batch_sweep_points_arrive_one_by_one_with_figures() -> None:
    engine = loaded(RecordingEngine())
    log: list[str] = []
    result = run_sweep(
        engine, plan(latency_budget={"e2e_p50": 10.0}),
        on_point=lambda p: log.append(f"point {p.label}"),
        on_run=lambda c, i, warm: log.append(f"run {c.label} {i} {'warm' if warm else 'measured'}"),
    )
    # Each point is reported as soon as its runs are done, before the next configuration starts.
    assert log[:4] == ["run batch 1 0 warm", "run batch 1 1 measured", "run batch 1 2 measured", "point batch 1"]
    assert log.index("point batch 4") < log.index("run batch 16 0 warm")
    assert [p.batch_size for p in result.points] == [1, 4, 16]
    for point in result.points:
        assert point.status == "ok" and not point.partial
        assert len(point.runs) == 2
        assert point.e2e_s.n == 2 * point.batch_size  # per-request figures pooled over measured runs
        assert point.ttft_s.p50 is not None and point.tpot_s.p50 is not None
        assert point.itl_s.n == 2 * point.batch_size * 7  # 8 tokens → 7 gaps per request
        runs = [r.output_tokens_per_s for r in point.runs]
        assert point.output_tokens_per_s == pytest.approx(sum(runs) / len(runs))
    # The scripted engine's throughput grows with the batch; latency grows too.
    thr = [p.output_tokens_per_s for p in result.points]
    assert thr == sorted(thr)
    assert result.points[0].e2e_s.p50 < result.points[-1].e2e_s.p50
    assert result.knee is not None and result.knee.threshold_pct == 10
    assert result.knee_balance in (1, 4, 16)
    assert result.budget_pick is result.points[-1]
    assert not result.partial


def test_batch_sweep_hand_checked_timing() -> None:
    # StepModel: prefill 1 ms per prompt token, decode step 10 ms + 0 per sequence → TPOT 10 ms exactly.
    timing = StepModel(prefill_per_token=0.001, decode_base=0.010, decode_per_seq=0.0)
    engine = loaded(ScriptedEngine(timing=timing))
    result = run_sweep(engine, plan(values=(1,), runs=1, warmup=0, max_new_tokens=5))
    point = result.points[0]
    prompt = prompt_schedule(1, 0)[0]
    ttft = 0.001 * (len(prompt.split()) + 1)
    assert point.ttft_s.p50 == pytest.approx(ttft)
    assert point.tpot_s.p50 == pytest.approx(0.010)
    assert point.e2e_s.p50 == pytest.approx(ttft + 4 * 0.010)
    assert point.output_tokens_per_s == pytest.approx(5 / (ttft + 0.040))


def test_warmup_runs_are_discarded() -> None:
    cold = loaded(RecordingEngine(cold_start_s=5.0))
    result = run_sweep(cold, plan(values=(1,), runs=2, warmup=1))
    assert len(cold.calls) == 3  # 1 warm-up + 2 measured
    point = result.points[0]
    assert point.ttft_s.n == 2 and max(point.samples["ttft_s"]) < 1.0  # the 5 s cold start is not in it
    no_warm = loaded(RecordingEngine(cold_start_s=5.0))
    point = run_sweep(no_warm, plan(values=(1,), runs=2, warmup=0)).points[0]
    assert max(point.samples["ttft_s"]) > 5.0  # without warm-up the cold run pollutes the figures


def test_seeded_prompt_schedule_is_used_for_every_run() -> None:
    engine = loaded(RecordingEngine())
    run_sweep(engine, plan(values=(2, 4), runs=2, warmup=1, seed=11))
    calls = engine.calls
    assert len(calls) == 6
    # Warm-up and measured runs of a configuration send the same seeded prompts (same shapes warmed and timed),
    assert calls[0] == calls[1] == calls[2] == prompt_schedule(2, 11)
    assert calls[3] == calls[4] == calls[5] == prompt_schedule(4, 11)
    # and a larger batch adds prompts to the smaller one's.
    assert calls[3][:2] == calls[0]
    again = loaded(RecordingEngine())
    run_sweep(again, plan(values=(2, 4), runs=2, warmup=1, seed=11))
    assert again.calls == calls
    other = loaded(RecordingEngine())
    run_sweep(other, plan(values=(2, 4), runs=2, warmup=1, seed=12))
    assert other.calls[0] != calls[0]


def test_stop_between_points_keeps_partial_results() -> None:
    engine = loaded(ScriptedEngine())
    stop = threading.Event()
    points: list[SweepPoint] = []

    def on_point(point: SweepPoint) -> None:
        points.append(point)
        if len(points) == 2:
            stop.set()

    result = run_sweep(engine, plan(values=(1, 2, 4, 8)), stop=stop, on_point=on_point)
    assert [p.batch_size for p in result.points] == [1, 2]
    assert all(p.status == "ok" for p in result.points)
    assert result.partial and not result.interrupted
    assert any("stopped early" in m for m in result.messages)
    assert result.knee is not None  # computed over the complete points there are


def test_stop_within_a_run_marks_the_point_partial() -> None:
    stop = threading.Event()
    # Stop after the first tokens of the 7th run: batch 1 takes runs 1-4 (1 warm-up + 3),
    # batch 4 runs 5 (warm-up), 6 (measured, completes) and 7 (measured, cut short).
    engine = loaded(StopDuring(stop, call=7))
    result = run_sweep(engine, plan(values=(1, 4, 16), runs=3, warmup=1), stop=stop)
    assert [p.status for p in result.points] == ["ok", "partial"]
    partial = result.points[1]
    assert partial.partial and len(partial.runs) == 1  # the completed measured run; the cut one is dropped
    assert not partial.runs[0].partial
    assert result.partial
    data = result.to_dict()
    assert data["partial"] is True and data["points"][1]["status"] == "partial"


def test_stop_in_the_only_measured_run_keeps_the_truncated_data() -> None:
    stop = threading.Event()
    engine = loaded(StopDuring(stop, call=1))
    result = run_sweep(engine, plan(values=(2,), runs=1, warmup=0, max_new_tokens=200), stop=stop)
    point = result.points[0]
    assert point.status == "partial" and point.runs[0].partial
    assert 0 < point.runs[0].output_tokens < 2 * 200


def test_out_of_memory_at_a_big_batch_is_recorded_and_larger_ones_skipped() -> None:
    engine = loaded(ScriptedEngine(fail_at_batch=32))
    seen: list[SweepPoint] = []
    result = run_sweep(engine, plan(values=(1, 8, 32, 64), latency_budget="chat"), on_point=seen.append)
    assert [p.status for p in result.points] == ["ok", "ok", "error", "skipped"]
    assert len(seen) == 4  # every point is reported, also the failed ones
    assert "out of memory" in result.points[2].error and "try batch size 31" in result.points[2].error
    assert "skipped" in result.points[3].error
    assert result.points[2].output_tokens_per_s is None
    assert result.knee is not None and result.knee.x in (1, 8)
    assert not result.partial
    assert any("out of memory" in m for m in result.messages)
    row = result.points[2].to_row()
    assert row["status"] == "error" and row["output_tokens_per_s"] is None


def test_out_of_memory_mid_run_is_recognised() -> None:
    engine = loaded(FailMidRun(at=16))
    result = run_sweep(engine, plan(values=(1, 16, 32)))
    assert [p.status for p in result.points] == ["ok", "error", "skipped"]
    assert "out of memory while decoding" in result.points[1].error


def test_length_and_sampling_sweeps() -> None:
    engine = loaded(ScriptedEngine())
    lengths = run_sweep(engine, SweepPlan(kind="length", values=(4, 8, 16), batch_size=2, runs=1, warmup=0))
    e2e = [p.e2e_s.p50 for p in lengths.points]
    assert [p.max_new_tokens for p in lengths.points] == [4, 8, 16]
    # Decode grows linearly: equal steps in length add equal time per extra token.
    assert (e2e[2] - e2e[1]) / 8 == pytest.approx((e2e[1] - e2e[0]) / 4)
    assert lengths.knee is None and "only defined" in lengths.knee_note()
    grid = sampling_grid([0.0, 1.0], [0.5, 1.0])
    assert grid == ((0.0, 0.5), (0.0, 1.0), (1.0, 0.5), (1.0, 1.0))
    res = run_sweep(engine, SweepPlan(kind="sampling", values=grid, batch_size=2, runs=1, warmup=0))
    assert [p.label for p in res.points] == ["T=0 top-p=0.5", "T=0 top-p=1", "T=1 top-p=0.5", "T=1 top-p=1"]
    assert [(p.temperature, p.top_p) for p in res.points] == list(grid)
    assert all(p.sample_text for p in res.points)


def test_budget_preset_by_name_and_no_pick() -> None:
    engine = loaded(ScriptedEngine())
    result = run_sweep(engine, plan(latency_budget={"e2e_p50": 1e-6}))
    assert result.budget_pick is None and "no complete point stays within it" in result.budget_note()
    result = run_sweep(engine, plan(latency_budget="chat"))
    assert result.budget_limits == {"ttft_p90": 0.5, "tpot_p90": 0.05}
    assert "rule of thumb" in result.budget_note()
    # Batch 1 × 2 runs gives 2 samples: no p90, so it cannot qualify under a p90 budget.
    assert result.budget_pick is not None and result.budget_pick.batch_size != 1


@pytest.mark.parametrize(
    "bad",
    [
        {"values": (0,)}, {"values": (1025,)}, {"runs": 0}, {"warmup": -1}, {"max_new_tokens": 0},
        {"latency_budget": "nope"}, {"latency_budget": {"e2e_p77": 1.0}}, {"values": ()},
        {"sampling": SamplingParams(top_p=0.0)}, {"kind": "colour"},
    ],
)
def test_bad_sweep_plans_are_refused(bad: dict) -> None:
    with pytest.raises(InvalidInput):
        run_sweep(loaded(ScriptedEngine()), plan(**bad))


def test_sweep_result_json_and_csv_export(tmp_path) -> None:
    engine = loaded(ScriptedEngine(fail_at_batch=16))
    result = run_sweep(engine, plan(values=(1, 4, 16), latency_budget={"e2e_p50": 5.0}))
    out = write_json(tmp_path / "sweep.json", result)
    data = json.loads(out.read_text())
    assert [p["batch_size"] for p in data["points"]] == [1, 4, 16]
    first = data["points"][0]
    assert set(first["ttft_s"]) == {"p50", "p90", "p99", "mean", "n"}
    assert first["output_tokens_per_s"] == pytest.approx(result.points[0].output_tokens_per_s)
    assert data["points"][2]["status"] == "error" and data["points"][2]["e2e_s"]["p50"] is None
    assert data["knee"]["threshold_pct"] == 10 and data["knee"]["batch_size"] in (1, 4)
    assert data["budget_pick"]["batch_size"] == 4
    assert data["engine"]["engine"] == "scripted"
    assert data["plan"]["values"] == [1, 4, 16]
    path = write_csv(tmp_path / "sweep.csv", result.rows())
    rows = list(csv.DictReader(path.open()))
    assert [r["batch_size"] for r in rows] == ["1", "4", "16"]
    assert float(rows[1]["output_tokens_per_s"]) == pytest.approx(result.points[1].output_tokens_per_s)
    assert float(rows[1]["e2e_p50_s"]) == pytest.approx(result.points[1].e2e_s.p50)
    assert rows[0]["ttft_p90_s"] == ""  # 2 samples: p90 not reported
    assert rows[2]["status"] == "error" and "out of memory" in rows[2]["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.csv", "sweep.json"]  # no temp files left


# ------------------------------------------------------------------------------------------------------ export


def test_export_is_atomic_on_failure(tmp_path, monkeypatch) -> None:
    target = tmp_path / "out.json"
    write_json(target, {"v": 1})

    def boom(src: str, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tui_lab.lab.export.os.replace", boom)
    with pytest.raises(Exception, match="No space left"):
        write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # the temp file is gone


def test_export_helpers(tmp_path) -> None:
    assert to_jsonable({"a": float("nan"), "b": (1, float("inf")), "c": SamplingParams()})["a"] is None
    assert to_jsonable({"b": (1, float("inf"))}) == {"b": [1, None]}
    assert csv_text([{"a": 1, "b": None}, {"a": 2, "c": [1, 2]}]) == "a,b,c\n1,,\n2,,\"[1, 2]\"\n"
    assert export_format("x/y.JSON") == "json" and export_format("r.csv") == "csv"
    with pytest.raises(InvalidInput, match=r"\.json or \.csv"):
        export_format("results.txt")
    nested = write_csv(tmp_path / "new" / "dir" / "r.csv", [{"x": 1}])
    assert nested.read_text() == "x\n1\n"
    with pytest.raises(InvalidInput):
        write_json(tmp_path, {})


# ------------------------------------------------------------------------------------------------- comparisons


def test_cpu_vs_gpu_without_a_gpu_still_runs_the_cpu_side() -> None:
    made: list[str] = []

    def factory(device: str) -> ScriptedEngine:
        made.append(device)
        return ScriptedEngine()

    seen: list[tuple[str, float]] = []
    res = cpu_vs_gpu(factory, "Hello world", max_new_tokens=6, runs=3, warmup=1,
                     gpu_check=lambda: (False, "no CUDA GPU is visible"),
                     on_run=lambda dev, run: seen.append((dev, run.e2e_s)))
    assert made == ["cpu"]
    cpu, gpu = res.device("cpu"), res.device("cuda")
    assert cpu.available and len(cpu.runs) == 3 and len(seen) == 3
    assert all(r.output_tokens == 6 for r in cpu.runs)
    assert cpu.median_e2e_s == pytest.approx(sorted(r.e2e_s for r in cpu.runs)[1])
    assert cpu.median_tokens_per_s == pytest.approx(6 / cpu.median_e2e_s)
    assert cpu.e2e_range_s[0] <= cpu.median_e2e_s <= cpu.e2e_range_s[1]
    assert not gpu.available and "no CUDA GPU" in gpu.reason
    assert res.speedup is None and res.note.startswith("no GPU")
    data = res.to_dict()
    assert data["devices"][0]["median_e2e_s"] == pytest.approx(cpu.median_e2e_s)


def test_cpu_vs_gpu_with_two_devices_and_a_failing_load() -> None:
    slow = StepModel(decode_base=0.05)
    fast = StepModel(decode_base=0.005)
    res = cpu_vs_gpu(lambda d: ScriptedEngine(timing=slow if d == "cpu" else fast), "Hi", max_new_tokens=5,
                     runs=2, warmup=0, gpu_check=lambda: (True, "fake GPU"))
    assert res.speedup is not None and res.speedup > 5
    assert "faster" in res.note

    class NoCuda(ScriptedEngine):
        def load(self, progress=None):  # noqa: ANN001, ANN201
            raise DeviceUnavailable("CUDA was requested but no GPU is available", "use --device cpu")

    res = cpu_vs_gpu(lambda d: ScriptedEngine() if d == "cpu" else NoCuda(), "Hi", max_new_tokens=3, runs=1,
                     gpu_check=None)
    assert res.device("cpu").runs and not res.device("cuda").available
    assert res.device("cuda").reason == "CUDA was requested but no GPU is available; use --device cpu"
    with pytest.raises(InvalidInput, match="prompt must be some text"):
        validate_params("cpu_vs_gpu", {"prompt": "  ", "runs": 1})


def test_kv_cache_compare_naive_steps_grow_cached_stay_flat() -> None:
    res = kv_cache_compare(lambda kv: RecomputeEngine(kv_cache=kv), "The future of AI is", max_new_tokens=24)
    naive, cached = res.mode(False), res.mode(True)
    assert len(naive.step_times_s) == len(cached.step_times_s) == 24
    assert naive.growth() > 2.0  # later steps recompute more
    assert cached.growth() == pytest.approx(1.0)
    assert res.same_text is True
    assert res.speedup > 1.0 and res.ratio is not None and res.ratio.pairs == 3 and res.ratio.measurable
    assert len(naive.e2e_runs_s) == len(cached.e2e_runs_s) == 3
    assert naive.step_times_s[0] == pytest.approx(naive.e2e_s - sum(naive.step_times_s[1:]))
    data = res.to_dict()
    assert data["modes"][0]["kv_cache"] is False and data["modes"][1]["kv_cache"] is True


def test_kv_cache_compare_with_ready_engines_and_stop() -> None:
    engines = {False: loaded(RecomputeEngine(False)), True: loaded(RecomputeEngine(True))}
    res = kv_cache_compare(engines=engines, prompt="Hi", max_new_tokens=4)
    assert res.same_text and engines[True].info is not None  # given engines are not unloaded
    stop = threading.Event()
    stop.set()
    res = kv_cache_compare(engines=engines, prompt="Hi", max_new_tokens=4, stop=stop)
    assert res.partial and not res.complete and all(not m.e2e_runs_s for m in res.modes)
    assert res.speedup is None and res.same_text is None and "nothing is compared" in res.note
    with pytest.raises(InvalidInput):
        kv_cache_compare(prompt="Hi")


# ------------------------------------------------------------------------------------------------- experiments


def test_every_experiment_of_the_lessons_is_in_the_inventory_with_valid_defaults() -> None:
    wanted = {"generate", "batch_sweep", "length_sweep", "sampling_grid", "cpu_vs_gpu", "kv_cache_compare",
              "tokenize", "padding", "logits", "modalities", "roofline", "graphs_compare", "prefix_cache",
              "queueing"}
    assert wanted <= set(names())
    for name in names():
        exp = get(name)
        assert exp.kind in ("run", "sweep", "compare", "inspect")
        assert exp.title and exp.description and "\n" not in exp.description
        assert validate_params(name, {}) == validate_params(name, {p.name: p.default for p in exp.params})


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("generate", {"batch_size": 0}, "batch_size must be in 1..1024"),
        ("generate", {"batch_size": 1025}, "batch_size must be in 1..1024"),
        ("generate", {"batch_size": 2.5}, "whole number"),
        ("generate", {"max_new_tokens": 0}, "max_new_tokens"),
        ("generate", {"top_p": 0}, "top_p must be in (0, 1]"),
        ("generate", {"top_p": 1.5}, "top_p must be in (0, 1]"),
        ("generate", {"temperature": -0.1}, "temperature must be >= 0"),
        ("generate", {"repetition_penalty": 0}, "repetition_penalty must be > 0"),
        ("generate", {"top_k": -1}, "top_k must be >= 0"),
        ("generate", {"prompt": "   "}, "prompt must be some text"),
        ("generate", {"colour": "red"}, "has no parameter 'colour'"),
        ("batch_sweep", {"batch_sizes": [1, 8, 2048]}, "batch_sizes must be in 1..1024"),
        ("batch_sweep", {"batch_sizes": []}, "non-empty list"),
        ("batch_sweep", {"runs": 0}, "runs must be in 1..100"),
        ("batch_sweep", {"latency_budget": "fast"}, "latency_budget must be one of"),
        ("sampling_grid", {"top_ps": [0.5, 0.0]}, "top_ps must be in (0, 1]"),
        ("cpu_vs_gpu", {"devices": ["tpu"]}, "devices must be one of"),
        ("generate", {"device": "gpu"}, "has no parameter 'device'"),
        ("generate", {"temperature": "nan"}, "finite"),
        ("nonexistent", {}, "unknown experiment"),
    ],
)
def test_validate_params_refuses_bad_values(name: str, params: dict, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_params(name, params)
    assert message in str(info.value)
    assert "\n" not in error_text(info.value)


def test_validate_params_normalises_and_builds_plans() -> None:
    p = validate_params("generate", {"batch_size": "8", "temperature": 1, "ignore_eos": "yes"})
    assert p["batch_size"] == 8 and p["temperature"] == 1.0 and p["ignore_eos"] is True
    assert sampling_from(p).temperature == 1.0
    assert validate_params("batch_sweep", {"batch_sizes": "1, 8,32"})["batch_sizes"] == [1, 8, 32]
    assert validate_params("batch_sweep", {"latency_budget": 2})["latency_budget"] == {"e2e_p50": 2.0}
    bp = sweep_plan("batch_sweep", {"batch_sizes": [1, 8], "runs": 2, "latency_budget": {"e2e_p90": 3}})
    assert bp.kind == "batch" and bp.values == (1, 8) and bp.runs == 2 and bp.sampling.ignore_eos
    lp = sweep_plan("length_sweep", {"lengths": [8, 16], "batch_size": 4})
    assert lp.kind == "length" and lp.values == (8, 16) and lp.batch_size == 4
    gp = sweep_plan("sampling_grid", {"temperatures": [0, 1], "top_ps": [1]})
    assert gp.values == ((0.0, 1.0), (1.0, 1.0))
    with pytest.raises(AssertionError):
        sweep_plan("generate")
    # A plan built from a lesson's params runs.
    result = run_sweep(loaded(ScriptedEngine()), sweep_plan("batch_sweep", {"batch_sizes": [1, 2], "runs": 1,
                                                                          "max_new_tokens": 4}))
    assert len(result.points) == 2 and result.budget_limits == {"ttft_p90": 0.5, "tpot_p90": 0.05}


def test_error_text_is_one_line_with_the_hint() -> None:
    assert error_text(OutOfMemory("out of memory at batch 64.", hint="try 32")) == "out of memory at batch 64; try 32"
    assert error_text(InvalidInput("bad value")) == "bad value"
    assert error_text(DeviceUnavailable("no CUDA;\n  details", hint="use --device cpu.")) == (
        "no CUDA; details; use --device cpu."
    )


def test_lab_modules_import_neither_textual_nor_torch() -> None:
    from tests.test_layers import heavy_modules_after

    code = (
        "import tui_lab.lab.sweep, tui_lab.lab.compare, tui_lab.lab.export, tui_lab.lab.runner, tui_lab.views\n"
        "import tui_lab.lab.prompts, tui_lab.cli\n"
        "from tui_lab.lab import inventory\n"
        "inventory.experiments()\n"
        "tui_lab.views.view_for(object)\n"
    )
    assert heavy_modules_after(code, ("textual", "torch", "transformers", "vllm")) == []


def test_token_steps_are_recorded_per_request_in_order() -> None:
    from tui_lab.engines.events import RequestFinished
    from tui_lab.lab.run import RunRecorder

    sampling = SamplingParams(max_new_tokens=3)
    rec = RunRecorder([Request("r0", "a"), Request("r1", "b")], sampling)
    for ev in [RequestSubmitted("r0", 1.0, 2), RequestSubmitted("r1", 1.0, 2),
               TokenStep(["r0", "r1"], [5, 6], ["x", "y"], 1.5), TokenStep(["r0", "r1"], [7, 8], ["z", "w"], 1.6),
               RequestFinished("r0", 1.6, "length"), TokenEvent("r1", 9, "!", 1.9, 2),
               RequestFinished("r1", 1.9, "length")]:
        rec.add(ev)
    res = rec.finish(1.0)
    r0, r1 = res.requests
    assert r0.token_ids == [5, 7] and r0.text == "xz" and r0.trace.event_times == [1.5, 1.6]
    # a token event after kept steps lands after them
    assert r1.token_ids == [6, 8, 9] and r1.trace.event_tokens == [1, 1, 2] and r1.text == "yw!"
    assert not res.partial


def test_a_stopped_kv_comparison_claims_no_speedup_and_no_text_verdict() -> None:
    """Stopped during the KV-cache run, the comparison said "KV cache is 98.6x faster" and "the texts differ"."""
    engines = {False: loaded(RecomputeEngine(False)), True: loaded(RecomputeEngine(True))}
    stop = threading.Event()
    seen: list[str] = []

    def on_mode(mode) -> None:  # noqa: ANN001
        seen.append(mode.mode)
        if mode.kv_cache is False and mode.complete_runs == 2:
            stop.set()  # the second no-cache run finished: stop before its cache partner runs

    res = kv_cache_compare(engines=engines, prompt="Hi", max_new_tokens=6, runs=3, stop=stop, on_mode=on_mode)
    assert res.partial and not res.complete
    assert res.speedup is None and res.same_text is None and res.to_dict()["speedup"] is None
    assert "nothing is compared" in res.note
    from tui_lab.views import render, to_text

    text = to_text(render(res, 100), 100)
    assert "faster" not in text and "differ" not in text and "nothing is compared" in text


def test_a_ratio_whose_range_covers_one_is_not_measurable() -> None:
    from tui_lab.metrics.spread import paired_ratio

    noisy = paired_ratio([1.0, 1.3, 0.8], [1.1, 1.0, 1.0])
    assert noisy is not None and not noisy.measurable and "not measurable here" in noisy.verdict("speed-up")
    clear = paired_ratio([2.0, 2.2, 1.9], [1.0, 1.0, 1.0])
    assert clear is not None and clear.measurable and clear.low == pytest.approx(1.9)
    assert "too few repeats" in paired_ratio([2.0], [1.0]).verdict("speed-up")


def test_written_results_are_readable_like_any_file(tmp_path) -> None:
    """Results went out owner-only (0600, the temporary file's mode) whatever the umask said."""
    import stat

    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "r.json", {"v": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_run_says_what_the_engine_built_before_it_and_keeps_it_out_of_the_figures() -> None:
    """The first run at a new batch size captured its CUDA graphs inside TTFT: half the warm speed, read as the
    answer. The engine builds the shape before the run starts; the run says so and how long it took."""
    from tui_lab.engines.base import Request, SamplingParams
    from tui_lab.engines.scripted import FakeClock, ScriptedEngine
    from tui_lab.lab.run import execute_run
    from tui_lab.views import render, to_text

    clock = FakeClock()

    class Capturing(ScriptedEngine):
        built: set[int] = set()

        def prepare(self, requests, sampling) -> float:
            if len(requests) in self.built:
                return 0.0
            self.built.add(len(requests))
            clock.advance(1.5)
            return 1.5

    engine = Capturing(clock=clock)
    engine.load()
    requests = [Request(f"r{i}", "hi") for i in range(4)]
    first = execute_run(engine, requests, SamplingParams(max_new_tokens=8))
    again = execute_run(engine, requests, SamplingParams(max_new_tokens=8))
    assert first.setup_s == 1.5 and again.setup_s == 0.0
    assert first.summary().ttft_s.p50 == pytest.approx(again.summary().ttft_s.p50)  # setup not in TTFT
    assert "batch 4's CUDA graphs were captured first (1.50 s" in " ".join(to_text(render(first, 200), 200).split())
    assert "captured first" not in to_text(render(again, 200), 200)
    assert first.to_dict()["setup_s"] == 1.5
