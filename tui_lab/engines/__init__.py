"""Engines: the ``Engine`` protocol and its implementations, imported lazily.

``create_engine("transformers", model="embedded")`` imports torch only when
called, so the CLI's ``--help`` and the TUI's first screen stay fast.
"""

from __future__ import annotations

from importlib import import_module

from tui_lab.engines.base import (
    Engine,
    EngineInfo,
    ProgressCallback,
    Request,
    RequestFinished,
    RequestSubmitted,
    SamplingParams,
    StreamEvent,
    TokenEvent,
    TokenStep,
)
from tui_lab.errors import InvalidInput

ENGINES: dict[str, str] = {
    "transformers": "tui_lab.engines.hf:TransformersEngine",
    "vllm": "tui_lab.engines.vllm_engine:VLLMEngine",
    "openai": "tui_lab.engines.openai_engine:OpenAIEngine",
    "scripted": "tui_lab.engines.scripted:ScriptedEngine",
}
"""Engine name → "module:class". ``scripted`` exists for tests and snapshots."""

USER_ENGINES = ("transformers", "vllm", "openai")
"""The engines a learner picks from (the scripted one is for tests only)."""


def engine_parameters(name: str) -> frozenset[str] | None:
    """The option names engine ``name``'s constructor takes (None: it takes any, or the name is unknown)."""
    import inspect

    if name not in ENGINES:
        return None
    module_name, class_name = ENGINES[name].split(":")
    params = inspect.signature(getattr(import_module(module_name), class_name).__init__).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.name != "self")


def create_engine(name: str, **options: object) -> Engine:
    """Build an engine by name; ``options`` go to its constructor (model, device, ...)."""
    if name not in ENGINES:
        raise InvalidInput(f"unknown engine {name!r}; choose one of: {', '.join(USER_ENGINES)}")
    module_name, class_name = ENGINES[name].split(":")
    cls = getattr(import_module(module_name), class_name)
    return cls(**options)


__all__ = [
    "ENGINES", "USER_ENGINES", "Engine", "EngineInfo", "ProgressCallback", "Request", "RequestFinished",
    "RequestSubmitted", "SamplingParams", "StreamEvent", "TokenEvent", "TokenStep", "create_engine",
    "engine_parameters",
]
