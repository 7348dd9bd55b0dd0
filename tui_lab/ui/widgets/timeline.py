"""The timeline: one row per request over time, its phases in colours, drawn while a run streams.

Each row is a request — or, beyond ``TIMELINE_ROWS_MAX`` requests, a group of consecutive requests, and the
header says how many per row — split into the phases ``tui_lab.lab.trace`` defines: client queue, to engine,
engine queue, prefill (queue + prefill where the engine cannot split them), decode and from engine; a decode
cell in which none of the row's requests got a token is drawn idle, once a cell is at most half the gap between
tokens (zoom in). Under the rows the selected request's phases add up to its E2E, every remainder named.

While a run streams, the rows come from what the Run tab holds (``LiveRun``: sends, token times, finishes with
the engine's own times) through ``trace.live_phases``; once a batch or a load has finished, from its result,
built into the tables a recorded trace has (``trace.run_from_result``) — one definition of the phases for both.
``layout_timeline`` is pure (tests call it without an app). ``TimelineView`` draws on the Run tab's figures
timer (≤ 4 Hz), only while it is on screen and something moved; a redraw costs what the visible rows hold
(their requests' phases and, zoomed in far enough to show idle cells, their tokens inside the window), never a
pass over every token.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from itertools import accumulate
from typing import Protocol

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Static

from tui_lab.formatting import seconds
from tui_lab.lab.load import LoadRun
from tui_lab.lab.run import RunResult
from tui_lab.lab.trace import NAN, NOT_SPLIT, Phases, TraceRun, known, live_phases, run_from_load, run_from_result
from tui_lab.ui.live import LiveRun
from tui_lab.ui.theme import TIMELINE_ROWS_MAX, TIMELINE_ZOOM_MAX

IDLE = "idle"
"""A decode cell in which the request got no token: it waited for its next step."""

PHASE_LOOK: dict[str, tuple[str, str]] = {
    "client queue": ("▒", "blue"),
    "to engine": ("░", "grey62"),
    "engine queue": ("▒", "yellow"),
    "prefill": ("█", "magenta"),
    NOT_SPLIT: ("▓", "magenta"),
    "decode": ("█", "green"),
    IDLE: ("─", "green"),
    "from engine": ("░", "grey62"),
}
"""Each phase's glyph and colour (a span named after two neighbours is drawn as a remainder, ``OTHER_LOOK``)."""
OTHER_LOOK = ("░", "grey62")

TIMELINE_BINDINGS = [
    Binding("t", "timeline('toggle')", "timeline", show=False,
            tooltip="Timeline on the Run tab: one row per request over time, in phases"),
    Binding("z", "timeline('zoom_in')", "zoom in", show=False,
            tooltip="Timeline: zoom the time axis in (around the selected request's first token)"),
    Binding("Z", "timeline('zoom_out')", "zoom out", show=False, tooltip="Timeline: zoom the time axis out"),
    Binding("less_than_sign", "timeline('left')", "earlier", show=False, key_display="<",
            tooltip="Timeline: move the time axis earlier"),
    Binding("greater_than_sign", "timeline('right')", "later", show=False, key_display=">",
            tooltip="Timeline: move the time axis later"),
    Binding("left_curly_bracket", "timeline('page_up')", "rows up", show=False, key_display="{",
            tooltip="Timeline: a page of rows up (the selected request moves with it)"),
    Binding("right_curly_bracket", "timeline('page_down')", "rows down", show=False, key_display="}",
            tooltip="Timeline: a page of rows down"),
]
"""The timeline's keys, part of the app's ``BINDINGS`` (so help and the palette list them)."""


def look(name: str) -> tuple[str, str]:
    """A phase's glyph and colour."""
    return PHASE_LOOK.get(name, OTHER_LOOK)


def legend_words() -> str:
    """The colours in words, for the help page."""
    colours = {"grey62": "grey"}
    return " · ".join(f"{glyph} {name} ({'dim ' if name == IDLE else ''}{colours.get(style, style)})"
                      for name, (glyph, style) in PHASE_LOOK.items())


# ------------------------------------------------------------------------------------------- what it draws


class Tracks(Protocol):
    """Requests in row order, each with its phases and its token times, on the host's clock."""

    running: bool

    def __len__(self) -> int: ...

    def request_id(self, i: int) -> str: ...

    def phases(self, i: int) -> Phases: ...

    def done(self, i: int) -> bool:
        """Whether request ``i`` has finished."""
        ...

    def tokens(self, i: int) -> tuple[Sequence[float], int, int]:
        """Request ``i``'s token times: ``times[lo:hi]`` of the sequence returned (not copied)."""
        ...

    def index_of(self, request_id: str) -> int | None: ...

    def window(self) -> tuple[float, float]:
        """The run's origin (its first arrival or send) and its latest time so far."""
        ...


class RecordedTracks:
    """A finished run's requests, from its trace tables (each request's phases worked out once, when drawn)."""

    running = False

    def __init__(self, run: TraceRun) -> None:
        self.run = run
        self._phases: dict[int, Phases] = {}
        self._index = {rid: i for i, rid in enumerate(run.requests.ids)}
        self._window = (run.t0, run.end)

    def __len__(self) -> int:
        return len(self.run.requests)

    def request_id(self, i: int) -> str:
        """Request ``i``'s id."""
        return self.run.requests.ids[i]

    def phases(self, i: int) -> Phases:
        """Request ``i``'s phases (``trace.phases``)."""
        got = self._phases.get(i)
        if got is None:
            got = self._phases[i] = self.run.phases(i)
        return got

    def done(self, i: int) -> bool:
        """Every request of a finished run has."""
        return True

    def tokens(self, i: int) -> tuple[Sequence[float], int, int]:
        """Request ``i``'s token times in the run's token column."""
        where = self.run.requests.token_slice(i)
        return self.run.requests.tok_t, where.start, where.stop

    def index_of(self, request_id: str) -> int | None:
        """Where ``request_id`` is."""
        return self._index.get(request_id)

    def window(self) -> tuple[float, float]:
        """The run's origin and its last time."""
        return self._window


def _time(value: float | None) -> float:
    return NAN if value is None else value


class LiveTracks:
    """The run on the Run tab as it streams: each request's phases so far, a running one's up to the latest event."""

    def __init__(self, live: LiveRun, source: str) -> None:
        self.live = live
        self.source = source
        self.requests = live.requests
        t0, latest = live.window()
        self._t0 = _time(t0)
        self._now = _time(latest)
        self.running = any(r.finish_reason is None for r in self.requests)

    def __len__(self) -> int:
        return len(self.requests)

    def request_id(self, i: int) -> str:
        """Request ``i``'s id."""
        return self.requests[i].request_id

    def phases(self, i: int) -> Phases:
        """Request ``i``'s phases so far (``trace.live_phases``)."""
        r = self.requests[i]
        return live_phases(r.request_id, self.source, _time(r.t_send), _time(r.t_first), _time(r.t_last),
                           _time(r.t_finish), r.engine_times, self._now)

    def done(self, i: int) -> bool:
        """Whether request ``i`` has finished."""
        return self.requests[i].finish_reason is not None

    def tokens(self, i: int) -> tuple[Sequence[float], int, int]:
        """Request ``i``'s token times."""
        times = self.requests[i].times
        return times, 0, len(times)

    def index_of(self, request_id: str) -> int | None:
        """Where ``request_id`` is."""
        return self.live.index_of(request_id)

    def window(self) -> tuple[float, float]:
        """The first send and the latest event."""
        return self._t0, self._now


def recorded_run(result: object, source: str) -> TraceRun | None:
    """A finished experiment's result as one run's trace tables: a batch (``RunResult``) or a load (``LoadRun``,
    with its client queue); None for other results (a sweep: the timeline keeps its last run as it streamed)."""
    if isinstance(result, RunResult) and result.requests:
        return run_from_result(result, "last run", None, source=source or "unknown", engine_info={}, settings={})
    if isinstance(result, LoadRun) and result.run.requests:
        return run_from_load(result, "last run", source or "unknown")
    return None


# ------------------------------------------------------------------------------------------------ layout


@dataclass
class TimelineState:
    """What the keys move: the time axis' zoom and start (seconds after the run's origin) and the first row."""

    zoom: int = 1
    start_s: float = 0.0
    top: int = 0

    def window(self, full_s: float) -> tuple[float, float]:
        """The time axis' window (seconds after the run's origin) over a run ``full_s`` long so far."""
        span = full_s / self.zoom
        start = min(max(0.0, self.start_s), max(0.0, full_s - span)) if self.zoom > 1 else 0.0
        return start, start + span

    def zoom_to(self, zoom: int, anchor_s: float, full_s: float) -> None:
        """Zoom to ``zoom`` × (1 … ``TIMELINE_ZOOM_MAX``), keeping ``anchor_s`` where it is on screen (or, when
        it is outside the window, putting it a quarter of the way in)."""
        start, end = self.window(full_s)
        old = end - start
        where = (anchor_s - start) / old if old > 0 and start <= anchor_s <= end else 0.25
        self.zoom = min(max(1, zoom), TIMELINE_ZOOM_MAX)
        span = full_s / self.zoom
        self.start_s = min(max(0.0, anchor_s - where * span), max(0.0, full_s - span))

    def pan(self, direction: int, full_s: float) -> None:
        """Move the window half its width earlier (-1) or later (1)."""
        start, end = self.window(full_s)
        self.start_s = min(max(0.0, start + direction * (end - start) / 2), max(0.0, full_s - (end - start)))


@dataclass(frozen=True)
class TimelineRow:
    """One row: its label, its cells (a phase name each; '' where nothing is), the requests it holds."""

    label: str
    cells: tuple[str, ...]
    first: int
    count: int
    selected: bool


@dataclass(frozen=True)
class TimelineLayout:
    """Everything one drawing of the timeline shows, in lines, and the facts the keys need. A line the height
    leaves no room for is None (header, axis, legend); one that has room but nothing to say is empty."""

    header: str | None
    rows: tuple[TimelineRow, ...]
    axis: str | None
    legend: tuple[str, ...] | None
    figures: tuple[Text, ...]
    selected: Phases | None
    selected_index: int
    requests: int
    per_row: int
    n_rows: int
    top: int
    window_s: tuple[float, float]
    full_s: float
    anchor_s: float
    label_width: int

    @property
    def lines(self) -> int:
        """How many lines it takes."""
        return sum(part is not None for part in (self.header, self.axis, self.legend)) + len(self.rows) + len(
            self.figures)

    @property
    def complete(self) -> bool:
        """Whether every row is shown."""
        return len(self.rows) == self.n_rows


def rows_per_line(requests: int, limit: int = TIMELINE_ROWS_MAX) -> int:
    """Requests per row: 1 up to ``limit`` requests, else the smallest power of two that fits them in ``limit``."""
    per_row = 1
    while math.ceil(requests / per_row) > limit:
        per_row *= 2
    return per_row


def row_cells(members: Sequence[Phases], w0: float, dt: float, width: int) -> list[str]:
    """Each of ``width`` cells of ``dt`` seconds from ``w0``: the phase covering most of it, summed over the row's
    requests ('' where most of the cell is outside them all). A phase that covers at least a third of a cell
    somewhere but wins none gets the cell it covers most, so a short prefill still shows."""
    cover: dict[str, tuple[list[float], list[float]]] = {}
    for ph in members:
        for span in ph.spans:
            a, b = (span.start - w0) / dt, (span.end - w0) / dt
            if not b > a or b <= 0 or a >= width:  # empty, unknown (NaN) or outside the window
                continue
            a, b = max(a, 0.0), min(b, float(width))
            direct, ranged = cover.get(span.name) or cover.setdefault(span.name, ([0.0] * width, [0.0] * (width + 1)))
            ia, ib = int(a), int(b)
            if ia == ib:
                direct[ia] += b - a
                continue
            direct[ia] += ia + 1 - a
            if ib < width:
                direct[ib] += b - ib
            if ib > ia + 1:
                ranged[ia + 1] += 1.0
                ranged[ib] -= 1.0
    names = list(cover)
    if not names:
        return [""] * width
    columns = [[d + r for d, r in zip(cover[n][0], accumulate(cover[n][1][:width]), strict=True)] for n in names]
    members_n = len(members)
    cells = []
    for per_cell in zip(*columns, strict=True):  # a cell's cover by each phase
        best_v = max(per_cell)
        cells.append(names[per_cell.index(best_v)] if best_v > 0 and best_v >= members_n - sum(per_cell) else "")
    shown = set(cells)
    for name, col in zip(names, columns, strict=True):
        if name not in shown:
            c = max(range(width), key=col.__getitem__)
            if col[c] >= members_n / 3:
                cells[c] = name
    return cells


def mark_idle(cells: list[str], tokens: Sequence[tuple[Sequence[float], int, int]], w0: float, dt: float) -> None:
    """Decode cells in which none of the row's requests got a token become ``IDLE`` (``tokens``: each request's
    sorted times, ``times[lo:hi]``) — where that can be seen: a cell at most half the row's gap between tokens
    (coarser cells would show a gap or none by where their edges fall). Costs the tokens inside the window."""
    gap = next(((t[hi - 1] - t[lo]) / (hi - lo - 1) for t, lo, hi in tokens if hi - lo >= 2), 0.0)
    width = len(cells)
    if not gap >= 2 * dt or "decode" not in cells:
        return
    hit = [False] * width
    w1 = w0 + width * dt
    for times, lo, hi in tokens:
        for t in times[bisect_left(times, w0, lo, hi):bisect_right(times, w1, lo, hi)]:
            hit[min(width - 1, int((t - w0) / dt))] = True  # the last cell holds the window's end too
    for c, name in enumerate(cells):
        if name == "decode" and not hit[c]:
            cells[c] = IDLE


def _short(value: float) -> str:
    return "0" if value == 0 else seconds(value if known(value) else None)


def _figures(request_id: str, ph: Phases | None, running: bool, width: int) -> list[Text]:
    """The selected request's phases, each with its time, adding up to its E2E; wrapped between pieces."""
    if ph is None or not ph.spans:
        return [Text(f"▶ {request_id}: not sent yet", "dim")]
    pieces: list[Text] = []
    for name, secs in ph.as_dict().items():
        glyph, style = look(name)
        piece = Text()
        piece.append(glyph, style)
        piece.append(f" {name} {_short(secs)}")
        pieces.append(piece)
    total = ph.e2e_from_arrival
    client = ph.seconds("client queue")
    if running:
        pieces.append(Text(f"= {_short(total)} so far (running)", "bold"))
    elif client > 0:
        pieces.append(Text(f"= {_short(total)} from arrival (E2E from send {_short(total - client)})", "bold"))
    else:
        pieces.append(Text(f"= E2E {_short(total)}", "bold"))
    lines = [Text(f"▶ {request_id}: ", "bold")]
    for k, piece in enumerate(pieces):
        joint = "" if k == 0 else (" " if k == len(pieces) - 1 else " + ")
        if k and len(lines[-1]) + len(joint) + len(piece) > width:  # wrapped between pieces, indented
            lines.append(Text("  "))
            joint = joint.lstrip()
        lines[-1].append(joint)
        lines[-1].append_text(piece)
    return lines


def _nice_step(span: float, ticks: int) -> float:
    raw = span / max(1, ticks)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next((m * power for m in (1, 2, 5, 10) if m * power >= raw), 10 * power)


def _axis(start: float, span: float, width: int, indent: int) -> str:
    """Tick labels (seconds after the run's origin) under the cells."""
    line = [" "] * (indent + width)
    if span <= 0 or width < 8:
        return ""
    step = _nice_step(span, max(1, width // 12))
    k = math.ceil(start / step - 1e-9)
    free = 0
    while k * step <= start + span + 1e-12:
        col = indent + round((k * step - start) / span * width)
        label = "╵" + _short(k * step)
        if col >= free and col + len(label) <= len(line):
            line[col:col + len(label)] = label
            free = col + len(label) + 1
        k += 1
    return "".join(line).rstrip()


def _legend(names: set[str]) -> tuple[str, ...]:
    """The phases drawn, in the order they happen."""
    return tuple([n for n in PHASE_LOOK if n in names] + sorted(n for n in names if n not in PHASE_LOOK and n))


def layout_timeline(tracks: Tracks | None, selected: str | None, width: int, height: int,
                    state: TimelineState) -> TimelineLayout:
    """What the timeline shows at ``width`` × ``height`` cells: header, rows, axis, legend, the selected
    request's figures (``state.top`` comes back moved so that the selected request's row is on screen)."""
    n = len(tracks) if tracks is not None else 0
    if tracks is None or n == 0:
        empty = "No run yet: press r, and each request's row fills in as it runs."
        return TimelineLayout(empty, (), None, None, (), None, 0, 0, 1, 0, 0, (0.0, 0.0), 0.0, 0.0, 0)
    sel = tracks.index_of(selected) if selected is not None else None
    sel = 0 if sel is None else sel
    sel_id = tracks.request_id(sel)
    ph = tracks.phases(sel)
    figures = _figures(sel_id, ph, not tracks.done(sel), max(20, width))
    # A row first; then, as the height allows: header, the figures' first line, up to three rows, axis, the
    # figures' second line, legend; every line left is a row.
    per_row = rows_per_line(n)
    budget = max(1, height) - 1
    got = {}
    for part, lines in (("header", 1), ("fig1", 1), ("rows", min(3, math.ceil(n / per_row)) - 1), ("axis", 1),
                        ("fig2", 1 if len(figures) > 1 else 0), ("legend", 1)):
        got[part] = min(lines, budget) if part == "rows" else lines if budget >= lines else 0
        budget -= got[part]
    rows_fit = 1 + got["rows"] + budget
    if rows_fit > TIMELINE_ROWS_MAX:
        per_row = rows_per_line(n, rows_fit)
    n_rows = math.ceil(n / per_row)
    sel_row = sel // per_row
    top = min(max(state.top, sel_row - rows_fit + 1), sel_row)
    top = max(0, min(top, n_rows - rows_fit))
    shown = range(top, min(n_rows, top + rows_fit))
    labels = [tracks.request_id(r) if per_row == 1 else f"{r * per_row}–{min(n, (r + 1) * per_row) - 1}"
              for r in shown]
    label_width = min(12, max([2, *(len(label) for label in labels)]))
    cells_width = max(1, width - label_width - 2)
    t0, latest = tracks.window()
    timed = known(t0) and known(latest) and latest > t0  # before its first token a run has no time axis yet
    full = latest - t0 if timed else 1e-6
    start, end = state.window(full)
    dt = (end - start) / cells_width
    w0 = t0 + start
    rows = []
    names: set[str] = set()
    for r, label in zip(shown, labels, strict=True):
        first, last = r * per_row, min(n, (r + 1) * per_row)
        members = [tracks.phases(i) for i in range(first, last)]
        cells = row_cells(members, w0, dt, cells_width)
        mark_idle(cells, [tracks.tokens(i) for i in range(first, last)], w0, dt)
        names.update(cells)
        rows.append(TimelineRow(label[:label_width], tuple(cells), first, last - first, first <= sel < last))
    header = f"{n} request{'s' if n != 1 else ''}" + (f", {per_row} per row" if per_row > 1 else "")
    if n_rows > len(rows):
        header += f" · rows {top + 1}–{top + len(rows)} of {n_rows}"
    header += f" · {_short(start)}–{_short(end)}" if timed else " · starting"
    if state.zoom > 1:
        header += f" · zoom {state.zoom}×"
    header += " · running" if tracks.running else ""
    hint = " · z Z zoom · < > move · t hides"
    if len(header) + len(hint) <= width:
        header += hint
    names.discard("")
    anchor = next((p.start for p in ph.spans if p.name == "decode"), ph.spans[-1].end if ph.spans else NAN)
    anchor_s = anchor - t0 if known(anchor) else (start + end) / 2
    return TimelineLayout(
        header=header if got["header"] else None, rows=tuple(rows),
        axis=(_axis(start, end - start, cells_width, label_width + 2) if timed else "") if got["axis"] else None,
        legend=_legend(names) if got["legend"] else None,
        figures=tuple(figures[:got["fig1"] + got["fig2"]]), selected=ph, selected_index=sel, requests=n,
        per_row=per_row,
        n_rows=n_rows, top=top, window_s=(start, end), full_s=full, anchor_s=anchor_s, label_width=label_width)


def render_timeline(layout: TimelineLayout, width: int) -> Text:
    """The layout as lines of text: header, rows (runs of one phase drawn at once), axis, legend, figures."""
    out = Text(no_wrap=True, overflow="crop", end="")
    lines: list[Text] = []
    if layout.header is not None:
        lines.append(Text(layout.header, "dim" if not layout.rows else ""))
    for row in layout.rows:
        line = Text()
        line.append("▶" if row.selected else " ", "bold")
        line.append(row.label.ljust(layout.label_width), "bold" if row.selected else "dim")
        line.append(" ")
        cells = row.cells
        k = 0
        while k < len(cells):
            j = k
            while j < len(cells) and cells[j] == cells[k]:
                j += 1
            glyph, style = look(cells[k]) if cells[k] else (" ", "")
            line.append(glyph * (j - k), style + (" dim" if cells[k] == IDLE else ""))
            k = j
        lines.append(line)
    if layout.axis is not None:
        lines.append(Text(layout.axis, "dim"))
    if layout.legend is not None:
        legend = Text()
        for name in layout.legend:
            glyph, style = look(name)
            piece = Text()
            piece.append(glyph, style + (" dim" if name == IDLE else ""))
            piece.append(f" {name}  ")
            if len(legend) + len(piece) > width:
                break
            legend.append_text(piece)
        lines.append(legend)
    lines.extend(layout.figures)
    for k, line in enumerate(lines):
        if k:
            out.append("\n")
        out.append_text(line)
    return out


# ------------------------------------------------------------------------------------------------ widget


class TimelineView(Static):
    """The Run tab's timeline (``t``), redrawn by the panel's figures timer while it is on screen."""

    SCOPED_CSS = False  # its display rule names the panel it sits in
    DEFAULT_CSS = """
    TimelineView {
        height: 2fr;
        display: none;
        border-bottom: solid $primary 40%;
    }
    LivePanel.-timeline TimelineView {
        display: block;
    }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.state = TimelineState()
        self.source = ""
        self.shown: TimelineLayout | None = None
        """What was drawn last (tests read it)."""
        self._result: object | None = None
        self._recorded: RecordedTracks | None = None
        self._tracks: Tracks | None = None
        self._key: tuple = ()

    def start(self, source: str) -> None:
        """A new run, recorded as ``source`` (the engine, or the one a replay replays): the whole run in view."""
        self.source, self._result, self._recorded = source, None, None
        self.state = TimelineState()
        self._key = ()

    def show_result(self, result: object) -> None:
        """The run ended with ``result``: its rows come from it from now on (a batch or a load; others keep the
        live rows)."""
        self._result, self._recorded, self._key = result, None, ()

    def tracks(self, live: LiveRun | None) -> Tracks | None:
        """What to draw: the finished run's result once there is one, else the run as it streams."""
        if self._result is not None:
            run = recorded_run(self._result, self.source)
            self._result = None
            self._recorded = RecordedTracks(run) if run is not None else None
        if self._recorded is not None:
            return self._recorded
        return LiveTracks(live, self.source) if live is not None and live.requests else None

    def redraw(self, live: LiveRun | None, selected: str | None) -> None:
        """Draw again if it is on screen and the run, the selection, the keys' state or the size moved."""
        if not self.is_on_screen:
            return
        tracks = self.tracks(live) if self._result is not None else None
        version = live.version if live is not None and self._recorded is None else -1
        key = (id(live), version, id(self._recorded), selected, astuple(self.state), self.size)
        if key == self._key:
            return
        if tracks is None:
            tracks = self.tracks(live)
        width, height = self.size.width or 80, self.size.height or 10
        layout = layout_timeline(tracks, selected, width, height, self.state)
        self.state.top = layout.top
        self.shown, self._tracks = layout, tracks
        self._key = (id(live), version, id(self._recorded), selected, astuple(self.state), self.size)
        self.update(render_timeline(layout, width), layout=False)
        # Few rows take only the lines they need (the tokens below get the rest); more get the panel's share.
        if layout.complete and layout.lines < height:
            self.styles.max_height = layout.lines + self.styles.gutter.height
        elif not layout.complete and self.styles.max_height is not None:
            self.styles.max_height = None

    def zoom(self, factor: float) -> None:
        """Zoom the time axis by ``factor`` (2: in, 0.5: out) around the selected request's first token."""
        shown = self.shown
        if shown is not None and shown.requests:
            self.state.zoom_to(round(self.state.zoom * factor) or 1, shown.anchor_s, shown.full_s)

    def pan(self, direction: int) -> None:
        """Move the time axis half a window earlier (-1) or later (1)."""
        if self.shown is not None and self.shown.requests:
            self.state.pan(direction, self.shown.full_s)

    def page(self, direction: int) -> str | None:
        """The request a page of rows up (-1) or down (1) from the selected one (None when nothing is drawn)."""
        shown, tracks = self.shown, self._tracks
        if shown is None or tracks is None or not shown.requests:
            return None
        rows = max(1, len(shown.rows))
        self.state.top = max(0, shown.top + direction * rows)  # the view turns a page; the selection keeps its place
        return tracks.request_id(min(max(0, shown.selected_index + direction * rows * shown.per_row),
                                     shown.requests - 1))
