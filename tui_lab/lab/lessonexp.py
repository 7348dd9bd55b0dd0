"""What the experiments of lessons 04 (tensor parallelism), 05 and 06 share.

A small parameter schema (default + rule per key; a rule carries its type and limits), engine
variants that are loaded and always unloaded, one batch run, and the one-line notes that say what
this machine can show.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from tui_lab.engines.base import Engine, Request, SamplingParams
from tui_lab.errors import InvalidInput
from tui_lab.lab.experiment import Experiment, RunContext
from tui_lab.lab.run import RunResult, execute_run
from tui_lab.params import Check, Param, Rule, one_of


def integer(lo: int, hi: int) -> Rule:
    """A rule for whole numbers in ``[lo, hi]``."""

    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise InvalidInput(f"{name} must be a whole number (got {value!r})")
        if not lo <= int(value) <= hi:
            raise InvalidInput(f"{name} must be between {lo} and {hi} (got {value})")
        return int(value)

    return Rule(check, "int", lo, hi)


def number(lo: float, hi: float) -> Rule:
    """A rule for numbers in ``[lo, hi]``."""

    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInput(f"{name} must be a number (got {value!r})")
        if not lo <= float(value) <= hi:
            raise InvalidInput(f"{name} must be between {lo:g} and {hi:g} (got {value})")
        return float(value)

    return Rule(check, "number", lo, hi)


def choice(*options: str) -> Rule:
    """A rule for one of ``options``."""
    return Rule(one_of(options), "choice", choices=options)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false (got {value!r})")
    return value


flag = Rule(_flag, "bool")
"""A rule for true/false."""


def int_list(lo: int, hi: int, max_items: int = 16) -> Rule:
    """A rule for a non-empty list of whole numbers in ``[lo, hi]``."""
    item = integer(lo, hi)

    def check(name: str, value: Any) -> list[int]:
        if not isinstance(value, (list, tuple)) or not value or len(value) > max_items:
            raise InvalidInput(f"{name} must be a list of 1 to {max_items} numbers (got {value!r})")
        return [item(name, v) for v in value]

    return Rule(check, "int list", lo, hi)


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{name} must be a non-empty text")
    return value


text = Rule(_text, "text")
"""A rule for a non-empty string."""


def _arch_name(name: str, value: Any) -> str:
    from tui_lab.models.arch import ARCH_MODELS

    value = str(value).removeprefix("arch:")
    if value not in ARCH_MODELS:
        raise InvalidInput(f"{name} must be one of: {', '.join(ARCH_MODELS)} (got {value!r})")
    return value


arch_name = Rule(_arch_name, "text")
"""A rule for an architecture the lab ships (``gemma-3-270m``, ``llama-3-8b``, ...)."""


class LessonExperiment(Experiment):
    """An experiment whose parameters are ``schema``: key → (default, rule).

    Every value may also be None (then it is not checked): the experiment picks its own.
    """

    schema: ClassVar[dict[str, tuple[Any, Rule | Check]]] = {}

    def parameters(self) -> tuple[Param, ...]:
        """The schema as ``Param`` objects (types and limits from each rule)."""
        out = []
        for key, (default, rule) in self.schema.items():
            if isinstance(rule, Rule):
                out.append(rule.param(key, default, optional=True))
            else:
                out.append(Param(key, rule, default, optional=True))
        return tuple(out)


def is_vllm(ctx: RunContext) -> bool:
    """Whether the loaded engine is vLLM (the only one with the serving options of lessons 05/06)."""
    return ctx.engine_name == "vllm"


def engine_device(engine: Engine | None) -> str:
    """``cuda``, ``cpu``, ``scripted``... of a loaded engine ("unknown" before it is loaded)."""
    try:
        return str(engine.info.device) if engine is not None else "none"
    except Exception:
        return "unknown"


@contextmanager
def variant(ctx: RunContext, label: str, **changes: Any) -> Iterator[Engine]:
    """A loaded engine like the lab's with ``changes``; unloaded afterwards, whatever happens."""
    engine = ctx.make_engine(**changes)
    ctx.report(f"starting {label}", None)
    try:
        engine.load(lambda stage, fraction: ctx.report(f"{label}: {stage}", fraction))
        yield engine
    finally:
        engine.unload()


def run_batch(ctx: RunContext, engine: Engine, prompts: Sequence[str], max_new_tokens: int,
              label: str, ignore_eos: bool = True) -> RunResult:
    """Greedy run of ``prompts`` (one request each), streamed to the live view."""
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, ignore_eos=ignore_eos)
    requests = [Request(f"r{i}", p) for i, p in enumerate(prompts)]
    ctx.report(label, None, new_run=True)
    return execute_run(engine, requests, sampling, ctx.stop, ctx.sink)


def varied_prompts(n: int, seed: int = 0) -> list[str]:
    """``n`` different prompts from the lab's seeded schedule (no prefix-cache flattery)."""
    from tui_lab.lab.prompts import prompt_schedule

    return list(prompt_schedule(n, seed))


def ms(seconds: float | None) -> float | None:
    """Seconds → milliseconds, None stays None."""
    return None if seconds is None else seconds * 1000.0
