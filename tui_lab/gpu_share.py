"""Taking turns on one GPU when several lab processes share it for a benchmark session.

Engine loads are long (a cold vLLM start compiles for a minute or two) and mostly host work, so a
session that measures many engine variants finishes sooner when the loads overlap. What must not
overlap is measuring: two processes timing runs on one GPU at once slow each other down. Set
``INFERENCE_LAB_GPU_LOCK`` to a file path shared by the processes and they take turns:

- a timed run (``turn("run")``) holds an exclusive lock on ``PATH.run``, so no two runs overlap;
- an engine load holds a shared lock on ``PATH.memory`` and an unload an exclusive one: loads may
  overlap each other, but nobody gives GPU memory back while another process is sizing its KV cache
  from the free memory it sees (vLLM stops with "Error in memory profiling" when memory is freed
  during its start).

Without the variable every turn is free. The locks are ``flock`` locks, released if a process dies.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

ENV = "INFERENCE_LAB_GPU_LOCK"

_mutex = threading.Lock()
_held: dict[str, list] = {}
"""Lock file suffix -> [open file, holders in this process]: threads of one process share a turn (an
experiment may time two runs at once on purpose, one per thread). A thread asking to unload while another
thread of its process holds a load turn joins that shared turn: taking the exclusive lock through a second
open file would wait on this process's own shared lock for ever."""


@contextmanager
def turn(kind: Literal["run", "load", "unload"]) -> Iterator[None]:
    """Wait for this process's turn to ``kind`` on the shared GPU (a no-op without ``INFERENCE_LAB_GPU_LOCK``)."""
    base = os.environ.get(ENV)
    if not base:
        yield
        return
    import fcntl

    suffix = ".run" if kind == "run" else ".memory"
    with _mutex:
        entry = _held.get(suffix)
        if entry is None:
            fh = open(base + suffix, "a", encoding="utf-8")  # noqa: SIM115 - closed when the last holder leaves
            fcntl.flock(fh, fcntl.LOCK_SH if kind == "load" else fcntl.LOCK_EX)
            entry = _held[suffix] = [fh, 0]
        entry[1] += 1
    try:
        yield
    finally:
        with _mutex:
            entry[1] -= 1
            if entry[1] == 0:
                del _held[suffix]
                fcntl.flock(entry[0], fcntl.LOCK_UN)
                entry[0].close()
