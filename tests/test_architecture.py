"""The shape of the code, read from the source with ``ast``: dependencies go one way and
modules and functions stay small.

The packages depend one way: ``cells`` (the search space) <- ``workers`` (training) <- ``search``
(jobs, the driver, the results database); ``dashboards`` reads what ``search`` writes, and only
``cellsearch`` (the command's composition root) imports all four. A package uses another one
through its public names (the package ``__init__``), never through its private ``_modules``.

Every import counts: at module level, inside functions (the lazy imports that keep the command
quick to start) and under ``if TYPE_CHECKING`` (a type-only dependency is still a dependency),
and so do the module names of a package's ``lazy_exports`` table, which import those modules on
first use.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("cells", "workers", "search", "dashboards", "cellsearch")

# Alembic loads the migration scripts from their files (they are not modules of the package),
# and a released revision is frozen: it is never imported and never edited.
NOT_MODULES = ("search/migrations",)

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80

# Functions that are templates of generated code (their body is the code they emit, read as
# one piece), by "module:function" -> why. Only such templates belong here: a hand-written
# function over the limit is split instead.
LONG_TEMPLATES: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.imported}"


def module_name(path: Path, root: Path = REPO) -> str:
    """``search/_store.py`` -> ``search._store``; a package's ``__init__.py`` is the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_files(root: Path = REPO) -> dict[str, Path]:
    """Every module of the packages, by module name."""
    files = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if not relative.startswith(NOT_MODULES):
                files[module_name(path, root)] = path
    return files


def imports_of(name: str, source: str, modules: set[str], is_package: bool = False) -> Iterator[Import]:
    """The imports of module ``name`` (its ``source``) of modules in ``modules``, anywhere in it.

    ``from p import x`` imports the module ``p.x`` where there is one, else ``p``; ``import p.q``
    imports ``p.q``. In a package ``__init__``, a string that names a module (a ``lazy_exports``
    table) imports it too.

    Example:
        >>> source = '''
        ... from typing import TYPE_CHECKING
        ... import cells.x
        ... from cells import y, Name
        ... from . import z
        ... if TYPE_CHECKING:
        ...     from search._store import Store
        ... def f():
        ...     from workers._train import train
        ... table = {"cells._lazy_one": ("A",)}
        ... '''
        >>> known = {"cells", "cells.x", "cells.y", "cells.z", "cells._lazy_one", "search._store",
        ...          "workers._train"}
        >>> [(i.imported, i.line) for i in imports_of("cells", source, known, is_package=True)]
        ... # doctest: +NORMALIZE_WHITESPACE
        [('cells.x', 3), ('cells.y', 4), ('cells', 4), ('cells.z', 5), ('search._store', 7),
         ('workers._train', 9), ('cells._lazy_one', 10)]
    """
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _deepest_module(alias.name, modules)
                if target is not None:
                    yield Import(name, target, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                target = f"{base}.{alias.name}"
                target = target if target in modules else _deepest_module(base, modules)
                if target is not None:
                    yield Import(name, target, node.lineno)
        elif is_package and isinstance(node, ast.Constant) and node.value in modules:
            yield Import(name, node.value, node.lineno)


def _deepest_module(dotted: str, modules: set[str]) -> str | None:
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def import_graph(root: Path = REPO) -> list[Import]:
    """Every import between modules of the packages (a module importing itself is left out)."""
    files = module_files(root)
    modules = set(files)
    edges = []
    for name, path in files.items():
        for found in imports_of(name, path.read_text(), modules, is_package=path.name == "__init__.py"):
            if found.imported != name and found not in edges:
                edges.append(found)
    return edges


GRAPH = import_graph()


def _package(module: str) -> str:
    return module.partition(".")[0]


def _is_private(module: str) -> bool:
    return any(part.startswith("_") for part in module.split(".")[1:])


@dataclass(frozen=True)
class Rule:
    importer: str
    forbidden_packages: tuple[str, ...] = ()
    private_of: tuple[str, ...] = ()
    """Packages whose private modules the importer must not use (their public names only)."""

    def broken_by(self, edge: Import) -> bool:
        if _package(edge.importer) != self.importer:
            return False
        target = _package(edge.imported)
        return target in self.forbidden_packages or (target in self.private_of and _is_private(edge.imported))


RULES = {
    "cells imports no other package": Rule("cells", ("workers", "search", "dashboards", "cellsearch")),
    "workers imports only cells, through its public names": Rule(
        "workers", ("search", "dashboards", "cellsearch"), private_of=("cells",)
    ),
    "search imports no dashboards": Rule("search", ("dashboards", "cellsearch")),
    "search uses cells and workers through their public names": Rule(
        "search", private_of=("cells", "workers")
    ),
    "dashboards reads the store: it imports no workers": Rule("dashboards", ("workers", "cellsearch")),
    "dashboards uses cells and search through their public names": Rule(
        "dashboards", private_of=("cells", "search")
    ),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_packages_depend_one_way(rule: str) -> None:
    broken = [str(edge) for edge in GRAPH if RULES[rule].broken_by(edge)]
    assert broken == [], f"{rule}:\n" + "\n".join(broken)


def test_the_graph_is_read_from_every_package() -> None:
    importers = {_package(edge.importer) for edge in GRAPH}
    assert importers == set(PACKAGES)
    # The composition root is what puts the packages together.
    assert {_package(edge.imported) for edge in GRAPH if edge.importer == "cellsearch._cli"} >= {
        "cells",
        "workers",
        "search",
        "dashboards",
    }


def cycles(edges: list[Import]) -> list[list[str]]:
    """The import cycles: each strongly connected group of two or more modules, sorted
    (Tarjan's algorithm).

    Example:
        >>> edges = [Import("a", "b", 1), Import("b", "c", 1), Import("c", "a", 1), Import("c", "d", 1)]
        >>> cycles(edges)
        [['a', 'b', 'c']]
    """
    successors: dict[str, list[str]] = {}
    for edge in edges:
        successors.setdefault(edge.importer, []).append(edge.imported)
        successors.setdefault(edge.imported, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for successor in successors[module]:
            if successor not in index:
                visit(successor)
                low[module] = min(low[module], low[successor])
            elif successor in on_stack:
                low[module] = min(low[module], index[successor])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(successors):
        if module not in index:
            visit(module)
    return sorted(groups)


def test_no_import_cycles() -> None:
    found = cycles(GRAPH)
    assert found == [], "import cycles:\n" + "\n".join(" <-> ".join(group) for group in found)


def test_modules_are_small() -> None:
    too_long = {
        name: lines
        for name, path in module_files().items()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}, f"modules over {MAX_MODULE_LINES} lines (split them by concept):\n" + _listed(
        too_long
    )


def _listed(lines_by_name: dict[str, int]) -> str:
    return "\n".join(f"{name}: {lines} lines" for name, lines in sorted(lines_by_name.items()))


def function_lengths(source: str, module: str) -> dict[str, int]:
    """Lines of each function and method of a module, by ``module:qualified name``.

    Example:
        >>> function_lengths("class A:\\n    def f(self):\\n        pass\\n", "m")
        {'m:A.f': 2}
    """
    lengths: dict[str, int] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                qualified = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    assert child.end_lineno is not None
                    lengths[f"{module}:{qualified}"] = child.end_lineno - child.lineno + 1
                walk(child, f"{qualified}.")
            else:
                walk(child, prefix)

    walk(ast.parse(source), "")
    return lengths


def test_functions_are_small() -> None:
    lengths = {
        function: lines
        for name, path in module_files().items()
        for function, lines in function_lengths(path.read_text(), name).items()
    }
    too_long = {f: n for f, n in lengths.items() if n > MAX_FUNCTION_LINES and f not in LONG_TEMPLATES}
    assert too_long == {}, f"functions over {MAX_FUNCTION_LINES} lines (split them):\n" + _listed(too_long)
    stale = sorted(set(LONG_TEMPLATES) - {f for f, n in lengths.items() if n > MAX_FUNCTION_LINES})
    assert stale == [], "LONG_TEMPLATES names functions that are gone or short now"
