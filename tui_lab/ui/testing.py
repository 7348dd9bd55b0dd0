"""A deterministic lab for tests, snapshots and benchmarks: scripted engine, fake clock, fixed lesson.

Snapshots must not change when the real lessons are edited or when the machine
is slow, so the factory here fixes everything the screen shows: the engine
(``ScriptedEngine`` on a ``FakeClock`` unless told otherwise, in its own host process),
the lesson text, and the export folder.
"""

from __future__ import annotations

from tui_lab.lessons import Lesson, Prediction, Step
from tui_lab.params import Value
from tui_lab.ui.app import AppOptions, LabApp

FIXTURE_LESSONS = [
    Lesson("01", "Test lesson", 5, (
        Step("One request", "Press **r** to run one request and watch each token arrive.", "generate",
             {"batch_size": 1, "max_new_tokens": 16},
             predict=Prediction("How many tokens per second will one request get?", "tokens/s",
                                "summary.output_tokens_per_s")),
        Step("A batch sweep", "Throughput grows with the batch until the **knee**.", "batch_sweep",
             {"batch_sizes": [1, 4, 16, 64], "max_new_tokens": 8, "runs": 1, "warmup": 0}),
        Step("Reading only", "A step without an experiment."),
    )),
]
"""One lesson of three steps: a run with a prediction, a batch sweep, a reading step."""

SCRIPTED_SPEC = "tui_lab.engines.scripted:make_scripted"
"""The scripted engine, made by name inside the host process."""


def make_test_app(export_dir: str | None = None, lessons: list[Lesson] | None = None, lesson: str | None = None,
                  engine_spec: str = SCRIPTED_SPEC, **engine_options: Value) -> LabApp:
    """The lab with a scripted engine and the fixture lesson (no files read, no torch).

    ``lessons``/``lesson`` swap in other lessons and pick the one to open (as ``--lesson`` does);
    ``engine_options`` go to the engine factory (``real_time``, ``timing``, ``fail_at_batch``, ``load_error``,
    or ``model`` to pick a behaviour of a test engine).
    """
    options = AppOptions(
        engine="transformers", lesson=lesson, engine_spec=engine_spec,
        engine_options={"model": "embedded", "device": "cpu", **engine_options},
        export_dir=export_dir,
        lessons=FIXTURE_LESSONS if lessons is None else lessons,
        cursor_blink=False,
        save_progress=False,
    )
    return LabApp(options)
