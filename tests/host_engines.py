"""Engine factories the host process imports by name in tests ("tests.host_engines:make_scripted").

The model name picks a behaviour: "scripted" streams normally (real time, so stop can act
mid-run); "crash-exit" ends the process mid-run; "crash-raise" raises mid-run; "crash-segv"
dies of a segmentation fault mid-run; "crash-midrun-child" has a child die with a traceback
mid-run and then fails the run pointing at it; "grandchild" starts two sleeping child processes at load,
one in the host's process group and one in a group of its own (to show the host's children die
with it); "child-traceback" prints to stdout, has a child process die with a traceback on
stderr, and then fails the load with an error that only points at it (as vLLM's engine core
does).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from tui_lab.engines.scripted import ScriptedEngine, StepModel


class _Crashing(ScriptedEngine):
    def __init__(self, how: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.how = how

    def stream(self, requests: Sequence[Any], sampling: Any, stop: Any = None) -> Iterator[Any]:
        for n, event in enumerate(super().stream(requests, sampling, stop)):
            if n == 3 * len(requests):
                if self.how == "crash-exit":
                    os._exit(3)
                if self.how == "crash-segv":
                    os.kill(os.getpid(), signal.SIGSEGV)
                if self.how == "crash-midrun-child":
                    subprocess.run([sys.executable, "-c", "raise MemoryError('worker lost its KV blocks')"],
                                   check=False)
                    from tui_lab.errors import EngineFailure

                    raise EngineFailure("EngineCore encountered an issue. See stack trace (above) for the root cause.")
                raise RuntimeError("engine blew up mid-run")
            yield event


class _WithChild(ScriptedEngine):
    def load(self, progress: Any = None) -> Any:
        sleep = [sys.executable, "-c", "import time; time.sleep(120)"]
        self.child = subprocess.Popen(sleep)
        self.other = subprocess.Popen(sleep, process_group=0)  # left the host's group, still in its session
        with open(os.environ.get("HOST_TEST_CHILD_FILE", os.devnull), "w") as fh:
            fh.write(f"{self.child.pid} {self.other.pid}")
        return super().load(progress)


CHILD_FAILURE = """
import sys
print("engine core: sizing the KV cache", flush=True)
raise ValueError("42 KV blocks do not fit in 1 GiB")
"""


class _FailingChild(ScriptedEngine):
    def load(self, progress: Any = None) -> Any:
        print("loading the scripted engine", flush=True)
        subprocess.run([sys.executable, "-c", CHILD_FAILURE], check=False)
        raise RuntimeError("Engine core initialization failed. See root cause above.")


def make_scripted(name: str, model: str = "scripted", device: str = "auto", **options: Any) -> ScriptedEngine:
    """A scripted engine running in real time (decode step 10 ms)."""
    timing = StepModel(decode_base=0.01, decode_per_seq=0.0, prefill_per_token=0.0)
    if model.startswith("crash"):
        return _Crashing(model, timing=timing, real_time=True, model=model)
    if model == "grandchild":
        return _WithChild(timing=timing, real_time=True, model=model)
    if model == "child-traceback":
        return _FailingChild(timing=timing, real_time=True, model=model)
    return ScriptedEngine(timing=timing, real_time=True, model=model)
