"""Every experiment of the inventory runs headless; its result pickles and has a view."""

from __future__ import annotations

import json
import pickle

import pytest

from tui_lab.cli import main
from tui_lab.engines.scripted import ScriptedEngine
from tui_lab.lab.experiment import RunContext
from tui_lab.lab.inventory import get, names

# The scripted engine has no tokenizer: these inspections need a real model (checked to refuse cleanly).
NEEDS_TOKENIZER = {"tokenize", "padding", "logits", "roofline"}
# Load modes add requests while others run: the scripted engine has no sessions (checked to refuse cleanly).
NEEDS_SESSIONS = {"load_run", "load_sweep"}
SMALL = {
    "batch_sweep": {"batch_sizes": "1,2", "max_new_tokens": "4", "runs": "1"},
    "length_sweep": {"lengths": "2,4", "batch_size": "2", "runs": "1"},
    "sampling_grid": {"temperatures": "0,1", "top_ps": "1", "max_new_tokens": "4", "runs": "1"},
}


CORE = {"generate", "batch_sweep", "length_sweep", "sampling_grid", "cpu_vs_gpu", "kv_cache_compare", "tokenize",
        "padding", "logits", "modalities", "roofline", "graphs_compare", "prefix_cache", "queueing",
        "static_vs_continuous"}


def test_the_lessons_first_fifteen_are_in_the_inventory() -> None:
    assert CORE <= set(names())
    assert len(names()) == len(set(names()))


@pytest.mark.parametrize("name", [n for n in names() if n not in NEEDS_TOKENIZER | NEEDS_SESSIONS])
def test_experiment_json_headless(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["experiment", name, "--engine", "scripted", "--json", "-q"]
    for key, value in SMALL.get(name, {}).items():
        argv += ["--param", f"{key}={value}"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert isinstance(data, dict) and data


@pytest.mark.parametrize("name", sorted(NEEDS_TOKENIZER))
def test_inspection_without_tokenizer_refuses_in_one_line(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", name, "--engine", "scripted", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "transformers" in err


@pytest.mark.parametrize("name", sorted(NEEDS_SESSIONS))
def test_load_modes_without_sessions_refuse_in_one_line(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", name, "--engine", "scripted", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "vllm" in err


def test_bad_param_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", "batch_sweep", "--engine", "scripted", "--param", "batch_sizes=0,x"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["experiment", "nope", "--engine", "scripted"]) == 2
    assert main(["experiment", "generate", "--param", "oops"]) == 2


def test_list_names_every_experiment(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in names())


@pytest.mark.parametrize("name", [n for n in names() if n not in NEEDS_TOKENIZER | NEEDS_SESSIONS])
def test_result_pickles(name: str) -> None:
    exp = get(name)
    params = exp.validate(SMALL.get(name, {}))
    engine = ScriptedEngine() if exp.needs_engine else None
    if engine is not None:
        engine.load()
    points: list = []
    ctx = RunContext(engine=engine, engine_name="scripted", partial=points.append)
    result = exp.run(params, ctx)
    again = pickle.loads(pickle.dumps(result))
    assert type(again) is type(result)
    for point in points:
        pickle.loads(pickle.dumps(point))


def test_stop_keeps_partial_sweep() -> None:
    exp = get("batch_sweep")
    engine = ScriptedEngine()
    engine.load()
    ctx = RunContext(engine=engine, engine_name="scripted")
    ctx.progress = lambda p: ctx.stop.set() if "2" in p.text.split(" · ")[0] else None
    result = exp.run(exp.validate({"batch_sizes": "1,2,4", "max_new_tokens": "4", "runs": "1"}), ctx)
    assert result.partial
    assert len([p for p in result.points if not p.partial]) >= 1


def test_one_limit_each_from_the_parameter_module() -> None:
    from tui_lab.engines.base import MAX_BATCH_SIZE
    from tui_lab.errors import InvalidInput
    from tui_lab.params import MAX_NEW_TOKENS, MAX_NEW_TOKENS_PARAM, MAX_REQUESTS

    queueing = get("queueing")
    assert MAX_REQUESTS == MAX_BATCH_SIZE
    assert queueing.param("num_requests").check("1024") == 1024
    assert MAX_NEW_TOKENS_PARAM.check(MAX_NEW_TOKENS) == MAX_NEW_TOKENS
    with pytest.raises(InvalidInput):
        MAX_NEW_TOKENS_PARAM.check(MAX_NEW_TOKENS + 1)
    limits = {p.name: p.max for p in queueing.params}
    assert limits["num_requests"] == MAX_REQUESTS and limits["max_new_tokens"] == MAX_NEW_TOKENS


def test_a_whole_number_typed_as_text_reads_the_same_for_every_experiment() -> None:
    """``generate`` took batch_size "8" while ``kv_capacity`` refused context "8": one meaning of int now."""
    assert get("generate").validate({"batch_size": "8"})["batch_size"] == 8
    assert get("kv_capacity").validate({"context": "16"})["context"] == 16
    for exp in (get(n) for n in names()):
        for p in exp.params:
            if p.type == "int" and p.default is not None:
                assert p.check(str(p.default)) == p.default, (exp.name, p.name)


def test_nan_and_infinity_are_refused_for_every_number() -> None:
    from tui_lab.errors import InvalidInput

    for exp in (get(n) for n in names()):
        for p in exp.params:
            if p.type == "number":
                for bad in ("nan", float("nan"), "inf", float("-inf")):
                    with pytest.raises(InvalidInput, match="finite"):
                        p.check(bad)


@pytest.mark.parametrize("name", [n for n in names() if n not in NEEDS_TOKENIZER | NEEDS_SESSIONS])
def test_every_result_type_has_a_view(name: str) -> None:
    from tui_lab.views import render, to_text, view_for

    exp = get(name)
    assert view_for(exp.result_type) is not None, exp.result_type.__name__
    engine = ScriptedEngine() if exp.needs_engine else None
    if engine is not None:
        engine.load()
    result = exp.run(exp.validate(SMALL.get(name, {})), RunContext(engine=engine, engine_name="scripted"))
    assert isinstance(result, exp.result_type)
    for width in (60, 100):
        assert to_text(render(result, width), width).strip()


def test_experiment_text_output_is_the_view(capsys: pytest.CaptureFixture[str]) -> None:
    """``experiment generate`` printed its name, partial and error and no figure; now it prints the view."""
    assert main(["experiment", "generate", "--engine", "scripted", "-q", "--param", "batch_size=2",
                 "--param", "max_new_tokens=4"]) == 0
    out = capsys.readouterr().out
    for figure in ("TTFT", "TPOT", "ITL", "E2E", "output throughput"):
        assert figure in out
    assert "partial: False" not in out
    assert main(["experiment", "batch_sweep", "--engine", "scripted", "-q", "--param", "batch_sizes=1,2",
                 "--param", "max_new_tokens=3", "--param", "runs=1"]) == 0
    out = capsys.readouterr().out
    assert "batch 1" in out and "batch 2" in out and "knee" in out
    assert main(["experiment", "modalities", "-q"]) == 0
    out = capsys.readouterr().out
    assert "image" in out and "tokens" in out and "audio" in out


# ------------------------------------------------------------------------------------- the parameter schema


def _preset_steps() -> list[tuple[str, str, dict]]:
    from tui_lab.lessons import load_lessons

    return [(lesson.id, step.experiment, dict(step.params)) for lesson in load_lessons() for step in lesson.steps
            if step.experiment]


@pytest.mark.parametrize(("lesson", "name", "params"), _preset_steps(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_lesson_preset_key_is_in_its_experiments_schema(lesson: str, name: str, params: dict) -> None:
    schema = {p.name for p in get(name).params}
    assert set(params) <= schema, f"lesson {lesson}: {name} has no {sorted(set(params) - schema)}"
    checked = get(name).validate(params)  # the presets go through the same schema as the CLI
    assert set(checked) <= schema


def test_every_schema_validates_its_own_defaults() -> None:
    for name in names():
        exp = get(name)
        params = exp.params
        assert params and len({p.name for p in params}) == len(params), name
        defaults = {p.name: p.default for p in params if p.default is not None}
        assert exp.validate(defaults) == exp.validate({}), name


def test_new_token_and_request_limits_are_the_same_everywhere() -> None:
    from tui_lab.params import MAX_NEW_TOKENS, MAX_REQUESTS

    requests = {"batch_size", "batch_sizes", "num_requests", "max_num_seqs", "concurrency", "concurrencies",
                "streams", "throughput_batch", "probe_limit", "sweep"}
    for name in names():
        for p in get(name).params:
            if p.name in ("max_new_tokens", "lengths", "stream_tokens"):
                assert p.max == MAX_NEW_TOKENS, (name, p.name)
            # A load's num_requests counts every request it sends over time, not the ones in flight.
            elif p.name in requests and not (name.startswith("load_") and p.name == "num_requests"):
                assert p.max == MAX_REQUESTS, (name, p.name)


def test_experiment_help_shows_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", "queueing", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--param KEY=VALUE" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert "int 1..1024" in lines["num_requests"] and "default: 64" in lines["num_requests"]
    assert "int 1..32768" in lines["max_new_tokens"]
    assert main(["experiment", "--list", "weight_precision"]) == 0
    out = capsys.readouterr().out
    assert "max_new_tokens" in out and "int 2..32768" in out and "bool" in out and "queueing" not in out
    assert main(["experiment", "--help"]) == 0
    assert "--param KEY=VALUE" in capsys.readouterr().out


def test_param_values_are_read_by_type_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    # A lesson 05 experiment: whole numbers and true/false typed as text.
    argv = ["experiment", "weight_precision", "--engine", "scripted", "-q", "--json",
            "--param", "max_new_tokens=4", "--param", "measure_fp8=false"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["rows"]
    # A bare number as the latency budget is an E2E p50 limit in seconds.
    argv = ["experiment", "batch_sweep", "--engine", "scripted", "-q", "--json", "--param", "batch_sizes=1,2",
            "--param", "max_new_tokens=3", "--param", "runs=1", "--param", "latency_budget=2"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["budget"] == {"e2e_p50": 2.0}
    for bad in ("max_new_tokens=32769", "measure_fp8=maybe"):
        assert main(["experiment", "weight_precision", "--engine", "scripted", "-q", "--param", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and bad.split("=")[0] in err


def test_param_text_reading_and_description() -> None:
    from tui_lab.params import BATCH_SIZE, IGNORE_EOS, TEMPERATURE, TOP_P, Param

    sweep, compare, padding = get("batch_sweep"), get("cpu_vs_gpu"), get("padding")
    assert BATCH_SIZE.check(BATCH_SIZE.from_text("8")) == 8
    assert sweep.param("batch_sizes").check(sweep.param("batch_sizes").from_text("1, 8,32")) == [1, 8, 32]
    assert TOP_P.check(TOP_P.from_text("0.9")) == 0.9
    assert IGNORE_EOS.check(IGNORE_EOS.from_text("yes")) is True
    assert compare.param("devices").check(compare.param("devices").from_text("cpu,cuda")) == ["cpu", "cuda"]
    assert padding.param("prompts").check(padding.param("prompts").from_text("a, b")) == ["a, b"]
    seed = Param("seed", "int", None, "how", 0, 10, optional=True)
    assert seed.from_text("none") is None and seed.check(None) is None
    assert seed.describe().split() == ["seed", "int", "0..10", "default:", "none", "how"]
    assert TOP_P.limits == "(0, 1]" and TEMPERATURE.limits == ">= 0"


def test_sweep_progress_counts_measured_runs_from_one() -> None:
    exp = get("batch_sweep")
    engine = ScriptedEngine()
    engine.load()
    lines: list[str] = []
    ctx = RunContext(engine=engine, engine_name="scripted", progress=lambda p: lines.append(p.text))
    exp.run(exp.validate({"batch_sizes": "1", "max_new_tokens": "2", "runs": "2", "warmup": "1"}), ctx)
    assert lines == ["batch 1 · warm-up", "batch 1 · run 1/2", "batch 1 · run 2/2"]


def test_a_variant_on_another_engine_keeps_only_the_options_that_engine_takes():
    """static_vs_continuous on a loaded vLLM engine builds a transformers variant: vLLM's max_num_seqs
    must not reach the transformers constructor, while model, device and cache carry over."""
    made: list[tuple[str, dict[str, object]]] = []
    ctx = RunContext(engine_name="vllm", engine_options={"model": "arch:gemma-3-270m", "device": "cpu",
                                                         "cache_dir": "/c", "max_num_seqs": 8},
                     engine_factory=lambda name, **options: made.append((name, options)))
    ctx.make_engine("transformers")
    ctx.make_engine("vllm", max_num_seqs=2)
    assert made[0] == ("transformers", {"model": "arch:gemma-3-270m", "device": "cpu", "cache_dir": "/c"})
    assert made[1] == ("vllm", {"model": "arch:gemma-3-270m", "device": "cpu", "cache_dir": "/c", "max_num_seqs": 2})
