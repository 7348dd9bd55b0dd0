"""One measurement loop: (load a variant →) warm up → time N runs (→ unload).

Sweeps, comparisons and serving experiments all time an engine the same way, so they
share ``measure``:

* it takes a loaded engine, or a ``Variant`` (a factory for an engine not yet loaded:
  CPU or GPU, KV cache off or on, prefix caching off or on), which it makes, loads and
  always unloads again, whatever happens in between;
* it runs ``warmup`` runs whose figures are thrown away, then ``runs`` measured ones,
  each through ``execute_run`` with the requests ``requests(index)`` gives it
  (``index`` counts every run, warm-ups first);
* a stop request is honoured between runs and, through ``execute_run``, within one;
  a run that ends early (stopped, failed mid-run, Ctrl-C) ends the measurement;
* a ``LabError`` the engine raises (bad input, out of memory before the first token)
  also ends it: the measured runs so far are kept, and the error is handed back in
  ``Measurement.exception`` for the caller to record or raise, as its experiment says.

``on_run(index, warm)`` is called before each run (progress lines), ``on_result(index,
warm, result)`` after each (charts that fill in run by run). Other exceptions (a bug in
an engine, a callback that raises) pass up unchanged, after the variant was unloaded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from tui_lab.engines.base import Engine, ProgressCallback, Request, SamplingParams
from tui_lab.errors import LabError, error_text
from tui_lab.lab.experiment import EventSink, RunContext
from tui_lab.lab.run import RunRecorder, RunResult, execute_run, run_role

RequestMaker = Callable[[int], Sequence[Request]]
"""Run index (warm-ups first, from 0) → the requests of that run."""
Ended = Literal["stopped", "interrupted", "error", "unavailable"]

ENDED_EARLY = "the engine ended the run before every request finished"


def failure_text(exc: BaseException) -> str:
    """One line saying why an engine could not be made or loaded."""
    if isinstance(exc, LabError):
        return error_text(exc)
    # A missing optional package (e.g. vLLM) or an engine module not installed.
    return f"engine unavailable: {exc}"


def safe_unload(engine: Engine | None) -> None:
    """Unload ``engine`` if there is one; an error while unloading must not hide the one that came before."""
    if engine is None:
        return
    try:
        engine.unload()
    except Exception:
        pass


@dataclass(frozen=True)
class Variant:
    """An engine not yet made: ``measure`` or ``loaded`` makes it, loads it and unloads it afterwards."""

    make: Callable[[], Engine]
    progress: ProgressCallback | None = None
    """Passed to ``Engine.load`` (loading stages of this variant)."""
    prepare: Callable[[Engine], object] | None = None
    """Called once on the loaded engine before any run (e.g. a tiny discarded request)."""


@dataclass
class Loaded:
    """A loaded variant (``engine`` and its info as a dict), or why it could not be loaded (``error``)."""

    engine: Engine | None
    info: dict[str, object] | None = None
    error: str | None = None
    exception: BaseException | None = None


@contextmanager
def loaded(variant: Variant) -> Iterator[Loaded]:
    """Make and load ``variant``; yield it (or why it failed: a ``LabError`` or a missing package); unload it."""
    engine: Engine | None = None
    try:
        engine = variant.make()
        info = engine.load(variant.progress)
    except (LabError, ImportError) as exc:
        safe_unload(engine)
        yield Loaded(None, None, failure_text(exc), exc)
        return
    try:
        if variant.prepare is not None:
            variant.prepare(engine)
        yield Loaded(engine, info.to_dict())
    finally:
        safe_unload(engine)


@dataclass
class Measurement:
    """What one measurement produced: the measured runs, and whether (and why) it was cut short."""

    runs: list[tuple[int, RunResult]] = field(default_factory=list)
    """The measured runs as (index from 0, warm-ups not counted, result), in order. When the measurement
    was cut short inside a measured run, that run is the last one here, with ``partial`` set."""
    ended: Ended | None = None
    """None when every run finished; else "stopped" (a stop request), "interrupted" (Ctrl-C inside a run),
    "error" (the engine raised, failed mid-run, or ended a run early) or "unavailable" (the variant could
    not be made or loaded)."""
    error: str | None = None
    """One line: why it ended with "error" or "unavailable"."""
    exception: LabError | None = None
    """The engine's error (raised by it, or the one that ended a run mid-way)."""
    raised: bool = False
    """True when the engine raised ``exception`` before a run produced anything (the run has no result)."""
    last: RunResult | None = None
    """The run that cut the measurement short (a warm-up run too); None when it ended between runs."""
    last_warm: bool = False
    """Whether the run that cut it short (``last``, or the one that raised) was a warm-up run."""
    engine: dict[str, object] | None = None
    """The info of the variant ``measure`` loaded (None for an engine given loaded)."""

    @property
    def cut_short(self) -> bool:
        """True when not every planned run finished."""
        return self.ended is not None

    @property
    def complete(self) -> list[tuple[int, RunResult]]:
        """The measured runs that finished."""
        return [(i, res) for i, res in self.runs if not res.partial]


def measure(
    source: Engine | Variant,
    requests: RequestMaker | Sequence[Request],
    sampling: SamplingParams,
    *,
    warmup: int = 0,
    runs: int = 1,
    stop: threading.Event | None = None,
    sink: EventSink | None = None,
    on_run: Callable[[int, bool], object] | None = None,
    on_result: Callable[[int, bool, RunResult], object] | None = None,
) -> Measurement:
    """``warmup`` discarded runs, then ``runs`` measured ones, on ``source`` (a loaded engine or a ``Variant``).

    ``requests`` is the batch of every run, or a function of the run index giving it. A ``Variant`` is
    loaded first and unloaded at the end, also when a run or a callback raises; when it cannot be loaded
    the measurement ends "unavailable" before any run.
    """
    if isinstance(source, Variant):
        with loaded(source) as variant:
            if variant.engine is None:
                return Measurement(ended="unavailable", error=variant.error)
            result = _loop(variant.engine, requests, sampling, warmup, runs, stop, sink, on_run, on_result)
            result.engine = variant.info
            return result
    return _loop(source, requests, sampling, warmup, runs, stop, sink, on_run, on_result)


def _loop(
    engine: Engine,
    requests: RequestMaker | Sequence[Request],
    sampling: SamplingParams,
    warmup: int,
    runs: int,
    stop: threading.Event | None,
    sink: EventSink | None,
    on_run: Callable[[int, bool], object] | None,
    on_result: Callable[[int, bool, RunResult], object] | None,
) -> Measurement:
    out = Measurement()
    for index in range(warmup + runs):
        if stop is not None and stop.is_set():
            out.ended = "stopped"
            break
        warm = index < warmup
        if on_run is not None:
            on_run(index, warm)
        batch = requests(index) if callable(requests) else requests
        try:
            with run_role(warmup=warm):
                res = execute_run(engine, batch, sampling, stop=stop, sink=sink)
        except LabError as exc:
            out.ended, out.error, out.exception, out.raised, out.last_warm = "error", error_text(exc), exc, True, warm
            break
        if not warm:
            out.runs.append((index - warmup, res))
        if on_result is not None:
            on_result(index, warm, res)
        if res.partial:
            out.last, out.last_warm, out.exception = res, warm, res.exception
            out.ended, out.error = _why(res, stop)
            break
    return out


def _why(res: RunResult, stop: threading.Event | None) -> tuple[Ended, str | None]:
    """Why a run ended before every request finished."""
    if res.error == "interrupted":
        return "interrupted", None
    if res.error:
        return "error", error_text(res.exception) if res.exception is not None else res.error
    if stop is not None and stop.is_set():
        return "stopped", None
    return "error", ENDED_EARLY


# --------------------------------------------------------------------------- variants inside an experiment


@contextmanager
def variant(ctx: RunContext, label: str, engine_name: str | None = None, **changes: object) -> Iterator[Engine]:
    """A loaded engine like the lab's with ``changes`` (a comparison's variant); unloaded afterwards.

    Its loading stages go to the run's progress line; a variant that cannot be made or loaded raises
    its error (the caller says what that means for its result).
    """
    ctx.report(f"starting {label}")
    with loaded(Variant(lambda: ctx.make_engine(engine_name, **changes), ctx.loading(label))) as got:
        if got.engine is None:
            assert got.exception is not None
            raise got.exception
        yield got.engine


def run_batch(ctx: RunContext, engine: Engine, prompts: Sequence[str], max_new_tokens: int, label: str,
              ignore_eos: bool = True) -> RunResult:
    """One greedy measured run of ``prompts`` (a request each), streamed to the live view."""
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, ignore_eos=ignore_eos)
    ctx.report(label, None, new_run=True)
    requests = [Request(f"r{i}", p) for i, p in enumerate(prompts)]
    m = measure(engine, requests, sampling, stop=ctx.stop, sink=ctx.sink)
    if m.raised:
        assert m.exception is not None
        raise m.exception
    if not m.runs:  # stopped before it began: nothing was sent, every request unfinished
        return RunRecorder(requests, sampling).finish(0.0)
    return m.runs[0][1]


def ms(seconds: float | None) -> float | None:
    """Seconds → milliseconds (None stays None): results keep step times in ms."""
    return None if seconds is None else seconds * 1000.0
