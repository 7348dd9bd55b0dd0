"""What an engine's stream carries: timestamped events, one kind per moment of a request.

An engine (``tui_lab.engines.base``) turns ``Request`` objects into a stream of these:

* ``RequestSubmitted`` once per request, when it is handed to the engine
  (``t`` is ``t_send`` in METRICS.md);
* ``TokenEvent`` each time new output tokens of a request are known on the host
  (``t`` is taken after the device→host copy, so on CUDA it is synchronized);
  ``n_tokens`` > 1 when one event carries several tokens (merged deltas, chunks);
* or, from engines that decode a batch in lock step, one ``TokenStep`` per decode step:
  one new token for each of several requests, all known at the same ``t``. It says exactly
  what the matching ``TokenEvent``s would say (``TokenStep.events()`` gives them), without an
  object per token: at batch 1024 on a GPU a step takes ~4 ms, and a Python object, a method
  call and a queue entry per token would take a good part of it on the thread that must launch
  the next step;
* ``RequestFinished`` once per request, with why it ended and, where the engine
  knows them, its own per-request times.

All ``t`` values come from the engine's clock (``time.perf_counter`` for real engines, an injected clock
for the scripted one). Nothing here imports torch.
"""

from __future__ import annotations

import queue
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["eos", "length", "cancelled", "error"]


@dataclass(frozen=True, slots=True)
class RequestSubmitted:
    """The request was handed to the engine at ``t`` (its ``t_send``)."""

    request_id: str
    t: float
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """New output of one request, known on the host at ``t``.

    ``token_id`` is the last new token's id (-1 when the engine does not expose
    ids, e.g. a remote server); ``n_tokens`` is how many tokens the event carries.
    """

    request_id: str
    token_id: int
    text: str
    t: float
    n_tokens: int = 1


@dataclass(frozen=True, slots=True)
class TokenStep:
    """One decode step's new tokens, one per request in ``request_ids``, all known on the host at ``t``.

    Parallel columns: ``request_ids[k]`` got token ``token_ids[k]`` with text ``texts[k]``. An
    engine may hand the same ``request_ids`` list to consecutive steps while the set of running
    requests does not change; consumers must not modify the columns.
    """

    request_ids: Sequence[str]
    token_ids: Sequence[int]
    texts: Sequence[str]
    t: float

    def __len__(self) -> int:
        return len(self.token_ids)

    def events(self) -> list[TokenEvent]:
        """The same tokens as one ``TokenEvent`` each."""
        t = self.t
        return [TokenEvent(rid, tid, text, t) for rid, tid, text in
                zip(self.request_ids, self.token_ids, self.texts, strict=True)]


@dataclass(frozen=True, slots=True)
class RequestFinished:
    """The request ended at ``t``.

    ``engine_times`` holds the engine's own timestamps where it has them
    (seconds, e.g. ``{"queued_s": .., "prefill_s": .., "decode_s": ..}``).
    ``error`` is a user-facing message when ``reason == "error"``.
    """

    request_id: str
    t: float
    reason: FinishReason
    engine_times: dict[str, float] | None = None
    error: str | None = None


StreamEvent = RequestSubmitted | TokenEvent | TokenStep | RequestFinished


def per_token(events: Iterable[StreamEvent]) -> Iterator[StreamEvent]:
    """``events`` with every ``TokenStep`` spelled out as ``TokenEvent``s (for consumers that want one per token)."""
    for event in events:
        if type(event) is TokenStep:
            yield from event.events()
        else:
            yield event


class SessionEvents:
    """A load session's mailbox: the events its requests produced, queued by the engine's threads (one event,
    or one list of events per wake-up), and the ids of the requests still open."""

    def __init__(self) -> None:
        self.queue: queue.Queue[StreamEvent | list[StreamEvent]] = queue.Queue()
        self.open: set[str] = set()

    def put(self, item: StreamEvent | list[StreamEvent]) -> None:
        """Queue one event or a list of them (thread-safe)."""
        self.queue.put(item)

    def _take_queued(self, first: StreamEvent | list[StreamEvent] | None) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        item = first
        while True:
            if isinstance(item, list):
                out.extend(item)
            elif item is not None:
                out.append(item)
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return out

    def take(self, timeout: float) -> list[StreamEvent]:
        """The events since the last call: waits up to ``timeout`` for the first, then takes all that are
        there; finished requests leave ``open``."""
        try:
            first = self.queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return []
        out = self._take_queued(first)
        for item in out:
            if isinstance(item, RequestFinished):
                self.open.discard(item.request_id)
        return out

    def take_closing(self) -> tuple[list[StreamEvent], set[str]]:
        """What a closing session still holds: the queued events (a request that already finished leaves
        ``open``; a finish for one that was not open is dropped) and the ids whose ``RequestSubmitted`` was
        among them. The caller then closes what is still open."""
        out: list[StreamEvent] = []
        submitted: set[str] = set()
        for item in self._take_queued(None):
            if isinstance(item, RequestSubmitted):
                submitted.add(item.request_id)
            if isinstance(item, RequestFinished):
                if item.request_id not in self.open:
                    continue
                self.open.discard(item.request_id)
            out.append(item)
        return out, submitted
