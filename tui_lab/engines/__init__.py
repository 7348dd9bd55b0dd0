"""Engines: the ``Engine`` protocol and its implementations, imported lazily.

``create_engine("transformers", model="embedded")`` imports torch only when
called, so the CLI's ``--help`` and the TUI's first screen stay fast.
"""

from __future__ import annotations

from importlib import import_module

from tui_lab.engines.base import Engine, EngineInfo, ProgressCallback, Request, SamplingParams
from tui_lab.engines.events import RequestFinished, RequestSubmitted, StreamEvent, TokenEvent, TokenStep
from tui_lab.engines.options import ENGINE_NAMES, check_options

ENGINES: dict[str, str] = {
    "transformers": "tui_lab.engines.hf:TransformersEngine",
    "vllm": "tui_lab.engines.vllm_engine:VLLMEngine",
    "openai": "tui_lab.engines.openai_engine:OpenAIEngine",
    "replay": "tui_lab.engines.replay:ReplayEngine",
    "scripted": "tui_lab.engines.scripted:ScriptedEngine",
}
"""Engine name → "module:class" (its options: ``tui_lab.engines.options.ENGINE_OPTIONS``)."""


def create_engine(name: str, **options: object) -> Engine:
    """Build an engine by name; ``options`` are checked against its declarations, then go to its constructor."""
    checked = check_options(name, options)
    module_name, class_name = ENGINES[name].split(":")
    cls = getattr(import_module(module_name), class_name)
    engine: Engine = cls(**checked)
    return engine


__all__ = [
    "ENGINES", "ENGINE_NAMES", "Engine", "EngineInfo", "ProgressCallback", "Request", "RequestFinished",
    "RequestSubmitted", "SamplingParams", "StreamEvent", "TokenEvent", "TokenStep", "create_engine",
]
