"""Models: what ``--model SPEC`` means and where its checkpoint comes from.

* ``resolve(spec) -> ModelSpec`` — instant, no network: ``embedded`` (default),
  a hub id ``owner/name``, a local checkpoint dir, or ``arch:NAME``.
* ``materialize(spec, progress, cache_dir) -> Path`` — a plain HF checkpoint dir:
  built once in the cache for ``embedded``; config + tokenizer only for ``arch:``
  (weights are random); a HF-cache snapshot for hub ids; the dir itself if local.
* ``model_shape(config)`` — the numbers for roofline and KV arithmetic.

Nothing here imports torch or transformers at module import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tui_lab.engines.base import ProgressCallback
from tui_lab.models.cache import default_cache_dir
from tui_lab.models.shape import count_params, model_shape
from tui_lab.models.spec import KNOWN_MODELS, ModelSpec, resolve


def materialize(spec: str | ModelSpec | None = None, progress: ProgressCallback | None = None,
                cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The checkpoint directory for ``spec`` (config.json, tokenizer files, weights unless ``arch:``).

    ``progress(stage, fraction_or_None)`` is called as work proceeds; the first
    ``embedded`` call takes about a minute on two cores, later calls are instant.
    """
    resolved = resolve(spec)
    if resolved.kind == "embedded":
        from tui_lab.models.embedded import materialize_embedded

        return materialize_embedded(cache_dir, progress)
    if resolved.kind == "arch":
        from tui_lab.models.arch import materialize_arch

        return materialize_arch(resolved.arch_name or "", cache_dir, progress)
    if resolved.kind == "hub":
        from tui_lab.models.hub import materialize_hub

        return materialize_hub(resolved.name, progress)
    assert resolved.path is not None
    return resolved.path


@dataclass(frozen=True)
class CacheStatus:
    """Whether a known model is on disk already, and where."""

    spec: ModelSpec
    cached: bool
    path: Path | None
    size_bytes: int
    note: str


def cache_status(cache_dir: str | os.PathLike[str] | None = None) -> list[CacheStatus]:
    """One ``CacheStatus`` per ``KNOWN_MODELS`` entry (no network, no building)."""
    from tui_lab.models import cache
    from tui_lab.models.arch import arch_config_dict
    from tui_lab.models.embedded import ENTRY, source_version
    from tui_lab.models.hub import cached_snapshot

    out: list[CacheStatus] = []
    for spec in KNOWN_MODELS.values():
        if spec.kind == "embedded":
            path = cache.entry_dir(ENTRY, cache_dir)
            ok = cache.is_valid(path, source_version())
            note = "ready" if ok else "built on first use (about a minute)"
            out.append(CacheStatus(spec, ok, path if ok else None, cache.dir_size(path) if ok else 0, note))
        elif spec.kind == "arch":
            path = cache.entry_dir(f"arch-{spec.arch_name}", cache_dir)
            ok = cache.is_valid(path)
            params = count_params(arch_config_dict(spec.arch_name or ""))
            note = f"{params / 1e9:.2f}B params, random weights" if params >= 1e9 else \
                f"{params / 1e6:.0f}M params, random weights"
            out.append(CacheStatus(spec, ok, path if ok else None, cache.dir_size(path) if ok else 0, note))
        else:
            snap = cached_snapshot(spec.name)
            note = "in the Hugging Face cache" if snap else "downloaded on first use (needs internet"
            if not snap:
                note += ", an accepted licence and a token)" if spec.gated else ")"
            out.append(CacheStatus(spec, snap is not None, snap, cache.dir_size(snap) if snap else 0, note))
    return out


__all__ = [
    "KNOWN_MODELS", "CacheStatus", "ModelSpec", "cache_status", "count_params", "default_cache_dir",
    "materialize", "model_shape", "resolve",
]
