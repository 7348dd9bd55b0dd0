"""Running one batch: drive an engine, keep every event, and hand batches of them on.

``execute_run`` is what the CLI, the TUI's worker and every sweep call. It keeps
the full record in a ``RunResult`` (the results store) and, if given a sink,
passes events on in time-batched lists (every ``flush_interval`` seconds), so a
UI never receives one message per token.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from tui_lab.engines.base import Engine, Request, SamplingParams
from tui_lab.engines.events import RequestFinished, RequestSubmitted, StreamEvent, TokenEvent, TokenStep
from tui_lab.errors import InvalidInput, LabError
from tui_lab.gpu_share import turn
from tui_lab.lab.experiment import EventSink, Experiment, Params, RunContext
from tui_lab.lab.planned import PlannedRun, prompt_tokens
from tui_lab.lab.prompts import batch_prompts
from tui_lab.metrics import RequestTrace, RunSummary, e2e, summarize_run, tpot, ttft
from tui_lab.params import BATCH_SIZE, IGNORE_EOS, MAX_NEW_TOKENS_PARAM, MAX_REQUESTS, PROMPT, SAMPLING

DEFAULT_FLUSH_INTERVAL_S = 0.04
SETUP_SHOWN_S = 0.01
"""Setup before a run shorter than this is not worth a line (the shape was ready)."""


class EventBatches:
    """Events on their way to a sink, handed over in batches: at most one batch per ``interval`` seconds
    while they come, the rest at ``flush``. With no sink it keeps nothing."""

    def __init__(self, sink: EventSink | None, interval: float) -> None:
        self.sink = sink
        self.interval = interval
        self.pending: list[StreamEvent] = []
        self.last = time.monotonic()

    def add(self, events: Iterable[StreamEvent]) -> None:
        """Queue ``events``; hand over what is queued when ``interval`` has passed since the last batch."""
        if self.sink is None:
            return
        self.pending.extend(events)
        now = time.monotonic()
        if self.pending and now - self.last >= self.interval:
            self.last = now
            self.flush()

    def flush(self) -> None:
        """Hand over whatever is queued."""
        if self.sink is not None and self.pending:
            batch, self.pending = self.pending, []
            self.sink(batch)


@dataclass(frozen=True)
class TokenRecord:
    """One output event of a request: ids, text and time since the request was sent."""

    token_id: int
    text: str
    t: float
    n_tokens: int = 1


@dataclass
class RequestResult:
    """Everything one request produced.

    Kept as columns of plain values (``token_ids``, ``texts``, and the trace's times and counts)
    rather than an object per token: a big sweep keeps millions of tokens, and objects would make
    every full garbage collection walk them all (tens of milliseconds each, in the middle of runs).
    The garbage collector does not track lists' plain values.
    """

    request_id: str
    prompt: str
    trace: RequestTrace
    token_ids: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    engine_times: dict[str, float] | None = None
    error: str | None = None
    t_finish: float | None = None
    """When the engine said the request ended (its ``RequestFinished.t``); None while it runs."""

    @property
    def tokens(self) -> list[TokenRecord]:
        """Each output event as a record (built on demand from the columns)."""
        t0 = self.trace.t_send
        return [TokenRecord(i, s, t - t0, n) for i, s, t, n in
                zip(self.token_ids, self.texts, self.trace.event_times, self.trace.event_tokens, strict=True)]

    @property
    def text(self) -> str:
        """The generated text so far."""
        return "".join(self.texts)

    def to_dict(self) -> dict:
        """JSON form, per the ``run --json`` document."""
        return {
            "request_id": self.request_id,
            "prompt": self.prompt,
            "text": self.text,
            "output_tokens": self.trace.output_tokens,
            "prompt_tokens": self.trace.prompt_tokens,
            "finish_reason": self.finish_reason,
            "tokens": [
                {"id": tok.token_id, "text": tok.text, "t": tok.t}
                | ({"n_tokens": tok.n_tokens} if tok.n_tokens != 1 else {})
                for tok in self.tokens
            ],
            "ttft_s": ttft(self.trace),
            "e2e_s": e2e(self.trace),
            "tpot_s": tpot(self.trace),
            "engine_times": self.engine_times,
            "error": self.error,
        }


@dataclass
class RunResult:
    """One batch's requests, in submission order, and whether it finished."""

    requests: list[RequestResult]
    sampling: SamplingParams
    partial: bool = False
    """True when the run was stopped or failed before every request finished."""
    error: str | None = None
    wall_s: float = 0.0
    exception: LabError | None = field(default=None, repr=False)
    """The engine's error when it failed mid-run (kept so callers can tell e.g. ``OutOfMemory`` apart)."""
    cut_apart: bool = False
    """Load runs: requests that did not end by themselves (cut by a stop or Ctrl-C, or failed mid-stream)
    are left out of the latency figures and counted apart (``RunSummary.cut``). A static batch stopped
    mid-run cuts every request at once, so batch runs keep them."""
    setup_s: float = 0.0
    """Seconds the engine spent building what this batch's shape needs before the run started (the CUDA
    graphs of a new batch size): not part of the run's figures, said beside them."""
    engine_steps: bool = False
    """True when the engine handed tokens over as ``TokenStep``s (a batch decoded step by step): each distinct
    token time is then one engine step (``tui_lab.lab.trace`` builds the step table from that)."""

    @property
    def traces(self) -> list[RequestTrace]:
        """The traces of the requests that were submitted."""
        return [r.trace for r in self.requests]

    def sent(self) -> list[RequestResult]:
        """The requests that were sent (a load stopped early never sends the rest: their send time is NaN)."""
        return [r for r in self.requests if not math.isnan(r.trace.t_send)]

    def latency_traces(self) -> list[RequestTrace]:
        """The traces whose latency counts: every sent request, or with ``cut_apart`` those that ended by
        themselves (eos or length)."""
        return [r.trace for r in self.sent() if not self.cut_apart or r.finish_reason in ("eos", "length")]

    def summary(self) -> RunSummary:
        """Aggregate metrics from the same timestamps, over the requests that were sent."""
        return summarize_run([r.trace for r in self.sent()], self.latency_traces() if self.cut_apart else None)

    def setup_note(self) -> str | None:
        """What the engine built before this run and how long it took, when it built anything."""
        if self.setup_s < SETUP_SHOWN_S:
            return None
        batch = len(self.requests)
        return (f"batch {batch}'s CUDA graphs were captured first ({self.setup_s:.2f} s, before the run started): "
                "the figures are the warm ones; the next run of this shape starts at once")

    def to_dict(self) -> dict:
        """JSON form (requests and summary)."""
        return {
            "sampling": self.sampling.to_dict(),
            "partial": self.partial,
            "error": self.error,
            "setup_s": self.setup_s,
            "requests": [r.to_dict() for r in self.requests],
            "summary": self.summary().to_dict(),
        }


class RunRecorder:
    """Folds a stream of events into a ``RunResult`` (one owner of run state).

    ``TokenStep``s (a batch decoded in lock step) are kept as they come and spread into the
    requests' columns at ``finish``, or before any other token event: during the run the
    recorder then does nothing per token on the thread that feeds the GPU.
    """

    def __init__(self, requests: Sequence[Request], sampling: SamplingParams) -> None:
        self._by_id: dict[str, RequestResult] = {}
        self._steps: list[TokenStep] = []
        self.result = RunResult(requests=[], sampling=sampling)
        for r in requests:
            rr = RequestResult(r.request_id, r.prompt, RequestTrace(r.request_id, t_send=float("nan")))
            self._by_id[r.request_id] = rr
            self.result.requests.append(rr)

    def add(self, event: StreamEvent) -> None:
        """Apply one event."""
        if isinstance(event, TokenStep):
            self._steps.append(event)
            return
        rr = self._by_id.get(event.request_id)
        if rr is None:
            return
        if type(event) is TokenEvent or isinstance(event, TokenEvent):
            if self._steps:
                self._spread_steps()
            rr.trace.add(event.t, event.n_tokens)
            rr.token_ids.append(event.token_id)
            rr.texts.append(event.text)
        elif isinstance(event, RequestSubmitted):
            rr.trace.t_send = event.t
            rr.trace.prompt_tokens = event.prompt_tokens
        elif isinstance(event, RequestFinished):
            rr.finish_reason = event.reason
            rr.engine_times = event.engine_times
            rr.error = event.error
            rr.t_finish = event.t
            if event.reason in ("cancelled", "error"):
                self.result.partial = True

    def _spread_steps(self) -> None:
        """Move the kept steps' tokens into their requests' columns, in order."""
        if self._steps:
            self.result.engine_steps = True
        by_id = self._by_id
        for step in self._steps:
            t = step.t
            rows = [by_id.get(rid) for rid in step.request_ids]
            for rr, token_id, text in zip(rows, step.token_ids, step.texts, strict=True):
                if rr is not None:
                    rr.trace.event_times.append(t)
                    rr.trace.event_tokens.append(1)
                    rr.token_ids.append(token_id)
                    rr.texts.append(text)
        self._steps.clear()

    def finish(self, wall_s: float) -> RunResult:
        """Close the run: drop never-submitted requests' NaN send times, mark unfinished ones."""
        self._spread_steps()
        res = self.result
        res.wall_s = wall_s
        for rr in res.requests:
            if rr.finish_reason is None:
                res.partial = True
        return res


def execute_run(
    engine: Engine,
    requests: Sequence[Request],
    sampling: SamplingParams,
    stop: threading.Event | None = None,
    sink: EventSink | None = None,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL_S,
) -> RunResult:
    """Run one batch to completion (or until ``stop``), batching events to ``sink``.

    Errors from the engine end the run with ``partial=True`` and ``error`` set;
    a ``LabError`` raised before anything was generated (bad input) propagates.
    """
    recorder = RunRecorder(requests, sampling)
    batches = EventBatches(sink, flush_interval)
    got_any = False
    with turn("run"):  # one timed run at a time when processes share the GPU
        prepare = getattr(engine, "prepare", None)
        setup_s = prepare(requests, sampling) if prepare is not None else 0.0
        started = time.perf_counter()
        try:
            for event in engine.stream(requests, sampling, stop):
                got_any = True
                recorder.add(event)
                batches.add((event,))
        except LabError as exc:
            if not got_any:
                raise
            recorder.result.error = str(exc)
            recorder.result.exception = exc
            recorder.result.partial = True
        except KeyboardInterrupt:
            engine.cancel()
            recorder.result.error = "interrupted"
            recorder.result.partial = True
        finally:
            batches.flush()
    result = recorder.finish(time.perf_counter() - started)
    result.setup_s = setup_s
    for observer in tuple(_OBSERVERS):
        observer(engine, requests, result)
    return result


RunObserver = Callable[[Engine, Sequence[Request], RunResult], None]
"""Called with every finished run of ``execute_run`` (the engine, its requests, the result); must not raise."""

_OBSERVERS: list[RunObserver] = []
_ROLE = threading.local()


@contextmanager
def run_role(warmup: bool) -> Iterator[None]:
    """Say, to run observers, whether the runs this thread makes inside the block are warm-up runs."""
    before = getattr(_ROLE, "warmup", False)
    _ROLE.warmup = warmup
    try:
        yield
    finally:
        _ROLE.warmup = before


def is_warmup_run() -> bool:
    """Whether the run this thread is making was marked a warm-up run (``run_role``)."""
    return bool(getattr(_ROLE, "warmup", False))


@contextmanager
def observing_runs(observer: RunObserver) -> Iterator[None]:
    """Hand every run ``execute_run`` finishes, in any thread, to ``observer`` while the block runs
    (how ``tui_lab.lab.trace`` records every run of an experiment without each experiment keeping them)."""
    _OBSERVERS.append(observer)
    try:
        yield
    finally:
        _OBSERVERS.remove(observer)


def make_requests(prompts: Sequence[str], batch_size: int, max_new_tokens: int | None = None) -> list[Request]:
    """``batch_size`` requests cycling through ``prompts`` (ids r0, r1, ...)."""
    BATCH_SIZE.check(batch_size)
    if not prompts:
        raise InvalidInput("at least one prompt is needed")
    return [Request(f"r{i}", prompts[i % len(prompts)], max_new_tokens) for i in range(batch_size)]


def sampling_from(params: Params) -> SamplingParams:
    """``SamplingParams`` from checked experiment parameters (missing keys take the defaults)."""
    base = SamplingParams()
    return SamplingParams(
        max_new_tokens=int(params.get("max_new_tokens", base.max_new_tokens)),
        temperature=float(params.get("temperature", base.temperature)),
        top_p=float(params.get("top_p", base.top_p)),
        top_k=int(params.get("top_k", base.top_k)),
        repetition_penalty=float(params.get("repetition_penalty", base.repetition_penalty)),
        seed=params.get("seed", base.seed),
        ignore_eos=bool(params.get("ignore_eos", base.ignore_eos)),
    ).validate()


PROMPTS = PROMPT.but(type="text list", max_items=MAX_REQUESTS,
                     help="the prompts (repeat --prompt for several); the batch takes them first, then the lab's "
                          "seeded schedule")


class Generate(Experiment):
    """One batch streamed token by token."""

    name = "generate"
    title = "Generate"
    description = "One batch streamed token by token, with TTFT, TPOT and throughput."
    kind = "run"
    result_type = RunResult
    params = (PROMPTS, BATCH_SIZE, MAX_NEW_TOKENS_PARAM, *SAMPLING, IGNORE_EOS)

    def requests(self, params: Params) -> list[Request]:
        """The batch ``params`` describe: the given prompts first, then the seeded schedule."""
        prompts = batch_prompts(list(params["prompt"]), int(params["batch_size"]), int(params["seed"]))
        return [Request(f"r{i}", p) for i, p in enumerate(prompts)]

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """One generation of the batch."""
        prompts = [r.prompt for r in self.requests(params)]
        return [PlannedRun(len(prompts), int(params["max_new_tokens"]), prompt_tokens(prompts))]

    def run(self, params: Params, ctx: RunContext) -> RunResult:
        """Generate one batch; the ``RunResult`` (partial if stopped)."""
        sampling = sampling_from(params)
        requests = self.requests(params)
        ctx.report(f"batch {len(requests)} · {sampling.max_new_tokens} tokens", 0.0, new_run=True)
        return execute_run(ctx.loaded, requests, sampling, ctx.stop, ctx.sink)
