"""The run lifecycle: one experiment at a time, started in the engine host, followed to its end, and filed.

A run starts with the loaded experiment's values and the learner's fields (``LoadedExperiment.run_params``).
Its token frames go to the Run tab; a sweep's points go to the charts and to Results as each finishes (one
path for every sweep: batch, length, sampling, load); its result goes to Results, the Charts tab or the
result pane, and answers the step's prediction. A stop keeps what was measured, marked partial; so does a
crash of the engine process, from what the panel had received.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from rich.text import Text
from textual.app import App
from textual.widgets import Static

from tui_lab.errors import LabError, describe
from tui_lab.host import protocol as p
from tui_lab.lab.experiment import ChartAxis, Params, Result
from tui_lab.lab.load import LoadPoint, LoadSweepResult
from tui_lab.lab.run import Generate, RunResult
from tui_lab.lab.sweep import SweepPoint, SweepResult
from tui_lab.ui.estimate import RunEstimate
from tui_lab.ui.host_link import HostLink
from tui_lab.ui.live import LiveRun
from tui_lab.ui.loaded import LoadedExperiment
from tui_lab.ui.messages import HostDied, PartialResult, RunFailed, RunFinished, RunProgress, TokensArrived
from tui_lab.ui.prediction import measure
from tui_lab.ui.results import Document, ResultsStore, Row, cut_run_row, point_row, provenance, run_figures, run_row
from tui_lab.ui.settings import LabSettings
from tui_lab.ui.widgets.charts import chart_point
from tui_lab.ui.widgets.charts_pane import ChartsPane
from tui_lab.ui.widgets.engine_banner import EngineBanner
from tui_lab.ui.widgets.lesson_pane import LessonPane
from tui_lab.ui.widgets.live_panel import LivePanel
from tui_lab.ui.widgets.results_table import ResultsTable
from tui_lab.views.style import ERROR_STYLE, NOTE_STYLE, PARTIAL_STYLE


def largest_batch(params: Params) -> int:
    """The largest batch a run with ``params`` puts on the engine at once (1 when it names none)."""
    sizes = [params.get("batch_size"), *(params.get("batch_sizes") or [])]
    return max((int(n) for n in sizes if isinstance(n, int)), default=1)


def crash_hint(exitcode: int | None, batch: int) -> str:
    """What to change after the engine process died: after a SIGKILL (often the out-of-memory killer) a
    smaller run — a smaller batch only when the run had more than one request at once."""
    if exitcode != -signal.SIGKILL:
        return ""
    if batch > 1:
        return "lower the batch size or max new tokens"
    return "lower max new tokens, or choose a smaller model"


class RunControl:
    """Starts, stops and follows the runs of the app's engine host.

    ``changed`` is called when ``busy`` moves; ``show_tab`` brings a tab of the panel to the front. Every
    finished run and sweep point on the loaded engine refines ``estimate``'s pace.
    """

    def __init__(self, app: App[int], link: HostLink, store: ResultsStore, estimate: RunEstimate,
                 changed: Callable[[], None], show_tab: Callable[[str], None]) -> None:
        self.app = app
        self.link = link
        self.store = store
        self.estimate = estimate
        self.changed = changed
        self.show_tab = show_tab
        self.run_id = 0
        self.busy: str | None = None
        """What is running ("run", "sweep" or the experiment's name), or None."""
        self.stopping = False
        self.loaded: LoadedExperiment | None = None
        """The experiment of the running (or last) run, with the step it answers."""
        self.params: Params = {}
        self.axis: ChartAxis | None = None
        self._settings: Document = {}

    # ------------------------------------------------------------------------------------------- widgets

    @property
    def panel(self) -> LivePanel:
        """The Run tab's live panel."""
        return self.app.query_one(LivePanel)

    @property
    def charts(self) -> ChartsPane:
        """The Charts tab."""
        return self.app.query_one(ChartsPane)

    def _progress_line(self, text: str) -> None:
        line = self.app.query_one("#progress-line", Static)
        line.update(text)
        line.display = bool(text)

    def _record(self, key: str, row: Row) -> None:
        """A row of the running experiment: led by when, its step and its name; kept with its step."""
        loaded = self.loaded
        lesson, step = (loaded.lesson, loaded.step) if loaded is not None else (None, None)
        row = {**provenance(self._name, lesson, step), **row}
        self.store.add(row)
        self.app.query_one(ResultsTable).upsert(key, row)
        if lesson is not None and step is not None:
            self.app.query_one(LessonPane).keep_row(lesson, step, row)

    def _state(self, state: str) -> None:
        """The figures line's label: running, done, stopped, partial, failed."""
        self.panel.state = state

    # ----------------------------------------------------------------------------------------- starting

    def start(self, loaded: LoadedExperiment, settings: LabSettings, engine: EngineBanner) -> None:
        """Run ``loaded`` with ``settings`` in the engine host, or say in one line why not."""
        if self.busy:
            self.app.notify(f"a {self.busy} is in progress — press s to stop it", severity="warning")
            return
        if engine.state != "ready" and loaded.experiment.needs_engine:
            self.app.notify({"loading": "the model is still loading — wait for 'ready'",
                             "failed": "the engine failed to load — see the message above the tabs "
                                       "(m starts a fresh one)"}.get(engine.state, "no engine loaded — press m"),
                            severity="warning")
            if engine.state == "failed" and engine.load_error:
                self._not_measured(loaded, f"the engine did not load: {engine.load_error}")
            return
        if not self.link.alive:
            self.app.notify("no engine process — press m to start one", severity="warning")
            return
        refusal = loaded.refusal(engine.info.engine if engine.info is not None else None)
        if refusal is not None:  # the step is about another engine: its numbers must not be recorded as that one's
            self.show_error("run", *refusal)
            self._not_measured(loaded, refusal[0])
            return
        try:
            settings.validate()
            params = loaded.run_params(settings)
        except LabError as exc:
            self.show_error("run", *describe(exc))
            return
        self._begin(loaded, settings, params)

    def _begin(self, loaded: LoadedExperiment, settings: LabSettings, params: Params) -> None:
        experiment = loaded.experiment
        self.loaded, self.params, self.axis = loaded, params, loaded.chart_axis(params)
        self._settings = {**settings.to_dict(), **params}
        if loaded.replay:  # what a row and an export record: the recording played, not the loaded engine
            self._settings.update(engine="replay", engine_options={"trace": loaded.replay})
        if isinstance(experiment, Generate):
            live = LiveRun(experiment.requests(params), int(params["max_new_tokens"]))
            what, tab = "run", "run"
            self.charts.run_elsewhere(loaded.name)
        else:
            live = LiveRun([], int(params.get("max_new_tokens") or settings.max_new_tokens))
            what, tab = ("sweep" if self.axis else loaded.name), "charts"
            if self.axis is not None:
                threshold = params.get("knee_threshold_pct")
                self.charts.begin_sweep(loaded.name, self.axis, float(threshold) if threshold else None)
            else:
                self.charts.begin_result(loaded.name)
        self.run_id += 1
        self.busy, self.stopping = what, False
        self.panel.start(live, self.app.query_one(EngineBanner).source)
        self.panel.note("")
        self._state("running")
        self.show_tab(tab)
        self.changed()
        self.link.send(p.Run(self.run_id, loaded.name, dict(params), replay=loaded.replay))

    def stop(self) -> None:
        """Stop within one decode step; the partial result is kept and marked."""
        if not self.busy:
            self.app.notify("nothing is running", timeout=1.5)
            return
        self.stopping = True
        self.link.send(p.Stop(self.run_id))
        self.panel.note(Text("stopping…", style=PARTIAL_STYLE))

    def _end(self) -> None:
        self.busy = None
        self._progress_line("")
        self.changed()

    # -------------------------------------------------------------------------------------- following

    def tokens(self, message: TokensArrived) -> None:
        """A frame of the run on screen."""
        if message.run_id == self.run_id:
            self.panel.apply_frame(message.frame, message.ids)

    def progress(self, message: RunProgress) -> None:
        """A progress line ("batch 8 · run 2/3"); a new generation of a sweep starts a fresh token view."""
        if message.run_id != self.run_id or self.loaded is None:
            return
        progress, name = message.progress, self.loaded.name
        if progress.new_run and self.busy != "run":
            self.panel.reset()
        if self.busy and self.busy != "run":
            self.charts.progress(name, progress.text)
            # Above the tabs too: a long sweep or comparison says where it is on whichever tab is open.
            done = f" · {progress.fraction * 100:.0f}%" if progress.fraction is not None else ""
            self._progress_line(f"{name}: {progress.text}{done} · s stops")

    def partial(self, message: PartialResult) -> None:
        """A sweep's or load sweep's point: charted against the experiment's axis and added to Results."""
        item = message.item
        if message.run_id != self.run_id or self.axis is None or not isinstance(item, SweepPoint | LoadPoint):
            return  # other partial results (samples, energy points) are part of the result's own view
        point = chart_point(item)
        if isinstance(item, SweepPoint):
            self.estimate.observe_point(item)
        self.charts.add_point(point)
        runs = run_figures(item.point if isinstance(item, LoadPoint) else item)
        self._record(f"sweep-{self.run_id}-{point.label}", point_row(self._name, point, runs))

    def failed(self, message: RunFailed) -> None:
        """The run (or the experiment before it started) failed: why, and what to do."""
        if message.run_id is not None and message.run_id != self.run_id:
            return
        self._state("failed")
        self.show_error(message.what, message.message, message.hint)
        if message.run_id == self.run_id and self.loaded is not None:
            self._not_measured(self.loaded, f"the run failed: {message.message}")

    def died(self, message: HostDied) -> None:
        """The engine process ended by itself: keep what the panel received, say what happened and what to do."""
        if not self.busy or self.loaded is None:
            return
        name, was_run = self.loaded.name, self.busy == "run"
        self._end()
        live = self.panel.live
        figures = live.figures() if live is not None else None
        cut = was_run and figures is not None and figures.tokens_done > 0
        if cut and figures is not None:  # the tokens stay on screen; the run goes to Results, marked partial
            self._record(f"run-{self.run_id}", cut_run_row(f"run {self.run_id}", largest_batch(self.params), figures))
        self._state("partial" if cut else "failed")
        self.show_error(name, message.message, crash_hint(message.exitcode, largest_batch(self.params)))
        self._not_measured(self.loaded, f"the engine process ended: {message.message}")

    # ---------------------------------------------------------------------------------------- finishing

    def finished(self, message: RunFinished) -> None:
        """The run ended: file its result where it belongs (None: it failed, ``failed`` said why)."""
        if message.run_id != self.run_id:
            return
        self._end()
        result = message.result
        if result is None or self.loaded is None:
            return
        self.panel.show_result(result)
        if isinstance(result, RunResult) and isinstance(self.loaded.experiment, Generate):
            self._finish_run(result)
        elif self.axis is not None and isinstance(result, SweepResult | LoadSweepResult):
            self._finish_sweep(result)
        else:
            self._finish_other(result)

    def _finish_run(self, result: RunResult) -> None:
        summary = result.summary()
        state = "partial" if result.partial else "done"
        if result.error:
            state = "failed" if not summary.output_tokens else "partial"
        self._state("stopped" if self.stopping else state)
        self._record(f"run-{self.run_id}", run_row(f"run {self.run_id}", largest_batch(self.params), summary, state))
        self.store.keep("run", self._settings, result)
        if not self.stopping:
            self.estimate.observe_run(result)
            self.changed()
        note = Text()
        setup = result.setup_note()
        if setup:
            note.append(setup + ". ", NOTE_STYLE)
        if result.partial:
            note.append("partial result (stopped or failed) — kept and marked in Results. ", PARTIAL_STYLE)
        if result.error:
            note.append(result.error, ERROR_STYLE)
        self.panel.note(note)
        self.panel.invalidate()
        self.panel.refresh_tokens()
        if result.error and not summary.output_tokens:
            self._not_measured(self.loaded, f"the run failed: {result.error}")
        else:
            self._answer(result, complete=not (result.partial or result.error or self.stopping))

    def _finish_sweep(self, result: SweepResult | LoadSweepResult) -> None:
        partial = result.partial or self.stopping
        self._state("stopped" if self.stopping else "done")
        self.store.keep(self._name, self._settings, result)
        self.charts.finish_sweep(self._name, result, partial)
        loaded = self.loaded
        if loaded is not None and loaded.lesson is not None and loaded.step is not None:
            self.app.query_one(LessonPane).keep_chart(loaded.lesson, loaded.step, self.charts.saved(self._name))
        self.panel.note(Text("sweep stopped: what was measured is kept, marked partial in Results", PARTIAL_STYLE)
                        if partial else "")
        self._answer(result, complete=not partial)

    def _finish_other(self, result: Result) -> None:
        """Comparisons, inspections and the lesson experiments: their view, by result type."""
        self._state("stopped" if self.stopping else "done")
        self.store.keep(self._name, self._settings, result)
        self.panel.note(Text("stopped: partial result kept", style=PARTIAL_STYLE) if self.stopping else "")
        inspection = self.loaded is not None and self.loaded.experiment.kind == "inspect"
        self.charts.finish_result(self._name, result, inspection)
        partial = bool(result.to_dict().get("partial"))
        self._answer(result, complete=not (partial or self.stopping))

    @property
    def _name(self) -> str:
        return self.loaded.name if self.loaded is not None else ""

    # -------------------------------------------------------------------------------- saying and answering

    def show_error(self, what: str, message: str, hint: str) -> None:
        """``what failed: message — hint`` under the figures (and above the charts when it was not a plain run)."""
        note = Text(f"{what} failed: {message}", style=ERROR_STYLE)
        if hint:
            note.append(f" — {hint}", "bold")
        self.panel.note(note)
        if what != "run":
            self.charts.note(note)
        self.app.notify(note.plain, severity="error", timeout=6)

    def _answer(self, result: Result, complete: bool) -> None:
        """Put the measured value of the run's step's prediction beside the guess, save it, mark the step done."""
        loaded = self.loaded
        if loaded is None or loaded.lesson is None or loaded.step is None:
            return
        value, text = (None, "") if loaded.step.predict is None else measure(loaded.step.predict, result)
        self.app.query_one(LessonPane).step_finished(loaded.lesson, loaded.step, value, text, done=complete)

    def _not_measured(self, loaded: LoadedExperiment | None, reason: str) -> None:
        """The run that should answer the step's prediction failed or was refused: say why beside the guess."""
        if loaded is None or loaded.lesson is None or loaded.step is None or loaded.step.predict is None:
            return
        self.app.query_one(LessonPane).step_finished(loaded.lesson, loaded.step, None, f"not measured ({reason})",
                                                     done=False)
