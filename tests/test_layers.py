"""Layering rules of DESIGN.md checked on the source: the UI imports no pipelines, the session
imports no job, reading a run folder reaches no model loader, and methods/, jobs/, the session, the store and the CLI sit in no import cycle.
Methods own what the rest asks about them (presets, cost, loss ownership, the wrapped method)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "vcstudio"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every vcstudio module ``path`` imports, at any depth of the file (function-level imports
    count: they are a dependency all the same)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # "from . import tune" names a module
    return {m for m in out if m == "vcstudio" or m.startswith("vcstudio.")}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    return {m: {i for i in _imports(p) if i in files and i != m} for m, p in files.items()}


def test_ui_imports_nothing_from_pipelines():
    bad = {m: sorted(i for i in deps if i.startswith("vcstudio.pipelines"))
           for m, deps in _graph().items() if m.startswith("vcstudio.ui")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_control_sits_between_pipelines_and_models():
    """vcstudio/control (structure conditions + control models) imports models, io and config,
    never pipelines, jobs, the session, the UI or the CLI; models/ does not import it."""
    graph = _graph()
    up = ("vcstudio.pipelines", "vcstudio.jobs", "vcstudio.session", "vcstudio.ui", "vcstudio.cli")
    bad = {m: sorted(i for i in deps if i.startswith(up))
           for m, deps in graph.items() if m.startswith("vcstudio.control")}
    assert {m: d for m, d in bad.items() if d} == {}
    below = {m: sorted(i for i in deps if i.startswith("vcstudio.control"))
             for m, deps in graph.items() if m.startswith(("vcstudio.models", "vcstudio.io"))}
    assert {m: d for m, d in below.items() if d} == {}


def test_session_imports_no_job():
    deps = _graph()["vcstudio.session"]
    assert not any(d.startswith("vcstudio.jobs") for d in deps)


def test_bench_calls_jobs_and_nothing_above_and_jobs_never_import_bench():
    """vcstudio/bench (the `vcstudio bench` commands' code) sits under the CLI: it may call
    the jobs, never the CLI or the UI; the jobs, the session and the UI never import it."""
    graph = _graph()
    up = {m: sorted(i for i in deps if i.startswith(("vcstudio.cli", "vcstudio.ui")))
          for m, deps in graph.items() if m.startswith("vcstudio.bench")}
    assert {m: d for m, d in up.items() if d} == {}
    assert any(i.startswith("vcstudio.jobs") for i in graph["vcstudio.bench.toy_edit"])
    down = {m: sorted(i for i in deps if i.startswith("vcstudio.bench"))
            for m, deps in graph.items()
            if m.startswith(("vcstudio.jobs", "vcstudio.session", "vcstudio.ui"))}
    assert {m: d for m, d in down.items() if d} == {}


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_through_methods_jobs_session_store_cli():
    watched = ("vcstudio.methods", "vcstudio.jobs", "vcstudio.session", "vcstudio.store",
               "vcstudio.cli")
    cycles = [sorted(c) for c in _cycles(_graph())
              if any(m.startswith(watched) for m in c)]
    assert cycles == []


def test_methods_own_their_presets_cost_and_loss_ownership():
    from vcstudio.config import TuneConfig
    from vcstudio.methods.fgbg_method import FgBgConfig
    from vcstudio.methods import registry

    presets = registry.presets()
    # Table 3 of both papers as presets; the labels the Compare tab has always shown
    assert {"baseline (Tune-A-Video)", "DCT full (mul-Fourier CLWS)", "DCT, no adapter",
            "APLA full (VGT-Pure)", "APLA, no discriminator", "APLA + DCT"} <= {
        p.label for p in presets.values()}
    assert presets["apla-no-vgt-disc"].changes == {"method": "apla", "apla.vgt": "none",
                                                   "apla.discriminator": False,
                                                   "apla.hyper_loss": True}
    cfg = registry.apply_changes(TuneConfig(), presets["dct-clws-gaussian"].changes)
    assert (cfg.method, cfg.dct.clws) == ("dct", "gaussian")
    # loss ownership is an explicit attribute (APLA without its hyper-loss keeps the MSE)
    apla = registry.method_class("apla")
    assert apla.replaces_denoise_loss and not registry.method_class("dct").replaces_denoise_loss
    # combined tuning's parts are its base method's: cost, underlying method, sections read
    fg = TuneConfig(method="fgbg", fgbg=FgBgConfig(base_method="apla+dct"))
    both = registry.cost(TuneConfig(method="apla+dct"))
    assert registry.underlying(fg) == "apla+dct" and registry.cost(fg) == both
    assert both.gib == pytest.approx(registry.cost(TuneConfig(method="dct")).gib
                                     + registry.cost(TuneConfig(method="apla")).gib)
    assert registry.reads(fg, "dct") and not registry.reads(TuneConfig(method="apla"), "dct")
    assert registry.paper_defaults("fgbg") == {"lr": 2e-6, "steps": 250}
    with pytest.raises(Exception, match="base_method"):
        registry.get_method(TuneConfig(method="fgbg", fgbg=FgBgConfig(base_method="fgbg",
                                                                      masks="m.npz")))


def test_estimate_scales_with_frames_size_steps_and_method_parts():
    from vcstudio.config import DataConfig, TuneConfig
    from vcstudio.jobs.tune import estimate

    base = TuneConfig(data=DataConfig(n_frames=8, width=512, height=512), steps=500)
    e = estimate(base, "cuda")
    # 3.3 GiB of weights/optimizer + 8 frames x 0.9 GiB; 8 x 0.15 s x (500 + 50 x 0.35)
    assert e["gib"] == pytest.approx(10.5) and e["seconds"] == pytest.approx(621.0)
    e16 = estimate(TuneConfig(data=DataConfig(n_frames=16), steps=500), "cuda")
    assert e16["gib"] - e["gib"] == pytest.approx(8 * 0.9)
    assert e16["seconds"] == pytest.approx(2 * e["seconds"])
    small = estimate(TuneConfig(data=DataConfig(n_frames=8, width=256, height=256)), "cuda")
    assert small["gib"] - 3.3 == pytest.approx((e["gib"] - 3.3) / 4)
    nock = TuneConfig(data=DataConfig(n_frames=8), gradient_checkpointing=False)
    assert estimate(nock, "cuda")["gib"] > e["gib"]
    dct = estimate(TuneConfig(data=base.data, method="dct"), "cuda")
    apla = estimate(TuneConfig(data=base.data, method="apla"), "cuda")
    both = estimate(TuneConfig(data=base.data, method="apla+dct"), "cuda")
    assert dct["gib"] > e["gib"] and apla["gib"] > e["gib"]
    assert both["gib"] == pytest.approx(dct["gib"] + apla["gib"] - e["gib"])  # both parts' cost
    assert both["seconds"] > max(dct["seconds"], apla["seconds"])
    cpu = estimate(base, "cpu")
    assert cpu["seconds"] > 100 * e["seconds"] and cpu["fits"] is None


LOWER = ("vcstudio.methods", "vcstudio.metrics", "vcstudio.models", "vcstudio.io",
         "vcstudio.control", "vcstudio.scene")


@pytest.mark.parametrize("layer, never", [
    (LOWER, ("vcstudio.pipelines", "vcstudio.jobs", "vcstudio.bench", "vcstudio.runs")),
    (("vcstudio.pipelines",), ("vcstudio.jobs", "vcstudio.bench", "vcstudio.session")),
    (("vcstudio.runs", "vcstudio.store"), ("vcstudio.jobs", "vcstudio.bench",
                                           "vcstudio.session")),
    (LOWER + ("vcstudio.pipelines", "vcstudio.runs", "vcstudio.jobs", "vcstudio.bench",
              "vcstudio.session", "vcstudio.store", "vcstudio.toyworld"),
     ("vcstudio.ui", "vcstudio.cli")),
])
def test_every_layer_imports_only_below_itself(layer, never):
    """DESIGN.md's layers: methods, metrics and models (and io, control, scene) import no
    pipelines, jobs or benchmarks; pipelines import no jobs; nothing but the UI and the CLI
    imports the UI or the CLI; run folders (vcstudio/runs/) and the store sit under the jobs and
    the session (VAE encoding and the uint8 <-> tensor conversion live in
    models/encode.py for that reason: methods/dct.py needs them)."""
    bad = {m: sorted(i for i in deps if i.startswith(never))
           for m, deps in _graph().items() if m.startswith(layer)}
    assert {m: d for m, d in bad.items() if d} == {}


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


@pytest.mark.parametrize("module", ["vcstudio.runs.open", "vcstudio.runs.folder",
                                    "vcstudio.runs.source", "vcstudio.runs.tav_folder"])
def test_reading_a_run_reaches_no_loader_and_no_pipeline(module):
    """Opening a run is file reading (issue 26): what estimates and argument parsing call
    reaches, import by import, neither the model loader, a method, a pipeline nor the
    Tune-A-Video conversion (runs/convert.py, the explicit step a job takes when it starts)."""
    graph = _graph()
    bad = sorted(m for m in _reaches(graph, module)
                 if m.startswith(("vcstudio.pipelines", "vcstudio.methods", "vcstudio.jobs"))
                 or m in ("vcstudio.models.loading", "vcstudio.runs.convert"))
    assert bad == []
    assert "vcstudio.models.loading" in _reaches(graph, "vcstudio.runs.convert")  # it can fail


MAX_FUNCTION_LINES = 120  # issue 26: a function a reader can hold


def test_no_function_in_the_ui_or_the_pipelines_is_over_120_lines():
    """Tabs are built from panels, pipelines from steps: no function (nested ones included,
    counted from its ``def`` to its last line) in vcstudio/ui or vcstudio/pipelines is longer
    than MAX_FUNCTION_LINES."""
    long_ones, seen = {}, 0
    for folder in ("ui", "pipelines"):
        for path in sorted((PKG / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    seen += 1
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long_ones[f"{path.relative_to(PKG)}:{node.name}"] = lines
    assert seen > 200 and long_ones == {}
