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
CORE_LAYERS = ("engines", "metrics", "lab", "models", "lessons", "views", "params.py", "formatting.py",
               "errors.py")


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
    """Everything below the UI (engines, metrics, lab, models, lessons, the views) stays importable without Textual."""
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


def heavy_modules_after(code: str, heavy: tuple[str, ...] = ("torch", "transformers", "vllm")) -> list[str]:
    """Which of ``heavy`` a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {heavy!r} if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1:] or [""]
    return [m for m in last[0].split(",") if m]


def test_help_and_first_screen_modules_do_not_import_torch() -> None:
    """Importing the CLI and the app module leaves torch unloaded (fast start)."""
    assert heavy_modules_after("import tui_lab.cli, tui_lab.ui.app") == []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports, anywhere in its source (inside functions too).

    ``from tui_lab.lab import inventory`` counts as importing ``tui_lab.lab.inventory``; ``from tui_lab.lab
    import x`` where x is not a module counts as importing the package ``tui_lab.lab`` (its ``__init__``).
    """
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package
                    for _ in range(node.level - 1):
                        up = up.rpartition(".")[0]
                    base = f"{up}.{base}" if base else up
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                found = owner(target) if target.startswith("tui_lab") else None
                if found is not None and found != name:
                    edges.add(found)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_anywhere_in_the_package() -> None:
    """No module imports (even inside a function) a module that imports it back, directly or not."""
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
