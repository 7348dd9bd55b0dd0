"""How long the experiment in the panel will take here, said before it runs ("about 70 s here").

The engine host measures the loaded engine's pace right after it loads (``EnginePaced``); every finished
run on that engine refines it. ``RunEstimate`` keeps that pace and prices the loaded experiment's planned
work with the values a run would use now. ``run_line`` is the line the lesson pane shows under the step.
Pure: no Textual here.
"""

from __future__ import annotations

from tui_lab.errors import LabError
from tui_lab.formatting import MISSING
from tui_lab.lab.pace import Pace, about, observe_run, observe_step
from tui_lab.lab.run import RunResult
from tui_lab.lab.sweep import SweepPoint
from tui_lab.ui.loaded import LoadedExperiment
from tui_lab.ui.settings import LabSettings


class RunEstimate:
    """The loaded engine's pace (None until measured) and what it says about the experiment in the panel."""

    def __init__(self) -> None:
        self.pace: Pace | None = None

    def measured(self, pace: Pace) -> None:
        """The host measured the freshly loaded engine."""
        self.pace = pace

    def forget(self) -> None:
        """Another engine is loading: the old pace says nothing about it."""
        self.pace = None

    def observe_run(self, result: RunResult) -> None:
        """A finished run on the loaded engine: its decode step and prefill refine the pace."""
        if self.pace is not None and not result.partial and not result.error:
            self.pace = observe_run(self.pace, result)

    def observe_point(self, point: SweepPoint) -> None:
        """A finished sweep point: its median decode step at its batch size refines the pace."""
        if self.pace is not None and point.complete:
            self.pace = observe_step(self.pace, point.batch_size, point.tpot_s.p50)

    def seconds(self, loaded: LoadedExperiment, settings: LabSettings) -> float | None:
        """How long a run of ``loaded`` with ``settings`` would take here (None: not known)."""
        try:
            params = loaded.run_params(settings)
        except LabError:
            return None
        plan = loaded.experiment.planned_work(params, settings.engine)
        if plan is not None and not plan:
            return 0.0
        return None if self.pace is None else self.pace.seconds(plan)

    def text(self, loaded: LoadedExperiment, settings: LabSettings) -> str:
        """"about 70 s here", or "—" when it cannot be told."""
        return about(self.seconds(loaded, settings))


def run_line(loaded: LoadedExperiment, step_has_experiment: bool, estimate: str, running: str | None) -> str:
    """What ``r`` does on the step shown, and about how long it takes here (``running``: the experiment
    running now, if any).

    A reading step says it has no experiment and what ``r`` runs there (the experiment as set in the panel,
    whose result answers no step).
    """
    how_long = f"time here: {MISSING}" if estimate == MISSING else estimate
    values = " (its CPU values)" if loaded.on_cpu and loaded.step is not None and loaded.step.cpu else ""
    if running:
        return f"{running} is running · s stops it"
    if not step_has_experiment:
        return f"this step has no experiment · r runs {loaded.name} as set in the panel, for no step · {how_long}"
    if loaded.replay:
        return f"r plays {loaded.name} as recorded on a GPU (trace {loaded.replay}), at its recorded pace"
    return f"r runs {loaded.name}{values} · {how_long}"
