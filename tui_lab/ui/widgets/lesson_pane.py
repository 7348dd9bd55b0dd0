"""The lesson pane: a step's Markdown, step navigation, and the "predict, then measure" box."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Markdown, Static

from tui_lab.ui.theme import NARROW_WIDTH

NO_LESSONS = """\
# No lessons loaded

{reason}

The live panel works on its own: open **Controls** (key 2), set a batch size,
then press **r** to run and **s** to stop.
"""


def lesson_loader() -> tuple[list[Any], str | None]:
    """Load lessons through ``tui_lab.lessons``; on any failure return no lessons and why."""
    try:
        from tui_lab.lessons import load_lessons
    except ImportError as exc:
        return [], f"The lessons package is not available ({exc})."
    try:
        lessons = list(load_lessons())
    except Exception as exc:  # a malformed lesson must not stop the lab: show why instead
        return [], f"Lessons could not be read: {exc}"
    if not lessons:
        return [], "No lesson files were found."
    return lessons, None


def _step_key(step: Any) -> str:
    """The step's progress key: ``Step.key``, or its title as a slug (the same rule) for other step objects."""
    key = getattr(step, "key", None)
    if key:
        return str(key)
    from tui_lab.lessons._format import slugify

    return slugify(step.title)


def step_markdown(lesson: Any, step: Any, index: int, saved: Any = None) -> str:
    """A step's Markdown: the lesson's intro and what it needs above the first step, the step text,
    and the experiment it loads."""
    head = ""
    needs = (getattr(lesson, "needs", "") or "").strip()
    if needs:
        head += f"> **This lesson needs:** {needs}\n\n"
    if index == 0 and (getattr(lesson, "intro", "") or "").strip():
        head += f"{lesson.intro.strip()}\n\n"
    if head:
        head += "---\n\n"
    done = " ✓" if saved is not None and getattr(saved, "done", False) else ""
    extra = ""
    if getattr(step, "experiment", None):
        extra = f"\n\n---\n*Experiment:* `{step.experiment}` is loaded in the live panel — press **r** to run it."
    return f"{head}## {step.title}{done}\n\n{step.body}{extra}"


class LessonPane(Vertical):
    """Shows one step at a time; n / p move between steps, N / P between lessons."""

    class StepShown(Message):
        """A step became visible; the app loads its experiment preset."""

        def __init__(self, lesson: Any, step: Any, index: int) -> None:
            super().__init__()
            self.lesson = lesson
            self.step = step
            self.index = index

    class PredictionMade(Message):
        """The learner submitted a guess for the current step."""

        def __init__(self, lesson: Any, step: Any, guess: str) -> None:
            super().__init__()
            self.lesson = lesson
            self.step = step
            self.guess = guess

    def __init__(self, lessons: list[Any], reason: str | None, store: Any = None, start: str | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.start = start
        """``--lesson`` as given (an id like ``02``), or None to resume where the learner left off."""
        self.store = store
        """A ``tui_lab.lessons.ProgressStore`` (or None): where the learner is, their guesses and results."""
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
        with Vertical(id="predict-box"):
            yield Static("", id="predict-question")
            yield Input(placeholder="your guess, then Enter", id="predict-input", compact=True)
            yield Static("", id="predict-result")

    def on_mount(self) -> None:
        """Open at --lesson, else where the learner left off, else the first step (or say why there are none)."""
        if self.store is not None and self.lessons:
            try:
                self.lesson_index, self.step_index = self.store.resume(self.lessons, self.start)
            except Exception as exc:  # e.g. LessonNotFound for a bad --lesson: say so, open the first lesson
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
    def lesson(self) -> Any | None:
        """The current lesson, if any."""
        return self.lessons[self.lesson_index] if self.lessons else None

    @property
    def step(self) -> Any | None:
        """The current step, if any."""
        lesson = self.lesson
        if lesson is None or not lesson.steps:
            return None
        return lesson.steps[self.step_index]

    def record(self, method: str, *args: Any, lesson: Any = None, step: Any = None) -> None:
        """Save progress through the store (for the current step unless told which); a failing save
        never interrupts the lesson."""
        lesson, step = lesson or self.lesson, step or self.step
        if self.store is None or lesson is None or step is None:
            return
        try:
            if method == "position":
                self.store.set_position(lesson.id, self.step_index)
            else:
                getattr(self.store, method)(lesson.id, _step_key(step), *args)
        except Exception as exc:  # a read-only home or a full disk must not stop the lab
            self.app.notify(f"progress not saved: {exc}", severity="warning", timeout=4)
            self.store = None

    def step_finished(self, lesson: Any, step: Any, value: float | None, text: str, done: bool) -> None:
        """The experiment of ``step`` ended: show and save the measured value (``text`` says why when
        there is none); ``done`` marks the step finished in the progress file."""
        if getattr(step, "predict", None) is not None and text:
            if value is not None:
                self.record("set_result", value, {"measured": text}, lesson=lesson, step=step)
            if lesson is self.lesson and step is self.step:
                self.show_measured(text)
        if done:
            self.record("mark_done", lesson=lesson, step=step)

    def _saved(self) -> Any:
        """The progress record of the current step (None without a store)."""
        lesson, step = self.lesson, self.step
        if self.store is None or lesson is None or step is None:
            return None
        try:
            return self.store.step(lesson.id, _step_key(step))
        except Exception:  # an unreadable record is no record
            return None

    def move(self, delta: int) -> None:
        """Next / previous step, crossing into the next / previous lesson at the ends."""
        lesson, leaving = self.lesson, self.step
        if lesson is None:
            return
        if delta > 0 and leaving is not None and not getattr(leaving, "experiment", None):
            # A reading step (no experiment) is finished once the learner moves on from it.
            self.record("mark_done", lesson=lesson, step=leaving)
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
        prediction = getattr(step, "predict", None)
        box.display = prediction is not None
        if prediction is not None:
            unit = f" ({prediction.unit})" if getattr(prediction, "unit", None) else ""
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
        self.record("position")
        if announce:
            self.post_message(self.StepShown(lesson, step, self.step_index))

    def _set_placeholder(self) -> None:
        """Narrow terminals hide the question line, so the box itself asks it."""
        prediction = getattr(self.step, "predict", None) if self.step is not None else None
        if prediction is None:
            return
        unit = f" ({prediction.unit})" if getattr(prediction, "unit", None) else ""
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
        if self.guess is not None:
            self.record("set_prediction", self.guess)
            self.post_message(self.PredictionMade(self.lesson, self.step, self.guess))

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
