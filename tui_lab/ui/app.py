"""The lab app: a lesson beside a live panel that runs real generations — its keys and its screen.

The engine lives in its own process (``tui_lab.host``), reached through ``HostLink``, which posts each of
the host's events as a typed message (``tui_lab.ui.messages``). The run lifecycle is ``RunControl``'s;
what was measured is the ``ResultsStore``'s; the widgets draw on their own timers (tokens ≤ 20 Hz, figures
and charts ≤ 4 Hz), so a fast engine cannot flood the screen. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane

from tui_lab.host.server import DEFAULT_FACTORY
from tui_lab.lab.inventory import names
from tui_lab.lessons import ProgressStore
from tui_lab.ui import messages
from tui_lab.ui.commands import LabCommands
from tui_lab.ui.estimate import RunEstimate, run_line
from tui_lab.ui.export import Saved, TraceExport, export_folder, export_results, save_screen
from tui_lab.ui.host_link import HostLink
from tui_lab.ui.keys import LAB_BINDINGS, key_actions
from tui_lab.ui.loaded import LoadedExperiment
from tui_lab.ui.options import AppOptions
from tui_lab.ui.panel import PanelExperiment
from tui_lab.ui.results import ResultsStore, Row
from tui_lab.ui.run_control import RunControl
from tui_lab.ui.screens.help import HelpScreen
from tui_lab.ui.settings import LabSettings
from tui_lab.ui.theme import BATCH_PRESETS, NARROW_WIDTH
from tui_lab.ui.widgets.charts_pane import ChartsPane
from tui_lab.ui.widgets.controls import ControlsForm
from tui_lab.ui.widgets.engine_banner import EngineBanner
from tui_lab.ui.widgets.lesson_pane import LessonPane
from tui_lab.ui.widgets.live_panel import LivePanel
from tui_lab.ui.widgets.results_table import ResultsTab
from tui_lab.ui.widgets.status_line import StatusLine
from tui_lab.ui.widgets.telemetry import GpuPanel


class LabApp(App[int]):
    """inference-lab: lessons beside a live panel of tokens, figures and charts."""

    TITLE = "inference-lab"
    CSS_PATH = "lab.tcss"
    COMMANDS = App.COMMANDS | {LabCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_WIDTH, "-wide")]
    AUTO_FOCUS = None
    """Nothing has focus at start, so single-letter keys act at once (a text box only takes them when chosen)."""

    BINDINGS = LAB_BINDINGS
    """Every key (``tui_lab.ui.keys``)."""

    LESSON_LAYOUTS = ("", "-lesson-only", "-no-lesson")
    """l cycles: lesson beside the panel → lesson alone (room to read) → panel alone (room for charts)."""

    def __init__(self, options: AppOptions | None = None) -> None:
        super().__init__()
        self.options = options or AppOptions()
        self._settings = LabSettings(engine=self.options.engine, engine_options=dict(self.options.engine_options))
        self.store = ResultsStore()
        self.link = HostLink(self.post_message,
                             self.options.engine_factory or self.options.engine_spec or DEFAULT_FACTORY)
        self.estimate = RunEstimate()
        """The loaded engine's pace: how long the experiment in the panel will take here."""
        self.runs = RunControl(self, self.link, self.store, self.estimate, self.refresh_status, self.action_tab)
        self.panel = PanelExperiment(self, LoadedExperiment.of(names()[0]), lambda: self._settings,
                                     lambda settings: self.apply_settings(settings, reload=False), self.refresh_status)
        self.last_export: list[Path] = []
        self.trace_export = TraceExport(self, self._saved)

    # ------------------------------------------------------------------------------------------ screen

    def compose(self) -> ComposeResult:
        """Status line; lesson pane beside the live panel; footer."""
        store = ProgressStore(self.options.progress_path) if self.options.save_progress else None
        yield StatusLine("", id="status")
        with Horizontal(id="main"):
            yield LessonPane(self.options.lessons, store, self.options.lesson, self.options.cursor_blink, id="lesson")
            with Vertical(id="live"):
                yield EngineBanner(id="engine-banner")
                yield Static("", id="progress-line")
                with TabbedContent(id="tabs", initial="run"):
                    with TabPane("Run", id="run"):
                        yield LivePanel(id="live-panel")
                    with TabPane("Controls", id="controls"):
                        yield ControlsForm(self._settings, cursor_blink=self.options.cursor_blink, id="controls-form")
                    with TabPane("Charts", id="charts"):
                        yield ChartsPane(id="charts-pane")
                    with TabPane("Results", id="results"):
                        yield ResultsTab(id="results-tab")
                    with TabPane("GPU", id="gpu"):
                        yield GpuPanel(id="gpu-panel")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        """Load the engine in its host process; show the results kept from earlier sessions."""
        self.query_one("#progress-line").display = False
        self.load_engine()
        progress = self.query_one(LessonPane).store
        if progress is not None:  # the Results rows and the last sweep's chart the steps kept
            self.query_one(ResultsTab).restore(progress.results(), self.store)
            chart = progress.last_chart()
            if chart is not None:
                self.query_one(ChartsPane).restore(chart[2])

    def on_resize(self) -> None:
        """The status line drops its title on narrow terminals."""
        self.refresh_status()

    def refresh_status(self) -> None:
        # While something runs the line names it, whichever step the learner has moved to since.
        running = self.runs.loaded.name if self.runs.busy and self.runs.loaded is not None else None
        state = "running" if running else self.query_one(EngineBanner).state
        self.query_one(StatusLine).show(self._settings, running or self.loaded.name, state)
        pane = self.query_one(LessonPane)
        step = pane.step
        pane.show_run_line(run_line(self.loaded, step is None or bool(step.experiment),
                                    self.estimate.text(self.loaded, self._settings), running))

    # ----------------------------------------------------------------------- what tests and tools read

    @property
    def settings(self) -> LabSettings:
        """The learner's current settings."""
        return self._settings

    @settings.setter
    def settings(self, settings: LabSettings) -> None:
        self.apply_settings(settings, reload=False)

    @property
    def busy(self) -> str | None:
        """What is running ("run", "sweep", an experiment's name) or None."""
        return self.runs.busy

    @property
    def engine_state(self) -> str:
        """idle, loading, ready or failed."""
        return self.query_one(EngineBanner).state

    @property
    def results(self) -> list[Row]:
        """Every run and sweep point this session (what export writes)."""
        return self.store.rows

    # ------------------------------------------------------------------------------------------ engine

    def load_engine(self) -> None:
        """(Re)start the engine host and load the selected engine with its options in it."""
        if self.runs.busy:
            self.notify("stop the run first (s), then reload", severity="warning")
            return
        banner = self.query_one(EngineBanner)
        banner.start_loading(self._settings.label())
        self.estimate.forget()
        try:
            self.link.start(self._settings.load_command())
        except Exception as exc:  # no process could be started: say so, keep running
            banner.failed(f"the engine process could not start: {exc}", "")
        self.refresh_status()

    def _live(self, message: messages.HostMessage) -> bool:
        """Whether to show ``message``: it comes from the host started last, and the app is not shutting down (a
        host's last events can still be queued while the screen is taken down)."""
        return self.is_running and self.link.current(message)

    def on_engine_loading(self, message: messages.EngineLoading) -> None:
        """A loading stage."""
        if self._live(message):
            self.query_one(EngineBanner).stage(message.stage, message.fraction)

    def on_engine_ready(self, message: messages.EngineReady) -> None:
        """The engine is loaded: a step takes its values for the device it runs on."""
        if self._live(message):
            self.query_one(EngineBanner).ready(message.info, message.source)
            self.panel.engine_device(message.info.device)
            self.refresh_status()

    def on_engine_paced(self, message: messages.EnginePaced) -> None:
        """The engine's pace was measured: the step can say how long its run will take here."""
        if self._live(message):
            self.estimate.measured(message.pace)
            self.refresh_status()

    def on_engine_failed(self, message: messages.EngineFailed) -> None:
        """The engine did not load."""
        if self._live(message):
            self.query_one(EngineBanner).failed(message.message, message.hint)
            self.refresh_status()

    def on_host_died(self, message: messages.HostDied) -> None:
        """The engine process ended by itself: say so; what was measured stays."""
        if self._live(message):
            self.link.lost()
            self.query_one(EngineBanner).died(message.message)
            self.runs.died(message)
            self.refresh_status()

    def on_tokens_arrived(self, message: messages.TokensArrived) -> None:
        """A frame of tokens."""
        if self._live(message):
            self.runs.tokens(message)

    def on_run_progress(self, message: messages.RunProgress) -> None:
        """A progress line."""
        if self._live(message):
            self.runs.progress(message)

    def on_partial_result(self, message: messages.PartialResult) -> None:
        """A sweep point."""
        if self._live(message):
            self.runs.partial(message)

    def on_run_finished(self, message: messages.RunFinished) -> None:
        """A run ended."""
        if self._live(message):
            self.runs.finished(message)

    def on_run_failed(self, message: messages.RunFailed) -> None:
        """A run failed."""
        if self._live(message):
            self.runs.failed(message)

    # ------------------------------------------------------------------------------ lessons and settings

    def on_lesson_pane_step_shown(self, message: LessonPane.StepShown) -> None:
        """A lesson step is on screen: its experiment goes in the panel."""
        self.panel.step_shown(message.lesson, message.step)

    def on_controls_form_experiment_value(self, message: ControlsForm.ExperimentValue) -> None:
        """A value typed into one of the experiment's boxes."""
        self.panel.typed(message)

    @property
    def loaded(self) -> LoadedExperiment:
        """The experiment in the panel (a lesson step loads its own)."""
        return self.panel.loaded

    def load_experiment(self, loaded: LoadedExperiment) -> None:
        """Put ``loaded`` in the panel."""
        self.panel.load(loaded)

    def on_controls_form_settings_changed(self, message: ControlsForm.SettingsChanged) -> None:
        """A valid edit in the controls (the engine or its options reload it)."""
        self.apply_settings(message.settings, reload=message.reload)

    def apply_settings(self, settings: LabSettings, reload: bool) -> None:
        self._settings = settings
        form = self.query_one(ControlsForm)
        if form.settings != settings:
            form.set_values(settings)
        self.refresh_status()
        if reload:
            self.load_engine()

    # ----------------------------------------------------------------------------------------- actions

    def action_run(self) -> None:
        """Run the loaded experiment in the engine host (every experiment the same way, by name); on a step
        without an experiment, say so and what runs instead."""
        step = self.query_one(LessonPane).step
        if step is not None and not step.experiment and not self.runs.busy:
            self.notify(f"this step has no experiment: running {self.loaded.name} as set in the panel "
                        "(its result answers no step)", timeout=4)
        self.runs.start(self.loaded, self._settings, self.query_one(EngineBanner))

    def action_stop(self) -> None:
        """Stop within one decode step; the partial result is kept and marked."""
        self.runs.stop()

    def action_step(self, delta: int) -> None:
        """Next / previous lesson step (crossing into the next / previous lesson at the ends)."""
        self.query_one(LessonPane).move(delta)

    def action_lesson(self, delta: int) -> None:
        """Next / previous lesson, at its first step."""
        self.query_one(LessonPane).move_lesson(delta)

    def action_batch(self, direction: int) -> None:
        """The next batch-size quick pick up (1) or down (-1)."""
        now = self._settings.batch_size
        picks = [b for b in BATCH_PRESETS if b > now] if direction > 0 else [b for b in BATCH_PRESETS if b < now][::-1]
        batch = picks[0] if picks else (BATCH_PRESETS[-1] if direction > 0 else BATCH_PRESETS[0])
        self.apply_settings(self._settings.with_(batch_size=batch), reload=False)
        self.notify(f"batch size {batch}", timeout=1.5)

    def action_toggle_greedy(self) -> None:
        """Greedy decoding on/off."""
        self.apply_settings(self._settings.with_(greedy=not self._settings.greedy), reload=False)
        self.notify("greedy decoding" if self._settings.greedy else f"sampling at T={self._settings.temperature}",
                    timeout=1.5)

    def action_toggle_lesson(self) -> None:
        """Cycle the lesson pane: beside the panel, alone, hidden."""
        main = self.query_one("#main")
        current = next((c for c in self.LESSON_LAYOUTS[1:] if main.has_class(c)), "")
        nxt = self.LESSON_LAYOUTS[(self.LESSON_LAYOUTS.index(current) + 1) % len(self.LESSON_LAYOUTS)]
        main.remove_class(*self.LESSON_LAYOUTS[1:])
        if nxt:
            main.add_class(nxt)
        self.notify({"": "lesson beside the panel", "-lesson-only": "lesson only (l again: panel only)",
                     "-no-lesson": "panel only (l again: both)"}[nxt], timeout=2)

    def action_tab(self, tab: str) -> None:
        """Switch the live panel's tab (the cursor stays out of the boxes, so single-letter keys keep working)."""
        self.query_one(TabbedContent).active = tab
        if isinstance(self.focused, Input) and (self.focused.id or "").startswith(("ctl-", "exp-")):
            self.screen.set_focus(None)

    def action_request(self, delta: int) -> None:
        """Show another request's tokens."""
        self.query_one(LivePanel).select(delta)

    def action_toggle_requests(self) -> None:
        """One progress row per request, beside (or, when narrow, instead of) the tokens."""
        self.query_one(LivePanel).toggle_list()

    def action_timeline(self, what: str) -> None:
        """The Run tab's timeline: t shows / hides it; z Z < > move its time axis, { } its rows."""
        self.action_tab("run")
        self.query_one(LivePanel).timeline(what)

    def action_chart_view(self) -> None:
        """All charts, or one zoomed."""
        self.notify(f"charts: {self.query_one(ChartsPane).charts.cycle_view()}", timeout=1.5)

    def action_budget(self, direction: int) -> None:
        """Move the latency-budget line on the trade-off chart."""
        self.query_one(ChartsPane).move_budget(direction)

    def action_guess(self) -> None:
        """Put the cursor in the prediction box (when the step has one)."""
        box = self.query_one("#predict-input", Input)
        if box.parent is not None and box.parent.display:
            box.focus()
        else:
            self.notify("this step asks for no prediction", timeout=1.5)

    def action_scroll_lesson(self, lines: int) -> None:
        """Scroll the lesson text."""
        self.query_one("#lesson-scroll").scroll_relative(y=lines, animate=False)

    def action_focus_panel(self) -> None:
        """Leave a text box so single-letter keys act again."""
        self.screen.set_focus(None)

    def action_focus_next(self) -> None:
        """Tab: with the Controls tab shown, the next of its boxes (round and round); elsewhere the next widget."""
        if not self._controls_shown() or not self.query_one(ControlsForm).cycle_focus(1):
            super().action_focus_next()

    def action_focus_previous(self) -> None:
        """shift+Tab: with the Controls tab shown, the previous of its boxes (from the last one)."""
        if not self._controls_shown() or not self.query_one(ControlsForm).cycle_focus(-1):
            super().action_focus_previous()

    def _controls_shown(self) -> bool:
        return len(self.screen_stack) == 1 and self.query_one(TabbedContent).active == "controls"

    def action_reload_engine(self) -> None:
        """Reload the engine with the current settings."""
        self.load_engine()

    def action_help(self) -> None:
        """Keys and what the panels mean."""
        self.push_screen(HelpScreen(key_actions(self.BINDINGS, self.get_key_display)))

    def action_export(self) -> None:
        """Write the results (JSON + CSV) and, through the engine host, the last experiment's trace; say where."""
        folder = export_folder(self.options.export_dir)
        results = export_results(self.store, folder, self._settings, self.query_one(EngineBanner).info)
        self.trace_export.ask(results, folder, self.link)

    def on_trace_written(self, message: messages.TraceWritten) -> None:
        """The engine host wrote the trace (or said why not)."""
        if self._live(message):
            self.trace_export.written(message.saved)

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """Save an SVG of the screen (in the export folder unless told where) and say where it went."""
        self._saved(save_screen(self, Path(path) if path else export_folder(self.options.export_dir), filename))

    def _saved(self, saved: Saved) -> None:
        self.last_export = saved.paths or self.last_export
        self.notify(saved.message, severity=saved.severity, timeout=8)

    def on_unmount(self) -> None:
        """End the engine host and everything it started (its children, device memory)."""
        self.link.close()


def run_app(options: AppOptions | None = None) -> int:
    """Run the lab in this terminal; returns the exit status."""
    return int(LabApp(options or AppOptions()).run() or 0)
