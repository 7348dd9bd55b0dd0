"""A deterministic lab for tests, snapshots and benchmarks: scripted engine, fake clock, fixed lesson.

Snapshots must not change when the real lessons are edited or when the machine
is slow, so the factory here fixes everything the screen shows: the engine
(``ScriptedEngine`` on a ``FakeClock`` unless told otherwise), the lesson text,
and the export folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tui_lab.engines.scripted import FakeClock, ScriptedEngine, StepModel
from tui_lab.ui.app import AppOptions, LabApp


@dataclass(frozen=True)
class FixturePrediction:
    """Same fields as ``tui_lab.lessons.Prediction``."""

    question: str
    unit: str
    metric: str


@dataclass(frozen=True)
class FixtureStep:
    """Same fields as ``tui_lab.lessons.Step``."""

    title: str
    body: str
    experiment: str | None = None
    params: dict = field(default_factory=dict)
    predict: FixturePrediction | None = None


@dataclass(frozen=True)
class FixtureLesson:
    """Same fields as ``tui_lab.lessons.Lesson``."""

    id: str
    title: str
    minutes: int
    steps: tuple[FixtureStep, ...]


FIXTURE_LESSONS = [
    FixtureLesson("01", "Test lesson", 5, (
        FixtureStep("One request", "Press **r** to run one request and watch each token arrive.", "generate",
                    {"batch_size": 1, "max_new_tokens": 16},
                    FixturePrediction("How many tokens per second will one request get?", "tokens/s",
                                      "summary.output_tokens_per_s")),
        FixtureStep("A batch sweep", "Throughput grows with the batch until the **knee**.", "batch_sweep",
                    {"batch_sizes": [1, 4, 16, 64], "max_new_tokens": 8, "runs": 1, "warmup": 0}),
        FixtureStep("Reading only", "A step without an experiment."),
    )),
]


def scripted_factory(clock: Any = None, timing: StepModel | None = None, real_time: bool = False,
                     fail_at_batch: int | None = None, load_error: Exception | None = None):
    """An ``engine_factory`` returning scripted engines (or raising ``load_error`` on load)."""

    def factory(name: str, **options: Any) -> ScriptedEngine:
        engine = ScriptedEngine(clock=clock if clock is not None else FakeClock(), timing=timing,
                                real_time=real_time, fail_at_batch=fail_at_batch,
                                model=str(options.get("model", "scripted")))
        if load_error is not None:
            def fail(progress: Any = None) -> Any:
                raise load_error
            engine.load = fail  # type: ignore[method-assign]
        return engine

    return factory


def make_test_app(export_dir: str | None = None, lessons: list[Any] | None = None, lesson: str | None = None,
                  **factory_options: Any) -> LabApp:
    """The lab with a scripted engine and the fixture lesson (no files read, no torch).

    ``lessons``/``lesson`` swap in other lessons and pick the one to open (as ``--lesson`` does).
    """
    options = AppOptions(
        model="embedded", engine="transformers", device="cpu", lesson=lesson,
        engine_spec="tui_lab.engines.scripted:make_scripted",
        engine_options=dict(factory_options),
        export_dir=export_dir,
        lessons=FIXTURE_LESSONS if lessons is None else lessons,
        cursor_blink=False,
        save_progress=False,
    )
    return LabApp(options)
