"""Shared fixtures: the embedded checkpoint and one loaded CPU transformers engine per session.

The embedded model is materialized into the normal cache (``$INFERENCE_LAB_CACHE``
or the user cache dir), so only the first test session on a machine pays the
minute it takes; the engine loads once per session (a few seconds).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# First, before any test module imports transformers (``pytest.importorskip``): importing the lab hides
# PyPI's CUDA builds of torchvision/torchaudio/torchcodec that cannot load beside the CPU torch, and
# transformers decides once, at its own import, whether torchvision is there.
import tui_lab  # noqa: F401


@pytest.fixture(autouse=True, scope="session")
def _private_user_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Lesson progress and exports go to a temporary dir, never the user's own data dir."""
    import os

    old = os.environ.get("INFERENCE_LAB_DATA")
    os.environ["INFERENCE_LAB_DATA"] = str(tmp_path_factory.mktemp("user-data"))
    yield
    if old is None:
        os.environ.pop("INFERENCE_LAB_DATA", None)
    else:
        os.environ["INFERENCE_LAB_DATA"] = old


@pytest.fixture(scope="session")
def embedded_checkpoint() -> Path:
    """The materialized embedded Gemma 3 270M checkpoint dir (built on first use)."""
    from tui_lab.models import materialize

    return materialize("embedded")


@pytest.fixture(scope="session")
def hf_engine(embedded_checkpoint: Path) -> Iterator[object]:
    """A loaded ``TransformersEngine`` on the embedded model, CPU, float32."""
    from tui_lab.engines.hf import TransformersEngine

    engine = TransformersEngine(model="embedded", device="cpu")
    engine.load()
    yield engine
    engine.unload()
