"""Atomic result files: JSON and CSV written to a temporary file, then renamed.

A reader (or an interrupted writer) never sees half a file: the data goes to a
temporary file in the target's own directory (``os.replace`` is only atomic
within one file system) and replaces the target in one step.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tui_lab.errors import InvalidInput, LabError

EXPORT_FORMATS = ("json", "csv")


def to_jsonable(obj: Any) -> Any:
    """Plain JSON values from results: ``to_dict()`` objects, dataclasses, paths; NaN/inf become None.

    Strict JSON has no NaN; a missing figure is ``null``.
    """
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    target = Path(path).expanduser()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabError(f"cannot create the folder {target.parent}: {exc.strerror}", "choose another path") from exc
    if target.is_dir():
        raise InvalidInput(f"{target} is a folder; give a file name ending in .json or .csv")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        # Never leave the temporary file behind, whatever went wrong (even Ctrl-C).
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise LabError(f"cannot write {target}: {exc.strerror}", "check the path and free disk space") from exc
        raise
    return target


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` (results, dicts, dataclasses) as indented JSON, atomically; returns the path."""
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"
    return _atomic_write_text(path, text)


def csv_text(rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV text with a header: the union of the rows' keys, in first-seen order."""
    rows = [dict(r) for r in rows]
    fields: list[str] = []
    for row in rows:
        for key in row:
            if key not in fields:
                fields.append(key)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return buf.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(to_jsonable(value))
    return value


def write_csv(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write one CSV row per mapping (missing figures as empty cells), atomically; returns the path."""
    return _atomic_write_text(path, csv_text(rows))


def export_format(path: str | os.PathLike[str]) -> str:
    """``"json"`` or ``"csv"`` from the file name; ``InvalidInput`` for anything else."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in EXPORT_FORMATS:
        raise InvalidInput(f"cannot tell the format of {os.fspath(path)!r}: the file name must end in .json or .csv")
    return suffix
