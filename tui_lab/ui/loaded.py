"""The experiment loaded in the panel: which one, its values, and the lesson step it came from.

A step's preset and the values the learner types into the experiment's own boxes are checked by the
experiment (``Experiment.validate``); the Controls' general fields are laid over them when a run starts,
where the experiment says a field sets a parameter (``Experiment.controls``). Pure: no Textual here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tui_lab.engines.options import TEST_ENGINES
from tui_lab.lab.experiment import ChartAxis, Experiment, Params
from tui_lab.lab.inventory import get
from tui_lab.lessons import Lesson, Step
from tui_lab.metrics import BUDGET_PRESETS
from tui_lab.params import Param, Value
from tui_lab.ui.settings import LabSettings


@dataclass(frozen=True)
class LoadedExperiment:
    """An experiment with its checked values; ``lesson``/``step`` name the step it belongs to (or None);
    ``on_cpu`` says the step's preset was taken for a CPU (its ``cpu`` values over the others)."""

    experiment: Experiment
    values: Params
    lesson: Lesson | None = None
    step: Step | None = None
    on_cpu: bool = False

    @classmethod
    def of(cls, name: str, given: dict[str, Value] | None = None, lesson: Lesson | None = None,
           step: Step | None = None, on_cpu: bool = False) -> LoadedExperiment:
        """Experiment ``name`` with ``given`` over its defaults (``InvalidInput`` in one line when refused)."""
        experiment = get(name)
        return cls(experiment, experiment.validate(given), lesson, step, on_cpu)

    @classmethod
    def from_step(cls, lesson: Lesson, step: Step, on_cpu: bool = False) -> LoadedExperiment | None:
        """The experiment a lesson step loads with its preset for the device (``on_cpu``: the step's CPU values
        over the others); None for a reading step."""
        if not step.experiment:
            return None
        return cls.of(step.experiment, step.preset(on_cpu), lesson, step, on_cpu)

    def detached(self) -> LoadedExperiment:
        """The same experiment and values, belonging to no step (its result answers no prediction)."""
        return replace(self, lesson=None, step=None)

    def preset_for(self, on_cpu: bool) -> LoadedExperiment | None:
        """The step's experiment again with its preset for the other device (None: the preset would not change)."""
        if self.lesson is None or self.step is None or on_cpu == self.on_cpu:
            return None
        if not self.step.cpu:
            return replace(self, on_cpu=on_cpu)
        return LoadedExperiment.from_step(self.lesson, self.step, on_cpu)

    @property
    def name(self) -> str:
        """The experiment's name."""
        return self.experiment.name

    @property
    def replay(self) -> str | None:
        """The trace a run plays back instead of running the loaded engine: the step's recording, on a CPU."""
        return self.step.replay if self.on_cpu and self.step is not None and self.step.replay else None

    def with_value(self, key: str, value: Value) -> LoadedExperiment:
        """A copy with ``key`` set, checked with the other values (``InvalidInput`` when refused)."""
        return replace(self, values=self.experiment.validate({**self.values, key: value}))

    def own_params(self) -> tuple[Param, ...]:
        """The parameters no Controls field sets: they get boxes of their own."""
        return tuple(p for p in self.experiment.params if p.name not in self.experiment.controls)

    def field_changes(self) -> dict[str, Value]:
        """The general fields these values set, so the Controls show what a run will use."""
        changes: dict[str, Value] = {}
        for param, name in self.experiment.controls.items():
            value = self.values.get(param)
            if isinstance(value, list):  # a list of prompts: the field holds the first
                value = value[0] if value else None
            if value is None:
                continue
            if name == "temperature":
                changes["greedy"] = value == 0
                if value:
                    changes["temperature"] = value
            else:
                changes[name] = value
        return changes

    def run_params(self, settings: LabSettings) -> Params:
        """The values with the learner's general fields laid over them, checked (``InvalidInput`` when refused)."""
        given = dict(self.values)
        for param, name in self.experiment.controls.items():
            given[param] = settings.field_value(name)
        return self.experiment.validate(given)

    def chart_axis(self, params: Params) -> ChartAxis | None:
        """What a run with ``params`` charts its partial results against (None: it shows its result instead)."""
        return self.experiment.chart_axis(params)

    def refusal(self, loaded_engine: str | None) -> tuple[str, str] | None:
        """(message, what to do) when the step is about another engine than the loaded one, else None.

        The test engine stands in for every engine.
        """
        wanted = self.step.engine if self.step is not None else None
        if not wanted or not loaded_engine or wanted == loaded_engine or loaded_engine in TEST_ENGINES:
            return None
        return (f"this step runs on the {wanted} engine, but {loaded_engine} is loaded",
                f"set engine to {wanted} in Controls (2) and press m, then r")

    def budget_line_s(self, default: float) -> float:
        """Where the trade-off chart's budget line starts: the budget's E2E limit (p90, else p50), else ``default``."""
        budget = self.values.get("latency_budget")
        limits = BUDGET_PRESETS[budget].limits if isinstance(budget, str) and budget in BUDGET_PRESETS else budget
        if isinstance(limits, dict):
            for key in ("e2e_p90", "e2e_p50"):
                limit = limits.get(key)
                if isinstance(limit, (int, float)):
                    return float(limit)
        return default
