"""Every step of every shipped lesson, lived in the app: n loads the step, r runs it, and the step's
prediction resolves to the metric it names (or says why not), saved in the progress file.

The steps come from the lesson files, so a new step or lesson is walked without editing this file.
The scripted engine has no tokenizer or weights: steps whose inspection reads the model's own
tokenizer or layers (``NEEDS_MODEL`` below) must say so beside the guess here, and
resolve on the embedded model in ``test_model_inspection_steps_resolve_in_the_app``.
"""

from __future__ import annotations

import json

import pytest

from tests.test_ui_app import opened, saving_app, settled, text_of, wait_until
from tui_lab.lessons import load_lessons, measure_metric
from tui_lab.ui.app import AppOptions, LabApp
from tui_lab.ui.prediction import format_value
from tui_lab.ui.testing import make_test_app
from tui_lab.ui.widgets.lesson_pane import LessonPane
from tui_lab.views import to_text

LESSONS = load_lessons()
NEEDS_MODEL = frozenset({"tokenize", "padding", "logits", "roofline"})
"""Inspections that read the loaded model's own tokenizer or layers (the scripted engine has neither)."""
NEEDS_SESSIONS = frozenset({"load_run"})
"""Loads that add requests while others run: the scripted engine here runs static batches and says so (the load's
figures are measured on a serving engine in tests/test_load.py)."""
NEEDS_REAL_ENGINE = frozenset({"lm_head_share", "structured_output", "lora_adapters"})
"""Their predicted figure needs the model's layers or vLLM: the result says so, and the guess box gives that
reason (tests/test_concepts.py measures them on the real engines)."""

pytestmark = pytest.mark.timeout(240)


def _result_data(app: LabApp) -> dict:
    """The last result's JSON form, as the prediction reads it."""
    doc = app.store.last_document()
    assert doc is not None
    return doc if doc["kind"] == "run" else doc["result"]


async def _walk(pilot, app: LabApp, lesson, on_step) -> None:
    """Open each step of ``lesson`` with n (the first is open already), run it, call ``on_step``."""
    pane = app.query_one(LessonPane)
    for index, step in enumerate(lesson.steps):
        if index:
            await pilot.press("n")
            await pilot.pause()
        assert pane.lesson.id == lesson.id and pane.step.key == step.key
        if not step.experiment:
            continue
        assert app.loaded.name == step.experiment, f"{step.key}: its experiment was not loaded"
        runs = app.runs.run_id
        await pilot.press("r")
        await wait_until(pilot, lambda runs=runs: app.runs.run_id > runs or bool(app.results), timeout=10)
        await wait_until(pilot, lambda: app.busy is None, timeout=60)
        await settled(pilot)
        await on_step(step)


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lesson: lesson.id)
async def test_every_step_resolves_its_prediction(lesson, tmp_path) -> None:
    path = tmp_path / "progress.json"
    app = saving_app(path, lessons=LESSONS, lesson=lesson.id)
    expected_done: dict[str, float | None] = {}

    async def check(step) -> None:
        shown = text_of(app, "#predict-result") if step.predict else ""
        if step.experiment in NEEDS_MODEL:
            # No tokenizer in the scripted engine: the run fails, and the guess box says the real cause.
            if step.predict:
                assert "not measured (the run failed:" in shown and "transformers engine" in shown, shown
            return
        if step.experiment in NEEDS_SESSIONS:
            said = " ".join(text_of(app, "#run-note").split())
            assert "runs static batches" in said and "load modes" in said, said
            return
        assert "failed" not in text_of(app, "#run-note"), f"{step.key}: {text_of(app, '#run-note')}"
        if step.experiment in NEEDS_REAL_ENGINE:
            if step.predict:
                said = " ".join(shown.split())
                assert "not measured (" in said and ("engine" in said or "vLLM" in said), said
            return
        if step.predict is None:
            expected_done[step.key] = None
            return
        measured = measure_metric(_result_data(app), step.predict.metric)
        assert measured.value is not None, f"{step.key}: {step.predict.metric}: {measured.reason}"
        text = format_value(step.predict, measured.value)
        assert f"measured: {text}" in " ".join(shown.split()), (step.key, shown)
        expected_done[step.key] = measured.value

    async with opened(app, size=(160, 48)) as pilot:
        await _walk(pilot, app, lesson, check)
    record = json.loads(path.read_text())["lessons"][lesson.id]["steps"]
    for key, value in expected_done.items():
        assert record[key]["done"] is True, key
        if value is not None:
            assert record[key]["result"] == pytest.approx(value), key
    reading = [s.key for s in lesson.steps[:-1] if not s.experiment]
    assert all(record[key]["done"] for key in reading), "reading steps are done once the learner moves on"


class _LentEngine:
    """The session's loaded transformers engine lent to the app (its tokenizer and model included);
    quitting the app does not unload it."""

    def __init__(self, engine: object) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> object:
        return getattr(self._engine, name)

    def load(self, progress=None):  # noqa: ANN001, ANN201
        """Already loaded."""
        if progress:
            progress("ready", 1.0)
        return self._engine.info

    def unload(self) -> None:
        """The fixture owns the engine."""


MODEL_STEPS = [(lesson, step) for lesson in LESSONS for step in lesson.steps
               if step.experiment in NEEDS_MODEL and step.predict]


@pytest.mark.real_model
@pytest.mark.timeout(600)
async def test_model_inspection_steps_resolve_in_the_app(hf_engine) -> None:
    """The inspection steps that read the model's tokenizer and layers, on the embedded model."""
    assert MODEL_STEPS, "the lessons predict something about the model's tokenizer or layers"
    options = AppOptions(engine="transformers", engine_options={"model": "embedded", "device": "cpu"},
                         engine_factory=lambda name, **kw: _LentEngine(hf_engine),
                         lessons=LESSONS, cursor_blink=False, save_progress=False)
    app = LabApp(options)
    async with opened(app, size=(120, 36)) as pilot:
        pane = app.query_one(LessonPane)
        for lesson, step in MODEL_STEPS:
            pane.lesson_index = LESSONS.index(lesson)
            pane.step_index = lesson.steps.index(step)
            pane._render_step(announce=True)
            await wait_until(pilot, lambda step=step: app.loaded.name == step.experiment)
            runs = app.runs.run_id
            await pilot.press("r")
            await wait_until(pilot, lambda runs=runs: app.runs.run_id > runs)
            await wait_until(pilot, lambda: app.busy is None, timeout=300)
            await settled(pilot)
            measured = measure_metric(_result_data(app), step.predict.metric)
            assert measured.value is not None, (step.key, measured.reason, text_of(app, "#run-note"))
            shown = " ".join(text_of(app, "#predict-result").split())
            assert f"measured: {format_value(step.predict, measured.value)}" in shown, shown
            assert "Some cells are cut" not in text_of(app, "#inspection"), step.key  # laid out for 120×36


async def test_every_preset_key_reaches_the_run() -> None:
    """What a step's preset sets is what its run gets, with the Controls laid over it."""
    from tui_lab.lab.inventory import get

    app = make_test_app(lessons=LESSONS)
    async with opened(app, size=(160, 48)) as pilot:
        pane = app.query_one(LessonPane)
        for lesson_index, lesson in enumerate(LESSONS):
            for step_index, step in enumerate(lesson.steps):
                if not step.experiment:
                    continue
                pane.lesson_index, pane.step_index = lesson_index, step_index
                pane._render_step(announce=True)
                await pilot.pause()
                params = app.loaded.run_params(app.settings)
                wanted = get(step.experiment).validate(step.params)
                for key in step.params:
                    assert key in params, f"{lesson.id} {step.key}: {key} does not reach the run"
                    assert params[key] == wanted[key], f"{lesson.id} {step.key}: {key}"


async def test_experiment_values_the_lessons_ask_for_are_in_the_controls() -> None:
    """Lesson 01 asks for other image sizes, lesson 03 for another seq_len, lesson 02 for another budget."""
    from textual.widgets import Input

    app = make_test_app(lessons=LESSONS, lesson="01")
    async with opened(app, size=(160, 48)) as pilot:
        pane = app.query_one(LessonPane)
        wanted = {"modalities": ("image_width", "800", 800), "roofline": ("seq_len", "4096", 4096),
                  "batch_sweep": ("latency_budget", "rag", "rag")}
        for name, (key, typed, value) in wanted.items():
            lesson, step = next((lesson, step) for lesson in LESSONS for step in lesson.steps
                                if step.experiment == name and key in step.params)
            pane.lesson_index, pane.step_index = LESSONS.index(lesson), lesson.steps.index(step)
            pane._render_step(announce=True)
            await pilot.press("2")
            box = app.query_one(f"#exp-{key}", Input)
            assert box.value == str(step.params[key])
            box.focus()
            box.value = typed
            await pilot.press("enter")
            await wait_until(pilot, lambda key=key, value=value: app.loaded.run_params(app.settings)[key] == value)
        box = app.query_one("#exp-latency_budget", Input)
        box.value = "lunch"
        await pilot.press("enter")
        await wait_until(pilot, lambda: "latency_budget must be one of: chat, rag" in str(
            app.query_one("#controls-error").render()))
        assert app.loaded.run_params(app.settings)["latency_budget"] == "rag"
        await pilot.press("escape")
        assert box.value == "rag"
        pane.move(1)  # the next step's preset replaces what was typed
        await pilot.pause()
        assert app.loaded.run_params(app.settings).get("latency_budget") == app.loaded.values.get("latency_budget")


async def test_each_lesson_opens_with_its_intro_and_says_what_it_needs() -> None:
    from textual.widgets import Markdown

    app = make_test_app(lessons=LESSONS)
    async with opened(app, size=(160, 48)):
        pane = app.query_one(LessonPane)
        for index, lesson in enumerate(LESSONS):
            pane.lesson_index, pane.step_index = index, 0
            pane._render_step(announce=True)
            first = app.query_one("#lesson-md", Markdown).source
            assert lesson.intro.splitlines()[0] in first
            assert first.index(lesson.intro.splitlines()[0]) < first.index(f"## {lesson.steps[0].title}")
            pane.move(1)
            second = app.query_one("#lesson-md", Markdown).source
            assert lesson.intro.splitlines()[0] not in second
            for text in (first, second):
                assert (f"**This lesson needs:** {lesson.needs}" in text) == bool(lesson.needs)
        assert any(lesson.needs for lesson in LESSONS)


async def test_results_fit_the_panel_at_120x36() -> None:
    """Every comparison and inspection the scripted engine runs is laid out for the panel's real width."""
    from tui_lab.views.fit import cut_cells

    app = make_test_app(lessons=LESSONS)
    seen: set[str] = set()
    async with opened(app, size=(120, 36)) as pilot:
        pane = app.query_one(LessonPane)
        view = app.query_one("#inspection")
        for lesson_index, lesson in enumerate(LESSONS):
            for step_index, step in enumerate(lesson.steps):
                if (not step.experiment or step.experiment in seen or step.experiment in NEEDS_MODEL
                        or step.experiment in ("generate", "batch_sweep", "length_sweep", "sampling_grid")):
                    continue
                seen.add(step.experiment)
                pane.lesson_index, pane.step_index = lesson_index, step_index
                pane._render_step(announce=True)
                await pilot.pause()
                runs = app.runs.run_id
                await pilot.press("r")
                await wait_until(pilot, lambda runs=runs: app.runs.run_id > runs)
                await wait_until(pilot, lambda: app.busy is None, timeout=60)
                await settled(pilot)
                shown = view.content
                assert "Some cells are cut" not in text_of(app, "#inspection"), step.experiment
                assert not cut_cells(shown, view.size.width), step.experiment
        assert {"cpu_vs_gpu", "kv_cache_compare", "graphs_compare", "static_vs_continuous"} <= seen


def test_padding_grid_keeps_its_ends_when_the_batch_is_long() -> None:
    from tui_lab.views.inspect import padding_columns

    assert padding_columns(10, None) == (7, list(range(10)))
    assert padding_columns(10, 68) == (5, list(range(10)))
    cell, shown = padding_columns(40, 68)
    assert cell == 4 and -1 in shown and shown[0] == 0 and shown[-1] == 39
    assert len(shown) * cell <= 68 - 12


def test_a_table_too_wide_for_the_panel_says_l_widens_it() -> None:
    from rich.table import Table

    from tui_lab.views.fit import cut_cells

    table = Table()
    for n in range(8):
        table.add_column(f"column {n}", no_wrap=True)
    table.add_row(*[f"value {n} of a wide table" for n in range(8)])
    assert cut_cells(table, 68) and not cut_cells(table, 400)


async def test_a_stopped_sweep_does_not_answer_for_its_last_point() -> None:
    """Lesson 02 asks for the median E2E at the longest length: a sweep stopped before it says so."""
    from tui_lab.engines.scripted import StepModel

    lesson = next(lesson for lesson in LESSONS
                  if any(s.predict and s.predict.metric.startswith("points[-1]") and s.experiment == "length_sweep"
                         for s in lesson.steps))
    index, step = next((i, s) for i, s in enumerate(lesson.steps) if s.experiment == "length_sweep")
    app = make_test_app(lessons=LESSONS, lesson=lesson.id, real_time=True,
                        timing=StepModel(decode_base=0.004, decode_per_seq=0.0))
    async with opened(app, size=(160, 48)) as pilot:
        pane = app.query_one(LessonPane)
        pane.step_index = index
        pane._render_step(announce=True)
        await wait_until(pilot, lambda: app.loaded.name == "length_sweep")
        await pilot.press("r")
        await wait_until(pilot, lambda: len(app.results) >= 1, timeout=30)
        await pilot.press("s")
        await wait_until(pilot, lambda: app.busy is None, timeout=30)
        await settled(pilot)
        last = step.params["lengths"][-1]
        shown = " ".join(text_of(app, "#predict-result").split())
        assert f"not measured (the run was stopped before {last} tokens)" in shown, shown


def _device_comparison():
    from tui_lab.lab.compare import DeviceComparison, DeviceTiming, TimedRun

    runs = [TimedRun(i, 2.5 + i * 0.1, 0.15, 24, 24 / (2.5 + i * 0.1), "x") for i in range(3)]
    result = DeviceComparison(prompt="The future", max_new_tokens=24)
    result.devices = [DeviceTiming("cpu", True, runs=runs),
                      DeviceTiming("cuda", False, reason="no NVIDIA GPU is visible to torch here (a long reason)")]
    return result


@pytest.mark.parametrize("width", [100, 68, 46, 40])
def test_cpu_vs_gpu_keeps_device_run_and_rate_whole_and_drops_the_bars_first(width: int) -> None:
    """At narrow widths the view kept an empty bar column and cut device, run and tok/s to "…"."""
    from tui_lab.views.compare import device_view
    from tui_lab.views.fit import cut_cells, natural_width

    shown = device_view(_device_comparison(), width)
    assert not cut_cells(shown, width) and natural_width(shown.renderables[0]) <= width
    text = to_text(shown, width)
    assert ("█" in text) == (width >= 60)  # a bar where it has room, no empty bar column where it has none
    assert "cuda" in text and "not run" in text and text.count("a long reason") == 1  # said once, under the table


def test_the_cut_note_says_l_only_while_the_lesson_takes_part_of_the_width(monkeypatch) -> None:
    from rich.table import Table

    from tui_lab.ui.widgets import result_pane

    wide = Table()
    for n in range(8):
        wide.add_column(f"column {n}", no_wrap=True)
    wide.add_row(*[f"value {n} of a wide table" for n in range(8)])
    monkeypatch.setattr(result_pane, "render", lambda result, width: wide)
    beside = " ".join(to_text(result_pane.draw(object(), 68, beside_lesson=True), 68).split())
    assert "press l until the panel is alone" in beside
    alone = " ".join(to_text(result_pane.draw(object(), 68, beside_lesson=False), 68).split())
    assert "widen the terminal" in alone and "press l" not in alone


async def test_the_result_pane_knows_when_the_panel_is_alone() -> None:
    from tui_lab.ui.widgets.result_pane import ResultPane

    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        pane = app.query_one(ResultPane)
        assert pane._beside_lesson()
        await pilot.press("l", "l")  # lesson only, then the panel alone
        assert app.query_one("#main").has_class("-no-lesson") and not pane._beside_lesson()
    narrow = make_test_app()
    async with opened(narrow, size=(80, 24)) as pilot:
        assert not narrow.query_one(ResultPane)._beside_lesson()  # stacked: the panel has the whole width
