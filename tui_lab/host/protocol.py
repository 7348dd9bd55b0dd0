"""Messages between the UI and the engine host (all picklable, none import torch)."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from tui_lab.engines.base import EngineInfo
from tui_lab.engines.events import RequestFinished, RequestSubmitted, StreamEvent, TokenEvent, TokenStep
from tui_lab.lab.experiment import Progress, Result

if TYPE_CHECKING:
    from tui_lab.lab.load import LoadPoint
    from tui_lab.lab.pace import Pace
    from tui_lab.lab.sweep import SweepPoint
    from tui_lab.lab.traffic import EnergyPoint

    PartialItem: TypeAlias = SweepPoint | LoadPoint | EnergyPoint | dict[str, float]
    """What an experiment emits while it runs: a sweep point, a load point, an energy point, a counter sample."""

# ---------------------------------------------------------------- commands (UI → host)


@dataclass(frozen=True)
class Load:
    """Create and load an engine (``options`` go to the factory with model/device/cache_dir)."""

    engine: str
    model: str
    device: str = "auto"
    options: dict[str, object] = field(default_factory=dict)
    cache_dir: str | None = None


@dataclass(frozen=True)
class Run:
    """Run the registered experiment ``name`` with ``params`` (validated in the host)."""

    run_id: int
    name: str
    params: dict[str, object]
    replay: str | None = None
    """A trace to play back for this run instead of the loaded engine (a lesson step's GPU recording)."""


@dataclass(frozen=True)
class Stop:
    """Stop the running experiment within one decode step (its partial result still comes)."""

    run_id: int


@dataclass(frozen=True)
class Unload:
    """Free the engine (device memory, the engine's children)."""


@dataclass(frozen=True)
class Shutdown:
    """Unload and exit, taking every process the host started with it."""


@dataclass(frozen=True)
class Calibrate:
    """Measure the loaded engine's pace (a few short runs) and send it as ``Paced``; nothing without an engine."""


@dataclass(frozen=True)
class SaveTrace:
    """Write the trace of the last experiment the host ran (every run it made) into ``folder``."""

    folder: str


@dataclass(frozen=True)
class Ping:
    """Ask for the host's ``time.monotonic()`` (the UI brackets it to compare clocks)."""


# ---------------------------------------------------------------- events (host → UI)


@dataclass(frozen=True)
class Pong:
    """The host's monotonic clock when it read the ``Ping``, and its pid."""

    t_host: float
    pid: int


@dataclass(frozen=True)
class LoadProgress:
    """A loading stage and its fraction (0..1 or None)."""

    stage: str
    fraction: float | None


@dataclass(frozen=True)
class Loaded:
    """The engine is ready; ``info`` is its ``EngineInfo``, ``source`` what its runs are recorded as (the engine's
    name; for a replay, the engine it replays)."""

    info: EngineInfo
    source: str = ""


@dataclass(frozen=True)
class Paced:
    """The loaded engine's measured pace (``tui_lab.lab.pace.Pace``): what the UI prices planned work with."""

    pace: Pace


@dataclass(frozen=True)
class HostError:
    """Something failed in the host: what (load/run/...), a message and what to do."""

    what: str
    message: str
    hint: str
    run_id: int | None = None
    error_type: str = ""


@dataclass(frozen=True)
class Partial:
    """A partial result of a run (a sweep point, one variant of a comparison)."""

    run_id: int
    item: PartialItem


@dataclass(frozen=True)
class RunProgressLine:
    """A ``Progress`` line of a run."""

    run_id: int
    progress: Progress


@dataclass(frozen=True)
class RunDone:
    """The run ended; ``result`` is the experiment's typed result (None if it failed)."""

    run_id: int
    name: str
    result: Result | None


@dataclass(frozen=True)
class TraceSaved:
    """What ``SaveTrace`` wrote: the trace file of run ``run_id`` (experiment ``name``, ``runs`` runs), or
    ``path`` None and ``message`` saying why there is none."""

    path: str | None
    run_id: int | None = None
    name: str = ""
    runs: int = 0
    message: str = ""


@dataclass(frozen=True)
class HostDied:
    """The host process ended without being asked to (crash, OOM kill, segfault)."""

    exitcode: int | None
    message: str


@dataclass
class Frame:
    """Token events of one run over one time window, in columns.

    Token columns are parallel: request index, token id, host timestamp, text piece,
    tokens in the chunk. ``new_ids`` extends the run's request-id table (index → id);
    ``submitted`` and ``finished`` carry the (rare) request start and end events.
    """

    run_id: int
    new_ids: list[str] = field(default_factory=list)
    index: array[int] = field(default_factory=lambda: array("i"))
    token_id: array[int] = field(default_factory=lambda: array("q"))
    t: array[float] = field(default_factory=lambda: array("d"))
    text: list[str] = field(default_factory=list)
    n_tokens: array[int] = field(default_factory=lambda: array("i"))
    submitted: list[RequestSubmitted] = field(default_factory=list)
    finished: list[RequestFinished] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.index) + len(self.submitted) + len(self.finished)

    def events(self, ids: Sequence[str]) -> list[StreamEvent]:
        """Back to engine events (``ids`` is the run's table, already extended by ``new_ids``).

        Submitted events come first and finished last: within one window that is their order.
        """
        out: list[StreamEvent] = list(self.submitted)
        columns = zip(self.index, self.token_id, self.t, self.text, self.n_tokens, strict=True)
        out.extend(TokenEvent(ids[i], tid, text, t, n) for i, tid, t, text, n in columns)
        out.extend(self.finished)
        return out


class FrameBuilder:
    """Folds engine events into ``Frame`` columns (host side).

    A ``TokenStep`` is appended column by column (C-level ``extend``s): the request indices of a
    step's id list are worked out once and reused while the engine hands over the same list.
    """

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self._ids: dict[str, int] = {}
        self._step_ids: Sequence[str] | None = None
        self._step_index = array("i")
        self.frame = Frame(run_id)

    def _index(self, request_id: str) -> int:
        i = self._ids.get(request_id)
        if i is None:
            i = self._ids[request_id] = len(self._ids)
            self.frame.new_ids.append(request_id)
        return i

    def _add_step(self, step: TokenStep) -> None:
        f = self.frame
        if step.request_ids is not self._step_ids:
            self._step_ids = step.request_ids
            self._step_index = array("i", [self._index(rid) for rid in step.request_ids])
        n = len(step.token_ids)
        f.index.extend(self._step_index)
        f.token_id.extend(step.token_ids)
        f.t.extend(array("d", (step.t,)) * n)
        f.text.extend(step.texts)
        f.n_tokens.extend(array("i", (1,)) * n)

    def add(self, events: Sequence[StreamEvent]) -> None:
        """Append events to the current frame."""
        f = self.frame
        for ev in events:
            if type(ev) is TokenStep:
                self._add_step(ev)
            elif isinstance(ev, TokenEvent):
                f.index.append(self._index(ev.request_id))
                f.token_id.append(ev.token_id)
                f.t.append(ev.t)
                f.text.append(ev.text)
                f.n_tokens.append(ev.n_tokens)
            elif isinstance(ev, RequestSubmitted):
                self._index(ev.request_id)
                f.submitted.append(ev)
            elif isinstance(ev, RequestFinished):
                f.finished.append(ev)

    def take(self) -> Frame | None:
        """The frame so far (None if empty); a fresh one starts."""
        if not len(self.frame) and not self.frame.new_ids:
            return None
        frame, self.frame = self.frame, Frame(self.run_id)
        return frame


class FrameReader:
    """Turns a run's frames back into engine events (UI side)."""

    def __init__(self) -> None:
        self.ids: dict[int, list[str]] = {}

    def table(self, frame: Frame) -> list[str]:
        """The run's request-id table (index → id), extended by this frame's new ids."""
        ids = self.ids.setdefault(frame.run_id, [])
        ids.extend(frame.new_ids)
        return ids

    def events(self, frame: Frame) -> list[StreamEvent]:
        """The frame's events, in order."""
        return frame.events(self.table(frame))


Command: TypeAlias = Load | Run | Stop | Unload | Shutdown | Ping | Calibrate | SaveTrace
"""Everything the UI sends the host."""
Event: TypeAlias = (Pong | LoadProgress | Loaded | Paced | HostError | Partial | RunProgressLine | RunDone | TraceSaved
                    | HostDied | Frame)
"""Everything the host (or the link watching it) hands the UI."""
