"""Engine factories the host process imports by name in tests ("tests.host_engines:make_scripted").

The model name picks a behaviour: "scripted" streams normally (real time, so stop can act
mid-run); "crash-exit" ends the process mid-run; "crash-raise" raises mid-run; "grandchild"
starts a sleeping child process at load (to show the host's children die with it).
"""

from __future__ import annotations

import os
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
                raise RuntimeError("engine blew up mid-run")
            yield event


class _WithChild(ScriptedEngine):
    def load(self, progress: Any = None) -> Any:
        self.child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        with open(os.environ.get("HOST_TEST_CHILD_FILE", os.devnull), "w") as fh:
            fh.write(str(self.child.pid))
        return super().load(progress)


def make_scripted(name: str, model: str = "scripted", device: str = "auto", **options: Any) -> ScriptedEngine:
    """A scripted engine running in real time (decode step 10 ms)."""
    timing = StepModel(decode_base=0.01, decode_per_seq=0.0, prefill_per_token=0.0)
    if model.startswith("crash"):
        return _Crashing(model, timing=timing, real_time=True, model=model)
    if model == "grandchild":
        return _WithChild(timing=timing, real_time=True, model=model)
    return ScriptedEngine(timing=timing, real_time=True, model=model)
