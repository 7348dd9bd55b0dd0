"""The aggregate figures of one run (a batch of requests), from their traces."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tui_lab.metrics.latency import RequestTrace, decode_speed, e2e, itl_samples, output_throughput, tpot, ttft
from tui_lab.metrics.percentiles import Percentiles, summarize

PERCENTILE_FIGURES = ("ttft_s", "e2e_s", "tpot_s", "itl_s", "decode_tokens_per_s")
"""The figures a run (or a sweep point over its runs) gives as percentiles."""


def percentile_dicts(figures: object) -> dict[str, dict]:
    """The JSON form of each of ``PERCENTILE_FIGURES`` that ``figures`` holds as ``Percentiles``."""
    return {name: getattr(figures, name).to_dict() for name in PERCENTILE_FIGURES}


@dataclass(frozen=True)
class RunSummary:
    """Percentiles over requests (ITL over pooled gaps) and system throughput.

    ``requests`` counts the requests that were sent; ``cut`` those of them that a stop or Ctrl-C cut
    mid-stream and that were left out of the latency percentiles (their tokens still count in the
    output tokens and the throughput: they did arrive).
    """

    ttft_s: Percentiles
    e2e_s: Percentiles
    tpot_s: Percentiles
    itl_s: Percentiles
    decode_tokens_per_s: Percentiles
    output_tokens_per_s: float | None
    output_tokens: int
    requests: int
    cut: int = 0

    def to_dict(self) -> dict:
        """JSON form used by ``run --json`` and result files."""
        return {
            **percentile_dicts(self),
            "output_tokens_per_s": self.output_tokens_per_s,
            "output_tokens": self.output_tokens,
            "requests": self.requests,
            "cut": self.cut,
        }


def summarize_run(traces: Sequence[RequestTrace], latency: Sequence[RequestTrace] | None = None) -> RunSummary:
    """Aggregate a run's traces per METRICS.md.

    ``traces`` are the requests that were sent (output tokens, throughput, the count); ``latency``, when
    given, the ones whose latency counts (a request cut mid-stream has a truncated E2E and TPOT): the
    others are counted in ``cut``.
    """
    timed = traces if latency is None else latency
    return RunSummary(
        ttft_s=summarize(ttft(t) for t in timed),
        e2e_s=summarize(e2e(t) for t in timed),
        tpot_s=summarize(tpot(t) for t in timed),
        itl_s=summarize(itl_samples(timed)),
        decode_tokens_per_s=summarize(decode_speed(t) for t in timed),
        output_tokens_per_s=output_throughput(traces),
        output_tokens=sum(t.output_tokens for t in traces),
        requests=len(traces),
        cut=len(traces) - len(timed),
    )
