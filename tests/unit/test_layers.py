"""The package's folders are its layers, and every import points down the list: read from the
source (AST), including imports inside functions and under ``TYPE_CHECKING``."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "conveyor"
#: DESIGN.md's layers, bottom first. ``errors.py`` sits with the core; the package's
#: ``__init__`` (the public API) and ``__main__`` sit with the interfaces.
LAYERS = (
    "core",
    "definition",
    "sources",
    "store",
    "executors",
    "scheduling",
    "observability",
    "ml",
    "interfaces",
)
ROOT_MODULES = {"errors": "core", "__init__": "interfaces", "__main__": "interfaces"}
#: The composition root: the one module a lower layer may reach, and only lazily (inside a
#: function, as ``Pipeline.run`` and ``Pipeline.stream`` hand a pipeline to it) or for type
#: hints alone (under ``if TYPE_CHECKING:``, never imported at run time).
COMPOSITION_ROOT = "conveyor.interfaces.api"


def layer_of(module: str) -> str:
    """The layer of a module named ``conveyor.X...``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "interfaces"  # `import conveyor`: the public API
    head = parts[1]
    if head in LAYERS:
        return head
    if head in ROOT_MODULES:
        return ROOT_MODULES[head]
    raise AssertionError(f"{module}: not in any layer; put it in one of {', '.join(LAYERS)}")


def _imports(tree: ast.Module, module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, lazy) for every import of a conveyor module; lazy: inside a
    function or under ``if TYPE_CHECKING:``."""
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            nested = nested or (isinstance(child, ast.If) and _is_type_checking(child.test))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                target = child.module or ""
                if child.level:  # relative: resolve against this module's package
                    base = module.split(".")[: -child.level]
                    target = ".".join([*base, *([target] if target else [])])
                if target == "conveyor":  # `from conveyor import x`: x may be a module
                    found.extend((f"conveyor.{a.name}" if a.name in _MODULES else target,
                                  child.lineno, in_function) for a in child.names)  # fmt: skip
                else:
                    found.append((target, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return [(name, line, lazy) for name, line, lazy in found if name.split(".")[0] == "conveyor"]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


_MODULES = {p.stem for p in PACKAGE.glob("*.py")} | {
    p.name for p in PACKAGE.iterdir() if p.is_dir()
}


def upward_imports(package: Path) -> list[str]:
    """Every import in ``package`` that points up the layers, as ``file:line: a -> b``."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        here = LAYERS.index(layer_of(module if module != "conveyor" else "conveyor"))
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for target, line, lazy in _imports(tree, module):
            if target == COMPOSITION_ROOT and lazy:
                continue
            there = LAYERS.index(layer_of(target))
            if there > here:
                problems.append(
                    f"{relative}.py:{line}: {module} ({LAYERS[here]}) imports {target} "
                    f"({LAYERS[there]})"
                )
    return problems


def test_every_module_is_in_a_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        layer_of(".".join(relative.parts))


def test_every_import_points_down_the_layers() -> None:
    assert upward_imports(PACKAGE) == []


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("store/base.py", "from conveyor.scheduling.scheduler import Scheduler"),
        ("definition/pipeline.py", "from conveyor.observability import alarms"),
        ("core/units.py", "    from conveyor.interfaces import api"),  # indented: in a block
        ("sources/item.py", "import conveyor.executors.runtime"),
    ],
)
def test_an_upward_import_is_caught(tmp_path: Path, module: str, line: str) -> None:
    copy = tmp_path / "conveyor"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "static"))
    target = copy / module
    source = target.read_text(encoding="utf-8")
    if line.startswith(" "):
        line = "if True:\n" + line
    target.write_text(source + "\n" + line + "\n", encoding="utf-8")
    [problem] = upward_imports(copy)
    assert problem.startswith(f"conveyor/{module}:")


def test_the_composition_root_is_reachable_lazily_only(tmp_path: Path) -> None:
    copy = tmp_path / "conveyor"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "static"))
    target = copy / "definition" / "step.py"
    source = target.read_text(encoding="utf-8")
    target.write_text(source + "\nfrom conveyor.interfaces.api import run_pipeline\n")
    [problem] = upward_imports(copy)
    assert "imports conveyor.interfaces.api" in problem
    target.write_text(
        source + "\ndef later():\n    from conveyor.interfaces.api import run_pipeline\n"
    )
    assert upward_imports(copy) == []
    target.write_text(
        source + "\nif TYPE_CHECKING:\n    from conveyor.interfaces.api import Stream\n"
    )
    assert upward_imports(copy) == []
    target.write_text(
        source + "\nif TYPE_CHECKING:\n    from conveyor.scheduling.stream import Stream\n"
    )
    assert len(upward_imports(copy)) == 1  # typing-only, but not the composition root


def test_importing_conveyor_stays_light() -> None:
    """``import conveyor`` defines pipelines; running them loads the rest when asked."""
    code = "import sys, conveyor; print('\\n'.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    heavy = ("conveyor.scheduling", "conveyor.executors", "conveyor.store", "conveyor.interfaces",
             "conveyor.observability", "fastapi", "pandas", "pyarrow", "ray")  # fmt: skip
    assert [m for m in loaded if m.startswith(heavy)] == []
