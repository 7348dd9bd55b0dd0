"""Saving what the lab shows: the session's results (JSON + CSV, ``e``) and the screen (SVG, ``w``).

Each says in one line where the files went, or why they could not be written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from textual.app import App
from textual.notifications import SeverityLevel

from tui_lab.engines.base import EngineInfo
from tui_lab.errors import LabError
from tui_lab.lab.export import default_export_dir
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


def save_screen(app: App[int], folder: Path, filename: str | None = None) -> Saved:
    """An SVG of the screen in ``folder`` (named by the time unless ``filename`` is given)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        name = filename or f"screen-{time.strftime('%Y%m%d-%H%M%S')}.svg"
        path = app.save_screenshot(filename=name, path=str(folder))
    except OSError as exc:
        return Saved(f"screenshot failed: {exc.strerror or exc} — check that {folder} is writable")
    return Saved(f"screenshot saved to {path}", [Path(path)])
