"""Every registered experiment runs headless through ``inference-lab experiment`` and its result pickles."""

from __future__ import annotations

import json
import pickle

import pytest

from tui_lab.cli import main
from tui_lab.engines.scripted import ScriptedEngine
from tui_lab.lab.experiment import RunContext, get, names

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


def test_the_lessons_first_fifteen_registered() -> None:
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
    from tui_lab.lab.experiments import check, schema
    from tui_lab.lab.serving import MAX_SERVING_REQUESTS
    from tui_lab.params import MAX_NEW_TOKENS, MAX_REQUESTS

    assert MAX_REQUESTS == MAX_BATCH_SIZE == MAX_SERVING_REQUESTS  # serving capped at 256 before
    assert check("num_requests", "1024") == 1024
    assert check("max_new_tokens", MAX_NEW_TOKENS) == MAX_NEW_TOKENS
    with pytest.raises(InvalidInput):
        check("max_new_tokens", MAX_NEW_TOKENS + 1)
    limits = {p.name: p.max for p in schema("queueing")}
    assert limits["num_requests"] == MAX_REQUESTS and limits["max_new_tokens"] == MAX_NEW_TOKENS


@pytest.mark.parametrize("name", [n for n in names() if n not in NEEDS_TOKENIZER | NEEDS_SESSIONS
                                  and get(n).kind != "sweep" and n != "generate"])
def test_every_result_type_has_a_view(name: str) -> None:
    from rich.console import Console

    import tui_lab.ui.views.results  # noqa: F401  (registers the views)
    from tui_lab.ui.views.registry import view_for

    exp = get(name)
    engine = ScriptedEngine() if exp.needs_engine else None
    if engine is not None:
        engine.load()
    result = exp.run(exp.validate(SMALL.get(name, {})), RunContext(engine=engine, engine_name="scripted"))
    view = view_for(result)
    assert view is not None, type(result).__name__
    for width in (60, 100):
        console = Console(width=width, record=True, color_system=None)
        console.print(view(result, width))
        assert console.export_text().strip()
