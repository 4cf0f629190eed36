"""The CLI is one module per command group: each imports on its own, and none imports a module
that imports it back (the groups are registered in one place, ``cli/__init__``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[2] / "src" / "conveyor" / "interfaces" / "cli"
MODULES = sorted(p.stem for p in CLI.glob("*.py") if p.stem != "__init__")


def _imports(module: str) -> set[str]:
    tree = ast.parse((CLI / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            prefix = "conveyor.interfaces.cli"
            if node.module.startswith(prefix + "."):
                found.add(node.module.removeprefix(prefix + "."))
            elif node.module == prefix:
                found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("module", MODULES)
def test_each_cli_module_imports_on_its_own(module: str) -> None:
    subprocess.run(
        [sys.executable, "-c", f"import conveyor.interfaces.cli.{module}"], check=True, timeout=60
    )


def test_no_cli_module_imports_one_that_imports_it_back() -> None:
    graph = {m: _imports(m) for m in MODULES}
    cycles = [(a, b) for a in graph for b in graph[a] if a in graph.get(b, set())]
    assert cycles == []
    # the shared modules depend on no command group
    assert graph["app"] <= {"options"} and graph["options"] == set()
