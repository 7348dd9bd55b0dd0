"""Percentiles with one stated method: linear interpolation between order statistics.

This is numpy's default ("linear", Hyndman & Fan type 7). A percentile is
reported together with ``n``; a tail percentile needs enough samples to mean
anything, so ``p99`` is None (shown as "n too small") below ``MIN_SAMPLES_P99``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

METHOD = "linear interpolation (numpy default, type 7)"

MIN_SAMPLES_P90 = 5
"""Below this many samples p90 is little more than the maximum: not reported."""

MIN_SAMPLES_P99 = 100
"""Below this many samples p99 is one of the largest few values: not reported."""


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation; None for no values."""
    xs = sorted(v for v in values if v is not None and not math.isnan(v))
    if not xs:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class Percentiles:
    """p50/p90/p99 of a sample with its size; a tail is None when n is too small."""

    n: int
    p50: float | None
    p90: float | None
    p99: float | None
    mean: float | None

    def to_dict(self) -> dict:
        """JSON form: ``{"p50", "p90", "p99", "mean", "n"}``."""
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99, "mean": self.mean, "n": self.n}

    def label(self, q: int) -> str:
        """Why a percentile is missing, or '' when it is there."""
        value = {50: self.p50, 90: self.p90, 99: self.p99}[q]
        if value is not None:
            return ""
        return "no samples" if self.n == 0 else "n too small"


def summarize(values: Iterable[float | None]) -> Percentiles:
    """Percentiles of the non-None values, hiding tails the sample cannot support."""
    xs = [v for v in values if v is not None and not math.isnan(v)]
    n = len(xs)
    return Percentiles(
        n=n,
        p50=percentile(xs, 50),
        p90=percentile(xs, 90) if n >= MIN_SAMPLES_P90 else None,
        p99=percentile(xs, 99) if n >= MIN_SAMPLES_P99 else None,
        mean=(sum(xs) / n) if n else None,
    )
