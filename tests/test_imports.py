"""The import graph: no circles between mnistlab's modules, and the light entry points stay light
(``mnistlab --help`` and ``mnistlab.machine`` load no torch; models load no training code)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(path: Path, modules: set[str]) -> set[str]:
    """The mnistlab modules that importing ``path`` imports at once (module-level statements,
    ``if TYPE_CHECKING`` blocks excepted; function bodies run later and are not followed)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                    + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    # `from pkg import sub` imports the submodule; anything else, the module
                    found.add(sub if sub in modules else base)
            elif isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
    visit(ast.parse(path.read_text()).body)
    # Importing a.b.c first runs a/__init__ and a/b/__init__: those are imported too.
    for m in list(found):
        parts = m.split(".")
        found.update(".".join(parts[:i]) for i in range(2, len(parts)))
    return {m for m in found if m in modules and m != name and not name.startswith(m + ".")}


def test_no_import_circles() -> None:
    paths = sorted(SRC.glob("mnistlab/**/*.py"))
    modules = {_module_name(p) for p in paths}
    graph = {_module_name(p): _top_level_imports(p, modules) for p in paths}
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    stack: list[str] = []

    def walk(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = [*stack[stack.index(n):], n]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if n not in state:
                walk(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m)


def _loaded_after(code: str) -> set[str]:
    script = f"{code}\nimport sys\nprint(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=SRC.parent, env={"PYTHONPATH": str(SRC), "PATH": ""})
    return set(out.stdout.split())


def test_light_entry_points_stay_light() -> None:
    help_modules = _loaded_after(
        "import contextlib, io\n"
        "from mnistlab.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])")
    assert "torch" not in help_modules and "numba" not in help_modules
    assert "torch" not in _loaded_after("import mnistlab.machine")
    models = _loaded_after("import mnistlab.models\nmnistlab.models.available()")
    assert "mnistlab.models.fast" in models
    assert not {m for m in models if m.startswith("mnistlab.train")}


def test_only_the_command_line_imports_the_command_line() -> None:
    """``cli`` sits on top: the library (and ``api``, Python's way in) never reaches into it,
    not even inside a function."""
    offenders = []
    for path in sorted(SRC.glob("mnistlab/**/*.py")):
        name = _module_name(path)
        if name in ("mnistlab.cli", "mnistlab.__main__") or name.startswith("mnistlab.cli."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                       [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{name} imports {t}" for t in targets
                          if t == "mnistlab.cli" or t.startswith("mnistlab.cli.")]
    assert offenders == []
