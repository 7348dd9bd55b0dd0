"""The import contract of DESIGN.md, checked on the source.

* engines/, metrics/, lab/, models/ and lessons/ never import Textual;
* metrics/ imports neither torch nor any engine;
* no module imports torch, transformers or vllm at module level (heavy imports
  happen inside the functions that need them), so the CLI's --help and the
  TUI's first screen start without them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tui_lab"
HEAVY = {"torch", "transformers", "vllm", "accelerate", "gguf"}
CORE_LAYERS = ("engines", "metrics", "lab", "models", "lessons")


def _modules(*parts: str) -> list[Path]:
    root = PACKAGE.joinpath(*parts)
    return sorted(root.rglob("*.py")) if root.is_dir() else [root]


def _imports(tree: ast.AST, module_level_only: bool) -> set[str]:
    """Top-level package names imported in ``tree`` (optionally only outside functions)."""
    found: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import) and not (module_level_only and in_function):
                found.update(alias.name.split(".")[0] for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if not (module_level_only and in_function):
                    found.add(child.module.split(".")[0])
            # `if TYPE_CHECKING:` blocks never run.
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            visit(child, inside)

    visit(tree, False)
    return found


@pytest.mark.parametrize("layer", CORE_LAYERS)
def test_core_layers_never_import_textual(layer: str) -> None:
    """The engine, metrics, lab, models and lessons layers stay importable without the TUI."""
    for path in _modules(layer):
        names = _imports(ast.parse(path.read_text()), module_level_only=False)
        assert "textual" not in names, f"{path.relative_to(PACKAGE)} imports textual"


def test_metrics_are_pure() -> None:
    """Metrics are plain functions on timestamps: no torch, no engines."""
    for path in _modules("metrics"):
        names = _imports(ast.parse(path.read_text()), module_level_only=False)
        assert not names & HEAVY, f"{path.relative_to(PACKAGE)} imports {names & HEAVY}"
        source = path.read_text()
        assert "tui_lab.engines" not in source and "tui_lab.ui" not in source


def test_no_heavy_imports_at_module_level() -> None:
    """torch/transformers/vllm are imported lazily everywhere in the package."""
    for path in PACKAGE.rglob("*.py"):
        names = _imports(ast.parse(path.read_text()), module_level_only=True)
        assert not names & HEAVY, f"{path.relative_to(PACKAGE)} imports {names & HEAVY} at module level"


def test_help_and_first_screen_modules_do_not_import_torch() -> None:
    """Importing the CLI and the app module leaves torch unloaded (fast start)."""
    code = (
        "import sys, tui_lab.cli, tui_lab.ui.app; "
        "heavy = sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules); "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
