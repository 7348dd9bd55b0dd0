"""The Charts tab: a note line over the sweep charts (a sweep) or the result pane (any other experiment).

It shows one experiment's output at a time: a new run clears what an earlier one left, so a result never
stands beside a run it does not belong to. A finished sweep's chart can be kept (``saved``) and drawn again
in a later session (``restore``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, fields

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from tui_lab.formatting import seconds
from tui_lab.lab.experiment import ChartAxis, Result
from tui_lab.lab.load import LoadSweepResult
from tui_lab.lab.sweep import SweepResult
from tui_lab.ui.theme import CHART_REFRESH_S, LATENCY_BUDGET_STEP
from tui_lab.ui.widgets.charts import AXIS_TITLES, ChartPoint, SweepCharts, knee_text
from tui_lab.ui.widgets.result_pane import ResultPane
from tui_lab.views.style import NOTE_STYLE, PARTIAL_STYLE

EMPTY_NOTE = "Run a sweep (batch, length, sampling or load) to fill these charts."


class ChartsPane(Vertical):
    """Note, charts, result pane; the charts redraw on their own timer (≤ 4 Hz), only when they changed."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.holds: str | None = None
        """The experiment whose output the tab shows (None: nothing yet)."""

    def compose(self) -> ComposeResult:
        """Note line, the four charts, the result pane."""
        yield Static(EMPTY_NOTE, id="charts-note")
        yield SweepCharts(id="sweep-charts")
        yield ResultPane(id="inspection")

    def on_mount(self) -> None:
        """The result pane stays hidden until a result comes."""
        self.query_one(ResultPane).display = False
        self.set_interval(CHART_REFRESH_S, self.charts.redraw, name="charts")

    @property
    def charts(self) -> SweepCharts:
        """The sweep charts."""
        return self.query_one(SweepCharts)

    def note(self, text: str | Text) -> None:
        """The line above the charts."""
        self.query_one("#charts-note", Static).update(text)

    def begin_sweep(self, name: str, axis: ChartAxis, threshold_pct: float | None) -> None:
        """A sweep starts: empty charts against ``axis``; points come as each configuration finishes."""
        self.holds = name
        self.charts.reset(axis, threshold_pct)
        self.query_one(ResultPane).display = False
        self.charts.display = True
        self.note(f"{name}: points appear as each configuration finishes · s stops · v zooms · -/+ budget")

    def begin_result(self, name: str) -> None:
        """Another experiment starts: its result replaces the charts when it ends."""
        self.holds = name
        self.charts.display = False
        self.query_one(ResultPane).waiting(f"{name}: running — its result appears here when it ends")
        self.note(f"{name}: running… (s stops)")

    def run_elsewhere(self, name: str) -> None:
        """A run on the Run tab starts: an earlier experiment's output leaves this tab."""
        if self.holds is None:
            return
        self.holds = None
        self.charts.display = False
        self.query_one(ResultPane).display = False
        self.note(f"{name} runs on the Run tab (1); a sweep, comparison or inspection fills this tab")

    def progress(self, name: str, text: str) -> None:
        """Where the experiment is ("batch 8 · run 2/3")."""
        self.note(f"{name}: {text} · s stops")

    def add_point(self, point: ChartPoint) -> None:
        """One more finished configuration."""
        self.charts.add_point(point)

    def finish_sweep(self, name: str, result: SweepResult | LoadSweepResult, partial: bool) -> None:
        """The sweep ended: how many points, the knee, the budget pick and which points are noisy."""
        charts = self.charts
        text = Text(f"{name} finished: {len(charts.points)} points")
        device = str((result.engine or {}).get("device") or "")
        if device.startswith("replay of "):
            text.append(f" · {device}: every figure is the recording's, not this machine's", NOTE_STYLE)
        if partial:
            text.append(" (partial: stopped early)", PARTIAL_STYLE)
        # The sweep's own knee: over its complete points, as the CLI reports it.
        text.append(knee_text(result.knee, charts.axis))
        if result.budget_limits:
            preset = result.plan.latency_budget
            budget = f"{preset} budget" if isinstance(preset, str) else "budget"
            pick = result.budget_pick
            text.append(f" · {budget}: pick {pick.label}" if pick is not None else f" · no point meets the {budget}")
        noisy = [f"{p.label} ({p.noise})" for p in charts.points if p.noise and not p.partial]
        if noisy:
            text.append(" · noisy: " + "; ".join(noisy) + " — read these points with care, or add runs",
                        PARTIAL_STYLE)
        self.note(text)

    def finish_result(self, name: str, result: Result, inspection: bool) -> None:
        """Another experiment ended: its view in the result pane."""
        self.charts.display = False
        self.query_one(ResultPane).show(result)
        self.note(f"{name} — change the prompt in Controls and press r again" if inspection else f"{name} finished")

    def saved(self, name: str) -> dict[str, object]:
        """The sweep on the charts as plain JSON (what ``restore`` draws again)."""
        charts = self.charts
        return {"experiment": name, "axis": charts.axis, "threshold_pct": charts.threshold_pct,
                "points": [asdict(p) for p in charts.points], "time": time.strftime("%Y-%m-%d %H:%M:%S")}

    def restore(self, chart: dict[str, object]) -> bool:
        """Draw a sweep kept by ``saved`` in an earlier session (False: it is not one this lab can draw)."""
        axis, points, name = chart.get("axis"), chart.get("points"), str(chart.get("experiment") or "a sweep")
        if axis not in AXIS_TITLES or not isinstance(points, list):
            return False
        known = {f.name for f in fields(ChartPoint)}
        threshold = chart.get("threshold_pct")
        self.begin_sweep(name, axis, float(threshold) if isinstance(threshold, int | float) else None)
        for point in points:
            if isinstance(point, dict) and "label" in point:
                self.charts.add_point(ChartPoint(**{k: v for k, v in point.items() if k in known}))
        when = f" ({chart['time']})" if chart.get("time") else ""
        self.note(Text(f"{name}: {len(self.charts.points)} points from the last session{when}"
                       f"{knee_text(self.charts.knee, self.charts.axis)} · r measures again"))
        return True

    def set_budget(self, budget_s: float) -> None:
        """Put the latency-budget line at ``budget_s`` (a step's own budget)."""
        self.charts.set_budget(budget_s)

    def move_budget(self, direction: int) -> None:
        """Move the latency-budget line one step and say which point is best within it."""
        charts = self.charts
        factor = LATENCY_BUDGET_STEP if direction > 0 else 1 / LATENCY_BUDGET_STEP
        charts.set_budget(round(charts.budget_s * factor, 4))
        pick = charts.pick
        best = f" → best {charts.axis} within it: {pick.x:g}" if pick is not None else " → no point within it"
        self.note(f"latency budget (E2E p90) {seconds(charts.budget_s)}{best}")
