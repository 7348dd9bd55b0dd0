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
    time.sleep(float(sys.argv[2]))
"""


def _hold(kind: str, seconds: float, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, kind, str(seconds)], stdout=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout is not None and proc.stdout.readline() == "in\n"
    return proc


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
    other = _hold("run", 1.0, lock_env)
    t0 = time.monotonic()
    with turn("run"):
        waited = time.monotonic() - t0
    other.wait(5)
    assert waited > 0.5


def test_loads_overlap_but_an_unload_waits_for_them(lock_env):
    other = _hold("load", 1.0, lock_env)
    t0 = time.monotonic()
    with turn("load"):
        assert time.monotonic() - t0 < 0.5  # shared
    with turn("unload"):
        waited = time.monotonic() - t0
    other.wait(5)
    assert waited > 0.5


def test_threads_of_one_process_share_a_turn(lock_env):
    """An experiment may time two runs at once on purpose (a long prompt joining running streams)."""
    inside = threading.Event()
    release = threading.Event()

    def second() -> None:
        with turn("run"):
            inside.set()
            release.wait(5)

    with turn("run"):
        thread = threading.Thread(target=second)
        thread.start()
        assert inside.wait(2)
    release.set()
    thread.join(5)
    other = _hold("run", 0.0, lock_env)  # the lock was released when the last holder left
    other.wait(5)
