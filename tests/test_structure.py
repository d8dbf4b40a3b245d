"""The layers of the library import each other in one direction only.

Read from the source with :mod:`ast` (nothing is imported), counting imports inside functions
too -- a lazy import still ties two modules together:

- ``evaluation/`` is pure functions of samples: it imports nothing from ``bayesdl.models``,
  ``bayesdl.inference`` or ``bayesdl.experiments``, not even for type hints (the typed
  predictions it reads live in ``bayesdl.predictions``);
- a benchmark (``benchmarks/``) may use the library and the ``bayesdl.experiments`` helpers,
  never a study (``bayesdl.experiments.studies``): a study is a report, not an API;
- no two modules of the library import each other, directly or through others (imports under
  ``if TYPE_CHECKING:`` aside; a package ``__init__`` re-exporting its submodules is no circle,
  and ``from bayesdl.inference import X`` counts as an import of the module that defines ``X``).
  Imports by name at run time (``importlib.import_module``, as the catalogue loads the studies)
  are not seen.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: repository folder -> the package it installs as (setup.cfg's package_dir)
TREES = {"bayesdl": "bayesdl", "models": "bayesdl.models", "inference": "bayesdl.inference",
         "evaluation": "bayesdl.evaluation", "experiments": "bayesdl.experiments"}
#: what evaluation/ must never import
NOT_IN_EVALUATION = ("bayesdl.models", "bayesdl.inference", "bayesdl.experiments")


@dataclass(frozen=True)
class Import:
    """One import statement: ``import module`` (``names == ()``) or ``from module import names``,
    with ``module`` absolute (relative imports resolved)."""

    path: Path
    line: int
    module: str
    names: tuple[str, ...]
    type_checking: bool  # under ``if TYPE_CHECKING:``
    bound: tuple[str, ...] = ()  # the names it binds (``as`` aliases applied)
    in_function: bool = False  # inside a function body: binds nothing in the module

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT) if ROOT in self.path.parents else self.path}:{self.line}"

    def modules(self) -> list[str]:
        """Every dotted name this import may load: ``module``, and ``module.name`` for each name
        (``from bayesdl import models`` loads ``bayesdl.models``)."""
        return [self.module] + [f"{self.module}.{name}" for name in self.names if name != "*"]

    def loads_any(self, packages) -> bool:
        """Whether it loads one of ``packages`` or a module inside one."""
        return any(m == p or m.startswith(p + ".") for m in self.modules() for p in packages)

    def __str__(self) -> str:
        statement = f"from {self.module} import {', '.join(self.names)}" if self.names else f"import {self.module}"
        return f"{self.where()}: {statement}" + ("  (under TYPE_CHECKING)" if self.type_checking else "")


def _sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path) -> str:
    folder, *parts = path.relative_to(ROOT).with_suffix("").parts
    parts = parts[:-1] if parts and parts[-1] == "__init__" else parts
    return ".".join([TREES[folder], *parts])


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


@cache
def _imports(path: Path) -> tuple[Import, ...]:
    """Every import of a file, at module level, in functions, classes, ``try`` and ``if`` blocks."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = None  # the package relative imports start from (None outside the library)
    if ROOT in path.parents and path.relative_to(ROOT).parts[0] in TREES:
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def absolute(node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module
        assert package is not None, f"{path}:{node.lineno}: a relative import outside the library"
        parts = package.split(".")
        assert node.level - 1 < len(parts), f"{path}:{node.lineno}: a relative import above bayesdl"
        base = ".".join(parts[: len(parts) - (node.level - 1)])
        return f"{base}.{node.module}" if node.module else base

    def visit(node: ast.AST, type_checking: bool, in_function: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True, in_function)
            for child in node.orelse:
                visit(child, type_checking, in_function)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(path, node.lineno, alias.name, (), type_checking, (), in_function)
                         for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names)
            bound = tuple(alias.asname or alias.name for alias in node.names)
            found.append(Import(path, node.lineno, absolute(node), names, type_checking, bound, in_function))
        in_function = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, type_checking, in_function)

    visit(tree, False, False)
    return tuple(found)


# ------------------------------------------------------------------- the graph of the library
@cache
def _library() -> dict[str, Path]:
    """Every module of the library by its installed name."""
    modules = {_module_name(p): p for folder in TREES for p in _sources(ROOT / folder)}
    assert len(modules) > 40 and "bayesdl.inference.methods" in modules
    return modules


def _is_package(module: str) -> bool:
    path = _library().get(module)
    return path is not None and path.name == "__init__.py"


@cache
def _defined_in(package: str, name: str, seen: frozenset[str] = frozenset()) -> str:
    """The module that defines what ``from package import name`` gives: the submodule
    ``package.name``, else the module the package's ``__init__`` imports ``name`` from (followed
    through further package ``__init__`` files), else the package itself."""
    if f"{package}.{name}" in _library():
        return f"{package}.{name}"
    if package in seen:
        return package
    for imp in _imports(_library()[package]):
        if not imp.in_function and name in imp.bound and imp.module in _library():
            original = imp.names[imp.bound.index(name)]
            if _is_package(imp.module):
                return _defined_in(imp.module, original, seen | {package})
            return imp.module
    return package


def _targets(imp: Import) -> set[str]:
    """The library modules an import ties its file to."""
    library = _library()
    if not imp.names:  # import a.b.c
        return {imp.module} if imp.module in library else set()
    if imp.module not in library:
        return set()
    if not _is_package(imp.module):
        return {imp.module}
    return {_defined_in(imp.module, name) for name in imp.names if name != "*"} or {imp.module}


@cache
def _graph() -> dict[str, dict[str, Import]]:
    """``module -> {imported module: the first import of it}`` between the library's modules that
    are not package ``__init__`` files (an ``__init__`` re-exporting its own submodules is not a
    circle of interest), without the imports under ``if TYPE_CHECKING:``."""
    graph: dict[str, dict[str, Import]] = {}
    for module, path in _library().items():
        if _is_package(module):
            continue
        edges = graph.setdefault(module, {})
        for imp in _imports(path):
            if imp.type_checking:
                continue
            for target in sorted(_targets(imp)):
                if target != module and not _is_package(target):
                    edges.setdefault(target, imp)
    return graph


def _cycles(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """One circle ``[a, b, ..., a]`` through each strongly connected component of more than one
    module (Tarjan's algorithm, then a shortest way back within the component)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, {})):
            if w not in index:
                connect(w)
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)

    cycles = []
    for component in components:
        inside = set(component)
        start = component[0]
        previous, frontier = {start: None}, [start]
        while frontier and start not in [w for v in frontier for w in graph[v]]:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w in inside and w not in previous:
                        previous[w] = v
                        nxt.append(w)
            frontier = nxt
        last = next(v for v in frontier if start in graph[v])
        path = [start]
        while last is not None:
            path.append(last)
            last = previous[last]
        cycles.append(path[::-1])
    return cycles


def _describe(cycle: list[str], graph) -> str:
    steps = [f"    {a} -> {b}   ({graph[a][b].where()})" for a, b in pairwise(cycle)]
    return "\n".join([" -> ".join(cycle), *steps])


# ----------------------------------------------------------------------------------- tests
def test_evaluation_imports_nothing_from_models_inference_or_experiments():
    files = _sources(ROOT / "evaluation")
    assert len(files) > 5
    offenders = [str(imp) for path in files for imp in _imports(path) if imp.loads_any(NOT_IN_EVALUATION)]
    assert offenders == [], ("evaluation/ is pure functions of samples and must not import the other "
                             "layers (the typed predictions are in bayesdl.predictions):\n" + "\n".join(offenders))


def test_no_benchmark_imports_a_study():
    files = _sources(ROOT / "benchmarks")
    assert files
    offenders = [str(imp) for path in files for imp in _imports(path)
                 if imp.loads_any(["bayesdl.experiments.studies"])]
    assert offenders == [], ("a benchmark may import the library and bayesdl.experiments helpers, not a "
                             "study (move what it needs out of the study):\n" + "\n".join(offenders))


def test_no_import_circle_between_modules_of_the_library():
    graph = _graph()
    cycles = _cycles(graph)
    assert cycles == [], ("import circles between modules of the library (lazy imports inside functions "
                          "count):\n" + "\n\n".join(_describe(c, graph) for c in cycles))


# --------------------------------------------------------------- the checker checks itself
def test_relative_and_package_imports_resolve_to_the_defining_module():
    graph = _graph()
    # `from ..data import mnist_splits` in experiments/studies/mnist_guides.py
    assert "bayesdl.experiments.data" in graph["bayesdl.experiments.studies.mnist_guides"]
    # `from bayesdl.models import BNN` resolves through models/__init__.py to models/bnn.py
    assert _defined_in("bayesdl.models", "BNN") == "bayesdl.models.bnn"
    assert _defined_in("bayesdl.inference", "distributed") == "bayesdl.inference.distributed"
    # names the __init__ defines itself stay the package; a function's own imports bind nothing there
    assert _defined_in("bayesdl", "__version__") == "bayesdl"
    assert _defined_in("bayesdl.experiments", "run_study") == "bayesdl.experiments"
    assert _defined_in("bayesdl.experiments", "run") == "bayesdl.experiments"


def test_imports_in_functions_count_and_those_under_type_checking_are_marked(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n"
                      "    from bayesdl.models import BNN\n"
                      "else:\n"
                      "    import bayesdl.checks\n"
                      "def f():\n"
                      "    from bayesdl import models\n")
    found = {(imp.module, imp.names, imp.type_checking, imp.in_function) for imp in _imports(source)}
    assert found == {("typing", ("TYPE_CHECKING",), False, False), ("bayesdl.models", ("BNN",), True, False),
                     ("bayesdl.checks", (), False, False), ("bayesdl", ("models",), False, True)}
    assert [imp.line for imp in _imports(source) if imp.loads_any(["bayesdl.models"])] == [3, 7]


def test_the_circle_finder_finds_and_prints_a_circle():
    fake = Import(ROOT / "bayesdl" / "checks.py", 1, "x", (), False)
    graph = {"a": {"b": fake}, "b": {"c": fake}, "c": {"a": fake, "d": fake}, "d": {}, "e": {"e": fake}}
    (cycle,) = _cycles(graph)
    assert cycle == ["a", "b", "c", "a"]
    assert "a -> b -> c -> a" in _describe(cycle, graph)
    assert _cycles({"a": {"b": fake}, "b": {}}) == []
