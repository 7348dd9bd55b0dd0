"""Pilot tests of the lab app, driven by keys, with the scripted engine (deterministic, no torch)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
from rich.console import Console
from textual.widgets import Input, Label, Static

from tests.test_load import ThreadedEngine
from tui_lab.engines.scripted import StepModel
from tui_lab.errors import GatedModel
from tui_lab.formatting import number
from tui_lab.lab.experiment import Progress
from tui_lab.lab.pace import Pace
from tui_lab.lab.trace import read_trace
from tui_lab.ui.app import LabApp
from tui_lab.ui.loaded import LoadedExperiment
from tui_lab.ui.messages import RunProgress
from tui_lab.ui.screens.help import HelpScreen
from tui_lab.ui.testing import make_test_app
from tui_lab.ui.widgets.charts import SweepCharts
from tui_lab.ui.widgets.engine_banner import EngineBanner
from tui_lab.ui.widgets.live_panel import LivePanel
from tui_lab.ui.widgets.results_table import ResultsTable

pytestmark = pytest.mark.timeout(60)


async def wait_until(pilot, condition, timeout: float = 20.0) -> None:
    """Pause the pilot until ``condition()`` holds (workers run in threads)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.02)


async def settled(pilot) -> None:
    """Let the app process what is queued and draw its charts, figures and tokens now (their redraw
    timers' work, done at once instead of waiting for a tick)."""
    from tui_lab.ui.widgets.charts_pane import ChartsPane
    from tui_lab.ui.widgets.live_panel import LivePanel

    app = pilot.app
    await pilot.pause()
    for pane in app.query(ChartsPane):
        pane.charts.redraw()
    for panel in app.query(LivePanel):
        panel.refresh_tokens()
        panel.refresh_figures()
    await pilot.pause()


async def ready(pilot, app: LabApp) -> None:
    """Wait for the engine to load."""
    await wait_until(pilot, lambda: app.engine_state in ("ready", "failed"))


@asynccontextmanager
async def opened(app: LabApp, size: tuple[int, int] = (80, 24)) -> AsyncIterator:
    """Run ``app`` headless at ``size`` (Textual's own default) and wait for its engine to load."""
    async with app.run_test(size=size) as pilot:
        await ready(pilot, app)
        yield pilot


async def run_and_wait(pilot, app: LabApp) -> None:
    """Press r and wait for the run to end."""
    await pilot.press("r")
    await wait_until(pilot, lambda: app.busy is not None or app.results)
    await wait_until(pilot, lambda: app.busy is None)
    await settled(pilot)


async def start_sweep(pilot, max_new_tokens: int) -> None:
    """Step from the first lesson step to its batch sweep and start it with ``max_new_tokens`` a request."""
    await pilot.press("n")
    pilot.app.settings = pilot.app.settings.with_(max_new_tokens=max_new_tokens)
    await pilot.press("r")


def saving_app(path, **kw) -> LabApp:
    """The test app (``kw`` as ``make_test_app`` takes them) keeping the learner's progress in ``path``."""
    app = make_test_app(**kw)
    app.options.save_progress, app.options.progress_path = True, str(path)
    return app


def live_run(app: LabApp):
    """The run on the Run tab."""
    return app.query_one(LivePanel).live


def with_factory(app: LabApp, factory) -> LabApp:
    """The same test app with an engine factory object (its host loop runs in a thread of this process)."""
    return LabApp(replace(app.options, engine_factory=factory))


def text_of(app: LabApp, selector: str) -> str:
    """The plain text a Static/Label shows (Rich renderables rendered at the widget's width)."""
    widget = app.query_one(selector)
    content = widget.content
    if isinstance(content, str):
        return content
    console = Console(width=max(widget.size.width, 40), file=io.StringIO(), record=True)
    console.print(content)
    return console.export_text()


async def test_first_screen_shows_lesson_and_live_panel():
    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        assert "Test lesson" in text_of(app, "#lesson-title")
        assert "ready" in text_of(app, "#engine-text")
        assert "No run yet" in text_of(app, "#tokens")
        assert app.loaded.name == "generate"
        assert app.settings.max_new_tokens == 16  # the step's preset reached the controls
        await pilot.press("5")
        from tui_lab.telemetry import gpu_available

        available, _ = gpu_available()
        if not available:  # this CI machine: the panel says why there is no telemetry
            assert text_of(app, "#gpu-panel").startswith("no GPU: ")


async def test_run_streams_tokens_and_records_result():
    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        await run_and_wait(pilot, app)
        assert len(app.results) == 1
        row = app.results[0]
        assert row["state"] == "done" and row["output_tokens"] == 16 and row["batch_size"] == 1
        tokens = text_of(app, "#tokens")
        assert "16/16 tokens" in tokens and "TTFT" in tokens
        assert "tokens 16/16" in text_of(app, "#figures")
        assert app.query_one(ResultsTable).row_count == 1


async def test_change_batch_size_by_keys_and_controls():
    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        await pilot.press("b")
        assert app.settings.batch_size == 8
        await pilot.press("b", "b")
        assert app.settings.batch_size == 64
        await pilot.press("B")
        assert app.settings.batch_size == 32
        # Type a value in the controls form.
        await pilot.press("2")
        box = app.query_one("#ctl-batch_size", Input)
        box.focus()
        box.value = ""
        await pilot.press("1", "2", "enter")
        assert app.settings.batch_size == 12
        await pilot.press("escape")
        await run_and_wait(pilot, app)
        assert app.results[-1]["batch_size"] == 12
        assert len(live_run(app).requests) == 12
        # Switch requests and open the all-requests view.
        await pilot.press("1", "right_square_bracket")
        await wait_until(pilot, lambda: text_of(app, "#tokens").startswith("r1"))
        await pilot.press("a")
        await wait_until(pilot, lambda: "r11" in text_of(app, "#requests"))


async def test_invalid_values_are_refused_in_place():
    from tui_lab.ui.settings import GENERAL_FIELDS
    from tui_lab.ui.widgets.controls import box_text

    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        await pilot.press("2")
        before = app.settings
        for field, bad, message in (("batch_size", "3000", "batch_size must be in 1..1024 (got 3000)"),
                                    ("top_p", "0", "top_p must be in (0, 1] (got 0)"),
                                    ("temperature", "-1", "temperature must be >= 0"),
                                    ("max_new_tokens", "abc", "max_new_tokens must be a whole number")):
            box = app.query_one(f"#ctl-{field}", Input)
            box.focus()
            box.value = bad
            await pilot.press("enter")
            await wait_until(pilot, lambda m=message: m in str(app.query_one("#controls-error", Label).render()))
            assert app.settings == before
            box.value = box_text(next(p for p in GENERAL_FIELDS if p.name == field), getattr(before, field))
            await pilot.pause()
        assert str(app.query_one("#controls-error", Label).render()) == ""


async def test_stop_mid_run_keeps_partial_result():
    app = make_test_app(real_time=True, timing=StepModel(decode_base=0.01, decode_per_seq=0.0))
    async with opened(app, size=(160, 48)) as pilot:
        app.settings = app.settings.with_(max_new_tokens=2000)
        await pilot.press("r")
        await wait_until(pilot, lambda: live_run(app) is not None and live_run(app).figures().tokens_done >= 5)
        await pilot.press("s")
        await wait_until(pilot, lambda: app.busy is None, timeout=30)
        row = app.results[-1]
        assert row["state"] == "partial"
        assert 5 <= row["output_tokens"] < 2000
        assert app.store.last_document()["partial"] is True
        assert "partial" in text_of(app, "#run-note")
        assert "cancelled" in text_of(app, "#tokens")


async def test_batch_sweep_fills_charts_point_by_point():
    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        await pilot.press("n")
        assert app.loaded.name == "batch_sweep"
        seen: list[int] = []
        charts = app.query_one(SweepCharts)
        original = charts.add_point

        def spy(point):
            original(point)
            seen.append(len(charts.points))

        charts.add_point = spy
        await run_and_wait(pilot, app)
        assert seen == [1, 2, 3, 4]
        assert [p.label for p in charts.points] == ["batch 1", "batch 4", "batch 16", "batch 64"]
        assert [r["batch_size"] for r in app.results] == [1, 4, 16, 64]
        assert app.results[-1]["output_tokens_per_s"] > app.results[0]["output_tokens_per_s"]
        assert "4 points" in text_of(app, "#charts-note")
        assert app.store.last_document()["result"]["kind"] == "batch"
        # The budget line moves with keys and the pick follows.
        budget = charts.budget_s
        await pilot.press("minus")
        assert charts.budget_s < budget
        for _ in range(30):
            await pilot.press("minus")
        assert charts.pick is None
        assert "no point within it" in text_of(app, "#charts-note")


async def test_export_writes_json_and_csv(tmp_path):
    app = make_test_app(export_dir=str(tmp_path))
    async with opened(app, size=(160, 48)) as pilot:
        await run_and_wait(pilot, app)
        await pilot.press("e")
        await wait_until(pilot, lambda: {p.suffix for p in app.last_export} == {".json", ".csv", ".gz"})
        paths = {p.suffix: p for p in app.last_export}
        # The trace comes from the engine host's recording, in the format --record writes, and reads back.
        trace = read_trace(paths[".gz"])
        assert paths[".gz"].parent == tmp_path and paths[".gz"].name.startswith("generate-")
        assert len(trace.runs) == 1 and trace.runs[0].requests.ids == ["r0"]
        assert trace.runs[0].requests.output_tokens(0) == 16 and trace.meta["experiment"] == "generate"
        assert any(str(paths[".gz"]) in str(n.message) and "trace of generate" in str(n.message)
                   for n in app._notifications)
        doc = json.loads(paths[".json"].read_text())
        assert doc["results"][0]["output_tokens"] == 16
        assert doc["last"]["requests"][0]["output_tokens"] == 16
        assert doc["settings"]["batch_size"] == 1
        rows = list(csv.DictReader(paths[".csv"].open()))
        assert rows[0]["label"] == "run 1" and rows[0]["output_tokens"] == "16"
        await pilot.press("w")
        await wait_until(pilot, lambda: [p.suffix for p in app.last_export] == [".svg"])
        svg = app.last_export[0]
        assert svg.suffix == ".svg" and svg.read_text().startswith("<svg")


async def test_export_before_any_run_says_so(tmp_path):
    app = make_test_app(export_dir=str(tmp_path))
    async with opened(app, size=(160, 48)) as pilot:
        await pilot.press("e")
        await wait_until(pilot, lambda: any("nothing to export" in str(n.message) for n in app._notifications))
        assert not list(tmp_path.iterdir())


async def test_resize_to_80x24_stacks_panels():
    app = make_test_app()
    async with opened(app, size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.screen.has_class("-narrow"))
        lesson = app.query_one("#lesson")
        live = app.query_one("#live")
        assert lesson.region.bottom <= live.region.y  # stacked, not side by side
        await run_and_wait(pilot, app)
        assert "16/16" in text_of(app, "#tokens")
        await pilot.press("l")  # lesson only
        await wait_until(pilot, lambda: not live.display or live.region.height == 0)
        await pilot.press("l")  # panel only
        await wait_until(pilot, lambda: lesson.region.height == 0 and live.region.height > 15)
        await pilot.resize_terminal(160, 48)
        await wait_until(pilot, lambda: app.screen.has_class("-wide"))
        await pilot.press("l")  # both again
        await wait_until(pilot, lambda: lesson.region.right <= live.region.x)  # side by side again


async def test_engine_load_error_is_shown_and_app_keeps_running():
    error = GatedModel("google/gemma-3-270m-it is gated", "accept its licence on the hub, then `hf auth login`")
    app = make_test_app(load_error=error)
    async with opened(app, size=(160, 48)) as pilot:
        banner = " ".join(text_of(app, "#engine-text").split())  # the label wraps at its width
        assert "gated" in banner and "hf auth login" in banner
        await pilot.press("r")
        await pilot.pause()
        assert app.busy is None and not app.results
        # The step's prediction says why nothing was measured: the engine's own reason.
        shown = " ".join(text_of(app, "#predict-result").split())
        assert "not measured (the engine did not load:" in shown and "gated" in shown
        await pilot.press("n")
        assert app.loaded.name == "batch_sweep"


async def test_out_of_memory_during_run_says_what_fits():
    app = make_test_app(fail_at_batch=8)
    async with opened(app, size=(160, 48)) as pilot:
        await pilot.press("b")
        await pilot.press("r")
        await wait_until(pilot, lambda: app.busy is None and "failed" in text_of(app, "#run-note"))
        note = " ".join(text_of(app, "#run-note").split())  # the note wraps with the panel's width
        assert "out of memory at batch size 8" in note and "7" in note
        await pilot.press("B")
        await run_and_wait(pilot, app)
        assert app.results[-1]["state"] == "done"


async def test_prediction_shown_beside_measurement():
    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        await pilot.press("i", "5", "0", "enter")
        assert app.focused is None  # Enter hands the keys back: r runs
        await run_and_wait(pilot, app)
        shown = text_of(app, "#predict-result")
        assert "your guess: 50" in shown
        measured = app.results[0]["output_tokens_per_s"]
        assert f"measured: {number(measured, 'tokens/s')}" in shown


async def test_help_and_command_palette():
    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        # Every key does something the app has, and says what (the help page and the palette show it).
        for binding in LabApp.BINDINGS:
            assert hasattr(app, f"action_{binding.action.split('(')[0]}"), binding.action
            assert binding.tooltip, binding.key
        from textual.command import CommandList, CommandPalette

        def top_hit() -> str:
            commands = app.screen.query_one(CommandList)
            return str(commands.get_option_at_index(0).prompt).lower() if commands.option_count else ""

        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"batch size up")
        await wait_until(pilot, lambda: "batch size up" in top_hit())
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.settings.batch_size == 8)


async def test_stepping_never_leaves_keys_in_a_text_box():
    app = make_test_app()
    async with opened(app, size=(80, 24)) as pilot:
        for _ in range(3):
            await pilot.press("n")
            await pilot.pause()
            assert not isinstance(app.focused, Input)
        await pilot.press("p", "p")
        assert app.query_one("#lesson-title").content.startswith("01 · Test lesson · step 1/3")


async def test_keys_work_while_a_run_streams():
    app = make_test_app(real_time=True, timing=StepModel(decode_base=0.005, decode_per_seq=0.0))
    async with opened(app, size=(160, 48)) as pilot:
        app.settings = app.settings.with_(max_new_tokens=4000)  # stopped below, long before its end
        await pilot.press("r")
        await wait_until(pilot, lambda: live_run(app) is not None and live_run(app).figures().tokens_done > 3)
        await pilot.press("r")  # refused, not queued
        assert any("in progress" in str(n.message) for n in app._notifications)
        await pilot.press("3")
        assert app.query_one("#tabs").active == "charts"
        await pilot.press("s")
        await wait_until(pilot, lambda: app.busy is None, timeout=30)


def test_first_screen_does_not_import_torch():
    from tests.test_layers import heavy_modules_after

    code = (
        "import asyncio\n"
        "from tui_lab.ui.testing import make_test_app\n"
        "async def main():\n"
        "    app = make_test_app()\n"
        "    async with app.run_test() as pilot:\n"
        "        while app.engine_state not in ('ready', 'failed'):\n"
        "            await pilot.pause(0.02)\n"
        "asyncio.run(main())\n"
    )
    assert heavy_modules_after(code, ("torch", "transformers")) == []


async def test_inputs_do_not_blink_in_tests():
    app = make_test_app()
    async with app.run_test() as pilot:
        await pilot.pause()
        assert all(not box.cursor_blink for box in app.query(Input))
        assert isinstance(app.query_one("#status"), Static)


async def test_host_events_still_queued_at_quit_are_dropped():
    # The host's last events can arrive while Textual takes the screen down: showing one then would query a
    # widget that is gone (seen as NoMatches on EngineBanner when a test quit right after its first pause).
    app = make_test_app()
    async with app.run_test() as pilot:
        await pilot.pause()
        late = RunProgress(app.link.generation, 1, Progress("batch 1"))
        assert app._live(late)
    assert not app._live(late)


async def test_stopping_a_sweep_keeps_measured_points():
    # 0.2 s a step: each point of the fixture's sweep takes 1.6 s, so the stop lands inside the sweep even
    # on a loaded 2-core machine (at 10 ms a step the whole sweep could end before the key was read).
    app = make_test_app(real_time=True, timing=StepModel(decode_base=0.2, decode_per_seq=0.0))
    async with opened(app, size=(160, 48)) as pilot:
        await start_sweep(pilot, 40)
        await wait_until(pilot, lambda: len(app.query_one(SweepCharts).points) >= 1)
        await pilot.press("s")
        await wait_until(pilot, lambda: app.busy is None, timeout=10)
        assert 1 <= len(app.results) < 4
        assert app.store.last_document()["result"]["partial"] is True
        assert "partial" in text_of(app, "#charts-note")
        assert "sweep stopped" in text_of(app, "#run-note")


async def test_inspection_shows_the_lessons_view():
    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        app.load_experiment(LoadedExperiment.of("modalities", {}))
        await pilot.press("r")
        await wait_until(pilot, lambda: app.busy is None and app.query_one("#inspection").display)
        shown = text_of(app, "#inspection")
        assert "token" in shown.lower()
        assert app.store.last_document()["kind"] == "modalities"


async def test_inspection_without_a_tokenizer_says_what_to_do():
    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        app.load_experiment(LoadedExperiment.of("tokenize", {}))
        await pilot.press("r")
        await wait_until(pilot, lambda: app.busy is None and "failed" in text_of(app, "#run-note"))
        assert "transformers engine" in text_of(app, "#run-note")


async def test_cpu_vs_gpu_shows_per_run_bars_and_medians():
    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        app.load_experiment(LoadedExperiment.of("cpu_vs_gpu", {"runs": 3, "warmup": 0, "max_new_tokens": 8}))
        await pilot.press("r")
        await wait_until(pilot, lambda: app.busy is None and app.query_one("#inspection").display)
        shown = text_of(app, "#inspection")
        assert shown.count("median") >= 2 and "cpu" in shown and "cuda" in shown and "█" in shown
        doc = app.store.last_document()["result"]
        assert [len(d["runs"]) for d in doc["devices"]] == [3, 3]


async def test_kv_cache_comparison_runs_in_the_panel():
    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        app.load_experiment(LoadedExperiment.of("kv_cache_compare", {"max_new_tokens": 8}))
        await pilot.press("r")
        await wait_until(pilot, lambda: app.busy is None and app.query_one("#inspection").display)
        shown = text_of(app, "#inspection")
        assert "KV cache" in shown and "no cache" in shown


async def test_changing_device_reloads_the_engine():
    from tui_lab.engines.scripted import ScriptedEngine

    calls: list[tuple[str, dict]] = []

    def factory(name, **options):
        calls.append((name, options))
        return ScriptedEngine()

    app = with_factory(make_test_app(), factory)
    async with opened(app, size=(160, 48)) as pilot:
        assert calls[-1] == ("transformers", {"model": "embedded", "device": "cpu"})
        await pilot.press("2")
        box = app.query_one("#ctl-device", Input)
        box.focus()
        box.value = "gpu"  # not a device name: refused, no reload
        await pilot.press("enter")
        assert len(calls) == 1 and "device" in str(app.query_one("#controls-error", Label).render())
        box.value = "auto"
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(calls) == 2 and app.engine_state == "ready")
        assert calls[-1][1]["device"] == "auto"
        assert app.settings.option("device") == "auto"


async def test_progress_is_saved_and_resumed(tmp_path):
    app = saving_app(path := tmp_path / "progress.json")
    async with opened(app, size=(160, 48)) as pilot:
        await pilot.press("i", "4", "2", "enter")
        await run_and_wait(pilot, app)
        await pilot.press("n")
    saved = json.loads(path.read_text())
    record = saved["lessons"]["01"]
    assert record["position"] == 1
    step = next(iter(record["steps"].values()))
    assert str(step["prediction"]) == "42" and step["result"] > 0
    again = make_test_app()
    again.options.save_progress, again.options.progress_path = True, str(path)
    async with again.run_test(size=(160, 48)) as pilot:
        await ready(pilot, again)
        assert "step 2/3" in again.query_one("#lesson-title").content
        assert again.loaded.name == "batch_sweep"


async def test_resume_shows_saved_guess_and_result_and_marks_steps_done(tmp_path):
    app = saving_app(path := tmp_path / "progress.json")
    async with opened(app, size=(160, 48)) as pilot:
        await pilot.press("i", "4", "2", "enter")
        await run_and_wait(pilot, app)
        measured = " ".join(text_of(app, "#predict-result").split()).split("measured: ")[1]
    step = json.loads(path.read_text())["lessons"]["01"]["steps"]["one-request"]
    assert step["done"] is True and step["details"]["measured"] == measured
    again = make_test_app()
    again.options.save_progress, again.options.progress_path = True, str(path)
    async with again.run_test(size=(160, 48)) as pilot:
        await ready(pilot, again)
        shown = " ".join(text_of(again, "#predict-result").split())
        assert shown == f"your guess: 42 measured: {measured} (last session)"
        await pilot.press("n", "n", "n")  # past the reading step at the end: it is done too
    steps = json.loads(path.read_text())["lessons"]["01"]["steps"]
    assert steps["reading-only"]["done"] is True and "a-batch-sweep" not in steps


async def test_lesson_flag_opens_that_lesson():
    from tui_lab.lessons import Lesson, Step
    from tui_lab.ui.testing import FIXTURE_LESSONS

    lessons = [*FIXTURE_LESSONS, Lesson("02", "Second", 3, (Step("Only step", "Text."),))]
    app = make_test_app(lessons=lessons)
    app.options.lesson = "2"
    async with opened(app, size=(160, 48)) as pilot:
        assert app.query_one("#lesson-title").content.startswith("02 · Second · step 1/1")
        await pilot.press("P")
        assert app.query_one("#lesson-title").content.startswith("01 · Test lesson")


async def test_serving_experiment_runs_through_the_host_by_name():
    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        app.load_experiment(LoadedExperiment.of("queueing", {"num_requests": 8, "max_num_seqs": 4,
                                                                  "max_new_tokens": 4}))
        await pilot.press("r")
        await wait_until(pilot, lambda: app.busy is None and (app.query_one("#inspection").display
                                                              or "failed" in text_of(app, "#run-note")))
        assert app.query_one("#inspection").display, text_of(app, "#run-note")
        assert app.store.last_document()["kind"] == "queueing"


async def test_a_step_about_another_engine_refuses_to_run_on_the_loaded_one():
    """Lesson 04's "the same batch on vLLM" must not record a transformers run as vLLM's."""
    from dataclasses import replace

    from tui_lab.engines.scripted import ScriptedEngine

    class NamedTransformers(ScriptedEngine):
        def load(self, progress=None):
            return replace(super().load(progress), engine="transformers")

    from tui_lab.lessons import Lesson, Prediction, Step

    step = Step("The same batch on vLLM", "Run it on vLLM.", "generate", {"max_new_tokens": 4}, engine="vllm",
                predict=Prediction("How fast?", "tokens/s", "summary.output_tokens_per_s"))
    lesson = Lesson("04", "Serving", 5, (step,))
    app = with_factory(make_test_app(lessons=[lesson]), lambda name, **options: NamedTransformers())
    async with opened(app, size=(160, 48)) as pilot:
        assert app.loaded.step is step
        await pilot.press("r")
        await pilot.pause()
        assert app.busy is None and not app.results
        note = " ".join(text_of(app, "#run-note").split())
        assert "this step runs on the vllm engine, but transformers is loaded" in note
        assert "set engine to vllm in Controls (2) and press m, then r" in note
        assert "not measured (this step runs on the vllm engine, but transformers is loaded)" in " ".join(
            text_of(app, "#predict-result").split())
        app.load_experiment(LoadedExperiment.of("generate", {"max_new_tokens": 4}))  # no step: no engine asked for
        await pilot.press("r")
        await wait_until(pilot, lambda: app.busy is None and bool(app.results))


def test_knee_text_signs_and_partial_points_left_out():
    from types import SimpleNamespace

    from tui_lab.metrics import Knee
    from tui_lab.ui.widgets.charts import ChartPoint, knee_text, noise_of, tradeoff_points

    assert "next doubling -31% < 10%" in knee_text(Knee(8, -31.2, 10, "gain per doubling (stayed below)"))
    assert "next doubling +4% < 10%" in knee_text(Knee(8, 4.2, 10, "gain per doubling (stayed below)"))
    assert "+-" not in knee_text(Knee(8, -31.2, 10, "gain per doubling"))

    def point(x, thr, partial=False):
        return ChartPoint(f"batch {x}", x, thr, 1.0, 1.2, 0.1, 0.1, 0.01, 0.01, partial=partial)

    kept = tradeoff_points([point(1, 100), point(2, 190), point(4, 20, partial=True)])
    assert [p.x for p in kept] == [1, 2]

    def runs(*rates):
        return [SimpleNamespace(output_tokens_per_s=r) for r in rates]

    steady = SimpleNamespace(e2e_s=SimpleNamespace(p50=1.0, p90=1.5), runs=runs(100, 105, 98))
    assert noise_of(steady) == ""
    wild = SimpleNamespace(e2e_s=SimpleNamespace(p50=1.0, p90=2.6), runs=runs(100, 150))
    assert noise_of(wild) == "E2E p90 is 2.6× p50, runs differ by 40%"


async def test_a_moved_budget_line_stays_with_its_step():
    from tui_lab.lessons import load_lessons
    from tui_lab.ui.theme import DEFAULT_LATENCY_BUDGET_S

    lessons = load_lessons()
    app = make_test_app(lessons=lessons, lesson="02")
    async with opened(app, size=(160, 48)) as pilot:
        charts = app.query_one(SweepCharts)
        pane = app.query_one("#lesson")
        budget_step = next(i for i, s in enumerate(pane.lesson.steps) if s.params.get("latency_budget"))
        pane.step_index = budget_step - 1
        pane._render_step(announce=True)
        await pilot.pause()
        assert charts.budget_s == DEFAULT_LATENCY_BUDGET_S
        await pilot.press("minus", "minus", "minus")
        assert charts.budget_s < DEFAULT_LATENCY_BUDGET_S
        await pilot.press("n")  # the summarization preset: E2E p90 within 5 s
        assert charts.budget_s == 5.0
        await pilot.press("plus", "n")
        assert charts.budget_s == DEFAULT_LATENCY_BUDGET_S


async def test_sweep_progress_shows_above_the_tabs():
    # 30 ms a step: the sweep lasts seconds, so the line is there to be seen on a loaded machine.
    app = make_test_app(real_time=True, timing=StepModel(decode_base=0.03, decode_per_seq=0.0))
    async with opened(app, size=(160, 48)) as pilot:
        await start_sweep(pilot, 60)
        line = app.query_one("#progress-line")
        await wait_until(pilot, lambda: line.display and "run 1/1" in text_of(app, "#progress-line"))
        assert text_of(app, "#progress-line").startswith("batch_sweep: batch ")
        await pilot.press("1")  # the Run tab: the line is still there
        assert line.display
        await wait_until(pilot, lambda: app.busy is None, timeout=30)
        assert not line.display


def loading_banner(app: LabApp) -> EngineBanner:
    """The engine banner put back in the middle of a load (materializing the embedded model, 30 %)."""
    banner = app.query_one(EngineBanner)
    banner.start_loading("embedded")
    banner.stage("materializing the embedded model", 0.3)
    return banner


async def test_loading_stage_shows_its_elapsed_time():
    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        banner = loading_banner(app)
        banner.stage_started -= 12.2
        banner.tick()
        await pilot.pause()
        assert "loading: materializing the embedded model · 12 s" in text_of(app, "#engine-text")


async def test_the_loading_tick_after_the_banner_is_gone_draws_nothing():
    """Quitting while a model loads: the once-a-second tick can fire while the screen is torn down."""
    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        banner = loading_banner(app)
        await app.query_one("#engine-text").remove()
        banner.tick()  # no NoMatches
        await pilot.pause()


async def test_charts_tab_drops_the_last_result_when_a_new_run_starts():
    app = make_test_app()

    async def run_and_wait(pilot, app):
        runs = app.runs.run_id
        await pilot.press("r")
        await wait_until(pilot, lambda: app.runs.run_id > runs and app.busy is None)
        await settled(pilot)

    async with opened(app, size=(160, 48)) as pilot:
        app.load_experiment(LoadedExperiment.of("kv_cache_compare", {"max_new_tokens": 8}))
        await run_and_wait(pilot, app)
        assert app.query_one("#inspection").display and "KV cache" in text_of(app, "#inspection")
        app.load_experiment(LoadedExperiment.of("generate", {"max_new_tokens": 4}))
        await run_and_wait(pilot, app)
        assert not app.query_one("#inspection").display and not app.query_one(SweepCharts).display
        assert "generate runs on the Run tab" in text_of(app, "#charts-note")
        await pilot.press("n")  # a sweep brings the charts back
        await run_and_wait(pilot, app)
        assert app.query_one(SweepCharts).display


class _ServingEngine(ThreadedEngine):
    """An engine that takes requests while others run (``open_session``), as vLLM and a server do."""

    def __init__(self) -> None:
        super().__init__(ttft_s=0.005, step_s=0.002)

    def load(self, progress=None):
        return self.info

    def unload(self) -> None:
        pass


@pytest.mark.parametrize(("params", "axis", "xs", "labels"), [
    ({"axis": "concurrency", "concurrencies": [1, 2, 4]}, "concurrency", [1, 2, 4],
     ["concurrency 1", "concurrency 2", "concurrency 4"]),
    ({"axis": "rate", "request_rates": [50.0, 100.0]}, "rate", [50, 100], ["rate 50 req/s", "rate 100 req/s"]),
])
async def test_a_load_sweep_charts_each_point_as_it_finishes_and_exports_it(tmp_path, params, axis, xs, labels):
    """A load sweep's points (``LoadPoint``s) went nowhere: no chart, no Results row, nothing exported."""
    app = with_factory(make_test_app(export_dir=str(tmp_path)), lambda name, **options: _ServingEngine())
    async with opened(app, size=(160, 48)) as pilot:
        app.load_experiment(LoadedExperiment.of("load_sweep", {**params, "num_requests": 4, "max_new_tokens": 3,
                                                               "latency_budget": None}))
        charts = app.query_one(SweepCharts)
        table = app.query_one(ResultsTable)
        seen: list[tuple[int, int]] = []
        original = charts.add_point

        def spy(point):
            original(point)
            seen.append((len(charts.points), table.row_count))

        charts.add_point = spy
        await run_and_wait(pilot, app)
        assert "failed" not in text_of(app, "#run-note"), text_of(app, "#run-note")
        assert charts.axis == axis
        # Each point is charted as it comes, its row already in Results beside it.
        assert seen == [(n, n - 1) for n in range(1, len(xs) + 1)]
        assert [p.x for p in charts.points] == xs and [p.label for p in charts.points] == labels
        assert all(p.throughput and p.e2e_p50 for p in charts.points)
        assert table.row_count == len(xs)
        assert [r["label"] for r in app.results] == labels and {r["kind"] for r in app.results} == {"load_sweep"}
        assert f"load_sweep finished: {len(xs)} points" in text_of(app, "#charts-note")
        await pilot.press("e")
        await pilot.pause(0.1)
        paths = {p.suffix: p for p in app.last_export}
        assert [row["label"] for row in csv.DictReader(paths[".csv"].open())] == labels
        doc = json.loads(paths[".json"].read_text())
        assert doc["last"]["kind"] == "load_sweep" and len(doc["last"]["result"]["points"]) == len(xs)


@pytest.mark.parametrize(("batch_keys", "batch", "advice"), [
    ((), 1, "lower max new tokens"),
    (("b",), 8, "lower the batch size or max new tokens"),
])
async def test_a_run_cut_by_a_crash_keeps_its_tokens_and_enters_results_partial(batch_keys, batch, advice):
    """A host crash left the tokens on screen but no row in Results; its hint said "lower batch size" at batch 1."""
    app = make_test_app(engine_spec="tests.ui_engines:make_engine", model="killed")
    async with opened(app, size=(160, 48)) as pilot:
        await pilot.press(*batch_keys)
        app.settings = app.settings.with_(max_new_tokens=500)  # killed long before its end
        await pilot.press("r")
        await wait_until(pilot, lambda: app.busy is None and app.engine_state == "failed", timeout=30)
        await pilot.pause(0.1)
        assert len(app.results) == 1
        row = app.results[0]
        assert row["state"] == "partial" and row["batch_size"] == batch and row["n"] == batch
        assert 0 < row["output_tokens"] < 500 * batch
        assert row["output_tokens"] == live_run(app).figures().tokens_done  # what the panel received, kept
        assert app.query_one(ResultsTable).row_count == 1
        assert text_of(app, "#tokens").startswith("r0 · ")
        assert "partial" in text_of(app, "#figures")
        note = " ".join(text_of(app, "#run-note").split())
        assert "SIGKILL" in note and "press m" in note and advice in note
        if batch == 1:
            assert "batch" not in note
        assert "not measured (the engine process ended" in " ".join(text_of(app, "#predict-result").split())


def test_the_crash_hint_names_the_batch_only_when_there_was_one() -> None:
    from tui_lab.ui.run_control import crash_hint, largest_batch

    assert "batch" not in crash_hint(-9, 1) and "max new tokens" in crash_hint(-9, 1)
    assert "batch size" in crash_hint(-9, 2)
    assert crash_hint(3, 64) == "" and crash_hint(-11, 64) == ""
    assert largest_batch({"batch_size": 1}) == 1 and largest_batch({"batch_sizes": [1, 4, 16]}) == 16
    assert largest_batch({"num_requests": 8}) == 1


async def test_a_corrupt_progress_file_is_moved_aside_and_the_learner_told_where(tmp_path):
    path = tmp_path / "progress.json"
    path.write_text("{ not json")
    app = saving_app(path)
    async with opened(app, size=(160, 48)):
        moved = [p for p in tmp_path.iterdir() if p.name.startswith("progress.json.corrupt-")]
        assert len(moved) == 1 and moved[0].read_text() == "{ not json"
        told = [str(n.message) for n in app._notifications if str(moved[0]) in str(n.message)]
        assert len(told) == 1 and "could not be read" in told[0]


def test_each_host_event_becomes_one_typed_message() -> None:
    from array import array

    from tui_lab.engines.base import EngineInfo
    from tui_lab.host import protocol as p
    from tui_lab.lab.experiment import Progress
    from tui_lab.ui import messages as m
    from tui_lab.ui.host_link import to_message

    reader = p.FrameReader()
    frame = p.Frame(7, new_ids=["r0", "r1"], index=array("i", [1]), token_id=array("q", [5]),
                    t=array("d", [1.0]), text=["x"], n_tokens=array("i", [1]))
    info = EngineInfo("scripted", "m", "cpu", "none")
    cases = [
        (p.LoadProgress("reading", 0.5), m.EngineLoading), (p.Loaded(info), m.EngineReady),
        (p.HostError("load", "no model", "pick one"), m.EngineFailed), (frame, m.TokensArrived),
        (p.RunProgressLine(7, Progress("batch 8")), m.RunProgress), (p.Partial(7, {"t": 1.0}), m.PartialResult),
        (p.RunDone(7, "generate", None), m.RunFinished), (p.HostError("generate", "boom", "", 7), m.RunFailed),
        (p.HostDied(-9, "killed"), m.HostDied), (p.Paced(Pace("cpu")), m.EnginePaced),
        (p.TraceSaved("x.trace.json.gz", 7, "generate", 1), m.TraceWritten),
    ]
    for event, kind in cases:
        message = to_message(3, event, reader.table)
        assert type(message) is kind and message.generation == 3, event
    tokens = to_message(3, frame, p.FrameReader().table)  # the frame's new ids extend its run's table
    assert tokens.ids == ("r0", "r1") and tokens.run_id == 7
    assert to_message(3, p.Pong(1.0, 1), reader.table) is None
    posted = {name for name, value in vars(m).items() if isinstance(value, type) and issubclass(value, m.HostMessage)}
    assert posted == {kind.__name__ for _, kind in cases} | {"HostMessage"}  # no message class goes unposted


async def test_help_lists_every_key_with_what_it_does():
    from textual.widgets import Markdown

    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause(0.1)
        page = app.screen.query_one(Markdown).source
        for binding in LabApp.BINDINGS:
            assert binding.tooltip in page, binding.key
        assert "| `↑ ↓ pgup pgdn` | Scroll the lesson text |" in page
