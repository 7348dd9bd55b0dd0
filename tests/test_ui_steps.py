"""A lesson step in the app: its values for the device the engine runs on, how long its run will take here,
and what ``r`` does on a step without an experiment (scripted engines, fake clocks)."""

from __future__ import annotations

import pytest

from tests.test_ui_app import ready, run_and_wait, text_of, wait_until
from tui_lab.lessons import Lesson, Step
from tui_lab.ui.testing import FIXTURE_LESSONS, make_test_app

pytestmark = pytest.mark.timeout(60)

CPU_LESSON = [Lesson("01", "Device presets", 5, (
    Step("A sweep", "Sweep the batch.", "batch_sweep",
         {"batch_sizes": [1, 4, 16, 64], "max_new_tokens": 8, "runs": 1, "warmup": 0},
         cpu={"batch_sizes": [1, 4], "max_new_tokens": 4}),
    Step("Reading", "No experiment here."),
))]
"""A step whose experiment block carries CPU values, then a reading step."""


def cpu_app(model: str):
    return make_test_app(lessons=CPU_LESSON, engine_spec="tests.ui_engines:make_engine", model=model)


async def test_a_step_takes_its_cpu_values_when_the_engine_runs_on_a_cpu():
    app = cpu_app("on-cpu")
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        await pilot.pause()
        assert app.panel.on_cpu
        assert app.loaded.values["batch_sizes"] == [1, 4] and app.loaded.values["max_new_tokens"] == 4
        assert "batch_sweep (its CPU values) · " in text_of(app, "#step-run")
        await run_and_wait(pilot, app)
        assert [row["batch_size"] for row in app.results] == [1, 4]


async def test_the_step_takes_its_other_values_again_when_the_engine_moves_off_the_cpu():
    app = cpu_app("on-cpu")
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        await pilot.pause()
        assert app.loaded.values["batch_sizes"] == [1, 4]
        app.settings = app.settings.with_option("model", "scripted")
        app.load_engine()
        await wait_until(pilot, lambda: app.engine_state == "ready" and not app.panel.on_cpu)
        await pilot.pause()
        assert app.loaded.values["batch_sizes"] == [1, 4, 16, 64] and app.loaded.values["max_new_tokens"] == 8
        assert "CPU values" not in text_of(app, "#step-run")


async def test_the_step_says_how_long_its_run_takes_here_once_the_engine_is_measured():
    app = make_test_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        await wait_until(pilot, lambda: app.estimate.pace is not None)
        await pilot.pause()
        first = text_of(app, "#step-run")
        assert first.startswith("r runs generate · ") and " here" in first
        seconds = app.estimate.seconds(app.loaded, app.settings)
        assert seconds is not None and seconds > 0
        await pilot.press("b", "b", "b")  # a bigger batch takes longer, and the line says so at once
        assert app.settings.batch_size == 64 and app.estimate.seconds(app.loaded, app.settings) > seconds
        assert 64 not in dict(app.estimate.pace.steps)  # the calibration stops at 32
        await run_and_wait(pilot, app)  # a finished run refines the pace at its own batch size
        assert 64 in dict(app.estimate.pace.steps)
        app.estimate.forget()
        app.settings = app.settings
        assert "time here: —" in text_of(app, "#step-run")


async def test_r_on_a_step_without_an_experiment_says_so_and_answers_no_step():
    app = make_test_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        await pilot.press("n", "n")
        assert app.query_one("#lesson-title").content.startswith("01 · Test lesson · step 3/3")
        line = text_of(app, "#step-run")
        assert "this step has no experiment" in line and "r runs batch_sweep as set in the panel" in line
        await run_and_wait(pilot, app)
        assert any("this step has no experiment" in str(n.message) for n in app._notifications)
        assert app.runs.loaded is not None and app.runs.loaded.step is None  # the sweep step is not answered
        assert app.results and app.results[0]["step"] == ""


def test_the_fixture_lesson_still_has_a_reading_step():
    assert not FIXTURE_LESSONS[0].steps[-1].experiment


async def test_moving_to_another_step_during_a_run_keeps_naming_the_running_experiment():
    """After stepping back during a sweep, the top line named the previous step's experiment."""
    from tui_lab.engines.scripted import StepModel

    app = make_test_app(real_time=True, timing=StepModel(decode_base=0.03, decode_per_seq=0.0))
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        await pilot.press("n")
        app.settings = app.settings.with_(max_new_tokens=60)
        await pilot.press("r")
        await wait_until(pilot, lambda: "run 1/1" in text_of(app, "#progress-line"))
        await pilot.press("p")  # back to the generate step while the sweep runs
        assert app.loaded.name == "generate" and app.busy == "sweep"
        assert "batch_sweep · running" in text_of(app, "#status") and "generate" not in text_of(app, "#status")
        assert text_of(app, "#progress-line").startswith("batch_sweep: ")
        assert text_of(app, "#step-run").startswith("batch_sweep is running")
        await pilot.press("s")
        await wait_until(pilot, lambda: app.busy is None, timeout=30)
        assert "generate · ready" in text_of(app, "#status")


REPLAY_LESSON = [Lesson("01", "A recorded sweep", 5, (
    Step("The sweep as recorded", "A sweep recorded elsewhere, played back here.", "batch_sweep",
         {"batch_sizes": [1, 2, 4], "max_new_tokens": 16, "runs": 1, "warmup": 1, "ignore_eos": True},
         cpu={"batch_sizes": [1]}, replay="cpu-gemma-3-270m-batch-sweep"),
))]
"""A step with a recording to play on a CPU (the shipped CPU trace stands in for a GPU's)."""


async def test_on_a_cpu_a_step_with_a_recording_plays_it_and_says_so():
    app = make_test_app(lessons=REPLAY_LESSON, engine_spec="tests.ui_engines:make_engine", model="on-cpu")
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        await pilot.pause()
        assert app.panel.on_cpu and app.loaded.replay == "cpu-gemma-3-270m-batch-sweep"
        assert app.loaded.values["batch_sizes"] == [1, 2, 4]  # the recorded values, not the CPU ones
        assert "as recorded on a GPU (trace cpu-gemma-3-270m-batch-sweep)" in text_of(app, "#step-run")
        await run_and_wait(pilot, app)
        await wait_until(pilot, lambda: len(app.results) == 3)
        assert [row["batch_size"] for row in app.results] == [1, 2, 4]
        assert all(row["state"] == "ok" for row in app.results), app.results
        assert app.engine_state == "ready"  # the loaded engine stayed
        note = " ".join(text_of(app, "#charts-note").split())
        assert "replay of" in note and "every figure is the recording's, not this machine's" in note
        settings = app.store.last_document()["settings"]  # what an export writes beside the result
        assert settings["engine"] == "replay"
        assert settings["engine_options"] == {"trace": "cpu-gemma-3-270m-batch-sweep"}


async def test_off_a_cpu_the_step_runs_the_loaded_engine():
    app = make_test_app(lessons=REPLAY_LESSON)
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        await pilot.pause()
        assert not app.panel.on_cpu and app.loaded.replay is None
