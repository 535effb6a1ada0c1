"""The pipelines package imports without cycles: every import, also those inside functions (a
lazy import hides a cycle from the interpreter, not from the design). Its job packages (edit,
tune, long, i2v, flow) form a chain too: none imports one that imports it back."""
from __future__ import annotations

import ast
from pathlib import Path

import vcstudio.pipelines

PKG = Path(vcstudio.pipelines.__file__).parent


def _name(path: Path) -> str:
    """``path``'s module name below vcstudio.pipelines ("tune.loop"; "tune" for its __init__)."""
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_imports(path: Path, names: set[str]) -> set[str]:
    """The modules of vcstudio.pipelines (names as :func:`_name` gives them) ``path`` imports."""
    package = _name(path) if path.name == "__init__.py" else _name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = ["vcstudio", "pipelines"] + (package.split(".") if package else [])
            base = base[:len(base) - node.level + 1]
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        if not mod.startswith("vcstudio.pipelines"):
            continue
        mod = mod[len("vcstudio.pipelines."):]
        for target in [mod] + [f"{mod}.{a.name}".lstrip(".") for a in node.names]:
            if target in names:
                found.add(target)
    return found - {_name(path)}


def _graph() -> dict[str, set[str]]:
    files = {_name(p): p for p in PKG.rglob("*.py") if p != PKG / "__init__.py"}
    return {m: _module_imports(p, set(files)) for m, p in files.items()}


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
    graph = _graph()
    assert {"i2v.base", "i2v.svd"} <= graph["i2v.backbones"]  # the scan sees real imports
    assert "tune.loop" in graph["long.combined"]  # ... relative ones across packages too
    assert "i2v.backbones" not in graph["i2v.ltx"] | graph["i2v.svd"]
    assert _cycle(graph) == []


def test_job_packages_form_a_chain():
    """Every pipelines module sits in a job package, and the packages import one way only:
    edit (a tuned model, its sampling and inversion) under tune, long and flow."""
    graph = _graph()
    assert all("." in m for m in graph if m not in {"edit", "tune", "long", "i2v", "flow"})
    packages: dict[str, set[str]] = {}
    for m, deps in graph.items():
        packages.setdefault(m.split(".")[0], set()).update(d.split(".")[0] for d in deps)
    packages = {p: deps - {p} for p, deps in packages.items()}
    assert "edit" in packages["tune"] and "tune" in packages["long"]
    assert _cycle(packages) == []
