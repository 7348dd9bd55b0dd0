"""Sweep charts that fill in point by point (textual-plotext).

Four views of one sweep: throughput vs the swept value; E2E and TTFT p50/p90;
TPOT p50/p90; and throughput vs E2E p90 latency with the knee and a movable
latency-budget line. A numeric sweep (batch, length) is drawn against its
value (log2 axis for batch sizes); a grid (temperature × top-p) as bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Grid
from textual_plotext import PlotextPlot

from tui_lab.metrics import KNEE_GAIN_PCT, TradeoffPoint, budget_pick, knee_by_gain
from tui_lab.ui.theme import NARROW_WIDTH


@dataclass(frozen=True)
class ChartPoint:
    """What the charts need from a sweep point (decoupled from the sweep module's class)."""

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


NOISY_TAIL_RATIO = 2.0
"""E2E p90 above this multiple of p50: requests of one configuration differ too much for one figure."""
NOISY_RUN_SPREAD = 0.25
"""Runs' throughputs spread by more than this fraction of their median: the machine was not steady."""


def noise_of(point: Any) -> str:
    """Why a sweep point's figures are too noisy for a confident curve ("" when they are steady)."""
    e2e = getattr(point, "e2e_s", None)
    p50, p90 = getattr(e2e, "p50", None), getattr(e2e, "p90", None)
    reasons = []
    if p50 and p90 and p90 / p50 > NOISY_TAIL_RATIO:
        reasons.append(f"E2E p90 is {p90 / p50:.1f}× p50")
    rates = sorted(r.output_tokens_per_s for r in getattr(point, "runs", None) or []
                   if getattr(r, "output_tokens_per_s", None))
    if len(rates) >= 2:
        median = rates[len(rates) // 2] if len(rates) % 2 else (rates[len(rates) // 2 - 1] + rates[len(rates) // 2]) / 2
        spread = (rates[-1] - rates[0]) / median if median else 0.0
        if spread > NOISY_RUN_SPREAD:
            reasons.append(f"runs differ by {spread * 100:.0f}%")
    return ", ".join(reasons)


def chart_point(point: Any) -> ChartPoint:
    """Read a ``SweepPoint`` (value, label, Percentiles fields) into a ``ChartPoint``."""
    value = getattr(point, "value", None)
    x = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    def p(name: str, q: str) -> float | None:
        stats = getattr(point, name, None)
        return getattr(stats, q, None) if stats is not None else None

    return ChartPoint(
        label=str(getattr(point, "label", value)),
        x=x,
        throughput=getattr(point, "output_tokens_per_s", None),
        e2e_p50=p("e2e_s", "p50"), e2e_p90=p("e2e_s", "p90"),
        ttft_p50=p("ttft_s", "p50"), ttft_p90=p("ttft_s", "p90"),
        tpot_p50=p("tpot_s", "p50"), tpot_p90=p("tpot_s", "p90"),
        partial=bool(getattr(point, "partial", False)) or getattr(point, "status", "ok") != "ok",
        noise=noise_of(point),
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


def knee_text(knee: Any) -> str:
    """" · knee at batch 8 (next doubling -31% < 10%)" or why there is none yet, for the charts note."""
    if knee is None:
        return ""
    if knee.method.startswith("not reached"):
        return f" · knee not reached up to batch {knee.x:g} (each doubling ≥ +{knee.threshold_pct:g}%)"
    text = f" · knee at batch {knee.x:g} (next doubling {knee.gain_pct:+.0f}% < {knee.threshold_pct:g}%)"
    if getattr(knee, "dips", ()):
        text += " · one-step dip after batch " + ", ".join(f"{x:g}" for x in knee.dips) + " passed over"
    return text


def latency_of(p: ChartPoint) -> float | None:
    """The latency plotted on the trade-off chart: E2E p90, or p50 when p90 needs more samples."""
    return p.e2e_p90 if p.e2e_p90 is not None else p.e2e_p50


class SweepCharts(Grid):
    """The four sweep charts; ``v`` zooms one of them, ``[``/``]``-style keys move the budget."""

    VIEWS = ("all", "throughput", "latency", "tpot", "tradeoff")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.points: list[ChartPoint] = []
        self.kind = "batch"
        self.budget_s = 2.0
        self.threshold_pct = KNEE_GAIN_PCT
        self.view = "all"
        self._dirty = True

    def compose(self) -> ComposeResult:
        """Four plot widgets."""
        for name in self.VIEWS[1:]:
            yield PlotextPlot(id=f"chart-{name}", classes="chart")

    def reset(self, kind: str, budget_s: float | None = None, threshold_pct: float | None = None) -> None:
        """Start a new sweep of ``kind`` ("batch", "length", "sampling") with its budget line and knee threshold."""
        self.kind = kind
        self.points = []
        if budget_s is not None:
            self.budget_s = budget_s
        if threshold_pct is not None:
            self.threshold_pct = threshold_pct
        self._dirty = True

    def add_point(self, point: Any) -> None:
        """Append one finished configuration (drawn at the next chart tick)."""
        self.points.append(point if isinstance(point, ChartPoint) else chart_point(point))
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
    def knee(self) -> Any:
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

    def _xs(self) -> tuple[list[float], list[str], bool]:
        numeric = all(p.x is not None for p in self.points) and bool(self.points)
        if not numeric:
            return [float(i + 1) for i in range(len(self.points))], [p.label for p in self.points], False
        # Tick labels are the bare values: the axis title names them, and short labels never collide.
        labels = [f"{p.x:g}" for p in self.points]
        if self.kind == "batch":
            return [math.log2(p.x) if p.x > 0 else 0.0 for p in self.points], labels, True
        return [p.x for p in self.points], labels, True

    def _canvas(self) -> tuple[int, int, int]:
        """The plot's background colour: plotext's text labels otherwise get a white box."""
        return Color.parse(self.app.theme_variables.get("surface", "#1e1e1e")).rgb

    def _axis_name(self) -> str:
        return {"batch": "batch size (log2)", "length": "max new tokens", "sampling": "temperature/top-p"}.get(
            self.kind, self.kind)

    def _prepare(self, name: str, title: str, ylabel: str):
        widget = self.query_one(f"#chart-{name}", PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        plt.xlabel(self._axis_name() if name != "tradeoff" else "E2E p90 latency (s)")
        plt.ylabel(ylabel)
        return widget, plt

    def _empty(self, widget: PlotextPlot, plt: Any) -> None:
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
        for attr, label, color in series:
            pairs = [(x, getattr(p, attr)) for x, p in zip(xs, self.points, strict=True)
                     if getattr(p, attr) is not None and not p.partial]
            scale = 1000.0 if ylabel.endswith("(ms)") else 1.0
            if pairs:
                px, py = [a for a, _ in pairs], [b * scale for _, b in pairs]
                if numeric and len(pairs) > 1:
                    plt.plot(px, py, marker="braille", color=color, label=label)
                plt.scatter(px, py, marker="dot" if len(series) > 1 else "●", color=color,
                            label=None if numeric and len(pairs) > 1 else label)
            stopped = [(x, getattr(p, attr)) for x, p in zip(xs, self.points, strict=True)
                       if getattr(p, attr) is not None and p.partial]
            if stopped:
                plt.scatter([a for a, _ in stopped], [b * scale for _, b in stopped], marker="x", color=color)
        plt.xticks(xs, labels)
        self._fix_xlim(plt, xs)
        widget.refresh()

    @staticmethod
    def _fix_xlim(plt: Any, xs: list[float]) -> None:
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
            if knee is not None and self.kind == "batch" and not knee.method.startswith("not reached"):
                kx = math.log2(knee.x) if knee.x > 0 else 0.0
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
            "tradeoff", f"tok/s vs latency · budget {self.budget_s:.2f} s (◆ best within, ✚ knee)", "tok/s")
        pts = [(latency_of(p), p.throughput, p) for p in self.points
               if latency_of(p) is not None and p.throughput and not p.partial]
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
            plt.text(p.label.removeprefix("batch "), x=x + x_max * 0.03, y=y, alignment="left",
                     background=self._canvas())
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
