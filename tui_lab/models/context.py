"""A model's context length from its config alone, without loading weights (for checks before a load)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tui_lab.models.spec import resolve


def _from_dict(config: dict[str, Any]) -> int | None:
    # Multimodal configs keep the language model's settings under text_config (as transformers' get_text_config).
    nested = config.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else config
    value = text.get("max_position_embeddings") or config.get("max_position_embeddings")
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


def _from_file(path: Path) -> int | None:
    try:
        return _from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def config_max_context(spec: str | None, cache_dir: str | os.PathLike[str] | None = None) -> int | None:
    """The model's context length (``max_position_embeddings``) read from its config; None when not known yet.

    Embedded: the materialized checkpoint's config.json, else the same architecture's built-in config
    (the embedded model is Gemma 3 270M). ``arch:``: the built-in config. A local directory: its
    config.json. A hub id: the config in the local Hugging Face cache (no network).
    """
    resolved = resolve(spec or "embedded")
    if resolved.kind == "embedded":
        from tui_lab.models.cache import entry_dir
        from tui_lab.models.embedded import ENTRY

        found = _from_file(entry_dir(ENTRY, cache_dir) / "config.json")
        if found is not None:
            return found
        from tui_lab.models.arch import arch_config_dict

        return _from_dict(arch_config_dict("gemma-3-270m"))
    if resolved.kind == "arch":
        from tui_lab.models.arch import arch_config_dict

        return _from_dict(arch_config_dict(resolved.arch_name or ""))
    if resolved.kind == "local":
        assert resolved.path is not None
        return _from_file(resolved.path / "config.json")
    from tui_lab.models.hub import cached_snapshot

    snapshot = cached_snapshot(resolved.name)
    return _from_file(snapshot / "config.json") if snapshot is not None else None
