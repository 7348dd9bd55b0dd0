"""The experiment in the live panel: a lesson step's (with its values for the device the engine runs on), or
one the learner changed in Controls."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import App

from tui_lab.errors import LabError
from tui_lab.lab.pace import runs_on_cpu
from tui_lab.lessons import Lesson, Step
from tui_lab.ui.loaded import LoadedExperiment
from tui_lab.ui.settings import LabSettings
from tui_lab.ui.theme import DEFAULT_LATENCY_BUDGET_S
from tui_lab.ui.widgets.charts_pane import ChartsPane
from tui_lab.ui.widgets.controls import ControlsForm


class PanelExperiment:
    """Which experiment the panel holds and with which values; the app's status follows it."""

    def __init__(self, app: App[int], loaded: LoadedExperiment, settings: Callable[[], LabSettings],
                 apply_settings: Callable[[LabSettings], None], refresh: Callable[[], None]) -> None:
        self.app = app
        self.loaded = loaded
        self.settings = settings
        self.apply_settings = apply_settings
        self.refresh = refresh
        self.on_cpu = settings().option("device") == "cpu"
        """Whether the engine runs on a CPU (a step then takes its CPU values): what was asked for until the
        engine says where it runs."""

    def step_shown(self, lesson: Lesson, step: Step) -> None:
        """Load the step's experiment with its preset for the device; a reading step keeps the experiment in the
        panel, belonging to no step (a run of it answers no step's prediction)."""
        try:
            loaded = LoadedExperiment.from_step(lesson, step, self.on_cpu)
        except LabError as exc:
            self.app.notify(f"this step's experiment cannot be loaded: {exc}", severity="error")
            loaded = None
        if loaded is not None:
            self.load(loaded)
        else:
            self.loaded = self.loaded.detached()
            self.refresh()

    def load(self, loaded: LoadedExperiment) -> None:
        """Put ``loaded`` in the panel: its own values in Controls, the fields it sets, its budget line."""
        self.loaded = loaded
        # A budget line moved with -/+ belongs to the step it was moved on: this one starts at its own.
        self.app.query_one(ChartsPane).set_budget(loaded.budget_line_s(DEFAULT_LATENCY_BUDGET_S))
        self.app.query_one(ControlsForm).show_experiment(loaded.name, loaded.own_params(), loaded.values)
        changes = loaded.field_changes()
        if changes:
            try:
                self.apply_settings(self.settings().with_(**changes).validate())
            except LabError as exc:
                self.app.notify(f"step preset refused: {exc}", severity="warning")
        self.refresh()

    def typed(self, message: ControlsForm.ExperimentValue) -> None:
        """A value typed into one of the experiment's boxes: checked with its other values, used by the next run."""
        form = self.app.query_one(ControlsForm)
        try:
            loaded = self.loaded.with_value(message.key, message.value)
        except LabError as exc:
            form.experiment_refused(message.key, exc.message, message.box)
            return
        self.loaded = loaded
        form.show_experiment(loaded.name, loaded.own_params(), loaded.values)
        form.show_error("")
        self.app.notify(f"{loaded.name}: {message.key} set — press r to run", timeout=2)

    def engine_device(self, device: str) -> None:
        """The engine runs on ``device``: the step in the panel takes its preset for it (its CPU values on a CPU)."""
        self.on_cpu = runs_on_cpu(device)
        again = self.loaded.preset_for(self.on_cpu)
        if again is None:
            return
        if again.values == self.loaded.values:
            self.loaded = again
            return
        self.load(again)
        if again.on_cpu:
            self.app.notify(f"the engine runs on a CPU: {again.name} takes this step's CPU values so it ends in "
                            "about a minute and a half", timeout=4)

