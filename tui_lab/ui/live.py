"""What the live panel shows of a run in progress, bounded in memory.

Each frame of token columns from the engine host is folded into a ``LiveRun``
(under a lock) and the UI reads a consistent snapshot on its redraw timer. The fold
works on the frame's columns (``apply_frame``): a counter and two times per token,
no event object, so a run at hundreds of thousands of tokens a second leaves the
UI's thread free for keys and redraws. Only the newest ``MAX_TOKENS_ON_SCREEN`` tokens per request and
``MAX_RECENT_GAPS`` pooled gaps are kept, so a long run at a high token rate
keeps memory flat; the complete record lives in the ``RunResult`` the run
returns. The timeline draws the idle time between a request's tokens from their times, kept whole
(8 bytes a token event in an ``array``, appended in the same pass). Plain Python: no Textual here, so it
is unit-testable on its own.
"""

from __future__ import annotations

import threading
from array import array
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tui_lab.engines.base import Request
from tui_lab.engines.events import RequestFinished, RequestSubmitted, StreamEvent, TokenEvent, per_token
from tui_lab.host.protocol import Frame
from tui_lab.metrics import Percentiles, summarize
from tui_lab.ui.theme import MAX_RECENT_GAPS, MAX_TOKENS_ON_SCREEN


@dataclass(frozen=True, slots=True)
class ShownToken:
    """One token event as drawn: its text, the gap before it, and whether it is the first (gap = TTFT)."""

    index: int
    text: str
    gap_s: float
    first: bool
    n_tokens: int = 1


@dataclass
class LiveRequest:
    """Display state of one request."""

    request_id: str
    prompt: str
    budget: int
    t_send: float | None = None
    t_first: float | None = None
    t_last: float | None = None
    produced: int = 0
    finish_reason: str | None = None
    error: str | None = None
    t_finish: float | None = None
    engine_times: dict[str, float] | None = None
    """The engine's own times of the request, from its finish (vLLM's queue and prefill stamps)."""
    times: array[float] = field(default_factory=lambda: array("d"))
    """Every token event's time, in order (the timeline's idle cells)."""
    tokens: deque[tuple[int, str, float, bool, int]] = field(default_factory=lambda: deque(maxlen=MAX_TOKENS_ON_SCREEN))
    """The newest tokens as ``ShownToken`` fields (a tuple each; ``snapshot_request`` makes the objects)."""

    @property
    def ttft_s(self) -> float | None:
        """First token time minus send time."""
        if self.t_first is None or self.t_send is None:
            return None
        return self.t_first - self.t_send

    @property
    def tpot_s(self) -> float | None:
        """(last - first) / (n - 1), per METRICS.md."""
        if self.produced < 2 or self.t_first is None or self.t_last is None:
            return None
        return (self.t_last - self.t_first) / (self.produced - 1)

    @property
    def tokens_per_s(self) -> float | None:
        """What one reader of this request sees: 1 / TPOT."""
        value = self.tpot_s
        return None if not value else 1.0 / value


@dataclass(frozen=True)
class LiveFigures:
    """The live figures row."""

    elapsed_s: float
    tokens_done: int
    tokens_total: int
    system_tokens_per_s: float | None
    ttft: Percentiles
    itl: Percentiles
    tpot: Percentiles
    finished: int
    requests: int


class LiveRun:
    """Thread-safe, bounded fold of a run's events for the live panel."""

    def __init__(self, requests: Sequence[Request], max_new_tokens: int) -> None:
        self._lock = threading.Lock()
        self.requests: list[LiveRequest] = [
            LiveRequest(r.request_id, r.prompt, r.max_new_tokens or max_new_tokens) for r in requests
        ]
        self._by_id = {r.request_id: r for r in self.requests}
        self._default_budget = max_new_tokens
        self._gaps: deque[float] = deque(maxlen=MAX_RECENT_GAPS)
        self._t0: float | None = None
        self._t_latest: float | None = None
        self.version = 0
        """Bumped on every applied batch, so a redraw timer knows whether anything changed."""

    def _request(self, request_id: str) -> LiveRequest:
        req = self._by_id.get(request_id)
        if req is None:
            # Sweeps and comparisons create their requests themselves: adopt them as they appear.
            req = LiveRequest(request_id, "", self._default_budget)
            self._by_id[request_id] = req
            self.requests.append(req)
        return req

    def _submitted(self, event: RequestSubmitted) -> None:
        req = self._request(event.request_id)
        if req.finish_reason is not None:
            # The same id in a later run of a sweep: start its row afresh.
            req.t_first = req.t_last = req.t_finish = req.engine_times = None
            req.produced, req.finish_reason, req.error = 0, None, None
            req.tokens.clear()
            del req.times[:]
        req.t_send = event.t
        if self._t0 is None or event.t < self._t0:
            self._t0 = event.t
        self._seen(event.t)

    def _finished(self, event: RequestFinished) -> None:
        req = self._request(event.request_id)
        req.finish_reason = event.reason
        req.error = event.error
        req.t_finish = event.t
        req.engine_times = event.engine_times
        self._seen(event.t)

    def _seen(self, t: float) -> None:
        if self._t_latest is None or t > self._t_latest:
            self._t_latest = t

    def apply(self, events: Iterable[StreamEvent]) -> None:
        """Fold a batch of engine events (tests, and anything that holds events rather than frames)."""
        with self._lock:
            for event in per_token(events):
                if isinstance(event, TokenEvent):
                    self._tokens([self._request(event.request_id)], [0], [event.t], [event.text], [event.n_tokens])
                elif isinstance(event, RequestSubmitted):
                    self._submitted(event)
                elif isinstance(event, RequestFinished):
                    self._finished(event)
            self.version += 1

    def apply_frame(self, frame: Frame, ids: Sequence[str]) -> None:
        """Fold one frame of the host's token columns; ``ids`` is the run's request table (index → id)."""
        with self._lock:
            for submitted in frame.submitted:
                self._submitted(submitted)
            if len(frame.index):
                rows = [self._request(rid) for rid in ids]
                self._tokens(rows, frame.index, frame.t, frame.text, frame.n_tokens)
            for finished in frame.finished:
                self._finished(finished)
            self.version += 1

    def _tokens(self, rows: Sequence[LiveRequest], index: Sequence[int], times: Sequence[float],
                texts: Sequence[str], counts: Sequence[int]) -> None:
        """Token columns → each request's counters, times, newest shown tokens, and the pooled gaps."""
        gaps = self._gaps
        for i, t, text, n in zip(index, times, texts, counts, strict=True):
            req = rows[i]
            last = req.t_last
            if last is None:
                gap = t - req.t_send if req.t_send is not None else 0.0
                req.t_first = t
                req.tokens.append((req.produced, text, gap, True, n))
            else:
                gap = t - last
                gaps.append(gap)
                req.tokens.append((req.produced, text, gap, False, n))
            req.t_last = t
            req.times.append(t)
            req.produced += n
        if len(times):
            self._seen(max(times))

    def reset(self) -> None:
        """Forget every request (a sweep moves on to its next configuration)."""
        with self._lock:
            self.requests = []
            self._by_id = {}
            self._gaps.clear()
            self._t0 = None
            self._t_latest = None
            self.version += 1

    def window(self) -> tuple[float | None, float | None]:
        """The run's first send and the latest time any event carried (None before the first)."""
        with self._lock:
            return self._t0, self._t_latest

    def index_of(self, request_id: str) -> int | None:
        """Where request ``request_id`` is in ``requests`` (None if it is not there)."""
        with self._lock:
            req = self._by_id.get(request_id)
            return None if req is None else self.requests.index(req)

    def snapshot_request(self, index: int) -> tuple[LiveRequest, list[ShownToken]]:
        """A request and a copy of its shown tokens, read consistently."""
        with self._lock:
            req = self.requests[index]
            return req, [ShownToken(*fields) for fields in req.tokens]

    def rows(self) -> list[tuple[str, int, int, str | None, float | None, float | None]]:
        """One row per request: (id, produced, budget, finish reason, TTFT, tokens/s)."""
        with self._lock:
            return [(r.request_id, r.produced, r.budget, r.finish_reason, r.ttft_s, r.tokens_per_s)
                    for r in self.requests]

    def figures(self) -> LiveFigures:
        """Elapsed time (engine clock), token counts and live percentiles."""
        with self._lock:
            elapsed = 0.0
            if self._t0 is not None and self._t_latest is not None:
                elapsed = max(0.0, self._t_latest - self._t0)
            done = sum(r.produced for r in self.requests)
            total = sum(r.budget for r in self.requests)
            rate = done / elapsed if elapsed > 0 and done else None
            return LiveFigures(
                elapsed_s=elapsed,
                tokens_done=done,
                tokens_total=total,
                system_tokens_per_s=rate,
                ttft=summarize(r.ttft_s for r in self.requests),
                itl=summarize(self._gaps),
                tpot=summarize(r.tpot_s for r in self.requests),
                finished=sum(1 for r in self.requests if r.finish_reason is not None),
                requests=len(self.requests),
            )
