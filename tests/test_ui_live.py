"""The live panel's state: figures from events, bounded memory, and the small render helpers."""

from __future__ import annotations

from tui_lab.engines.base import Request
from tui_lab.engines.events import RequestFinished, RequestSubmitted, TokenEvent
from tui_lab.formatting import seconds
from tui_lab.ui.live import LiveRun
from tui_lab.ui.theme import GAP_THRESHOLDS_S, MAX_RECENT_GAPS, MAX_TOKENS_ON_SCREEN, gap_style
from tui_lab.ui.widgets.request_list import progress_cells
from tui_lab.ui.widgets.token_stream import timing_bar


def test_figures_follow_metrics_definitions():
    live = LiveRun([Request("r0", "a"), Request("r1", "b")], max_new_tokens=3)
    live.apply([RequestSubmitted("r0", 10.0, 2), RequestSubmitted("r1", 10.0, 2)])
    live.apply([TokenEvent("r0", 1, " x", 10.5), TokenEvent("r1", 1, " y", 10.5)])
    live.apply([TokenEvent("r0", 2, " x", 10.6), TokenEvent("r1", 2, " y", 10.7)])
    live.apply([TokenEvent("r0", 3, " x", 10.7), RequestFinished("r0", 10.7, "length")])
    fig = live.figures()
    assert fig.tokens_done == 5 and fig.tokens_total == 6
    assert abs(fig.elapsed_s - 0.7) < 1e-9
    assert abs(fig.system_tokens_per_s - 5 / 0.7) < 1e-9
    assert abs(fig.ttft.p50 - 0.5) < 1e-9
    assert fig.ttft.p90 is None  # two samples: a tail is not reported
    assert abs(fig.tpot.p50 - 0.15) < 1e-9  # r0: 0.2/2 = 0.1, r1: 0.2/1 = 0.2
    assert fig.finished == 1
    req, tokens = live.snapshot_request(0)
    assert tokens[0].first and abs(tokens[0].gap_s - 0.5) < 1e-9
    assert [round(t.gap_s, 6) for t in tokens[1:]] == [0.1, 0.1]


def test_memory_is_bounded_on_long_runs():
    live = LiveRun([Request("r0", "a")], max_new_tokens=100_000)
    live.apply([RequestSubmitted("r0", 0.0, 1)])
    for chunk in range(100):
        live.apply([TokenEvent("r0", 1, "t", chunk * 1000 + i * 0.001) for i in range(1000)])
    req, tokens = live.snapshot_request(0)
    assert req.produced == 100_000
    assert len(tokens) == MAX_TOKENS_ON_SCREEN
    assert tokens[-1].index == 99_999
    assert live.figures().itl.n == MAX_RECENT_GAPS


def test_sweep_requests_are_adopted_and_reset():
    live = LiveRun([], max_new_tokens=4)
    live.apply([RequestSubmitted("r0", 0.0, 1), TokenEvent("r0", 1, "a", 0.1), RequestFinished("r0", 0.1, "length")])
    assert live.rows()[0][:3] == ("r0", 1, 4)
    live.apply([RequestSubmitted("r0", 1.0, 1)])  # the next run of the same configuration
    assert live.rows()[0][1] == 0
    live.reset()
    assert live.rows() == []


def test_gap_colours_and_bars():
    assert gap_style(0.001) == GAP_THRESHOLDS_S[0][1]
    assert gap_style(10.0) == GAP_THRESHOLDS_S[-1][1]
    assert timing_bar(0.5, 1.0, "x", 10).plain == "█████"
    assert timing_bar(1.0, 1.0, "x", 10).plain == "█" * 10
    assert timing_bar(3.0, 1.0, "x", 10).plain.endswith("»")
    assert progress_cells(5, 10, 10) == "━━━━━╌╌╌╌╌"
    assert seconds(0.0123) == "12.3 ms" and seconds(None) == "—"


def test_a_frame_folds_like_its_events() -> None:
    from tui_lab.engines.events import TokenStep
    from tui_lab.host.protocol import FrameBuilder, FrameReader

    ids = ["r0", "r1"]
    evs = [RequestSubmitted("r0", 10.0, 2), RequestSubmitted("r1", 10.0, 2),
           TokenStep(ids, [1, 2], [" x", " y"], 10.5), TokenStep(ids, [3, 4], [" z", " w"], 10.6),
           RequestFinished("r0", 10.6, "length"), TokenStep(["r1"], [5], ["!"], 10.8)]
    requests = [Request("r0", "a"), Request("r1", "b")]
    from_events, from_frame = LiveRun(requests, 3), LiveRun(requests, 3)
    from_events.apply(evs)
    builder, reader = FrameBuilder(1), FrameReader()
    builder.add(evs)
    frame = builder.take()
    from_frame.apply_frame(frame, reader.table(frame))
    assert from_frame.rows() == from_events.rows()
    assert from_frame.figures() == from_events.figures()
    for i in range(2):
        assert from_frame.snapshot_request(i)[1] == from_events.snapshot_request(i)[1]
    shown = from_frame.snapshot_request(1)[1]
    assert [t.text for t in shown] == [" y", " w", "!"] and shown[0].first and abs(shown[2].gap_s - 0.2) < 1e-9
    assert from_frame.figures().tokens_done == 5


def test_the_figures_break_between_items_and_keep_the_latency_line_at_any_width():
    """At 120×36 a long first line wrapped inside a two-line box and pushed the p50/p90 line out of sight."""
    from tui_lab.metrics import summarize
    from tui_lab.ui.live import LiveFigures
    from tui_lab.ui.widgets.figures import render_figures

    fig = LiveFigures(75.3, 12345, 16384, 1234.5, summarize([0.3, 0.4, 0.5, 0.6, 0.7]), summarize([0.01] * 10),
                      summarize([0.02] * 6), 12, 64)
    for width in (160, 66, 40):
        lines = render_figures(fig, "running", width).plain.split("\n")
        assert all(len(line) <= width for line in lines), width
        assert sum(line.startswith("p50/p90 TTFT") for line in lines) == 1 and "TPOT 20.0 ms" in lines[-1]
        assert "done 12/64" in " ".join(lines) and lines[0].startswith("running")
    assert len(render_figures(fig, "running", 160).plain.split("\n")) == 2


async def test_the_latency_line_stays_on_screen_at_120x36_during_a_big_batch():
    from tests.test_ui_app import ready, run_and_wait, settled
    from tui_lab.ui.testing import make_test_app
    from tui_lab.ui.widgets.figures import FiguresView

    app = make_test_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot, app)
        app.settings = app.settings.with_(batch_size=512, max_new_tokens=1000)
        await run_and_wait(pilot, app)
        await settled(pilot)
        view = app.query_one(FiguresView)
        shown = view.render().plain if hasattr(view.render(), "plain") else str(view.render())
        lines = shown.split("\n")
        assert len(lines) > 2 and view.size.height == len(lines)  # as tall as its lines
        assert any(line.startswith("p50/p90") for line in lines) and all(len(line) <= view.size.width for line in lines)
