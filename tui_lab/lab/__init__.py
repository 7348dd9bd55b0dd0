"""Experiments that drive an engine and keep results: runs, sweeps, comparisons, exports.

Nothing here imports Textual, torch or vLLM at module level; engines are passed
in (or created through ``tui_lab.engines.create_engine`` when an experiment runs).
"""

from __future__ import annotations

from tui_lab.errors import LabError


def error_text(exc: LabError) -> str:
    """One line for a ``LabError``: its message, then what to do (the hint) after a semicolon.

    Line breaks inside either part (e.g. a library's multi-line error) are flattened.
    """
    message = " ".join(str(exc.message).split())
    text = f"{message.rstrip(' .;:,')}; {exc.hint}" if exc.hint else message
    return " ".join(text.split())
