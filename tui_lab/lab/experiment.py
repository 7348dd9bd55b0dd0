"""Experiments as objects: the one description of an experiment, used by the host, the CLI, the Controls and views.

An experiment says its name, title and kind; its parameters (``Param``, the one vocabulary); its result
type (the views draw a result by its type); which of its parameters the Controls fields set; how its
partial results chart; and the work a run plans (``planned_work``), which the loaded engine's pace prices.
``tui_lab.lab.inventory`` lists them in lesson order; ``tui_lab.lab.runner`` runs one by name for the engine
host and for the CLI alike.

An experiment never imports Textual and never talks to a UI: everything it reports goes through its
``RunContext``. Results cross a process boundary (host → UI), so a result is picklable: plain dataclasses
of numbers, strings, lists and dicts (no engines, tensors or locks).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol, TypeVar

from tui_lab.engines.base import Engine
from tui_lab.engines.events import StreamEvent
from tui_lab.lab.planned import PlannedRun
from tui_lab.params import Checked, Param, Value, check_params

ExperimentKind = Literal["run", "sweep", "compare", "inspect"]
ChartAxis = Literal["batch", "length", "sampling", "concurrency", "rate"]
"""What a sweep's partial results are charted against."""

Params = dict[str, Checked]
"""Checked parameter values, by name (``Experiment.validate``'s output)."""

EventSink = Callable[[list[StreamEvent]], None]
EngineFactory = Callable[..., Engine]
"""Same call shape as ``tui_lab.engines.create_engine(name, **options)``."""

CONTROL_FIELDS = ("prompt", "batch_size", "max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty",
                  "seed")
"""The Controls' general fields: an experiment parameter of the same name is set from its field."""


class Result(Protocol):
    """What every experiment result has: a plain-JSON form."""

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form (export, ``--json``, the lessons' metric paths)."""
        ...


R = TypeVar("R", bound=Result)
PartialItem = object
"""A partial result on its way out (a sweep point, a load point, a counter sample): the UI charts what it knows."""


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

    ``engine`` is the loaded engine (None for experiments that need none). Comparisons that need other
    variants (CPU and GPU, KV cache off and on, vLLM with prefix caching off and on) build them with
    ``make_engine``; ``engine_options`` are the options the loaded engine was made with (model, device,
    cache_dir, ...), so a variant differs from it only where the comparison says.
    """

    engine: Engine | None = None
    engine_name: str = "transformers"
    engine_options: Mapping[str, object] = field(default_factory=dict)
    engine_factory: EngineFactory | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    sink: EventSink | None = None
    """Token events of the generation in progress (already batched by time)."""
    progress: Callable[[Progress], None] | None = None
    partial: Callable[[PartialItem], None] | None = None
    """Partial results as they come (a sweep point, one variant of a comparison)."""
    release: Callable[[], None] | None = None
    """Unloads the loaded engine (its owner keeps what it needs to load it again)."""
    reload: Callable[[], Engine] | None = None
    """Loads the released engine again, the same way."""
    record: bool = False
    """Record the experiment's runs into a trace even when recording is off (``--record FILE``)."""

    @property
    def loaded(self) -> Engine:
        """The loaded engine (loaded again if a variant made room for itself by releasing it)."""
        if self.engine is None and self.reload is not None:
            self.report("loading the lab's engine again")
            self.engine = self.reload()
        if self.engine is None:
            from tui_lab.errors import EngineUnavailable

            raise EngineUnavailable("no engine is loaded", "wait for loading to finish, or press m")
        return self.engine

    def stopped(self) -> bool:
        """Whether the learner asked to stop (check between runs and steps)."""
        return self.stop.is_set()

    def report(self, text: str, fraction: float | None = None, new_run: bool = False) -> None:
        """Send a progress line (no-op without a listener)."""
        if self.progress is not None:
            self.progress(Progress(text, fraction, new_run))

    def emit(self, item: PartialItem) -> None:
        """Send a partial result (no-op without a listener)."""
        if self.partial is not None:
            self.partial(item)

    def device(self) -> str:
        """The loaded engine's device as it reports it (``cuda (NVIDIA H100 ...)``, ``cpu``; "none" without one)."""
        if self.engine is None:
            return "none"
        try:
            return str(self.engine.info.device)
        except Exception:  # an engine that is not loaded yet has no info
            return "unknown"

    def loading(self, label: str) -> Callable[[str, float | None], None]:
        """A load-progress callback putting each loading stage of a variant called ``label`` on the progress line."""
        return lambda stage, fraction: self.report(f"{label}: {stage}", fraction)

    def make_engine(self, engine_name: str | None = None, **changes: object) -> Engine:
        """A new (not yet loaded) engine like the loaded one, with ``changes`` to its options.

        With the scripted test engine loaded, every variant is a scripted engine (it stands in for any
        engine a comparison asks for) and sees only the options the comparison sets.
        """
        from tui_lab.engines import create_engine
        from tui_lab.engines.options import declared_only

        factory = self.engine_factory or create_engine
        if self.engine_name == "scripted":
            return factory("scripted", **changes) if self.engine_factory is not None else factory("scripted")
        if self.engine_name == "replay":
            # A replay answers a variant from the runs recorded with its settings (or refuses, naming them).
            variant = {"engine": engine_name, **changes} if engine_name else dict(changes)
            return factory("replay", trace=self.engine_options.get("trace"), variant=variant)
        name = engine_name or self.engine_name
        if name == "vllm" == self.engine_name and self.engine is not None and self.release is not None:
            # Two vLLM engine cores side by side each reserve their KV cache: on a small machine the second runs
            # out of memory. The loaded one makes room; ``loaded`` brings it back when it is needed again.
            self.report("unloading the lab's engine to make room for the variant")
            self.release()
            self.engine = None
        base = dict(self.engine_options)
        if name != self.engine_name:
            # Another engine keeps what it understands of the loaded one's options (model, device, cache).
            base = declared_only(name, base)
        return factory(name, **{**base, **changes})


class Experiment:
    """One experiment. Subclasses set the class attributes and implement ``run``.

    ``params`` is the experiment's parameter schema: the one source of the CLI's flags and ``--param``
    help, the Controls boxes and the checks of lesson presets. ``validate`` checks a dict against it.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    kind: ClassVar[ExperimentKind]
    params: ClassVar[tuple[Param, ...]] = ()
    result_type: ClassVar[type]
    """The type ``run`` returns; the views draw a result by this type."""
    needs_engine: ClassVar[bool] = True
    controls: ClassVar[Mapping[str, str]] = {}
    """Parameter → the Controls field that sets it. Left empty, every parameter named like a field of
    ``CONTROL_FIELDS`` is set by that field."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("controls"):
            names = {p.name for p in cls.params}
            cls.controls = {name: name for name in CONTROL_FIELDS if name in names}

    def param(self, name: str) -> Param:
        """The parameter called ``name`` (``KeyError`` if it has none)."""
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def validate(self, given: Mapping[str, Value] | None = None) -> Params:
        """Defaults overlaid with ``given``, every value checked, then the values together (``check_together``)."""
        values = check_params(self.name, self.params, given)
        self.check_together(values)
        return values

    def check_together(self, values: Params) -> None:
        """Checks that need several values at once (``InvalidInput`` in one line); none by default."""

    def chart_axis(self, params: Params) -> ChartAxis | None:
        """What the partial results are charted against (None: they are not charted)."""
        return None

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun] | None:
        """The generations a run with validated ``params`` makes on engine ``engine`` (and the engines it loads),
        so the lab can say how long it will take; an empty list: it generates nothing. None (the default):
        not known."""
        return None

    def run(self, params: Params, ctx: RunContext) -> Result:
        """Run with validated ``params``; return a typed, picklable result (partial if stopped)."""
        raise NotImplementedError
