"""The shape of the code: stages import one way (no cycles), modules stay small, tests mirror modules,
and the command line needs neither pytest nor hypothesis."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "prunelib"
#: A module past this many lines holds more than one job (the brief: "about 400").
MAX_LINES = 450
#: Modules whose tests live elsewhere: package markers, the ``-m`` entry point.
UNMIRRORED = {"__init__", "__main__"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (annotations only, never imported)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                todo.extend(child.orelse)
                continue
            todo.append(child)
    return out


def imports_of(path: Path) -> set[str]:
    """Every prunelib module ``path`` imports at run time, at module level or inside functions."""
    found: set[str] = set()
    modules = {module_name(p) for p in sources()}
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules and n.startswith("prunelib.")}
    return found - {module_name(path)}


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sources()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path of module names), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith("prunelib.") and graph.get(nxt) is None:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_type_checking_imports_are_not_run_time_imports(tmp_path: Path) -> None:
    code = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import prunelib.config\nimport prunelib.fileio\n"
    (tmp_path / "m.py").write_text(code)
    kinds = [type(n).__name__ for n in runtime_nodes(ast.parse(code)) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert kinds == ["Import", "ImportFrom"]  # `import prunelib.fileio` and the typing import, not the guarded one


def test_find_cycle_finds_a_planted_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    """Package markers excepted (importing ``prunelib.x.y`` runs ``prunelib.x`` first, which imports nothing)."""
    graph = {m: {i for i in deps if not (PACKAGE / Path(*i.split(".")[1:]) / "__init__.py").exists()}
             for m, deps in import_graph().items()}  # fmt: skip
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it by job"


@pytest.mark.parametrize(
    "path", [p for p in sources() if p.stem not in UNMIRRORED], ids=lambda p: str(p.relative_to(ROOT))
)
def test_module_has_a_mirrored_test_file(path: Path) -> None:
    rel = path.relative_to(PACKAGE)
    test = ROOT / "tests" / rel.parent / f"test_{rel.name}"
    assert test.is_file(), f"{path.relative_to(ROOT)} has no test file {test.relative_to(ROOT)}"


def test_the_command_line_needs_neither_pytest_nor_hypothesis() -> None:
    """``python -m prunelib`` imports every stage a sweep uses with pytest and hypothesis made unimportable."""
    code = (
        "import sys; sys.modules['pytest'] = None; sys.modules['hypothesis'] = None\n"
        "import prunelib.cli.main, prunelib.sweep.runner, prunelib.sweep.cache, prunelib.report.compare\n"
        "from prunelib.families.registry import get_family, registered\n"
        "for name in registered(): get_family(name).describe()\n"
        "raise SystemExit(prunelib.cli.main.main(['families']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mlp" in done.stdout and "sew" in done.stdout
