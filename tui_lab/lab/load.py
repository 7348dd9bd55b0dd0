"""Load the way serving benchmarks do: a closed loop of C requests in flight, or arrivals at a request rate.

Two load modes, one driver (``execute_load``), for engines that take requests while others run
(``open_session``: the OpenAI engine, vLLM; the transformers engine runs static batches and is refused):

* **closed loop** (``concurrency=C``): C requests in flight; a new one is sent as soon as one
  finishes, until ``num_requests`` have been sent. Like ``vllm bench serve --request-rate inf
  --max-concurrency C``: every request arrives at the start and waits for a slot.
* **open loop** (``request_rate=R``): requests arrive at seeded random times, intervals drawn from
  a gamma distribution of shape ``burstiness`` and mean 1/R (burstiness 1 = Poisson arrivals),
  rescaled so the last arrival falls at N/R, as ``vllm bench serve`` does.
  ``max_concurrency`` caps the requests still open; an arrival over the cap waits.

Time to first token starts when the request is *sent*. The time an arrived request waits on the
client for a free slot (``client_queue_s`` = send time − scheduled arrival) is reported on its own,
never folded into TTFT. Output lengths may be mixed (``output_lens="16,64,128"`` cycles the list,
``"uniform:16:128"`` draws seeded lengths), so a closed loop does not settle into lock-step waves.
Input lengths are written the same way (``input_lens="512"``, ``"16,64,128"``, ``"uniform:LO:HI"``):
each request then gets a prompt of exactly that many tokens for the loaded engine's tokenizer (special
tokens included); an engine with no local tokenizer (a remote server) gets an approximation that the
result's ``input_note`` states (``tui_lab.lab.prompts.input_prompts``). Without them, the lab's own
short prompts (8-16 tokens).

Throughput is named as peers name it: ``window_output_tokens_per_s`` = Σ output tokens /
(last token − first send) over the whole measured window (``vllm bench serve``'s "output token
throughput" up to where its clock starts and stops); ``mean_run_output_tokens_per_s`` = the mean of
each run's own rate (what a batch sweep shows). Before the measured load, one request is sent alone
and reported apart as the *cold* request (a new HTTP connection, first-use costs), like the initial
test request of ``vllm bench serve``.

A load sweep runs such a load for each concurrency or request rate, builds its points with the
batch sweep's own functions, and names the knee (throughput gain per doubling below X%) and the
budget pick (the highest window throughput within latency limits).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tui_lab.engines.base import Engine, Request, SamplingParams, prompt_tokenizer, supports_sessions
from tui_lab.engines.events import RequestFinished, RequestSubmitted, StreamEvent
from tui_lab.errors import EngineFailure, InvalidInput, LabError, error_text
from tui_lab.formatting import rate
from tui_lab.gpu_share import turn
from tui_lab.lab.experiment import ChartAxis, Experiment, Params, RunContext
from tui_lab.lab.planned import PlannedRun, prompt_tokens
from tui_lab.lab.prompts import input_prompts, prompt_schedule
from tui_lab.lab.run import DEFAULT_FLUSH_INTERVAL_S, EventBatches, EventSink, RunRecorder, RunResult
from tui_lab.lab.sweep import KNEE_THRESHOLD, LATENCY_BUDGET, Configuration, SweepPoint, _point_from_runs
from tui_lab.metrics import (
    KNEE_GAIN_PCT,
    Knee,
    Percentiles,
    RunSummary,
    TradeoffPoint,
    budget_note,
    budget_pick,
    e2e,
    knee_by_gain,
    knee_note,
    output_throughput,
    summarize,
    ttft,
)
from tui_lab.params import IGNORE_EOS, MAX_NEW_TOKENS_PARAM, MAX_REQUESTS, RUNS, SEED, TEMPERATURE, TOP_P, Param

LoadMode = Literal["concurrency", "rate"]
LOAD_AXES: tuple[str, ...] = ("concurrency", "rate")

_POLL_S = 0.02
"""Longest wait for engine events before the driver looks at the clock and the stop flag again."""

MAX_LOAD_REQUESTS = 10_000

THROUGHPUT_NOTE = (
    "window tok/s = Σ output tokens / (last token − first send) over the measured window; "
    "mean/run tok/s = mean of each run's own rate"
)
"""What the two throughput columns mean (printed under every load table)."""


# ------------------------------------------------------------------------------------------- workload pieces


LengthSpec = str | Sequence[int] | None
"""Lengths of a load's requests: ``"128"`` (fixed), ``"16,64,128"`` (cycled) or ``"uniform:LO:HI"`` (seeded)."""

MAX_INPUT_TOKENS = 1_000_000


def parse_lens(spec: LengthSpec, what: str = "output lengths") -> tuple[str, tuple[int, ...]]:
    """Check a length spec: a number, a list ``"16,64,128"`` or ``"uniform:LO:HI"``; returns (kind, numbers).

    ``("", ())`` means no spec (the default length). ``what`` names the lengths in the one-line errors.
    """
    if spec is None or spec == "" or (not isinstance(spec, str) and not spec):
        return "", ()
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = (spec,)
    if not isinstance(spec, str):
        try:
            values = tuple(int(v) for v in spec)
        except (TypeError, ValueError):
            raise InvalidInput(f"{what} {spec!r}: give whole numbers, e.g. 16,64,128") from None
        kind = "list"
    elif spec.startswith("uniform:"):
        parts = spec.split(":")
        try:
            lo, hi = int(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            raise InvalidInput(f"{what} {spec!r}: write uniform:LO:HI, e.g. uniform:16:128") from None
        if len(parts) != 3 or lo > hi:
            raise InvalidInput(f"{what} {spec!r}: write uniform:LO:HI with LO <= HI, e.g. uniform:16:128")
        values, kind = (lo, hi), "uniform"
    else:
        try:
            values = tuple(int(v) for v in spec.split(",") if v.strip())
        except ValueError:
            raise InvalidInput(
                f"{what} {spec!r}: give a length like 128, a list like 16,64,128 or a range like uniform:16:128"
            ) from None
        kind = "list"
        if not values:
            raise InvalidInput(f"{what}: give at least one length, e.g. 16,64,128")
    for v in values:
        if v < 1:
            raise InvalidInput(f"{what} must be at least 1 token (got {v})")
        if v > MAX_INPUT_TOKENS:
            raise InvalidInput(f"{what} must be at most {MAX_INPUT_TOKENS} tokens (got {v})")
    return kind, values


def parse_output_lens(spec: LengthSpec) -> tuple[str, tuple[int, ...]]:
    """``parse_lens`` for output lengths."""
    return parse_lens(spec, "output lengths")


def lengths(spec: LengthSpec, n: int, seed: int, what: str = "output-lens") -> list[int | None]:
    """One length per request: the list cycled, or seeded uniform draws (``what`` keys the seed); None = default."""
    kind, values = parse_lens(spec)
    if not kind:
        return [None] * n
    if kind == "list":
        return [values[i % len(values)] for i in range(n)]
    rng = random.Random(f"{what}-{seed}")
    return [rng.randint(values[0], values[1]) for _ in range(n)]


def output_lengths(spec: LengthSpec, n: int, seed: int) -> list[int | None]:
    """One output length per request: the list cycled, or seeded uniform draws; None = sampling default."""
    return lengths(spec, n, seed, "output-lens")


def input_lengths(spec: LengthSpec, n: int, seed: int) -> list[int] | None:
    """One input length (tokens) per request, or None without a spec (the lab's own prompts)."""
    drawn = lengths(spec, n, seed, "input-lens")
    return None if drawn[0] is None else [int(v) for v in drawn if v is not None]


def arrival_offsets(n: int, request_rate: float | None, burstiness: float = 1.0, seed: int = 0) -> list[float]:
    """Seconds from the start at which each of ``n`` requests arrives.

    No rate (closed loop): all at 0. Otherwise gamma intervals (shape ``burstiness``, scale
    1/(rate·burstiness), so the mean is 1/rate), summed, and rescaled so the last arrival is at
    n/rate exactly: ``vllm bench serve``'s schedule (its draws come from numpy, ours from Python's
    seeded ``random``, so the two tools' arrival times differ while their statistics agree).
    """
    if request_rate is None or math.isinf(request_rate):
        return [0.0] * n
    rng = random.Random(f"arrivals-{seed}")
    theta = 1.0 / (request_rate * burstiness)
    delays: list[float] = []
    total = 0.0
    for _ in range(n):
        total += rng.gammavariate(burstiness, theta)
        delays.append(total)
    if delays and delays[-1] > 0:
        scale = (n / request_rate) / delays[-1]
        delays = [d * scale for d in delays]
    return delays


# ------------------------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class LoadPlan:
    """One load: how requests arrive, how many, their output lengths and sampling.

    Exactly one of ``concurrency`` (closed loop) and ``request_rate`` (open loop, requests/s) is set.
    ``max_concurrency`` caps open requests in the open loop (None = no cap). ``cold_request``
    sends one request alone first and reports it apart. ``input_lens`` gives each request a prompt
    of that many tokens (None: the lab's own short prompts); ``output_lens`` its output length.
    """

    num_requests: int = 8
    concurrency: int | None = 4
    request_rate: float | None = None
    burstiness: float = 1.0
    max_concurrency: int | None = None
    output_lens: str | tuple[int, ...] | None = None
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_new_tokens=32, ignore_eos=True))
    seed: int = 0
    cold_request: bool = True
    input_lens: str | tuple[int, ...] | None = None

    @property
    def mode(self) -> LoadMode:
        """``"concurrency"`` (closed loop) or ``"rate"`` (open loop)."""
        return "rate" if self.request_rate is not None else "concurrency"

    @property
    def cap(self) -> int | None:
        """The most requests in flight at once (None = no limit)."""
        return self.concurrency if self.mode == "concurrency" else self.max_concurrency

    @property
    def label(self) -> str:
        """"concurrency 4" or "rate 2 req/s (cap 8)"."""
        if self.mode == "concurrency":
            return f"concurrency {self.concurrency}"
        text = f"rate {self.request_rate:g} req/s"
        if self.burstiness != 1.0:
            text += f" burst {self.burstiness:g}"
        if self.max_concurrency is not None:
            text += f" (cap {self.max_concurrency})"
        return text

    def validate(self) -> LoadPlan:
        """Raise ``InvalidInput`` (one line) for any value the load cannot run."""
        if (self.concurrency is None) == (self.request_rate is None):
            raise InvalidInput("give either a concurrency (closed loop) or a request rate (open loop), not both")
        NUM_REQUESTS.check(self.num_requests)
        CONCURRENCY.but(optional=True).check(self.concurrency)
        MAX_CONCURRENCY.check(self.max_concurrency)
        REQUEST_RATE.but(optional=True).check(self.request_rate)
        BURSTINESS.check(self.burstiness)
        if self.mode == "concurrency" and self.burstiness != 1.0:
            raise InvalidInput("burstiness shapes request-rate arrivals; a closed loop (concurrency) has none")
        if self.mode == "concurrency" and self.max_concurrency is not None:
            raise InvalidInput("max concurrency caps a request-rate load; a closed loop is capped by its concurrency")
        parse_lens(self.output_lens, "output lengths")
        parse_lens(self.input_lens, "input lengths")
        self.sampling.validate()
        return self

    def planned_work(self) -> list[PlannedRun]:
        """What the load asks of the engine, for an estimate: the cold request alone, then the requests in waves
        of as many as may be in flight (all of them where nothing caps them), ending no sooner than an open
        loop's last arrival. Replies that end before their length make it shorter."""
        n = self.num_requests
        wanted = input_lengths(self.input_lens, n, self.seed)
        prompt = round(sum(wanted) / n) if wanted else prompt_tokens(prompt_schedule(n, self.seed))
        tokens = round(sum(v or self.sampling.max_new_tokens for v in output_lengths(self.output_lens, n, self.seed))
                       / n)
        at_once = min(n, self.cap or n)
        arrivals = n / self.request_rate if self.request_rate and not math.isinf(self.request_rate) else 0.0
        cold = [PlannedRun(1, tokens, prompt)] if self.cold_request else []
        return [*cold, PlannedRun(at_once, tokens, prompt, repeats=-(-n // at_once), at_least_s=arrivals)]

    def requests(self, tokenizer: object | None = None) -> list[Request]:
        """The seeded requests: their prompts and one output length each (``requests_and_note``)."""
        return self.requests_and_note(tokenizer)[0]

    def requests_and_note(self, tokenizer: object | None = None) -> tuple[list[Request], str]:
        """The seeded requests, and a note on how exact their input lengths are ("" without ``input_lens``).

        Without ``input_lens``: the lab's prompt schedule. With it: prompts of exactly those lengths for
        ``tokenizer`` (the engine's, ``tui_lab.engines.base.prompt_tokenizer``), or approximate ones when
        there is none (``tui_lab.lab.prompts.input_prompts``).
        """
        wanted = input_lengths(self.input_lens, self.num_requests, self.seed)
        if wanted is None:
            prompts, note = prompt_schedule(self.num_requests, self.seed), ""
        else:
            prompts, note = input_prompts(wanted, tokenizer, self.seed)
        lens = output_lengths(self.output_lens, self.num_requests, self.seed)
        return [Request(f"q{i}", prompts[i], lens[i]) for i in range(self.num_requests)], note

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {
            "mode": self.mode, "label": self.label, "num_requests": self.num_requests,
            "concurrency": self.concurrency, "request_rate": self.request_rate, "burstiness": self.burstiness,
            "max_concurrency": self.max_concurrency,
            "output_lens": list(self.output_lens) if isinstance(self.output_lens, tuple) else self.output_lens,
            "input_lens": list(self.input_lens) if isinstance(self.input_lens, tuple) else self.input_lens,
            "sampling": self.sampling.to_dict(), "seed": self.seed, "cold_request": self.cold_request,
        }


# ----------------------------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class ColdRequest:
    """The request sent alone before the load (new connection, first-use costs), reported apart."""

    ttft_s: float | None
    e2e_s: float | None
    output_tokens: int
    error: str | None = None

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return dict(self.__dict__)


@dataclass
class LoadRun:
    """One load's requests (a ``RunResult``), when each was due, and how long each waited for a slot."""

    plan: LoadPlan
    run: RunResult
    arrivals_s: list[float]
    """Scheduled arrival of each request, seconds after the load started."""
    client_queue: list[float | None]
    """Per request: send time − scheduled arrival (None for a request never sent)."""
    max_in_flight: int = 0
    duration_s: float = 0.0
    """From the load's start to its last event (the window ``vllm bench serve`` calls duration)."""
    cold: ColdRequest | None = None
    input_note: str = ""
    """How exact the requests' input lengths are (empty without ``input_lens``)."""
    ttft_split: dict[str, float] = field(default_factory=dict)
    """Where the time from each request's arrival to its first token went (``tui_lab.lab.trace.ttft_split``:
    median seconds per span, the client queue's share in percent), as far as the engine lets the lab see."""

    def labelled_loads(self) -> list[tuple[str, LoadRun]]:
        """This load with its label (what a trace of the experiment records)."""
        return [(self.plan.label, self)]

    @property
    def traces(self) -> list:
        """Traces of the requests that were sent."""
        return [r.trace for r in self.run.sent()]

    @property
    def sent(self) -> int:
        """How many requests were sent (a stop or Ctrl-C leaves the rest unsent)."""
        return len(self.run.sent())

    @property
    def cut(self) -> int:
        """Sent requests that did not end by themselves (cut by a stop or Ctrl-C, or failed mid-stream):
        left out of the latency figures, their tokens still in the throughput."""
        return self.sent - len(self.run.latency_traces())

    def summary(self) -> RunSummary:
        """The run's figures: counts and throughput over the sent requests, latency over those not cut."""
        return self.run.summary()

    @property
    def client_queue_s(self) -> Percentiles:
        """Client queue time (waiting for a concurrency slot) over the requests that were sent."""
        return summarize(self.client_queue)

    @property
    def window_output_tokens_per_s(self) -> float | None:
        """Σ output tokens / (last token − first send) over this load."""
        return output_throughput(self.traces)

    @property
    def request_throughput(self) -> float | None:
        """Requests finished per second of the window (first send → last token)."""
        done = [t for t in self.traces if t.last_token_time is not None]
        if not done:
            return None
        window = max(t.last_token_time for t in done) - min(t.t_send for t in self.traces)
        return len(done) / window if window > 0 else None

    def to_dict(self) -> dict:
        """Plain-JSON form: plan, every request, summary, queue times and both throughputs."""
        body = self.run.to_dict()
        for req, queued, arrival in zip(body["requests"], self.client_queue, self.arrivals_s, strict=True):
            req["arrival_s"] = arrival
            req["client_queue_s"] = queued
        return {
            "plan": self.plan.to_dict(),
            "partial": self.run.partial,
            "error": self.run.error,
            "requests": body["requests"],
            "summary": body["summary"],
            "sent": self.sent,
            "cut": self.cut,
            "client_queue_s": self.client_queue_s.to_dict(),
            "window_output_tokens_per_s": self.window_output_tokens_per_s,
            "request_throughput": self.request_throughput,
            "max_in_flight": self.max_in_flight,
            "duration_s": self.duration_s,
            "cold_request": self.cold.to_dict() if self.cold else None,
            "throughput_note": THROUGHPUT_NOTE,
            "input_note": self.input_note,
            "ttft_split": self.ttft_split,
        }


def require_sessions(engine: Engine) -> None:
    """Refuse, in one line, an engine that cannot take requests while others run."""
    if not supports_sessions(engine):
        name = getattr(engine, "name", type(engine).__name__)
        raise InvalidInput(
            f"the {name} engine runs static batches: it cannot add a request while others generate, "
            "so it has no concurrency or request-rate load",
            hint="use --engine vllm or --engine openai for load modes (or --batch-size for a static batch)",
        )


def cold_request(engine: Engine, plan: LoadPlan, stop: threading.Event | None = None,
                 first: Request | None = None) -> ColdRequest:
    """Send one request alone (the first request's prompt and length, the plan's sampling) and time it."""
    if first is None:
        first = plan.requests(prompt_tokenizer(engine) if plan.input_lens else None)[0]
    session = engine.open_session(plan.sampling)  # type: ignore[attr-defined]
    request = Request("cold", first.prompt, first.max_new_tokens)
    recorder = RunRecorder([request], plan.sampling)
    try:
        session.submit(request)
        done = False
        while not done and not (stop is not None and stop.is_set()):
            for event in session.events(_POLL_S):
                recorder.add(event)
                done = done or isinstance(event, RequestFinished)
    finally:
        for event in session.close():
            recorder.add(event)
    rr = recorder.finish(0.0).requests[0]
    return ColdRequest(ttft(rr.trace), e2e(rr.trace), rr.trace.output_tokens, rr.error)


def execute_load(
    engine: Engine,
    plan: LoadPlan,
    stop: threading.Event | None = None,
    sink: EventSink | None = None,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL_S,
    cold: bool | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> LoadRun:
    """Run one load on a loaded engine; stops within one poll (20 ms) of ``stop``, keeping what was measured.

    ``cold`` overrides ``plan.cold_request``. A ``LabError`` before anything was sent propagates;
    an engine failure later ends the load with ``run.error`` set and ``run.partial``. ``clock`` is the
    clock the engine stamps its events with (``time.perf_counter``; a test's engine may bring its own):
    the schedule of arrivals and the client queue times are read on it.
    """
    with turn("run"):  # one timed load at a time when processes share the GPU
        return _execute_load(engine, plan, stop, sink, flush_interval, cold, clock)


def _execute_load(
    engine: Engine,
    plan: LoadPlan,
    stop: threading.Event | None,
    sink: EventSink | None,
    flush_interval: float,
    cold: bool | None,
    clock: Callable[[], float],
) -> LoadRun:
    plan.validate()
    require_sessions(engine)
    requests, input_note = plan.requests_and_note(prompt_tokenizer(engine) if plan.input_lens else None)
    cold_result = (cold_request(engine, plan, stop, requests[0]) if (plan.cold_request if cold is None else cold)
                   else None)
    arrivals = arrival_offsets(len(requests), plan.request_rate, plan.burstiness, plan.seed)
    recorder = RunRecorder(requests, plan.sampling)
    cap = plan.cap
    index_of = {r.request_id: i for i, r in enumerate(requests)}
    sent_at: list[float | None] = [None] * len(requests)
    batches = EventBatches(sink, flush_interval)
    in_flight: set[str] = set()
    max_in_flight = 0
    finished = 0
    next_arrival = 0
    waiting: list[int] = []
    session = engine.open_session(plan.sampling)  # type: ignore[attr-defined]
    started = clock()
    last_event = started

    def take(events: list[StreamEvent]) -> None:
        nonlocal finished, last_event
        for event in events:
            recorder.add(event)
            if isinstance(event, RequestSubmitted):
                sent_at[index_of[event.request_id]] = event.t
            elif isinstance(event, RequestFinished):
                if event.request_id in in_flight:
                    in_flight.discard(event.request_id)
                    finished += 1
            last_event = max(last_event, getattr(event, "t", last_event))
        batches.add(events)

    try:
        while finished < len(requests):
            if stop is not None and stop.is_set():
                recorder.result.partial = True
                break
            now = clock() - started
            while next_arrival < len(requests) and arrivals[next_arrival] <= now:
                waiting.append(next_arrival)
                next_arrival += 1
            while waiting and (cap is None or len(in_flight) < cap):
                i = waiting.pop(0)
                in_flight.add(requests[i].request_id)
                session.submit(requests[i])
            max_in_flight = max(max_in_flight, len(in_flight))
            wait = _POLL_S
            if next_arrival < len(requests):
                wait = min(wait, max(0.0, arrivals[next_arrival] - (clock() - started)))
            take(session.events(wait))
    except KeyboardInterrupt:
        recorder.result.error = "interrupted"
        recorder.result.partial = True
    except LabError as exc:
        if not any(s is not None for s in sent_at) and finished == 0:
            session.close()
            raise
        recorder.result.error = str(exc)
        recorder.result.exception = exc
        recorder.result.partial = True
    finally:
        take(session.close())
        batches.flush()
    run = recorder.finish(clock() - started)
    run.cut_apart = True
    if run.requests and all(r.finish_reason == "error" and not r.trace.output_tokens for r in run.requests):
        # Nothing came back from any request (server down, bad model): one clear error, not N rows of it.
        raise EngineFailure(run.requests[0].error or "every request failed")
    errors = [r.error for r in run.requests if r.finish_reason == "error" and r.error]
    if errors and run.error is None:
        run.error = f"{len(errors)} of {len(requests)} requests failed: {errors[0]}"
    queue = [None if s is None else max(0.0, s - (started + a)) for s, a in zip(sent_at, arrivals, strict=True)]
    return LoadRun(plan, run, arrivals, queue, max_in_flight, last_event - started, cold_result, input_note)


# ---------------------------------------------------------------------------------------------- load sweeps


@dataclass(frozen=True)
class LoadSweepPlan:
    """A load measured at several concurrencies (closed loop) or request rates (open loop).

    ``base`` gives everything else (requests per point, output lengths, sampling, burstiness, cap);
    its own concurrency / rate is replaced by each value. ``runs`` measured loads per point.
    """

    axis: LoadMode = "concurrency"
    values: tuple[float, ...] = (1, 2, 4)
    base: LoadPlan = field(default_factory=LoadPlan)
    runs: int = 1
    latency_budget: dict[str, float] | str | None = "chat"
    knee_threshold_pct: float = KNEE_GAIN_PCT

    def planned_work(self) -> list[PlannedRun]:
        """The sweep's cold request, then each point's loads (``LoadPlan.planned_work``)."""
        cold = _replace(self.base, cold_request=True).planned_work()[:1]
        return [*cold, *(run for plan in self.plans() for run in plan.planned_work() * self.runs)]

    def plans(self) -> list[LoadPlan]:
        """One ``LoadPlan`` per value (no cold request: the sweep sends one for all)."""
        out = []
        for v in self.values:
            if self.axis == "concurrency":
                out.append(_replace(self.base, concurrency=int(v), request_rate=None, max_concurrency=None,
                                    burstiness=1.0, cold_request=False))
            else:
                out.append(_replace(self.base, concurrency=None, request_rate=float(v), cold_request=False))
        return out

    def validate(self) -> LoadSweepPlan:
        """Raise ``InvalidInput`` (one line) for anything the sweep cannot run."""
        if self.axis not in LOAD_AXES:
            raise InvalidInput(f"unknown load axis {self.axis!r}; choose concurrency or rate")
        if not self.values:
            raise InvalidInput("a load sweep needs at least one value")
        if self.axis == "concurrency" and any(float(v) != int(v) for v in self.values):
            raise InvalidInput("concurrencies are whole numbers, e.g. 1,2,4,8")
        RUNS.check(self.runs)
        KNEE_THRESHOLD.check(self.knee_threshold_pct)
        for plan in self.plans():
            plan.validate()
        self.limits()
        return self

    def limits(self) -> dict[str, float] | None:
        """The budget as limits on latency keys (a preset name resolved), or None."""
        from tui_lab.lab.sweep import SweepPlan

        return SweepPlan(latency_budget=self.latency_budget).limits()

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {"axis": self.axis, "values": list(self.values), "base": self.base.to_dict(), "runs": self.runs,
                "latency_budget": self.latency_budget, "knee_threshold_pct": self.knee_threshold_pct}


def _replace(plan: LoadPlan, **changes: Any) -> LoadPlan:
    from dataclasses import replace

    return replace(plan, **changes)


@dataclass
class LoadPoint:
    """One concurrency or rate: the batch sweep's point figures, plus queue time and both throughputs.

    ``point.output_tokens_per_s`` is the mean of per-run rates; ``window_output_tokens_per_s``
    (Σ tokens / (last token − first send) pooled over the point's measured loads) is the one the
    knee and the budget pick use, and the one to set beside ``vllm bench serve``'s output throughput.
    """

    value: float
    point: SweepPoint
    client_queue_s: Percentiles
    window_output_tokens_per_s: float | None
    request_throughput: float | None
    max_in_flight: int
    loads: list[LoadRun] = field(default_factory=list, repr=False)

    @property
    def label(self) -> str:
        """The point's label ("concurrency 4", "rate 2 req/s")."""
        return self.point.label

    @property
    def complete(self) -> bool:
        """True when every planned load finished without error."""
        return self.point.complete

    @property
    def mean_run_output_tokens_per_s(self) -> float | None:
        """The mean of each measured load's own output throughput."""
        return self.point.output_tokens_per_s

    def to_dict(self) -> dict:
        """Plain-JSON form: the sweep point's fields and the load's own."""
        d = self.point.to_dict()
        d.update({
            "value": self.value,
            "client_queue_s": self.client_queue_s.to_dict(),
            "window_output_tokens_per_s": self.window_output_tokens_per_s,
            "mean_run_output_tokens_per_s": self.mean_run_output_tokens_per_s,
            "request_throughput": self.request_throughput,
            "max_in_flight": self.max_in_flight,
        })
        return d

    def to_row(self) -> dict:
        """One flat CSV row."""
        row = self.point.to_row()
        row.update({
            "value": self.value,
            "client_queue_p50_s": self.client_queue_s.p50, "client_queue_p90_s": self.client_queue_s.p90,
            "window_output_tokens_per_s": self.window_output_tokens_per_s,
            "mean_run_output_tokens_per_s": self.mean_run_output_tokens_per_s,
            "request_throughput": self.request_throughput, "max_in_flight": self.max_in_flight,
        })
        return row


@dataclass
class LoadSweepResult:
    """Every point of a load sweep, the knee, the budget pick, the cold request, whether it finished."""

    plan: LoadSweepPlan
    points: list[LoadPoint] = field(default_factory=list)
    knee: Knee | None = None
    budget_pick: LoadPoint | None = None
    budget_limits: dict[str, float] | None = None
    cold: ColdRequest | None = None
    partial: bool = False
    interrupted: bool = False
    messages: list[str] = field(default_factory=list)
    engine: dict | None = None

    def labelled_loads(self) -> list[tuple[str, LoadRun]]:
        """Every load of every point, labelled by point and run (what a trace of the sweep records)."""
        return [(f"{point.label} · run {k + 1}/{len(point.loads)}", load)
                for point in self.points for k, load in enumerate(point.loads)]

    def _axis_label(self, x: float) -> str:
        return f"concurrency {x:g}" if self.plan.axis == "concurrency" else f"rate {x:g} req/s"

    def knee_note(self) -> str:
        """One line naming the knee (window throughput gain per doubling of the axis, threshold stated)."""
        return knee_note(self.knee, self._axis_label, "window throughput")

    def budget_note(self) -> str:
        """One line on the budget and its pick (highest window throughput within it)."""
        preset = self.plan.latency_budget if isinstance(self.plan.latency_budget, str) else None
        pick = self.budget_pick
        return budget_note(self.budget_limits, preset, None if pick is None else
                           f"{pick.label} ({rate(pick.window_output_tokens_per_s, 'window tokens/s')})")

    def cold_note(self) -> str:
        """One line on the cold first request (sent alone, kept out of every point)."""
        if self.cold is None:
            return "cold request: not sent"
        if self.cold.error:
            return f"cold request (sent alone first, not in any point): failed: {self.cold.error}"
        ttft_s = "-" if self.cold.ttft_s is None else f"{self.cold.ttft_s * 1000:.0f} ms"
        e2e_s = "-" if self.cold.e2e_s is None else f"{self.cold.e2e_s * 1000:.0f} ms"
        return f"cold request (sent alone first, not in any point): TTFT {ttft_s}, E2E {e2e_s}"

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        knee = None if self.knee is None else {"x": self.knee.x, "gain_pct": self.knee.gain_pct,
                                               "threshold_pct": self.knee.threshold_pct, "method": self.knee.method}
        pick = None if self.budget_pick is None else {
            "label": self.budget_pick.label, "value": self.budget_pick.value,
            "window_output_tokens_per_s": self.budget_pick.window_output_tokens_per_s}
        return {
            "kind": f"load-{self.plan.axis}", "plan": self.plan.to_dict(), "engine": self.engine,
            "partial": self.partial, "interrupted": self.interrupted, "messages": list(self.messages),
            "cold_request": self.cold.to_dict() if self.cold else None, "cold_note": self.cold_note(),
            "points": [p.to_dict() for p in self.points],
            "knee": knee, "knee_note": self.knee_note(), "knee_throughput": "window_output_tokens_per_s",
            "budget": self.budget_limits, "budget_pick": pick, "budget_note": self.budget_note(),
            "throughput_note": THROUGHPUT_NOTE,
        }

    def rows(self) -> list[dict]:
        """CSV rows, one per point."""
        return [p.to_row() for p in self.points]


def _tradeoff(p: LoadPoint, x: float) -> TradeoffPoint:
    return TradeoffPoint(x=x, throughput=p.window_output_tokens_per_s or 0.0, latency=p.point.latency())


def finalize_load(result: LoadSweepResult) -> LoadSweepResult:
    """(Re)compute the knee and budget pick over complete points, on window throughput."""
    complete = [p for p in result.points if p.complete and p.window_output_tokens_per_s]
    result.knee = knee_by_gain([_tradeoff(p, p.value) for p in complete], result.plan.knee_threshold_pct)
    result.budget_limits = result.plan.limits()
    result.budget_pick = None
    if result.budget_limits is not None:
        chosen = budget_pick([_tradeoff(p, float(i)) for i, p in enumerate(complete)], result.budget_limits)
        if chosen is not None:
            result.budget_pick = complete[int(chosen.x)]
    return result


def _load_point(value: float, plan: LoadPlan, loads: list[LoadRun], status: str, error: str | None) -> LoadPoint:
    config = Configuration(plan.label, value, plan.cap or plan.num_requests, plan.sampling)
    point = _point_from_runs(config, [(i, load.run) for i, load in enumerate(loads)], status, error)
    traces = [t for load in loads for t in load.traces]
    queue = [q for load in loads for q in load.client_queue]
    rates = [r for r in (load.request_throughput for load in loads) if r is not None]
    return LoadPoint(
        value=value, point=point, client_queue_s=summarize(queue),
        window_output_tokens_per_s=output_throughput(traces),
        request_throughput=(sum(rates) / len(rates)) if rates else None,
        max_in_flight=max((load.max_in_flight for load in loads), default=0), loads=loads,
    )


def run_load_sweep(
    engine: Engine,
    plan: LoadSweepPlan,
    stop: threading.Event | None = None,
    on_point: Callable[[LoadPoint], None] | None = None,
    sink: EventSink | None = None,
    on_run: Callable[[str, int], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> LoadSweepResult:
    """Run the load at every value of ``plan`` on one loaded engine (one HTTP pool for all of it).

    One cold request first, reported apart; then each point's loads. ``on_run(label, run_index)``
    before each load, ``on_point`` as each point ends. A stop keeps what was measured (partial).
    ``clock`` as in ``execute_load``.
    """
    plan.validate()
    require_sessions(engine)
    result = LoadSweepResult(plan=plan)
    try:
        result.engine = engine.info.to_dict()
    except LabError:
        result.engine = None
    try:
        result.cold = cold_request(engine, plan.base, stop)
        for value, load_plan in zip(plan.values, plan.plans(), strict=True):
            if stop is not None and stop.is_set():
                result.partial = True
                break
            loads: list[LoadRun] = []
            status, error = "ok", None
            for index in range(plan.runs):
                if on_run:
                    on_run(load_plan.label, index)
                try:
                    load = execute_load(engine, load_plan, stop=stop, sink=sink, cold=False, clock=clock)
                except LabError as exc:
                    status, error = "error", error_text(exc)
                    break
                if load.run.error == "interrupted":
                    result.interrupted = True
                if load.run.partial:
                    status = "partial" if (stop is not None and stop.is_set()) or result.interrupted else "error"
                    error = None if status == "partial" else load.run.error
                    if load.run.traces:
                        loads.append(load)
                    break
                loads.append(load)
            if loads:
                point = _load_point(float(value), load_plan, loads, status, error)
            else:
                point = LoadPoint(float(value), SweepPoint(load_plan.label, float(value), load_plan.cap or 0,
                                                           status=status, error=error),
                                  summarize([]), None, None, 0)
            result.points.append(point)
            if error:
                result.messages.append(f"{load_plan.label}: {error}")
            if on_point:
                on_point(point)
            if status == "partial" or result.interrupted:
                result.partial = True
                break
    except KeyboardInterrupt:
        result.partial = True
        result.interrupted = True
    if result.partial:
        result.messages.append("stopped early: the figures cover only what was measured before the stop")
    return finalize_load(result)


# ------------------------------------------------------------------------------------------ the experiments

MODE = Param("mode", "choice", "concurrency", "closed loop (concurrency) or arrivals at a rate", choices=LOAD_AXES)
CONCURRENCY = Param("concurrency", "int", 4, "requests in flight (concurrency mode)", 1, MAX_REQUESTS)
REQUEST_RATE = Param("request_rate", "number", 1.0, "arrivals per second (rate mode)", 0, above_min=True)
BURSTINESS = Param("burstiness", "number", 1.0, "1 gives Poisson arrivals; lower is burstier", 0, above_min=True)
MAX_CONCURRENCY = Param("max_concurrency", "int", None, "cap on requests in flight (rate mode; none: no cap)", 1,
                        MAX_REQUESTS, optional=True)
NUM_REQUESTS = Param("num_requests", "int", 8, "requests in the whole load", 1, MAX_LOAD_REQUESTS)
def _lengths_spec(name: str, value: object) -> str:
    """A lengths spec (``512``, ``16,64,128`` or ``uniform:LO:HI``) that ``parse_lens`` reads."""
    text = str(value)
    parse_lens(text, name.replace("_lens", " lengths").replace("_", " "))
    return text


OUTPUT_LENS = Param("output_lens", "text", None, "output lengths: 16,64,128 (cycled) or uniform:LO:HI (seeded); "
                    "none: max_new_tokens each", optional=True, extra=_lengths_spec)
INPUT_LENS = Param("input_lens", "text", None, "input lengths in tokens: 512, 16,64,128 (cycled) or uniform:LO:HI "
                   "(seeded); none: the lab's short prompts", optional=True, extra=_lengths_spec)
LOAD_PARAMS: tuple[Param, ...] = (
    MODE, CONCURRENCY, REQUEST_RATE, BURSTINESS, MAX_CONCURRENCY, NUM_REQUESTS, INPUT_LENS, OUTPUT_LENS,
    MAX_NEW_TOKENS_PARAM, TEMPERATURE, TOP_P, SEED, IGNORE_EOS.but(default=True),
)
AXIS = Param("axis", "choice", "concurrency", "what the sweep varies", choices=LOAD_AXES)
CONCURRENCIES = Param("concurrencies", "int list", [1, 2, 4], "concurrencies (axis concurrency)", 1, MAX_REQUESTS)
REQUEST_RATES = Param("request_rates", "number list", [0.5, 1.0, 2.0], "requests per second (axis rate)", 0,
                      above_min=True)


def load_plan_from(params: Params) -> LoadPlan:
    """A ``LoadPlan`` from checked experiment parameters (``mode`` picks the closed or the open loop)."""
    from tui_lab.lab.run import sampling_from

    closed = params["mode"] == "concurrency"
    return LoadPlan(
        num_requests=params["num_requests"],
        concurrency=params["concurrency"] if closed else None,
        request_rate=None if closed else params["request_rate"],
        burstiness=1.0 if closed else params["burstiness"],
        max_concurrency=None if closed else params["max_concurrency"],
        output_lens=params["output_lens"], input_lens=params["input_lens"], sampling=sampling_from(params),
        seed=params["seed"],
    ).validate()


def load_sweep_plan_from(params: Params) -> LoadSweepPlan:
    """A ``LoadSweepPlan`` from checked experiment parameters (``axis`` picks concurrencies or request rates)."""
    axis = params["axis"]
    base = load_plan_from({**params, "mode": axis})
    values = tuple(params["concurrencies"] if axis == "concurrency" else params["request_rates"])
    return LoadSweepPlan(axis=axis, values=values, base=base, runs=params["runs"],
                         latency_budget=params["latency_budget"],
                         knee_threshold_pct=params["knee_threshold_pct"]).validate()


class LoadRunExperiment(Experiment):
    """One load (closed loop at a concurrency, or arrivals at a request rate) on a serving engine."""

    name = "load_run"
    title = "Load: concurrency or request rate"
    description = ("C requests in flight (closed loop) or arrivals at R requests/s (open loop); TTFT from "
                   "the send, client queue time apart, window output throughput.")
    kind = "run"
    result_type = LoadRun
    params = LOAD_PARAMS

    def check_together(self, values: Params) -> None:
        """The values must make a runnable load."""
        load_plan_from(values)

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """The load's cold request and waves (``LoadPlan.planned_work``)."""
        return load_plan_from(params).planned_work()

    def run(self, params: Params, ctx: RunContext) -> LoadRun:
        """Run the load; the ``LoadRun`` (partial if stopped)."""
        plan = load_plan_from(params)
        require_sessions(ctx.loaded)
        ctx.report(f"{plan.label} · {plan.num_requests} requests", 0.0, new_run=True)
        load = execute_load(ctx.loaded, plan, stop=ctx.stop, sink=ctx.sink)
        from tui_lab.lab.trace import run_from_load, ttft_split

        load.ttft_split = ttft_split(run_from_load(load, plan.label, ctx.engine_name))
        return load


class LoadSweepExperiment(Experiment):
    """The load at several concurrencies or request rates, with the knee and the budget pick."""

    name = "load_sweep"
    title = "Load sweep: concurrencies or request rates"
    description = ("The same load at each concurrency (or request rate): latency percentiles, client queue "
                   "time, window throughput, the knee and the budget pick.")
    kind = "sweep"
    result_type = LoadSweepResult
    params = (*(p for p in LOAD_PARAMS if p.name not in ("mode", "concurrency", "request_rate")), AXIS,
              CONCURRENCIES, REQUEST_RATES, RUNS.but(default=1), LATENCY_BUDGET, KNEE_THRESHOLD)

    def check_together(self, values: Params) -> None:
        """The values must make a runnable load sweep."""
        load_sweep_plan_from({**values, "concurrency": 1, "request_rate": 1.0})

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """The cold request, then every point's loads (``LoadSweepPlan.planned_work``)."""
        return load_sweep_plan_from({**params, "concurrency": 1, "request_rate": 1.0}).planned_work()

    def chart_axis(self, params: Params) -> ChartAxis:
        """Points are charted against the concurrency or the request rate."""
        return "concurrency" if params["axis"] == "concurrency" else "rate"

    def run(self, params: Params, ctx: RunContext) -> LoadSweepResult:
        """Run the sweep, emitting each point as it ends; the ``LoadSweepResult``."""
        plan = load_sweep_plan_from({**params, "concurrency": 1, "request_rate": 1.0})
        total = len(plan.values) * plan.runs
        done = [0]

        def on_run(label: str, index: int) -> None:
            ctx.report(f"{label} · run {index + 1}/{plan.runs}", done[0] / total, new_run=True)
            done[0] += 1

        return run_load_sweep(ctx.loaded, plan, stop=ctx.stop, on_point=ctx.emit, sink=ctx.sink, on_run=on_run)
