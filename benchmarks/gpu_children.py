"""Run a GPU plan's parts as child processes, a few at once, inside one time budget.

The GPU scripts (``gpu_lessons.py``, ``gpu_traces.py``) start each part of their plan as a child
process of its own (its own process group, so its engine processes go with it), ``parallel`` at a time;
a part that has not started a minute before the budget ends is skipped, one still running at its end is
killed. Each finished child's output goes to ``on_done``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence


def plan_parser(description: str, what: str, parallel: int) -> argparse.ArgumentParser:
    """The options every GPU plan script takes: which ``what`` (labels, parts) to run, the budget, how many
    at once, and the hidden ``--child`` that runs one of them."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--only", default=None, help=f"comma-separated {what} of the plan to run")
    parser.add_argument("--list", action="store_true", help="print the plan and exit")
    parser.add_argument("--budget", type=float, default=540.0, help="seconds for the whole plan")
    parser.add_argument("--parallel", type=int, default=parallel, help=f"{what} at once (timed runs take turns)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser


Done = Callable[[str, int, str, float], None]
"""Called with a part's label, its exit code, its whole output (stdout and stderr) and its seconds."""


def _kill(proc: subprocess.Popen) -> None:
    """Stop a child and its engine processes (each child leads its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_children(jobs: Sequence[tuple[str, list[str]]], parallel: int, budget_s: float, on_done: Done) -> None:
    """Run each ``(label, command)`` of ``jobs`` in order, ``parallel`` at once, within ``budget_s``."""
    deadline = time.monotonic() + budget_s
    queue = list(jobs)
    running: list[tuple[str, subprocess.Popen, object, float]] = []
    while queue or running:
        while queue and len(running) < max(1, parallel) and deadline - time.monotonic() > 60:
            label, cmd = queue.pop(0)
            log = tempfile.TemporaryFile("w+", encoding="utf-8")
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
            running.append((label, proc, log, time.monotonic()))
            print(f"started {label}", file=sys.stderr, flush=True)
        if queue and deadline - time.monotonic() <= 60:
            for label, _ in queue:
                print(f"skipped {label}: the {budget_s:.0f} s budget is spent", file=sys.stderr, flush=True)
            queue.clear()
        for item in list(running):
            label, proc, log, t0 = item
            if proc.poll() is not None:
                running.remove(item)
                log.seek(0)  # type: ignore[attr-defined]
                text = log.read()  # type: ignore[attr-defined]
                log.close()  # type: ignore[attr-defined]
                on_done(label, proc.returncode, text, time.monotonic() - t0)
            elif time.monotonic() > deadline:
                _kill(proc)
                proc.wait()
                running.remove(item)
                print(f"{label}: stopped at the end of the budget", file=sys.stderr, flush=True)
        time.sleep(0.5)


def last_json_line(label: str, returncode: int, text: str, seconds: float) -> str | None:
    """A child's last output line that starts with ``{`` (its result), or None after saying why it failed."""
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    if returncode == 0 and lines:
        return lines[-1]
    tail = [ln for ln in text.splitlines() if ln.strip()][-3:]
    print(f"{label}: failed (rc {returncode}) after {seconds:.0f} s: {tail}", file=sys.stderr, flush=True)
    return None
