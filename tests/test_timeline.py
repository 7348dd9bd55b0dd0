"""The timeline: phases per request over time, live and after a run, and its keys in the app.

The layout is a pure function (``layout_timeline``): most tests call it on runs of the scripted engine (fake
clock: exact times) or on events written out by hand; the pilot tests drive the app by its keys.
"""

from __future__ import annotations

import math
import time

import pytest
from rich.text import Text

from tests.test_ui_app import opened, run_and_wait, settled, text_of, wait_until
from tui_lab.engines.base import Request, SamplingParams
from tui_lab.engines.events import RequestFinished, RequestSubmitted, StreamEvent, TokenEvent, TokenStep
from tui_lab.engines.scripted import FakeClock, ScriptedEngine, StepModel
from tui_lab.formatting import seconds
from tui_lab.lab import trace as T
from tui_lab.lab.run import RunRecorder, execute_run
from tui_lab.ui.live import LiveRun
from tui_lab.ui.testing import make_test_app
from tui_lab.ui.widgets.live_panel import LivePanel
from tui_lab.ui.widgets.timeline import (
    IDLE,
    LiveTracks,
    RecordedTracks,
    TimelineState,
    TimelineView,
    layout_timeline,
    render_timeline,
    row_cells,
    rows_per_line,
)

pytestmark = pytest.mark.timeout(60)


def recorded(batch: int, tokens: int) -> RecordedTracks:
    """A scripted batch (fake clock) as the timeline draws a finished run."""
    engine = ScriptedEngine(clock=FakeClock())
    engine.load()
    result = execute_run(engine, [Request(f"r{i}", "the quick brown fox") for i in range(batch)],
                         SamplingParams(max_new_tokens=tokens))
    return RecordedTracks(T.run_from_result(result, "batch", engine))


def adds_up(ph: T.Phases) -> bool:
    return math.isclose(sum(ph.as_dict().values()), ph.e2e_from_arrival, abs_tol=1e-9)


# ------------------------------------------------------------------- one definition of phases, live and after


def two_requests(source: str) -> list[StreamEvent]:
    """Two requests of three tokens as ``source`` reports them: sends, one step per token, finishes with the
    engine's own times where it has them (the transformers engine its tokenizing, vLLM its stamps)."""
    host = 500.0
    events: list[StreamEvent] = [RequestSubmitted("a", host, 4), RequestSubmitted("b", host, 4)]
    for t in (host + 0.030, host + 0.040, host + 0.050):
        if source == "openai":  # a server's stream: one event per request
            events += [TokenEvent("a", 1, "x", t), TokenEvent("b", 2, "y", t + 0.001)]
        else:
            events.append(TokenStep(["a", "b"], [1, 2], ["x", "y"], t))
    stamps = {"a": (0.001, 0.005, 0.029, 0.049), "b": (0.001, 0.010, 0.029, 0.049)}
    for rid in ("a", "b"):
        times: dict[str, float] | None = None
        if source == "transformers":
            times = {"tokenize_s": 0.002, "prefill_s": 0.028, "decode_s": 0.02}
        elif source == "vllm":
            q, s, f, last = stamps[rid]
            times = {"queued_ts": host + q, "scheduled_ts": host + s, "first_token_ts": host + f,
                     "last_token_ts": host + last}
        events.append(RequestFinished(rid, host + 0.052, "length", engine_times=times))
    return events


@pytest.mark.parametrize("source", ["scripted", "transformers", "vllm", "openai"])
def test_live_and_recorded_phases_are_the_same_split(source: str) -> None:
    """What the timeline shows while the run streams ends as what the run's trace says: one definition."""
    events = two_requests(source)
    requests = [Request("a", "x"), Request("b", "y")]
    recorder = RunRecorder(requests, SamplingParams(max_new_tokens=3))
    for event in events:
        recorder.add(event)
    after = RecordedTracks(T.run_from_result(recorder.finish(0.06), "run", source=source))
    live = LiveRun(requests, 3)
    live.apply(events)
    during = LiveTracks(live, source)
    for i in range(2):
        got, want = during.phases(i), after.phases(i)
        assert [p.name for p in got.spans] == [p.name for p in want.spans]
        assert got.as_dict() == pytest.approx(want.as_dict())
        assert adds_up(got)
    names = set(during.phases(1).as_dict())
    expected = {"scripted": set(T.PHASES), "transformers": set(T.PHASES), "vllm": set(T.PHASES),
                "openai": {"client queue", T.NOT_SPLIT, "decode"}}[source]
    assert names == expected  # every remainder named: to / from engine, or queue + prefill for a server
    if source == "vllm":
        assert during.phases(1).seconds("engine queue") == pytest.approx(0.009)
        assert during.phases(1).seconds("from engine") == pytest.approx(0.001)
    if source == "transformers":
        assert during.phases(0).seconds("to engine") == pytest.approx(0.002)


@pytest.mark.parametrize(("source", "before_first"), [("transformers", "prefill"), ("vllm", T.NOT_SPLIT),
                                                      ("openai", T.NOT_SPLIT)])
def test_a_running_request_reaches_the_latest_event(source: str, before_first: str) -> None:
    """While it runs a request's last span reaches the latest event: what it waits for, named by its source."""
    live = LiveRun([Request("a", "x"), Request("b", "y")], 8)
    live.apply([RequestSubmitted("a", 10.0, 3), RequestSubmitted("b", 10.0, 3), TokenEvent("a", 1, "x", 10.2),
                TokenEvent("a", 1, "x", 10.3)])
    tracks = LiveTracks(live, source)
    a, b = tracks.phases(0), tracks.phases(1)
    assert a.seconds("decode") == pytest.approx(0.1) and a.last_token == pytest.approx(10.3) and adds_up(a)
    assert b.spans[-1].name == before_first and b.spans[-1].end == pytest.approx(10.3) and adds_up(b)
    assert tracks.running and not tracks.done(0)
    layout = layout_timeline(tracks, "b", 60, 12, TimelineState())
    assert "running" in (layout.header or "")
    assert "so far (running)" in Text("").join(layout.figures).plain


def test_a_request_sent_a_moment_ago_has_phases_that_add_up_to_nothing_yet() -> None:
    """The first frame of a run: every request sent, no token yet, the latest event is the send itself."""
    live = LiveRun([Request("a", "x")], 8)
    live.apply([RequestSubmitted("a", 10.0, 3)])
    for source in ("transformers", "vllm"):
        tracks = LiveTracks(live, source)
        ph = tracks.phases(0)
        assert ph.e2e_from_arrival == 0.0 and adds_up(ph)
        layout = layout_timeline(tracks, "a", 60, 12, TimelineState())
        assert "= 0 so far (running)" in Text("").join(layout.figures).plain
        assert "1 request · starting" in (layout.header or "") and layout.axis == ""  # no time axis yet


# ----------------------------------------------------------------------------------------------- layout


def test_a_finished_batchs_rows_prefill_then_decode_and_figures_that_add_up() -> None:
    tracks = recorded(batch=8, tokens=16)
    layout = layout_timeline(tracks, "r3", 90, 20, TimelineState())
    assert layout.requests == 8 and layout.per_row == 1 and len(layout.rows) == 8 and layout.complete
    assert layout.header.startswith("8 requests · 0–")
    assert [r.label for r in layout.rows] == [f"r{i}" for i in range(8)]
    assert [r.selected for r in layout.rows] == [i == 3 for i in range(8)]
    row = layout.rows[3].cells
    assert row[0] == "prefill" and row[-1] == "decode"  # prefill from the send, decode to the last token
    first_decode = row.index("decode")
    assert set(row[:first_decode]) == {"prefill"} and set(row[first_decode:]) <= {"decode", IDLE}
    ph = layout.selected
    assert ph is not None and ph.request_id == "r3" and adds_up(ph)
    text = "".join(line.plain for line in layout.figures)
    assert text.startswith("▶ r3: ") and "to engine 0" in text and "from engine 0" in text
    assert text.endswith(f"= E2E {seconds(ph.e2e_from_arrival)}")
    assert all(len(line) <= 90 for line in layout.figures)
    assert layout.legend == ("prefill", "decode", IDLE)  # a cell is shorter than a step here: idle between tokens
    drawn = render_timeline(layout, 90).plain.splitlines()
    assert len(drawn) == layout.lines and drawn[0] == layout.header


def test_1024_requests_are_drawn_16_per_row_and_it_says_so() -> None:
    assert [rows_per_line(n) for n in (1, 64, 65, 128, 1000, 1024)] == [1, 1, 2, 2, 16, 16]
    tracks = recorded(batch=1024, tokens=4)
    layout = layout_timeline(tracks, "r700", 90, 24, TimelineState())
    assert layout.per_row == 16 and layout.n_rows == 64
    assert layout.header.startswith("1024 requests, 16 per row · rows ")
    assert not layout.complete and any(r.selected and r.first == 688 for r in layout.rows)
    assert layout.rows[0].label.startswith(f"{layout.top * 16}–")
    # A group shows its phases; its steps (217 ms apart, a cell is 31 ms) show as tokens with idle between.
    assert all(set(r.cells) == {"prefill", "decode", IDLE} and r.cells[0] == "prefill" for r in layout.rows)
    state = TimelineState()
    state.zoom_to(16, layout.anchor_s + 0.3, layout.full_s)
    zoomed = layout_timeline(tracks, "r700", 90, 24, state)  # into the decode steps: one token cell each
    assert all(r.cells.count("decode") == 1 and set(r.cells) == {"decode", IDLE} for r in zoomed.rows)
    assert "1024 requests, 16 per row" in render_timeline(layout, 90).plain


def test_the_rows_follow_the_selection_and_keep_their_place() -> None:
    tracks = recorded(batch=40, tokens=2)
    state = TimelineState()
    layout = layout_timeline(tracks, "r30", 60, 10, state)  # 10 lines: header, axis, legend, 2 figures → 5 rows
    rows = len(layout.rows)
    assert rows == 5 and layout.top == 30 - rows + 1 and layout.rows[-1].selected
    state.top = layout.top
    again = layout_timeline(tracks, "r28", 60, 10, state)
    assert again.top == layout.top  # still on screen: the rows stay where they are
    back = layout_timeline(tracks, "r2", 60, 10, state)
    assert back.top == 2 and back.rows[0].selected


def test_zoom_keeps_the_anchor_in_place_and_pan_stays_inside_the_run() -> None:
    state = TimelineState()
    assert state.window(10.0) == (0.0, 10.0)
    state.zoom_to(2, anchor_s=2.0, full_s=10.0)  # 2.0 s was a fifth of the way in: it stays there
    assert state.window(10.0) == pytest.approx((1.0, 6.0))
    state.zoom_to(4, anchor_s=2.0, full_s=10.0)
    assert state.window(10.0) == pytest.approx((1.5, 4.0))
    state.pan(1, 10.0)
    assert state.window(10.0) == pytest.approx((2.75, 5.25))
    for _ in range(10):
        state.pan(-1, 10.0)
    assert state.window(10.0) == pytest.approx((0.0, 2.5))
    for _ in range(20):
        state.zoom_to(state.zoom * 2, anchor_s=9.9, full_s=10.0)
    assert state.zoom == 1024 and state.window(10.0)[1] <= 10.0
    state.zoom_to(1, anchor_s=0.0, full_s=10.0)
    assert state.window(10.0) == (0.0, 10.0)


def test_idle_cells_appear_once_a_cell_is_shorter_than_a_step() -> None:
    tracks = recorded(batch=1, tokens=8)
    ph = tracks.phases(0)
    coarse = layout_timeline(tracks, "r0", 8, 8, TimelineState()).rows[0].cells
    assert IDLE not in coarse  # at this scale every decode cell holds a token
    fine = layout_timeline(tracks, "r0", 400, 8, TimelineState()).rows[0].cells
    decode = [c for c in fine if c in ("decode", IDLE)]
    assert fine.count("decode") == 8 and decode.count(IDLE) == len(decode) - 8  # one cell per token, idle between
    assert fine[-1] == "decode"  # the last token lies on the window's end
    assert ph.seconds("decode") > 0


def test_a_short_prefill_still_gets_its_cell_and_sub_cell_remainders_do_not() -> None:
    ph = T.Phases("a", 0.0, 10.0, (T.Phase("to engine", 0.0, 0.01), T.Phase("prefill", 0.01, 0.45),
                                   T.Phase("decode", 0.45, 10.0)))
    cells = row_cells([ph], 0.0, 1.0, 10)
    assert cells[0] == "prefill" and cells[1:] == ["decode"] * 9  # 0.44 of a cell: shown; 0.01: not
    assert row_cells([ph], 0.0, 2.0, 10)[5:] == [""] * 5  # after the request: nothing
    nan = T.Phases("b", T.NAN, T.NAN, (T.Phase("prefill", T.NAN, 1.0),))
    assert row_cells([nan], 0.0, 1.0, 4) == [""] * 4


@pytest.mark.parametrize(("width", "height"), [(1, 1), (5, 2), (20, 3), (30, 5), (58, 9), (200, 60)])
def test_any_size_gets_a_layout_that_fits(width: int, height: int) -> None:
    for tracks in (recorded(batch=3, tokens=3), recorded(batch=200, tokens=2), None):
        layout = layout_timeline(tracks, "r1", width, height, TimelineState())
        assert layout.lines <= max(1, height)
        render_timeline(layout, width)
        if tracks is not None:
            assert len(layout.rows) >= 1


# -------------------------------------------------------------------------------------------- in the app


def timeline(app) -> TimelineView:
    return app.query_one(TimelineView)


async def test_the_timeline_fills_in_while_a_run_streams() -> None:
    app = make_test_app(real_time=True, clock=time.perf_counter, timing=StepModel(decode_base=0.02, decode_per_seq=0.0))
    async with opened(app, size=(160, 48)) as pilot:
        app.settings = app.settings.with_(batch_size=8, max_new_tokens=40)
        await pilot.press("t")
        assert app.query_one(LivePanel).has_class("-timeline")
        await pilot.press("r")

        def streaming() -> bool:
            shown = timeline(app).shown
            return (app.busy is not None and shown is not None and "running" in (shown.header or "")
                    and any("decode" in r.cells for r in shown.rows))

        await wait_until(pilot, streaming)
        mid = timeline(app).shown
        assert mid is not None and mid.header.startswith("8 requests")
        assert len(mid.rows) >= 4 and all(row.count == 1 for row in mid.rows)  # one request a row
        assert "so far (running)" in "".join(line.plain for line in mid.figures)
        await wait_until(pilot, lambda: app.busy is None)
        await settled(pilot)
        done = timeline(app).shown
        assert done is not None and "running" not in done.header
        assert isinstance(timeline(app).tracks(app.query_one(LivePanel).live), RecordedTracks)  # from the result
        assert done.window_s[1] > mid.window_s[1]
        assert "= E2E" in text_of(app, "#timeline")


async def test_scroll_zoom_and_selection_keys() -> None:
    app = make_test_app()
    async with opened(app, size=(80, 24)) as pilot:
        app.settings = app.settings.with_(batch_size=128)
        await run_and_wait(pilot, app)
        await pilot.press("l", "l", "t")  # the panel alone: room for the rows
        await settled(pilot)
        panel, view = app.query_one(LivePanel), timeline(app)
        shown = view.shown
        assert shown is not None and shown.per_row == 2 and shown.n_rows == 64 and shown.top == 0
        assert "128 requests, 2 per row" in shown.header
        page = len(shown.rows) * 2
        await pilot.press("right_curly_bracket")
        await settled(pilot)
        assert panel.selected == page and view.shown is not None and view.shown.top == len(shown.rows)
        assert f"r{page}" in text_of(app, "#tokens")  # the token bars follow the selection
        await pilot.press("left_curly_bracket")
        await settled(pilot)
        assert panel.selected == 0 and view.shown.top == 0
        await pilot.press("right_square_bracket")
        await settled(pilot)
        assert view.shown.figures[0].plain.startswith("▶ r1: ")
        full = view.shown.window_s
        await pilot.press("z")
        await settled(pilot)
        assert view.state.zoom == 2 and "zoom 2×" in view.shown.header
        half = view.shown.window_s
        assert half[1] - half[0] == pytest.approx((full[1] - full[0]) / 2)
        await pilot.press("greater_than_sign")
        await settled(pilot)
        assert view.shown.window_s[0] > half[0]
        await pilot.press("less_than_sign", "less_than_sign")
        await settled(pilot)
        assert view.shown.window_s[0] == 0.0
        await pilot.press("Z")
        await settled(pilot)
        assert view.state.zoom == 1 and view.shown.window_s == pytest.approx(full)
        await pilot.press("t")
        await settled(pilot)
        assert not panel.has_class("-timeline") and not view.is_on_screen


async def test_selecting_a_request_shows_its_figures_adding_up_and_its_token_bars() -> None:
    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        app.settings = app.settings.with_(batch_size=8)
        await run_and_wait(pilot, app)
        await pilot.press("2", "t")  # from another tab: t brings the Run tab
        await pilot.press(*["right_square_bracket"] * 3)
        await settled(pilot)
        assert app.query_one("#tabs").active == "run"
        shown = timeline(app).shown
        assert shown is not None and shown.selected is not None and shown.selected.request_id == "r3"
        assert adds_up(shown.selected)
        figures = text_of(app, "#timeline")
        for name in ("client queue", "to engine", "engine queue", "prefill", "decode", "from engine", "= E2E"):
            assert name in figures
        assert text_of(app, "#tokens").lstrip().startswith("r3")


async def test_a_1024_batch_is_drawn_in_groups_and_says_so() -> None:
    app = make_test_app()
    async with opened(app, size=(160, 48)) as pilot:
        app.settings = app.settings.with_(batch_size=1024, max_new_tokens=4)
        await pilot.press("t")
        await run_and_wait(pilot, app)
        await settled(pilot)
        assert "1024 requests, 16 per row" in text_of(app, "#timeline")
        assert timeline(app).shown is not None and timeline(app).shown.n_rows == 64


async def test_a_tiny_terminal_does_not_break_the_timeline() -> None:
    app = make_test_app()
    async with opened(app, size=(60, 20)) as pilot:
        app.settings = app.settings.with_(batch_size=32)
        await pilot.press("t")
        await run_and_wait(pilot, app)
        for keys in (("z", "greater_than_sign", "right_curly_bracket"), ("l",), ("l",), ("Z", "left_curly_bracket")):
            await pilot.press(*keys)
            await settled(pilot)
        for size in ((40, 12), (20, 8), (60, 20)):
            await pilot.resize_terminal(*size)
            await settled(pilot)
        assert app.is_running and timeline(app).shown is not None


async def test_export_without_recording_says_why_there_is_no_trace(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(T.TRACE_ENV, "0")  # the engine process inherits it
    app = make_test_app(export_dir=str(tmp_path))
    async with opened(app, size=(160, 48)) as pilot:
        await run_and_wait(pilot, app)
        await pilot.press("e")
        await wait_until(pilot, lambda: any("no trace" in str(n.message) for n in app._notifications))
        message = next(str(n.message) for n in app._notifications if "no trace" in str(n.message))
        assert "recording is off" in message and "results-" in message
        assert {p.suffix for p in app.last_export} == {".json", ".csv"}
