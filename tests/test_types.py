"""The type checker passes on the package (strict for the process boundary, the parameters and the harness)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_passes() -> None:
    api = pytest.importorskip("mypy.api", reason="mypy is in the test extras")
    config = str(ROOT / "pyproject.toml")
    out, err, status = api.run(["--config-file", config, "--no-error-summary", str(ROOT / "tui_lab")])
    assert status == 0, out + err
