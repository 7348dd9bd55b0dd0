"""The engine host's log file: where the host and everything it starts write their output.

vLLM's engine core, its workers, library warnings and tracebacks print to stdout and stderr. The
host's streams (file descriptors 1 and 2, which its children inherit) point at one file per host in
the lab's log directory (``tui_lab.paths.log_dir``), so nothing is written across the app's screen.

When a load or a run fails, or the host dies, the real cause is often only in that file (vLLM's
engine core prints its traceback, then the host sees "engine core failed, see above"). ``describe``
reads what was written since the command began and returns one line to append to the error: the
cause (the first exception line of a traceback that is not a wrapper, or a fatal signal) and the
log's path.

Nothing here imports torch, vLLM or Textual.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path

from tui_lab.paths import log_dir

KEEP_LOGS = 20
"""Host logs kept in the log directory; older ones are removed when a new host starts."""
_READ_LIMIT = 256 * 1024
_CAUSE_CHARS = 200
_SETTLE_S = 0.5
"""How long ``describe`` waits for the file to stop growing (a dying child may still be writing)."""

_PROCESS_PREFIX = re.compile(r"^\(\S+ pid=\d+\)\s*")
"""vLLM's prefix on lines from its child processes: ``(EngineCore_DP0 pid=1234) ``."""
_EXCEPTION = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Fault)(?::\s.*)?$")
"""The last line of a Python traceback: ``ValueError: ...``, ``torch.OutOfMemoryError: ...``."""
_FATAL = re.compile(r"^Fatal Python error: .+")
_WRAPPERS = ("see root cause above", "see stack trace", "engine core initialization failed",
             "enginecore encountered an issue", "enginedeaderror", "failed core proc")
"""Exceptions that only say the cause is elsewhere (above, in another process)."""


def new_log() -> Path | None:
    """A new, empty log file for one host, in the lab's log directory (or the temp dir if that is not
    writable); None when no file can be made. Old host logs beyond ``KEEP_LOGS`` are removed."""
    name = f"host-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}.log"
    for folder in (log_dir(), Path(tempfile.gettempdir()) / "inference-lab-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _prune(folder)
            path = folder / name
            with open(path, "x", encoding="utf-8"):
                pass
            return path
        except OSError:
            continue
    return None


def _prune(folder: Path) -> None:
    logs = sorted(folder.glob("host-*.log"), key=lambda p: p.stat().st_mtime)
    for old in logs[:max(0, len(logs) - (KEEP_LOGS - 1))]:
        with contextlib.suppress(OSError):
            old.unlink()


def size(path: Path | str | None) -> int:
    """The log's size in bytes (0 when there is none): the mark a command's output starts at."""
    if path is None:
        return 0
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _read_since(path: Path | str, start: int, settle_s: float) -> str:
    """What was written from ``start`` on (the last 256 KiB of it), once the file stops growing."""
    end, deadline = size(path), time.monotonic() + settle_s
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = size(path)
        if now == end:
            break
        end = now
    begin = max(start, end - _READ_LIMIT)
    if end <= begin:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(begin)
            return fh.read(end - begin).decode("utf-8", "replace")
    except OSError:
        return ""


def cause(text: str) -> str | None:
    """The one line that says why, in a stretch of log: a fatal signal, else the first exception of a
    traceback that is not a wrapper pointing elsewhere, else the first exception line at all."""
    exceptions: list[str] = []
    for raw in text.splitlines():
        line = _PROCESS_PREFIX.sub("", raw.strip()).strip()
        if _FATAL.match(line):
            return line[:_CAUSE_CHARS]
        if _EXCEPTION.match(line):
            exceptions.append(line)
    for line in exceptions:
        if not any(w in line.lower() for w in _WRAPPERS):
            return line[:_CAUSE_CHARS]
    return exceptions[0][:_CAUSE_CHARS] if exceptions else None


def describe(path: Path | str | None, start: int = 0, settle_s: float = _SETTLE_S, known: str = "") -> str:
    """One line on what the log holds since ``start``: ``cause in the engine log: <cause> (<path>)``,
    ``engine log: <path>`` when something was written but no cause stands out, or "" when nothing was.

    ``known``: text already shown (the error's own message); a cause it already contains is not repeated.
    """
    if path is None:
        return ""
    text = _read_since(path, start, settle_s)
    if not text.strip():
        return ""
    found = cause(text)
    if found and found not in known:
        return f"cause in the engine log: {found} ({path})"
    return f"engine log: {path}"
