"""How far repeated measurements spread, and whether a ratio between two variants survives that spread (pure).

A comparison that noise can flip is not a result. Variants measured interleaved (A B A B A B) give one ratio
per pair; the ratio is reported as its median with the range over the pairs, and it is *measurable* only when
that range stays on one side of 1 — otherwise the lab says the difference is not measurable here.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

MIN_PAIRS = 3
"""Fewer interleaved pairs than this cannot show a spread worth trusting."""


@dataclass(frozen=True)
class Spread:
    """Median, fastest and slowest of repeated measurements (and how many)."""

    median: float
    low: float
    high: float
    n: int

    @property
    def relative(self) -> float:
        """(high − low) / median: 0.1 means the runs spread over 10 % of their median."""
        return (self.high - self.low) / self.median if self.median else 0.0

    def to_dict(self) -> dict[str, float | int]:
        """Plain-JSON form."""
        return {**asdict(self), "relative": self.relative}


@dataclass(frozen=True)
class Ratio:
    """A / B over interleaved pairs: the median ratio, its range over the pairs, and whether it is measurable."""

    median: float
    low: float
    high: float
    pairs: int

    @property
    def measurable(self) -> bool:
        """True when every pair agrees on the side of 1 and there are enough pairs to say so."""
        return self.pairs >= MIN_PAIRS and (self.low > 1.0 or self.high < 1.0)

    def verdict(self, what: str) -> str:
        """One line about ``what`` the ratio measures: "speed-up of the KV cache: 2.31× (2.10–2.52× over 3
        pairs)", or why the difference is not measurable here."""
        span = f"{self.low:.2f}–{self.high:.2f}× over {self.pairs} pair{'s' if self.pairs != 1 else ''}"
        if self.pairs < MIN_PAIRS:
            return f"{what}: {self.median:.2f}× ({span}) — too few repeats to tell a difference from noise"
        if not self.measurable:
            return (f"{what}: not measurable here — the ratio ranged {span}, across 1×: this machine's own noise "
                    "(other work on a busy machine) is as large as the difference")
        return f"{what}: {self.median:.2f}× ({span})"

    def to_dict(self) -> dict[str, float | int | bool]:
        """Plain-JSON form."""
        return {**asdict(self), "measurable": self.measurable}


def spread(values: Sequence[float | None]) -> Spread | None:
    """The spread of the measured ``values`` (None ones were not measured); None when there are none."""
    xs = [v for v in values if v is not None]
    if not xs:
        return None
    return Spread(statistics.median(xs), min(xs), max(xs), len(xs))


def paired_ratio(a: Sequence[float | None], b: Sequence[float | None]) -> Ratio | None:
    """a[i] / b[i] for each interleaved pair where both were measured; None when no pair was."""
    ratios = [x / y for x, y in zip(a, b, strict=False) if x is not None and y]
    if not ratios:
        return None
    return Ratio(statistics.median(ratios), min(ratios), max(ratios), len(ratios))


def spread_ratio(a: Spread, b: Spread) -> Ratio:
    """A / B for measurements that were not paired run by run (separate loads): the ratio of the medians,
    with the widest range any pairing of one A and one B could give (A's lowest over B's highest, and back)."""
    return Ratio(a.median / b.median, a.low / b.high, a.high / b.low, a.n * b.n)
