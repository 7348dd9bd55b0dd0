"""The lesson pane: a step's Markdown, step navigation, and the "predict, then measure" box."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Markdown, Static

from tui_lab.errors import LabError
from tui_lab.lessons import Lesson, ProgressStore, Step, load_lessons
from tui_lab.lessons.progress import StepRecord
from tui_lab.ui.theme import NARROW_WIDTH

NO_LESSONS = """\
# No lessons loaded

{reason}

The live panel works on its own: open **Controls** (key 2), set a batch size,
then press **r** to run and **s** to stop.
"""


def lesson_loader() -> tuple[list[Lesson], str | None]:
    """Load lessons through ``tui_lab.lessons``; on any failure return no lessons and why."""
    try:
        lessons = list(load_lessons())
    except Exception as exc:  # a malformed lesson must not stop the lab: show why instead
        return [], f"Lessons could not be read: {exc}"
    if not lessons:
        return [], "No lesson files were found."
    return lessons, None


def step_markdown(lesson: Lesson, step: Step, index: int, saved: StepRecord | None = None) -> str:
    """A step's Markdown: the lesson's intro and what it needs above the first step, the step text,
    and the experiment it loads."""
    head = ""
    needs = lesson.needs.strip()
    if needs:
        head += f"> **This lesson needs:** {needs}\n\n"
    if index == 0 and lesson.intro.strip():
        head += f"{lesson.intro.strip()}\n\n"
    if head:
        head += "---\n\n"
    done = " ✓" if saved is not None and saved.done else ""
    extra = ""
    if step.experiment:
        extra = f"\n\n---\n*Experiment:* `{step.experiment}` is loaded in the live panel — press **r** to run it."
    return f"{head}## {step.title}{done}\n\n{step.body}{extra}"


class LessonPane(Vertical):
    """Shows one step at a time; n / p move between steps, N / P between lessons."""

    class StepShown(Message):
        """A step became visible; the app loads its experiment preset."""

        def __init__(self, lesson: Lesson, step: Step, index: int) -> None:
            super().__init__()
            self.lesson = lesson
            self.step = step
            self.index = index

    class PredictionMade(Message):
        """The learner submitted a guess for the current step."""

        def __init__(self, lesson: Lesson, step: Step, guess: str) -> None:
            super().__init__()
            self.lesson = lesson
            self.step = step
            self.guess = guess

    def __init__(self, lessons: list[Lesson] | None, store: ProgressStore | None = None, start: str | None = None,
                 cursor_blink: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        if lessons is None:
            lessons, reason = lesson_loader()
        else:
            reason = None if lessons else "No lessons were given."
        self.cursor_blink = cursor_blink
        self.start = start
        """``--lesson`` as given (an id like ``02``), or None to resume where the learner left off."""
        self.store = store
        """Where the learner is, their guesses and results (None: nothing is saved)."""
        self.lessons = lessons
        self.reason = reason
        self.lesson_index = 0
        self.step_index = 0
        self.guess: str | None = None
        self.measured: str | None = None

    def compose(self) -> ComposeResult:
        """Title line, the step text, the prediction box."""
        yield Label("", id="lesson-title")
        # Not focusable: moving between steps must never leave the cursor in a text box (keys would type);
        # the app scrolls it with ↑ ↓ PgUp PgDn instead.
        with VerticalScroll(id="lesson-scroll", can_focus=False):
            yield Markdown("", id="lesson-md")
        yield Static("", id="step-run")
        with Vertical(id="predict-box"):
            yield Static("", id="predict-question")
            box = Input(placeholder="your guess, then Enter", id="predict-input", compact=True)
            box.cursor_blink = self.cursor_blink
            yield box
            yield Static("", id="predict-result")

    def on_mount(self) -> None:
        """Open at --lesson, else where the learner left off, else the first step (or say why there are none).

        A progress file that could not be read was moved aside by the store: the learner is told where, once.
        """
        notice = self.store.take_notice() if self.store is not None else None
        if notice:
            self.app.notify(notice, severity="warning", timeout=20)
        if self.store is not None and self.lessons:
            try:
                self.lesson_index, self.step_index = self.store.resume(self.lessons, self.start)
            except LabError as exc:  # LessonNotFound for a bad --lesson: say so, open the first lesson
                self.app.notify(str(exc), severity="warning")
        elif self.start and not self._find(self.start):
            self.app.notify(f"no lesson {self.start!r}; showing the first one", severity="warning")
        self._render_step(announce=True)

    def _find(self, lesson_id: str) -> bool:
        for i, lesson in enumerate(self.lessons):
            lid = str(lesson.id)
            if lid == lesson_id or lid.split("-")[0].lstrip("0") == lesson_id.lstrip("0"):
                self.lesson_index, self.step_index = i, 0
                return True
        return False

    @property
    def lesson(self) -> Lesson | None:
        """The current lesson, if any."""
        return self.lessons[self.lesson_index] if self.lessons else None

    @property
    def step(self) -> Step | None:
        """The current step, if any."""
        lesson = self.lesson
        if lesson is None or not lesson.steps:
            return None
        return lesson.steps[self.step_index]

    def _save(self, write: Callable[[ProgressStore], None]) -> None:
        """Save progress through the store; a failing save never interrupts the lesson."""
        if self.store is None:
            return
        write(self.store)
        if self.store.save_error:  # a read-only home or a full disk must not stop the lab
            self.app.notify(f"progress not saved: {self.store.save_error}", severity="warning", timeout=4)
            self.store = None

    def _save_position(self) -> None:
        lesson = self.lesson
        if lesson is not None:
            self._save(lambda store: store.set_position(lesson.id, self.step_index))

    def _mark_done(self, lesson: Lesson, step: Step) -> None:
        self._save(lambda store: store.mark_done(lesson.id, step.key))

    def step_finished(self, lesson: Lesson, step: Step, value: float | None, text: str, done: bool) -> None:
        """The experiment of ``step`` ended: show and save the measured value (``text`` says why when
        there is none); ``done`` marks the step finished in the progress file."""
        if step.predict is not None and text:
            if value is not None:
                self._save(lambda store: store.set_result(lesson.id, step.key, value, {"measured": text}))
            if lesson is self.lesson and step is self.step:
                self.show_measured(text)
        if done:
            self._mark_done(lesson, step)

    def keep_row(self, lesson: Lesson, step: Step, row: dict[str, object]) -> None:
        """Keep a Results row with the step it answers, for the next session."""
        self._save(lambda store: store.add_row(lesson.id, step.key, row))

    def keep_chart(self, lesson: Lesson, step: Step, chart: dict[str, object]) -> None:
        """Keep the step's last sweep chart, for the next session."""
        self._save(lambda store: store.set_chart(lesson.id, step.key, chart))

    def _saved(self) -> StepRecord | None:
        """The progress record of the current step (None without a store)."""
        lesson, step = self.lesson, self.step
        if self.store is None or lesson is None or step is None:
            return None
        return self.store.step(lesson.id, step.key)

    def move(self, delta: int) -> None:
        """Next / previous step, crossing into the next / previous lesson at the ends."""
        lesson, leaving = self.lesson, self.step
        if lesson is None:
            return
        if delta > 0 and leaving is not None and not leaving.experiment:
            # A reading step (no experiment) is finished once the learner moves on from it.
            self._mark_done(lesson, leaving)
        target = self.step_index + delta
        if 0 <= target < len(lesson.steps):
            self.step_index = target
        elif target >= len(lesson.steps) and self.lesson_index + 1 < len(self.lessons):
            self.lesson_index, self.step_index = self.lesson_index + 1, 0
        elif target < 0 and self.lesson_index > 0:
            self.lesson_index -= 1
            self.step_index = max(0, len(self.lessons[self.lesson_index].steps) - 1)
        else:
            self.app.bell()
            return
        self._render_step(announce=True)

    def move_lesson(self, delta: int) -> None:
        """Next / previous lesson, at its first step."""
        target = self.lesson_index + delta
        if not 0 <= target < len(self.lessons):
            self.app.bell()
            return
        self.lesson_index, self.step_index = target, 0
        self._render_step(announce=True)

    def _render_step(self, announce: bool) -> None:
        if isinstance(self.app.focused, Input) and self.app.focused.id == "predict-input":
            self.screen.set_focus(None)
        title = self.query_one("#lesson-title", Label)
        md = self.query_one("#lesson-md", Markdown)
        box = self.query_one("#predict-box")
        self.guess = None
        self.measured = None
        lesson, step = self.lesson, self.step
        if lesson is None or step is None:
            title.update("Lessons")
            md.update(NO_LESSONS.format(reason=self.reason or "This lesson has no steps."))
            box.display = False
            return
        title.update(
            f"{lesson.id} · {lesson.title} · step {self.step_index + 1}/{len(lesson.steps)}"
            f" · ~{lesson.minutes} min   (n next · p back)"
        )
        saved = self._saved()
        md.update(step_markdown(lesson, step, self.step_index, saved))
        self.query_one("#lesson-scroll", VerticalScroll).scroll_home(animate=False)
        prediction = step.predict
        box.display = prediction is not None
        if prediction is not None:
            unit = f" ({prediction.unit})" if prediction.unit else ""
            self.query_one("#predict-question", Static).update(f"Predict: {prediction.question}{unit}")
            box_input = self.query_one("#predict-input", Input)
            box_input.value = ""
            self._set_placeholder()
            result = self.query_one("#predict-result", Static)
            result.update("")
            result.display = False
            if saved is not None and (saved.prediction is not None or saved.result is not None):
                # Resumed: the guess and the measurement of the last session, until the next run.
                self.guess = str(saved.prediction) if saved.prediction is not None else None
                if saved.result is not None:
                    shown = (saved.details or {}).get("measured")
                    self.measured = f"{shown if isinstance(shown, str) else f'{saved.result:g}'} (last session)"
                self._show_comparison()
        self._save_position()
        if announce:
            self.post_message(self.StepShown(lesson, step, self.step_index))

    def _set_placeholder(self) -> None:
        """Narrow terminals hide the question line, so the box itself asks it."""
        prediction = self.step.predict if self.step is not None else None
        if prediction is None:
            return
        unit = f" ({prediction.unit})" if prediction.unit else ""
        narrow = self.app.size.width < NARROW_WIDTH
        self.query_one("#predict-input", Input).placeholder = (
            f"{prediction.question}{unit} — press i, type a guess, Enter" if narrow
            else "press i, type your guess, then Enter"
        )

    def on_resize(self) -> None:
        """Re-word the guess box for the new width."""
        self._set_placeholder()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Keep the guess; the measured value appears beside it after the run."""
        if event.input.id != "predict-input":
            return
        event.stop()
        self.screen.set_focus(None)  # back to keys: r runs the experiment
        self.guess = event.value.strip() or None
        self._show_comparison()
        lesson, step, guess = self.lesson, self.step, self.guess
        if guess is not None and lesson is not None and step is not None:
            self._save(lambda store: store.set_prediction(lesson.id, step.key, guess))
            self.post_message(self.PredictionMade(lesson, step, guess))

    def show_run_line(self, text: str) -> None:
        """The line under the step: what ``r`` runs here and about how long it takes on this machine."""
        line = self.query_one("#step-run", Static)
        if str(line.content) != text:
            line.update(text)

    def show_measured(self, measured: str) -> None:
        """Put the measured figure beside the learner's guess."""
        self.measured = measured
        self._show_comparison()

    def _show_comparison(self) -> None:
        guess = self.guess if self.guess is not None else "(no guess yet)"
        measured = self.measured if self.measured is not None else "run the experiment (r)"
        result = self.query_one("#predict-result", Static)
        result.display = True
        result.update(f"your guess: {guess}   measured: {measured}")
