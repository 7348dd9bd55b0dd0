"""Per-request latency figures from token timestamps (definitions: METRICS.md).

A ``RequestTrace`` holds what an engine reported for one request: when it was
sent and when each output event arrived, with how many tokens each event
carried. Everything else is computed from those numbers and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass
class RequestTrace:
    """Timestamps of one request: ``t_send`` and one entry per output event."""

    request_id: str
    t_send: float
    event_times: list[float] = field(default_factory=list)
    event_tokens: list[int] = field(default_factory=list)
    prompt_tokens: int = 0

    def add(self, t: float, n_tokens: int = 1) -> None:
        """Record an output event at ``t`` carrying ``n_tokens`` tokens."""
        self.event_times.append(t)
        self.event_tokens.append(n_tokens)

    @property
    def output_tokens(self) -> int:
        """n: the number of output tokens received."""
        return sum(self.event_tokens)

    @property
    def first_token_time(self) -> float | None:
        """t_1, or None when nothing arrived."""
        return self.event_times[0] if self.event_times else None

    @property
    def last_token_time(self) -> float | None:
        """t_n, or None when nothing arrived."""
        return self.event_times[-1] if self.event_times else None


def ttft(trace: RequestTrace) -> float | None:
    """Time to first token, ``t_1 - t_send``; None for a request with no output."""
    t1 = trace.first_token_time
    return None if t1 is None else t1 - trace.t_send


def e2e(trace: RequestTrace) -> float | None:
    """End-to-end latency, ``t_n - t_send``; None for a request with no output."""
    tn = trace.last_token_time
    return None if tn is None else tn - trace.t_send


def tpot(trace: RequestTrace) -> float | None:
    """Time per output token after the first, ``(E2E - TTFT) / (n - 1)``; None when n < 2."""
    n = trace.output_tokens
    if n < 2:
        return None
    return (trace.event_times[-1] - trace.event_times[0]) / (n - 1)


def decode_speed(trace: RequestTrace) -> float | None:
    """Per-user decode speed ``1 / TPOT`` in tokens/s; None when TPOT is undefined or 0."""
    value = tpot(trace)
    return None if not value else 1.0 / value


def prefill_speed(trace: RequestTrace) -> float | None:
    """Input tokens per second of TTFT; None without output or prompt length."""
    first = ttft(trace)
    if first is None or first <= 0 or trace.prompt_tokens <= 0:
        return None
    return trace.prompt_tokens / first


def itl_samples(traces: Iterable[RequestTrace]) -> list[float]:
    """Inter-token gaps ``t_i - t_{i-1}`` pooled over requests.

    One sample per gap between consecutive events; when an event carries k > 1
    tokens its gap counts once (the engine gave no finer timing).
    """
    gaps: list[float] = []
    for trace in traces:
        times = trace.event_times
        gaps.extend(b - a for a, b in zip(times, times[1:], strict=False))
    return gaps


def _window(traces: Sequence[RequestTrace]) -> float | None:
    """Last token time - first send time, over requests that were sent; None if empty or not positive.

    A request stopped before it was sent has a NaN ``t_send``; ``min`` over floats with a
    NaN depends on the order, so such requests are left out explicitly.
    """
    sends = [t.t_send for t in traces if not math.isnan(t.t_send)]
    ended = [t.last_token_time for t in traces if t.last_token_time is not None]
    if not sends or not ended:
        return None
    duration = max(ended) - min(sends)
    return duration if duration > 0 else None


def output_throughput(traces: Sequence[RequestTrace]) -> float | None:
    """Σ n over requests / (last token time - first send time), in tokens/s."""
    duration = _window(traces)
    if duration is None:
        return None
    return sum(t.output_tokens for t in traces) / duration


@dataclass(frozen=True)
class SLO:
    """Latency limits a request must meet to count toward goodput (None = no limit)."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None

    def met_by(self, trace: RequestTrace) -> bool:
        """True when the request produced output and meets every set limit."""
        checks = ((self.ttft_s, ttft(trace)), (self.tpot_s, tpot(trace)), (self.e2e_s, e2e(trace)))
        if e2e(trace) is None:
            return False
        for limit, value in checks:
            if limit is None:
                continue
            if value is None:
                # TPOT is undefined for a one-token request: nothing to violate.
                continue
            if value > limit:
                return False
        return True


def goodput(traces: Sequence[RequestTrace], slo: SLO) -> float | None:
    """Requests meeting every SLO per second of the run's duration."""
    duration = _window(traces)
    if duration is None:
        return None
    return sum(1 for t in traces if slo.met_by(t)) / duration
