"""The layer check that ``make lint`` runs: pure cores stay pure, imports form no cycle.

Theory of operation
-------------------
Every module of the packages is read as an AST (nothing is imported or run). Each ``import``
and ``from ... import`` anywhere in a module counts, also inside functions (a function-level
import is still a dependency: it is how cycles hide), except under ``if TYPE_CHECKING:``, which
never runs. Two rules:

1. A core module (``stratum.core.*``, ``marketplace.core.*``) imports only the standard
   library's pure parts, msgspec, and other core modules; never a driver of this project, trio,
   structlog, sockets, files, clocks or randomness (``FORBIDDEN_IN_CORE``). ``stratum.core``
   never imports ``marketplace``.
2. The project's modules import each other without a cycle (a package's ``__init__`` counts as
   the package itself).

Run as a script it prints every breach and exits 1 if there is one; ``check(root)`` returns
them for the tests.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

PACKAGES: Final = ("stratum", "marketplace", "workers")
CORES: Final = ("stratum.core", "marketplace.core")
#: Top-level modules a core may not import: I/O, clocks, randomness, concurrency, logging.
FORBIDDEN_IN_CORE: Final = frozenset(
    {
        "trio",
        "anyio",
        "asyncio",
        "structlog",
        "logging",
        "socket",
        "ssl",
        "select",
        "selectors",
        "sqlite3",
        "psycopg",
        "time",
        "datetime",
        "os",
        "pathlib",
        "shutil",
        "subprocess",
        "threading",
        "multiprocessing",
        "random",
        "secrets",
        "uuid",
        "httpx",
        "hypercorn",
        "prometheus_client",
    }
)


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, *, is_package: bool) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import that runs, relative ones resolved."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, node.lineno
            for alias in node.names:  # ``from pkg import submodule`` names a module too
                yield f"{base}.{alias.name}", node.lineno
        stack.extend(ast.iter_child_nodes(node))


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def check(root: Path) -> list[str]:
    """Every breach of the two rules in the packages under ``root``, as readable lines."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            modules[_module_name(root, path)] = path
    problems: list[str] = []
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        core = next((c for c in CORES if _in(name, c)), None)
        for imported, line in _imports(tree, name, is_package=path.name == "__init__.py"):
            top = imported.split(".")[0]
            where = f"{path.relative_to(root)}:{line}"
            if core is not None:
                if top in FORBIDDEN_IN_CORE:
                    problems.append(f"{where}: core module {name} imports {imported}")
                elif top in PACKAGES and not any(_in(imported, c) for c in CORES):
                    problems.append(f"{where}: core module {name} imports driver {imported}")
                elif core == "stratum.core" and top == "marketplace":
                    problems.append(f"{where}: {name} imports {imported} (stratum is below)")
            if imported in modules and imported != name and not _in(name, imported):
                graph[name].add(imported)
    problems.extend(f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph))
    return problems


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(_one_cycle(graph, set(component)))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A concrete cycle inside a strongly connected ``component``, for the message."""
    start = min(component)
    path = [start]
    seen = {start}
    node = start
    while True:
        nxt = min(n for n in graph[node] if n in component)
        if nxt in seen:
            return [*path[path.index(nxt) :], nxt]
        path.append(nxt)
        seen.add(nxt)
        node = nxt


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    problems = check(root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"layers: {len(problems)} problem(s)")
        return 1
    print("layers: cores are pure, no import cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
