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
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from tui_lab.errors import InvalidInput, LabError

EXPORT_FORMATS = ("json", "csv")


def to_jsonable(obj: object) -> object:
    """Plain JSON values from results: ``to_dict()`` objects, dataclasses, paths; NaN/inf become None.

    Strict JSON has no NaN; a missing figure is ``null``.
    """
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_jsonable(to_dict())
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


def _umask() -> int:
    """The process's umask, read without changing it (Linux says it in /proc; elsewhere set and put back)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    target = Path(path).expanduser()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabError(f"cannot create the folder {target.parent}: {exc.strerror}", "choose another path") from exc
    if target.is_dir():
        raise InvalidInput(f"{target} is a folder; give a file name ending in .json or .csv")
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:  # a folder that cannot hold files (/proc, read-only): say so, never a traceback
        raise LabError(f"cannot write {target}: {exc.strerror}", "check the path and free disk space") from exc
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it owner-only; a results file reads like any other
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


def write_json(path: str | os.PathLike[str], obj: object) -> Path:
    """Write ``obj`` (results, dicts, dataclasses) as indented JSON, atomically; returns the path."""
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"
    return _atomic_write_text(path, text)


def csv_text(rows: Iterable[Mapping[str, object]]) -> str:
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


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(to_jsonable(value))
    return value


def write_csv(path: str | os.PathLike[str], rows: Iterable[Mapping[str, object]]) -> Path:
    """Write one CSV row per mapping (missing figures as empty cells), atomically; returns the path."""
    return _atomic_write_text(path, csv_text(rows))


def export_format(path: str | os.PathLike[str]) -> str:
    """``"json"`` or ``"csv"`` from the file name; ``InvalidInput`` for anything else."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in EXPORT_FORMATS:
        raise InvalidInput(f"cannot tell the format of {os.fspath(path)!r}: the file name must end in .json or .csv")
    return suffix


RESULTS_DIR_NAME = "inference-lab-results"
"""Exports, screenshots and fallback copies go to this folder (the project's .gitignore covers it)."""


def default_export_dir(start: str | os.PathLike[str] | None = None) -> Path:
    """``inference-lab-results`` at the root of this project's checkout when ``start`` (cwd) is inside one.

    Run from a sub-folder of the repository, a folder beside the cwd would be a stray untracked folder; the
    root's is ignored by ``.gitignore``. Anywhere else: ``./inference-lab-results``.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        project = folder / "pyproject.toml"
        if project.is_file() and (folder / "tui_lab").is_dir():
            try:
                if 'name = "inference-lab"' in project.read_text(encoding="utf-8"):
                    return folder / RESULTS_DIR_NAME
            except OSError:
                break
    return here / RESULTS_DIR_NAME


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Refuse an output path that cannot be written, before any work is done (``LabError``, one line).

    Creates the parent folder if needed and writes (then removes) a probe file beside the target.
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise InvalidInput(f"{target} is a folder; give a file name ending in .json or .csv")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise LabError(f"cannot write {target}: {exc.strerror or exc}", "choose a path you can write to") from exc
    return target


def write_with_fallback(
    path: str | os.PathLike[str], writer: Callable[[Path], Path], fallback_dir: str | os.PathLike[str] | None = None,
) -> tuple[Path, str | None]:
    """``writer(path)``; when that fails, ``writer`` into ``fallback_dir`` instead (nothing is lost).

    Returns (the path written, a one-line note saying why the fallback was used, or None). The fallback is
    ``default_export_dir()`` under a unique name keeping the original's name and suffix. Raises only when
    the fallback fails too.
    """
    target = Path(path).expanduser()
    try:
        return writer(target), None
    except LabError as exc:
        reason = exc.message
    folder = Path(fallback_dir) if fallback_dir is not None else default_export_dir()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    fallback = folder / f"{target.stem or 'results'}-{stamp}{target.suffix or '.json'}"
    n = 1
    while fallback.exists():
        n += 1
        fallback = folder / f"{target.stem or 'results'}-{stamp}-{n}{target.suffix or '.json'}"
    written = writer(fallback)
    return written, f"{reason}; saved to {written} instead"
