"""The app's link to its engine host: start it, send it commands, post each of its events as a typed message.

One host at a time. Starting another (``m`` reloads) closes the old one in the background and bumps the
generation, so the old host's last events, still queued, are recognised as stale by ``current``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from textual.message import Message

from tui_lab.engines.base import Engine
from tui_lab.host import protocol as p
from tui_lab.host.client import EngineHost
from tui_lab.host.server import DEFAULT_FACTORY
from tui_lab.ui.messages import (
    EngineFailed,
    EngineLoading,
    EnginePaced,
    EngineReady,
    HostDied,
    HostMessage,
    PartialResult,
    RunFailed,
    RunFinished,
    RunProgress,
    TokensArrived,
    TraceWritten,
)

EngineFactory = Callable[..., Engine]
"""Same call shape as ``tui_lab.engines.create_engine(name, **options)``."""


def to_message(generation: int, event: p.Event, table: Callable[[p.Frame], list[str]]) -> HostMessage | None:
    """The message for one host event (None for events the app does not show, e.g. a clock ``Pong``).

    ``table`` extends a run's request table by a frame's new ids: it sees every frame, in order.
    """
    match event:
        case p.Frame():
            return TokensArrived(generation, event, tuple(table(event)))
        case p.LoadProgress(stage=stage, fraction=fraction):
            return EngineLoading(generation, stage, fraction)
        case p.Loaded(info=info, source=source):
            return EngineReady(generation, info, source)
        case p.Paced(pace=pace):
            return EnginePaced(generation, pace)
        case p.HostError(what="load", message=message, hint=hint):
            return EngineFailed(generation, message, hint)
        case p.HostError(what=what, message=message, hint=hint, run_id=run_id):
            return RunFailed(generation, run_id, what, message, hint)
        case p.RunProgressLine(run_id=run_id, progress=progress):
            return RunProgress(generation, run_id, progress)
        case p.Partial(run_id=run_id, item=item):
            return PartialResult(generation, run_id, item)
        case p.RunDone(run_id=run_id, name=name, result=result):
            return RunFinished(generation, run_id, name, result)
        case p.TraceSaved():
            return TraceWritten(generation, event)
        case p.HostDied(exitcode=exitcode, message=message):
            return HostDied(generation, exitcode, message)
    return None


class HostLink:
    """Owns the engine host process; ``post`` receives one ``HostMessage`` per event, from the reader thread."""

    def __init__(self, post: Callable[[Message], object], factory: str | EngineFactory = DEFAULT_FACTORY) -> None:
        self._post = post
        self._factory = factory
        self.host: EngineHost | None = None
        self.generation = 0

    @property
    def alive(self) -> bool:
        """Whether a host is started (and has not died)."""
        return self.host is not None

    def current(self, message: HostMessage) -> bool:
        """Whether ``message`` comes from the host started last."""
        return message.generation == self.generation

    def start(self, load: p.Load) -> None:
        """Close the old host (in the background), start a fresh one and ask it to load ``load``'s engine, then
        to measure its pace.

        A host that cannot be started raises (``OSError`` and the like): the caller says so.
        """
        self.generation += 1
        self.stop()
        generation = self.generation
        started: list[EngineHost] = []  # frames come only after a Run, long after the host is started

        def on_event(event: p.Event) -> None:
            message = to_message(generation, event, lambda frame: started[0].reader.table(frame))
            if message is not None:
                self._post(message)

        host = EngineHost(on_event, self._factory)
        started.append(host)
        self.host = host
        host.send(load)
        host.send(p.Calibrate())

    def send(self, command: p.Command) -> bool:
        """Send a command; False when there is no host (or it is gone)."""
        return self.host is not None and self.host.send(command)

    def lost(self) -> None:
        """The host died by itself: forget it (its process is gone)."""
        self.host = None

    def stop(self) -> None:
        """Close the host without waiting: it unloads its engine (vLLM's engine core too), which takes a while."""
        host, self.host = self.host, None
        if host is not None:
            threading.Thread(target=host.close, name="host-close", daemon=True).start()

    def close(self) -> None:
        """Close the host and wait for it (the app is quitting)."""
        host, self.host = self.host, None
        if host is not None:
            host.close()
