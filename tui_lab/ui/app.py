"""The lab app: a lesson beside a live panel that runs real generations.

The engine lives in its own process (``tui_lab.host``): the app asks it to load, to run an
experiment by name, to stop, and receives time-batched token frames, progress lines, partial
and final results as ``HostEvent`` messages. On a GPU a decode step takes under a millisecond,
so the thread that queues the next one must never wait for this interpreter's redraws.
The app redraws on timers (tokens ≤ 20 Hz, figures and charts ≤ 4 Hz), so a fast engine cannot
flood the screen. Nothing here imports torch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import Footer, Input, Label, ProgressBar, Static, TabbedContent, TabPane

from tui_lab.engines.base import Request
from tui_lab.errors import InvalidInput, LabError, OutOfMemory
from tui_lab.lab.export import write_csv, write_json
from tui_lab.metrics.tradeoff import KNEE_GAIN_PCT
from tui_lab.ui import experiments as lab_experiments
from tui_lab.ui.commands import LabCommands
from tui_lab.ui.live import LiveRun
from tui_lab.ui.messages import HostEvent
from tui_lab.ui.screens.help import HelpScreen
from tui_lab.ui.settings import ENGINE_CHOICES, LabSettings
from tui_lab.ui.theme import (
    BATCH_PRESETS,
    CHART_REFRESH_S,
    DEFAULT_LATENCY_BUDGET_S,
    ERROR_STYLE,
    LATENCY_BUDGET_STEP,
    NARROW_WIDTH,
    OK_STYLE,
    PARTIAL_STYLE,
)
from tui_lab.ui.widgets.charts import SweepCharts, chart_point, knee_text
from tui_lab.ui.widgets.controls import ControlsForm
from tui_lab.ui.widgets.lesson_pane import LessonPane, lesson_loader
from tui_lab.ui.widgets.live_panel import LivePanel
from tui_lab.ui.widgets.results_table import ResultsTable
from tui_lab.ui.widgets.telemetry import GpuPanel

EngineFactory = Callable[..., Any]
"""Same call shape as ``tui_lab.engines.create_engine(name, model=, device=, cache_dir=)``."""


@dataclass
class AppOptions:
    """How the lab starts (the CLI fills these from its flags)."""

    model: str = "embedded"
    engine: str = "transformers"
    device: str = "auto"
    lesson: str | None = None
    cache_dir: str | None = None
    engine_factory: EngineFactory | None = None
    """A factory object (tests, benchmarks lending a loaded engine): the host loop then runs in a thread of
    this process. Leave it None to run the engine in its own process."""
    engine_spec: str | None = None
    """``"module:function"`` making engines inside the host process (tests use a scripted one); None means
    ``tui_lab.engines.create_engine``."""
    engine_options: dict[str, Any] = field(default_factory=dict)
    """Extra options for ``engine_spec``/``engine_factory`` (e.g. a scripted engine's clock)."""
    """Tests inject a scripted engine here; None means ``tui_lab.engines.create_engine``."""
    export_dir: str | None = None
    """Where exports and screenshots go (default: ``./inference-lab-results``)."""
    lessons: list[Any] | None = None
    """Lessons to show instead of loading ``lessons/`` (tests and snapshots use fixed ones)."""
    engine_choices: tuple[str, ...] = field(default=ENGINE_CHOICES)
    """Engine names the controls accept."""
    save_progress: bool = True
    """Keep the learner's place, guesses and results in their data dir (tests switch it off)."""
    progress_path: str | None = None
    """Where the progress file lives (default: ``tui_lab.lessons.ProgressStore``'s user data dir)."""
    cursor_blink: bool = True
    """Tests and snapshots switch blinking off so every frame is the same."""


def _error_text(exc: BaseException) -> tuple[str, str]:
    """(message, what to do) for an error shown in the panel."""
    if isinstance(exc, OutOfMemory):
        todo = exc.hint or ""
        if exc.largest_batch:
            todo = f"{todo} Largest batch that should fit: {exc.largest_batch}.".strip()
        return exc.message, todo or "lower the batch size or max new tokens"
    if isinstance(exc, LabError):
        return exc.message, exc.hint or ""
    if isinstance(exc, ImportError):
        return f"a package is missing: {exc}", "install it (see README), or choose another engine in Controls"
    return f"{type(exc).__name__}: {exc}", "this looks like a bug; the app keeps running — try another setting"


class LabApp(App[int]):
    """inference-lab: lessons beside a live panel of tokens, figures and charts."""

    TITLE = "inference-lab"
    CSS_PATH = "lab.tcss"
    COMMANDS = App.COMMANDS | {LabCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_WIDTH, "-wide")]
    AUTO_FOCUS = None
    """Nothing has focus at start, so single-letter keys act at once (a text box only takes them when chosen)."""

    BINDINGS = [
        Binding("r", "run", "run"),
        Binding("s", "stop", "stop"),
        Binding("n", "next_step", "next"),
        Binding("p", "prev_step", "back"),
        Binding("b", "batch_up", "batch"),
        Binding("B", "batch_down", "batch-", show=False),
        Binding("g", "toggle_greedy", "greedy", show=False),
        Binding("e", "export", "export"),
        Binding("w", "screenshot", "screenshot", show=False),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
        Binding("N", "next_lesson", "next lesson", show=False),
        Binding("P", "prev_lesson", "prev lesson", show=False),
        Binding("1", "tab('run')", "run tab", show=False),
        Binding("2", "tab('controls')", "controls", show=False),
        Binding("3", "tab('charts')", "charts", show=False),
        Binding("4", "tab('results')", "results", show=False),
        Binding("5", "tab('gpu')", "gpu", show=False),
        Binding("a", "toggle_requests", "all requests", show=False),
        Binding("left_square_bracket", "request(-1)", "prev request", show=False),
        Binding("right_square_bracket", "request(1)", "next request", show=False),
        Binding("l", "toggle_lesson", "layout"),
        Binding("v", "chart_view", "zoom chart", show=False),
        Binding("minus", "budget(-1)", "budget-", show=False),
        Binding("plus,equals_sign", "budget(1)", "budget+", show=False),
        Binding("m", "reload_engine", "reload engine", show=False),
        Binding("escape", "focus_panel", "leave input", show=False),
        Binding("i", "guess", "type a guess", show=False),
        Binding("up", "scroll_lesson(-1)", "scroll lesson", show=False),
        Binding("down", "scroll_lesson(1)", "scroll lesson", show=False),
        Binding("pageup", "scroll_lesson(-10)", "scroll lesson", show=False),
        Binding("pagedown", "scroll_lesson(10)", "scroll lesson", show=False),
    ]

    KEY_HELP: list[tuple[str, str]] = [
        ("r", "run the loaded experiment"), ("s", "stop (partial results kept)"),
        ("n / p", "next / previous lesson step"), ("N / P", "next / previous lesson"),
        ("b / B", "batch size quick pick up / down"), ("g", "greedy on / off"),
        ("1 2 3 4 5", "tabs: run, controls, charts, results, GPU"),
        ("[ / ]", "previous / next request"), ("a", "all requests (one row each)"),
        ("v", "zoom a chart"), ("- / +", "move the latency budget line"),
        ("e", "export results (JSON + CSV)"), ("w", "save an SVG screenshot"),
        ("m", "reload the engine"), ("l", "layout: lesson + panel → lesson only → panel only"),
        ("Escape", "leave a text box (keys work again)"), ("i", "type your guess (predict, then measure)"),
        ("↑ ↓ PgUp PgDn", "scroll the lesson text"), ("ctrl+p", "command palette"),
        ("?", "this help"), ("q", "quit"),
    ]

    def __init__(self, options: AppOptions | None = None) -> None:
        super().__init__()
        self.options = options or AppOptions()
        self.settings = LabSettings(model=self.options.model, engine=self.options.engine, device=self.options.device)
        self.engine: Any = None
        """The engine host once its engine is loaded (None while loading or after a failure)."""
        self.host: Any = None
        """The engine host process (``tui_lab.host.client.EngineHost``) that owns the engine."""
        self._run_params: dict[str, Any] = {}
        self.engine_info: Any = None
        self.engine_state = "idle"
        self._engine_generation = 0
        self._run_id = 0
        self._stop = threading.Event()
        self.busy: str | None = None
        """What is running ("run", "sweep", ...) or None."""
        self._figures_state = "idle"
        self.experiment = "generate"
        self.experiment_params: dict[str, Any] = {}
        self.results: list[dict[str, Any]] = []
        """Summary rows of every run and sweep point this session (what export writes)."""
        self._last: tuple[str, dict[str, Any], Any] | None = None
        """(kind, settings, result object) of the last run / sweep / comparison / inspection."""
        self.last_export: list[Path] = []
        self._started = time.monotonic()
        self._load_error = ""
        """Why the engine last failed to load (shown beside a guess that cannot be measured without it)."""
        self._stage: tuple[str, float, float | None] = ("", 0.0, None)
        """The engine's loading stage, when it began (monotonic) and its fraction."""
        self._preset_keys: set[str] = set()
        """Keys the current step's preset sets (``model``/``engine``/``device`` among them reach the run)."""
        self._run_step: tuple[Any, Any] | None = None
        """(lesson, step) the running (or last) experiment belongs to; its prediction gets the result."""

    # ----------------------------------------------------------------- layout
    def compose(self) -> ComposeResult:
        """Status line; lesson pane beside the live panel; footer."""
        if self.options.lessons is not None:
            lessons, reason = self.options.lessons, None if self.options.lessons else "No lessons were given."
        else:
            lessons, reason = lesson_loader()
        yield Static("", id="status")
        with Horizontal(id="main"):
            yield LessonPane(lessons, reason, self._progress_store(), self.options.lesson, id="lesson")
            with Vertical(id="live"):
                with Horizontal(id="engine-banner"):
                    yield Label("", id="engine-text")
                    yield ProgressBar(total=1.0, show_eta=False, id="engine-progress")
                yield Static("", id="progress-line")
                with TabbedContent(id="tabs", initial="run"):
                    with TabPane("Run", id="run"):
                        yield LivePanel(id="live-panel")
                    with TabPane("Controls", id="controls"):
                        yield ControlsForm(self.settings, self.options.engine_choices,
                                           cursor_blink=self.options.cursor_blink, id="controls-form")
                    with TabPane("Charts", id="charts"):
                        yield Static("Run a sweep (batch, length or sampling) to fill these charts.",
                                     id="charts-note")
                        yield SweepCharts(id="sweep-charts")
                        yield Static("", id="inspection")
                    with TabPane("Results", id="results"):
                        yield ResultsTable(id="results-table")
                    with TabPane("GPU", id="gpu"):
                        yield GpuPanel(id="gpu-panel")
        yield Footer(compact=True)

    def _progress_store(self) -> Any:
        if not self.options.save_progress:
            return None
        try:
            from tui_lab.lessons import ProgressStore

            return ProgressStore(self.options.progress_path)
        except Exception:  # no progress is better than no lab
            return None

    def on_resize(self) -> None:
        """The status line drops its title on narrow terminals; a shown result is laid out for the new width."""
        self._update_status()
        self.call_after_refresh(self._redraw_result)

    def on_mount(self) -> None:
        """Start the redraw timers and load the engine in the background."""
        self.set_interval(CHART_REFRESH_S, self._tick_charts, name="charts")
        self.set_interval(1.0, self._tick_stage, name="load-stage")
        self.query_one(SweepCharts).budget_s = DEFAULT_LATENCY_BUDGET_S
        self.query_one("#inspection").display = False
        self.query_one("#progress-line").display = False
        self._note("")
        if not self.options.cursor_blink:
            for box in self.query(Input):
                box.cursor_blink = False
        self._update_status()
        self._tick_charts()
        self.load_engine()

    # --------------------------------------------------------------- engine
    def _start_host(self) -> Any:
        """A fresh engine host (a child process; a thread here when a test lends engine objects)."""
        from tui_lab.host.client import EngineHost
        from tui_lab.host.server import DEFAULT_FACTORY

        factory: Any = self.options.engine_factory or self.options.engine_spec or DEFAULT_FACTORY
        generation = self._engine_generation
        return EngineHost(lambda event: self.post_message(HostEvent(generation, event)), factory)

    def _stop_host(self) -> None:
        host, self.host = self.host, None
        if host is not None:
            # Closing waits for the host to unload (vLLM's engine core too): not on the UI thread.
            threading.Thread(target=host.close, name="host-close", daemon=True).start()

    def load_engine(self) -> None:
        """(Re)start the engine host and load the current model/engine/device in it."""
        if self.busy:
            self.notify("stop the run first (s), then reload", severity="warning")
            return
        from tui_lab.host import protocol as hp

        self._engine_generation += 1
        self._stop_host()
        self.engine, self.engine_info = None, None
        self.engine_state = "loading"
        self._stage = ("", 0.0, None)
        self._banner(f"loading {self.settings.model} on {self.settings.engine}/{self.settings.device}…", None)
        settings = self.settings
        if self.options.engine_factory is None and self.options.engine_spec is None:
            from tui_lab.engines.options import engine_kwargs

            options = engine_kwargs(settings.engine, settings)  # each engine gets only what it declares
        else:
            options = {"model": settings.model, "device": settings.device, **self.options.engine_options}
        model, device = options.pop("model", settings.model), options.pop("device", "")
        try:
            self.host = self._start_host()
        except Exception as exc:  # no process could be started: say so, keep running
            self.engine_state = "failed"
            self._banner(f"engine error: the engine process could not start: {exc}", None, style=ERROR_STYLE)
            return
        self.host.send(hp.Load(settings.engine, model, device, options, self.options.cache_dir))

    def on_host_event(self, message: HostEvent) -> None:
        """Everything the engine host says: loading, frames, progress, partial and final results, errors."""
        from tui_lab.host import protocol as hp

        if message.generation != self._engine_generation:
            return
        event = message.event
        if isinstance(event, hp.Frame):
            if self.host is not None:
                ids = self.host.reader.table(event)  # every frame extends its run's table, shown or not
                if event.run_id == self._run_id:
                    self._panel.apply_frame(event, ids)
        elif isinstance(event, hp.RunProgressLine):
            if event.run_id == self._run_id:
                self._show_progress(event.progress)
        elif isinstance(event, hp.Partial):
            if event.run_id == self._run_id:
                self._on_partial(event.item)
        elif isinstance(event, hp.RunDone):
            if event.run_id == self._run_id:
                self._on_run_done(event.name, event.result)
        elif isinstance(event, hp.HostError):
            self._on_host_error(event)
        elif isinstance(event, hp.LoadProgress):
            if self.engine_state == "loading":
                self._load_stage(event.stage, event.fraction)
        elif isinstance(event, hp.Loaded):
            self._on_loaded(event.info)
        elif isinstance(event, hp.HostDied):
            self._on_host_died(event)

    def _load_stage(self, stage: str, fraction: float | None) -> None:
        """A loading stage: shown with how long it has taken so far (materializing a model takes a while)."""
        if stage != self._stage[0]:
            self._stage = (stage, time.monotonic(), fraction)
        else:
            self._stage = (stage, self._stage[1], fraction)
        self._tick_stage()

    def _tick_stage(self) -> None:
        """Redraw the loading banner with the stage's elapsed time (every second while loading)."""
        stage, started, fraction = self._stage
        if self.engine_state != "loading" or not stage:
            return
        self._banner(f"loading: {stage} · {time.monotonic() - started:.0f} s", fraction)

    def _on_loaded(self, info: Any) -> None:
        self.engine, self.engine_info, self.engine_state = self.host, info, "ready"
        notes = list(getattr(info, "notes", ()) or ())
        if not getattr(info, "text_is_meaningful", True):
            notes.insert(0, "random weights: timing is real, the text is noise")
        text = f"ready: {info.model} · {info.engine} · {info.device} · {info.dtype}"
        if notes:
            text += " · " + "; ".join(notes)
        self._banner(text, 1.0, style=OK_STYLE)
        self._update_status()

    def _on_host_error(self, error: Any) -> None:
        if error.what == "load":
            self.engine_state = "failed"
            self._load_error = error.message
            self._banner(f"engine error: {error.message}" + (f" — {error.hint}" if error.hint else "") +
                         " (change model/engine/device in Controls, then Enter or m)", None, style=ERROR_STYLE)
            self._update_status()
            return
        if error.run_id is not None and error.run_id != self._run_id:
            return
        self._figures_state = "failed"
        self._show_error_text(error.what, error.message, error.hint)
        if error.run_id == self._run_id:
            self._prediction_not_measured(f"the run failed: {error.message}")

    def _on_host_died(self, died: Any) -> None:
        """The engine process ended by itself: say what happened and what to do; keep the results."""
        self.host, self.engine, self.engine_state = None, None, "failed"
        if self.busy:
            self._end()
            self._figures_state = "failed"
            self._show_error_text(self.experiment, died.message, "")
            self._prediction_not_measured(f"the engine process ended: {died.message}")
        self._banner(f"engine error: {died.message}", None, style=ERROR_STYLE)
        self._update_status()

    def _banner(self, text: str, fraction: float | None, style: str = "") -> None:
        try:
            label = self.query_one("#engine-text", Label)
            bar = self.query_one("#engine-progress", ProgressBar)
        except NoMatches:  # the app is closing (quit while loading): the once-a-second tick has nothing to draw
            return
        label.update(Text(text, style=style))
        bar.display = self.engine_state == "loading"
        bar.update(total=1.0 if fraction is not None else None, progress=fraction or 0.0)

    def _update_status(self) -> None:
        s = self.settings
        mode = "greedy" if s.greedy else f"T={s.temperature} top-p={s.top_p} top-k={s.top_k}"
        state = self.busy or self.engine_state
        status = Text()
        if self.size.width >= NARROW_WIDTH:
            status.append("inference-lab · ", "bold")
        status.append(f"{s.model} · {s.engine}/{s.device} · batch {s.batch_size} · {s.max_new_tokens} tok · {mode} · ")
        status.append(self.experiment, "bold cyan")
        status.append(f" · {state}")
        self.query_one("#status", Static).update(status, layout=False)  # one fixed line: no layout pass

    # ----------------------------------------------------------- lessons
    def on_lesson_pane_step_shown(self, message: LessonPane.StepShown) -> None:
        """Load the step's experiment and its preset parameters into the panel."""
        name = getattr(message.step, "experiment", None)
        params = dict(getattr(message.step, "params", None) or {})
        if not name:
            return
        try:
            params = lab_experiments.validate(name, params)
        except LabError as exc:
            self.notify(f"this step's experiment cannot be loaded: {exc}", severity="error")
            return
        self.experiment, self.experiment_params = name, params
        self._preset_keys = set(getattr(message.step, "params", None) or {})
        # A budget line moved with -/+ belongs to the step it was moved on: this step starts at its own.
        self.query_one(SweepCharts).set_budget(lab_experiments.budget_line_s(params, DEFAULT_LATENCY_BUDGET_S))
        self.query_one(ControlsForm).show_experiment(name, params)
        changes = lab_experiments.settings_changes(params)
        if changes:
            try:
                new = self.settings.with_(**changes).validate()
            except LabError as exc:
                self.notify(f"step preset refused: {exc}", severity="warning")
            else:
                self._apply_settings(new, reload=False)
        self._update_status()

    # -------------------------------------------------------------- actions
    def action_next_step(self) -> None:
        """Next lesson step."""
        self.query_one(LessonPane).move(1)

    def action_prev_step(self) -> None:
        """Previous lesson step."""
        self.query_one(LessonPane).move(-1)

    def action_next_lesson(self) -> None:
        """Next lesson."""
        self.query_one(LessonPane).move_lesson(1)

    def action_prev_lesson(self) -> None:
        """Previous lesson."""
        self.query_one(LessonPane).move_lesson(-1)

    def action_tab(self, tab: str) -> None:
        """Switch the live panel's tab (the cursor stays out of the boxes, so single-letter keys keep working)."""
        self.query_one(TabbedContent).active = tab
        if isinstance(self.focused, Input) and self.focused.id and self.focused.id.startswith("ctl-"):
            self.screen.set_focus(None)

    def action_help(self) -> None:
        """Keys and what the panels mean."""
        self.push_screen(HelpScreen(self.KEY_HELP))

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

    LESSON_LAYOUTS = ("", "-lesson-only", "-no-lesson")
    """l cycles: lesson beside the panel → lesson alone (room to read) → panel alone (room for charts)."""

    def action_toggle_lesson(self) -> None:
        """Cycle the lesson pane: beside the panel, alone, hidden."""
        main = self.query_one("#main")
        current = next((c for c in self.LESSON_LAYOUTS[1:] if main.has_class(c)), "")
        nxt = self.LESSON_LAYOUTS[(self.LESSON_LAYOUTS.index(current) + 1) % len(self.LESSON_LAYOUTS)]
        main.remove_class(*self.LESSON_LAYOUTS[1:])
        if nxt:
            main.add_class(nxt)
        self.call_after_refresh(self._redraw_result)
        self.notify({"": "lesson beside the panel", "-lesson-only": "lesson only (l again: panel only)",
                     "-no-lesson": "panel only (l again: both)"}[nxt], timeout=2)

    def action_toggle_requests(self) -> None:
        """One progress row per request, beside (or, when narrow, instead of) the tokens."""
        self._panel.toggle_list()

    def action_request(self, delta: int) -> None:
        """Show another request's tokens."""
        self._panel.select(delta)

    def action_chart_view(self) -> None:
        """All charts, or one zoomed."""
        view = self.query_one(SweepCharts).cycle_view()
        self.notify(f"charts: {view}", timeout=1.5)

    def action_budget(self, direction: int) -> None:
        """Move the latency-budget line on the trade-off chart."""
        charts = self.query_one(SweepCharts)
        factor = LATENCY_BUDGET_STEP if direction > 0 else 1 / LATENCY_BUDGET_STEP
        charts.set_budget(round(charts.budget_s * factor, 4))
        pick = charts.pick
        best = f" → best batch within it: {pick.x:g}" if pick is not None else " → no point within it"
        self.query_one("#charts-note", Static).update(f"latency budget (E2E p90) {charts.budget_s:.2f} s{best}")

    def action_batch_up(self) -> None:
        """Next batch-size quick pick."""
        bigger = [b for b in BATCH_PRESETS if b > self.settings.batch_size]
        self._set_batch(bigger[0] if bigger else BATCH_PRESETS[-1])

    def action_batch_down(self) -> None:
        """Previous batch-size quick pick."""
        smaller = [b for b in BATCH_PRESETS if b < self.settings.batch_size]
        self._set_batch(smaller[-1] if smaller else BATCH_PRESETS[0])

    def _set_batch(self, batch: int) -> None:
        self._apply_settings(self.settings.with_(batch_size=batch), reload=False)
        self.notify(f"batch size {batch}", timeout=1.5)

    def action_toggle_greedy(self) -> None:
        """Greedy decoding on/off."""
        self._apply_settings(self.settings.with_(greedy=not self.settings.greedy), reload=False)
        self.notify("greedy decoding" if self.settings.greedy else f"sampling at T={self.settings.temperature}",
                    timeout=1.5)

    def action_reload_engine(self) -> None:
        """Reload the model with the current settings."""
        self.load_engine()

    def _apply_settings(self, settings: LabSettings, reload: bool) -> None:
        self.settings = settings
        form = self.query_one(ControlsForm)
        if form.settings != settings:
            form.set_values(settings)
        self._update_status()
        if reload:
            self.load_engine()

    def on_controls_form_experiment_value(self, message: ControlsForm.ExperimentValue) -> None:
        """A value typed into one of the experiment's boxes: checked by the experiment, then used by the next run."""
        form = self.query_one(ControlsForm)
        try:
            params = lab_experiments.validate(self.experiment, {**self.experiment_params, message.key: message.value})
        except LabError as exc:
            form.experiment_refused(message.key, exc.message, message.widget)
            return
        self.experiment_params = params
        self._preset_keys.add(message.key)
        form.show_experiment(self.experiment, params)
        form.show_error("")
        self.notify(f"{self.experiment}: {message.key} set — press r to run", timeout=2)

    def on_controls_form_settings_changed(self, message: ControlsForm.SettingsChanged) -> None:
        """A valid edit in the controls."""
        self._apply_settings(message.settings, reload=message.reload)

    # ----------------------------------------------------------------- run
    def _ready_to_run(self) -> bool:
        if self.busy:
            self.notify(f"a {self.busy} is in progress — press s to stop it", severity="warning")
            return False
        if self.engine is None and (self.experiment_object is None or self.experiment_object.needs_engine):
            msg = {"loading": "the model is still loading — wait for 'ready'",
                   "failed": "the engine failed to load — see the message above the tabs (m starts a fresh one)"}.get(
                self.engine_state, "no engine loaded — press m to load one")
            self.notify(msg, severity="warning")
            if self.engine_state == "failed" and self._load_error:
                self._run_step = self._step_of_run()
                self._prediction_not_measured(f"the engine did not load: {self._load_error}")
            return False
        if self.host is None:
            self.notify("no engine process — press m to start one", severity="warning")
            return False
        return True

    @property
    def experiment_object(self) -> Any:
        """The registered experiment the panel runs (None if the name is unknown)."""
        from tui_lab.lab.experiment import get

        try:
            return get(self.experiment)
        except LabError:
            return None

    def run_params(self) -> dict[str, Any]:
        """The step's preset with the learner's current controls on top, where the experiment takes them."""
        exp = self.experiment_object
        if exp is None:
            raise InvalidInput(f"unknown experiment {self.experiment!r}")
        accepted = set(exp.validate(self.experiment_params))
        params = dict(self.experiment_params)
        if exp.kind == "inspect":
            for key in ("text", "prompt"):
                if key in accepted:
                    params[key] = self.settings.prompt
            return params
        sampling = self.settings.sampling()
        current = {
            "prompt": self.settings.prompt, "batch_size": self.settings.batch_size,
            "max_new_tokens": self.settings.max_new_tokens, "temperature": sampling.temperature,
            "top_p": sampling.top_p, "top_k": sampling.top_k, "repetition_penalty": sampling.repetition_penalty,
            "seed": sampling.seed,
        }
        params.update({k: v for k, v in current.items() if k in accepted})
        for key in ("model", "engine", "device"):
            # The loaded engine's model and device are not the run's; a step that names one
            # (an architecture to model, the engine it is about) keeps it.
            if key not in self._preset_keys:
                params.pop(key, None)
        return params

    def action_run(self) -> None:
        """Run the loaded experiment in the engine host (every experiment the same way, by name)."""
        if not self._ready_to_run():
            return
        from tui_lab.host import protocol as hp

        wanted = self.experiment_params.get("engine")
        loaded = getattr(self.engine_info, "engine", None)
        if wanted and loaded and wanted != loaded and loaded != "scripted":
            # The step is about that engine: a run on another one would record the wrong engine's numbers.
            self._show_error_text("run", f"this step runs on the {wanted} engine, but {loaded} is loaded",
                                  f"set engine to {wanted} in Controls (2) and press m, then r")
            self._run_step = self._step_of_run()
            self._prediction_not_measured(f"this step runs on the {wanted} engine; {loaded} is loaded")
            return
        try:
            self.settings.validate()
            exp = self.experiment_object
            params = self.run_params()
            exp.validate(params)  # refuse here, in one line, before anything starts
        except LabError as exc:
            self._show_error("run", exc)
            return
        if exp.kind == "run" and self.experiment == "generate":
            from tui_lab.lab.catalog import prompts_for

            checked = exp.validate(params)
            prompts = prompts_for(checked["prompt"], int(checked["batch_size"]), checked.get("seed"))
            live = LiveRun([Request(f"r{i}", p) for i, p in enumerate(prompts)], int(checked["max_new_tokens"]))
            what, tab = "run", "run"
            if self._last is not None and self._last[0] != "run":
                # The Charts tab holds an earlier experiment's result: not this run's, so it leaves.
                self.query_one(SweepCharts).display = False
                self.query_one("#inspection").display = False
                self.query_one("#charts-note", Static).update(
                    "generate runs on the Run tab (1); a sweep, comparison or inspection fills this tab")
        else:
            live = LiveRun([], int(params.get("max_new_tokens", self.settings.max_new_tokens) or 1))
            what, tab = ("sweep" if exp.kind == "sweep" else self.experiment), "charts"
            charts = self.query_one(SweepCharts)
            if exp.kind == "sweep":
                charts.reset(lab_experiments.sweep_kind(self.experiment),
                             threshold_pct=float(params.get("knee_threshold_pct") or KNEE_GAIN_PCT))
                self.query_one("#inspection").display = False
                charts.display = True
                self.query_one("#charts-note", Static).update(
                    f"{self.experiment}: points appear as each configuration finishes · s stops · v zooms · "
                    "-/+ budget")
            else:
                self.query_one("#charts-note", Static).update(f"{self.experiment}: running… (s stops)")
                # The last experiment's table must not stand beside a new run as if it were its result.
                charts.display = False
                view = self.query_one("#inspection", Static)
                view.update(Text(f"{self.experiment}: running — its result appears here when it ends", "dim"))
                view.display = True
        self._run_step = self._step_of_run()
        run_id = self._begin(what, live)
        self._run_params = params
        self.action_tab(tab)
        self.host.send(hp.Run(run_id, self.experiment, params))

    def action_stop(self) -> None:
        """Stop within one decode step; the partial result is kept and marked."""
        if not self.busy:
            self.notify("nothing is running", timeout=1.5)
            return
        from tui_lab.host import protocol as hp

        self._stop.set()
        if self.host is not None:
            self.host.send(hp.Stop(self._run_id))
        self._note(Text("stopping…", style=PARTIAL_STYLE))

    def _begin(self, what: str, live: LiveRun | None) -> int:
        self._run_id += 1
        self._stop = threading.Event()
        self.busy = what
        self._panel.start(live)
        self._figures_state = "running"
        self._note("")
        self._update_status()
        return self._run_id

    def _end(self) -> None:
        self.busy = None
        self.query_one("#progress-line").display = False
        self._update_status()

    def _show_progress(self, progress: Any) -> None:
        """A progress line ("batch 8 · run 2/3"); a new generation starts a fresh token view."""
        if progress.new_run and self.live is not None and self.experiment != "generate":
            self._panel.reset()
        if self.busy and self.busy != "run":
            self.query_one("#charts-note", Static).update(f"{self.experiment}: {progress.text} · s stops")
            # Above the tabs too: a long sweep or comparison says where it is on whichever tab is open.
            line = self.query_one("#progress-line", Static)
            done = f" · {progress.fraction * 100:.0f}%" if progress.fraction is not None else ""
            line.update(f"{self.experiment}: {progress.text}{done} · s stops")
            line.display = True

    def _on_partial(self, item: Any) -> None:
        """A sweep point: chart it and put it in the results table."""
        from tui_lab.lab.sweep import SweepPoint

        if isinstance(item, SweepPoint):
            self.query_one(SweepCharts).add_point(item)
            cp = chart_point(item)
            row = lab_experiments.point_row(self.experiment, item, cp)
            self._add_result(row, f"sweep-{self._run_id}-{cp.label}")

    def _on_run_done(self, name: str, result: Any) -> None:
        """The experiment ended: draw its result by type."""
        from tui_lab.lab.run import RunResult
        from tui_lab.lab.sweep import SweepResult

        self._end()
        if result is None:  # it failed; the error event already said why
            return
        if isinstance(result, RunResult):
            self._finish_run(result)
        elif isinstance(result, SweepResult):
            self._finish_sweep(name, result)
        else:
            self._finish_other(name, result)

    def _finish_run(self, result: Any) -> None:
        """Keep the result, update the table and (if the step asks) the prediction."""
        summary = result.summary()
        state = "partial" if result.partial else "done"
        if result.error:
            state = "failed" if not summary.output_tokens else "partial"
        self._figures_state = "stopped" if self._stop.is_set() else state
        batch = int(self._run_params.get("batch_size", self.settings.batch_size))
        row = lab_experiments.summary_row(f"run {self._run_id}", batch, summary, state)
        self._add_result(row, f"run-{self._run_id}")
        # Kept as the object: its JSON form (every token) is built only when exported.
        self._last = ("run", {**self.settings.to_dict(), **self._run_params}, result)
        note = Text()
        if result.partial:
            note.append("partial result (stopped or failed) — kept and marked in Results. ", PARTIAL_STYLE)
        if result.error:
            note.append(result.error, ERROR_STYLE)
        self._note(note)
        self._panel.invalidate()
        self._panel.refresh_tokens()
        self._tick_charts()
        if result.error and not summary.output_tokens:
            self._prediction_not_measured(f"the run failed: {result.error}")
        else:
            self._show_prediction(result, complete=not (result.partial or result.error or self._stop.is_set()))

    @property
    def last_result(self) -> dict[str, Any] | None:
        """The full JSON form of the last result (built on demand: a long run holds many tokens)."""
        if self._last is None:
            return None
        kind, settings, result = self._last
        to_dict = getattr(result, "to_dict", None)
        data = to_dict() if callable(to_dict) else result
        if kind == "run":
            return {"kind": kind, "settings": settings, **data}
        return {"kind": kind, "settings": settings, "result": data}

    def _note(self, note: str | Text) -> None:
        """The line under the figures (partial / error); hidden when empty to save a row."""
        widget = self.query_one("#run-note", Static)
        widget.update(note)
        widget.display = bool(str(note))

    def _show_prediction(self, result: Any, complete: bool) -> None:
        """Put the measured value of the step's prediction beside the guess, save it, mark the step done.

        The step is the one whose experiment this run was (the learner may have moved on meanwhile).
        """
        if self._run_step is None:
            return
        lesson, step = self._run_step
        prediction = getattr(step, "predict", None)
        value, text = (None, "") if prediction is None else lab_experiments.measure(prediction, result)
        self.query_one(LessonPane).step_finished(lesson, step, value, text, done=complete)

    def _prediction_not_measured(self, reason: str) -> None:
        """The run that should answer the step's prediction failed or was refused: say why beside the guess."""
        if self._run_step is None:
            return
        lesson, step = self._run_step
        if getattr(step, "predict", None) is not None:
            self.query_one(LessonPane).step_finished(lesson, step, None, f"not measured ({reason})", done=False)

    def _step_of_run(self) -> tuple[Any, Any] | None:
        """(lesson, step) whose experiment is loaded, or None when the panel runs something else."""
        pane = self.query_one(LessonPane)
        step = pane.step
        if step is None or getattr(step, "experiment", None) != self.experiment:
            return None
        return pane.lesson, step

    def _add_result(self, row: dict[str, Any], key: str) -> None:
        self.results.append(row)
        self.query_one(ResultsTable).upsert(key, row)

    def _show_error(self, what: str, exc: BaseException) -> None:
        text, todo = _error_text(exc)
        self._show_error_text(what, text, todo)

    def _show_error_text(self, what: str, text: str, todo: str) -> None:
        note = Text(f"{what} failed: {text}", style=ERROR_STYLE)
        if todo:
            note.append(f" — {todo}", "bold")
        self._note(note)
        if what != "run":
            self.query_one("#charts-note", Static).update(note)
        self.notify(str(note), severity="error", timeout=6)

    def _finish_sweep(self, name: str, result: Any) -> None:
        self._figures_state = "stopped" if self._stop.is_set() else "done"
        self._last = (name, self.settings.to_dict(), result)
        charts = self.query_one(SweepCharts)
        knee = charts.knee
        text = Text(f"{name} finished: {len(charts.points)} points")
        if getattr(result, "partial", False) or self._stop.is_set():
            text.append(" (partial: stopped early)", PARTIAL_STYLE)
            self._note(Text("sweep stopped: what was measured is kept, marked partial in Results",
                            style=PARTIAL_STYLE))
        else:
            self._note("")
        if charts.kind == "batch":
            # The sweep's own knee: over its complete points, as the CLI reports it.
            text.append(knee_text(getattr(result, "knee", knee)))
        limits = getattr(result, "budget_limits", None)
        if limits:
            preset = getattr(getattr(result, "plan", None), "latency_budget", None)
            name = f"{preset} budget" if isinstance(preset, str) else "budget"
            pick = getattr(result, "budget_pick", None)
            text.append(f" · {name}: pick {pick.label}" if pick is not None else f" · no batch meets the {name}")
        noisy = [f"{p.label} ({p.noise})" for p in charts.points if p.noise and not p.partial]
        if noisy:
            text.append(" · noisy: " + "; ".join(noisy) + " — read these points with care, or add runs",
                        PARTIAL_STYLE)
        self.query_one("#charts-note", Static).update(text)
        self._show_prediction(result, complete=not (getattr(result, "partial", False) or self._stop.is_set()))

    def _finish_other(self, name: str, result: Any) -> None:
        """Comparisons, inspections and the lesson experiments: their registered view, by result type."""
        self._figures_state = "stopped" if self._stop.is_set() else "done"
        self._last = (name, self.settings.to_dict(), result)
        self._note(Text("stopped: partial result kept", style=PARTIAL_STYLE) if self._stop.is_set() else "")
        view = self.query_one("#inspection", Static)
        self.query_one(SweepCharts).display = False
        view.display = True
        view.update(self._render(name, result))
        kind = getattr(self.experiment_object, "kind", "")
        self.query_one("#charts-note", Static).update(
            f"{name} — change the prompt in Controls and press r again" if kind == "inspect" else f"{name} finished")
        self._show_prediction(result, complete=not (getattr(result, "partial", False) or self._stop.is_set()))

    def _render(self, name: str, result: Any) -> Any:
        import tui_lab.ui.views.results  # noqa: F401  (registers the views)
        from tui_lab.lab.caveats import caveats
        from tui_lab.ui.fit import cut_cells
        from tui_lab.ui.views.registry import view_for

        draw = view_for(result)
        width = max(20, self.query_one("#inspection").size.width or self.size.width // 2)
        try:
            shown = draw(result, width) if draw is not None else lab_experiments.render_result(name, result)
        except Exception as exc:  # a view's bug must not cost the result: show it raw
            return Text(f"{name}: {result!r}\n(view failed: {exc})")
        parts: list[Any] = [shown]
        if cut_cells(shown, width):
            # Laid out for this width and still cut somewhere: say how to get the room.
            parts.append(Text("Some cells are cut (…) at this width: press l until the panel is alone "
                              "to see them whole.", style=PARTIAL_STYLE))
        warnings = caveats(result)
        if warnings:
            # A measurement that contradicts what the step teaches is named, with the reason, under the view.
            parts.append(Text())
            parts.extend(Text.assemble(("⚠ can't trust: ", PARTIAL_STYLE), line) for line in warnings)
        return shown if len(parts) == 1 else Group(*parts)

    def _redraw_result(self) -> None:
        """Lay the shown comparison or inspection out again for the panel's new width."""
        view = self.query_one("#inspection", Static)
        if self.busy or self._last is None or not view.display or self._last[0] == "run":
            return
        view.update(self._render(self._last[0], self._last[2]))

    # -------------------------------------------------------------- redraw
    @property
    def _panel(self) -> LivePanel:
        return self.query_one(LivePanel)

    @property
    def live(self) -> LiveRun | None:
        """The run on screen (the live panel owns it)."""
        try:
            return self._panel.live
        except NoMatches:
            return None

    def _tick_charts(self) -> None:
        try:
            self._draw_charts()
        except NoMatches:
            pass  # the screen is being torn down (quit) or another screen is on top

    def _draw_charts(self) -> None:
        # The live panel redraws its figures itself when the run or this state moves; charts redraw only
        # what changed: every cycle the UI spends is taken from generation on a small CPU machine.
        self._panel.state = self.busy and "running" or self._figures_state
        self.query_one(SweepCharts).redraw()
        self.query_one(GpuPanel).refresh_sample()

    # --------------------------------------------------------------- export
    def _export_dir(self) -> Path:
        return Path(self.options.export_dir or Path.cwd() / "inference-lab-results")

    def action_export(self) -> None:
        """Write the results (JSON: everything; CSV: one row per run / sweep point)."""
        if not self.results and self._last is None:
            self.notify("nothing to export yet — run something first (r)", severity="warning")
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = self._export_dir()
        doc = {
            "settings": self.settings.to_dict(),
            "engine": self.engine_info.to_dict() if self.engine_info is not None else None,
            "results": self.results,
            "last": self.last_result,
        }
        try:
            json_path = write_json(folder / f"results-{stamp}.json", doc)
            csv_path = write_csv(folder / f"results-{stamp}.csv", self.results) if self.results else None
        except (OSError, LabError) as exc:
            self.notify(f"export failed: {exc} — check that {folder} is writable", severity="error")
            return
        self.last_export = [p for p in (json_path, csv_path) if p is not None]
        self.notify("exported to " + " and ".join(str(p) for p in self.last_export), timeout=8)

    def action_screenshot(self) -> None:
        """Save an SVG of the screen and say where it went."""
        folder = self._export_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = self.save_screenshot(filename=f"screen-{time.strftime('%Y%m%d-%H%M%S')}.svg", path=str(folder))
        self.last_export = [Path(path)]
        self.notify(f"screenshot saved to {path}", timeout=8)

    # ----------------------------------------------------------------- quit
    def on_unmount(self) -> None:
        """End the engine host and everything it started (its children, device memory)."""
        self._stop.set()
        host, self.host = self.host, None
        if host is not None:
            host.close()


def run_app(options: AppOptions | None = None) -> int:
    """Run the lab in this terminal; returns the exit status."""
    app = LabApp(options or AppOptions())
    result = app.run()
    return int(result or 0)

