"""How long planned work takes here: the experiments' planned work, the engine's measured pace, the estimate.

Every time here is the scripted engine's fake clock or an injected pace: nothing depends on this machine.
"""

from __future__ import annotations

import pytest

from tui_lab.engines.scripted import FakeClock, ScriptedEngine, StepModel
from tui_lab.lab.experiment import RunContext
from tui_lab.lab.inventory import experiments, get
from tui_lab.lab.pace import CALIBRATION_BATCHES, Pace, about, calibrate, observe_run, observe_step
from tui_lab.lab.planned import PlannedRun, prompt_tokens, reload
from tui_lab.lab.run import Generate, execute_run, make_requests, sampling_from

TIMING = StepModel(prefill_per_token=0.001, decode_base=0.02, decode_per_seq=0.005)
PACE = Pace("cpu", load_s=6.0, steps=((1, 0.1), (8, 0.24)), prefills=((10, 0.15), (80, 0.5)))
"""An injected pace: decode 0.1 s at batch 1 and 0.24 s at batch 8; prefill 0.1 s + 5 ms a token."""


def scripted() -> ScriptedEngine:
    engine = ScriptedEngine(clock=FakeClock(), timing=TIMING)
    engine.load()
    return engine


def test_which_devices_are_a_cpu() -> None:
    from tui_lab.lab.pace import runs_on_cpu

    assert runs_on_cpu("cpu") and runs_on_cpu("CPU:0") and not runs_on_cpu("cuda:0 (NVIDIA H100)")
    assert not runs_on_cpu("remote 127.0.0.1:8000") and not runs_on_cpu("scripted")


def test_calibration_measures_the_decode_step_at_each_batch_and_the_prefill() -> None:
    pace = calibrate(scripted(), load_s=3.0)
    assert [b for b, _ in pace.steps] == list(CALIBRATION_BATCHES)
    for batch, step in pace.steps:
        assert step == pytest.approx(TIMING.decode_base + TIMING.decode_per_seq * batch)
    assert len(pace.prefills) == len(CALIBRATION_BATCHES) and pace.load_s == 3.0 and pace.known
    assert pace.device == "scripted"


def test_a_batch_the_engine_refuses_is_left_out_of_the_calibration() -> None:
    engine = ScriptedEngine(clock=FakeClock(), timing=TIMING, fail_at_batch=8)
    engine.load()
    assert [b for b, _ in calibrate(engine).steps] == [1, 2]


def test_decode_steps_are_drawn_between_and_beyond_the_measured_batches() -> None:
    assert PACE.step_s(1) == 0.1 and PACE.step_s(8) == 0.24
    assert PACE.step_s(4) == pytest.approx(0.1 + 0.02 * 3)
    on_gpu = Pace("cuda:0 (NVIDIA H100)", 20.0, PACE.steps, PACE.prefills)
    assert on_gpu.step_s(16) == pytest.approx(0.24 + 0.02 * 8)  # the last slope goes on
    assert PACE.step_s(16) == pytest.approx(0.24 * 2)  # on a CPU at least in proportion to the batch
    assert PACE.step_s(1) <= PACE.step_s(2) <= PACE.step_s(64)
    flat = Pace("cuda", 1.0, ((1, 0.01), (8, 0.01)), PACE.prefills)
    assert flat.step_s(256) == 0.01  # a GPU's flat step stays flat
    assert Pace("cpu").step_s(4) is None and Pace("cpu").seconds([PlannedRun(1, 8, 4)]) is None


def test_the_prefill_is_a_fixed_cost_and_a_cost_per_token() -> None:
    assert PACE.prefill_s(10) == pytest.approx(0.15) and PACE.prefill_s(80) == pytest.approx(0.5)
    assert PACE.prefill_s(200) == pytest.approx(0.1 + 0.005 * 200)
    one = Pace("cpu", steps=((1, 0.1),), prefills=((10, 0.2),))
    assert one.prefill_s(20) == pytest.approx(0.4) and one.prefill_s(5) == pytest.approx(0.2)


def test_a_plan_costs_its_prefills_decode_steps_repeats_and_loads() -> None:
    run = PlannedRun(batch_size=8, new_tokens=33, prompt_tokens=10)
    once = PACE.prefill_s(80) + 32 * PACE.step_s(8)
    assert PACE.seconds([run]) == pytest.approx(once)
    assert PACE.seconds([PlannedRun(8, 33, 10, repeats=3, loads=2)]) == pytest.approx(3 * once + 2 * 6.0)
    naive, cached = PlannedRun(1, 16, 10, recompute=True), PlannedRun(1, 16, 10)
    assert PACE.seconds([naive]) > PACE.seconds([cached])
    assert PACE.seconds([]) == 0.0 and PACE.seconds(None) is None


def test_a_variant_for_other_hardware_is_skipped_or_makes_the_estimate_unknown() -> None:
    gpu_run, cpu_run = PlannedRun(1, 8, 4, runs_on="gpu", loads=1), PlannedRun(1, 8, 4, runs_on="cpu", loads=1)
    assert PACE.seconds([cpu_run, gpu_run]) == PACE.seconds([cpu_run])  # no GPU here: named, not run
    on_gpu = Pace("cuda:0 (NVIDIA H100)", 20.0, PACE.steps, PACE.prefills)
    assert on_gpu.seconds([cpu_run]) is None  # nothing measured the CPU beside the GPU
    assert Pace("cpu", None, PACE.steps, PACE.prefills).seconds([PlannedRun(1, 8, 4, loads=1)]) is None


def test_finished_runs_refine_the_pace() -> None:
    engine = scripted()
    result = execute_run(engine, make_requests(["one two three"], 4), sampling_from({"max_new_tokens": 9}))
    refined = observe_run(PACE, result)
    assert refined.step_s(4) == pytest.approx(TIMING.decode_base + 4 * TIMING.decode_per_seq)
    assert (4, refined.step_s(4)) in refined.steps and refined.step_s(8) == 0.24
    assert len(refined.prefills) == len(PACE.prefills) + 1
    assert observe_step(PACE, 8, 0.3).step_s(8) == 0.3 and observe_step(PACE, 8, None) is PACE


def test_the_estimate_of_a_sweep_matches_what_the_sweep_takes_on_the_same_engine() -> None:
    engine = scripted()
    pace = calibrate(engine)
    experiment = get("batch_sweep")
    params = experiment.validate({"batch_sizes": [1, 4, 16], "max_new_tokens": 24, "runs": 2, "warmup": 1})
    estimate = pace.seconds(experiment.planned_work(params))
    assert isinstance(engine.clock, FakeClock)
    start = engine.clock()
    experiment.run(params, RunContext(engine=engine, engine_name="scripted"))
    taken = engine.clock() - start
    assert estimate is not None and abs(estimate - taken) / taken < 0.1


def test_every_experiment_plans_its_work_or_says_it_is_not_known() -> None:
    must_know = {"generate", "batch_sweep", "length_sweep", "sampling_grid", "kv_cache_compare", "cpu_vs_gpu",
                 "graphs_compare", "tool_metrics", "energy_cost", "answer_latency", "load_loop", "disaggregation",
                 "structured_output", "speculation", "roofline", "lm_head_share", "load_run", "load_sweep",
                 "weight_precision", "kv_capacity", "preemption", "interference"}
    known_on_vllm = {"prefix_cache", "queueing", "load_run", "load_sweep", "interference", "preemption"}
    for experiment in experiments():
        for engine in ("transformers", "vllm"):
            plan = experiment.planned_work(experiment.validate(), engine)
            assert plan is None or all(isinstance(run, PlannedRun) and (run.repeats >= 1 or run.loads >= 1)
                                       for run in plan), experiment.name
            if experiment.name in must_know and engine == "transformers" or \
                    experiment.name in known_on_vllm and engine == "vllm":
                assert plan, (experiment.name, engine)
    # Computed or modelled only, away from the engine that measures them: nothing to wait for.
    for name in ("one_gpu_or_two", "lora_adapters", "tokenize"):
        assert get(name).planned_work(get(name).validate(), "transformers") == []
    # A vLLM load priced with another engine's pace would be a guess: not known.
    for name in ("prefix_cache", "queueing", "static_vs_continuous"):
        assert get(name).planned_work(get(name).validate(), "transformers") is None


def test_a_vllm_variant_beside_the_loaded_vllm_costs_a_reload_too() -> None:
    # The loaded vLLM makes room for the variant and is loaded again after it: two loads, not one.
    interference = get("interference")
    params = interference.validate({"streams": 2})
    on_vllm, elsewhere = interference.planned_work(params, "vllm"), interference.planned_work(params, "transformers")
    assert sum(run.loads for run in on_vllm) == 3 and sum(run.loads for run in elsewhere) == 0
    assert reload().loads == 1 and PACE.seconds([reload()]) == pytest.approx(PACE.load_s)
    assert PACE.seconds([reload("gpu")]) == 0.0  # no GPU here: that variant is not run, nor its reload


def test_an_open_loop_lasts_at_least_until_its_last_arrival() -> None:
    load = get("load_run")
    slow = load.planned_work(load.validate({"mode": "rate", "request_rate": 0.5, "num_requests": 10}))
    assert slow[-1].at_least_s == pytest.approx(20.0)
    assert PACE.seconds(slow) >= 20.0
    closed = load.planned_work(load.validate({"mode": "concurrency", "concurrency": 4, "num_requests": 10}))
    cold, waves = closed
    assert (cold.batch_size, waves.batch_size, waves.repeats, waves.at_least_s) == (1, 4, 3, 0.0)
    sweep = get("load_sweep")
    plan = sweep.planned_work(sweep.validate({"concurrencies": [1, 2], "runs": 2}))
    assert plan[0].batch_size == 1 and [r.batch_size for r in plan[1:]] == [1, 1, 2, 2]  # one cold request in all


def test_planned_work_follows_the_parameters() -> None:
    sweep = get("batch_sweep")
    plan = sweep.planned_work(sweep.validate({"batch_sizes": [1, 2], "runs": 2, "warmup": 1, "max_new_tokens": 8}))
    assert [(r.batch_size, r.new_tokens, r.repeats) for r in plan] == [(1, 8, 3), (2, 8, 3)]
    kv = get("kv_cache_compare")
    naive, cached = kv.planned_work(kv.validate({"runs": 2}))
    assert naive.recompute and not cached.recompute and naive.repeats == cached.repeats == 2 and naive.loads == 1
    cpu_gpu = get("cpu_vs_gpu")
    assert [r.runs_on for r in cpu_gpu.planned_work(cpu_gpu.validate())] == ["cpu", "gpu"]
    generate = Generate()
    (run,) = generate.planned_work(generate.validate({"batch_size": 8, "max_new_tokens": 5}))
    assert (run.batch_size, run.new_tokens) == (8, 5)
    speculation = get("speculation")
    assert len(speculation.planned_work(speculation.validate(), "vllm")) > \
        len(speculation.planned_work(speculation.validate(), "transformers"))


def test_prompt_tokens_grow_with_the_longest_prompt() -> None:
    assert prompt_tokens(["a"]) == 2 and prompt_tokens(["a", "x" * 400]) == 101


def test_how_long_reads_for_people() -> None:
    assert about(None) == "—" and about(0.2) == "under a second here" and about(7.4) == "about 7 s here"
    assert about(68) == "about 70 s here" and about(250) == "about 4 min here"
