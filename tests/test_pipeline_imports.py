"""The pipelines package imports without cycles: every import, also those inside functions (a
lazy import hides a cycle from the interpreter, not from the design)."""
from __future__ import annotations

import ast
from pathlib import Path

import vcstudio.pipelines

PKG = Path(vcstudio.pipelines.__file__).parent


def _sibling_imports(path: Path) -> set[str]:
    """Names of the modules of vcstudio.pipelines that ``path`` imports."""
    names = {p.stem for p in PKG.glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and \
                node.module.startswith("vcstudio.pipelines."):
            found.add(node.module.split(".")[2])
    return (found & names) - {path.stem, "__init__"}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (depth-first search), or []."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str]:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        state[v] = 2
        stack.pop()
        return []

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return []


def test_cycle_finder_finds_a_known_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_pipelines_import_graph_has_no_cycle():
    graph = {p.stem: _sibling_imports(p) for p in PKG.glob("*.py")}
    assert {"i2v_base", "i2v_svd"} <= set(graph["i2v"])  # the scan sees real imports
    assert "i2v" not in graph["i2v_ltx"] and "i2v" not in graph["i2v_svd"]
    assert _cycle(graph) == []
