"""The code's shape: module and function sizes, and no import cycles.

Over every module of the service (``app/session_memory``) and the Python client
(``client/session_memory_client``): no module over 600 lines, no function or method
over 60, and no cycle in the graph of imports between their modules. Imports inside
functions count (a deferred import still ties two modules together); imports under
``if TYPE_CHECKING:`` do not, since they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "session_memory": ROOT / "app" / "session_memory",
    "session_memory_client": ROOT / "client" / "session_memory_client",
}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. session_memory.server.protocol
    path: Path
    is_package: bool  # an __init__.py

    @property
    def shown(self) -> str:
        return str(self.path.relative_to(ROOT))


def _modules() -> list[Module]:
    found = []
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            found.append(Module(".".join(parts), path, is_package))
    return found


MODULES = _modules()
BY_NAME = {module.name: module for module in MODULES}


def _tree(module: Module) -> ast.Module:
    return ast.parse(module.path.read_text(), filename=str(module.path))


def test_the_packages_are_found() -> None:
    assert "session_memory.main" in BY_NAME
    assert "session_memory_client" in BY_NAME


# -- sizes ------------------------------------------------------------------------


def test_no_module_is_over_600_lines() -> None:
    long = [
        f"{module.shown}: {count} lines"
        for module in MODULES
        if (count := len(module.path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(long)


def test_no_function_is_over_60_lines() -> None:
    long = []
    for module in MODULES:
        for node in ast.walk(_tree(module)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                # From the def line (decorators left out) to the last line of the body.
                count = (node.end_lineno or node.lineno) - node.lineno + 1
                if count > MAX_FUNCTION_LINES:
                    long.append(f"{module.shown}:{node.lineno} {node.name}: {count} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


# -- import cycles ------------------------------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import in ``node``, at any depth, except under ``if TYPE_CHECKING:``."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    elif isinstance(node, ast.If) and _is_type_checking(node.test):
        for statement in node.orelse:  # an else branch does run
            yield from _imports(statement)
    else:
        for child in ast.iter_child_nodes(node):
            yield from _imports(child)


def _known(name: str) -> str | None:
    """The package module ``name`` is, or lies in (``pkg.module.Class`` -> ``pkg.module``)."""
    while name:
        if name in BY_NAME:
            return name
        name = name.rpartition(".")[0]
    return None


def _targets(module: Module, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The package's modules one import statement loads (by name, not their parents)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if (found := _known(alias.name)) is not None:
                yield found
        return
    base = node.module or ""
    if node.level:
        package = module.name if module.is_package else module.name.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    for alias in node.names:
        # ``from pkg import sub`` loads the module pkg.sub; ``from pkg import name``
        # loads pkg (where the name is defined or re-exported).
        if f"{base}.{alias.name}" in BY_NAME:
            yield f"{base}.{alias.name}"
        elif (found := _known(base)) is not None:
            yield found


def _import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module.name: set() for module in MODULES}
    for module in MODULES:
        for node in _imports(_tree(module)):
            graph[module.name].update(
                target for target in _targets(module, node) if target != module.name
            )
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle in each strongly connected group of modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for target in sorted(graph[name]):
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in on_stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == name:
                    break
            if len(group) > 1:
                groups.append(group)

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return [_cycle_in(graph, group) for group in groups]


def _cycle_in(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A path that starts and ends at the group's first module, staying inside the group."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        name = queue.pop(0)
        for target in sorted(graph[name] & group):
            if target == start:
                return [*paths[name], start]
            if target not in paths:
                paths[target] = [*paths[name], target]
                queue.append(target)
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")  # pragma: no cover


def test_no_import_cycles() -> None:
    cycles = _cycles(_import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c", "a"]]),
        ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}, [["c", "d", "c"], ["a", "b", "a"]]),
    ],
)
def test_the_cycle_finder(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert sorted(_cycles(graph)) == sorted(expected)


def test_imports_are_resolved() -> None:
    graph = _import_graph()
    # Relative (``from ..config import Settings``) and absolute imports both land.
    assert "session_memory.config" in graph["session_memory.server.startup"]
    assert "session_memory_client.protocol" in graph["session_memory.server.limits"]


def test_the_server_does_not_import_the_services() -> None:
    # The connection layer tells the app of a shutdown through ``Draining``; it
    # reaches into no service's module to do it.
    graph = _import_graph()
    reached = {
        f"{name} -> {target}"
        for name, targets in graph.items()
        if name.startswith("session_memory.server")
        for target in targets
        if target.startswith(("session_memory.history", "session_memory.items"))
    }
    assert not reached, "\n".join(sorted(reached))
