"""The Run tab's live view: it owns the run on screen and redraws itself from it.

The app hands the panel a ``LiveRun`` when a run starts and passes it the host's token
frames; the panel keeps the run, which request is shown and whether the request list is
open, and redraws on its own timers, only when the run's version moved. ``state`` (the
label of the figures line: running, done, stopped, ...) is reactive: setting it redraws the
figures at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.widgets import Static

from tui_lab.host.protocol import Frame
from tui_lab.ui.live import LiveRun
from tui_lab.ui.theme import CHART_REFRESH_S, TOKEN_REFRESH_S
from tui_lab.ui.widgets.figures import FiguresView
from tui_lab.ui.widgets.request_list import RequestList
from tui_lab.ui.widgets.timeline import TimelineView
from tui_lab.ui.widgets.token_stream import TokenStream


class LivePanel(Vertical):
    """Figures line, run note, (``t``) the timeline, the shown request's tokens and (``a``) one row per request."""

    DEFAULT_CSS = """
    LivePanel {
        height: 1fr;
    }
    """

    state: reactive[str] = reactive("idle")
    """The figures line's state label."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.live: LiveRun | None = None
        self.selected = 0
        self._drawn_version = -1
        self._figures_key: tuple = ()

    def compose(self) -> ComposeResult:
        """Figures, the note, the tokens beside the request list."""
        yield FiguresView(id="figures")
        yield Static("", id="run-note")
        yield TimelineView(id="timeline")
        with Horizontal(id="run-pane"):
            yield TokenStream(id="tokens")
            yield RequestList(id="requests")

    def on_mount(self) -> None:
        """Start the redraw timers."""
        self.note("")
        self.set_interval(TOKEN_REFRESH_S, self.refresh_tokens, name="tokens")
        self.set_interval(CHART_REFRESH_S, self.refresh_figures, name="figures")
        self.refresh_tokens()
        self.refresh_figures()

    def watch_state(self) -> None:
        """The state label moved: redraw the figures at once."""
        self.refresh_figures()

    def note(self, note: str | Text) -> None:
        """The line under the figures (partial, error); hidden when empty to save a row."""
        widget = self.query_one("#run-note", Static)
        widget.update(note)
        widget.display = bool(str(note))

    # ------------------------------------------------------------- the run
    def start(self, live: LiveRun | None, source: str = "") -> None:
        """Show a new run (None: nothing to stream, e.g. an inspection); ``source`` is the engine that makes it
        (for a replay, the engine it replays): the timeline names its phases by it."""
        self.live = live
        self.selected = 0
        self.query_one(TimelineView).start(source)
        self.invalidate()

    def show_result(self, result: object) -> None:
        """The run ended: the timeline draws it from its result from now on."""
        self.query_one(TimelineView).show_result(result)

    def apply_frame(self, frame: Frame, ids: Sequence[str]) -> None:
        """Fold one frame of the host's token columns into the run on screen."""
        if self.live is not None:
            self.live.apply_frame(frame, ids)

    def reset(self) -> None:
        """Forget the run's requests (a sweep moves to its next configuration)."""
        if self.live is not None:
            self.live.reset()
        self.invalidate()

    def invalidate(self) -> None:
        """Redraw the tokens at the next tick even if the run did not move."""
        self._drawn_version = -1

    def select(self, delta: int) -> None:
        """Show another request's tokens."""
        count = len(self.live.requests) if self.live else 0
        if count:
            self.selected = (self.selected + delta) % count
            self.invalidate()
            self.refresh_tokens()
            self.refresh_timeline()

    def timeline(self, what: str) -> None:
        """A timeline key: ``toggle`` shows or hides it; the others (zoom_in, zoom_out, left, right, page_up,
        page_down) show it and move its time axis or its rows."""
        view = self.query_one(TimelineView)
        shown = self.has_class("-timeline")
        self.set_class(what != "toggle" or not shown, "-timeline")
        if what in ("zoom_in", "zoom_out"):
            view.zoom(2 if what == "zoom_in" else 0.5)
        elif what in ("left", "right"):
            view.pan(-1 if what == "left" else 1)
        elif what in ("page_up", "page_down"):
            target = view.page(-1 if what == "page_up" else 1)
            index = self.live.index_of(target) if self.live is not None and target is not None else None
            if index is not None:
                self.selected = index
                self.invalidate()
                self.refresh_tokens()
        # Drawn once the layout has made room for it (a timeline just shown has no size yet).
        self.call_after_refresh(self.refresh_timeline)

    @property
    def selected_id(self) -> str | None:
        """The shown request's id (None before a run)."""
        live = self.live
        if live is None or not live.requests:
            return None
        return live.requests[min(self.selected, len(live.requests) - 1)].request_id

    def toggle_list(self) -> None:
        """One progress row per request, beside (or, when narrow, instead of) the tokens."""
        self.query_one("#run-pane").toggle_class("-show-list")
        self.invalidate()

    # -------------------------------------------------------------- redraw
    def refresh_tokens(self) -> None:
        """Redraw the shown request (and the list) if the run moved."""
        try:
            self._draw_tokens()
        except NoMatches:
            pass  # being torn down

    def _draw_tokens(self) -> None:
        live = self.live
        version = live.version if live is not None else 0
        if version == self._drawn_version:
            return
        self._drawn_version = version
        tokens_view = self.query_one(TokenStream)
        if live is None or not live.requests:
            tokens_view.show(None, [])
            self.query_one(RequestList).show([], 0)
            return
        self.selected = min(self.selected, len(live.requests) - 1)
        req, tokens = live.snapshot_request(self.selected)
        tokens_view.show(req, tokens)
        if self.query_one("#run-pane").has_class("-show-list"):
            self.query_one(RequestList).show(live.rows(), self.selected)

    def refresh_timeline(self) -> None:
        """Redraw the timeline if it is on screen and something it shows moved."""
        try:
            self.query_one(TimelineView).redraw(self.live, self.selected_id)
        except NoMatches:
            pass  # being torn down

    def refresh_figures(self) -> None:
        """Redraw the figures line if the run or the state moved (and the timeline, on the same ≤ 4 Hz tick)."""
        self.refresh_timeline()
        key = (id(self.live), self.live.version if self.live is not None else -1, self.state)
        if key == self._figures_key:
            return
        try:
            figures = self.query_one(FiguresView)
        except NoMatches:
            return
        self._figures_key = key
        figures.show(self.live.figures() if self.live is not None else None, self.state)
