"""The folder layout shows the architecture (issue 15): no import circles, and no import that runs back up.

Every ``import`` of a guidegap module counts, at module level or inside a function (a lazy import is still a
dependency), ``TYPE_CHECKING`` blocks included. A package is a folder under ``guidegap/`` (or a top-level module);
the packages must form a DAG, so each has a floor: nothing imports a package above the importer's floor. A package's
own ``__init__.py`` may hand on names from anywhere (it is a face, not a dependency).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "guidegap"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _known(name: str) -> str | None:
    """The guidegap module ``name`` is, or is inside of (``guidegap.x.y.Name`` -> ``guidegap.x.y``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            for alias in node.names:  # `from pkg import sub` imports the submodule, `from pkg import name` the package
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {known for name in found if name.startswith("guidegap") and (known := _known(name)) and known != module}


GRAPH = {module: _imports(module) for module in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_the_walk_sees_the_imports_it_must():
    assert "guidegap.checkpoints.resolve" in GRAPH["guidegap.auditing.api"]  # module level
    assert "guidegap.recording.schedulers" in GRAPH["guidegap.checkpoints.loading"]  # inside a function
    assert "guidegap.recording.schedulers" in GRAPH["guidegap.recording.trajectory"]  # `from guidegap.recording import schedulers`
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_through_others():
    assert _cycles(GRAPH) == []


def test_no_package_imports_a_package_above_it():
    edges: dict[str, set[str]] = defaultdict(set)
    why: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, imported in GRAPH.items():
        if MODULES[module].name == "__init__.py":
            continue  # a face hands names on
        for other in imported:
            a, b = _package(module), _package(other)
            if a != b and other != "guidegap":
                edges[a].add(b)
                why[a, b].append(f"{module} -> {other}")
    circles = _cycles(edges)
    details = [w for circle in circles for a in circle for b in circle for w in why.get((a, b), [])]
    assert circles == [], details


@pytest.mark.parametrize("low, high", [
    ("guidegap.metrics", "guidegap.results"), ("guidegap.results", "guidegap.recording"),
    ("guidegap.denoisers", "guidegap.recording"), ("guidegap.oracle", "guidegap.checkpoints"),
    ("guidegap.checkpoints", "guidegap.auditing"), ("guidegap.auditing", "guidegap.plots"),
    ("guidegap.auditing", "guidegap.monitoring"), ("guidegap.monitoring", "guidegap.training"),
])
def test_the_floors_follow_the_data_flow(low, high):
    """model -> recorder -> metrics -> Dataset -> verdict / plots / report: a lower floor never names a higher one."""
    for module, imported in GRAPH.items():
        if _package(module) == low and MODULES[module].name != "__init__.py":
            assert not {m for m in imported if _package(m) == high}, module
