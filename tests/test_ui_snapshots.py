"""SVG snapshots of the lab's main screens (scripted engine on a fake clock, fixture lesson).

Each test says what you should see. Update with ``pytest --snapshot-update`` and
look at the SVGs (``tests/__snapshots__/test_ui_snapshots/``) before accepting them.
"""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import Input

from tests.test_ui_app import settled
from tui_lab.errors import DeviceUnavailable
from tui_lab.ui.testing import make_test_app

pytestmark = pytest.mark.timeout(60)

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]


async def _settle(pilot, condition, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await pilot.pause(0.02)
    await settled(pilot)  # draw the final state now, not at the next tick of the ≤4 Hz chart timer


async def _finish(pilot, app) -> None:
    """Toasts vanish on a wall-clock timeout: clear them so the picture does not depend on timing."""
    app.clear_notifications()
    await settled(pilot)


def _ready(app):
    """Loaded and its pace measured (the step's "about N s here" is drawn from it), or failed."""
    return lambda: app.engine_state == "failed" or (app.engine_state == "ready" and app.estimate.pace is not None)


@pytest.mark.parametrize("size", SIZES)
def test_first_screen(snap_compare, size):
    """The fixture lesson's first step (with its prediction box) beside the Run tab: engine ready, no run yet."""
    app = make_test_app()

    async def run_before(pilot):
        await _settle(pilot, _ready(app))
        await _finish(pilot, app)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_after_single_run(snap_compare, size):
    """One request of 16 tokens: magenta TTFT bar first, then equal green decode bars; figures say done 1/1."""
    app = make_test_app()

    async def run_before(pilot):
        await _settle(pilot, _ready(app))
        await pilot.press("r")
        await _settle(pilot, lambda: bool(app.results) and app.busy is None)
        await _finish(pilot, app)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_batch_of_eight_with_all_requests(snap_compare, size):
    """Batch 8 finished, request r2 selected; one progress row per request (at 80×24 the rows replace the tokens)."""
    app = make_test_app()

    async def run_before(pilot):
        await _settle(pilot, _ready(app))
        await pilot.press("b", "r")
        await _settle(pilot, lambda: bool(app.results) and app.busy is None)
        await pilot.press("right_square_bracket", "right_square_bracket", "a")
        await settled(pilot)
        await _finish(pilot, app)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_batch_sweep_charts(snap_compare, size):
    """Batch sweep 1/4/16/64 done: four charts at 160×48 (throughput rising, latencies, TPOT, trade-off with
    the yellow budget line); at 80×24 only the throughput chart, the lesson pane hidden with l l."""
    app = make_test_app()

    async def run_before(pilot):
        await _settle(pilot, _ready(app))
        await pilot.press("n", "r")
        await _settle(pilot, lambda: len(app.results) == 4 and app.busy is None)
        if size[0] < 100:
            await pilot.press("l", "l")
        await settled(pilot)
        await _finish(pilot, app)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_timeline_of_a_batch_of_eight(snap_compare, size):
    """Timeline (t) after a batch of 8 × 16 tokens, r3 selected: a magenta prefill from the send, then green decode
    with an idle dash between tokens; under the rows r3's phases add up to its E2E (to / from engine named, 0); r3's
    token bars below. At 80×24 the lesson pane is hidden (l l) to give the rows room."""
    app = make_test_app()

    async def run_before(pilot):
        await _settle(pilot, _ready(app))
        await pilot.press("b", "r")
        await _settle(pilot, lambda: bool(app.results) and app.busy is None)
        if size[0] < 100:
            await pilot.press("l", "l")
        await pilot.press("t", *["right_square_bracket"] * 3)
        await settled(pilot)
        await settled(pilot)
        await _finish(pilot, app)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_timeline_of_a_1024_batch(snap_compare):
    """A batch of 1024 × 4 tokens drawn 16 requests a row, and the header says so ("1024 requests, 16 per row"),
    rows 1–N of 64; every group prefills together, then decodes."""
    app = make_test_app()

    async def run_before(pilot):
        await _settle(pilot, _ready(app))
        app.settings = app.settings.with_(batch_size=1024, max_new_tokens=4)
        await pilot.press("t", "r")
        await _settle(pilot, lambda: bool(app.results) and app.busy is None)
        await settled(pilot)
        await settled(pilot)
        await _finish(pilot, app)

    assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_controls_refuse_invalid_value(snap_compare, size):
    """Controls tab: batch size 3000 typed and refused — red message under the help line, value not applied;
    under the general fields the engine and the options the transformers engine declares (model ... cuda graphs)."""
    app = make_test_app()

    async def run_before(pilot):
        await _settle(pilot, _ready(app))
        await pilot.press("2")
        box = app.query_one("#ctl-batch_size", Input)
        box.focus()
        box.value = "3000"
        await pilot.press("enter")
        await settled(pilot)
        await _finish(pilot, app)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_trade_off_zoomed_with_budget(snap_compare):
    """Trade-off chart zoomed (v pressed 4 times) after a sweep, budget lowered twice: the note names the
    best batch within the budget."""
    app = make_test_app()

    async def run_before(pilot):
        await _settle(pilot, _ready(app))
        await pilot.press("n", "r")
        await _settle(pilot, lambda: len(app.results) == 4 and app.busy is None)
        await pilot.press("v", "v", "v", "v", "minus", "minus")
        await settled(pilot)
        await _finish(pilot, app)

    assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)


def test_engine_error(snap_compare):
    """The engine failed to load (no GPU): a red line above the tabs says why and what to do."""
    error = DeviceUnavailable("device cuda was asked for but no CUDA GPU is visible", "choose device cpu or auto")
    app = make_test_app(load_error=error)

    async def run_before(pilot):
        await _settle(pilot, _ready(app))
        await _finish(pilot, app)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_help_screen(snap_compare):
    """The ? page: the key table over the lab."""
    app = make_test_app()

    async def run_before(pilot):
        await _settle(pilot, _ready(app))
        await pilot.press("question_mark")
        await settled(pilot)
        await _finish(pilot, app)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("lesson_id", ["01", "02", "03", "04", "05", "06"])
def test_first_screen_of_each_lesson(snap_compare, lesson_id):
    """The real lesson NN opened as with --lesson NN: its title, step 1 of its steps and the Run tab, 100×30."""
    from tui_lab.lessons import load_lessons

    app = make_test_app(lessons=load_lessons(), lesson=lesson_id)

    async def run_before(pilot):
        await _settle(pilot, _ready(app))
        await _finish(pilot, app)

    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)
