"""Experiments as objects: a name, a parameter schema, and a run function.

The engine host process runs experiments by name (``get(name).run(params, ctx)``);
the CLI runs any of them headless (``inference-lab experiment NAME``); the UI only
renders the typed result it gets back. An experiment never imports Textual and never
talks to the UI directly: everything it reports goes through its ``RunContext``.

Results cross a process boundary (host → UI), so a result must be picklable: plain
dataclasses of numbers, strings, lists and dicts (no engines, tensors or locks).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from tui_lab.engines.base import Engine, StreamEvent
from tui_lab.errors import InvalidInput
from tui_lab.params import Param, check_params

ExperimentKind = Literal["run", "sweep", "compare", "inspect"]

EventSink = Callable[[list[StreamEvent]], None]
EngineFactory = Callable[..., Engine]
"""Same call shape as ``tui_lab.engines.create_engine(name, **options)``."""


@dataclass(frozen=True)
class Progress:
    """Where a long experiment is: "batch 8 · run 2/3" and how far along (0..1, None if unknown).

    ``new_run`` says a new generation starts now, so a live token view should start afresh.
    """

    text: str
    fraction: float | None = None
    new_run: bool = False


@dataclass
class RunContext:
    """What an experiment may use while it runs.

    ``engine`` is the loaded engine (None for experiments that need none). Comparisons that
    need other variants (CPU and GPU, KV cache off and on, vLLM with prefix caching off and on)
    build them with ``engine_factory(engine_name, **options)``; ``engine_options`` are the
    options the loaded engine was made with (model, device, cache_dir, ...), so a variant
    differs from it only where the comparison says.
    """

    engine: Engine | None = None
    engine_name: str = "transformers"
    engine_options: Mapping[str, Any] = field(default_factory=dict)
    engine_factory: EngineFactory | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    sink: EventSink | None = None
    """Token events of the generation in progress (already batched by time)."""
    progress: Callable[[Progress], None] | None = None
    partial: Callable[[Any], None] | None = None
    """Partial results as they come (a sweep point, one variant of a comparison)."""

    def stopped(self) -> bool:
        """Whether the learner asked to stop (check between runs and steps)."""
        return self.stop.is_set()

    def report(self, text: str, fraction: float | None = None, new_run: bool = False) -> None:
        """Send a progress line (no-op without a listener)."""
        if self.progress is not None:
            self.progress(Progress(text, fraction, new_run))

    def emit(self, item: Any) -> None:
        """Send a partial result (no-op without a listener)."""
        if self.partial is not None:
            self.partial(item)

    def make_engine(self, engine_name: str | None = None, **changes: Any) -> Engine:
        """A new (not yet loaded) engine like the loaded one, with ``changes`` to its options."""
        if self.engine_factory is None:
            from tui_lab.engines import create_engine

            factory: EngineFactory = create_engine
        else:
            factory = self.engine_factory
        name = engine_name or self.engine_name
        base = dict(self.engine_options)
        if name != self.engine_name:
            # Another engine keeps what it understands of the loaded one's options (model, device, cache);
            # vLLM's max_num_seqs means nothing to the transformers engine.
            from tui_lab.engines import engine_parameters

            accepted = engine_parameters(name)
            if accepted is not None:
                base = {k: v for k, v in base.items() if k in accepted}
        return factory(name, **{**base, **changes})


class Experiment:
    """One experiment. Subclasses set the class attributes and implement ``run``.

    ``parameters()`` is the experiment's parameter schema (the one source of truth for the CLI's
    ``--param`` help and checks, the Controls form and lesson presets); ``validate`` checks a dict
    against it.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    kind: ClassVar[ExperimentKind]
    needs_engine: ClassVar[bool] = True

    def parameters(self) -> tuple[Param, ...]:
        """Every parameter this experiment takes: name, type, limits, default and help."""
        raise NotImplementedError

    def validate(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``params``, every value checked (``InvalidInput`` on the first bad one)."""
        return check_params(self.name, self.parameters(), params)

    def run(self, params: Mapping[str, Any], ctx: RunContext) -> Any:
        """Run with validated ``params``; return a typed, picklable result (partial if stopped)."""
        raise NotImplementedError


_REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to the registry (names are unique)."""
    if experiment.name in _REGISTRY:
        raise ValueError(f"experiment {experiment.name!r} is registered twice")
    _REGISTRY[experiment.name] = experiment
    return experiment


def get(name: str) -> Experiment:
    """The experiment called ``name``; ``InvalidInput`` listing the known names otherwise."""
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidInput(f"unknown experiment {name!r}; choose one of: {', '.join(_REGISTRY)}") from None


def names() -> list[str]:
    """Every registered experiment, in the order lessons introduce them."""
    _load_all()
    return list(_REGISTRY)


def _load_all() -> None:
    """Import the modules that register experiments (lazily: none of them may import torch at import time)."""
    import tui_lab.lab.catalog  # noqa: F401  (registers the experiments)
