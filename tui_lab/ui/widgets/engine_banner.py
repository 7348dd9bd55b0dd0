"""The engine's line above the tabs: loading (each stage with how long it has taken), ready, or why it failed."""

from __future__ import annotations

import time
from typing import Literal

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.widgets import Label, ProgressBar

from tui_lab.engines.base import EngineInfo
from tui_lab.views.style import ERROR_STYLE, OK_STYLE

EngineState = Literal["idle", "loading", "ready", "failed"]

CHANGE_HINT = "change the engine or its options in Controls, then Enter or m"


class EngineBanner(Horizontal):
    """What the engine is doing; ``state``, ``info`` and ``load_error`` are what the rest of the app asks."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state: EngineState = "idle"
        self.info: EngineInfo | None = None
        """What is loaded (None while loading or after a failure)."""
        self.source = ""
        """What the loaded engine's runs are recorded as: its name, or for a replay the engine it replays."""
        self.load_error = ""
        """Why the engine last failed to load (said beside a guess that cannot be measured without it)."""
        self._stage = ""
        self._stage_fraction: float | None = None
        self.stage_started = 0.0
        """When the current loading stage began (monotonic)."""

    def compose(self) -> ComposeResult:
        """The text and a progress bar (shown while loading)."""
        yield Label("", id="engine-text")
        yield ProgressBar(total=1.0, show_eta=False, id="engine-progress")

    def on_mount(self) -> None:
        """Redraw a loading stage's elapsed time once a second."""
        self.set_interval(1.0, self.tick, name="load-stage")

    def start_loading(self, what: str) -> None:
        """A load starts."""
        self.state, self.info, self._stage = "loading", None, ""
        self._draw(f"loading {what}…", None)

    def stage(self, stage: str, fraction: float | None) -> None:
        """A loading stage, shown with how long it has taken so far (materializing a model takes a while)."""
        if self.state != "loading":
            return
        if stage != self._stage:
            self._stage, self.stage_started = stage, time.monotonic()
        self._stage_fraction = fraction
        self.tick()

    def tick(self) -> None:
        """Redraw the stage with its elapsed time (every second while loading)."""
        if self.state == "loading" and self._stage:
            self._draw(f"loading: {self._stage} · {time.monotonic() - self.stage_started:.0f} s", self._stage_fraction)

    def ready(self, info: EngineInfo, source: str = "") -> None:
        """Loaded: what, on which engine and device, in which dtype, and its notes (``source``: what its runs are
        recorded as, when it is not the engine's own name)."""
        self.state, self.info, self.load_error = "ready", info, ""
        self.source = source or info.engine
        notes = list(info.notes)
        if not info.text_is_meaningful:
            notes.insert(0, "random weights: timing is real, the text is noise")
        text = f"ready: {info.model} · {info.engine} · {info.device} · {info.dtype}"
        if notes:
            text += " · " + "; ".join(notes)
        self._draw(text, 1.0, OK_STYLE)

    def failed(self, message: str, hint: str) -> None:
        """The engine did not load: why, and what to do."""
        self.state, self.info, self.load_error = "failed", None, message
        todo = f" — {hint}" if hint else ""
        self._draw(f"engine error: {message}{todo} ({CHANGE_HINT})", None, ERROR_STYLE)

    def died(self, message: str) -> None:
        """The engine process ended by itself."""
        self.state, self.info = "failed", None
        self._draw(f"engine error: {message}", None, ERROR_STYLE)

    def _draw(self, text: str, fraction: float | None, style: str = "") -> None:
        try:
            label = self.query_one("#engine-text", Label)
            bar = self.query_one("#engine-progress", ProgressBar)
        except NoMatches:  # the app is closing (quit while loading): the once-a-second tick has nothing to draw
            return
        label.update(Text(text, style=style))
        bar.display = self.state == "loading"
        bar.update(total=1.0 if fraction is not None else None, progress=fraction or 0.0)
