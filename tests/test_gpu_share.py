"""Taking turns on a shared GPU: timed runs never overlap across processes; threads of one process share."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from tui_lab.gpu_share import ENV, turn

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock locks")

HOLD = """
import sys, time
from tui_lab.gpu_share import turn
with turn(sys.argv[1]):
    print("in", flush=True)
    sys.stdin.readline()
    print("out", time.monotonic(), flush=True)
"""
"""Another process holding a turn until told to let go; it prints when it leaves (CLOCK_MONOTONIC, one
clock for every process of the machine)."""


def _hold(kind: str, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline() == "in\n"
    return proc


def _release(proc: subprocess.Popen) -> float:
    """Tell the holder to leave its turn; the time it left (it still held the turn then)."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    word, when = proc.stdout.readline().split()
    assert word == "out"
    proc.wait(10)
    return float(when)


def _enter(kind: str) -> tuple[threading.Thread, list[float]]:
    """A thread of this process taking ``kind``; the list gets the time it got in."""
    entered: list[float] = []

    def take() -> None:
        with turn(kind):
            entered.append(time.monotonic())

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    return thread, entered


@pytest.fixture
def lock_env(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv(ENV, str(tmp_path / "gpu"))
    return {**os.environ}


def test_without_the_variable_every_turn_is_free(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with turn("run"), turn("unload"):
        pass


def test_a_run_waits_for_another_process_run(lock_env):
    other = _hold("run", lock_env)
    thread, entered = _enter("run")
    thread.join(0.3)
    assert not entered  # the other process holds the turn
    left = _release(other)
    thread.join(30)
    assert entered and entered[0] >= left  # in only after the other left


def test_loads_overlap_but_an_unload_waits_for_them(lock_env):
    other = _hold("load", lock_env)
    thread, entered = _enter("load")
    thread.join(30)
    assert entered and other.poll() is None  # in while the other process still holds its load turn: shared
    thread, unloaded = _enter("unload")
    thread.join(0.3)
    assert not unloaded
    left = _release(other)
    thread.join(30)
    assert unloaded and unloaded[0] >= left


def test_threads_of_one_process_share_a_turn(lock_env):
    """An experiment may time two runs at once on purpose (a long prompt joining running streams)."""
    inside = threading.Event()
    release = threading.Event()

    def second() -> None:
        with turn("run"):
            inside.set()
            release.wait(30)

    with turn("run"):
        thread = threading.Thread(target=second)
        thread.start()
        assert inside.wait(30)
    release.set()
    thread.join(5)
    other = _hold("run", lock_env)  # the lock was released when the last holder left
    _release(other)
