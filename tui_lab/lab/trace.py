"""Traces: where each request's time went, for every run of an experiment, on the host's monotonic clock.

A ``Trace`` holds one or more labelled runs (a sweep's points, a comparison's variants, a load's requests) and
what they ran on (card, driver, versions, model, settings). Each run (``TraceRun``) is columns, built after the
run from what the run already keeps (``RunResult``: token times, counts, ids and texts per request; finish
times; the engine's own per-request times), so recording costs nothing while tokens flow:

* per request: client arrival (the scheduled send of a load; the send itself for a batch), send (``t_send``),
  engine arrival, queued, scheduled, first and last token as the engine saw them, every token event (time,
  tokens, id, text, the step it came in) and the finish with its reason;
* per engine step (engines that decode a batch step by step: ``TokenStep``s, or vLLM's one wake-up per engine
  step): start, end, requests and tokens in it, whether it carried a prefill (some request got its first token),
  and the KV tokens its requests held; the engine's own per-step samples (vLLM: running, waiting, KV-cache use)
  beside them.

Every time is seconds on CLOCK_MONOTONIC (``time.monotonic()``, ``time.perf_counter()`` on Linux): the UI,
the engine host and vLLM's engine core all read it. vLLM's request arrival is wall-clock (``time.time()``):
it is converted with ``time.time() - time.monotonic()`` sampled in the same process when the request ended,
and the engine core's stamps are checked against the host's own times (``engine_clock``), never assumed.

``phases`` splits a request's latency from its client arrival to its last token into client queue, to engine,
engine queue, prefill, decode and from engine; the six add up to the whole, and what a source cannot see is
merged and named (an OpenAI-compatible server's queue and prefill are one span seen from the client).

Files: gzip-compressed JSON, columnar (times as integer nanoseconds from the run's origin, step indices as
deltas, the step table rebuilt from the tokens), a few hundred KB for 1024 requests × 128 tokens
(``write_trace`` / ``read_trace``). ``tui_lab.lab.trace_export`` writes Chrome trace-event JSON for Perfetto.
"""

from __future__ import annotations

import datetime
import functools
import gzip
import io
import json
import math
import os
import platform
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_lab.engines.base import Engine, Request
from tui_lab.lab.run import RunResult, is_warmup_run, observing_runs

FORMAT = "inference-lab-trace"
VERSION = 1
SUFFIX = ".trace.json.gz"
NAN = float("nan")
IN_PROCESS_ENGINES = ("transformers", "scripted")
"""Engines that run in the lab's own process: the token time is the engine's, nothing travels in between."""
TRACE_ENV = "INFERENCE_LAB_TRACE"
"""``0`` turns recording off (the experiments keep nothing for a trace); anything else leaves it on."""
RECORD_DIR_ENV = "INFERENCE_LAB_RECORD_DIR"
"""A folder: every experiment the runner runs writes its trace there (``<experiment>-<time>.trace.json.gz``)."""

LOCAL_OPTIONS = ("cache_dir",)
"""Engine options that name this machine's folders: never written into a trace."""
PHASES = ("client queue", "to engine", "engine queue", "prefill", "decode", "from engine")
"""A request's latency from its client arrival to its last token, in order (``phases``)."""
REMAINDER_PHASES = ("to engine", "from engine")
"""The phases outside the engine's own queue/prefill/decode split: hand-over, transport, detokenize."""
ARRIVAL_BEFORE_SEND_S = 60.0
"""How long before its send a vLLM arrival may lie (its prompt rendered first) and still be shown."""
NOT_SPLIT = "queue + prefill"
"""One span where the source cannot split the engine's queue from its prefill (a server seen from the client)."""

JsonDict = dict[str, Any]


def recording_enabled() -> bool:
    """Whether experiments record their runs (``INFERENCE_LAB_TRACE=0`` turns it off)."""
    return os.environ.get(TRACE_ENV, "1").strip() != "0"


def _nan(value: float | None) -> float:
    return NAN if value is None else float(value)


def known(value: float) -> bool:
    """Whether a time column holds a value (unknown times are NaN)."""
    return not math.isnan(value)


# ------------------------------------------------------------------------------------------------ the tables


@dataclass
class RequestTable:
    """Per-request columns of one run; request ``i`` is the ``i``-th of the batch (or of the load, in order).

    Token events are stored flat: request ``i``'s are ``tok_*[starts[i]:starts[i + 1]]``. ``tok_step`` is the
    index of the engine step an event came in (-1 for an event outside the step table). Unknown times are NaN.
    """

    ids: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    budgets: list[int] = field(default_factory=list)
    """The new tokens each request was allowed (its own ``max_new_tokens`` or the run's)."""
    arrival: list[float] = field(default_factory=list)
    """Client arrival: when a load's request was due (before any client queue); the send for a batch."""
    send: list[float] = field(default_factory=list)
    engine_arrival: list[float] = field(default_factory=list)
    """When the engine's front end took the request (vLLM's ``arrival_time``, converted from wall-clock)."""
    queued: list[float] = field(default_factory=list)
    scheduled: list[float] = field(default_factory=list)
    first_engine: list[float] = field(default_factory=list)
    """The first token as the engine stamped it; where no engine stamp is seen (an in-process engine, a server
    seen from its client) the host's own first token."""
    last_engine: list[float] = field(default_factory=list)
    finish: list[float] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    preemptions: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=lambda: [0])
    tok_t: list[float] = field(default_factory=list)
    tok_n: list[int] = field(default_factory=list)
    tok_id: list[int] = field(default_factory=list)
    tok_text: list[str] = field(default_factory=list)
    tok_step: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def token_slice(self, i: int) -> slice:
        """Where request ``i``'s token events are in the ``tok_*`` columns."""
        return slice(self.starts[i], self.starts[i + 1])

    def output_tokens(self, i: int) -> int:
        """Request ``i``'s output tokens."""
        return sum(self.tok_n[self.token_slice(i)])

    def first_token(self, i: int) -> float:
        """Request ``i``'s first token time on the host (NaN without output)."""
        a, b = self.starts[i], self.starts[i + 1]
        return self.tok_t[a] if b > a else NAN

    def last_token(self, i: int) -> float:
        """Request ``i``'s last token time on the host (NaN without output)."""
        a, b = self.starts[i], self.starts[i + 1]
        return self.tok_t[b - 1] if b > a else NAN


@dataclass
class StepTable:
    """One row per engine step, in order: when it started and ended, what it carried.

    ``start`` is the previous step's end unless a request that joins in it was ready later (its scheduled time,
    else its send): the engine idled until then. ``kv_tokens`` is what its requests held in the KV cache
    (prompt + tokens so far, summed), computed from the tokens; ``kv_usage`` the engine's own KV-cache use
    (0..1) from its last sample at or before the step's end, NaN where the engine does not report it.
    """

    start: list[float] = field(default_factory=list)
    end: list[float] = field(default_factory=list)
    n_requests: list[int] = field(default_factory=list)
    n_tokens: list[int] = field(default_factory=list)
    prefill: list[bool] = field(default_factory=list)
    kv_tokens: list[int] = field(default_factory=list)
    kv_usage: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.end)

    def members(self, requests: RequestTable) -> list[list[int]]:
        """For each step, the requests that got tokens in it (indices into ``requests``)."""
        out: list[list[int]] = [[] for _ in range(len(self))]
        for i in range(len(requests)):
            for k in requests.tok_step[requests.token_slice(i)]:
                if k >= 0 and (not out[k] or out[k][-1] != i):
                    out[k].append(i)
        return out


@dataclass
class SampleTable:
    """The engine's own per-step samples (vLLM's scheduler stats): time, running, waiting, KV-cache use 0..1."""

    t: list[float] = field(default_factory=list)
    running: list[float] = field(default_factory=list)
    waiting: list[float] = field(default_factory=list)
    kv_usage: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.t)


@dataclass
class TraceRun:
    """One run: its label, what ran it, and its request, step and sample tables.

    ``unseen`` says what this source cannot see (an OpenAI-compatible server's queue/prefill split, its steps,
    its KV cache); ``notes`` how its clocks were placed on the host's (an engine clock checked or offset).
    """

    label: str
    experiment: str = ""
    index: int = 0
    warmup: bool = False
    kind: str = "batch"
    """"batch" (every request sent at once) or "load" (requests sent over time by a load generator)."""
    source: str = ""
    """The engine that produced it (transformers, vllm, openai, scripted)."""
    engine: JsonDict = field(default_factory=dict)
    settings: JsonDict = field(default_factory=dict)
    """The engine's options as it ran (cuda_graphs, max_num_seqs, ...)."""
    sampling: JsonDict = field(default_factory=dict)
    load: JsonDict | None = None
    t0: float = 0.0
    """The run's origin: its first arrival (or send), seconds on the host's monotonic clock."""
    wall_s: float = 0.0
    partial: bool = False
    error: str | None = None
    unseen: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    requests: RequestTable = field(default_factory=RequestTable)
    steps: StepTable = field(default_factory=StepTable)
    samples: SampleTable = field(default_factory=SampleTable)

    @property
    def batch_size(self) -> int:
        """How many requests the run had."""
        return len(self.requests)

    @property
    def max_new_tokens(self) -> int:
        """The run's new-token budget (the sampling's)."""
        return int(self.sampling.get("max_new_tokens", max(self.requests.budgets, default=0)))

    @property
    def end(self) -> float:
        """The run's last time: its last token or finish."""
        times = [t for t in self.requests.finish if known(t)] + self.requests.tok_t
        return max(times, default=self.t0)

    def phases(self, i: int) -> Phases:
        """Request ``i``'s latency split into phases (see ``phases``)."""
        return phases(self, i)


@dataclass
class Trace:
    """Runs and the machine they ran on: ``meta`` has card, driver, versions, model, settings, date, command."""

    meta: JsonDict = field(default_factory=dict)
    runs: list[TraceRun] = field(default_factory=list)

    @property
    def replayed(self) -> bool:
        """Whether this trace was recorded from a replay (its times are another machine's)."""
        return bool(self.meta.get("replay_of"))


# ------------------------------------------------------------------------------------------------- phases


@dataclass(frozen=True)
class Phase:
    """One span of a request's latency."""

    name: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        """Its length (seconds)."""
        return self.end - self.start


@dataclass(frozen=True)
class Phases:
    """A request's latency, client arrival → last token, as consecutive spans that add up to the whole.

    With every mark known the spans are ``PHASES``: client queue (arrival → send), to engine (send → queued:
    tokenize, hand-over, transport to an engine core), engine queue (queued → scheduled), prefill (scheduled →
    first token, engine's stamp), decode (first → last token, engine's stamps), from engine (engine's last
    token → the host has it: transport, detokenize). A mark the source does not have merges its neighbours
    into one span named after both (``"queue + prefill"`` for a server seen from its client).
    """

    request_id: str
    arrival: float
    last_token: float
    spans: tuple[Phase, ...]

    @property
    def e2e_from_arrival(self) -> float:
        """Last token − client arrival (seconds)."""
        return self.last_token - self.arrival

    def seconds(self, name: str) -> float:
        """The length of the span called ``name`` (0 when there is none)."""
        return sum(p.seconds for p in self.spans if p.name == name)

    @property
    def remainder(self) -> float:
        """Time outside the client queue and the engine's queue/prefill/decode (named: to / from engine)."""
        return sum(p.seconds for p in self.spans if p.name in REMAINDER_PHASES)

    def as_dict(self) -> dict[str, float]:
        """Span name → seconds (the spans add up to ``e2e_from_arrival``)."""
        out: dict[str, float] = {}
        for p in self.spans:
            out[p.name] = out.get(p.name, 0.0) + p.seconds
        return out


def phases(run: TraceRun, i: int) -> Phases:
    """Request ``i`` of ``run`` split from its client arrival to its last token (see ``Phases``).

    A request without output ends at its finish (a refusal, a cancellation) and has only the spans up to it.
    """
    rq = run.requests
    last_host = rq.last_token(i)
    end = last_host if known(last_host) else rq.finish[i]
    arrival = rq.arrival[i] if known(rq.arrival[i]) else rq.send[i]
    return phases_of(rq.ids[i], arrival, rq.send[i], rq.queued[i], rq.scheduled[i], rq.first_engine[i],
                     rq.last_engine[i], end)


TTFT_PARTS = (("client queue", "client_queue_s"), ("to engine", "to_engine_s"), ("engine queue", "engine_queue_s"),
              ("to engine + engine queue", "to_engine_and_queue_s"), ("prefill", "prefill_s"),
              (NOT_SPLIT, "queue_and_prefill_s"))
"""The spans before a request's first token, and the key each has in ``ttft_split``."""


def ttft_split(run: TraceRun) -> dict[str, float]:
    """Where the time to a first token went, from each request's client arrival: the median seconds of each span
    before the first token (``TTFT_PARTS``, only those the source can see), the median whole
    (``arrival_to_first_s``), the share of all of it spent in the client queue (``client_queue_pct``: a tool
    that starts TTFT at the send leaves that out) and ``n``, the requests that got a first token."""
    parts: dict[str, list[float]] = {key: [] for _, key in TTFT_PARTS}
    whole: list[float] = []
    queued = 0.0
    for i in range(len(run.requests)):
        first = run.requests.first_engine[i] if known(run.requests.first_engine[i]) else run.requests.first_token(i)
        if not known(first):
            continue
        split = phases(run, i)
        before = [p for p in split.spans if p.end <= first + 1e-9]
        whole.append(first - split.arrival)
        for name, key in TTFT_PARTS:
            if any(p.name == name for p in split.spans):
                parts[key].append(sum(p.seconds for p in before if p.name == name))
        queued += sum(p.seconds for p in before if p.name == "client queue")
    out: dict[str, float] = {key: _median(values) for key, values in parts.items() if values}
    if whole:
        out["arrival_to_first_s"] = _median(whole)
        out["client_queue_pct"] = 100.0 * queued / sum(whole) if sum(whole) > 0 else 0.0
    out["n"] = float(len(whole))
    return out


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


_SPAN_NAMES = {("arrival", "send"): "client queue", ("send", "queued"): "to engine",
               ("queued", "scheduled"): "engine queue", ("scheduled", "first"): "prefill",
               ("first", "last"): "decode", ("last", "host"): "from engine",
               ("send", "first"): NOT_SPLIT, ("send", "scheduled"): "to engine + engine queue",
               ("queued", "first"): NOT_SPLIT, ("first", "host"): "decode", ("send", "host"): "in the engine"}


def phases_of(request_id: str, arrival: float, send: float, queued: float, scheduled: float, first_engine: float,
              last_engine: float, end: float) -> Phases:
    """A request's phases from its marks on the host's clock (NaN: not known; ``end`` is when the host had its
    last token, or its finish): one span between each two consecutive known marks, named by ``PHASES`` or, where
    a mark is missing, after both neighbours (see ``Phases``)."""
    marks: list[tuple[str, float]] = [("arrival", arrival), ("send", send), ("queued", queued),
                                      ("scheduled", scheduled), ("first", first_engine), ("last", last_engine),
                                      ("host", end)]
    present = [(k, t) for k, t in marks if known(t)]
    spans: list[Phase] = []
    for (a, ta), (b, tb) in zip(present, present[1:], strict=False):
        name = _SPAN_NAMES.get((a, b)) or f"{a} → {b}"
        spans.append(Phase(name, ta, tb))
    return Phases(request_id, arrival, end, tuple(spans))


def live_phases(request_id: str, source: str, send: float, first: float, last: float, finish: float = NAN,
                times: Mapping[str, float] | None = None, now: float = NAN) -> Phases:
    """One request's phases from what a live view holds of it, by the rules of a recorded run (``engine_marks``).

    ``send``, ``first`` and ``last`` are the host's send and first and last token times; ``finish`` and
    ``times`` (the engine's own per-request times, vLLM's stamps) come when it ends. The engine's stamps are
    checked against the host's times with ``engine_clock``, as a recorded run's are. While the request runs
    (no ``finish``) a last span reaches ``now``: decode after its first token; before it prefill, or queue +
    prefill where the source cannot tell them apart yet (vLLM's stamps come with the finish).
    """
    stamped = has_engine_stamps(times)
    offset: float | None = 0.0
    if stamped and times is not None:
        clock = engine_clock([send], [_nan(times.get("queued_ts"))], [first], [_nan(times.get("first_token_ts"))],
                             [last], [_nan(times.get("last_token_ts"))])
        offset = clock.offset if clock.usable else None
    queued, scheduled, first_engine, last_engine = engine_marks(source, send, first, last, times, offset, stamped)
    end = last if known(last) else finish
    out = phases_of(request_id, send, send, queued, scheduled, first_engine, last_engine, end)
    if known(finish) or not known(now):
        return out
    start = out.spans[-1].end if out.spans else send
    if not known(start):
        return out
    if now <= start:  # nothing since its last mark: its phases so far end there
        return Phases(request_id, out.arrival, start, out.spans)
    name = "decode" if known(first) else ("prefill" if known(scheduled) else NOT_SPLIT)
    return Phases(request_id, out.arrival, now, (*out.spans, Phase(name, start, now)))


# ------------------------------------------------------------------------------------------------- building


def engine_settings(engine: object) -> JsonDict:
    """The options ``engine`` declares, as it holds them now (what a replay matches a comparison's variant on)."""
    from tui_lab.engines.options import ENGINE_OPTIONS

    name = str(getattr(engine, "name", ""))
    out: JsonDict = {}
    for option in ENGINE_OPTIONS.get(name, ()):
        if option.secret_name or option.name in LOCAL_OPTIONS:
            continue
        value = getattr(engine, option.name, None)
        if value is None or isinstance(value, (bool, int, float, str)):
            out[option.name] = value
    return out


def _engine_info(engine: object) -> JsonDict:
    try:
        info = engine.info  # type: ignore[attr-defined]
        return dict(info.to_dict())
    except Exception:  # an engine that is not loaded (any more) has no info
        return {"engine": str(getattr(engine, "name", "unknown"))}


def source_of(engine: object) -> str:
    """Which engine produced a run: the engine's name, or for a replay the engine it replays."""
    recorded = getattr(engine, "recorded_source", None)
    return str(recorded) if recorded else str(getattr(engine, "name", "unknown"))


@dataclass(frozen=True)
class EngineClock:
    """How an engine's own timestamps were placed on the host's clock: ``host = engine + offset``."""

    offset: float
    note: str
    usable: bool = True


def engine_clock(sends: Sequence[float], queued: Sequence[float], firsts_host: Sequence[float],
                 firsts_engine: Sequence[float], lasts_host: Sequence[float],
                 lasts_engine: Sequence[float]) -> EngineClock:
    """Check the engine's monotonic stamps against the host's times, and the offset to apply to them.

    The engine cannot queue a request before the host sent it, nor stamp a token after the host had it, so
    the offset lies in ``[max(send − queued), min(host token − engine token)]``. With one clock on one machine
    (CLOCK_MONOTONIC in both processes) 0 lies in it and is used; otherwise the middle of the interval is
    (an engine on another machine), and an empty interval means the stamps cannot be placed: they are dropped.
    """
    lo = max((s - q for s, q in zip(sends, queued, strict=True) if known(s) and known(q)), default=-math.inf)
    hi = min([h - e for h, e in zip(firsts_host, firsts_engine, strict=True) if known(h) and known(e)]
             + [h - e for h, e in zip(lasts_host, lasts_engine, strict=True) if known(h) and known(e)],
             default=math.inf)
    if lo == -math.inf and hi == math.inf:
        return EngineClock(0.0, "", usable=False)
    if lo <= 0.0 <= hi:
        return EngineClock(0.0, "engine stamps on the host's clock (CLOCK_MONOTONIC), checked against the host's "
                                "send and token times")
    if lo <= hi:
        lo_f = lo if lo != -math.inf else hi
        hi_f = hi if hi != math.inf else lo
        offset = (lo_f + hi_f) / 2
        return EngineClock(offset, f"engine clock offset estimated at {offset * 1000:+.3f} ms "
                                   f"(± {(hi_f - lo_f) * 500:.3f} ms) from the host's send and token times")
    return EngineClock(0.0, f"engine stamps dropped: no single offset fits them (needs ≥ {lo * 1000:.3f} ms and "
                            f"≤ {hi * 1000:.3f} ms)", usable=False)


def run_from_result(
    result: RunResult,
    label: str,
    engine: object = None,
    *,
    experiment: str = "",
    index: int = 0,
    warmup: bool = False,
    arrivals: Sequence[float | None] | None = None,
    budgets: Sequence[int] | None = None,
    samples: Mapping[str, Sequence[float]] | None = None,
    source: str | None = None,
    engine_info: JsonDict | None = None,
    settings: JsonDict | None = None,
    load: JsonDict | None = None,
) -> TraceRun:
    """A ``TraceRun`` from a finished (or partial) ``RunResult``.

    ``arrivals``: each request's client arrival (load modes; absent → its send). ``samples``: the engine's
    per-step samples over the run (``scheduler_samples``). ``source`` names the engine when ``engine`` is not
    given (tests); the engine's info and settings are read from ``engine`` otherwise.
    """
    src = source or (source_of(engine) if engine is not None else "unknown")
    run = TraceRun(label=label, experiment=experiment, index=index, warmup=warmup, source=src,
                   kind="load" if arrivals is not None else "batch",
                   engine=engine_info if engine_info is not None else (_engine_info(engine) if engine else {}),
                   settings=settings if settings is not None else (engine_settings(engine) if engine else {}),
                   sampling=result.sampling.to_dict(), load=load, wall_s=result.wall_s, partial=result.partial,
                   error=result.error)
    rq = run.requests
    default_budget = result.sampling.max_new_tokens
    for n, rr in enumerate(result.requests):
        tr = rr.trace
        rq.ids.append(rr.request_id)
        rq.prompts.append(rr.prompt)
        rq.prompt_tokens.append(int(tr.prompt_tokens))
        rq.budgets.append(int(budgets[n]) if budgets is not None else default_budget)
        send = float(tr.t_send)
        rq.send.append(send)
        arrival = arrivals[n] if arrivals is not None and n < len(arrivals) else None
        rq.arrival.append(send if arrival is None and arrivals is None else _nan(arrival))
        rq.finish.append(_nan(rr.t_finish))
        rq.reasons.append(rr.finish_reason or "")
        rq.errors.append(rr.error or "")
        rq.tok_t.extend(tr.event_times)
        rq.tok_n.extend(tr.event_tokens)
        rq.tok_id.extend(rr.token_ids)
        rq.tok_text.extend(rr.texts)
        rq.starts.append(len(rq.tok_t))
        times = rr.engine_times or {}
        rq.preemptions.append(int(times.get("preemptions", 0)))
    _place_engine_times(run, result)
    starts = [t for t in rq.arrival + rq.send if known(t)]
    run.t0 = min(starts) if starts else (min(rq.tok_t) if rq.tok_t else 0.0)
    if samples is not None and samples.get("t"):
        run.samples = SampleTable([float(v) for v in samples["t"]], [float(v) for v in samples.get("running", [])],
                                  [float(v) for v in samples.get("waiting", [])],
                                  [float(v) for v in samples.get("kv_usage", [])])
    if result.engine_steps or (src == "vllm" and rq.tok_t):
        _number_steps(rq)
    else:
        rq.tok_step.extend([-1] * len(rq.tok_t))
    run.steps = build_steps(rq, run.samples)
    run.unseen = unseen_by(src, bool(len(run.steps)), bool(len(run.samples)))
    return run


def unseen_by(source: str, has_steps: bool, has_samples: bool) -> list[str]:
    """What a run from ``source`` cannot show (said in the trace rather than left blank)."""
    out = []
    if source == "openai":
        out.append("the server's queue and prefill are one span (queue + prefill): only the client side is seen")
        out.append("the server's decode steps and batch")
    elif not has_steps:
        out.append("engine steps (the engine handed tokens over one request at a time)")
    if not has_samples:
        out.append("the engine's own KV-cache use (KV tokens held are computed from the tokens instead)"
                   if source != "openai" else "the server's KV-cache use")
    return out


STAMPS = ("queued_ts", "scheduled_ts", "first_token_ts", "last_token_ts")
"""The engine's own per-request stamps (vLLM), seconds on its monotonic clock."""


def has_engine_stamps(times: Mapping[str, float] | None) -> bool:
    """Whether a request's engine times carry the engine's own stamps (``STAMPS``)."""
    return times is not None and ("first_token_ts" in times or "queued_ts" in times)


def engine_marks(source: str, send: float, first_host: float, last_host: float,
                 times: Mapping[str, float] | None, offset: float | None, stamped: bool) -> tuple[
                     float, float, float, float]:
    """One request's queued, scheduled, first and last engine token on the host's clock (NaN: not seen).

    ``stamped`` (the run's engine stamps its requests, vLLM): its stamps plus ``offset`` (``engine_clock``), or
    with ``offset`` None (stamps that cannot be placed) only the first token as the host got it. Otherwise an
    in-process engine is the host: it takes the request when it is sent and starts it after tokenizing (the
    transformers engine says how long that took), its token times are the host's. A server seen from its client
    shows only its first token.
    """
    got = times or {}
    if stamped and offset is not None:
        queued, scheduled, first, last = (_nan(got.get(k)) + offset for k in STAMPS)
        return queued, scheduled, first, last
    if not stamped and source in IN_PROCESS_ENGINES:
        ready = send + float(got.get("tokenize_s", 0.0)) if known(send) else NAN
        return ready, ready, first_host, last_host
    return NAN, NAN, first_host, NAN


def _place_engine_times(run: TraceRun, result: RunResult) -> None:
    """Fill engine arrival, queued, scheduled, first and last engine token for each request, per source."""
    rq = run.requests
    n = len(rq)
    firsts = [rq.first_token(i) for i in range(n)]
    lasts = [rq.last_token(i) for i in range(n)]
    times = [rr.engine_times or {} for rr in result.requests]
    stamped = any(has_engine_stamps(t) for t in times)
    offset: float | None = 0.0
    if stamped:
        col = {k: [_nan(t.get(k)) for t in times] for k in STAMPS}
        clock = engine_clock(rq.send, col["queued_ts"], firsts, col["first_token_ts"], lasts, col["last_token_ts"])
        if clock.note:
            run.notes.append(clock.note)
        offset = clock.offset if clock.usable else None
    marks = [engine_marks(run.source, rq.send[i], firsts[i], lasts[i], times[i], offset, stamped) for i in range(n)]
    rq.queued[:] = [m[0] for m in marks]
    rq.scheduled[:] = [m[1] for m in marks]
    rq.first_engine[:] = [m[2] for m in marks]
    rq.last_engine[:] = [m[3] for m in marks]
    rq.engine_arrival[:] = [NAN] * n
    if stamped and offset is not None:
        rq.engine_arrival[:] = _engine_arrivals(run, times)


def _engine_arrivals(run: TraceRun, times: Sequence[Mapping[str, float]]) -> list[float]:
    """vLLM's front-end arrival of each request, from wall-clock to the host's clock (NaN where it cannot be)."""
    rq = run.requests
    arrivals = []
    for i, t in enumerate(times):
        wall, wmm = t.get("arrival_wall_s"), t.get("wall_minus_monotonic_s")
        if wall is None or wmm is None:
            arrivals.append(NAN)
            continue
        at = float(wall) - float(wmm)
        # The front end takes a request before its core queues it; a wall clock stepped (NTP) in between
        # would put it after that, or long before the send: then it is not shown.
        upper = rq.queued[i] if known(rq.queued[i]) else rq.first_token(i)
        ok = known(rq.send[i]) and at >= rq.send[i] - ARRIVAL_BEFORE_SEND_S and (not known(upper)
                                                                                or at <= upper + 1e-3)
        arrivals.append(at if ok else NAN)
    if any(not known(a) for a, t in zip(arrivals, times, strict=True) if "arrival_wall_s" in t):
        run.notes.append("vLLM's wall-clock arrival did not fall before its queue time for some requests "
                         "(the wall clock moved?): not shown for them")
    if any(known(a) and a < s for a, s in zip(arrivals, rq.send, strict=True)):
        run.notes.append("vLLM stamps a request's arrival when its front end renders the prompt: for a batch "
                         "that is before the lab's send (its prompts are tokenized first, outside TTFT)")
    return arrivals


def _number_steps(rq: RequestTable) -> None:
    """Each distinct token time is one engine step (a ``TokenStep``, or one vLLM wake-up): number them."""
    distinct = sorted(set(rq.tok_t))
    index = {t: k for k, t in enumerate(distinct)}
    rq.tok_step[:] = [index[t] for t in rq.tok_t]


def build_steps(rq: RequestTable, samples: SampleTable | None = None) -> StepTable:
    """The step table from the requests' token events (``tok_step``) and, where there are any, the samples."""
    n_steps = max(rq.tok_step, default=-1) + 1
    steps = StepTable()
    if n_steps == 0:
        return steps
    end = [NAN] * n_steps
    n_req = [0] * n_steps
    n_tok = [0] * n_steps
    prefill = [False] * n_steps
    kv = [0] * n_steps
    ready = [NAN] * n_steps
    for i in range(len(rq)):
        a, b = rq.starts[i], rq.starts[i + 1]
        held = rq.prompt_tokens[i]
        ready_i = rq.scheduled[i] if i < len(rq.scheduled) and known(rq.scheduled[i]) else rq.send[i]
        for j in range(a, b):
            k = rq.tok_step[j]
            held += rq.tok_n[j]
            if k < 0:
                continue
            end[k] = rq.tok_t[j]
            n_req[k] += 1
            n_tok[k] += rq.tok_n[j]
            kv[k] += held
            if j == a:
                prefill[k] = True
                if known(ready_i) and not (ready_i <= ready[k]):
                    ready[k] = ready_i
    start = []
    previous = NAN
    for k in range(n_steps):
        s = previous
        if known(ready[k]) and (not known(s) or ready[k] > s):
            s = min(ready[k], end[k])
        if not known(s):
            s = end[k]
        start.append(s)
        previous = end[k]
    steps.start, steps.end, steps.n_requests, steps.n_tokens = start, end, n_req, n_tok
    steps.prefill, steps.kv_tokens = prefill, kv
    steps.kv_usage = _sample_at(samples, end) if samples is not None and len(samples) else [NAN] * n_steps
    return steps


def _sample_at(samples: SampleTable, times: Sequence[float]) -> list[float]:
    """Each time's KV-cache use: the last sample at or before it (NaN before the first)."""
    import bisect

    out = []
    for t in times:
        k = bisect.bisect_right(samples.t, t + 1e-4) - 1
        out.append(samples.kv_usage[k] if k >= 0 and k < len(samples.kv_usage) else NAN)
    return out


# ------------------------------------------------------------------------------------------------- files


def _ns(t: float, t0: float) -> int | None:
    return None if not known(t) else round((t - t0) * 1e9)


def _from_ns(v: int | None, t0: float) -> float:
    return NAN if v is None else t0 + v / 1e9


def _delta(values: Sequence[int]) -> list[int]:
    out, prev = [], 0
    for v in values:
        out.append(v - prev)
        prev = v
    return out


def _undelta(values: Sequence[int]) -> list[int]:
    out, acc = [], 0
    for v in values:
        acc += v
        out.append(acc)
    return out


_TIME_COLUMNS = ("arrival", "send", "engine_arrival", "queued", "scheduled", "first_engine", "last_engine", "finish")


def encode_run(run: TraceRun) -> JsonDict:
    """One run as plain JSON, compactly: integer ns from ``t0``, per-request step deltas, no derived columns."""
    rq, t0 = run.requests, run.t0
    tokens: JsonDict = {"count": [rq.starts[i + 1] - rq.starts[i] for i in range(len(rq))]}
    steps_delta: list[int] = []
    explicit: list[int | None] = []
    for i in range(len(rq)):
        prev = -1
        for j in range(rq.starts[i], rq.starts[i + 1]):
            k = rq.tok_step[j]
            if k <= prev:
                # Not a step (or a second event of this request in one step): 0, and its own time below. A
                # request's steps strictly increase otherwise, so 0 never means anything else.
                steps_delta.append(0)
                explicit.append(_ns(rq.tok_t[j], t0))
            else:
                steps_delta.append(k - prev)
                prev = k
    tokens["step"] = steps_delta
    tokens["t_ns"] = explicit
    if any(n != 1 for n in rq.tok_n):
        tokens["n"] = rq.tok_n
    tokens["id"] = rq.tok_id
    tokens["text"] = rq.tok_text
    requests: JsonDict = {"id": rq.ids, "prompt": rq.prompts, "prompt_tokens": rq.prompt_tokens,
                          "budget": rq.budgets, "reason": rq.reasons}
    if any(rq.errors):
        requests["error"] = rq.errors
    if any(rq.preemptions):
        requests["preemptions"] = rq.preemptions
    for name in _TIME_COLUMNS:
        requests[f"{name}_ns"] = [_ns(t, t0) for t in getattr(rq, name)]
    step_end = [round((t - t0) * 1e9) for t in run.steps.end]
    samples: JsonDict | None = None
    if len(run.samples):
        samples = {"t_ns": _delta([round((t - t0) * 1e9) for t in run.samples.t]),
                   "running": [int(v) for v in run.samples.running], "waiting": [int(v) for v in run.samples.waiting],
                   "kv_usage": [round(v, 6) for v in run.samples.kv_usage]}
    return {
        "label": run.label, "experiment": run.experiment, "index": run.index, "warmup": run.warmup, "kind": run.kind,
        "source": run.source, "engine": run.engine, "settings": run.settings, "sampling": run.sampling,
        "load": run.load, "t0": run.t0, "wall_s": run.wall_s, "partial": run.partial, "error": run.error,
        "unseen": run.unseen, "notes": run.notes, "requests": requests, "tokens": tokens,
        # Only the ends: starts, sizes, prefill flags and KV tokens follow from the tokens (``build_steps``).
        "steps": {"end_ns": _delta(step_end)} if len(run.steps) else None,
        "samples": samples,
    }


def decode_run(doc: Mapping[str, Any]) -> TraceRun:
    """The ``TraceRun`` that ``encode_run`` wrote (derived columns rebuilt)."""
    t0 = float(doc["t0"])
    run = TraceRun(label=str(doc["label"]), experiment=str(doc.get("experiment", "")), index=int(doc.get("index", 0)),
                   warmup=bool(doc.get("warmup", False)), kind=str(doc.get("kind", "batch")),
                   source=str(doc.get("source", "")), engine=dict(doc.get("engine") or {}),
                   settings=dict(doc.get("settings") or {}), sampling=dict(doc.get("sampling") or {}),
                   load=doc.get("load"), t0=t0, wall_s=float(doc.get("wall_s", 0.0)),
                   partial=bool(doc.get("partial", False)), error=doc.get("error"),
                   unseen=list(doc.get("unseen", [])), notes=list(doc.get("notes", [])))
    r, tok = doc["requests"], doc["tokens"]
    rq = run.requests
    rq.ids, rq.prompts = list(r["id"]), list(r["prompt"])
    rq.prompt_tokens, rq.budgets, rq.reasons = list(r["prompt_tokens"]), list(r["budget"]), list(r["reason"])
    rq.errors = list(r.get("error") or [""] * len(rq.ids))
    rq.preemptions = list(r.get("preemptions") or [0] * len(rq.ids))
    for name in _TIME_COLUMNS:
        setattr(rq, name, [_from_ns(v, t0) for v in r[f"{name}_ns"]])
    counts = list(tok["count"])
    rq.starts = [0] + _undelta(counts)
    total = rq.starts[-1]
    rq.tok_n = list(tok.get("n") or [1] * total)
    rq.tok_id, rq.tok_text = list(tok["id"]), list(tok["text"])
    steps_doc = doc.get("steps")
    ends = [t0 + v / 1e9 for v in _undelta(steps_doc["end_ns"])] if steps_doc else []
    explicit = iter(tok["t_ns"])
    delta = tok["step"]
    rq.tok_step, rq.tok_t = [], []
    for i in range(len(counts)):
        prev = -1
        for j in range(rq.starts[i], rq.starts[i + 1]):
            d = delta[j]
            if d == 0:
                rq.tok_step.append(-1)
                rq.tok_t.append(_from_ns(next(explicit), t0))
            else:
                prev += d
                rq.tok_step.append(prev)
                rq.tok_t.append(ends[prev])
    samples_doc = doc.get("samples")
    if samples_doc:
        run.samples = SampleTable([t0 + v / 1e9 for v in _undelta(samples_doc["t_ns"])],
                                  [float(v) for v in samples_doc["running"]],
                                  [float(v) for v in samples_doc["waiting"]],
                                  [float(v) for v in samples_doc["kv_usage"]])
    run.steps = build_steps(rq, run.samples)
    return run


def encode(trace: Trace) -> JsonDict:
    """The whole trace as plain JSON."""
    return {"format": FORMAT, "version": VERSION, "meta": trace.meta, "runs": [encode_run(r) for r in trace.runs]}


def decode(doc: Mapping[str, Any]) -> Trace:
    """A ``Trace`` from ``encode``'s JSON (``ValueError`` for anything else)."""
    if doc.get("format") != FORMAT:
        raise ValueError(f"not an {FORMAT} file (format: {doc.get('format')!r})")
    if int(doc.get("version", 0)) > VERSION:
        raise ValueError(f"trace version {doc.get('version')} is newer than this lab reads ({VERSION})")
    return Trace(dict(doc.get("meta") or {}), [decode_run(r) for r in doc.get("runs", [])])


def to_bytes(trace: Trace, compress: bool = True) -> bytes:
    """The trace file's bytes: compact JSON, gzip-compressed (mtime 0, so the same trace gives the same bytes)."""
    text = json.dumps(encode(trace), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if not compress:
        return text.encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    return buf.getvalue()


def write_trace(path: str | os.PathLike[str], trace: Trace) -> Path:
    """Write ``trace`` to ``path`` (atomically: a temporary file, then renamed); returns the path.

    gzip-compressed unless the name ends in ``.json`` (then plain JSON); ``read_trace`` reads both."""
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(to_bytes(trace, compress=not target.name.endswith(".json")))
    os.replace(tmp, target)
    return target


def read_trace(path: str | os.PathLike[str]) -> Trace:
    """Read a trace file (gzip-compressed or plain JSON); ``ValueError`` if it is not one."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a trace file ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not a trace file")
    return decode(doc)


def without_warmups(trace: Trace) -> Trace:
    """``trace`` without its warm-up runs (a smaller file to ship; a replay plays a measured run for a warm-up),
    the meta saying how many were left out."""
    kept = [r for r in trace.runs if not r.warmup]
    left = len(trace.runs) - len(kept)
    meta = dict(trace.meta)
    if left:
        meta["notes"] = [*list(meta.get("notes") or []), f"{left} warm-up runs left out of this file"]
    for k, run in enumerate(kept):
        run.index = k
    return Trace(meta, kept)


# ------------------------------------------------------------------------------------------- machine facts


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def machine_facts() -> JsonDict:
    """This machine: its GPU and driver (NVML, when there is one), CPU, OS, Python, and the clock's boot."""
    facts: JsonDict = {"platform": platform.platform(), "python": sys.version.split()[0],
                       "cpus": os.cpu_count(), "clock": "CLOCK_MONOTONIC",
                       "boot_id": _read("/proc/sys/kernel/random/boot_id").strip() or None}
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), "") or platform.processor() or platform.machine()
    facts["cpu"] = cpu
    try:
        import pynvml  # nvidia-ml-py: no GPU or driver → nothing said about either

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            name = pynvml.nvmlDeviceGetName(handle)
            driver = pynvml.nvmlSystemGetDriverVersion()
            facts["card"] = name.decode() if isinstance(name, bytes) else str(name)
            facts["driver"] = driver.decode() if isinstance(driver, bytes) else str(driver)
            facts["gpus"] = int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVIDIA driver here: the card is the CPU
        pass
    facts.setdefault("card", f"CPU {cpu}".strip())
    return facts


def machine_line(meta: Mapping[str, Any]) -> str:
    """"NVIDIA H200, 2026-12-02": the card and the day a trace was recorded."""
    machine = meta.get("machine") or {}
    card = str(machine.get("card") or "an unknown machine")
    day = str(meta.get("recorded") or "")[:10] or "an unknown date"
    return f"{card}, {day}"


def library_versions(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The lab's and the libraries' versions loaded in this process (none is imported for this)."""
    from importlib import metadata

    out: dict[str, str] = {}
    try:
        out["inference-lab"] = metadata.version("inference-lab")
    except metadata.PackageNotFoundError:
        out["inference-lab"] = "source"
    for name in ("torch", "transformers", "vllm"):
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None) if module is not None else None
        if version:
            out[name] = str(version)
    out.update(extra or {})
    return out


# ------------------------------------------------------------------------------------------- recording


def _jsonable(value: Any) -> Any:
    from tui_lab.lab.export import to_jsonable

    return to_jsonable(value)


class Recording:
    """Every run one experiment makes, as a ``Trace``.

    ``during(ctx)`` hands it each run ``execute_run`` finishes (warm-ups flagged), labelled with the
    experiment's progress line at the time; ``add_result`` takes the loads a load experiment keeps in its
    result. While the experiment runs a recording only keeps, per run, the ``RunResult`` the run made anyway,
    the engine's info and settings, and its per-step samples over the run (a few hundred numbers): nothing is
    built while tokens flow or between runs. The runs are built into tables when the trace is asked for
    (``runs``, ``trace``); a run that cannot be built is noted in the trace, never raised.
    """

    def __init__(self, experiment: str, params: Mapping[str, Any] | None = None,
                 engine_name: str = "", engine_options: Mapping[str, Any] | None = None) -> None:
        self.experiment = experiment
        self.params = dict(params or {})
        self.engine_name = engine_name
        self.engine_options = {k: v for k, v in (engine_options or {}).items() if k != "clock"}
        self.notes: list[str] = []
        self._pending: list[Callable[[], TraceRun]] = []
        self._built: list[TraceRun] = []
        self._lock = threading.Lock()
        self._label = ""
        self._engine_info: JsonDict | None = None
        self._replay_of: JsonDict | None = None
        self._trace: Trace | None = None

    @classmethod
    def start(cls, experiment: str, params: Mapping[str, Any], ctx: Any) -> Recording | None:
        """A recording of one experiment run in ``ctx`` (its ``RunContext``), or None when recording is off
        (``INFERENCE_LAB_TRACE=0`` and the context does not ask for one with ``record``)."""
        if not (recording_enabled() or getattr(ctx, "record", False)):
            return None
        engine = getattr(ctx, "engine", None)
        name = source_of(engine) if engine is not None else str(getattr(ctx, "engine_name", ""))
        return cls(experiment, params, name, getattr(ctx, "engine_options", {}))

    # The experiment's progress lines name its runs ("batch 8 · run 2/3").
    def progress_line(self, text: str, new_run: bool) -> None:
        """Take note of a progress line (a line marked ``new_run`` labels the runs that follow)."""
        if new_run:
            with self._lock:
                self._label = text

    @contextmanager
    def during(self, ctx: Any) -> Iterator[None]:
        """Record the runs made while the block runs (``ctx``: the experiment's ``RunContext``)."""
        before = ctx.progress

        def progress(p: Any) -> None:
            self.progress_line(str(p.text), bool(p.new_run))
            if before is not None:
                before(p)

        ctx.progress = progress
        if ctx.engine is not None:
            self._engine_info = _engine_info(ctx.engine)
            replay = getattr(ctx.engine, "replay_meta", None)
            if isinstance(replay, dict) and replay:
                self._replay_of = replay
        try:
            with observing_runs(self.observe):
                yield
        finally:
            ctx.progress = before

    def finish(self, result: object, ctx: Any) -> Recording:
        """Close the recording once the experiment returned ``result`` (its loads added). With
        ``INFERENCE_LAB_RECORD_DIR`` set the trace is built and written there (a file that cannot be written
        is noted in the trace, never raised)."""
        engine = getattr(ctx, "engine", None)
        self.add_result(result, engine)
        if engine is not None:
            self._engine_info = _engine_info(engine)
        folder = os.environ.get(RECORD_DIR_ENV, "").strip()
        if folder:
            trace = self.trace()
            try:
                write_trace(Path(folder).expanduser() / trace_file_name(self.experiment), trace)
            except OSError as exc:
                trace.meta.setdefault("notes", []).append(f"not written to {folder}: {exc}")
        return self

    def observe(self, engine: Engine, requests: Sequence[Request], result: RunResult) -> None:
        """A run ``execute_run`` finished (called in the experiment's thread): keep what builds it later."""
        warm = is_warmup_run()
        with self._lock:
            label = self._label
        name = source_of(engine)
        text = label or f"{name} · batch {len(requests)} × {result.sampling.max_new_tokens} tokens"
        if name != self.engine_name and label:
            text = f"{text} · {name}"
        if warm and "warm" not in text:
            text += " (warm-up)"
        budgets = [r.budget(result.sampling) for r in requests]
        self._keep(functools.partial(run_from_result, result, text, None, experiment=self.experiment,
                                     warmup=warm, budgets=budgets, samples=_samples(engine, result), source=name,
                                     engine_info=_engine_info(engine), settings=engine_settings(engine)))

    def add_result(self, result: object, engine: object = None) -> None:
        """Runs an experiment keeps in its result rather than making through ``execute_run`` (loads)."""
        labelled = getattr(result, "labelled_loads", None)  # a load's result says which loads it holds
        loads: list[tuple[str, Any]] = labelled() if callable(labelled) else []
        for label, load in loads:
            info = _engine_info(engine) if engine is not None else {}
            settings = engine_settings(engine) if engine is not None else {}
            self._keep(functools.partial(self._load_run, label, load, source_of(engine) if engine else "unknown",
                                         info, settings, _samples(engine, load.run)))

    def _load_run(self, label: str, load: Any, source: str, info: JsonDict, settings: JsonDict,
                  samples: dict[str, list[float]] | None) -> TraceRun:
        return run_from_load(load, label, source, experiment=self.experiment, samples=samples, engine_info=info,
                             settings=settings)

    def _keep(self, build: Callable[[], TraceRun]) -> None:
        with self._lock:
            self._pending.append(build)
            self._trace = None

    @property
    def runs(self) -> list[TraceRun]:
        """The recorded runs, built (once) from what was kept."""
        with self._lock:
            pending, self._pending = self._pending, []
        for build in pending:
            try:
                run = build()
            except Exception as exc:  # a trace must never break the experiment it records
                self.notes.append(f"a run could not be recorded: {type(exc).__name__}: {exc}")
                continue
            run.index = len(self._built)
            self._built.append(run)
        return self._built

    def trace(self, info: JsonDict | None = None, command: Sequence[str] | None = None) -> Trace:
        """The recording as a ``Trace``: its runs, and what they ran on (``info``: the engine's info)."""
        if self._trace is not None and info is None and command is None:
            return self._trace
        runs = self.runs
        info = info or self._engine_info or (runs[0].engine if runs else {})
        replay_of = self._replay_of
        meta: JsonDict = {
            "recorded": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": machine_facts(), "experiment": self.experiment, "params": _jsonable(self.params),
            "engine": info.get("engine", self.engine_name), "model": info.get("model"),
            "device": info.get("device"), "dtype": info.get("dtype"),
            "versions": library_versions(info.get("versions") or {}),
            "settings": {k: v for k, v in self.engine_options.items()
                         if k not in LOCAL_OPTIONS and (v is None or isinstance(v, (str, int, float, bool)))},
            "text_is_meaningful": info.get("text_is_meaningful", True),
            "command": command_line(sys.argv if command is None else command), "notes": list(self.notes),
        }
        if replay_of:
            # A recording of a replay keeps the original machine's facts (its times are that machine's), and
            # says it was replayed: where, and from which file.
            meta["replay_of"] = {"file": replay_of.get("file"), "replayed": meta["recorded"],
                                 "replayed_on": meta["machine"]}
            for key in ("machine", "recorded", "model", "versions", "dtype", "text_is_meaningful"):
                if replay_of.get(key) is not None:
                    meta[key] = replay_of[key]
        self._trace = Trace(meta, list(runs))
        return self._trace


def _samples(engine: object, result: RunResult) -> dict[str, list[float]] | None:
    """The engine's per-step samples over the run's window, where it keeps them (vLLM's scheduler stats)."""
    get = getattr(engine, "scheduler_samples", None)
    if not callable(get):
        return None
    sends = [r.trace.t_send for r in result.requests if known(r.trace.t_send)]
    ends = [t for r in result.requests for t in (r.t_finish, r.trace.last_token_time) if t is not None]
    if not sends or not ends:
        return None
    try:
        got = get(min(sends), max(ends) + 0.05)
    except Exception:  # samples are extra: an engine that cannot give them gives none
        return None
    return got if isinstance(got, dict) and got.get("t") else None


def run_from_load(load: Any, label: str, source: str, *, experiment: str = "",
                  samples: Mapping[str, Sequence[float]] | None = None, engine_info: JsonDict | None = None,
                  settings: JsonDict | None = None) -> TraceRun:
    """A ``TraceRun`` from a finished ``LoadRun``: its run, each request's client arrival and budget, its plan."""
    run: RunResult = load.run
    return run_from_result(run, label, None, experiment=experiment, arrivals=load_arrivals(load),
                           budgets=[r.budget(run.sampling) for r in load.plan.requests()], samples=samples,
                           source=source, engine_info=engine_info if engine_info is not None else {},
                           settings=settings if settings is not None else {}, load=_jsonable(load.plan.to_dict()))


def load_arrivals(load: Any) -> list[float | None]:
    """Each request's client arrival on the host's clock, from a ``LoadRun``: send − client queue time; a request
    never sent arrives at the load's start + its scheduled offset (the start found from those that were)."""
    run: RunResult = load.run
    out: list[float | None] = []
    starts = []
    for rr, queued, offset in zip(run.requests, load.client_queue, load.arrivals_s, strict=True):
        if queued is not None and known(rr.trace.t_send):
            arrival = rr.trace.t_send - queued
            out.append(arrival)
            starts.append(arrival - offset)
        else:
            out.append(None)
    if starts:
        start = sorted(starts)[len(starts) // 2]
        out = [start + off if a is None else a for a, off in zip(out, load.arrivals_s, strict=True)]
    return out


def command_line(argv: Sequence[str]) -> list[str]:
    """The command that recorded a trace, without this machine's paths: the program by its name
    (``inference-lab`` for the lab's own entry points), its arguments as given."""
    if not argv:
        return []
    program = Path(argv[0])
    name = "inference-lab" if program.name == "inference-lab" or program.parent.name == "tui_lab" else program.name
    return [name, *argv[1:]]


def trace_file_name(experiment: str, when: datetime.datetime | None = None) -> str:
    """``<experiment>-<UTC time>.trace.json.gz``."""
    stamp = (when or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{experiment}-{stamp}{SUFFIX}"
