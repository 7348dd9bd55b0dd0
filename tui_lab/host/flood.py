"""A scripted engine with no modelled delays, for measuring what the host transport carries.

``benchmarks/bench_ui.py --transport`` starts a host with ``tui_lab.host.flood:make_flood``.
"""

from __future__ import annotations

from typing import Any

from tui_lab.engines.scripted import ScriptedEngine, StepModel


def make_flood(name: str, model: str = "scripted", device: str = "auto", **options: Any) -> ScriptedEngine:
    """A scripted engine on a fake clock: it produces tokens as fast as Python can."""
    return ScriptedEngine(timing=StepModel(decode_base=0.0, decode_per_seq=0.0, prefill_per_token=0.0), model=model)
