"""Sweeps: the same workload over a range of configurations, measured properly.

A sweep runs each configuration (a batch size, an output length, or a
temperature × top-p pair) ``warmup`` times without keeping the numbers, then
``runs`` times for real, every run with the seeded prompt schedule
``prompt_schedule(batch, seed)`` (a batch of 8 sends the first 8 prompts of the
batch of 32, so along a batch sweep only the number of requests changes; the
warm-up runs warm the very shapes that are then timed). Every figure comes from
per-token timestamps:

* p50/p90 of the per-request TTFT, E2E and TPOT, pooled over the measured runs;
* pooled inter-token gaps (ITL);
* sustained throughput: the mean over measured runs of each run's output throughput.

The knee (``knee_by_gain``, threshold stated) and the seed notebook's balance
point are computed over the complete points of a batch-size sweep; the budget
pick (highest throughput within latency limits) over the complete points of any
sweep. ``on_point`` is called as each configuration finishes, so charts fill in
point by point. A stop request ends the sweep between or within runs; what was
measured is kept and marked partial. An engine error (e.g. out of memory at a big
batch) is recorded on its point and the sweep goes on (a batch-size sweep skips
the larger batches that cannot fit either).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tui_lab.engines.base import Engine, Request, SamplingParams
from tui_lab.errors import InvalidInput, LabError, OutOfMemory
from tui_lab.formatting import rate
from tui_lab.lab.experiment import ChartAxis, Experiment, Params, RunContext
from tui_lab.lab.measure import measure
from tui_lab.lab.planned import PlannedRun, prompt_tokens
from tui_lab.lab.prompts import prompt_schedule
from tui_lab.lab.run import EventSink, RunResult, make_requests
from tui_lab.metrics import (
    BUDGET_PRESETS,
    KNEE_GAIN_PCT,
    Knee,
    Percentiles,
    TradeoffPoint,
    budget_note,
    budget_pick,
    decode_speed,
    e2e,
    itl_samples,
    knee_by_balance,
    knee_by_gain,
    knee_note,
    output_throughput,
    percentile_dicts,
    summarize,
    tpot,
    ttft,
)
from tui_lab.params import (
    BATCH_SIZE,
    DEFAULT_BATCH_SIZES,
    IGNORE_EOS,
    MAX_NEW_TOKENS,
    MAX_NEW_TOKENS_PARAM,
    MAX_REQUESTS,
    REPETITION_PENALTY,
    RUNS,
    SAMPLING,
    SEED,
    TOP_K,
    WARMUP,
    Param,
    Value,
    number,
)

SweepKind = Literal["batch", "length", "sampling"]
SweepValue = float | tuple[float, float]
"""A batch size, an output length, a concurrency or request rate, or a (temperature, top-p) pair."""
SWEEP_KINDS: tuple[str, ...] = ("batch", "length", "sampling")

DEFAULT_LENGTHS: tuple[int, ...] = (32, 64, 128, 256)
"""The seed notebook's output lengths (at a fixed batch)."""
DEFAULT_TEMPERATURES: tuple[float, ...] = (0.0, 0.7, 1.0)
DEFAULT_TOP_PS: tuple[float, ...] = (0.5, 0.9, 1.0)

LATENCY_KEYS: tuple[str, ...] = (
    "ttft_p50", "ttft_p90", "e2e_p50", "e2e_p90", "tpot_p50", "tpot_p90", "itl_p50", "itl_p90",
)
"""The latency figures a budget may limit (seconds)."""


def sampling_grid(temperatures: Sequence[float], top_ps: Sequence[float]) -> tuple[tuple[float, float], ...]:
    """Every (temperature, top-p) pair, temperature-major: the values of a sampling sweep."""
    return tuple((float(t), float(p)) for t in temperatures for p in top_ps)


@dataclass(frozen=True)
class SweepPlan:
    """What to sweep and how to measure each configuration.

    ``values`` are batch sizes (``kind="batch"``), output lengths (``"length"``,
    at ``batch_size``) or (temperature, top-p) pairs (``"sampling"``, at
    ``batch_size``). ``max_new_tokens`` is the output length of batch and sampling
    sweeps. ``latency_budget`` is a dict of limits on ``LATENCY_KEYS`` (seconds)
    or the name of a ``BUDGET_PRESETS`` entry.
    """

    kind: SweepKind = "batch"
    values: tuple[SweepValue, ...] = DEFAULT_BATCH_SIZES
    runs: int = 3
    warmup: int = 1
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(ignore_eos=True))
    batch_size: int = 8
    max_new_tokens: int = 64
    seed: int = 0
    latency_budget: dict[str, float] | str | None = None
    knee_threshold_pct: float = KNEE_GAIN_PCT

    def validate(self) -> SweepPlan:
        """Raise ``InvalidInput`` (one line) for any value the sweep cannot run (the parameters' own checks)."""
        if self.kind not in SWEEP_KINDS:
            raise InvalidInput(f"unknown sweep kind {self.kind!r}; choose one of: {', '.join(SWEEP_KINDS)}")
        if not self.values:
            raise InvalidInput("a sweep needs at least one value")
        RUNS.check(self.runs)
        WARMUP.check(self.warmup)
        KNEE_THRESHOLD.check(self.knee_threshold_pct)
        BATCH_SIZE.check(self.batch_size)
        MAX_NEW_TOKENS_PARAM.check(self.max_new_tokens)
        self.sampling.validate()
        for value in self.values:
            if self.kind == "batch":
                BATCH_SIZE.check(value)
            elif self.kind == "length":
                MAX_NEW_TOKENS_PARAM.check(value)
            else:
                if not (isinstance(value, (tuple, list)) and len(value) == 2):
                    raise InvalidInput(f"a sampling sweep value is a (temperature, top-p) pair (got {value!r})")
                self.sampling.with_(temperature=float(value[0]), top_p=float(value[1])).validate()
        self.limits()
        return self

    def limits(self) -> dict[str, float] | None:
        """The budget as limits on latency keys (a preset name resolved), or None."""
        budget = check_budget("latency_budget", self.latency_budget)
        if isinstance(budget, str):
            return dict(BUDGET_PRESETS[budget].limits)
        return budget

    def configurations(self) -> list[Configuration]:
        """One ``Configuration`` per value, in the order given."""
        out = []
        for value in self.values:
            if isinstance(value, tuple):
                t, p = float(value[0]), float(value[1])
                sampling = self.sampling.with_(temperature=t, top_p=p, max_new_tokens=self.max_new_tokens)
                out.append(Configuration(f"T={t:g} top-p={p:g}", (t, p), self.batch_size, sampling))
            elif self.kind == "batch":
                b = int(value)
                out.append(Configuration(f"batch {b}", b, b, self.sampling.with_(max_new_tokens=self.max_new_tokens)))
            else:
                n = int(value)
                out.append(Configuration(f"{n} tokens", n, self.batch_size, self.sampling.with_(max_new_tokens=n)))
        return out

    def to_dict(self) -> dict:
        """Plain-JSON form (stored with results)."""
        budget = self.latency_budget
        return {
            "kind": self.kind,
            "values": [list(v) if isinstance(v, tuple) else v for v in self.values],
            "runs": self.runs,
            "warmup": self.warmup,
            "sampling": self.sampling.to_dict(),
            "batch_size": self.batch_size,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "latency_budget": budget if isinstance(budget, str) or budget is None else dict(budget),
            "knee_threshold_pct": self.knee_threshold_pct,
        }


@dataclass(frozen=True)
class Configuration:
    """One point of a sweep before it runs: its label, swept value, batch and sampling."""

    label: str
    value: SweepValue
    batch_size: int
    sampling: SamplingParams


@dataclass(frozen=True)
class RunFigures:
    """The raw figures of one measured run of a configuration."""

    run_index: int
    output_tokens_per_s: float | None
    wall_s: float
    requests: int
    output_tokens: int
    ttft_p50_s: float | None
    e2e_p50_s: float | None
    tpot_p50_s: float | None
    partial: bool = False

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return dict(self.__dict__)


_EMPTY = Percentiles(n=0, p50=None, p90=None, p99=None, mean=None)


@dataclass
class SweepPoint:
    """The measured figures of one configuration (seconds; throughput in tokens/s).

    ``status`` is ``"ok"``, ``"partial"`` (stopped before every run finished),
    ``"error"`` (the engine failed here, ``error`` says why) or ``"skipped"``.
    """

    label: str
    value: SweepValue
    batch_size: int
    ttft_s: Percentiles = _EMPTY
    e2e_s: Percentiles = _EMPTY
    tpot_s: Percentiles = _EMPTY
    itl_s: Percentiles = _EMPTY
    output_tokens_per_s: float | None = None
    runs: list[RunFigures] = field(default_factory=list)
    partial: bool = False
    error: str | None = None
    status: str = "ok"
    max_new_tokens: int = 0
    temperature: float = 0.0
    top_p: float = 1.0
    decode_tokens_per_s: Percentiles = _EMPTY
    samples: dict[str, list[float]] = field(default_factory=dict)
    """Per-request figures pooled over measured runs: ``{"ttft_s": [...], "e2e_s": [...], "tpot_s": [...]}``."""
    sample_text: str = ""
    """The first request's text in the last measured run (what these settings write)."""
    window_output_tokens_per_s: float | None = None
    """Σ output tokens / (last token − first send) over all measured runs together (the peers' "output
    throughput"); ``output_tokens_per_s`` is the mean of each run's own rate."""

    @property
    def complete(self) -> bool:
        """True when every planned run finished without error."""
        return self.status == "ok"

    def latency(self) -> dict[str, float | None]:
        """The latency figures keyed as in ``LATENCY_KEYS`` (budget limits use these keys)."""
        out: dict[str, float | None] = {}
        for name, pct in (("ttft", self.ttft_s), ("e2e", self.e2e_s), ("tpot", self.tpot_s), ("itl", self.itl_s)):
            out[f"{name}_p50"] = pct.p50
            out[f"{name}_p90"] = pct.p90
        return out

    def to_dict(self) -> dict:
        """Plain-JSON form (``sweep --out FILE.json``)."""
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {
            "label": self.label,
            "value": value,
            "batch_size": self.batch_size,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "status": self.status,
            "partial": self.partial,
            "error": self.error,
            **percentile_dicts(self),
            "output_tokens_per_s": self.output_tokens_per_s,
            "window_output_tokens_per_s": self.window_output_tokens_per_s,
            "runs": [r.to_dict() for r in self.runs],
            "samples": {k: list(v) for k, v in self.samples.items()},
            "sample_text": self.sample_text,
        }

    def to_row(self) -> dict:
        """One flat CSV row: configuration, p50/p90 figures, throughput, status."""
        row: dict[str, Any] = {
            "label": self.label,
            "batch_size": self.batch_size,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "runs": len(self.runs),
            "requests": self.e2e_s.n,
            "output_tokens_per_s": self.output_tokens_per_s,
            "window_output_tokens_per_s": self.window_output_tokens_per_s,
        }
        for name, pct in (("ttft", self.ttft_s), ("e2e", self.e2e_s), ("tpot", self.tpot_s), ("itl", self.itl_s)):
            row[f"{name}_p50_s"] = pct.p50
            row[f"{name}_p90_s"] = pct.p90
            row[f"{name}_n"] = pct.n
        row["status"] = self.status
        row["error"] = self.error
        row["sample_text"] = self.sample_text
        return row


@dataclass
class SweepResult:
    """All points of a sweep, the knee, the budget pick, and whether it finished."""

    plan: SweepPlan
    points: list[SweepPoint] = field(default_factory=list)
    knee: Knee | None = None
    knee_balance: float | None = None
    """The seed notebook's balance point (x), shown beside the knee."""
    budget_pick: SweepPoint | None = None
    budget_limits: dict[str, float] | None = None
    partial: bool = False
    interrupted: bool = False
    """True when Ctrl-C (not a stop request) ended the sweep."""
    messages: list[str] = field(default_factory=list)
    engine: dict | None = None

    def budget_note(self) -> str:
        """One line describing the budget and its pick (or why there is none)."""
        preset = self.plan.latency_budget if isinstance(self.plan.latency_budget, str) else None
        pick = self.budget_pick
        return budget_note(self.budget_limits, preset,
                           None if pick is None else f"{pick.label} ({rate(pick.output_tokens_per_s)})")

    def knee_note(self) -> str:
        """One line describing the knee (with its threshold) and the balance point."""
        if self.plan.kind != "batch":
            return "knee: only defined for batch-size sweeps"
        text = knee_note(self.knee, lambda x: f"batch {x:g}")
        if self.knee_balance is not None:
            text += f"; balance point (seed notebook's rule, E2E p50): batch {self.knee_balance:g}"
        return text

    def to_dict(self) -> dict:
        """Plain-JSON form (``sweep --out FILE.json``)."""
        knee = None
        if self.knee is not None:
            knee = {
                "batch_size": self.knee.x,
                "gain_pct": self.knee.gain_pct,
                "threshold_pct": self.knee.threshold_pct,
                "method": self.knee.method,
                "dips": list(self.knee.dips),
            }
        pick = None
        if self.budget_pick is not None:
            pick = {
                "label": self.budget_pick.label,
                "value": list(self.budget_pick.value) if isinstance(self.budget_pick.value, tuple)
                else self.budget_pick.value,
                "batch_size": self.budget_pick.batch_size,
                "output_tokens_per_s": self.budget_pick.output_tokens_per_s,
            }
        return {
            "kind": self.plan.kind,
            "plan": self.plan.to_dict(),
            "engine": self.engine,
            "partial": self.partial,
            "interrupted": self.interrupted,
            "messages": list(self.messages),
            "points": [p.to_dict() for p in self.points],
            "knee": knee,
            "knee_note": self.knee_note(),
            "knee_balance_batch_size": self.knee_balance,
            "budget": self.budget_limits,
            "budget_pick": pick,
            "budget_note": self.budget_note(),
        }

    def rows(self) -> list[dict]:
        """CSV rows, one per point."""
        return [p.to_row() for p in self.points]


def _point_from_runs(
    config: Configuration, runs: Sequence[tuple[int, RunResult]], status: str, error: str | None
) -> SweepPoint:
    # A request that was never submitted (stopped first) has no send time and no output: throughput and
    # counts cover the sent ones; latency the ones that count (a load run leaves out requests cut mid-stream).
    traces = [r.trace for _, res in runs for r in res.sent()]
    timed = [t for _, res in runs for t in res.latency_traces()]
    figures = []
    throughputs = []
    for index, res in runs:
        run_traces = [r.trace for r in res.sent()]
        run_timed = res.latency_traces()
        thr = output_throughput(run_traces)
        if thr is not None:
            throughputs.append(thr)
        figures.append(
            RunFigures(
                run_index=index,
                output_tokens_per_s=thr,
                wall_s=res.wall_s,
                requests=len(run_traces),
                output_tokens=sum(t.output_tokens for t in run_traces),
                ttft_p50_s=summarize(ttft(t) for t in run_timed).p50,
                e2e_p50_s=summarize(e2e(t) for t in run_timed).p50,
                tpot_p50_s=summarize(tpot(t) for t in run_timed).p50,
                partial=res.partial,
            )
        )
    ttfts = [v for v in (ttft(t) for t in timed) if v is not None]
    e2es = [v for v in (e2e(t) for t in timed) if v is not None]
    tpots = [v for v in (tpot(t) for t in timed) if v is not None]
    return SweepPoint(
        label=config.label,
        value=config.value,
        batch_size=config.batch_size,
        ttft_s=summarize(ttfts),
        e2e_s=summarize(e2es),
        tpot_s=summarize(tpots),
        itl_s=summarize(itl_samples(timed)),
        output_tokens_per_s=(sum(throughputs) / len(throughputs)) if throughputs else None,
        runs=figures,
        partial=status == "partial",
        error=error,
        status=status,
        max_new_tokens=config.sampling.max_new_tokens,
        temperature=config.sampling.temperature,
        top_p=config.sampling.top_p,
        decode_tokens_per_s=summarize(decode_speed(t) for t in timed),
        samples={"ttft_s": ttfts, "e2e_s": e2es, "tpot_s": tpots},
        sample_text=runs[-1][1].requests[0].text if runs and runs[-1][1].requests else "",
        window_output_tokens_per_s=output_throughput(traces),
    )


def _tradeoff(point: SweepPoint, x: float) -> TradeoffPoint:
    return TradeoffPoint(x=x, throughput=point.output_tokens_per_s or 0.0, latency=point.latency())


def finalize(result: SweepResult) -> SweepResult:
    """(Re)compute the knee, balance point and budget pick over the complete points."""
    plan = result.plan
    complete = [p for p in result.points if p.complete and p.output_tokens_per_s]
    result.knee = None
    result.knee_balance = None
    if plan.kind == "batch":
        tps = [_tradeoff(p, float(p.batch_size)) for p in complete]
        result.knee = knee_by_gain(tps, plan.knee_threshold_pct)
        result.knee_balance = knee_by_balance(tps, "e2e_p50")
    result.budget_limits = plan.limits()
    result.budget_pick = None
    if result.budget_limits is not None:
        by_index = {i: p for i, p in enumerate(complete)}
        chosen = budget_pick([_tradeoff(p, float(i)) for i, p in by_index.items()], result.budget_limits)
        if chosen is not None:
            result.budget_pick = by_index[int(chosen.x)]
    return result


def run_sweep(
    engine: Engine,
    plan: SweepPlan,
    stop: threading.Event | None = None,
    on_point: Callable[[SweepPoint], None] | None = None,
    sink: EventSink | None = None,
    on_run: Callable[[Configuration, int, bool], None] | None = None,
) -> SweepResult:
    """Run every configuration of ``plan`` on a loaded ``engine``.

    ``on_point(point)`` is called as each configuration finishes (also for
    error/skipped points); ``sink`` receives the time-batched events of the run
    in progress; ``on_run(configuration, run_index, is_warmup)`` is called
    before each run starts. Setting ``stop`` ends the sweep within one decode
    step; measured data is kept and marked partial.
    """
    plan.validate()
    result = SweepResult(plan=plan)
    try:
        result.engine = engine.info.to_dict()
    except LabError:
        result.engine = None
    oom_batch: int | None = None
    try:
        for config in plan.configurations():
            if stop is not None and stop.is_set():
                result.partial = True
                break
            if oom_batch is not None and plan.kind == "batch" and config.batch_size >= oom_batch:
                point = SweepPoint(
                    config.label, config.value, config.batch_size, status="skipped",
                    error=f"skipped: batch {oom_batch} already ran out of memory",
                    max_new_tokens=config.sampling.max_new_tokens,
                    temperature=config.sampling.temperature, top_p=config.sampling.top_p,
                )
                result.points.append(point)
                if on_point:
                    on_point(point)
                continue
            measured, ended, oom = _run_configuration(engine, plan, config, stop, sink, on_run)
            if measured is not None:
                point = measured
                result.points.append(point)
                if point.status == "error":
                    result.messages.append(f"{config.label}: {point.error}")
                if oom and plan.kind == "batch":
                    oom_batch = config.batch_size if oom_batch is None else min(oom_batch, config.batch_size)
                    result.messages.append("larger batch sizes are skipped: they cannot fit either")
                if on_point:
                    on_point(point)
            if ended == "interrupted":
                result.partial = True
                result.interrupted = True
                break
            if ended == "stopped":
                result.partial = True
                break
    except KeyboardInterrupt:
        # Ctrl-C between runs (e.g. inside a callback): keep what was measured.
        engine.cancel()
        result.partial = True
        result.interrupted = True
    if result.partial:
        result.messages.append("stopped early: the figures cover only what was measured before the stop")
    return finalize(result)


def _run_configuration(
    engine: Engine,
    plan: SweepPlan,
    config: Configuration,
    stop: threading.Event | None,
    sink: EventSink | None,
    on_run: Callable[[Configuration, int, bool], None] | None,
) -> tuple[SweepPoint | None, str | None, bool]:
    """Warm-up then measured runs of one configuration.

    Returns (point or None, "stopped"/"interrupted"/None, whether it ran out of memory).
    """

    # Every run of a configuration (warm-up included) sends the same seeded prompts, so the runs
    # differ only by the system's own noise, and the warm-up does the shape-specific work (CUDA graph
    # capture, kernel selection, allocator growth) for exactly the shapes that are then timed.
    # (Measured on an H200: with different prompts per run, each new prompt length added ~40 ms of TTFT.)
    def requests(_index: int) -> list[Request]:
        return make_requests(prompt_schedule(config.batch_size, plan.seed), config.batch_size)

    m = measure(
        engine, requests, config.sampling, warmup=plan.warmup, runs=plan.runs, stop=stop, sink=sink,
        on_run=None if on_run is None else (lambda index, warm: on_run(config, index, warm)),
    )
    measured = m.complete
    if m.ended == "error":
        oom = isinstance(m.exception, OutOfMemory)
        if measured:
            # Keep the completed runs' figures beside the error; the point does not count as complete.
            return _point_from_runs(config, measured, "error", m.error), None, oom
        return SweepPoint(
            config.label, config.value, config.batch_size, status="error", error=m.error,
            max_new_tokens=config.sampling.max_new_tokens,
            temperature=config.sampling.temperature, top_p=config.sampling.top_p,
        ), None, oom
    if m.ended is None:
        return _point_from_runs(config, measured, "ok", None), None, False
    # Stopped: prefer the completed measured runs; a truncated run only when nothing else exists.
    runs = measured or [(i, res) for i, res in m.runs if res.partial]
    if not runs:
        return None, m.ended, False
    return _point_from_runs(config, runs, "partial", None), m.ended, False


# ------------------------------------------------------------------------------------------ the experiments


def check_budget(name: str, value: Value) -> str | dict[str, float] | None:
    """A latency budget: a preset name, E2E p50 seconds, or limits (``{"e2e_p90": 2}`` or ``e2e_p90=2,ttft_p50=1``).

    None means no budget.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text in BUDGET_PRESETS:
            return text
        if "=" in text:
            pairs = [part.partition("=") for part in text.split(",") if part.strip()]
            return check_budget(name, {k.strip(): v.strip() for k, _, v in pairs})
        try:
            float(text)
        except ValueError:
            raise InvalidInput(f"{name} must be one of: {', '.join(BUDGET_PRESETS)}, seconds, or limits like "
                               f"e2e_p90=2 (got {value!r})") from None
        value = text
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        # A bare number is an end-to-end p50 budget in seconds, the seed notebook's choice.
        return {"e2e_p50": _limit(name, value)}
    if isinstance(value, dict):
        out = {}
        for key, limit in value.items():
            if key not in LATENCY_KEYS:
                raise InvalidInput(f"{name}: unknown latency metric {key!r}; choose from {', '.join(LATENCY_KEYS)}")
            out[key] = _limit(f"{name}.{key}", limit)
        return out
    raise InvalidInput(f"{name} must be a preset name or a map of limits (got {value!r})")


def _limit(name: str, value: Value) -> float:
    x = number(name, value)
    if x <= 0:
        raise InvalidInput(f"{name} must be > 0 seconds (got {x:g})")
    return x


LATENCY_BUDGET = Param("latency_budget", "other", "chat",
                       f"a preset ({'|'.join(BUDGET_PRESETS)}), E2E p50 seconds, or limits like e2e_p90=2,ttft_p50=0.5",
                       optional=True, extra=check_budget)
KNEE_THRESHOLD = Param("knee_threshold_pct", "number", KNEE_GAIN_PCT,
                       "knee: a doubling that gains less than this % of throughput", 0, above_min=True,
                       flag="--knee-gain")
BATCH_SIZES = Param("batch_sizes", "int list", list(DEFAULT_BATCH_SIZES), "batch sizes, e.g. 1,8,32", 1, MAX_REQUESTS)
LENGTHS = Param("lengths", "int list", list(DEFAULT_LENGTHS), "output lengths, e.g. 32,64,128", 1, MAX_NEW_TOKENS)
TEMPERATURES = Param("temperatures", "number list", list(DEFAULT_TEMPERATURES), "temperatures of the grid", 0)
TOP_PS = Param("top_ps", "number list", list(DEFAULT_TOP_PS), "top-p values of the grid", 0, 1, above_min=True)

_MEASURED = (RUNS, WARMUP, IGNORE_EOS.but(default=True))


class SweepExperiment(Experiment):
    """A sweep over one axis; each point goes to ``ctx.emit`` as it finishes, charted against ``axis``."""

    kind = "sweep"
    result_type = SweepResult
    axis: ChartAxis = "batch"

    def plan(self, params: Params) -> SweepPlan:
        """The ``SweepPlan`` of validated ``params``."""
        raise NotImplementedError

    def check_together(self, values: Params) -> None:
        """The plan the values make must be runnable."""
        self.plan(values)

    def chart_axis(self, params: Params) -> ChartAxis:
        """Points are charted against the swept value."""
        return self.axis

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """Each configuration's warm-up and measured runs, on the seeded prompts of its batch."""
        plan = self.plan(params)
        return [PlannedRun(c.batch_size, c.sampling.max_new_tokens,
                           prompt_tokens(prompt_schedule(c.batch_size, plan.seed)), plan.runs + plan.warmup)
                for c in plan.configurations()]

    def run(self, params: Params, ctx: RunContext) -> SweepResult:
        """Run the plan on the loaded engine; the ``SweepResult`` (points so far if stopped)."""
        plan = self.plan(params)
        total = max(1, len(plan.configurations()) * (plan.runs + plan.warmup))
        done = [0]

        def on_run(configuration: Configuration, index: int, warmup: bool) -> None:
            # ``index`` counts the warm-ups too; the line counts the measured runs from 1.
            what = "warm-up" if warmup else f"run {index - plan.warmup + 1}/{plan.runs}"
            ctx.report(f"{configuration.label} · {what}", done[0] / total, new_run=True)
            done[0] += 1

        return run_sweep(ctx.loaded, plan, stop=ctx.stop, on_point=ctx.emit, sink=ctx.sink, on_run=on_run)


def _plan(kind: SweepKind, values: tuple[SweepValue, ...], params: Params, batch_size: int = 8,
          max_new_tokens: int = 64) -> SweepPlan:
    from tui_lab.lab.run import sampling_from

    return SweepPlan(
        kind=kind, values=values, runs=params["runs"], warmup=params["warmup"], sampling=sampling_from(params),
        seed=params["seed"], latency_budget=params["latency_budget"],
        knee_threshold_pct=params.get("knee_threshold_pct") or KNEE_GAIN_PCT, batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    ).validate()


class BatchSweep(SweepExperiment):
    """Throughput and latency as the batch grows."""

    name = "batch_sweep"
    title = "Batch-size sweep"
    description = "Throughput and p50/p90 latency as the batch grows; the knee and a budget pick."
    axis = "batch"
    params = (BATCH_SIZES, MAX_NEW_TOKENS_PARAM, *SAMPLING, *_MEASURED, LATENCY_BUDGET, KNEE_THRESHOLD)

    def plan(self, params: Params) -> SweepPlan:
        """Batch sizes at ``max_new_tokens`` each."""
        return _plan("batch", tuple(params["batch_sizes"]), params,
                     max_new_tokens=params["max_new_tokens"])


class LengthSweep(SweepExperiment):
    """Latency against output length at a fixed batch."""

    name = "length_sweep"
    title = "Output-length sweep"
    description = "Latency against the number of generated tokens at a fixed batch: decode grows linearly."
    axis = "length"
    params = (LENGTHS, BATCH_SIZE.but(default=8), *SAMPLING, RUNS.but(default=2), WARMUP,
              IGNORE_EOS.but(default=True), LATENCY_BUDGET.but(default=None))

    def plan(self, params: Params) -> SweepPlan:
        """Output lengths at ``batch_size``."""
        return _plan("length", tuple(params["lengths"]), params, batch_size=params["batch_size"])


class SamplingGrid(SweepExperiment):
    """Temperature × top-p."""

    name = "sampling_grid"
    title = "Temperature × top-p"
    description = "Speed and text across a grid of sampling settings: little effect on speed, large on output."
    axis = "sampling"
    params = (TEMPERATURES, TOP_PS, BATCH_SIZE.but(default=4), MAX_NEW_TOKENS_PARAM, TOP_K, REPETITION_PENALTY, SEED,
              RUNS.but(default=2), WARMUP, IGNORE_EOS.but(default=True), LATENCY_BUDGET.but(default=None))

    def plan(self, params: Params) -> SweepPlan:
        """Every (temperature, top-p) pair at ``batch_size``."""
        values = sampling_grid(params["temperatures"], params["top_ps"])
        return _plan("sampling", values, {**params, "temperature": 0.0, "top_p": 1.0}, batch_size=params["batch_size"],
                     max_new_tokens=params["max_new_tokens"])
