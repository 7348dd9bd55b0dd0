"""Every step of every shipped lesson, lived in the app: n loads the step, r runs it, and the step's
prediction resolves to the metric it names (or says why not), saved in the progress file.

The steps come from the lesson files, so a new step or lesson is walked without editing this file.
The scripted engine has no tokenizer or weights: steps whose inspection reads the model's own
tokenizer or layers (``tui_lab.lab.pipeline.NEEDS_ENGINE``) must say so beside the guess here, and
resolve on the embedded model in ``test_model_inspection_steps_resolve_in_the_app``.
"""

from __future__ import annotations

import json

import pytest

from tests.test_ui_app import ready, text_of, wait_until
from tui_lab.lab.pipeline import NEEDS_ENGINE
from tui_lab.lessons import load_lessons, measure_metric
from tui_lab.ui import experiments as lab_experiments
from tui_lab.ui.app import AppOptions, LabApp
from tui_lab.ui.testing import make_test_app
from tui_lab.ui.widgets.lesson_pane import LessonPane

LESSONS = load_lessons()

pytestmark = pytest.mark.timeout(240)


def _result_data(app: LabApp) -> dict:
    """The last result's JSON form, as the prediction reads it."""
    doc = app.last_result
    assert doc is not None
    return doc if doc["kind"] == "run" else doc["result"]


async def _walk(pilot, app: LabApp, lesson, on_step) -> None:
    """Open each step of ``lesson`` with n (the first is open already), run it, call ``on_step``."""
    pane = app.query_one(LessonPane)
    for index, step in enumerate(lesson.steps):
        if index:
            await pilot.press("n")
            await pilot.pause(0.02)
        assert pane.lesson.id == lesson.id and pane.step.key == step.key
        if not step.experiment:
            continue
        assert app.experiment == step.experiment, f"{step.key}: its experiment was not loaded"
        runs = app._run_id
        await pilot.press("r")
        await wait_until(pilot, lambda runs=runs: app._run_id > runs or bool(app.results), timeout=10)
        await wait_until(pilot, lambda: app.busy is None, timeout=60)
        await pilot.pause(0.05)
        await on_step(step)


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lesson: lesson.id)
async def test_every_step_resolves_its_prediction(lesson, tmp_path) -> None:
    path = tmp_path / "progress.json"
    app = make_test_app(lessons=LESSONS, lesson=lesson.id)
    app.options.save_progress, app.options.progress_path = True, str(path)
    expected_done: dict[str, float | None] = {}

    async def check(step) -> None:
        shown = text_of(app, "#predict-result") if step.predict else ""
        if step.experiment in NEEDS_ENGINE:
            # No tokenizer in the scripted engine: the run fails, and the guess box says the real cause.
            if step.predict:
                assert "not measured (the run failed:" in shown and "transformers engine" in shown, shown
            return
        assert "failed" not in text_of(app, "#run-note"), f"{step.key}: {text_of(app, '#run-note')}"
        if step.predict is None:
            expected_done[step.key] = None
            return
        measured = measure_metric(_result_data(app), step.predict.metric)
        assert measured.value is not None, f"{step.key}: {step.predict.metric}: {measured.reason}"
        text = lab_experiments.format_value(step.predict, measured.value)
        assert f"measured: {text}" in " ".join(shown.split()), (step.key, shown)
        expected_done[step.key] = measured.value

    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
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
               if step.experiment in NEEDS_ENGINE and step.predict]


@pytest.mark.real_model
@pytest.mark.timeout(600)
async def test_model_inspection_steps_resolve_in_the_app(hf_engine) -> None:
    """The inspection steps that read the model's tokenizer and layers, on the embedded model."""
    assert MODEL_STEPS, "the lessons predict something about the model's tokenizer or layers"
    options = AppOptions(model="embedded", engine="transformers", device="cpu",
                         engine_factory=lambda name, **kw: _LentEngine(hf_engine),
                         lessons=LESSONS, cursor_blink=False, save_progress=False)
    app = LabApp(options)
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        pane = app.query_one(LessonPane)
        for lesson, step in MODEL_STEPS:
            pane.lesson_index = LESSONS.index(lesson)
            pane.step_index = lesson.steps.index(step)
            pane._render_step(announce=True)
            await wait_until(pilot, lambda step=step: app.experiment == step.experiment)
            runs = app._run_id
            await pilot.press("r")
            await wait_until(pilot, lambda runs=runs: app._run_id > runs)
            await wait_until(pilot, lambda: app.busy is None, timeout=300)
            await pilot.pause(0.05)
            measured = measure_metric(_result_data(app), step.predict.metric)
            assert measured.value is not None, (step.key, measured.reason, text_of(app, "#run-note"))
            shown = " ".join(text_of(app, "#predict-result").split())
            assert f"measured: {lab_experiments.format_value(step.predict, measured.value)}" in shown, shown
