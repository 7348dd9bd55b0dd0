"""The host process: owns the engine, runs experiments by name, streams frames back.

Started by ``client.EngineHost`` with the ``spawn`` method; ``main`` is its entry (a
module function, so vLLM's own spawned children can re-import it safely). A reader
thread takes commands, so ``Stop`` acts while an experiment runs on the main thread.

No orphans: the host leads its own session (``setsid``), asks Linux to signal it when
its parent dies (``PR_SET_PDEATHSIG``), watches the parent pid and the pipe, and on any
of those kills its whole process group (vLLM's engine core, any helper) before exiting.

Its stdout and stderr (and so its children's: vLLM's engine core, warnings, tracebacks) go to
its own log file (``tui_lab.host.logs``), never across the app's screen; an error it reports
carries the cause found in what the log got since the command began, and the log's path.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from tui_lab.host import logs
from tui_lab.host import protocol as p

if TYPE_CHECKING:
    from tui_lab.engines.events import StreamEvent

FRAME_INTERVAL_S = 1 / 30
"""At most ~30 token frames a second reach the UI."""
DEFAULT_FACTORY = "tui_lab.engines:create_engine"



def resolve(spec: str | Callable[..., Any]) -> Callable[..., Any]:
    """``"package.module:function"`` → the function (a function is returned as it is)."""
    if callable(spec):
        return spec
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def _kill_group_and_exit(code: int = 0) -> None:
    """Kill every process of the host's group and session (its children, also those that made a group of
    their own), then exit at once."""
    with contextlib.suppress(Exception):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.killpg(os.getpgid(0), signal.SIGTERM)
    with contextlib.suppress(Exception):
        for pid in _group_children():
            os.kill(pid, signal.SIGTERM)
    time.sleep(0.05)
    with contextlib.suppress(Exception):
        # Children that ignored SIGTERM; the host itself is spared by exiting right after.
        for pid in _group_children():
            os.kill(pid, signal.SIGKILL)
    os._exit(code)


def _group_children() -> list[int]:
    """Pids in this process group or session other than this one (Linux /proc)."""
    me, pgid, sid, out = os.getpid(), os.getpgid(0), os.getsid(0), []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) != me:
                with contextlib.suppress(OSError):
                    if os.getpgid(int(name)) == pgid or (sid == me and os.getsid(int(name)) == sid):
                        out.append(int(name))
    return out


def _guard_parent(parent_pid: int) -> None:
    """Die (with the whole group) when the UI dies, however it dies."""
    with contextlib.suppress(OSError):
        os.setsid()
    signal.signal(signal.SIGTERM, lambda *_: _kill_group_and_exit(0))
    signal.signal(signal.SIGHUP, lambda *_: _kill_group_and_exit(0))
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # died before prctl took effect
        _kill_group_and_exit(0)

    def watch() -> None:
        while True:
            time.sleep(0.25)
            if os.getppid() != parent_pid:
                _kill_group_and_exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class _Log:
    """This host's log file (None: output stays where it was, e.g. a host thread in the app's process) and
    where the current command's output starts in it."""

    path: str | None = None
    mark: int = 0


_LOG = _Log()


def _log_to(path: str | None) -> None:
    """Point this process's stdout and stderr (file descriptors 1 and 2, which every child inherits) at
    ``path``, line by line; a crash writes its Python stack there too (``faulthandler``)."""
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:
        return  # no log: output stays where it was rather than nowhere
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    faulthandler.enable(file=sys.stderr, all_threads=True)
    _LOG.path, _LOG.mark = path, logs.size(path)


def _with_log(hint: str, known: str) -> str:
    """``hint`` and, when the current command left something in the log, the cause found there and the path."""
    extra = logs.describe(_LOG.path, _LOG.mark, known=known)
    return f"{hint.rstrip()}; {extra}" if hint.strip() and extra else (extra or hint)


def _error(what: str, exc: BaseException, run_id: int | None = None) -> p.HostError:
    from tui_lab.errors import describe

    message, hint = describe(exc)
    return p.HostError(what, message, _with_log(hint, message), run_id, type(exc).__name__)


def _run_error_with_log(result: Any) -> None:
    """A result that ended in an error (an engine that died mid-run) gets the cause the log holds."""
    holder = result if isinstance(getattr(result, "error", None), str) else getattr(result, "run", None)
    error = getattr(holder, "error", None)
    if holder is not None and isinstance(error, str) and error and error != "interrupted":
        extra = logs.describe(_LOG.path, _LOG.mark, known=error)
        if extra.startswith("cause"):
            with contextlib.suppress(Exception):
                holder.error = f"{error}; {extra}"


def _picklable(result: Any) -> Any:
    """Results cross the pipe; an attached exception object may not pickle, so it is dropped then.
    A run's error whose cause is in the host's log gets that cause (``_run_error_with_log``)."""
    _run_error_with_log(result)
    try:
        pickle.dumps(result, protocol=5)
        return result
    except Exception:
        if hasattr(result, "exception"):
            result.exception = None
        return result


def plain_info(info: Any) -> Any:
    """``EngineInfo`` with builtin values only.

    ``torch.__version__`` is a ``str`` subclass from torch: sent as is, unpickling it would
    import torch into the UI process.
    """
    from dataclasses import replace

    return replace(info, engine=str(info.engine), model=str(info.model), device=str(info.device),
                   dtype=str(info.dtype), versions={str(k): str(v) for k, v in (info.versions or {}).items()},
                   notes=tuple(str(n) for n in info.notes))


class Host:
    """The host's state: one engine, one running experiment at most."""

    def __init__(self, conn: Connection, factory_spec: str | Callable[..., Any], in_process: bool = False) -> None:
        self.conn = conn
        self.factory_spec = factory_spec
        self.in_process = in_process
        """A host thread inside the UI process (engines injected as objects): it ends its loop instead of exiting."""
        self.engine: Any = None
        self.loaded_with: p.Load | None = None
        """The command that loaded the engine (to load it again after a variant released it)."""
        self.load_s: float | None = None
        """How long the last load took (the pace prices a comparison's variant loads with it)."""
        self.engine_name = ""
        self.engine_options: dict[str, Any] = {}
        self.stop = threading.Event()
        self.run_id: int | None = None
        self.work: queue.Queue[Any] = queue.Queue()
        self._outbox: queue.Queue[Any] = queue.Queue()
        self._builders: dict[int, p.FrameBuilder] = {}
        self.last_recording: tuple[int, str, Any] | None = None
        """The last experiment that recorded its runs: its run id, its name and its ``Recording``."""
        self._sending = threading.Thread(target=self._sender, name="events", daemon=True)
        self._sending.start()

    def send(self, message: Any) -> None:
        """Queue one event for the UI; the sender thread writes it to the pipe, in order."""
        self._outbox.put(message)

    def send_events(self, run_id: int, events: list) -> None:
        """Queue a batch of a run's token events (the experiment's thread does no more than this)."""
        self._outbox.put(_Events(run_id, events))

    def _sender(self) -> None:
        """Build the columnar frames and write everything to the pipe, off the engine's thread.

        The engine's thread only appends event lists to a queue: folding events into columns, pickling
        and waiting for the UI to read the pipe (back-pressure) happen here, while the engine's thread
        waits for the GPU with the GIL released. Frames go out at most every ``FRAME_INTERVAL_S``;
        any other event first flushes the frame in progress, so the UI sees everything in order.
        """
        builder: p.FrameBuilder | None = None
        last = time.monotonic()
        while True:
            timeout = None if builder is None else max(0.0, FRAME_INTERVAL_S - (time.monotonic() - last))
            try:
                item = self._outbox.get(timeout=timeout)
            except queue.Empty:
                item = _FLUSH
            if isinstance(item, _Events):
                if builder is None or builder.run_id != item.run_id:
                    self._write_frame(builder)
                    builder = self._builders.setdefault(item.run_id, p.FrameBuilder(item.run_id))
                builder.add(item.events)
                if time.monotonic() - last >= FRAME_INTERVAL_S:
                    self._write_frame(builder)
                    last = time.monotonic()
                continue
            self._write_frame(builder)
            last = time.monotonic()
            if item is _FLUSH:
                continue
            if isinstance(item, p.RunDone):
                self._builders.pop(item.run_id, None)
                builder = None
            try:
                self.conn.send(item)
            except (OSError, EOFError, BrokenPipeError):
                return
            if item is None:
                return

    def _write_frame(self, builder: p.FrameBuilder | None) -> None:
        frame = builder.take() if builder is not None else None
        if frame is not None:
            with contextlib.suppress(OSError, EOFError, BrokenPipeError):
                self.conn.send(frame)

    def read_commands(self) -> None:
        """Reader thread: stop acts now; everything else queues for the main thread."""
        while True:
            try:
                cmd = self.conn.recv()
            except (EOFError, OSError):  # the UI is gone
                if self.in_process:
                    self.work.put(p.Shutdown())
                    return
                _kill_group_and_exit(0)
            if isinstance(cmd, p.Ping):
                self.send(p.Pong(time.monotonic(), os.getpid()))
            elif isinstance(cmd, p.Stop):
                if cmd.run_id == self.run_id:
                    self.stop.set()
                    if self.engine is not None:
                        with contextlib.suppress(Exception):
                            self.engine.cancel()
            elif isinstance(cmd, p.SaveTrace):
                # A thread of its own: building and writing a large trace must not hold up a Stop.
                threading.Thread(target=self.save_trace, args=(cmd,), name="save-trace", daemon=True).start()
            elif isinstance(cmd, p.Shutdown):
                self.stop.set()
                self.work.put(cmd)
                if self.run_id is not None and self.engine is not None:
                    with contextlib.suppress(Exception):
                        self.engine.cancel()
            else:
                self.work.put(cmd)

    def serve(self) -> None:
        """Main thread: load, run and unload as the commands come."""
        threading.Thread(target=self.read_commands, name="commands", daemon=True).start()
        while True:
            cmd = self.work.get()
            _LOG.mark = logs.size(_LOG.path)  # this command's output starts here
            if isinstance(cmd, p.Shutdown):
                self.unload()
                self.send(None)
                self._sending.join(timeout=5.0)
                if self.in_process:
                    return
                _kill_group_and_exit(0)
            elif isinstance(cmd, p.Load):
                self.load(cmd)
            elif isinstance(cmd, p.Unload):
                self.loaded_with = None
                self.unload()
            elif isinstance(cmd, p.Run):
                self.run(cmd)
            elif isinstance(cmd, p.Calibrate):
                self.calibrate()

    def _reload(self) -> Any:
        """Load the released engine again (its progress goes to the UI as any load's does)."""
        if self.loaded_with is not None:
            self.load(self.loaded_with)
        return self.engine

    def unload(self) -> None:
        """Free the engine (and, for vLLM, its engine core)."""
        engine, self.engine = self.engine, None
        if engine is not None:
            with contextlib.suppress(Exception):
                engine.unload()

    def load(self, cmd: p.Load) -> None:
        """Create and load the engine, reporting progress."""
        from tui_lab.lab.runner import load_engine

        self.unload()
        options: dict[str, object] = {"model": cmd.model, **({"device": cmd.device} if cmd.device else {}),
                                      **cmd.options}
        if cmd.cache_dir and (cmd.engine == "transformers" or self.factory_spec != DEFAULT_FACTORY):
            options["cache_dir"] = cmd.cache_dir
        started = time.perf_counter()
        try:
            engine, info = load_engine(cmd.engine, options, lambda stage, frac: self.send(p.LoadProgress(stage, frac)),
                                       resolve(self.factory_spec))
        except BaseException as exc:  # reported; the host keeps serving
            self.send(_error("load", exc))
            return
        self.load_s = time.perf_counter() - started
        # The engine's own name ("scripted" for a test's engine made under another name) tells comparisons
        # which variants it can make.
        self.engine, self.engine_name, self.engine_options = engine, str(info.engine), options
        self.loaded_with = cmd
        from tui_lab.lab.trace import source_of

        self.send(p.Loaded(plain_info(info), source_of(engine)))

    def save_trace(self, cmd: p.SaveTrace) -> None:
        """Write the last recorded experiment's trace into ``cmd.folder`` (the format ``--record`` writes) and
        say where, or why there is none."""
        from pathlib import Path

        from tui_lab.lab.trace import TRACE_ENV, recording_enabled, trace_file_name, write_trace

        last = self.last_recording
        if last is None:
            why = (f"recording is off ({TRACE_ENV}=0)" if not recording_enabled()
                   else "this engine process has recorded no run yet")
            self.send(p.TraceSaved(None, message=why))
            return
        run_id, name, recording = last
        try:
            trace = recording.trace()
            path = write_trace(Path(cmd.folder).expanduser() / trace_file_name(name), trace)
        except Exception as exc:  # said in the UI; the host keeps serving
            self.send(p.TraceSaved(None, run_id, name, message=f"the trace could not be written: {exc}"))
            return
        self.send(p.TraceSaved(str(path), run_id, name, len(trace.runs)))

    def calibrate(self) -> None:
        """Measure the loaded engine's pace and send it (an engine that cannot be timed sends nothing)."""
        from tui_lab.lab.pace import calibrate

        if self.engine is None:
            return
        self.stop = threading.Event()
        try:
            pace = calibrate(self.engine, self.load_s, self.stop)
        except Exception:  # no estimate is better than no engine: the lab says "—" for how long
            return
        self.send(p.Paced(pace))

    def run(self, cmd: p.Run) -> None:
        """Run one experiment by name; frames at most every ``FRAME_INTERVAL_S``."""
        from tui_lab.lab.experiment import Progress, RunContext
        from tui_lab.lab.runner import run_experiment

        self.stop = threading.Event()
        self.run_id = cmd.run_id

        def sink(events: list[StreamEvent]) -> None:
            self.send_events(cmd.run_id, events)

        def progress(line: Progress) -> None:
            self.send(p.RunProgressLine(cmd.run_id, line))

        def partial(item: object) -> None:
            self.send(p.Partial(cmd.run_id, _picklable(item)))

        replay = None
        if cmd.replay:  # a lesson step's GPU recording, played instead of the loaded engine; that one stays loaded
            from tui_lab.engines import create_engine

            try:
                replay = create_engine("replay", trace=cmd.replay)
                replay.load()
            except Exception as exc:
                self.run_id = None
                self.send(_error(cmd.name, exc, cmd.run_id))
                self.send(p.RunDone(cmd.run_id, cmd.name, None))
                return
            ctx = RunContext(engine=replay, engine_name="replay", engine_options={"trace": cmd.replay}, stop=self.stop,
                             sink=sink, progress=progress, partial=partial)
        else:
            ctx = RunContext(engine=self.engine, engine_name=self.engine_name, engine_options=self.engine_options,
                             engine_factory=resolve(self.factory_spec), stop=self.stop, sink=sink, progress=progress,
                             partial=partial, release=self.unload, reload=self._reload)
        try:
            outcome = run_experiment(cmd.name, cmd.params, ctx)
        finally:
            self.run_id = None
            if replay is not None:
                replay.unload()
            elif self.engine is None and self.loaded_with is not None:
                self.load(self.loaded_with)  # a variant released it: the lab's engine is back before the next run
        if outcome.recording is not None:
            self.last_recording = (cmd.run_id, cmd.name, outcome.recording)
        if outcome.failed:
            self.send(p.HostError(cmd.name, outcome.message, _with_log(outcome.hint, outcome.message), cmd.run_id,
                                  outcome.error_type))
        self.send(p.RunDone(cmd.run_id, cmd.name, _picklable(outcome.result)))


class _Events:
    """A batch of one run's token events on its way to the sender thread."""

    __slots__ = ("run_id", "events")

    def __init__(self, run_id: int, events: list) -> None:
        self.run_id, self.events = run_id, events


_FLUSH = object()
"""The sender's own wake-up: the frame in progress is due."""


def main(conn: Connection, parent_pid: int, factory_spec: str = DEFAULT_FACTORY, log_path: str | None = None) -> None:
    """Entry of the host process; its output (and its children's) goes to ``log_path``."""
    _log_to(log_path)
    _guard_parent(parent_pid)
    Host(conn, factory_spec).serve()
