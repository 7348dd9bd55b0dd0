"""The replay engine: a recorded run played back through the same events, at the recorded pace.

``--engine replay --trace FILE`` (or the name of a trace shipped with the lab) loads a trace
(``tui_lab.lab.trace``) and answers each batch the lab asks for with the recorded run of that shape (the same
number of requests and token budgets; a shape the trace lacks is refused in one line naming the shapes it has).
The run's ``RequestSubmitted``, ``TokenStep``, ``TokenEvent`` and ``RequestFinished`` events come out as the
engine yielded them, each one when as much time has passed since the start as had passed in the recording, so
the token stream, the bars, the charts and the predictions all work. Several recorded runs of one shape (a
sweep's warm-up and measured runs) are played in turn.

Each event carries the recording's time, moved to the replay's start, so every figure of a replay (TTFT, TPOT,
ITL, throughput) is the recorded machine's, whatever this machine is doing; the events are handed over when
that time comes (a sleep, then a short spin on ``time.perf_counter``, the lab's clock), so the live view keeps
the recorded pace. A replay never passes for a measurement of this machine: its ``EngineInfo.device`` reads
"replay of NVIDIA H200, 2026-12-02" (the recording's card and day), its notes say whose times they are, and a
trace recorded from a replay keeps the original machine's facts with ``replay_of`` set.

The engine's own per-request times (vLLM's queue/prefill/decode) and per-step samples (KV-cache use) are
replayed shifted to the replay's start, so a trace of a replay has the same phases. Tests inject a clock and a
sleep.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tui_lab.engines.base import EngineBase, EngineInfo, ProgressCallback, Request, SamplingParams
from tui_lab.engines.events import RequestFinished, RequestSubmitted, StreamEvent, TokenEvent, TokenStep
from tui_lab.errors import InvalidInput

SPIN_S = 0.002
"""The last part of a wait is spent spinning on the clock: a sleep on a busy machine wakes up ms late."""
POLL_S = 0.05
"""Longest single sleep, so a stop request is seen within it."""

_SUBMIT, _STEP, _TOKEN, _FINISH = 0, 1, 2, 3


@dataclass(frozen=True)
class _Item:
    t: float
    kind: int
    payload: Any


def shape_of(budgets: Sequence[int]) -> str:
    """"batch 4 × 16 tokens" (or the budgets, when they differ)."""
    n = len(budgets)
    if len(set(budgets)) <= 1:
        return f"batch {n} × {budgets[0] if budgets else 0} tokens"
    return f"batch {n} × [{', '.join(str(b) for b in budgets)}] tokens"


class ReplayEngine(EngineBase):
    """Plays recorded runs back through the ``Engine`` protocol, at the recorded pace."""

    name = "replay"

    def __init__(
        self,
        trace: str | None = None,
        variant: Mapping[str, object] | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        stamp: str = "recorded",
        model: str | None = None,
        device: str | None = None,
    ) -> None:
        """``trace``: a trace file or a shipped trace's name. ``variant``: only runs recorded with these engine
        settings (``engine`` names the recorded engine), as a comparison's variant asks. ``stamp``: which time an
        event carries: ``"recorded"`` (the recording's, moved to the replay's start: every figure of a replay is
        the recorded machine's, whatever this machine's load) or ``"delivered"`` (when it was handed over here:
        to measure the pacing). ``model`` and ``device`` are accepted from front ends that always pass them;
        the trace decides both."""
        super().__init__()
        if stamp not in ("recorded", "delivered"):
            raise InvalidInput(f"stamp must be recorded or delivered (got {stamp!r})")
        self.trace_spec = trace
        self.variant = dict(variant or {})
        self.clock = clock or time.perf_counter
        self._sleep = sleep
        self.stamp = stamp
        self._runs: list[Any] = []
        self._meta: dict[str, Any] = {}
        self._cursor: dict[tuple[int, ...], int] = {}
        self._played: list[tuple[float, Any]] = []
        self._lock = threading.Lock()
        self.recorded_source = ""
        """The engine that recorded the run played last (transformers, vllm, ...): what a trace of it names."""

    # ------------------------------------------------------------------------------------------- loading

    def load(self, progress: ProgressCallback | None = None) -> EngineInfo:
        """Read the trace and pick the runs this engine answers with."""
        from tui_lab.lab.trace import machine_line, read_trace
        from tui_lab.traces import find, names

        if progress:
            progress("reading the trace", 0.0)
        if not self.trace_spec:
            shipped = ", ".join(names()) or "none"
            raise InvalidInput("the replay engine needs a trace: --trace FILE or the name of a shipped trace",
                               f"shipped traces: {shipped}")
        path = find(self.trace_spec)
        if path is None:
            shipped = ", ".join(names()) or "none"
            raise InvalidInput(f"no trace file {self.trace_spec!r}", f"give a path, or one of: {shipped}")
        try:
            trace = read_trace(path)
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{path} cannot be replayed: {exc}") from None
        runs = [r for r in trace.runs if len(r.requests) and r.requests.tok_t]
        chosen = [r for r in runs if self._matches(r)]
        if not chosen:
            wanted = ", ".join(f"{k}={v}" for k, v in self.variant.items())
            have = sorted({self._variant_text(r) for r in runs}) or ["no runs"]
            raise InvalidInput(f"the trace has no run recorded with {wanted}", f"it has: {'; '.join(have)}")
        self._runs = chosen
        self._meta = dict(trace.meta)
        self._meta.setdefault("file", path.name)
        first = chosen[0]
        rec = dict(first.engine)
        where = machine_line(trace.meta)
        notes = [f"replay of {first.source or rec.get('engine', 'an engine')} on {where} (trace {path.name}): "
                 "every time is the recording's, not this machine's",
                 "the recorded tokens are played whatever the prompts; batch shapes the trace lacks are refused"]
        notes += [str(n) for n in rec.get("notes", [])]
        versions = {str(k): str(v) for k, v in (trace.meta.get("versions") or rec.get("versions") or {}).items()}
        self.recorded_source = first.source
        self._info = EngineInfo(
            engine=self.name, model=str(trace.meta.get("model") or rec.get("model") or "recorded model"),
            device=f"replay of {where}", dtype=str(rec.get("dtype") or trace.meta.get("dtype") or "recorded"),
            versions=versions, text_is_meaningful=bool(trace.meta.get("text_is_meaningful",
                                                                     rec.get("text_is_meaningful", True))),
            max_context=rec.get("max_context"), notes=tuple(notes),
        )
        if progress:
            progress("ready", 1.0)
        return self._info

    def _matches(self, run: Any) -> bool:
        for key, want in self.variant.items():
            if key == "engine":
                # The scripted test engine stood in for every engine a comparison asked for when it recorded.
                if want is not None and run.source not in (want, "scripted"):
                    return False
            elif key in run.settings and run.settings[key] != want:
                return False
        return True

    @staticmethod
    def _variant_text(run: Any) -> str:
        interesting = {k: v for k, v in run.settings.items()
                       if k not in ("model", "cache_dir", "dtype") and v is not None}
        inside = ", ".join(f"{k}={v}" for k, v in interesting.items())
        return f"{run.source} ({inside})" if inside else run.source

    @property
    def replay_meta(self) -> dict[str, Any]:
        """The trace's machine facts (card, driver, date, versions): what a recording of this replay keeps."""
        return dict(self._meta)

    def shapes(self) -> list[str]:
        """The batch shapes the loaded trace can answer ("batch 4 × 16 tokens"), in recorded order."""
        seen: list[str] = []
        for run in self._runs:
            text = shape_of(run.requests.budgets)
            if text not in seen:
                seen.append(text)
        return seen

    def shapes_text(self) -> str:
        """The shapes in one short line: batches of the same token budget together ("batch 1, 2 or 4 × 128
        tokens"), shapes of mixed budgets as they are."""
        sizes: dict[int, list[int]] = {}
        mixed: list[str] = []
        for run in self._runs:
            budgets = list(run.requests.budgets)
            if len(set(budgets)) == 1:
                group = sizes.setdefault(budgets[0], [])
                if len(budgets) not in group:
                    group.append(len(budgets))
            elif shape_of(budgets) not in mixed:
                mixed.append(shape_of(budgets))
        parts = []
        for tokens, batches in sizes.items():
            listed = ", ".join(map(str, sorted(batches)[:-1]))
            last = max(batches)
            parts.append(f"batch {listed + ' or ' if listed else ''}{last} × {tokens} tokens")
        return "; ".join(parts + mixed)

    def recorded_params(self, experiment: str) -> dict[str, Any]:
        """The parameters the trace's experiment ran with, when it is ``experiment`` (so that a replay asked
        for nothing else plays every recorded run); empty for another experiment."""
        if self._meta.get("experiment") != experiment:
            return {}
        params = self._meta.get("params")
        return dict(params) if isinstance(params, Mapping) else {}

    def unload(self) -> None:
        """Forget the trace."""
        self._info = None
        self._runs = []
        self._played = []

    # ------------------------------------------------------------------------------------------- playing

    def _pick(self, budgets: Sequence[int]) -> Any:
        key = tuple(budgets)
        matching = [r for r in self._runs if tuple(r.requests.budgets) == key]
        if not matching:
            raise InvalidInput(f"this trace has no {shape_of(list(budgets))} to replay",
                               f"it has {self.shapes_text()}")
        with self._lock:
            k = self._cursor.get(key, 0)
            self._cursor[key] = k + 1
        return matching[k % len(matching)]

    def _stream(self, requests: list[Request], sampling: SamplingParams,
                stop: threading.Event | None) -> Iterator[StreamEvent]:
        """Play the recorded run of this batch's shape, event by event, at the recorded pace (a shape the
        trace lacks is refused here, before anything is generated)."""
        run = self._pick([r.budget(sampling) for r in requests])
        return self._play(run, [r.request_id for r in requests], stop)

    def _play(self, run: Any, ids: list[str], stop: threading.Event | None) -> Iterator[StreamEvent]:
        items = _schedule(run)
        shift = self.clock() - run.t0
        with self._lock:
            self._played = (self._played + [(shift, run)])[-16:]
            self.recorded_source = run.source
        open_ids = set(range(len(ids)))
        recorded = self.stamp == "recorded"
        for item in items:
            due = item.t + shift
            if not self._wait_until(due, stop):
                t = self.clock()
                for i in sorted(open_ids):
                    yield RequestFinished(ids[i], t, "cancelled")
                return
            t = due if recorded else self.clock()
            if item.kind == _STEP:
                rows, token_ids, texts = item.payload
                yield TokenStep([ids[i] for i in rows], token_ids, texts, t)
            elif item.kind == _TOKEN:
                i, token_id, text, n = item.payload
                yield TokenEvent(ids[i], token_id, text, t, n)
            elif item.kind == _SUBMIT:
                i, prompt_tokens = item.payload
                yield RequestSubmitted(ids[i], t, prompt_tokens)
            else:
                i, reason, error = item.payload
                open_ids.discard(i)
                yield RequestFinished(ids[i], t, reason, engine_times=_engine_times(run, i, shift),
                                      error=error or None)
        t = self.clock()
        for i in sorted(open_ids):
            yield RequestFinished(ids[i], t, "cancelled")

    def _wait_until(self, target: float, stop: threading.Event | None) -> bool:
        """Wait until ``target`` on the clock; False when a stop came first."""
        while True:
            if self._cancel.is_set() or (stop is not None and stop.is_set()):
                return False
            remaining = target - self.clock()
            if remaining <= 0:
                return True
            if self._sleep is not None:
                self._sleep(min(remaining, POLL_S))
            elif remaining > SPIN_S:
                time.sleep(min(remaining - SPIN_S, POLL_S))
            else:
                while self.clock() < target:
                    pass
                return True

    def scheduler_samples(self, since: float, until: float) -> dict[str, list[float]]:
        """The recorded engine's per-step samples of the runs played between ``since`` and ``until``, shifted."""
        out: dict[str, list[float]] = {"t": [], "running": [], "waiting": [], "kv_usage": []}
        with self._lock:
            played = list(self._played)
        for shift, run in played:
            s = run.samples
            for k in range(len(s)):
                t = s.t[k] + shift
                if since <= t <= until:
                    out["t"].append(t)
                    out["running"].append(s.running[k])
                    out["waiting"].append(s.waiting[k])
                    out["kv_usage"].append(s.kv_usage[k])
        return out


def _schedule(run: Any) -> list[_Item]:
    """The recorded run's events in time order: submissions, steps (one ``TokenStep`` of its one-token
    events), other token events, finishes."""
    rq = run.requests
    items: list[_Item] = []
    steps: dict[int, tuple[list[int], list[int], list[str]]] = {}
    step_t: dict[int, float] = {}
    last_t = run.t0
    for i in range(len(rq)):
        if not math.isnan(rq.send[i]):
            items.append(_Item(rq.send[i], _SUBMIT, (i, rq.prompt_tokens[i])))
        for j in range(rq.starts[i], rq.starts[i + 1]):
            k, t = rq.tok_step[j], rq.tok_t[j]
            last_t = max(last_t, t)
            if k >= 0 and rq.tok_n[j] == 1:
                rows, token_ids, texts = steps.setdefault(k, ([], [], []))
                rows.append(i)
                token_ids.append(rq.tok_id[j])
                texts.append(rq.tok_text[j])
                step_t[k] = t
            else:
                items.append(_Item(t, _TOKEN, (i, rq.tok_id[j], rq.tok_text[j], rq.tok_n[j])))
    for k, payload in steps.items():
        items.append(_Item(step_t[k], _STEP, payload))
    for i in range(len(rq)):
        if rq.reasons[i]:
            t = rq.finish[i]
            if math.isnan(t):
                t = rq.last_token(i) if not math.isnan(rq.last_token(i)) else last_t
            items.append(_Item(t, _FINISH, (i, rq.reasons[i], rq.errors[i])))
    items.sort(key=lambda it: (it.t, it.kind))
    return items


def _engine_times(run: Any, i: int, shift: float) -> dict[str, float] | None:
    """Request ``i``'s engine times as its engine reported them, moved to the replay's clock."""
    rq = run.requests
    queued, scheduled = rq.queued[i], rq.scheduled[i]
    first, last = rq.first_engine[i], rq.last_engine[i]
    if run.source == "vllm" and not math.isnan(queued) and not math.isnan(scheduled) and not math.isnan(first):
        from tui_lab.engines.vllm_engine import wall_minus_monotonic

        times = {"queued_s": max(0.0, scheduled - queued), "prefill_s": max(0.0, first - scheduled),
                 "decode_s": max(0.0, last - first) if not math.isnan(last) else 0.0,
                 "queued_ts": queued + shift, "scheduled_ts": scheduled + shift, "first_token_ts": first + shift}
        if not math.isnan(last):
            times["last_token_ts"] = last + shift
        if not math.isnan(rq.engine_arrival[i]):
            wmm = wall_minus_monotonic()
            times["arrival_wall_s"] = rq.engine_arrival[i] + shift + wmm
            times["wall_minus_monotonic_s"] = wmm
        if rq.preemptions[i]:
            times["preemptions"] = float(rq.preemptions[i])
        return times
    if run.source == "transformers" and not math.isnan(scheduled) and not math.isnan(first):
        return {"tokenize_s": scheduled - rq.send[i], "prefill_s": first - scheduled,
                "decode_s": (last - first) if not math.isnan(last) else 0.0}
    return None
