"""The sweep job: a grid of tunes (+ edits) run as Ray tasks, merged into the run store.

Grid format (``grid.yaml``)::

    tune:                       # the keys `vcstudio tune --config` reads (TuneConfig, data: nested)
      model: path/or/hub-id
      data: {video_path: clip.mp4, prompt: "a man is skiing", n_frames: 8, width: 256, height: 256}
      method: [baseline, dct]   # any value may be a list: the grid is the product of the lists
      dct: {clws: [mul-fourier, gaussian]}
      seed: [33, 34]
      steps: 200
    edit:                       # optional: every cell then edits (EditConfig) and is scored
      prompt: ["a man is skiing on the beach", "a dog is skiing"]
      steps: 50

A training-free method (``method: flowedit``, on a Wan2.1 model) tunes nothing: its cell is the
edit section run as FlowEdit of the tune section's clip (source prompt ``data.prompt``, target
the edit's prompt), scored like the others.

A field whose value is itself a list (``trainable``, ``adam_betas``) varies when given a list of
lists. Each cell is one Ray task (``num_gpus=1`` where the cluster has GPUs, one CPU otherwise)
whose body, :func:`run_cell`, calls the same job functions as ``vcstudio tune`` / ``edit`` with a
store-less :class:`~vcstudio.session.DetachedContext`: it writes its own folder
``SWEEP/cell-<hash>/`` (with ``cell.json``, what it would have recorded) and the driver merges
it into the store (SQLite is never written from many nodes). A worker process runs many cells
(``max_calls=0``), so its model cache keeps a base model loaded across cells that share it.

The sweep folder is named for the grid, so re-running the same grid skips the cells whose
``cell.json`` is there (and records them if this store lacks them): no new runs. A failed or
cancelled cell leaves the others' results and is named in the summary; ``cells.csv`` holds one
row per cell (the varying fields, ``status`` done | failed | cancelled | skipped, run folder,
per-video metrics). :class:`InlineExecutor` runs the same cell body in this process, one cell
after another (``--inline``; the tests of the resume / failed-cell logic use it).
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import os
import math
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ..config import EditConfig, FlowEditConfig, Limits, TuneConfig, from_dict, to_dict
from ..errors import CancelledError, InputError, VcsError
from .. import validate as v
from ..methods.registry import is_training_free
from .compare import COMPARE_METRICS

STATUSES = ("done", "failed", "cancelled", "skipped")
SECTIONS = {"tune": TuneConfig, "edit": EditConfig}


@dataclass
class SweepConfig:
    grid: dict = field(default_factory=dict)  # {"tune": {...}, "edit": {...}}, lists = axes
    name: str = "sweep"  # the grid's name (its file's stem): names the sweep folder
    address: str = ""  # "" = a local Ray started here and shut down after; auto; ray://H:10001
    executor: str = "ray"  # ray | inline (in this process, one cell after another)
    yes: bool = False  # run more than max_cells cells
    max_cells: int = 64
    num_cpus: int = 0  # a local Ray's CPUs (0 = all of this machine's)
    metrics: list[str] = field(default_factory=lambda: list(COMPARE_METRICS))  # with edit:


@dataclass
class Cell:
    index: int
    fields: dict  # the varying fields of this cell: {"method": "dct", "seed": 33}
    tune: TuneConfig
    edit: Optional[EditConfig]
    key: str  # hash of the cell's whole config: names its folder

    @property
    def label(self) -> str:
        return " ".join(f"{k}={_short(v)}" for k, v in self.fields.items()) or f"cell {self.index}"


@dataclass
class CellResult:
    cell: Cell
    status: str  # done | failed | cancelled | skipped
    run_dir: Path
    message: str = ""
    metrics: dict = field(default_factory=dict)
    run_id: Optional[str] = None


@dataclass
class SweepOutcome:
    out_dir: Path
    cells_csv: Path
    results: list[CellResult]
    run_id: Optional[str] = None
    seconds: float = 0.0

    @property
    def failed(self) -> list[CellResult]:
        return [r for r in self.results if r.status in ("failed", "cancelled")]

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in STATUSES}


def _short(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _hash(obj: Any, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


# ----------------------------------------------------------------------------- the grid

def load_grid(path: str | Path) -> dict:
    """A grid file -> its mapping (one-line errors for a missing or malformed file)."""
    from ..config import read_yaml

    data = read_yaml(path, "grid file", "a 'tune:' mapping (and optionally 'edit:')")
    return data


def _axes(cls, data: Any, prefix: str) -> tuple[dict, list[tuple[str, list]]]:
    """A section of the grid -> (its fixed values, its axes [(dotted name, values)])."""
    if not isinstance(data, dict):
        raise InputError(f"Grid section {prefix.rstrip('.') or cls.__name__} must be a mapping "
                         f"of {cls.__name__} fields, got {_short(data)}.")
    from ..config import field_defaults

    known = field_defaults(cls)
    fixed: dict = {}
    axes: list[tuple[str, list]] = []
    for key, value in data.items():
        if key not in known:
            raise InputError(f"Unknown grid field {prefix}{key}; {cls.__name__} has "
                             f"{', '.join(known)}.")
        default = known[key]
        name = f"{prefix}{key}"
        if dataclasses.is_dataclass(default):
            sub_fixed, sub_axes = _axes(type(default), value, name + ".")
            fixed[key] = sub_fixed
            axes += sub_axes
        elif isinstance(value, list) and (not isinstance(default, (list, tuple))
                                          or all(isinstance(x, list) for x in value)):
            if not value:
                raise InputError(f"The grid is empty: {name} is an empty list; give it at "
                                 "least one value.")
            axes.append((name, value))
        else:
            fixed[key] = value
    return fixed, axes


def _put(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        tree = tree.setdefault(p, {})
    tree[parts[-1]] = value


def _grid_axes(grid: dict) -> tuple[dict, list[tuple[str, list]]]:
    """A grid's fixed values per section and its axes (dotted name, values)."""
    if not isinstance(grid, dict) or not grid.get("tune"):
        raise InputError("The grid is empty: it needs a 'tune:' mapping with TuneConfig's "
                         "fields (data: nested), any of them a list of values to sweep.")
    unknown = sorted(set(grid) - set(SECTIONS))
    if unknown:
        raise InputError(f"Unknown grid section {', '.join(unknown)}; a grid holds 'tune:' "
                         "and optionally 'edit:'.")
    fixed, axes = {}, []
    for sec, cls in SECTIONS.items():
        if sec in grid:
            f, a = _axes(cls, grid[sec], f"{sec}.")
            fixed[sec] = f
            axes += a
    return fixed, axes


def cell_count(grid: dict) -> int:
    """How many cells a grid makes, multiplied out from its lists' lengths: known before
    one cell is built (a grid of five 100-value lists is 10^10 cells)."""
    return math.prod(len(vals) for _, vals in _grid_axes(grid)[1])


def expand(grid: dict, limit: Optional[int] = None) -> list[Cell]:
    """The cells of a grid: the product of its lists, in the order the fields appear. With
    ``limit``, a grid of more cells is refused before any is built."""
    fixed, axes = _grid_axes(grid)
    n = math.prod(len(vals) for _, vals in axes)
    if limit is not None and n > limit:
        raise InputError(f"The grid has {n} cells; this studio runs at most {limit} per "
                         "sweep: shorten its lists.")
    cells = []
    for i, combo in enumerate(itertools.product(*[vals for _, vals in axes])):
        tree = json.loads(json.dumps(fixed))  # a deep copy of plain data
        varying = {}
        for (name, _), value in zip(axes, combo):
            _put(tree, name, value)
            varying[name.split(".", 1)[1] if name.startswith("tune.") else name] = value
        tune = from_dict(TuneConfig, tree["tune"])
        edit = from_dict(EditConfig, tree["edit"]) if "edit" in tree else None
        key = _hash({"tune": to_dict(tune), "edit": to_dict(edit) if edit else None})
        cells.append(Cell(i, varying, tune, edit, key))
    return cells


def validate(cfg: SweepConfig, limits: Limits) -> None:
    """Everything checkable before a cell starts: fields, method names, ranges, cell count,
    executor. (An unreachable --address is found when connecting, also before any cell.)"""
    from ..pipelines.edit.edits import validate_edit
    from .tune import validate as validate_tune

    v.choice("executor", cfg.executor, ("ray", "inline"))
    if cfg.address and not (cfg.address == "auto" or cfg.address.startswith("ray://")
                            or re.match(r"^[\w.-]+:\d+$", cfg.address)):
        raise InputError(f"--address {cfg.address!r} is not a Ray address; use auto, "
                         "ray://HOST:10001 or HOST:6379.")
    n = cell_count(cfg.grid)
    if n > cfg.max_cells and not cfg.yes and n <= limits.max_sweep_cells:
        raise InputError(f"The grid has {n} cells (more than {cfg.max_cells}); check "
                         "it, then pass --yes to run them all.")
    cells = expand(cfg.grid, limit=limits.max_sweep_cells)
    for c in cells:
        try:
            if is_training_free(c.tune.method):  # FlowEdit: no tune, the edit is the cell
                from .flowedit import validate as validate_flowedit

                if c.edit is None:
                    raise InputError(f"method {c.tune.method} edits without tuning: give the "
                                     "grid an edit: section (its prompt is the target).")
                validate_flowedit(flowedit_config(c.tune, c.edit), limits)
                continue
            validate_tune(c.tune, limits)
            if c.edit is not None:
                validate_edit(c.edit, "edit.")
        except InputError as e:
            raise InputError(f"Grid cell {c.index} ({c.label}): {e}") from None


def sweep_folder(cfg: SweepConfig, ctx) -> Path:
    """The grid's own folder (re-running the same grid finds its finished cells there)."""
    if ctx.out:
        return Path(ctx.out).expanduser().resolve()
    root = ctx.session.outputs if ctx.session is not None else Path(ctx.data_dir)
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", cfg.name).strip("-")[:40] or "sweep"
    return (root / "sweeps" / f"{slug}-{_hash(cfg.grid, 10)}").resolve()


# ----------------------------------------------------------------------------- the cell body

def flowedit_config(tune: TuneConfig, edit: EditConfig, metrics=()) -> FlowEditConfig:
    """A training-free cell (``method: flowedit``) as FlowEdit's config: the tune section's
    model, clip and source prompt, the edit section's target prompt, steps and seed."""
    return FlowEditConfig(model=tune.model, data=tune.data, prompt=edit.prompt,
                          negative=edit.negative, steps=edit.steps, seed=edit.seed,
                          metrics=tuple(metrics))


def _flowedit_cell(payload: dict, ctx, tune: TuneConfig) -> tuple[dict, dict]:
    """The cell of a training-free method: FlowEdit of the clip into the cell folder, scored
    with the grid's metrics -> (metrics, higher_is_better)."""
    from .flowedit import run_flowedit

    edit = from_dict(EditConfig, payload["edit"])
    out = run_flowedit(flowedit_config(tune, edit, payload.get("metrics") or []), ctx,
                       Path(payload["folder"]), label=payload["label"])
    done = {k: r for k, r in out.scores.items() if not r.skipped}
    return ({k: float(r.value) for k, r in done.items()},
            {k: r.higher_is_better for k, r in done.items()})


def run_cell(payload: dict, report: Optional[Callable[[int, Any], None]] = None,
             cancel=None, cache=None) -> dict:
    """One cell, wherever it runs (a Ray worker or this process): tune (+ edit + score) into
    the cell folder through the same job functions, with a store-less context; returns (and
    writes as ``cell.json``) what the driver records. ``report(index, event)`` sees progress."""
    import torch

    from ..session import DetachedContext
    from .edit import EditJobConfig, run_edit
    from .scoring import score
    from .tune import run_tune

    idx = payload["index"]
    folder = Path(payload["folder"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ctx = DetachedContext(folder, device=device, cache=cache, cancel=cancel,
                          progress=(lambda ev: report(idx, ev)) if report else None)
    tune = from_dict(TuneConfig, payload["tune"])
    warm = bool(ctx.cache.keys())  # a model already loaded here by an earlier cell
    t0 = time.time()
    if is_training_free(tune.method):
        metrics, directions = _flowedit_cell(payload, ctx, tune)
        return _finish_cell(folder, payload, ctx, metrics, directions, t0, device, warm)
    tuned = run_tune(tune, ctx, run_dir=folder, label=payload["label"])
    if tuned.stopped:
        raise CancelledError("Cancelled while tuning.")
    metrics = {"final_loss": float(tuned.losses[-1]["loss"])} if tuned.losses else {}
    if payload.get("edit") is not None:
        ed = run_edit(EditJobConfig(run=str(folder), edit=from_dict(EditConfig, payload["edit"])),
                      ctx, parent=tuned.run_id)
        from ..io import read_video

        results = score(ed.frames, ctx, ed.run_id, payload.get("metrics") or [],
                        prompt=ed.prompt, source=read_video(folder / "source.mp4"))
        metrics.update({k: float(r.value) for k, r in results.items() if not r.skipped})
        directions = {k: r.higher_is_better for k, r in results.items() if not r.skipped}
    else:
        directions = {}
    return _finish_cell(folder, payload, ctx, metrics, {"final_loss": False, **directions}, t0,
                        device, warm)


def _finish_cell(folder: Path, payload: dict, ctx, metrics: dict, directions: dict, t0: float,
                 device: str, warm: bool) -> dict:
    """What the driver records of a cell, written as its ``cell.json``."""
    from ..io.atomic import write_json

    doc = {"index": payload["index"], "label": payload["label"], "records": ctx.records,
           "metrics": metrics, "higher_is_better": directions,
           "seconds": time.time() - t0, "device": device, "host": os.uname().nodename,
           "pid": os.getpid(), "warm": warm}
    write_json(folder / "cell.json", doc)
    return doc


def _cell_task(payload: dict, board) -> dict:
    """The Ray task body: :func:`run_cell` reporting to the driver's progress board."""
    last = [0.0]

    def report(idx: int, ev) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5 or ev.step >= ev.total:
            last[0] = now
            board.report.remote(idx, ev.stage, ev.step, ev.total)

    return run_cell(payload, report)


class ProgressBoard:
    """Ray actor: the latest (stage, step, total) of each running cell."""

    def __init__(self) -> None:
        self.state: dict[int, tuple] = {}

    def report(self, idx: int, stage: str, step: int, total: int) -> None:
        self.state[idx] = (stage, step, total)

    def snapshot(self) -> dict:
        return dict(self.state)


# ----------------------------------------------------------------------------- executors

class InlineExecutor:
    """Cells one after another in this process, through the same cell body."""

    def __init__(self, cache=None) -> None:
        self.cache = cache
        self._state: dict[int, tuple] = {}

    def __enter__(self) -> "InlineExecutor":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def progress(self) -> dict:
        return dict(self._state)

    def run(self, payloads: list[dict], cancel, tick: Optional[Callable[[], None]] = None
            ) -> Iterator[tuple[int, Any]]:
        last = [0.0]
        for p in payloads:
            if cancel.cancelled:
                yield p["index"], CancelledError("Cancelled before it started.")
                continue

            def report(idx, ev):
                self._state[idx] = (ev.stage, ev.step, ev.total)
                now = time.monotonic()
                if tick is not None and now - last[0] >= 0.5:  # the running cell's step
                    last[0] = now
                    tick()

            try:
                yield p["index"], run_cell(p, report, cancel=cancel, cache=self.cache)
            except Exception as e:  # a cell's failure is its own: the others go on
                yield p["index"], e
            self._state.pop(p["index"], None)


class RayExecutor:
    """Cells as Ray tasks: on the cluster at ``address``, or on a local Ray started here (and
    shut down after). A Ray already initialised in this process is used as it is."""

    def __init__(self, address: str = "", num_cpus: int = 0) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self._started = False
        self._board = None
        self._tmp: Optional[str] = None

    def __enter__(self) -> "RayExecutor":
        try:
            import ray
        except ImportError:
            raise InputError("Sweeps run on Ray, which is not installed: pip install "
                             "'ray[client]' (see requirements.txt), or pass --inline.") from None
        if not ray.is_initialized():
            _check_reachable(self.address)
            kw: dict = dict(include_dashboard=False, log_to_driver=False,
                            configure_logging=False)
            if self.address:
                kw["address"] = self.address
            else:  # a local Ray: short temp dir (socket paths are length-limited)
                self._tmp = tempfile.mkdtemp(prefix="vcsray", dir="/tmp")
                kw.update(num_cpus=self.num_cpus or None, _temp_dir=self._tmp,
                          runtime_env={"env_vars": _local_env()})
            try:
                ray.init(**kw)
            except Exception as e:
                where = self.address or "a local Ray"
                raise InputError(f"Cannot reach the Ray cluster at {where} "
                                 f"({type(e).__name__}: {' '.join(str(e).split())[:160]}); "
                                 "start one with `ray start --head` or check --address."
                                 ) from None
            self._started = True
        self._board = ray.remote(num_cpus=0)(ProgressBoard).remote()
        return self

    def __exit__(self, *exc) -> None:
        import ray

        if self._started:
            ray.shutdown()
        if self._tmp:
            import shutil

            shutil.rmtree(self._tmp, ignore_errors=True)

    def progress(self) -> dict:
        import ray

        try:
            return ray.get(self._board.snapshot.remote(), timeout=2)
        except Exception:
            return {}

    def run(self, payloads: list[dict], cancel, tick: Optional[Callable[[], None]] = None
            ) -> Iterator[tuple[int, Any]]:
        import ray

        gpus = ray.cluster_resources().get("GPU", 0) > 0
        # max_calls=0: a worker runs any number of cells, so its model cache lives on (Ray's
        # default for GPU tasks is one task per worker process)
        task = ray.remote(num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1, max_calls=0,
                          max_retries=0)(_cell_task)
        refs = {task.remote(p, self._board): p["index"] for p in payloads}
        pending = list(refs)
        cancelled = False
        while pending:
            if cancel.cancelled and not cancelled:
                cancelled = True
                for r in pending:
                    ray.cancel(r)
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for r in done:
                try:
                    yield refs[r], ray.get(r)
                except Exception as e:
                    yield refs[r], _cause(e)
            if not done:
                yield -1, None  # a tick: the driver refreshes its progress


def _check_reachable(address: str) -> None:
    """A cluster address that answers no TCP connection is a one-line error at once (Ray's own
    client waits ~30 s, its GCS connection longer, before giving up)."""
    if address in ("", "auto"):
        return
    import socket

    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except (OSError, ValueError) as e:
        raise InputError(f"Cannot reach the Ray cluster at {address} ({type(e).__name__}: "
                         f"{e}); start it with `ray start --head` (then --address auto on that "
                         "machine, or ray://HEAD:10001 from another) or check the address."
                         ) from None


def _local_env() -> dict:
    """Environment of a local Ray's workers: this checkout importable, the same data folder
    and offline switch."""
    import vcstudio

    root = str(Path(vcstudio.__file__).resolve().parents[1])
    env = {"PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    for k in ("VCSTUDIO_DATA", "VCSTUDIO_MODEL", "HF_HUB_OFFLINE", "HF_HOME", "VCSTUDIO_VGG19"):
        if os.environ.get(k):
            env[k] = os.environ[k]
    return env


def _cause(e: BaseException) -> BaseException:
    """The exception a Ray task raised (Ray wraps it), or a CancelledError for a cancelled
    task."""
    import ray

    if isinstance(e, (ray.exceptions.TaskCancelledError,)):
        return CancelledError("Cancelled.")
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        return cause
    return e


# ----------------------------------------------------------------------------- the driver

def _message(e: BaseException) -> str:
    if isinstance(e, VcsError):
        return str(e)
    return f"Internal error ({type(e).__name__}: {' '.join(str(e).split())[:200]})"


def _cell_metrics(store, tune_run_id: str) -> dict:
    """Per-video metrics of a cell: its tune run's and its edit's."""
    out = dict(store.video_metrics([tune_run_id]).get(tune_run_id, {}))
    for r in store.list_runs(parent_run=tune_run_id, kind="edit"):
        out.update(r.metrics)
    return out


def write_cells_csv(path: Path, results: list[CellResult], field_names: list[str]) -> Path:
    from ..io.atomic import atomic_path

    metric_names = sorted({m for r in results for m in r.metrics})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["cell", *field_names, "status", "run_dir", *metric_names, "message"])
    for r in results:
        w.writerow([r.cell.index, *[_short(r.cell.fields.get(f, "")) for f in field_names],
                    r.status, str(r.run_dir),
                    *[f"{r.metrics[m]:.6g}" if m in r.metrics else "" for m in metric_names],
                    r.message])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())
    return path


def run(cfg: SweepConfig, ctx) -> SweepOutcome:
    """Connect (an unreachable cluster fails here, before anything is recorded), record the
    sweep run, skip the finished cells, run the others, merge each as it ends, write
    cells.csv."""
    import contextlib

    from ..progress import Event

    t0 = time.time()
    cells = expand(cfg.grid)
    folder = sweep_folder(cfg, ctx)
    finished = {c.index: _read_cell(folder / f"cell-{c.key}") for c in cells}
    todo = [{"index": c.index, "folder": str(folder / f"cell-{c.key}"), "label": c.label,
             "tune": to_dict(c.tune), "edit": to_dict(c.edit) if c.edit else None,
             "metrics": list(cfg.metrics)} for c in cells if finished[c.index] is None]
    executor = (InlineExecutor(ctx.cache) if cfg.executor == "inline"
                else RayExecutor(cfg.address, cfg.num_cpus))
    with contextlib.ExitStack() as stack:
        if todo:
            stack.enter_context(executor)
        folder.mkdir(parents=True, exist_ok=True)
        st = ctx.store
        sweep_run = ctx.open_run("sweep", folder, cfg, label=cfg.name)
        results: dict[int, CellResult] = {}
        for c in cells:  # finished before: recorded here if this store lacks them
            doc = finished[c.index]
            if doc is None:
                continue
            cdir = folder / f"cell-{c.key}"
            run = st.run_by_dir(cdir, "tune")
            if run is None or not run.finished:
                run = st.run(next(iter(ctx.replay(doc["records"], parent=sweep_run).values())))
            results[c.index] = CellResult(c, "skipped", cdir, "finished before",
                                          _cell_metrics(st, run.id), run.id)
        n = len(cells)
        ctx(Event(len(results), n, f"{len(todo)} of {n} cells to run", stage="sweep"))

        def tick() -> None:  # one bar over cells, each running cell's step beside it
            live = "; ".join(f"cell {i}: {s[0]} {s[1]}/{s[2]}"
                             for i, s in sorted(executor.progress().items()) if i not in results)
            ctx(Event(len(results), n, live or f"{len(results)}/{n} cells", stage="sweep"))

        for idx, res in (executor.run(todo, ctx.cancel, tick) if todo else ()):
            if idx >= 0:
                c = cells[idx]
                cdir = folder / f"cell-{c.key}"
                if isinstance(res, BaseException):
                    status = "cancelled" if isinstance(res, CancelledError) else "failed"
                    results[idx] = CellResult(c, status, cdir, _message(res))
                else:
                    rid = next(iter(ctx.replay(res["records"], parent=sweep_run).values()))
                    results[idx] = CellResult(c, "done", cdir, "", _cell_metrics(st, rid), rid)
            tick()
    ordered = [results[c.index] for c in cells]
    field_names = list(dict.fromkeys(k for c in cells for k in c.fields))
    csv_path = write_cells_csv(folder / "cells.csv", ordered, field_names)
    ctx.add_artifact(sweep_run, "csv", csv_path)
    if all(r.status in ("done", "skipped") for r in ordered):
        ctx.finish_run(sweep_run)
    ok = sum(r.status in ("done", "skipped") for r in ordered)
    ctx(Event(n, n, f"{ok}/{n} cells done", stage="sweep"))
    return SweepOutcome(folder, csv_path, ordered, sweep_run, time.time() - t0)


def _read_cell(folder: Path) -> Optional[dict]:
    p = folder / "cell.json"
    if not p.is_file():
        return None
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError):
        return None  # half-written by a killed worker: run the cell again
    return doc if isinstance(doc, dict) and doc.get("records") else None


# ----------------------------------------------------------------------------- Compare tab

def finished_sweeps(store, owner: Optional[str] = None) -> list[tuple[str, str]]:
    """(label shown, run id) of the sweeps in the store, newest first; one with a failed or
    cancelled cell is labelled incomplete (its finished cells still open)."""
    runs = store.list_runs(kind="sweep", limit=50)
    return [(f"{r.label} · {time.strftime('%m-%d %H:%M', time.localtime(r.created))}"
             + ("" if r.finished else " (incomplete)"), r.id)
            for r in runs if owner is None or r.config.get("session") in (None, owner)]


def open_sweep(store, sweep_run_id: str, copy_to: Optional[Path] = None) -> list[dict]:
    """The cells of a sweep as Compare entries ({"name", "run_id", "frames", "scores"}): each
    cell's per-video metrics, and its edit's frames where it has one. Videos outside the
    store's data folder (another --out, cluster storage) are copied into ``copy_to`` first
    (the visitor's session folder), so the page may serve them."""
    import shutil

    from ..io import read_video

    store.run(sweep_run_id)
    entries = []
    for run in reversed(store.list_runs(parent_run=sweep_run_id, kind="tune", limit=10000)):
        cdir = store.abspath(run.run_dir)
        doc = _read_cell(cdir) or {}
        hib = doc.get("higher_is_better", {"final_loss": False})
        metrics = _cell_metrics(store, run.id)
        frames = None
        edits = store.list_runs(parent_run=run.id, kind="edit", limit=1)
        if edits:
            mp4s = [p for k, p in store.artifacts(edits[0].id) if k == "mp4"]
            if mp4s:
                src = store.abspath(mp4s[0])
                if copy_to is not None and not src.resolve().is_relative_to(
                        store.data_dir.resolve()):
                    copy_to.mkdir(parents=True, exist_ok=True)
                    dst = copy_to / f"{run.id}-{src.name}"
                    shutil.copyfile(src, dst)
                    src = dst
                frames = read_video(src)
        entries.append({"name": run.label or run.id, "run_id": run.id, "frames": frames,
                        "scores": {k: {"value": val, "higher_is_better": hib.get(k)}
                                   for k, val in metrics.items()}})
    return entries


def summary_table(outcome: SweepOutcome) -> str:
    """The cells as aligned text: index, varying fields, status, per-video metrics."""
    from .compare import format_table

    results = outcome.results
    field_names = list(dict.fromkeys(k for r in results for k in r.cell.fields))
    metric_names = sorted({m for r in results for m in r.metrics})
    rows = [["cell", *field_names, "status", *metric_names]]
    for r in results:
        rows.append([r.cell.index, *[_short(r.cell.fields.get(f, "")) for f in field_names],
                     r.status, *[f"{r.metrics[m]:.4g}" if m in r.metrics else "–"
                                 for m in metric_names]])
    return format_table(rows)


__all__ = ["SweepConfig", "SweepOutcome", "Cell", "CellResult", "expand", "load_grid",
           "run_cell", "InlineExecutor", "RayExecutor", "open_sweep", "finished_sweeps",
           "summary_table", "validate", "run"]
