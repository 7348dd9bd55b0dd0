"""The UI side of the engine host: start it, send commands, get events on a callback.

Nothing here imports torch, transformers or vLLM: they live in the host process only.

When the host dies by itself (a crash, the out-of-memory killer's ``kill -9``), what it started may
live on: vLLM's engine core and workers, holding the GPU. Before it reports the death, the UI side
ends every process of the host's session (the host calls ``setsid``: its group and session ids are
its pid) and waits until they are gone, so a fresh engine (``m``) never starts beside the old one.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tui_lab.host import logs
from tui_lab.host import protocol as p
from tui_lab.host.server import DEFAULT_FACTORY, main

TERM_GRACE_S = 2.0
"""How long the host's leftovers get to exit on SIGTERM (vLLM frees its shared memory) before SIGKILL."""
KILL_WAIT_S = 15.0
"""How long to wait for them to be gone after SIGKILL."""

EventCallback = Callable[[Any], None]


class EngineHost:
    """One host process. ``on_event`` is called from a reader thread with every event.

    Start it from a long-lived thread (the UI's main thread): Linux's parent-death signal
    fires when the *thread* that started the child ends.
    """

    def __init__(self, on_event: EventCallback, factory: str | Callable[..., Any] = DEFAULT_FACTORY) -> None:
        self.on_event = on_event
        self.factory = factory
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe(duplex=True)
        self.log_path: Path | None = None
        """The host's log file: its output and its children's (None for a host thread in this process)."""
        self._log_mark = 0
        if callable(factory):
            # An engine factory object (a test's, or a benchmark lending a loaded engine) cannot cross to
            # another process: the same host loop runs in a thread here, through the same pipe and messages.
            self.process: Any = _HostThread(child, factory)
        else:
            self.log_path = logs.new_log()
            self.process = ctx.Process(target=main, args=(child, os.getpid(), factory,
                                                          None if self.log_path is None else str(self.log_path)),
                                       name="inference-lab-host", daemon=False)
        with _real_std_streams():
            self.process.start()
        if not callable(factory):
            child.close()
        self._closing = False
        self._lock = threading.Lock()
        self.reader = p.FrameReader()
        self._thread = threading.Thread(target=self._read, name="host-events", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int | None:
        """The host's pid."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether the host process still runs."""
        return self.process.is_alive()

    def send(self, command: Any) -> bool:
        """Send a command; False if the host is gone (its ``HostDied`` event says why)."""
        if isinstance(command, p.Load | p.Run):
            self._log_mark = logs.size(self.log_path)  # a death from here on looks for its cause from here
        try:
            with self._lock:
                self._conn.send(command)
            return True
        except (OSError, EOFError, BrokenPipeError):
            return False

    def _read(self) -> None:
        while True:
            try:
                event = self._conn.recv()
            except (EOFError, OSError):
                break
            except TypeError:
                # close() closed the pipe under a blocked recv (its handle became None): the end, not a fault.
                if self._closing:
                    break
                raise
            if event is None:  # orderly shutdown
                break
            self.on_event(event)
        self.process.join(timeout=2.0)
        if not self._closing:
            # Whatever the host started must be gone before anyone is told (and presses m for a new engine).
            left = end_session(self.process.pid) if self.process.pid is not None else []
            self.process.join(timeout=1.0)
            code = self.process.exitcode
            message = _death_text(code)
            extra = logs.describe(self.log_path, self._log_mark)
            if extra:
                message = f"{message}; {extra}"
            if left:
                message += f"; {len(left)} of its processes would not end (pids {', '.join(map(str, left))})"
            self.on_event(p.HostDied(code, message))

    def close(self, timeout: float = 3.0) -> None:
        """Shut the host down (it unloads and kills its children); end what is left of it, and wait for that."""
        self._closing = True
        self.send(p.Shutdown())
        self.process.join(timeout)
        if self.process.pid is not None:
            end_session(self.process.pid)
            self.process.join(1.0)
        with contextlib.suppress(OSError):
            self._conn.close()

    def ping(self, timeout: float = 5.0) -> tuple[float, float, float]:
        """(UI time before, host time, UI time after) of one round trip; for clock checks."""
        got = threading.Event()
        box: list[float] = []
        previous = self.on_event

        def catch(event: Any) -> None:
            if isinstance(event, p.Pong):
                box.append(event.t_host)
                got.set()
            else:
                previous(event)

        self.on_event = catch
        try:
            before = time.monotonic()
            self.send(p.Ping())
            if not got.wait(timeout):
                raise TimeoutError("the engine host did not answer")
            return before, box[0], time.monotonic()
        finally:
            self.on_event = previous


@contextlib.contextmanager
def _real_std_streams() -> Any:
    """Start children with the real stdout/stderr: under Textual they are replaced by capture objects whose
    ``fileno()`` is -1, which multiprocessing's resource tracker would try to hand to the child."""
    import sys

    saved = sys.stdout, sys.stderr
    sys.stdout = sys.__stdout__ or saved[0]
    sys.stderr = sys.__stderr__ or saved[1]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


class _HostThread(threading.Thread):
    """The host loop in a thread of this process, shaped like a ``Process`` for ``EngineHost``."""

    pid = None
    exitcode = 0

    def __init__(self, conn: Any, factory: Callable[..., Any]) -> None:
        super().__init__(name="inference-lab-host", daemon=True)
        self._conn, self._factory = conn, factory

    def run(self) -> None:
        from tui_lab.host.server import Host

        Host(self._conn, self._factory, in_process=True).serve()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the loop to end."""
        if self.ident is not None:
            super().join(timeout)


def session_members(leader: int) -> list[int]:
    """Live processes (zombies left out) whose process group or session is ``leader``'s: a host and
    everything it started, including children that moved to a group of their own. Linux ``/proc``."""
    me, found = os.getpid(), list[int]()
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read().decode("utf-8", "replace")
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 3 and fields[0] not in ("Z", "X") and leader in (int(fields[2]), int(fields[3])):
            found.append(int(name))
    return found


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def _wait_gone(leader: int, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    left = session_members(leader)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = session_members(leader)
    return left


def end_session(leader: int, grace_s: float = TERM_GRACE_S, wait_s: float = KILL_WAIT_S) -> list[int]:
    """End every process of ``leader``'s group and session (SIGTERM, then SIGKILL after ``grace_s``) and wait
    until none is left; the pids still there after ``wait_s`` more (none, unless the kernel holds one)."""
    left = session_members(leader)
    if not left:
        return []
    _signal_all(left, signal.SIGTERM)
    left = _wait_gone(leader, grace_s)
    if left:
        _signal_all(left, signal.SIGKILL)
        left = _wait_gone(leader, wait_s)
    return left


def _death_text(code: int | None) -> str:
    """What a host exit code means, for the panel."""
    if code is not None and code < 0:
        import signal

        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        if -code == 9:
            # What to make smaller depends on the run (a batch of one has no batch to lower): the UI says it.
            return ("the engine process was killed (SIGKILL: often the out-of-memory killer) — "
                    "press m to start a fresh engine")
        if -code == 11:
            return "the engine process crashed (segmentation fault) — press m to start a fresh engine"
        return f"the engine process ended on {name} — press m to start a fresh engine"
    return f"the engine process exited (code {code}) — press m to start a fresh engine"
