"""What the live panel shows of a run in progress, bounded in memory.

The generation worker folds each time-batch of engine events into a
``LiveRun`` (under a lock) and the UI reads a consistent snapshot on its
redraw timer. Only the newest ``MAX_TOKENS_ON_SCREEN`` tokens per request and
``MAX_RECENT_GAPS`` pooled gaps are kept, so a long run at a high token rate
keeps memory flat; the complete record lives in the ``RunResult`` the run
returns. Plain Python: no Textual here, so it is unit-testable on its own.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tui_lab.engines.base import Request, RequestFinished, RequestSubmitted, StreamEvent, TokenEvent
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
    tokens: deque[ShownToken] = field(default_factory=lambda: deque(maxlen=MAX_TOKENS_ON_SCREEN))

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

    def apply(self, events: Iterable[StreamEvent]) -> None:
        """Fold a batch of events (called from the worker thread)."""
        with self._lock:
            for event in events:
                req = self._by_id.get(event.request_id)
                if req is None:
                    # Sweeps and comparisons create their requests themselves: adopt them as they appear.
                    req = LiveRequest(event.request_id, "", self._default_budget)
                    self._by_id[event.request_id] = req
                    self.requests.append(req)
                if isinstance(event, TokenEvent):
                    self._token(req, event)
                elif isinstance(event, RequestSubmitted):
                    if req.finish_reason is not None:
                        # The same id in a later run of a sweep: start its row afresh.
                        req.t_first = req.t_last = None
                        req.produced, req.finish_reason, req.error = 0, None, None
                        req.tokens.clear()
                    req.t_send = event.t
                    if self._t0 is None or event.t < self._t0:
                        self._t0 = event.t
                elif isinstance(event, RequestFinished):
                    req.finish_reason = event.reason
                    req.error = event.error
                self._t_latest = event.t if self._t_latest is None else max(self._t_latest, event.t)
            self.version += 1

    def _token(self, req: LiveRequest, event: TokenEvent) -> None:
        first = req.t_first is None
        previous = req.t_send if first else req.t_last
        gap = event.t - previous if previous is not None else 0.0
        if first:
            req.t_first = event.t
        else:
            self._gaps.append(gap)
        req.t_last = event.t
        req.tokens.append(ShownToken(req.produced, event.text, gap, first, event.n_tokens))
        req.produced += event.n_tokens

    def reset(self) -> None:
        """Forget every request (a sweep moves on to its next configuration)."""
        with self._lock:
            self.requests = []
            self._by_id = {}
            self._gaps.clear()
            self._t0 = None
            self._t_latest = None
            self.version += 1

    def snapshot_request(self, index: int) -> tuple[LiveRequest, list[ShownToken]]:
        """A request and a copy of its shown tokens, read consistently."""
        with self._lock:
            req = self.requests[index]
            return req, list(req.tokens)

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
