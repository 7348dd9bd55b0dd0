"""Sweep charts that fill in point by point (textual-plotext).

Four views of one sweep: throughput vs the swept value; E2E and TTFT p50/p90;
TPOT p50/p90; and throughput vs E2E p90 latency with the knee and a movable
latency-budget line. A numeric sweep (batch, length, concurrency, request rate) is drawn
against its value (log2 axis for the doubling ones: batch sizes, concurrencies); a grid
(temperature × top-p) as bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Grid
from textual_plotext import Plot, PlotextPlot

from tui_lab.formatting import number, seconds
from tui_lab.lab.experiment import ChartAxis
from tui_lab.lab.load import LoadPoint
from tui_lab.lab.sweep import SweepPoint
from tui_lab.metrics import KNEE_GAIN_PCT, Knee, Percentiles, TradeoffPoint, budget_pick, knee_by_gain
from tui_lab.ui.theme import DEFAULT_LATENCY_BUDGET_S, NARROW_WIDTH


@dataclass(frozen=True)
class ChartPoint:
    """What the charts and the results table need from a sweep or load point."""

    label: str
    x: float | None
    throughput: float | None
    e2e_p50: float | None
    e2e_p90: float | None
    ttft_p50: float | None
    ttft_p90: float | None
    tpot_p50: float | None
    tpot_p90: float | None
    partial: bool = False
    """Stopped before every run finished, or failed: drawn apart and left out of the knee and the pick."""
    noise: str = ""
    """Why the figures of this point are not to be trusted as they stand ("" when they are)."""
    batch_size: int | None = None
    requests: int = 0
    """Requests the figures pool (the E2E sample count)."""
    status: str = "ok"
    error: str | None = None


NOISY_TAIL_RATIO = 2.0
"""E2E p90 above this multiple of p50: requests of one configuration differ too much for one figure."""
NOISY_RUN_SPREAD = 0.25
"""Runs' throughputs spread by more than this fraction of their median: the machine was not steady."""


def noise_of(point: SweepPoint) -> str:
    """Why a sweep point's figures are too noisy for a confident curve ("" when they are steady)."""
    p50, p90 = point.e2e_s.p50, point.e2e_s.p90
    reasons = []
    if p50 and p90 and p90 / p50 > NOISY_TAIL_RATIO:
        reasons.append(f"E2E p90 is {p90 / p50:.1f}× p50")
    rates = sorted(r.output_tokens_per_s for r in point.runs if r.output_tokens_per_s)
    if len(rates) >= 2:
        half = len(rates) // 2
        median = rates[half] if len(rates) % 2 else (rates[half - 1] + rates[half]) / 2
        spread = (rates[-1] - rates[0]) / median if median else 0.0
        if spread > NOISY_RUN_SPREAD:
            reasons.append(f"runs differ by {spread * 100:.0f}%")
    return ", ".join(reasons)


def chart_point(item: SweepPoint | LoadPoint) -> ChartPoint:
    """A sweep point (x: its value) or a load point (x: its concurrency or rate; throughput: over the window,
    the one its knee uses) as a ``ChartPoint``."""
    point = item.point if isinstance(item, LoadPoint) else item
    value = item.value
    x = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    throughput = item.window_output_tokens_per_s if isinstance(item, LoadPoint) else item.output_tokens_per_s

    def p(stats: Percentiles) -> tuple[float | None, float | None]:
        return stats.p50, stats.p90

    (e2e50, e2e90), (ttft50, ttft90), (tpot50, tpot90) = p(point.e2e_s), p(point.ttft_s), p(point.tpot_s)
    return ChartPoint(
        label=point.label, x=x, throughput=throughput, e2e_p50=e2e50, e2e_p90=e2e90, ttft_p50=ttft50,
        ttft_p90=ttft90, tpot_p50=tpot50, tpot_p90=tpot90, partial=point.partial or point.status != "ok",
        noise=noise_of(point), batch_size=point.batch_size, requests=point.e2e_s.n, status=point.status,
        error=point.error,
    )


def tradeoff_points(points: list[ChartPoint]) -> list[TradeoffPoint]:
    """Points usable for the knee and the budget pick: complete ones (a stopped point's figures cover
    only part of its runs, as the CLI's sweep leaves them out too)."""
    return [
        TradeoffPoint(x=p.x, throughput=p.throughput,
                      latency={"e2e_p50": p.e2e_p50, "e2e_p90": p.e2e_p90 if p.e2e_p90 is not None else p.e2e_p50,
                               "ttft_p90": p.ttft_p90, "tpot_p90": p.tpot_p90})
        for p in points if p.x is not None and p.throughput and not p.partial
    ]


AXIS_TITLES: dict[ChartAxis, str] = {
    "batch": "batch size (log2)", "length": "max new tokens", "sampling": "temperature/top-p",
    "concurrency": "concurrency (log2)", "rate": "requests/s",
}
"""Each chart axis's title."""
DOUBLING_AXES: tuple[ChartAxis, ...] = ("batch", "concurrency")
"""Axes swept by doublings: drawn on a log2 scale, with a knee."""


def axis_value(axis: ChartAxis, x: float) -> str:
    """A point of ``axis`` in words: "batch 8", "concurrency 4", "rate 2 req/s"."""
    return {"rate": f"rate {number(x)} req/s", "length": f"{number(x)} tokens"}.get(axis, f"{axis} {number(x)}")


def knee_text(knee: Knee | None, axis: ChartAxis = "batch") -> str:
    """" · knee at batch 8 (next doubling -31% < 10%)" or why there is none yet, for the charts note."""
    if knee is None:
        return ""
    if knee.method.startswith("not reached"):
        return f" · knee not reached up to {axis_value(axis, knee.x)} (each doubling ≥ +{knee.threshold_pct:g}%)"
    gain = f"{knee.gain_pct:+.0f}%" if knee.gain_pct is not None else "less"
    text = f" · knee at {axis_value(axis, knee.x)} (next doubling {gain} < {knee.threshold_pct:g}%)"
    if knee.dips:
        text += f" · one-step dip after {axis} " + ", ".join(number(x) for x in knee.dips) + " passed over"
    return text


def latency_of(p: ChartPoint) -> float | None:
    """The latency plotted on the trade-off chart: E2E p90, or p50 when p90 needs more samples."""
    return p.e2e_p90 if p.e2e_p90 is not None else p.e2e_p50


class SweepCharts(Grid):
    """The four sweep charts; ``v`` zooms one of them, ``-`` / ``+`` move the budget line."""

    VIEWS = ("all", "throughput", "latency", "tpot", "tradeoff")

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.points: list[ChartPoint] = []
        self.axis: ChartAxis = "batch"
        self.budget_s = DEFAULT_LATENCY_BUDGET_S
        self.threshold_pct = KNEE_GAIN_PCT
        self.view = "all"
        self._dirty = True

    def compose(self) -> ComposeResult:
        """Four plot widgets."""
        for name in self.VIEWS[1:]:
            yield PlotextPlot(id=f"chart-{name}", classes="chart")

    def reset(self, axis: ChartAxis, threshold_pct: float | None = None) -> None:
        """Start a new sweep charted against ``axis``, with its knee threshold."""
        self.axis = axis
        self.points = []
        if threshold_pct is not None:
            self.threshold_pct = threshold_pct
        self._dirty = True

    def add_point(self, point: ChartPoint) -> None:
        """Append one finished configuration (drawn at the next chart tick)."""
        self.points.append(point)
        self._dirty = True

    def set_budget(self, budget_s: float) -> None:
        """Move the latency-budget line."""
        self.budget_s = budget_s
        self._dirty = True

    def cycle_view(self) -> str:
        """Show all four charts or zoom into one; returns the new view."""
        views = self.VIEWS if not self._narrow() else self.VIEWS[1:]
        current = self.view if self.view in views else views[-1]
        self.view = views[(views.index(current) + 1) % len(views)]
        self._apply_view()
        return self.view

    def _narrow(self) -> bool:
        return self.app.size.width < NARROW_WIDTH

    def _apply_view(self) -> None:
        """Four charts when there is room; on a narrow terminal one at a time (v cycles)."""
        view = self.view
        if view == "all" and self._narrow():
            view = "throughput"
        for name in self.VIEWS[1:]:
            self.query_one(f"#chart-{name}", PlotextPlot).display = view in ("all", name)
        self.set_class(view != "all", "-zoomed")
        self._dirty = True

    def on_resize(self) -> None:
        """Re-choose between the grid and a single chart."""
        self._apply_view()

    def on_mount(self) -> None:
        """Pick the layout for the starting size."""
        self._apply_view()

    @property
    def knee(self) -> Knee | None:
        """The knee of throughput vs x over the complete points (None before two)."""
        return knee_by_gain(tradeoff_points(self.points), self.threshold_pct)

    @property
    def pick(self) -> TradeoffPoint | None:
        """The highest-throughput point within the budget (E2E p90)."""
        return budget_pick(tradeoff_points(self.points), {"e2e_p90": self.budget_s})

    def redraw(self) -> None:
        """Redraw if anything changed (called by the app's chart timer, ≤ 4 Hz)."""
        if not self._dirty or not self.is_mounted:
            return
        self._dirty = False
        self._draw_throughput()
        self._draw_latency()
        self._draw_tpot()
        self._draw_tradeoff()

    def _scaled(self, x: float) -> float:
        """Where ``x`` lies on the axis: doublings on a log2 scale."""
        if self.axis in DOUBLING_AXES:
            return math.log2(x) if x > 0 else 0.0
        return x

    def _xs(self) -> tuple[list[float], list[str], bool]:
        numeric = bool(self.points) and all(p.x is not None for p in self.points)
        if not numeric:
            return [float(i + 1) for i in range(len(self.points))], [p.label for p in self.points], False
        # Tick labels are the bare values: the axis title names them, and short labels never collide.
        xs = [p.x for p in self.points if p.x is not None]
        return [self._scaled(x) for x in xs], [f"{x:g}" for x in xs], True

    def _canvas(self) -> tuple[int, int, int]:
        """The plot's background colour: plotext's text labels otherwise get a white box."""
        return Color.parse(self.app.theme_variables.get("surface", "#1e1e1e")).rgb

    def _prepare(self, name: str, title: str, ylabel: str) -> tuple[PlotextPlot, Plot]:
        widget = self.query_one(f"#chart-{name}", PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        plt.xlabel(AXIS_TITLES[self.axis] if name != "tradeoff" else "E2E p90 latency (s)")
        plt.ylabel(ylabel)
        return widget, plt

    @staticmethod
    def _empty(widget: PlotextPlot, plt: Plot) -> None:
        plt.text("waiting for the first point…", x=0.5, y=0.5, alignment="center")
        plt.xlim(0, 1)
        plt.ylim(0, 1)
        widget.refresh()

    def _line(self, name: str, title: str, ylabel: str, series: list[tuple[str, str, str]]) -> None:
        widget, plt = self._prepare(name, title, ylabel)
        if not self.points:
            self._empty(widget, plt)
            return
        xs, labels, numeric = self._xs()
        scale = 1000.0 if ylabel.endswith("(ms)") else 1.0
        for attr, label, color in series:
            values = [(x, getattr(p, attr), p.partial) for x, p in zip(xs, self.points, strict=True)
                      if getattr(p, attr) is not None]
            whole = [(x, y * scale) for x, y, partial in values if not partial]
            if whole:
                px, py = [a for a, _ in whole], [b for _, b in whole]
                if numeric and len(whole) > 1:
                    plt.plot(px, py, marker="braille", color=color, label=label)
                plt.scatter(px, py, marker="dot" if len(series) > 1 else "●", color=color,
                            label=None if numeric and len(whole) > 1 else label)
            stopped = [(x, y * scale) for x, y, partial in values if partial]
            if stopped:
                plt.scatter([a for a, _ in stopped], [b for _, b in stopped], marker="x", color=color)
        plt.xticks(xs, labels)
        self._fix_xlim(plt, xs)
        widget.refresh()

    @staticmethod
    def _fix_xlim(plt: Plot, xs: list[float]) -> None:
        """A fixed x range, so tick labels land on the same cells at every redraw."""
        lo, hi = min(xs), max(xs)
        pad = (hi - lo) * 0.05 or 0.5
        plt.xlim(lo - pad, hi + pad)

    def _draw_throughput(self) -> None:
        widget, plt = self._prepare("throughput", "output throughput", "tok/s")
        if not self.points:
            self._empty(widget, plt)
            return
        xs, labels, numeric = self._xs()
        ys = [p.throughput or 0.0 for p in self.points]
        if numeric:
            steady = [(x, y) for x, y, p in zip(xs, ys, self.points, strict=True) if not p.partial and not p.noise]
            noisy = [(x, y) for x, y, p in zip(xs, ys, self.points, strict=True) if not p.partial and p.noise]
            stopped = [(x, y) for x, y, p in zip(xs, ys, self.points, strict=True) if p.partial and y]
            whole = sorted(steady + noisy)
            if len(whole) > 1:
                plt.plot([a for a, _ in whole], [b for _, b in whole], marker="braille", color="cyan")
            if steady:
                plt.scatter([a for a, _ in steady], [b for _, b in steady], marker="●", color="cyan")
            if noisy:
                plt.scatter([a for a, _ in noisy], [b for _, b in noisy], marker="?", color="orange",
                            label="noisy (see note)")
            if stopped:
                plt.scatter([a for a, _ in stopped], [b for _, b in stopped], marker="x", color="yellow",
                            label="stopped: not in the knee")
            knee = self.knee
            if knee is not None and self.axis in DOUBLING_AXES and not knee.method.startswith("not reached"):
                kx = self._scaled(knee.x)
                plt.vline(kx, color="magenta")
                plt.text(f"knee {knee.x:g}", x=kx, y=max(ys) * 0.95, color="magenta", background=self._canvas())
            plt.xticks(xs, labels)
            self._fix_xlim(plt, xs)
        else:
            plt.bar(labels, ys, color=["yellow" if p.partial else "orange" if p.noise else "cyan"
                                       for p in self.points])
        widget.refresh()

    def _draw_latency(self) -> None:
        self._line("latency", "E2E and TTFT p50/p90", "latency (s)",
                   [("e2e_p50", "E2E p50", "blue"), ("e2e_p90", "E2E p90", "red"),
                    ("ttft_p50", "TTFT p50", "green"), ("ttft_p90", "TTFT p90", "magenta")])

    def _draw_tpot(self) -> None:
        self._line("tpot", "TPOT p50/p90", "TPOT (ms)",
                   [("tpot_p50", "p50", "green"), ("tpot_p90", "p90", "red")])

    def _draw_tradeoff(self) -> None:
        widget, plt = self._prepare(
            "tradeoff", f"tok/s vs latency · budget {seconds(self.budget_s)} (◆ best within, ✚ knee)", "tok/s")
        pts = [(latency, p.throughput, p) for p in self.points
               if (latency := latency_of(p)) is not None and p.throughput and not p.partial]
        if not pts:
            self._empty(widget, plt)
            return
        xs = [a for a, _, _ in pts]
        ys = [b for _, b, _ in pts]
        if len(pts) > 1:
            plt.plot(xs, ys, marker="braille", color="cyan")
        plt.scatter(xs, ys, marker="●", color="cyan")
        x_max = max(max(xs), self.budget_s) * 1.1
        for x, y, p in pts:
            # Beside the marker, not on it: the marker shows the pick and the knee.
            shown = f"{p.x:g}" if p.x is not None else p.label
            plt.text(shown, x=x + x_max * 0.03, y=y, alignment="left", background=self._canvas())
        plt.vline(self.budget_s, color="yellow")
        pick = self.pick
        if pick is not None:
            plt.scatter([pick.latency["e2e_p90"]], [pick.throughput], marker="◆", color="green")
        knee = self.knee
        if knee is not None and not knee.method.startswith("not reached"):
            for x, y, p in pts:
                if p.x == knee.x:
                    plt.scatter([x], [y], marker="✚", color="magenta")
        plt.xlim(0, x_max)
        widget.refresh()
