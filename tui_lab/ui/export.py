"""Saving what the lab shows: the session's results (JSON + CSV, ``e``) with the last experiment's trace, and the
screen (SVG, ``w``).

Each says in one line where the files went, or why they could not be written. The trace is the engine host's
recording (the runner records every run in the host): the host writes it, in the format ``--record`` writes
(``tui_lab.lab.trace.write_trace``), and answers with its path; the line waits for that answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from textual.app import App
from textual.notifications import SeverityLevel

from tui_lab.engines.base import EngineInfo
from tui_lab.errors import LabError
from tui_lab.host.protocol import SaveTrace, TraceSaved
from tui_lab.lab.export import default_export_dir
from tui_lab.ui.host_link import HostLink
from tui_lab.ui.results import ResultsStore
from tui_lab.ui.settings import LabSettings


@dataclass(frozen=True)
class Saved:
    """What was written (nothing when it failed) and the line that says so."""

    message: str
    paths: list[Path] = field(default_factory=list)

    @property
    def severity(self) -> SeverityLevel:
        """How the app shows the line."""
        return "information" if self.paths else "warning" if "nothing" in self.message else "error"


def export_folder(given: str | None) -> Path:
    """Where exports and screenshots go: the folder given, else the lab's default one."""
    return Path(given) if given else default_export_dir()


def export_results(store: ResultsStore, folder: Path, settings: LabSettings, engine: EngineInfo | None) -> Saved:
    """Write the results (JSON: everything; CSV: one row per run and sweep point) into ``folder``."""
    if store.empty:
        return Saved("nothing to export yet — run something first (r)")
    try:
        paths = store.export(folder, settings.to_dict(), engine.to_dict() if engine is not None else None)
    except LabError as exc:
        return Saved(f"export failed: {exc.message} — check that {folder} is writable")
    return Saved("exported to " + " and ".join(str(p) for p in paths), paths)


TRACE_WAIT_S = 10.0
"""How long the export line waits for the engine host's trace before it is said without it."""


def trace_line(saved: TraceSaved) -> str:
    """Where the host wrote the trace, or why there is none."""
    if saved.path is None:
        return f"no trace: {saved.message}"
    what = f"{saved.name} (run {saved.run_id})" if saved.run_id is not None else saved.name
    return f"trace of {what}, {saved.runs} run{'s' if saved.runs != 1 else ''}: {saved.path}"


class TraceExport:
    """``e`` beside the results: asks the engine host to write its last experiment's trace into the same folder
    and says, in one line, where everything went once it answered (or after ``TRACE_WAIT_S`` without it)."""

    def __init__(self, app: App[int], say: Callable[[Saved], None]) -> None:
        self._app = app
        self._say = say
        self._waiting: Saved | None = None

    def ask(self, results: Saved, folder: Path, link: HostLink) -> None:
        """The results were written (``results``): ask for the trace, or say at once why there is none."""
        if not results.paths:
            self._say(results)
            return
        self.give_up()  # an earlier export still waiting is said now, without its trace
        if not link.send(SaveTrace(str(folder))):
            self._say(Saved(f"{results.message}; no trace: no engine process (m starts one)", results.paths))
            return
        self._waiting = results
        self._app.set_timer(TRACE_WAIT_S, lambda: self.give_up(results))

    def written(self, saved: TraceSaved) -> None:
        """The host's answer: the results' line with the trace's path (or why there is none)."""
        results, self._waiting = self._waiting, None
        paths = [Path(saved.path)] if saved.path else []
        if results is None:
            self._say(Saved(trace_line(saved), paths))
        else:
            self._say(Saved(f"{results.message}; {trace_line(saved)}", results.paths + paths))

    def give_up(self, results: Saved | None = None) -> None:
        """Say the results waiting for a trace without it (``results``: only if those are still waiting)."""
        waiting = self._waiting
        if waiting is not None and (results is None or waiting is results):
            self._waiting = None
            self._say(Saved(f"{waiting.message}; the trace did not come from the engine process", waiting.paths))


def save_screen(app: App[int], folder: Path, filename: str | None = None) -> Saved:
    """An SVG of the screen in ``folder`` (named by the time unless ``filename`` is given)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        name = filename or f"screen-{time.strftime('%Y%m%d-%H%M%S')}.svg"
        path = app.save_screenshot(filename=name, path=str(folder))
    except OSError as exc:
        return Saved(f"screenshot failed: {exc.strerror or exc} — check that {folder} is writable")
    return Saved(f"screenshot saved to {path}", [Path(path)])
