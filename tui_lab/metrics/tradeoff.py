"""Choosing a configuration: the knee of a throughput curve and a latency-budget pick.

Both work on ``TradeoffPoint``s (one per configuration of a sweep), so they serve
batch-size sweeps, length sweeps and anything else with a throughput and latencies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tui_lab.formatting import seconds

KNEE_GAIN_PCT = 10.0
"""Default X for the knee: the doubling after which throughput grows by less than X%."""


@dataclass(frozen=True)
class TradeoffPoint:
    """One configuration: its x (e.g. batch size), throughput and latency figures (seconds)."""

    x: float
    throughput: float
    latency: dict[str, float | None]
    """e.g. {"e2e_p50": .., "e2e_p90": .., "ttft_p50": .., "tpot_p90": ..}"""


@dataclass(frozen=True)
class Knee:
    """Where an extra doubling stops paying: ``x`` and the gain it found (percent)."""

    x: float
    gain_pct: float | None
    threshold_pct: float
    method: str
    dips: tuple[float, ...] = ()
    """x values where the gain fell below the threshold for one step only and then recovered:
    one noisy measurement, passed over rather than taken as the knee."""


def knee_by_gain(points: Sequence[TradeoffPoint], threshold_pct: float = KNEE_GAIN_PCT) -> Knee | None:
    """The x after which more steps (doublings in a 1, 2, 4, ... sweep) buy < threshold% throughput.

    Points are taken in order of x. The gain is normalised per doubling
    (``(T_next / T)^(1 / log2(x_next / x)) - 1``) so uneven steps (1 → 8 → 32)
    compare fairly. The drop must last: a step under the threshold followed by a
    step that gains the threshold again is one noisy dip (listed in ``dips``), not
    the knee. A drop at the last step has nothing after it to confirm it; it is
    taken, and ``method`` says so. If no step falls under the threshold, the last
    x is the best seen and the knee is not reached: ``gain_pct`` of the last step is given.
    """
    pts = sorted((p for p in points if p.throughput > 0 and p.x > 0), key=lambda p: p.x)
    if len(pts) < 2:
        return None
    import math

    steps: list[tuple[TradeoffPoint, float]] = []
    for a, b in zip(pts, pts[1:], strict=False):
        doublings = math.log2(b.x / a.x)
        if doublings > 0:
            steps.append((a, ((b.throughput / a.throughput) ** (1.0 / doublings) - 1.0) * 100.0))
    if not steps:
        return None
    dips: list[float] = []
    for i, (a, gain) in enumerate(steps):
        if gain >= threshold_pct:
            continue
        if i + 1 < len(steps):
            if steps[i + 1][1] >= threshold_pct:
                dips.append(a.x)  # the next step recovers: noise, not the knee
                continue
            method = "gain per doubling (stayed below for two steps)"
        else:
            method = "gain per doubling (last step: a larger batch would confirm it)"
        return Knee(x=a.x, gain_pct=gain, threshold_pct=threshold_pct, method=method, dips=tuple(dips))
    return Knee(x=pts[-1].x, gain_pct=steps[-1][1], threshold_pct=threshold_pct, method="not reached (last point)",
                dips=tuple(dips))


def knee_by_balance(points: Sequence[TradeoffPoint], latency_key: str = "e2e_p50") -> float | None:
    """The seed notebook's rule: the x where normalised latency and inverted normalised
    throughput are closest (both min-max scaled to [0, 1] over the sweep)."""
    pts = [(p, v) for p in points if (v := p.latency.get(latency_key)) is not None]
    if len(pts) < 2:
        return None
    lat = [v for _, v in pts]
    thr = [p.throughput for p, _ in pts]

    def scale(v: float, lo: float, hi: float) -> float:
        return 0.0 if hi == lo else (v - lo) / (hi - lo)

    best, _ = min(
        pts,
        key=lambda pv: abs(
            scale(pv[1], min(lat), max(lat)) - (1.0 - scale(pv[0].throughput, min(thr), max(thr)))
        ),
    )
    return best.x


@dataclass(frozen=True)
class BudgetPreset:
    """A latency budget for a use case: limits on metric keys of ``TradeoffPoint.latency``."""

    name: str
    limits: dict[str, float]
    note: str = "rule of thumb"


BUDGET_PRESETS: dict[str, BudgetPreset] = {
    "chat": BudgetPreset(
        "chat", {"ttft_p90": 0.5, "tpot_p90": 0.05}, "rule of thumb: first words within ~0.5 s, faster than reading"
    ),
    "rag": BudgetPreset("rag", {"e2e_p90": 3.0}, "rule of thumb: a grounded answer within ~3 s"),
    "summarization": BudgetPreset("summarization", {"e2e_p90": 5.0}, "rule of thumb: a summary within ~5 s"),
    "agent": BudgetPreset("agent", {"e2e_p50": 2.0}, "rule of thumb: each tool-calling step within ~2 s"),
}


def budget_pick(points: Sequence[TradeoffPoint], limits: dict[str, float]) -> TradeoffPoint | None:
    """The highest-throughput point whose latency figures all stay within ``limits``.

    A point missing a limited figure (e.g. p90 with too few samples) does not qualify.
    """
    ok = []
    for p in points:
        values = [p.latency.get(k) for k in limits]
        if all(v is not None and v <= lim for v, lim in zip(values, limits.values(), strict=False)):
            ok.append(p)
    return max(ok, key=lambda p: p.throughput, default=None)


def knee_note(knee: Knee | None, label: Callable[[float], str], gained: str = "throughput") -> str:
    """One line naming the knee (with its threshold), or why there is none; ``label(x)`` names a point."""
    if knee is None:
        return "knee: needs at least two complete points"
    if knee.method.startswith("not reached"):
        text = (f"knee: not reached — every doubling still gained >= {knee.threshold_pct:g}% {gained} "
                f"(best so far: {label(knee.x)})")
    else:
        text = (f"knee: {label(knee.x)} — the next step gains {knee.gain_pct or 0:.1f}% {gained} per doubling "
                f"(< {knee.threshold_pct:g}%)")
    if knee.dips:
        dips = ", ".join(label(x) for x in knee.dips)
        text += f"; a one-step dip after {dips} recovered at the next step (noise, passed over)"
    return text


def budget_note(limits: dict[str, float] | None, preset: str | None, pick: str | None) -> str:
    """One line on the budget (a preset says it is a rule of thumb) and its pick, ``pick`` already worded."""
    if limits is None:
        return "no latency budget given"
    shown = ", ".join(f"{key} <= {seconds(limit)}" for key, limit in limits.items())
    label = f"{preset} budget ({BUDGET_PRESETS[preset].note}: {shown})" if preset else f"budget {shown}"
    return f"{label}: pick {pick}" if pick is not None else f"{label}: no complete point stays within it"
