"""Run store: jobs, runs, metrics and artifact paths in SQLite under the app's data folder.

DESIGN (Storage): stdlib sqlite3 in WAL mode, schema versioned with ``PRAGMA user_version`` and
migrated forward on open; artifacts are files under ``<data>/runs/<run id>/`` written atomically
(temp file in the same folder + ``os.replace``), recorded by their path relative to the data
folder so the whole folder can be moved (a run written elsewhere, ``--out`` or cluster storage, is
recorded by its absolute path). A crash loses no finished run: every write is committed before
the call returns, and on open the jobs that a dead process left queued/running are marked
``interrupted`` and listed by :meth:`Store.resumable_jobs` (with the tunes a user stopped).

Jobs and runs: a job is one submission (``vcstudio/jobs``: its kind, full config, status,
progress, last checkpoint); a run is the folder it produced (config, seed, metrics, artifacts).
A resumed job continues its run, so a run's status is that of its newest job.

This module imports no torch: the CLI, the app and tests open it cheaply.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from .config import to_dict
from .io.atomic import atomic_path
from .paths import data_dir
from .errors import InputError

JOB_KINDS = ("tune", "edit", "long", "i2v", "compare", "eval", "sweep", "i2v_tune", "i2v_ab",
             "i2v_eval",
             "push", "convert_tav", "open_hub", "control_preview")
# stopped: a tune the user stopped, its last checkpoint saved as a usable delta (resumable);
# expired: its session's folder was deleted after the public studio's TTL (the record stays)
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted", "stopped",
                "expired")
FINAL_STATUSES = ("done", "failed", "cancelled", "stopped", "expired")
ARTIFACT_KINDS = ("mp4", "gif", "delta", "latents", "plot", "json", "csv", "png", "frames",
                  "checkpoint")
# Packages whose versions a run records (DESIGN: a run records config, seed, versions, device).
VERSIONED_PACKAGES = ("vcstudio", "torch", "diffusers", "transformers", "open_clip_torch",
                      "segment-anything", "peft", "numpy")

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# Schema migrations, applied in order; ``user_version`` = number of migrations applied.
# v1: the first schema (jobs, runs, per-frame and per-video metrics, artifacts).
# v2: jobs learn who owns them (host:pid:instance, to tell a crashed process's jobs from a live
#     one's), their parameters and last checkpoint (to resume), the job that resumed them, and
#     their progress events (loss curves of a re-opened run).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        session_id TEXT,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        progress REAL NOT NULL DEFAULT 0,
        message TEXT NOT NULL DEFAULT '',
        error TEXT,
        run_id TEXT
    );
    CREATE INDEX jobs_status ON jobs(status);
    CREATE INDEX jobs_session ON jobs(session_id);
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        config TEXT NOT NULL DEFAULT '{}',
        seed INTEGER,
        versions TEXT NOT NULL DEFAULT '{}',
        device TEXT,
        clip_hash TEXT,
        run_dir TEXT NOT NULL,
        parent_run TEXT,
        created REAL NOT NULL,
        finished REAL
    );
    CREATE INDEX runs_kind ON runs(kind);
    CREATE INDEX runs_clip ON runs(clip_hash);
    CREATE TABLE frame_metrics (
        run_id TEXT NOT NULL,
        metric TEXT NOT NULL,
        frame INTEGER NOT NULL,
        value REAL NOT NULL,
        model TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (run_id, metric, model, frame)
    );
    CREATE TABLE video_metrics (
        run_id TEXT NOT NULL,
        metric TEXT NOT NULL,
        value REAL NOT NULL,
        model TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (run_id, metric, model)
    );
    CREATE TABLE artifacts (
        run_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        path TEXT NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (run_id, path)
    );
    """,
    """
    ALTER TABLE jobs ADD COLUMN owner TEXT;
    ALTER TABLE jobs ADD COLUMN params TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE jobs ADD COLUMN checkpoint TEXT;
    ALTER TABLE jobs ADD COLUMN resumed_by TEXT;
    ALTER TABLE jobs ADD COLUMN step INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN total INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN label TEXT NOT NULL DEFAULT '';
    CREATE TABLE job_events (
        job_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        t REAL NOT NULL,
        step INTEGER NOT NULL,
        total INTEGER NOT NULL,
        stage TEXT NOT NULL DEFAULT '',
        message TEXT NOT NULL DEFAULT '',
        metrics TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (job_id, seq)
    );
    """,
    # v3: a run knows the job that made it; runs are found by their folder (a resumed tune and
    #     a re-run sweep cell continue theirs)
    """
    ALTER TABLE runs ADD COLUMN job_id TEXT;
    CREATE INDEX runs_dir ON runs(run_dir);
    CREATE INDEX jobs_run ON jobs(run_id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def default_data_dir() -> Path:
    """``$VCSTUDIO_DATA`` if set, else the platform's user data dir for "vcstudio"."""
    return data_dir()


def package_versions(names: Sequence[str] = VERSIONED_PACKAGES) -> dict[str, str]:
    """Installed versions (importlib.metadata, so nothing heavy is imported)."""
    from importlib import metadata

    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return out


# ----------------------------------------------------------------------------- atomic files

def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


# ----------------------------------------------------------------------------- records

@dataclass
class Job:
    id: str
    kind: str
    status: str
    session_id: Optional[str]
    created: float
    updated: float
    progress: float
    step: int
    total: int
    message: str
    error: Optional[str]
    run_id: Optional[str]
    owner: Optional[str]
    params: dict
    checkpoint: Optional[str]
    resumed_by: Optional[str]

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass
class Run:
    id: str
    kind: str
    config: dict
    seed: Optional[int]
    versions: dict
    device: Optional[str]
    clip_hash: Optional[str]
    run_dir: str  # relative to the data folder, or absolute when it lies outside it
    parent_run: Optional[str]
    created: float
    finished: Optional[float]
    label: str = ""
    job_id: Optional[str] = None
    metrics: dict = field(default_factory=dict)  # per-video metrics, filled by list_runs
    status: str = ""  # its newest job's status, filled by list_runs

    @property
    def method(self) -> str:
        c = self.config
        inner = c.get("tune") if isinstance(c.get("tune"), dict) else c
        return str(inner.get("method", ""))


def _new_id(prefix: str) -> str:
    # time-ordered, readable, unique: 20260101-120000-<8 hex>
    return f"{prefix}{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------- the store

class Store:
    """The run store of one data folder. Thread-safe: one connection guarded by a lock
    (SQLite serialises writers anyway; WAL lets other processes read meanwhile)."""

    DB_NAME = "vcstudio.db"

    def __init__(self, data_dir: str | Path | None = None, *, recover: bool = True) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "runs").mkdir(exist_ok=True)
        self.path = self.data_dir / self.DB_NAME
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=10.0)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints,
        self._db.execute("PRAGMA foreign_keys=ON")     # never corrupt; commits survive a crash
        self._db.execute("PRAGMA busy_timeout=10000")  # of the process (not of the OS)
        self._seq: dict[str, int] = {}
        _live_owners.add(self.owner)
        self._migrate()
        if recover:
            self.recover()

    # -- plumbing -------------------------------------------------------------------------
    @property
    def journal_mode(self) -> str:
        return self._db.execute("PRAGMA journal_mode").fetchone()[0]

    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _q(self, sql: str, args: Sequence = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _migrate(self) -> None:
        with self._tx() as db:  # one writer migrates; others wait on the IMMEDIATE lock
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise InputError(
                    f"The run store {self.path} was written by a newer vcstudio (schema "
                    f"v{version}, this one knows v{SCHEMA_VERSION}). Upgrade vcstudio or point "
                    f"VCSTUDIO_DATA at another folder.")
            for i in range(version, SCHEMA_VERSION):
                for stmt in _statements(MIGRATIONS[i]):
                    db.execute(stmt)
                db.execute(f"PRAGMA user_version={i + 1}")

    def close(self) -> None:
        """Close cleanly: this instance's unfinished jobs become resumable."""
        with self._lock:
            if self._db is None:
                return
            now = time.time()
            self._db.execute(
                "UPDATE jobs SET status='interrupted', updated=? "
                "WHERE owner=? AND status IN ('queued','running')", (now, self.owner))
            self._db.close()
            self._db = None
            _live_owners.discard(self.owner)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- recovery -------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Mark queued/running jobs whose owner process is gone as ``interrupted``.

        Jobs of a live process (another app or CLI on this host sharing the folder) are left
        alone; jobs of another host cannot be checked and are left alone too."""
        rows = self._q("SELECT id, owner FROM jobs WHERE status IN ('queued','running')")
        dead = [r["id"] for r in rows if not _owner_alive(r["owner"])]
        if dead:
            now = time.time()
            with self._tx() as db:
                db.executemany("UPDATE jobs SET status='interrupted', updated=? WHERE id=?",
                               [(now, j) for j in dead])
        return dead

    def resumable_jobs(self, kinds: Optional[Sequence[str]] = None) -> list[Job]:
        """Jobs a crash or restart cut short (interrupted) or a user stopped, that nobody
        resumed yet, newest first; ``kinds`` narrows them (``("tune",)``)."""
        rows = self._q("SELECT * FROM jobs WHERE status IN ('interrupted','stopped') AND "
                       "resumed_by IS NULL ORDER BY created DESC")
        return [_job(r) for r in rows if kinds is None or r["kind"] in kinds]

    def mark_resumed(self, old_job_id: str, new_job_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET resumed_by=?, updated=? WHERE id=?",
                       (new_job_id, time.time(), old_job_id))

    # -- jobs -----------------------------------------------------------------------------
    def add_job(self, kind: str, session_id: Optional[str] = None, params: Any = None,
                run_id: Optional[str] = None) -> str:
        if kind not in JOB_KINDS:
            raise InputError(f"Unknown job kind {kind!r}; use one of {', '.join(JOB_KINDS)}.")
        job_id = _new_id("job-")
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, status, session_id, created, updated, run_id, owner,"
                " params) VALUES (?,?,?,?,?,?,?,?,?)",
                (job_id, kind, "queued", session_id, now, now, run_id, self.owner,
                 _dumps(params or {})))
        return job_id

    def update_job(self, job_id: str, *, status: Optional[str] = None,
                   progress: Optional[float] = None, step: Optional[int] = None,
                   total: Optional[int] = None, message: Optional[str] = None,
                   error: Optional[str] = None, run_id: Optional[str] = None,
                   checkpoint: Optional[str] = None) -> None:
        if status is not None and status not in JOB_STATUSES:
            raise ValueError(f"unknown job status {status!r}")
        sets, args = ["updated=?"], [time.time()]
        for col, val in (("status", status), ("progress", progress), ("step", step),
                         ("total", total), ("message", message), ("error", error),
                         ("run_id", run_id), ("checkpoint", checkpoint)):
            if val is not None:
                sets.append(f"{col}=?")
                args.append(val)
        with self._tx() as db:
            cur = db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id=?", (*args, job_id))
            if cur.rowcount == 0:
                raise KeyError(job_id)

    def add_event(self, job_id: str, step: int, total: int, stage: str = "", message: str = "",
                  metrics: Optional[dict] = None) -> None:
        """Record one progress event (previews are not stored) and the job's progress."""
        now = time.time()
        with self._tx() as db:
            seq = self._seq.get(job_id)
            if seq is None:
                seq = db.execute("SELECT COALESCE(MAX(seq), -1) FROM job_events WHERE job_id=?",
                                 (job_id,)).fetchone()[0]
            seq += 1
            self._seq[job_id] = seq
            db.execute("INSERT INTO job_events VALUES (?,?,?,?,?,?,?,?)",
                       (job_id, seq, now, int(step), int(total), stage, message,
                        _dumps({k: float(v) for k, v in (metrics or {}).items()})))
            prog = (step / total) if total else 0.0
            db.execute("UPDATE jobs SET step=?, total=?, progress=?, message=?, updated=? "
                       "WHERE id=?", (int(step), int(total), prog, message, now, job_id))

    def events(self, job_id: str) -> list[dict]:
        rows = self._q("SELECT * FROM job_events WHERE job_id=? ORDER BY seq", (job_id,))
        return [{"step": r["step"], "total": r["total"], "stage": r["stage"],
                 "message": r["message"], "metrics": json.loads(r["metrics"]), "t": r["t"]}
                for r in rows]

    def job(self, job_id: str) -> Job:
        rows = self._q("SELECT * FROM jobs WHERE id=?", (job_id,))
        if not rows:
            raise InputError(f"No job {job_id!r} in the run store.")
        return _job(rows[0])

    def jobs(self, session_id: Optional[str] = None, status: Optional[str] = None,
             limit: int = 200) -> list[Job]:
        where, args = _where([("session_id=?", session_id), ("status=?", status)])
        rows = self._q(f"SELECT * FROM jobs{where} ORDER BY created DESC LIMIT ?",
                       (*args, limit))
        return [_job(r) for r in rows]

    # -- runs -----------------------------------------------------------------------------
    def create_run(self, kind: str, config: Any = None, seed: Optional[int] = None,
                   device: Optional[str] = None, clip_hash: Optional[str] = None,
                   parent_run: Optional[str] = None, versions: Optional[dict] = None,
                   label: str = "", run_dir: str | Path | None = None,
                   job_id: Optional[str] = None) -> Run:
        """A new run; config may be a dataclass. Its folder is ``run_dir`` when given (any
        folder: inside the data folder it is recorded relative to it, elsewhere absolute),
        else a new ``runs/<id>/``."""
        if kind not in JOB_KINDS:
            raise InputError(f"Unknown run kind {kind!r}; use one of {', '.join(JOB_KINDS)}.")
        run_id = _new_id("")
        if run_dir is None:
            rel = f"runs/{run_id}"
            (self.data_dir / rel).mkdir(parents=True)
        else:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            rel = self.rel_path(run_dir)
        cfg = to_dict(config) if is_dataclass(config) else (config or {})
        vers = package_versions() if versions is None else versions
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs (id, kind, config, seed, versions, device, clip_hash, run_dir,"
                " parent_run, created, label, job_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, kind, _dumps(cfg), seed, _dumps(vers), device, clip_hash, rel,
                 parent_run, now, label, job_id))
        return self.run(run_id)

    def rel_path(self, path: str | Path) -> str:
        """How a path is recorded: relative to the data folder when inside it, else absolute."""
        p = Path(path)
        p = (p if p.is_absolute() else Path.cwd() / p).resolve()
        try:
            return p.relative_to(self.data_dir.resolve()).as_posix()
        except ValueError:
            return p.as_posix()

    def run_by_dir(self, run_dir: str | Path, kind: Optional[str] = None) -> Optional[Run]:
        """The newest run recorded with this folder (and kind), or None."""
        where, args = _where([("run_dir=?", self.rel_path(run_dir)), ("kind=?", kind)])
        rows = self._q(f"SELECT * FROM runs{where} ORDER BY created DESC LIMIT 1", args)
        return _run(rows[0]) if rows else None

    def update_run(self, run_id: str, *, config: Any = None, seed: Optional[int] = None,
                   clip_hash: Optional[str] = None, device: Optional[str] = None,
                   job_id: Optional[str] = None, finished: Optional[bool] = None) -> None:
        """Change a run's record (a resumed tune: its new job; a re-opened one: unfinished)."""
        sets, args = [], []
        cfg = to_dict(config) if is_dataclass(config) else config
        for col, val in (("config", None if cfg is None else _dumps(cfg)), ("seed", seed),
                         ("clip_hash", clip_hash), ("device", device), ("job_id", job_id)):
            if val is not None:
                sets.append(f"{col}=?")
                args.append(val)
        if finished is not None:
            sets.append("finished=?")
            args.append(time.time() if finished else None)
        if sets:
            with self._tx() as db:
                db.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id=?", (*args, run_id))

    def run_status(self, run: Run) -> str:
        """The status of the run's newest job (a resumed tune: the resuming job's); a run
        recorded without a job is done once finished."""
        rows = self._q("SELECT status FROM jobs WHERE run_id=? OR id=? ORDER BY created DESC "
                       "LIMIT 1", (run.id, run.job_id or ""))
        if rows:
            return rows[0]["status"]
        return "done" if run.finished else "unfinished"

    def finish_run(self, run_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET finished=? WHERE id=?", (time.time(), run_id))

    def run(self, run_id: str) -> Run:
        rows = self._q("SELECT * FROM runs WHERE id=?", (run_id,))
        if not rows:
            raise InputError(f"No run {run_id!r} in the run store; pick one from the list.")
        return _run(rows[0])

    def run_dir(self, run_id: str) -> Path:
        return self.abspath(self.run(run_id).run_dir)

    def abspath(self, recorded: str) -> Path:
        """A recorded path (relative to the data folder, or absolute) as an absolute path."""
        return self.data_dir / recorded  # an absolute ``recorded`` stays as it is

    def list_runs(self, kind: Optional[str] = None, method: Optional[str] = None,
                  clip_hash: Optional[str] = None, seed: Optional[int] = None,
                  finished: Optional[bool] = None, parent_run: Optional[str] = None,
                  since: Optional[float] = None, text: Optional[str] = None,
                  limit: int = 200) -> list[Run]:
        """Runs newest first, filtered (all filters AND-ed); each with its per-video metrics."""
        conds = [("kind=?", kind), ("json_extract(config, '$.method')=?", method),
                 ("clip_hash=?", clip_hash), ("seed=?", seed), ("parent_run=?", parent_run),
                 ("created>=?", since), ("(label || ' ' || config) LIKE ?",
                                         None if text is None else f"%{text}%")]
        where, args = _where(conds)
        if finished is not None:
            where += (" AND " if where else " WHERE ") + (
                "finished IS NOT NULL" if finished else "finished IS NULL")
        rows = self._q(f"SELECT * FROM runs{where} ORDER BY created DESC LIMIT ?",
                       (*args, limit))
        runs = [_run(r) for r in rows]
        vm = self.video_metrics([r.id for r in runs])
        for r in runs:
            r.metrics = vm.get(r.id, {})
            r.status = self.run_status(r)
        return runs

    def runs_json(self, runs: Sequence[Run]) -> list[dict]:
        """One plain object per run (``vcstudio runs --json``): id, kind, method, status,
        run_dir (absolute), config, and what else the record holds."""
        out = []
        for r in runs:
            out.append({"id": r.id, "kind": r.kind, "method": r.method,
                        "status": r.status or self.run_status(r),
                        "run_dir": str(self.abspath(r.run_dir)), "config": r.config,
                        "seed": r.seed, "label": r.label, "job_id": r.job_id,
                        "parent_run": r.parent_run, "clip_hash": r.clip_hash,
                        "device": r.device, "created": r.created, "finished": r.finished,
                        "metrics": r.metrics})
        return out

    # -- metrics --------------------------------------------------------------------------
    def add_frame_metrics(self, run_id: str, metric: str, values: Iterable[float],
                          model: str = "", start: int = 0) -> None:
        """Per-frame values (frame = start, start+1, ...); re-adding a frame replaces it, so a
        streamed metric can be written as frames arrive."""
        # NaN means "no value here" (frame 0 of a pair metric): such frames get no row
        rows = [(run_id, metric, start + i, float(v), model) for i, v in enumerate(values)
                if math.isfinite(float(v))]
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO frame_metrics VALUES (?,?,?,?,?)", rows)

    def add_video_metrics(self, run_id: str, metrics: dict[str, float], model: str = "") -> None:
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO video_metrics VALUES (?,?,?,?)",
                           [(run_id, k, float(v), model) for k, v in metrics.items()
                            if math.isfinite(float(v))])

    def frame_metrics(self, run_id: str) -> dict[str, list[float]]:
        """{metric (model-qualified when a model is named): values in frame order}; a frame
        with no value (frame 0 of a pair metric) reads as NaN."""
        rows = self._q("SELECT metric, model, frame, value FROM frame_metrics WHERE run_id=? "
                       "ORDER BY metric, model, frame", (run_id,))
        out: dict[str, list[float]] = {}
        for r in rows:
            vals = out.setdefault(_mname(r["metric"], r["model"]), [])
            vals.extend([math.nan] * (r["frame"] - len(vals)))  # frames without a value
            vals.append(r["value"])
        return out

    def video_metrics(self, run_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        if not run_ids:
            return {}
        marks = ",".join("?" * len(run_ids))
        rows = self._q(f"SELECT * FROM video_metrics WHERE run_id IN ({marks})", tuple(run_ids))
        out: dict[str, dict[str, float]] = {r: {} for r in run_ids}
        for r in rows:
            out[r["run_id"]][_mname(r["metric"], r["model"])] = r["value"]
        return out

    def metrics_table(self, run_ids: Sequence[str]) -> tuple[list[str], list[list]]:
        """(header, rows) for the Compare tab: one row per run with its label, method, seed and
        per-video metrics; metrics a run lacks are None."""
        runs = [self.run(r) for r in run_ids]
        vm = self.video_metrics(list(run_ids))
        names = sorted({m for d in vm.values() for m in d})
        header = ["run", "label", "kind", "method", "seed", *names]
        rows = [[r.id, r.label, r.kind, r.method, r.seed, *[vm[r.id].get(m) for m in names]]
                for r in runs]
        return header, rows

    def export_csv(self, run_ids: Sequence[str], path: Optional[str | Path] = None,
                   per_frame: bool = False) -> str:
        """Per-video table (or the long per-frame table) as CSV text; written atomically to
        ``path`` when given."""
        buf = io.StringIO()
        w = csv.writer(buf)
        if per_frame:
            w.writerow(["run", "metric", "model", "frame", "value"])
            marks = ",".join("?" * len(run_ids))
            for r in self._q(f"SELECT * FROM frame_metrics WHERE run_id IN ({marks}) "
                             "ORDER BY run_id, metric, model, frame", tuple(run_ids)):
                w.writerow([r["run_id"], r["metric"], r["model"], r["frame"], r["value"]])
        else:
            header, rows = self.metrics_table(run_ids)
            w.writerow(header)
            w.writerows([["" if v is None else v for v in row] for row in rows])
        text = buf.getvalue()
        if path is not None:
            atomic_write_bytes(path, text.encode())
        return text

    def export_json(self, run_ids: Sequence[str], path: Optional[str | Path] = None) -> dict:
        """Everything about the runs: record, config, per-video and per-frame metrics,
        artifacts."""
        vm = self.video_metrics(list(run_ids))
        out = {"schema": SCHEMA_VERSION, "runs": []}
        for rid in run_ids:
            r = self.run(rid)
            out["runs"].append({
                "id": r.id, "kind": r.kind, "label": r.label, "config": r.config,
                "seed": r.seed, "versions": r.versions, "device": r.device,
                "clip_hash": r.clip_hash, "parent_run": r.parent_run, "created": r.created,
                "finished": r.finished, "video_metrics": vm.get(rid, {}),
                "frame_metrics": self.frame_metrics(rid),
                "artifacts": [{"kind": k, "path": p} for k, p in self.artifacts(rid)]})
        if path is not None:
            atomic_write_bytes(path, json.dumps(out, indent=1).encode())
        return out

    # -- artifacts ------------------------------------------------------------------------
    def artifact_target(self, run_id: str, name: str) -> Path:
        """Absolute path of artifact ``name`` inside the run's folder (a plain file name)."""
        if not _SAFE_NAME.match(name) or name.startswith(".tmp"):
            raise InputError(f"Artifact name {name!r} must be a plain file name "
                             "(letters, digits, '.', '_', '-').")
        return self.run_dir(run_id) / name

    def write_artifact(self, run_id: str, kind: str, name: str,
                       writer: Callable[[Path], Any]) -> Path:
        """``writer(tmp_path)`` writes the file (the temp path keeps ``name``'s suffix, so
        imageio/safetensors pick the format); then it is renamed into place and recorded."""
        if kind not in ARTIFACT_KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}")
        target = self.artifact_target(run_id, name)
        with atomic_path(target) as tmp:
            writer(tmp)
        self.add_artifact(run_id, kind, target)
        return target

    def write_artifact_bytes(self, run_id: str, kind: str, name: str, data: bytes) -> Path:
        return self.write_artifact(run_id, kind, name, lambda p: p.write_bytes(data))

    def write_artifact_json(self, run_id: str, name: str, obj: Any) -> Path:
        data = json.dumps(to_dict(obj), indent=1).encode()
        return self.write_artifact_bytes(run_id, "json", name, data)

    def add_artifact(self, run_id: str, kind: str, path: str | Path) -> str:
        """Record a file (written atomically by the caller): relative to the data folder, or
        by its absolute path when the run lives elsewhere (``--out``, cluster storage)."""
        if kind not in ARTIFACT_KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}")
        p = Path(path)
        rel = self.rel_path(p if p.is_absolute() else self.data_dir / p)
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO artifacts VALUES (?,?,?,?)",
                       (run_id, kind, rel, time.time()))
        return rel

    def artifacts(self, run_id: str, kind: Optional[str] = None) -> list[tuple[str, str]]:
        """[(kind, path relative to the data folder)], oldest first."""
        where, args = _where([("run_id=?", run_id), ("kind=?", kind)])
        return [(r["kind"], r["path"]) for r in
                self._q(f"SELECT kind, path FROM artifacts{where} ORDER BY created", args)]

    def artifact_abspath(self, rel: str) -> Path:
        return self.abspath(rel)


# ----------------------------------------------------------------------------- helpers

# Owners (Store instances) open in this process: a job of this pid whose owner is not here
# belongs to a Store that was closed or dropped without closing, i.e. it is orphaned.
_live_owners: set[str] = set()


def _owner_alive(owner: Optional[str]) -> bool:
    if not owner:
        return False  # jobs from a v1 store have no owner: nobody can still be running them
    try:
        host, pid_s, _ = owner.split(":")
        pid = int(pid_s)
    except ValueError:
        return False
    if host != socket.gethostname():
        return True  # cannot tell; a shared network folder is not ours to clean
    if pid == os.getpid():
        return owner in _live_owners
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _where(conds: list[tuple[str, Any]]) -> tuple[str, list]:
    parts, args = [], []
    for sql, val in conds:
        if val is not None:
            parts.append(sql)
            args.append(val)
    return ((" WHERE " + " AND ".join(parts)) if parts else ""), args


def _mname(metric: str, model: str) -> str:
    return f"{metric}[{model}]" if model else metric


def _job(r: sqlite3.Row) -> Job:
    return Job(id=r["id"], kind=r["kind"], status=r["status"], session_id=r["session_id"],
               created=r["created"], updated=r["updated"], progress=r["progress"],
               step=r["step"], total=r["total"], message=r["message"], error=r["error"],
               run_id=r["run_id"], owner=r["owner"], params=json.loads(r["params"] or "{}"),
               checkpoint=r["checkpoint"], resumed_by=r["resumed_by"])


def _run(r: sqlite3.Row) -> Run:
    return Run(id=r["id"], kind=r["kind"], config=json.loads(r["config"] or "{}"),
               seed=r["seed"], versions=json.loads(r["versions"] or "{}"), device=r["device"],
               clip_hash=r["clip_hash"], run_dir=r["run_dir"], parent_run=r["parent_run"],
               created=r["created"], finished=r["finished"], label=r["label"],
               job_id=r["job_id"])
