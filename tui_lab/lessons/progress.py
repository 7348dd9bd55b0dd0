"""Where the learner is: steps done, predictions typed, results measured, last position.

A step also keeps the rows its runs added to the Results table (the newest ``MAX_ROWS_PER_STEP``) and the
last sweep chart it drew, so a lab started again shows them as they were.

One JSON file in the user's data directory (``platformdirs.user_data_dir("inference-lab")``,
or ``$INFERENCE_LAB_DATA``). Every change is written at once and atomically
(temporary file in the same directory, then ``os.replace``), so a crash never
leaves half a file. A file that does not parse is moved aside and the learner
starts afresh: losing progress is annoying, refusing to start is worse.

Steps are keyed by :attr:`tui_lab.lessons.Step.key` (the title's slug), so
adding a step to a lesson does not shift the learner's record onto other steps.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tui_lab.lessons._format import Lesson, find_lesson
from tui_lab.paths import DATA_ENV, data_dir

__all__ = ["DATA_ENV", "FILE_NAME", "FORMAT_VERSION", "LessonProgress", "ProgressStore", "StepRecord", "data_dir"]

FILE_NAME = "progress.json"
FORMAT_VERSION = 1
MAX_ROWS_PER_STEP = 50
"""Results rows kept per step (the newest): enough for every point of a few sweeps."""


@dataclass
class StepRecord:
    """What happened at one step."""

    done: bool = False
    prediction: float | str | None = None
    result: float | None = None
    """The measured value of the step's predicted metric."""
    details: dict | None = None
    """Optional extra context of the result (e.g. device, engine, model) for showing it later."""
    updated: float = 0.0
    rows: list[dict] = field(default_factory=list)
    """The Results rows the step's runs added, oldest first (plain JSON)."""
    chart: dict | None = None
    """The last sweep chart the step drew (its experiment, axis and points, plain JSON)."""

    def to_dict(self) -> dict:
        """JSON form (empty fields left out)."""
        out: dict = {"done": self.done, "updated": self.updated}
        if self.prediction is not None:
            out["prediction"] = self.prediction
        if self.result is not None:
            out["result"] = self.result
        if self.details:
            out["details"] = self.details
        if self.rows:
            out["rows"] = self.rows
        if self.chart:
            out["chart"] = self.chart
        return out

    @classmethod
    def from_dict(cls, data: dict) -> StepRecord:
        """Read back what :meth:`to_dict` wrote, ignoring fields of the wrong type."""
        pred = data.get("prediction")
        res = data.get("result")
        details = data.get("details")
        rows = data.get("rows")
        chart = data.get("chart")
        return cls(
            done=bool(data.get("done", False)),
            prediction=pred if isinstance(pred, (int, float, str)) and not isinstance(pred, bool) else None,
            result=float(res) if isinstance(res, (int, float)) and not isinstance(res, bool) else None,
            details=details if isinstance(details, dict) else None,
            updated=float(data.get("updated", 0.0) or 0.0),
            rows=[r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else [],
            chart=chart if isinstance(chart, dict) else None,
        )


@dataclass
class LessonProgress:
    """One lesson's record: its steps and the step the learner was last on."""

    position: int = 0
    steps: dict[str, StepRecord] = field(default_factory=dict)
    updated: float = 0.0

    def step(self, key: str) -> StepRecord:
        """The record of step ``key`` (an empty one if never touched; not stored until changed)."""
        return self.steps.get(key) or StepRecord()

    def done_count(self, keys: list[str] | None = None) -> int:
        """How many steps are done (of ``keys`` if given)."""
        return sum(1 for k, rec in self.steps.items() if rec.done and (keys is None or k in keys))

    def to_dict(self) -> dict:
        """JSON form."""
        return {
            "position": self.position,
            "updated": self.updated,
            "steps": {k: rec.to_dict() for k, rec in self.steps.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> LessonProgress:
        """Read back what :meth:`to_dict` wrote."""
        raw = data.get("steps")
        steps: dict[str, object] = raw if isinstance(raw, dict) else {}
        pos = data.get("position", 0)
        return cls(
            position=pos if isinstance(pos, int) and pos >= 0 else 0,
            steps={str(k): StepRecord.from_dict(v) for k, v in steps.items() if isinstance(v, dict)},
            updated=float(data.get("updated", 0.0) or 0.0),
        )


class ProgressStore:
    """The learner's progress file: read once, written atomically after every change.

    Thread-safe, since the TUI records results from worker threads.
    A file that cannot be read as a progress document (not JSON, not UTF-8, not the expected shape) is
    moved aside: ``recovered_from`` is where it went, and ``take_notice()`` gives
    the one line to tell the learner, once.
    """

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else data_dir() / FILE_NAME
        self.recovered_from: Path | None = None
        self._notice: str | None = None
        self._lock = threading.Lock()
        self._lessons: dict[str, LessonProgress] = {}
        self._last_lesson: str | None = None
        self._load()

    def _load(self) -> None:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except UnicodeDecodeError:
            # Not text at all (a binary file, another encoding): as corrupt as bad JSON.
            self._move_aside()
            return
        except OSError:
            # Unreadable (permissions, a directory in its place): keep going without saved progress.
            return
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or not isinstance(data.get("lessons", {}), dict):
                raise ValueError("not a progress document")
            self._lessons = {
                str(k): LessonProgress.from_dict(v) for k, v in data.get("lessons", {}).items() if isinstance(v, dict)
            }
            last = data.get("last_lesson")
            self._last_lesson = last if isinstance(last, str) else None
        except ValueError:
            self._move_aside()

    def _move_aside(self) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            os.replace(self.path, target)
            self.recovered_from = target
            self._notice = (f"your progress file could not be read, so it was moved to {target} "
                            "and progress starts afresh")
        except OSError as exc:
            self.recovered_from = None
            self._notice = (f"your progress file {self.path} could not be read nor moved aside "
                            f"({exc.strerror or exc}); progress starts afresh")
        self._lessons = {}
        self._last_lesson = None

    def take_notice(self) -> str | None:
        """The one line to tell the learner about an unreadable progress file; None after the first call."""
        notice, self._notice = self._notice, None
        return notice

    # -- reading ---------------------------------------------------------------------------

    def lesson(self, lesson_id: str) -> LessonProgress:
        """One lesson's record (empty if never started); change it through the setters so it is saved."""
        with self._lock:
            return self._lessons.get(lesson_id) or LessonProgress()

    def step(self, lesson_id: str, step_key: str) -> StepRecord:
        """One step's record."""
        return self.lesson(lesson_id).step(step_key)

    def position(self, lesson_id: str, n_steps: int | None = None) -> int:
        """The step index to resume at, clamped to ``n_steps`` if given (lessons can shrink)."""
        pos = self.lesson(lesson_id).position
        if n_steps is not None:
            pos = max(0, min(pos, n_steps - 1))
        return pos

    @property
    def last_lesson(self) -> str | None:
        """The id of the lesson the learner was last in."""
        return self._last_lesson

    def resume(self, lessons: Sequence[Lesson], query: str | None = None) -> tuple[int, int]:
        """Where to open: (lesson index, step index).

        ``query`` (``--lesson 02``) picks the lesson (``LessonNotFound`` if nothing
        matches); otherwise the last lesson the learner was in, else the first.
        Within the lesson, the step the learner was last on.
        """
        if not lessons:
            return 0, 0
        if query is not None:
            lesson = find_lesson(lessons, query)
        else:
            lesson = next((item for item in lessons if item.id == self._last_lesson), lessons[0])
        index = next(i for i, item in enumerate(lessons) if item is lesson)
        return index, self.position(lesson.id, len(lesson.steps))

    # -- writing ---------------------------------------------------------------------------

    def set_position(self, lesson_id: str, index: int) -> None:
        """Remember the step the learner is on (and that this lesson is the current one)."""
        with self._lock:
            rec = self._lessons.setdefault(lesson_id, LessonProgress())
            rec.position = max(0, int(index))
            rec.updated = time.time()
            self._last_lesson = lesson_id
            self._save()

    def mark_done(self, lesson_id: str, step_key: str, done: bool = True) -> None:
        """Mark a step done (or not)."""
        self._update(lesson_id, step_key, done=done)

    def set_prediction(self, lesson_id: str, step_key: str, value: float | str | None) -> None:
        """Store the learner's guess."""
        self._update(lesson_id, step_key, prediction=value)

    def set_result(self, lesson_id: str, step_key: str, value: float | None, details: dict | None = None) -> None:
        """Store the measured value for the step's prediction (and optional context)."""
        self._update(lesson_id, step_key, result=value, details=details)

    def add_row(self, lesson_id: str, step_key: str, row: dict) -> None:
        """Keep one Results row of the step (plain JSON; the oldest go past ``MAX_ROWS_PER_STEP``)."""
        with self._lock:
            lesson = self._lessons.setdefault(lesson_id, LessonProgress())
            rec = lesson.steps.setdefault(step_key, StepRecord())
            rec.rows = [*rec.rows, dict(row)][-MAX_ROWS_PER_STEP:]
            rec.updated = lesson.updated = time.time()
            self._last_lesson = lesson_id
            self._save()

    def set_chart(self, lesson_id: str, step_key: str, chart: dict) -> None:
        """Keep the last sweep chart the step drew (plain JSON)."""
        self._update(lesson_id, step_key, chart=dict(chart))

    def results(self) -> list[tuple[str, str, dict]]:
        """Every kept Results row as (lesson id, step key, row), in the order they were measured (their ``time``)."""
        with self._lock:
            found = [(lid, key, row) for lid, lesson in self._lessons.items() for key, rec in lesson.steps.items()
                     for row in rec.rows]
        return sorted(found, key=lambda item: str(item[2].get("time", "")))

    def last_chart(self) -> tuple[str, str, dict] | None:
        """The newest kept sweep chart as (lesson id, step key, chart), or None."""
        with self._lock:
            charts = [(lid, key, rec.chart) for lid, lesson in self._lessons.items()
                      for key, rec in lesson.steps.items() if rec.chart]
        if not charts:
            return None
        lid, key, chart = max(charts, key=lambda item: str((item[2] or {}).get("time", "")))
        return (lid, key, chart) if chart else None

    def reset(self, lesson_id: str | None = None) -> None:
        """Forget one lesson's progress, or everything."""
        with self._lock:
            if lesson_id is None:
                self._lessons.clear()
                self._last_lesson = None
            else:
                self._lessons.pop(lesson_id, None)
                if self._last_lesson == lesson_id:
                    self._last_lesson = None
            self._save()

    def _update(self, lesson_id: str, step_key: str, **changes: object) -> None:
        with self._lock:
            lesson = self._lessons.setdefault(lesson_id, LessonProgress())
            rec = lesson.steps.setdefault(step_key, StepRecord())
            for name, value in changes.items():
                setattr(rec, name, value)
            rec.updated = lesson.updated = time.time()
            self._last_lesson = lesson_id
            self._save()

    def to_dict(self) -> dict:
        """The whole document as written to disk."""
        return {
            "version": FORMAT_VERSION,
            "last_lesson": self._last_lesson,
            "lessons": {k: v.to_dict() for k, v in self._lessons.items()},
        }

    def _save(self) -> None:
        """Write atomically; a failure to write (read-only home, full disk) must not end the lesson."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(self.to_dict(), fh, indent=1, sort_keys=True)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self.save_error = None
        except OSError as exc:
            self.save_error = str(exc)

    save_error: str | None = None
    """Why the last write failed (None when it worked): the UI may mention it; progress stays in memory."""
