"""The materialization cache: checkpoint directories built once, atomically, and checked on use.

Each entry is ``<cache>/models/<entry>/`` with a manifest ``inference-lab.json``
listing every file and its size. An entry is built in a temporary sibling
directory and renamed into place only when complete, so an interrupted build
never leaves a half cache; an entry whose manifest is missing or whose files
do not match it is treated as absent and rebuilt. A lock file keeps two
processes (say the TUI and a CLI run) from building the same entry at once.

A cache that cannot be written (read-only, a file in the way, no space left) is a
``LabError`` of one line: which directory, why, how much room the entry needs, and
how to point the lab elsewhere (``--cache-dir`` or ``$INFERENCE_LAB_CACHE``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from tui_lab.errors import LabError

MANIFEST = "inference-lab.json"
MANIFEST_FORMAT = 1
CACHE_ENV = "INFERENCE_LAB_CACHE"
_STALE_TMP_S = 3600.0


def default_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir`` if given, else ``$INFERENCE_LAB_CACHE``, else the user cache dir (``~/.cache/inference-lab``)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("inference-lab", appauthor=False))


def entry_dir(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the cache entry ``name`` lives (whether or not it is built)."""
    return default_cache_dir(cache_dir) / "models" / name


def read_manifest(path: Path) -> dict | None:
    """The entry's manifest if the entry is complete and undamaged, else None."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return None
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return None
    for name, size in files.items():
        try:
            if (path / name).stat().st_size != size:
                return None
        except OSError:
            return None
    return manifest


def is_valid(path: Path, source_version: str | None = None) -> bool:
    """True when ``path`` is a complete entry (and built from ``source_version``, when given)."""
    manifest = read_manifest(path)
    if manifest is None:
        return False
    return source_version is None or manifest.get("source_version") == source_version


def write_manifest(path: Path, **info: object) -> dict:
    """Record every file in ``path`` with its size (called last, inside the temporary dir)."""
    files = {
        p.relative_to(path).as_posix(): p.stat().st_size
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {"format": MANIFEST_FORMAT, "files": files, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                    time.gmtime()), **info}
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (a no-op where fcntl does not exist)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: concurrent first builds are unlikely; the rename stays atomic
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _remove_stale_tmp(parent: Path, name: str) -> None:
    """Delete temporary dirs that an interrupted build of ``name`` left behind."""
    now = time.time()
    for p in parent.glob(f".tmp-{name}-*"):
        with contextlib.suppress(OSError):
            if now - p.stat().st_mtime > _STALE_TMP_S or not _owner_alive(p):
                shutil.rmtree(p, ignore_errors=True)


def _owner_alive(tmp: Path) -> bool:
    # The temp dir name carries the builder's pid; a dead pid means the build was interrupted.
    try:
        pid = int(tmp.name.rsplit("-", 2)[-2])
    except (ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class CacheUnwritable(LabError):
    """The cache directory cannot take a new entry (read-only, not a directory, full)."""


_NO_ROOM = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR}


def _size_text(n_bytes: float) -> str:
    """``830 MB`` / ``1.2 GB`` (decimal units, as disks are sold)."""
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{max(1, round(n_bytes / 1e6))} MB"


def _free_bytes(path: Path) -> int | None:
    """Free bytes on the disk holding ``path`` (or its nearest existing parent); None if unknown."""
    for p in (path, *path.parents):
        try:
            return shutil.disk_usage(p).free
        except OSError:
            continue
    return None


def cache_error(exc: OSError, cache_root: Path, need_bytes: int | None = None) -> CacheUnwritable:
    """One line for an ``OSError`` met while building an entry under ``cache_root``: what and what to do."""
    where = Path(exc.filename) if isinstance(exc.filename, str) and exc.filename else cache_root
    why = exc.strerror or type(exc).__name__
    need = f"about {_size_text(need_bytes)}" if need_bytes else "room"
    move = "pass --cache-dir DIR or set INFERENCE_LAB_CACHE=DIR"
    if exc.errno in _NO_ROOM:
        free = _free_bytes(cache_root)
        have = f", {_size_text(free)} free" if free is not None else ""
        return CacheUnwritable(f"the model cache at {cache_root} is full ({why}{have}; this model needs {need})",
                               hint=f"free {need} there, or {move} on a disk with more room")
    if exc.errno in _NOT_WRITABLE:
        return CacheUnwritable(f"cannot write the model cache at {cache_root} ({why}: {where})",
                               hint=f"{move} to a writable directory with {need} free")
    return CacheUnwritable(f"the model cache at {cache_root} failed ({why}: {where})",
                           hint=f"check that directory, or {move} to a writable directory with {need} free")


def build_entry(
    name: str,
    build: Callable[[Path], dict],
    cache_dir: str | os.PathLike[str] | None = None,
    source_version: str | None = None,
    need_bytes: int | None = None,
) -> Path:
    """Return the cache entry ``name``, building it with ``build(tmp_dir) -> manifest info`` if needed.

    ``build`` writes the files into the empty ``tmp_dir``; the manifest is written
    after it returns and the dir is renamed into place. A damaged or outdated entry
    is replaced. Any failure (or Ctrl-C) removes the temporary dir. An ``OSError`` of the
    file system on the way (read-only, full, a file where a directory should be) becomes a
    ``CacheUnwritable`` naming the cache and ``need_bytes``, the room the build takes at its peak.
    """
    final = entry_dir(name, cache_dir)
    if is_valid(final, source_version):
        return final
    try:
        return _build_entry(name, build, final, source_version)
    except OSError as exc:
        raise cache_error(exc, default_cache_dir(cache_dir), need_bytes) from exc


def _build_entry(name: str, build: Callable[[Path], dict], final: Path, source_version: str | None) -> Path:
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    with _lock(parent / f".{name}.lock"):
        if is_valid(final, source_version):  # another process built it while we waited
            return final
        _remove_stale_tmp(parent, name)
        tmp = parent / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            info = build(tmp)
            write_manifest(tmp, source_version=source_version, **info)
            if final.exists():
                # A damaged entry: move it aside first, since a rename cannot replace a non-empty dir.
                old = parent / f".tmp-{name}-old-{uuid.uuid4().hex[:8]}"
                os.replace(final, old)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def dir_size(path: Path) -> int:
    """Total bytes of the files under ``path`` (0 if it does not exist)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0
