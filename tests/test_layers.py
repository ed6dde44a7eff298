"""The shape of the code, checked: layers import only downwards, no import cycles, few and explained imports
inside functions, modules and functions of a size that fits in a head (docs/ARCHITECTURE.md, "Layers")."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP = {"tests", "bench", "faults", "migrations", ".venv", "staticfiles", ".git", ".run"}
PROJECT = ("greeks", "indicators", "functions", "feed", "webapi", "configs", "signals", "dashboard", "signal_project")

# Top-level packages, lowest first, with the project packages each may import besides itself.
ALLOWED = {
    "greeks": set(),
    "indicators": set(),
    "functions": set(),
    "feed": {"greeks"},
    "webapi": {"feed"},
    "configs": {"feed", "functions", "greeks", "indicators", "webapi"},
    "signals": {"feed", "functions", "indicators", "greeks", "webapi", "configs"},
    "dashboard": {"feed", "indicators", "greeks", "webapi", "configs", "signals"},  # a face on top of the runtime
    "signal_project": set(PROJECT),
    "manage": set(),
}
DJANGO_FREE = ("greeks", "indicators", "functions", "feed")
FRAMEWORKS = ("django", "rest_framework", "channels", "celery", "drf_spectacular", "django_celery_beat")

# The runtime's rooms, lowest first: a module may import its own room and the rooms below it.
RUNTIME = [
    ("signals.models", "signals.storage", "signals.instrument_registry"),
    ("signals.monitoring",),
    ("signals.ingest",),  # sends tick batches by task name: it needs none of the rooms that process them
    ("signals.bars",),
    ("signals.options",),
    ("signals.delivery",),
    ("signals.pipeline",),
    ("signals.schedule",),
    ("signals.backtest",),  # replays stored ticks through the pipeline's computations against its own state
    ("signals.tasks",),
    ("signals.api",),
    ("signals.admin", "signals.apps", "signals.management"),
]
MAX_INNER_IMPORTS = 20
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
FAITHFUL_PORTS = {"greeks/lets_be_rational.py", "greeks/normal.py"}  # line by line from Jäckel's reference code


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the project module (or outside package) imported
    line: int
    in_function: bool
    explained: bool  # a comment on the import's line or above it (and the imports right before it)


def project_modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if SKIP & set(rel.parts):
            continue
        found[".".join(rel.with_suffix("").parts).removesuffix(".__init__")] = path
    return found


MODULES = project_modules()


def resolve(name: str) -> str:
    """The project module an imported name belongs to (a package's attribute may be a submodule)."""
    probe = name
    while probe:
        if probe in MODULES:
            return probe
        probe = probe.rpartition(".")[0]
    return name


def comment_above(lines: list[str], index: int) -> bool:
    """Whether the lines above an import, past the imports right before it, start with a comment."""
    while index >= 0 and lines[index].strip().startswith(("import ", "from ")):
        index -= 1
    return index >= 0 and lines[index].strip().startswith("#")


def imports_of(module: str, path: Path) -> Iterator[Import]:
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, in_function: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                explained = "#" in lines[child.lineno - 1] or comment_above(lines, child.lineno - 2)
                for name in names(child):
                    yield Import(module, resolve(name), child.lineno, in_function, explained)
            yield from visit(child, inner)

    def names(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ""
        if node.level:
            parent = package
            for _ in range(node.level - 1):
                parent = parent.rpartition(".")[0]
            base = f"{parent}.{base}" if base else parent
        return [f"{base}.{alias.name}" for alias in node.names]

    yield from visit(tree, False)


ALL_IMPORTS = [imp for module, path in sorted(MODULES.items()) for imp in imports_of(module, path)]


def top(name: str) -> str:
    return name.split(".")[0]


def room(module: str) -> int | None:
    for rank, prefixes in enumerate(RUNTIME):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def test_every_top_level_package_has_a_layer() -> None:
    assert {top(m) for m in MODULES} <= set(ALLOWED)


def test_packages_import_only_downwards() -> None:
    wrong = [f"{i.module}:{i.line} imports {i.target}" for i in ALL_IMPORTS
             if top(i.target) in PROJECT and top(i.target) != top(i.module)
             and top(i.target) not in ALLOWED[top(i.module)]]
    assert wrong == []


def test_numeric_cores_and_the_feed_import_no_framework() -> None:
    wrong = [f"{i.module}:{i.line} imports {i.target}" for i in ALL_IMPORTS
             if top(i.module) in DJANGO_FREE and top(i.target) in FRAMEWORKS]
    assert wrong == []


def test_every_runtime_module_has_a_room() -> None:
    rootless = [m for m in MODULES if top(m) == "signals" and m != "signals" and room(m) is None]
    assert rootless == []


def test_runtime_rooms_import_only_downwards() -> None:
    wrong = []
    for i in ALL_IMPORTS:
        if top(i.module) != "signals" or top(i.target) != "signals" or i.target == "signals":
            continue
        own, other = room(i.module), room(i.target)
        if own is not None and other is not None and other > own:
            wrong.append(f"{i.module}:{i.line} imports {i.target}")
    assert wrong == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_file_import_cycles_even_through_imports_inside_functions() -> None:
    graph: dict[str, set[str]] = {}
    for i in ALL_IMPORTS:
        if i.target in MODULES and i.target != i.module:
            graph.setdefault(i.module, set()).add(i.target)
    assert cycles(graph) == []


def test_imports_inside_functions_are_few_and_explained() -> None:
    inner = [i for i in ALL_IMPORTS if i.in_function]
    by_line = {(i.module, i.line): i for i in inner}
    unexplained = [f"{m}:{line}" for (m, line), i in sorted(by_line.items()) if not i.explained]
    assert unexplained == []
    assert len(by_line) < MAX_INNER_IMPORTS, sorted(by_line)


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in MODULES.values()))
def test_modules_and_functions_fit_in_a_head(path: str) -> None:
    text = (ROOT / path).read_text()
    if path not in FAITHFUL_PORTS:
        assert text.count("\n") <= MAX_MODULE_LINES
        long = [f"{node.name}: {node.end_lineno - node.lineno + 1} lines" for node in ast.walk(ast.parse(text))
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
        assert long == []
