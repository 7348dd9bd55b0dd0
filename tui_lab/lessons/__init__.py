"""Lessons: Markdown files with front matter and steps, their loader, and the learner's progress.

The public surface is small: :func:`load_lessons` reads ``lessons/NN-name.md``
into :class:`Lesson` objects (raising :class:`LessonError` with file and line
for malformed files), :func:`find_lesson` resolves ``--lesson 02``, and
:class:`~tui_lab.lessons.progress.ProgressStore` keeps the learner's place.
"""

from tui_lab.lessons._format import (
    Lesson,
    LessonError,
    LessonNotFound,
    Measured,
    Prediction,
    Step,
    default_lessons_dir,
    experiments_named,
    find_lesson,
    load_lessons,
    measure_metric,
    parse_lesson,
    parse_metric_path,
    resolve_metric,
)
from tui_lab.lessons.progress import ProgressStore

__all__ = [
    "Lesson",
    "LessonError",
    "LessonNotFound",
    "Measured",
    "Prediction",
    "ProgressStore",
    "Step",
    "default_lessons_dir",
    "experiments_named",
    "find_lesson",
    "load_lessons",
    "measure_metric",
    "parse_lesson",
    "parse_metric_path",
    "resolve_metric",
]
