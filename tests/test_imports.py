"""The package's import graph has no cycle: every arrow between its modules points one
way (DESIGN.md, "Layers"). The graph is read from the installed modules' source with
``ast``; imports inside functions count as much as those at the top of a file (a lazy
import hides a cycle, it does not remove it).
"""
from __future__ import annotations

import ast
import importlib.util
import pkgutil
from pathlib import Path

import pytest

# The packages installed under qkernels from folders of their own (setup.py's
# package_dir); their subpackages (qkernels.quant, ...) are found by walking the folders.
ROOTS = ("qkernels", "qkernels.graph", "qkernels.bench")


def _spec(name: str):
    try:
        return importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return None


def _sources(package: str) -> dict[str, Path]:
    """Module name -> source file of ``package`` and every Python module below it."""
    spec = _spec(package)
    if spec is None or spec.origin is None:
        return {}
    found = {package: Path(spec.origin)}
    for folder in spec.submodule_search_locations or ():
        for info in pkgutil.iter_modules([folder]):
            name = f"{package}.{info.name}"
            if info.ispkg:
                found.update(_sources(name))
            elif Path(folder, info.name + ".py").is_file():     # not the compiled extension
                found[name] = Path(folder, info.name + ".py")
    return found


def _imported(module: str, path: Path, is_package: bool, is_module) -> set[str]:
    """The modules (those that ``is_module`` says exist) that ``module`` imports, anywhere
    in its source."""
    here = module if is_package else module.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module
            if node.level:                 # relative: up from this module's package
                parts = here.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            # ``from pkg import name`` imports the module pkg.name when there is one, else pkg
            targets.update(f"{base}.{a.name}" if is_module(f"{base}.{a.name}") else base for a in node.names)
    return {t for t in targets if is_module(t)}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, over every root's modules (and any
    other qkernels module one of them names)."""
    sources: dict[str, Path] = {}
    for root in ROOTS:
        sources.update(_sources(root))

    def is_module(name: str) -> bool:
        if name in sources:
            return True
        parent = sources.get(name.rpartition(".")[0])
        if not name.startswith("qkernels.") or parent is None or parent.name != "__init__.py":
            return False
        spec = _spec(name)
        if spec is None or spec.origin is None:
            return False
        if spec.origin.endswith(".py"):    # a module installed from elsewhere: add it
            sources.update(_sources(name))
        return True                        # (or the compiled extension: a leaf)

    graph: dict[str, set[str]] = {}
    while len(graph) < len(sources):          # is_module may add modules on the way
        for module, path in list(sources.items()):
            if module not in graph:
                graph[module] = {m for m in _imported(module, path, path.name == "__init__.py", is_module)
                                 if m in sources and m != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """(one cycle a, b, ..., a; all its modules) for each group of modules that import
    each other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:                       # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [(_cycle_in(set(g), graph), sorted(g)) for g in groups]


def _cycle_in(group: set[str], graph) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")   # pragma: no cover - groups are cyclic


def test_the_import_graph_covers_every_layer():
    graph = import_graph()
    for module in ("qkernels", "qkernels._api", "qkernels._gemm", "qkernels._conv", "qkernels._float",
                   "qkernels.graph.session", "qkernels.graph.backends.cpu", "qkernels.quant"):
        assert module in graph
    assert "qkernels._gemm" in graph["qkernels._conv"]
    assert "qkernels._api" in graph["qkernels"]
    if _spec("qkernels.bench") is not None:
        assert any(m.startswith("qkernels.bench.") for m in graph)


def test_cycles_are_found_through_relative_and_function_level_imports(tmp_path):
    graph = {"p": {"p.a"}, "p.a": {"p.b"}, "p.b": {"p.c", "p.a"}, "p.c": {"p.d"}, "p.d": {"p.b"}}
    assert cycles(graph) == [(["p.a", "p.b", "p.a"], ["p.a", "p.b", "p.c", "p.d"])]
    assert cycles({"p": {"p.a"}, "p.a": set()}) == []
    source = tmp_path / "m.py"
    source.write_text("import p.c\nfrom .a import f\n\n\ndef g():\n    from .. import b\n    import numpy\n")
    known = {"p.sub.a", "p.b", "p.c"}.__contains__
    assert _imported("p.sub.m", source, False, known) == {"p.sub.a", "p.b", "p.c"}
    assert _imported("p.sub", source, True, known) == {"p.sub.a", "p.b", "p.c"}   # p/sub/__init__.py
    assert _imported("p.sub", source, False, known) == {"p.c"}                    # p/sub.py: .a is p.a


def test_the_package_has_no_import_cycle():
    found = cycles(import_graph())
    if found:
        pytest.fail("import cycles:\n" + "\n".join(f"  {' -> '.join(c)}   (modules in the loop: {', '.join(g)})"
                                                  for c, g in found))
