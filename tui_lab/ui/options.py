"""How the lab starts: the options the CLI (or a test, or a benchmark) opens the app with."""

from __future__ import annotations

from dataclasses import dataclass, field

from tui_lab.engines.options import ENGINE_NAMES
from tui_lab.lessons import Lesson
from tui_lab.params import Value
from tui_lab.ui.host_link import EngineFactory


@dataclass
class AppOptions:
    """How the lab starts (the CLI fills these from its flags)."""

    engine: str = ENGINE_NAMES[0]
    engine_options: dict[str, Value] = field(default_factory=dict)
    """The engine's options as given (model, device, cache_dir, base_url, api_key_env, ...); tests add their
    engine's own (a clock, a timing model)."""
    lesson: str | None = None
    engine_factory: EngineFactory | None = None
    """A factory object (tests, benchmarks lending a loaded engine): the host loop then runs in a thread of
    this process. Leave it None to run the engine in its own process."""
    engine_spec: str | None = None
    """``"module:function"`` making engines inside the host process (tests use a scripted one); None means
    ``tui_lab.engines.create_engine``."""
    export_dir: str | None = None
    """Where exports and screenshots go (default: ``tui_lab.lab.export.default_export_dir()``)."""
    lessons: list[Lesson] | None = None
    """Lessons to show instead of loading ``lessons/`` (tests and snapshots use fixed ones)."""
    save_progress: bool = True
    """Keep the learner's place, guesses and results in their data dir (tests switch it off)."""
    progress_path: str | None = None
    """Where the progress file lives (default: ``tui_lab.lessons.ProgressStore``'s user data dir)."""
    cursor_blink: bool = True
    """Tests and snapshots switch blinking off so every frame is the same."""
