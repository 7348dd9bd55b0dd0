"""Traces recorded on real machines and shipped with the lab: replay them with ``--engine replay --trace NAME``.

Each file is an ``inference-lab-trace`` (``tui_lab.lab.trace``): a whole experiment's runs with the card,
driver, versions, model and settings they ran with. ``shipped()`` lists them; ``find`` turns a name (the file
name without ``.trace.json.gz``) or a path into a file.
"""

from __future__ import annotations

from pathlib import Path

SUFFIX = ".trace.json.gz"
HERE = Path(__file__).resolve().parent


def shipped() -> list[Path]:
    """The trace files that come with the lab, by name."""
    return sorted(HERE.glob(f"*{SUFFIX}"))


def names() -> list[str]:
    """The shipped traces' names (what ``--trace`` takes besides a path)."""
    return [p.name[: -len(SUFFIX)] for p in shipped()]


def find(spec: str) -> Path | None:
    """The trace file ``spec`` names: an existing path, or a shipped trace's name (None when neither)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    for candidate in shipped():
        if candidate.name in (spec, spec + SUFFIX):
            return candidate
    return None
