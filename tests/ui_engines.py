"""Engines the app's tests load by name in the engine host ("tests.ui_engines:make_engine").

The model name picks a behaviour: "killed" streams for a while (real time, 10 ms a step), then the
engine process is killed with SIGKILL, as the out-of-memory killer does (the calibration after the load
is spared); "on-cpu" is the scripted engine saying it runs on a CPU; anything else is the scripted engine on
a fake clock.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace

from tui_lab.engines.base import EngineInfo, Request, SamplingParams
from tui_lab.engines.events import StreamEvent
from tui_lab.engines.scripted import FakeClock, ScriptedEngine, StepModel

STEPS_BEFORE_KILL = 20
"""Decode steps the killed engine streams first: the UI has received frames of them by then."""


class _Killed(ScriptedEngine):
    def stream(self, requests: Sequence[Request], sampling: SamplingParams,
               stop: threading.Event | None = None) -> Iterator[StreamEvent]:
        calibrating = any(r.request_id.startswith("pace-") for r in requests)
        for n, event in enumerate(super().stream(requests, sampling, stop)):
            if n == len(requests) + STEPS_BEFORE_KILL and not calibrating:
                os.kill(os.getpid(), signal.SIGKILL)
            yield event


class _OnCpu(ScriptedEngine):
    def load(self, progress: object = None) -> EngineInfo:
        info = replace(super().load(), device="cpu")
        self._info = info
        return info


def make_engine(name: str, model: str = "scripted", device: str = "auto", **options: object) -> ScriptedEngine:
    """An engine for the app's tests, by ``model`` (see the module's docstring)."""
    if model == "killed":
        return _Killed(timing=StepModel(decode_base=0.01, decode_per_seq=0.0, prefill_per_token=0.0),
                       real_time=True, model=model)
    if model == "on-cpu":
        return _OnCpu(clock=FakeClock(), model=model)
    return ScriptedEngine(clock=FakeClock(), model=model)
