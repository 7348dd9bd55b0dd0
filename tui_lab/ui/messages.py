"""App-wide messages posted by worker threads to the lab app.

Workers never touch widgets: they post one of these and the app updates the
screen on its own thread. Progress messages replace their stale copies still
waiting in the queue, so a fast producer cannot flood the UI.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message


class EngineLoadProgress(Message):
    """A loading stage and its completed fraction (None when unknown)."""

    def __init__(self, generation: int, stage: str, fraction: float | None) -> None:
        super().__init__()
        self.generation = generation
        self.stage = stage
        self.fraction = fraction

    def can_replace(self, message: Message) -> bool:
        """A newer progress report of the same load supersedes this one."""
        return isinstance(message, EngineLoadProgress) and message.generation == self.generation


class EngineReady(Message):
    """The engine finished loading."""

    def __init__(self, generation: int, engine: Any, info: Any) -> None:
        super().__init__()
        self.generation = generation
        self.engine = engine
        self.info = info


class EngineFailed(Message):
    """Creating or loading the engine failed; ``error`` is shown with what to do."""

    def __init__(self, generation: int, error: BaseException) -> None:
        super().__init__()
        self.generation = generation
        self.error = error


class RunProgress(Message):
    """New events were folded into the live run ``run_id`` (one per time-batch)."""

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id

    def can_replace(self, message: Message) -> bool:
        """Only the latest "something changed" matters: the live state already holds the events."""
        return isinstance(message, RunProgress) and message.run_id == self.run_id


class RunFinished(Message):
    """A single run ended (complete, stopped or failed) with its full result."""

    def __init__(self, run_id: int, result: Any) -> None:
        super().__init__()
        self.run_id = run_id
        self.result = result


class SweepPointReady(Message):
    """One configuration of a sweep finished: its point can be charted."""

    def __init__(self, run_id: int, point: Any) -> None:
        super().__init__()
        self.run_id = run_id
        self.point = point


class ExperimentFinished(Message):
    """A sweep, comparison or inspection ended; ``result`` is its result object."""

    def __init__(self, run_id: int, name: str, result: Any) -> None:
        super().__init__()
        self.run_id = run_id
        self.name = name
        self.result = result


class TaskFailed(Message):
    """A run, sweep or inspection failed; ``error`` is shown in the live panel."""

    def __init__(self, run_id: int, what: str, error: BaseException) -> None:
        super().__init__()
        self.run_id = run_id
        self.what = what
        self.error = error


class HostEvent(Message):
    """One event from the engine host (``tui_lab.host.protocol``), posted by its reader thread."""

    def __init__(self, generation: int, event: Any) -> None:
        super().__init__()
        self.generation = generation
        self.event = event
