"""The engine host's events as Textual messages: one typed message per kind of event.

``HostLink`` turns each event the host sends (``tui_lab.host.protocol``) into one of these and posts it
to the app from its reader thread; the app handles them on its own thread. Every message carries the
host generation it came from, so the events of a host that was replaced (``m`` reloads) are told apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

from tui_lab.engines.base import EngineInfo
from tui_lab.host.protocol import Frame, TraceSaved

if TYPE_CHECKING:
    from tui_lab.host.protocol import PartialItem
from tui_lab.lab.experiment import Progress, Result
from tui_lab.lab.pace import Pace


class HostMessage(Message):
    """Something the engine host of generation ``generation`` said."""

    def __init__(self, generation: int) -> None:
        super().__init__()
        self.generation = generation


class EngineLoading(HostMessage):
    """A loading stage and its completed fraction (None when unknown)."""

    def __init__(self, generation: int, stage: str, fraction: float | None) -> None:
        super().__init__(generation)
        self.stage = stage
        self.fraction = fraction

    def can_replace(self, message: Message) -> bool:
        """A newer stage of the same load supersedes one still waiting in the queue."""
        return isinstance(message, EngineLoading) and message.generation == self.generation


class EngineReady(HostMessage):
    """The engine finished loading; ``info`` says what was loaded, where; ``source`` what its runs are recorded as
    (the engine's name; for a replay, the engine it replays)."""

    def __init__(self, generation: int, info: EngineInfo, source: str = "") -> None:
        super().__init__(generation)
        self.info = info
        self.source = source or info.engine


class EnginePaced(HostMessage):
    """The loaded engine's pace, measured right after it loaded (what "about N s here" is priced with)."""

    def __init__(self, generation: int, pace: Pace) -> None:
        super().__init__(generation)
        self.pace = pace


class EngineFailed(HostMessage):
    """Creating or loading the engine failed: why, and what to do."""

    def __init__(self, generation: int, message: str, hint: str) -> None:
        super().__init__(generation)
        self.message = message
        self.hint = hint


class TokensArrived(HostMessage):
    """One frame of a run's token columns; ``ids`` is the run's request table (index → id) as of this frame."""

    def __init__(self, generation: int, frame: Frame, ids: tuple[str, ...]) -> None:
        super().__init__(generation)
        self.run_id = frame.run_id
        self.frame = frame
        self.ids = ids


class RunProgress(HostMessage):
    """A progress line of run ``run_id`` ("batch 8 · run 2/3")."""

    def __init__(self, generation: int, run_id: int, progress: Progress) -> None:
        super().__init__(generation)
        self.run_id = run_id
        self.progress = progress


class PartialResult(HostMessage):
    """A partial result of run ``run_id`` (a sweep point, a load point, a sample)."""

    def __init__(self, generation: int, run_id: int, item: PartialItem) -> None:
        super().__init__(generation)
        self.run_id = run_id
        self.item = item


class RunFinished(HostMessage):
    """Run ``run_id`` of experiment ``name`` ended; ``result`` is None when it failed (``RunFailed`` said why)."""

    def __init__(self, generation: int, run_id: int, name: str, result: Result | None) -> None:
        super().__init__(generation)
        self.run_id = run_id
        self.name = name
        self.result = result


class RunFailed(HostMessage):
    """Run ``run_id`` (of experiment ``what``) failed: why, and what to do."""

    def __init__(self, generation: int, run_id: int | None, what: str, message: str, hint: str) -> None:
        super().__init__(generation)
        self.run_id = run_id
        self.what = what
        self.message = message
        self.hint = hint


class TraceWritten(HostMessage):
    """The host wrote the trace of its last experiment (``saved.path``), or said why it could not."""

    def __init__(self, generation: int, saved: TraceSaved) -> None:
        super().__init__(generation)
        self.saved = saved


class HostDied(HostMessage):
    """The engine process ended without being asked to (crash, out-of-memory kill); ``message`` says how."""

    def __init__(self, generation: int, exitcode: int | None, message: str) -> None:
        super().__init__(generation)
        self.exitcode = exitcode
        self.message = message
