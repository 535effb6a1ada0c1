"""Session manager: per-browser-session folders, one lock per device, the job runner, the
process-wide model cache and the run store, all owned by one :class:`Studio`.

What ``gr.State`` holds is a session id (a string), never tensors. The Studio is handed a job
registry when it is built (``vcstudio.jobs.REGISTRY``: name -> :class:`JobSpec`, a config
dataclass + ``run(cfg, ctx)``); this module imports no job. :meth:`Studio.submit` is the one way
to run a job, from the UI, the CLI (:meth:`Studio.run` = submit + wait, same recording), the API
and the sweep: it validates the config, records the job with its full config, and runs it on a
worker thread under its device's lock, so two sessions' jobs queue instead of colliding on one
GPU. The job gets a :class:`JobContext` (progress events, cancel token, device, model cache,
store, run-folder helpers, checkpoints) and what it raises becomes a job status (``VcsError`` ->
failed with its message, out-of-memory -> :class:`OutOfMemoryError` with a suggestion,
``CancelledError`` -> cancelled; a result that says ``stopped`` -> stopped): the server keeps
working after any of them.

:class:`DetachedContext` is the same context without a store, for a job body that runs where the
store must not be written (a Ray worker of a sweep): it keeps what the job would have recorded,
and the driver's :meth:`Studio.replay` writes it into the store.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import logging
import os
import queue
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from .config import Limits, from_dict, to_dict
from .errors import CancelledError, InputError, OutOfMemoryError, VcsError
from .memory import release_freed_host_memory
from .models.cache import ModelCache, default_cache
from .progress import CancelToken, Event
from .io.uploads import store_upload
from .store import Store, default_data_dir

log = logging.getLogger(__name__)

_SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
_END = object()  # end-of-stream marker for progress subscribers


# ----------------------------------------------------------------------------- sessions

@dataclass(frozen=True)
class Session:
    """One visitor's session: the secret that opens it, its public owner id and its private
    folder (resolved, absolute).

    ``id`` is the credential: the random secret only the visitor's own browser (or API client)
    holds, presented as the ``session`` of every call. It is never written into a path, a URL,
    a file, the store or a log (it is left out of ``repr``). ``owner`` is its public name, a
    one-way hash of the secret: session folders, store rows and run paths carry only this, and
    knowing it opens nothing (:func:`session_owner`)."""

    id: str = field(repr=False)
    folder: Path
    owner: str = ""

    @property
    def uploads(self) -> Path:
        return self.folder / "uploads"

    @property
    def outputs(self) -> Path:
        return self.folder / "outputs"


def session_owner(secret: str) -> str:
    """The public id of the session ``secret`` opens: a one-way hash, so a stranger who reads
    it (in a run folder's path, in the store) cannot present it as the secret."""
    return hashlib.sha256(b"vcstudio-session\0" + secret.encode()).hexdigest()[:32]


def safe_path(session: Session, user_path: str | os.PathLike, must_exist: bool = False) -> Path:
    """Resolve ``user_path`` (relative to the session folder, or absolute inside it) and refuse
    anything that lands outside the folder: ``..`` segments, other absolute paths, and symlinks
    whose target leaves the folder (symlinks are resolved before the check)."""
    raw = os.fspath(user_path)
    if not raw or "\x00" in raw:
        raise InputError("That file path is empty or malformed; pick the file again.")
    root = session.folder.resolve()
    p = Path(raw).expanduser() if raw.startswith("~") else Path(raw)
    candidate = p if p.is_absolute() else root / p
    resolved = candidate.resolve(strict=False)
    if resolved != root and not resolved.is_relative_to(root):
        raise InputError(f"The path {raw!r} is outside your session's folder; only files you "
                         "uploaded or generated in this session can be used.")
    if must_exist and not resolved.exists():
        raise InputError(f"{raw!r} does not exist in your session's folder; upload it again.")
    return resolved


# ----------------------------------------------------------------------------- device lock

class DeviceLock:
    """The lock of one device: a ``threading.Lock`` served in arrival order (Python's own lock
    is not fair, and users waiting in a queue expect first come, first served). A waiter whose
    job is cancelled leaves the queue at once instead of waiting its turn."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()  # the mutual exclusion itself
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()

    def acquire(self, cancel: Optional[CancelToken] = None, poll_s: float = 0.05) -> None:
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or self._lock.locked():
                    if cancel is not None and cancel.cancelled:
                        raise CancelledError("Cancelled while waiting for the device.")
                    self._cond.wait(poll_s)
                self._lock.acquire()
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self._lock.release()
            self._cond.notify_all()

    def locked(self) -> bool:
        return self._lock.locked()

    @property
    def waiting(self) -> int:
        """How many jobs wait for this device (the UI shows "n jobs ahead of you")."""
        with self._cond:
            return len(self._queue)

    def __enter__(self) -> "DeviceLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def device_key(device: Any = None) -> str:
    """Canonical device name: 'cuda' -> 'cuda:<current index>', so one GPU has one lock."""
    import torch

    from .device import pick_device

    d = pick_device(str(device) if device is not None else None)
    if d.type == "cuda" and d.index is None:
        d = torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
    return str(d)


# ----------------------------------------------------------------------------- jobs

@dataclass
class JobOutcome:
    job_id: str
    status: str  # queued | running | done | failed | cancelled | interrupted | stopped
    result: Any = None
    error: Optional[BaseException] = None
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled", "stopped")


@dataclass(frozen=True)
class JobSpec:
    """One job of the registry: its config dataclass and ``run(cfg, ctx)``.

    ``kind`` is the run store's job kind (default: the name). ``validate(cfg, limits)`` raises a
    one-line InputError for a config that must not start (out-of-range numbers, empty prompts).
    ``secrets`` are config fields never written to the store (a Hub token). ``stoppable``: the
    job polls ``ctx.cancel`` itself and ends normally with a result whose ``stopped`` is true
    (a tune keeps its checkpoint as a usable delta); other jobs stop at their next progress
    event with CancelledError. ``resumable``: ``vcstudio resume`` may continue it. ``gpu``: it
    runs on the device (on ZeroGPU each stretch is a time-limited ``spaces.GPU`` call, sized by
    ``estimate(cfg, device)`` -> ``{"seconds", ...}``; see :mod:`vcstudio.zerogpu`)."""

    name: str
    config: type
    run: Callable[[Any, Any], Any]
    kind: str = ""
    validate: Optional[Callable[[Any, Limits], None]] = None
    secrets: tuple[str, ...] = ()
    stoppable: bool = False
    resumable: bool = False
    gpu: bool = False
    estimate: Optional[Callable[..., dict]] = None

    @property
    def store_kind(self) -> str:
        return self.kind or self.name

    def load(self, cfg: Any) -> Any:
        """A config instance from an instance, a plain dict (YAML/JSON) or None (defaults)."""
        if cfg is None:
            return self.config()
        if isinstance(cfg, dict):
            return from_dict(self.config, cfg)
        if not isinstance(cfg, self.config):
            raise TypeError(f"job {self.name!r} takes a {self.config.__name__}, "
                            f"got {type(cfg).__name__}")
        return cfg

    def params(self, cfg: Any) -> dict:
        """The config as recorded in the store (secrets left out)."""
        d = to_dict(cfg)
        for k in self.secrets:
            d.pop(k, None)
        return d


@dataclass
class _Handle:
    id: str
    session_id: Optional[str]  # the session's public owner id
    kind: str
    device: str
    out: Optional[str] = None
    stoppable: bool = False
    cancel: CancelToken = field(default_factory=CancelToken)
    done: threading.Event = field(default_factory=threading.Event)
    status: str = "queued"
    result: Any = None
    error: Optional[BaseException] = None
    last_event: Optional[Event] = None
    subscribers: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: Optional[threading.Thread] = None
    session: Optional[Session] = None


class _RunFolders:
    """Run-folder helpers shared by both contexts."""

    out: Optional[str]
    session: Optional[Session]
    data_dir: Path

    def run_folder(self, prefix: str = "run") -> Path:
        """Where this job writes its run: the ``out`` it was submitted with (absolute), else
        a new folder in the session's outputs, else in the data folder's ``runs/``."""
        if self.out:
            p = Path(self.out).expanduser()
            return (p if p.is_absolute() else Path.cwd() / p).resolve()
        root = self.session.outputs if self.session is not None else self.data_dir / "runs"
        root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return Path(tempfile.mkdtemp(prefix=f"{prefix}-{stamp}-", dir=root)).resolve()


class JobContext(_RunFolders):
    """What a job's ``run(cfg, ctx)`` receives. Call it with an :class:`Event` per step (it is
    the ``progress`` the pipelines take): each call streams the event to subscribers, records
    it in the run store (events with metrics, stage changes and the last step always; plain
    ticks at most every ``record_every_s``), then checks the cancel token, so a job stops at its
    next reported step even if it never calls ``cancel.check()`` itself (a stoppable job polls
    the token and stops on its own terms instead).

    Recording: :meth:`open_run` registers the job's run folder (any folder: ``--out`` runs
    outside the data folder are recorded by absolute path), :meth:`set_checkpoint` its latest
    checkpoint, :meth:`add_metrics` / :meth:`add_artifact` / :meth:`finish_run` the results."""

    record_every_s = 0.5

    def __init__(self, studio: "Studio", handle: _Handle) -> None:
        self._studio = studio
        self._h = handle
        self._last_record = 0.0
        self._last_stage: Optional[str] = None
        self.out = handle.out
        self.session = handle.session
        self.data_dir = studio.data_dir

    @property
    def job_id(self) -> str:
        return self._h.id

    @property
    def store(self) -> Store:
        return self._studio.store

    @property
    def cache(self) -> ModelCache:
        return self._studio.cache

    @property
    def device(self) -> str:
        return self._h.device

    @property
    def cancel(self) -> CancelToken:
        return self._h.cancel

    @property
    def limits(self) -> Limits:
        return self._studio.limits

    @property
    def public(self) -> bool:
        return self._studio.public

    @property
    def session_id(self) -> Optional[str]:
        """The session's public owner id (what the store records), not its secret."""
        return self._h.session_id

    def __call__(self, ev: Event) -> None:
        self._studio._publish(self._h, ev)
        now = time.monotonic()
        if (ev.metrics or ev.stage != self._last_stage or ev.step >= ev.total
                or now - self._last_record >= self.record_every_s):
            self.store.add_event(self._h.id, ev.step, ev.total, ev.stage, ev.message,
                                 ev.metrics)
            self._last_record, self._last_stage = now, ev.stage
        if not self._h.stoppable:
            self._h.cancel.check()

    # -- recording ------------------------------------------------------------------------
    def open_run(self, kind: str, run_dir: str | os.PathLike, config: Any = None, *,
                 seed: Optional[int] = None, label: str = "", parent: Optional[str] = None,
                 clip_hash: Optional[str] = None, reuse: bool = True) -> str:
        """The run id of ``run_dir``: the run already recorded there (a resumed tune, a
        re-run sweep cell) or, with ``reuse=False`` or none there, a new one (edits share
        ``RUN/edits``, each its own run); the job's first run becomes the job's run."""
        st = self.store
        run = st.run_by_dir(run_dir, kind) if reuse else None
        if run is None:
            run = st.create_run(kind, config, seed=seed, device=self.device,
                                clip_hash=clip_hash, parent_run=parent, label=label,
                                run_dir=run_dir, job_id=self.job_id)
        else:
            st.update_run(run.id, config=config, job_id=self.job_id, finished=False)
        if st.job(self.job_id).run_id is None:
            st.update_job(self.job_id, run_id=run.id)
        return run.id

    def find_run(self, run_dir: str | os.PathLike, kind: Optional[str] = None) -> Optional[str]:
        """The id of the run recorded at ``run_dir`` (e.g. an edit's tuned run), or None."""
        run = self.store.run_by_dir(run_dir, kind)
        return run.id if run is not None else None

    def set_run(self, run_id: str) -> None:
        """Link the run this job produces (the Compare tab re-opens it)."""
        self.store.update_job(self._h.id, run_id=run_id)

    def set_checkpoint(self, path: str | os.PathLike, step: Optional[int] = None) -> None:
        """Record the latest checkpoint (relative to the data folder, or absolute outside it)
        so ``vcstudio resume`` and a restarted app can continue from it."""
        self.store.update_job(self._h.id, checkpoint=self.store.rel_path(path))

    def add_metrics(self, run_id: str, video: Optional[Mapping[str, float]] = None,
                    frames: Optional[Mapping[str, Sequence[float]]] = None) -> None:
        if video:
            self.store.add_video_metrics(run_id, dict(video))
        for name, values in (frames or {}).items():
            self.store.add_frame_metrics(run_id, name, values)

    def add_artifact(self, run_id: str, kind: str, path: str | os.PathLike) -> None:
        self.store.add_artifact(run_id, kind, path)

    def finish_run(self, run_id: str) -> None:
        self.store.finish_run(run_id)

    def replay(self, records: Sequence[tuple], parent: Optional[str] = None) -> dict[str, str]:
        """Record what a :class:`DetachedContext` kept (a sweep cell) as this job's runs."""
        return self._studio.replay(records, self.job_id, parent=parent, checkpoints=False)


class DetachedContext(_RunFolders):
    """A job context with no store (a sweep cell on a Ray worker: SQLite is written by the
    driver only). Progress goes to ``progress``; what the job would record is kept in
    ``records`` (plain, picklable tuples) for :meth:`Studio.replay`."""

    def __init__(self, out: str | os.PathLike, *, device: str = "cpu",
                 cache: Optional[ModelCache] = None, cancel: Optional[CancelToken] = None,
                 progress: Optional[Callable[[Event], Any]] = None,
                 limits: Optional[Limits] = None, stoppable: bool = False) -> None:
        self.out = str(out)
        self.stoppable = stoppable  # the job polls the token itself (a tune), as JobContext
        self.session = None
        self.data_dir = Path(out)
        self.device = device
        self.cache = cache if cache is not None else default_cache
        self.cancel = cancel or CancelToken()
        self.limits = limits or Limits()
        self.public = False
        self.session_id = None
        self.job_id = None
        self.store = None
        self.records: list[tuple] = []
        self._progress = progress
        self._runs = 0

    def __call__(self, ev: Event) -> None:
        if self._progress is not None:
            self._progress(dataclasses.replace(ev, preview=None))
        if not self.stoppable:
            self.cancel.check()

    def open_run(self, kind: str, run_dir, config: Any = None, *, seed=None, label: str = "",
                 parent: Optional[str] = None, clip_hash: Optional[str] = None,
                 reuse: bool = True) -> str:
        self._runs += 1
        local = f"local-{self._runs}"
        cfg = to_dict(config) if dataclasses.is_dataclass(config) else config
        self.records.append(("open_run", local, kind, str(Path(run_dir).resolve()), cfg, seed,
                             label, parent, clip_hash, self.device, reuse))
        return local

    def find_run(self, run_dir, kind: Optional[str] = None) -> Optional[str]:
        want = str(Path(run_dir).resolve())
        for rec in reversed(self.records):
            if rec[0] == "open_run" and rec[3] == want and kind in (None, rec[2]):
                return rec[1]
        return None

    def set_run(self, run_id: str) -> None:
        pass

    def set_checkpoint(self, path, step: Optional[int] = None) -> None:
        self.records.append(("checkpoint", str(Path(path).resolve())))

    def add_metrics(self, run_id: str, video=None, frames=None) -> None:
        self.records.append(("metrics", run_id, dict(video or {}),
                             {k: [float(v) for v in vals] for k, vals in (frames or {}).items()}))

    def add_artifact(self, run_id: str, kind: str, path) -> None:
        self.records.append(("artifact", run_id, kind, str(Path(path).resolve())))

    def finish_run(self, run_id: str) -> None:
        self.records.append(("finish", run_id))


def _is_oom(e: BaseException) -> bool:
    """A framework's out-of-memory error (torch's, or the allocator's RuntimeError)."""
    if isinstance(e, VcsError):
        return False
    if isinstance(e, MemoryError):
        return True
    torch = sys.modules.get("torch")
    oom_cls = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom_cls is not None and isinstance(e, oom_cls):
        return True
    msg = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in msg
                                            or "can't allocate memory" in msg)


# ----------------------------------------------------------------------------- the studio

class Studio:
    """Process-wide owner of the run store, the model cache, the device locks, the sessions
    and the jobs. Create one per process (:func:`default`) or one per test."""

    keep_finished = 32  # finished job handles (with their results) kept in memory

    def __init__(self, data_dir: str | Path | None = None, *, limits: Optional[Limits] = None,
                 cache: Optional[ModelCache] = None, store: Optional[Store] = None,
                 upload_roots: Optional[Sequence[str | Path]] = None,
                 device: Any = None, public: Optional[bool] = None,
                 jobs: Optional[Mapping[str, JobSpec]] = None) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        # the job registry (vcstudio.jobs.REGISTRY); handed in so this module imports no job
        self.jobs: Mapping[str, JobSpec] = jobs if jobs is not None else {}
        # A public Space (SPACE_ID set) serves strangers: no server paths typed into the page,
        # and each visitor sees only their own past runs. A desktop studio shares them.
        self.public = bool(os.environ.get("SPACE_ID")) if public is None else public
        self.store = store if store is not None else Store(self.data_dir)
        self.cache = cache if cache is not None else default_cache
        if limits is None:
            from .space import safe_limits

            limits = safe_limits()
        self.limits = limits
        self.default_device = device
        # Uploads are copied only from these folders (Gradio's upload cache by default): a path
        # a client names is never read from anywhere else.
        if upload_roots is None:
            upload_roots = [os.environ.get("GRADIO_TEMP_DIR")
                            or Path(tempfile.gettempdir()) / "gradio"]
        self.upload_roots = [Path(r).resolve() for r in upload_roots]
        self.sessions_dir = self.data_dir / "sessions"
        self.sessions_dir.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, DeviceLock] = {}
        self._jobs: dict[str, _Handle] = {}
        self._mu = threading.Lock()
        self._closing = threading.Event()

    # -- sessions -------------------------------------------------------------------------
    def new_session(self, account: Optional[str] = None) -> Session:
        """A fresh session with a random secret; or, for a visitor signed in as ``account``,
        that account's session (its secret derived from the studio's key: the same in every
        browser the account signs in from, so their runs follow the account)."""
        secret = self.account_secret(account) if account else secrets.token_hex(16)
        owner = session_owner(secret)
        folder = self.sessions_dir / owner
        (folder / "uploads").mkdir(parents=True, exist_ok=True)
        (folder / "outputs").mkdir(exist_ok=True)
        return Session(secret, folder.resolve(), owner)

    def session(self, session_id: str) -> Session:
        """The session whose secret is ``session_id``; a forged or expired one is an
        InputError. (A session's public owner id, read from a path or the store, is not its
        secret: presented here it opens nothing.)"""
        if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
            raise InputError("This page's session is not valid; reload the page.")
        owner = session_owner(session_id)
        folder = self.sessions_dir / owner
        if not folder.is_dir():
            raise InputError("This page's session has expired; reload the page.")
        return Session(session_id, folder.resolve(), owner)

    def owner(self, session_id: Optional[str]) -> Optional[str]:
        """The public owner id of a session secret (None for none or an invalid one): what
        the store records as a job's ``session_id``."""
        if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
            return None
        return session_owner(session_id)

    def account_secret(self, account: str) -> str:
        """The session secret of a signed-in account: keyed with the studio's own random key,
        so nobody without the key can derive it from the account's (public) name."""
        return hmac.new(self._key(), b"account\0" + account.encode(), "sha256").hexdigest()[:32]

    def _key(self) -> bytes:
        """The studio's random key: a file in the data folder (mode 0600), which no URL serves."""
        path = self.data_dir / "studio.key"
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        return path.read_bytes()

    def safe_path(self, session_id: str, user_path: str | os.PathLike,
                  must_exist: bool = False) -> Path:
        """A path a page or API client names, resolved: inside the caller's session folder.
        A desktop studio's owner owns every run, from any tab or the CLI, so there it may
        also be a run the store records or anything under the data folder; a public studio's
        visitor reaches only their own session's folder."""
        sess = self.session(session_id)
        try:
            return safe_path(sess, user_path, must_exist)
        except InputError:
            raw = os.fspath(user_path)
            if self.public or not raw or "\x00" in raw:
                raise
            p = Path(raw).expanduser().resolve()
            if not (p.is_relative_to(self.data_dir.resolve())
                    or self.store.run_by_dir(p) is not None):
                raise
            if must_exist and not p.exists():
                raise InputError(f"{os.fspath(user_path)!r} does not exist (any more).") from None
            return p

    def server_path(self, what: str, user_path: str) -> str:
        """A model/checkpoint path typed into the page: a desktop studio reads it; a public
        one refuses local paths (only hub ids and its own caches)."""
        if user_path and self.public and (Path(user_path).exists()
                                          or user_path.startswith(("/", ".", "~"))):
            raise InputError(f"This public studio does not read server paths; give the {what} "
                             "as a Hub id.")
        return user_path

    def save_upload(self, session_id: str, src: str | os.PathLike | bytes,
                    name: Optional[str] = None,
                    allowed_suffixes: Optional[Sequence[str]] = None) -> Path:
        """Copy an upload into the session's ``uploads/`` folder (atomically, in chunks, stopping
        at ``limits.max_upload_mb``). ``src`` is the file Gradio saved (it must lie under one of
        ``upload_roots``) or the raw bytes; ``name`` is the client's file name, used only for
        its cleaned stem and suffix."""
        sess = self.session(session_id)
        limit = int(self.limits.max_upload_mb * 2**20)
        if not isinstance(src, (bytes, bytearray)):
            src_path = Path(os.fspath(src)).resolve()
            if not any(src_path.is_relative_to(r) for r in self.upload_roots):
                raise InputError("That file did not come through the upload box; upload it "
                                 "again.")
            name = name or src_path.name
            src = src_path  # its size is counted while copying: it may still grow
        # one stored copy per distinct content (named by its SHA-256): a page re-reads the
        # upload on every slider change, and each read must not copy it again
        return store_upload(src, sess.uploads, limit, allowed_suffixes=allowed_suffixes,
                            name=name)

    def cleanup_sessions(self, max_age_s: float = 24 * 3600) -> list[str]:
        """Delete session folders untouched for ``max_age_s`` and with no live job."""
        now = time.time()
        with self._mu:
            busy = {h.session_id for h in self._jobs.values() if not h.done.is_set()}
        removed = []
        for folder in self.sessions_dir.iterdir():
            if (folder.is_dir() and _SESSION_ID.match(folder.name) and folder.name not in busy
                    and now - _newest_mtime(folder) > max_age_s):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
                # the run store keeps the records (metrics stay comparable) but says the files
                # are gone, so nothing offers to open, edit or resume them
                self._record_expired(folder.name)
        return removed

    def start_cleanup(self, interval_s: float, max_age_s: float,
                      also: Sequence[Callable[[float], Any]] = ()) -> threading.Thread:
        """Every ``interval_s``, delete the sessions idle for ``max_age_s`` (a public studio
        bounds its disk use so; a desktop never calls this: its owner's runs are kept), then
        call each of ``also`` with ``max_age_s`` (the UI drops its idle per-visitor state)."""
        def loop() -> None:
            while not self._closing.wait(interval_s):
                try:
                    self.cleanup_sessions(max_age_s)
                    for fn in also:
                        fn(max_age_s)
                except Exception:
                    log.exception("session cleanup failed")
                release_freed_host_memory()

        t = threading.Thread(target=loop, name="vcstudio-session-cleanup", daemon=True)
        t.start()
        return t

    def _record_expired(self, session_id: str) -> None:
        try:
            for job in self.store.jobs(session_id=session_id):
                if job.status not in ("queued", "running"):
                    self.store.update_job(job.id, status="expired")
        except Exception:
            log.exception("could not mark session %s's jobs expired", session_id)

    # -- devices --------------------------------------------------------------------------
    def device_lock(self, device: Any = None) -> DeviceLock:
        key = device_key(device if device is not None else self.default_device)
        with self._mu:
            if key not in self._locks:
                self._locks[key] = DeviceLock(key)
            return self._locks[key]

    # -- jobs -----------------------------------------------------------------------------
    def spec(self, name: str) -> JobSpec:
        try:
            return self.jobs[name]
        except KeyError:
            known = ", ".join(self.jobs) or "none: build the Studio with vcstudio.jobs.REGISTRY"
            raise InputError(f"Unknown job {name!r}; known jobs: {known}.") from None

    def submit(self, name: str, cfg: Any = None, session_id: Optional[str] = None, *,
               device: Any = None, out: str | os.PathLike | None = None,
               resume_of: Optional[str] = None) -> str:
        """Validate ``cfg`` for job ``name`` (raising at once: nothing starts), record the job
        with its full config, queue ``spec.run(cfg, ctx)`` on the device's lock and return the
        job id. ``out`` is the run folder to write (default: the session's outputs or the data
        folder); ``resume_of`` names the job this one continues."""
        spec = self.spec(name)
        cfg = spec.load(cfg)
        if spec.validate is not None:
            spec.validate(cfg, self.limits)
        session = self.session(session_id) if session_id is not None else None
        lock = self.device_lock(device)
        params = {"config": spec.params(cfg), "out": str(out) if out else None,
                  "device": str(device) if device is not None else None}
        # the store records the session's public owner id, never its secret
        owner = session.owner if session is not None else None
        job_id = self.store.add_job(spec.store_kind, owner, params=params)
        if resume_of is not None:
            self.store.mark_resumed(resume_of, job_id)
        h = _Handle(job_id, owner, spec.store_kind, lock.name,
                    out=str(out) if out else None, stoppable=spec.stoppable, session=session)
        h.thread = threading.Thread(target=self._work, args=(h, lock, spec, cfg),
                                    name=f"vcstudio-{name}-{job_id[-8:]}", daemon=True)
        with self._mu:
            self._jobs[job_id] = h
            self._prune()
        h.thread.start()
        return job_id

    def run(self, name: str, cfg: Any = None, session_id: Optional[str] = None, *,
            progress: Optional[Callable[[Event], Any]] = None, device: Any = None,
            out: str | os.PathLike | None = None, resume_of: Optional[str] = None) -> Any:
        """Submit and wait (the CLI): events go to ``progress`` (tqdm), the result is returned
        and what the job failed with is raised. Ctrl-C asks the job to stop and waits for it
        (a tune keeps its checkpoint), then re-raises KeyboardInterrupt."""
        job = self.submit(name, cfg, session_id, device=device, out=out, resume_of=resume_of)
        interrupted = False
        while True:
            try:
                for ev in self.events(job):
                    if progress is not None:
                        progress(ev)
                break
            except KeyboardInterrupt:
                if interrupted:  # a second Ctrl-C: stop waiting
                    raise
                interrupted = True
                self.cancel(job)
        if interrupted and self.wait(job).status == "cancelled":
            raise KeyboardInterrupt  # a stopped tune or a job that finished anyway returns
        return self.result(job)

    def replay(self, records: Sequence[tuple], job_id: Optional[str] = None,
               parent: Optional[str] = None, checkpoints: bool = True) -> dict[str, str]:
        """Write what a :class:`DetachedContext` kept into the store (the sweep driver merges
        its cells this way); returns {local run id: store run id}. A run already recorded at
        the same folder is reused."""
        ids: dict[str, str] = {}
        st = self.store
        for rec in records:
            what = rec[0]
            if what == "open_run":
                _, local, kind, run_dir, cfg, seed, label, par, clip, dev, reuse = rec
                run = st.run_by_dir(run_dir, kind) if reuse else None
                par = ids.get(par, par) if par else parent
                if run is None:
                    run = st.create_run(kind, cfg, seed=seed, device=dev, clip_hash=clip,
                                        parent_run=par, label=label, run_dir=run_dir,
                                        job_id=job_id)
                else:
                    st.update_run(run.id, config=cfg, job_id=job_id, finished=False)
                ids[local] = run.id
            elif what == "checkpoint":
                if job_id is not None and checkpoints:
                    st.update_job(job_id, checkpoint=st.rel_path(rec[1]))
            elif what == "metrics":
                _, local, video, frames = rec
                if video:
                    st.add_video_metrics(ids[local], video)
                for k, vals in frames.items():
                    st.add_frame_metrics(ids[local], k, vals)
            elif what == "artifact":
                st.add_artifact(ids[rec[1]], rec[2], rec[3])
            elif what == "finish":
                st.finish_run(ids[rec[1]])
        return ids

    def _work(self, h: _Handle, lock: DeviceLock, spec: JobSpec, cfg: Any) -> None:
        from . import zerogpu  # imports `spaces` only where ZeroGPU is on

        ctx = JobContext(self, h)
        try:
            lock.acquire(cancel=h.cancel)
            try:
                h.cancel.check()  # cancelled right as the lock came free
                h.status = "running"
                self._record(h.id, status="running")
                if spec.gpu and zerogpu.active():
                    h.result = zerogpu.run_job(self, spec, cfg, ctx, DetachedContext)
                else:
                    h.result = spec.run(cfg, ctx)
            except Exception as e:
                if (isinstance(e, OutOfMemoryError) and not getattr(e, "refused", False)) \
                        or _is_oom(e):
                    # free what we can while still holding the device, so the next job starts
                    # clean; cached models are reloaded on demand (a job refused by its memory
                    # estimate allocated nothing: keep the cache)
                    self.cache.clear()
                    if not isinstance(e, OutOfMemoryError):
                        from .memory import oom_message

                        raise OutOfMemoryError(oom_message(e, h.kind, h.device)) from e
                raise
            finally:
                lock.release()
            stopped = _attr(h.result, "stopped")
            h.status = "stopped" if stopped else "done"
            self._record(h.id, status=h.status, progress=None if stopped else 1.0,
                         run_id=_run_id_of(h.result),
                         message=_attr(h.result, "message") if stopped else None)
        except CancelledError as e:
            h.status, h.error = "cancelled", e
            self._record(h.id, status="cancelled", error=str(e))
        except VcsError as e:
            h.status, h.error = "failed", e
            self._record(h.id, status="failed", error=str(e))
        except Exception as e:  # a bug: record it, keep serving
            log.exception("job %s (%s) crashed", h.id, h.kind)
            h.status, h.error = "failed", e
            self._record(h.id, status="failed",
                         error=f"Internal error ({type(e).__name__}: {e}). This is a "
                               "bug in vcstudio; please report it with the run's log.")
        finally:
            with h.lock:
                h.done.set()
                subs, h.subscribers = h.subscribers, []
            for q in subs:
                _put_latest(q, _END)
            release_freed_host_memory()  # the job's arrays are freed: return their pages

    def _record(self, job_id: str, **fields: Any) -> None:
        # a worker outliving close() must not die on the closed store; the job stays
        # 'interrupted' there, which is what it is
        try:
            self.store.update_job(job_id, **fields)
        except Exception:
            log.exception("could not record job %s: %s", job_id, fields)

    def _publish(self, h: _Handle, ev: Event) -> None:
        with h.lock:
            h.last_event = ev
            subs = list(h.subscribers)
        for q in subs:
            _put_latest(q, ev)

    def _handle(self, job_id: str) -> Optional[_Handle]:
        with self._mu:
            return self._jobs.get(job_id)

    def _prune(self) -> None:  # caller holds self._mu
        finished = [j for j, h in self._jobs.items() if h.done.is_set()]
        for j in finished[:max(0, len(finished) - self.keep_finished)]:
            del self._jobs[j]

    def cancel(self, job_id: str, session_id: Optional[str] = None) -> bool:
        """Ask a job to stop: it sees its token at its next step (or leaves the queue). An
        interrupted job from an earlier process is dismissed (marked cancelled). Returns
        whether anything was cancelled. A public studio given the caller's ``session_id``
        stops only that session's jobs (a desktop's owner owns them all)."""
        if self.public and session_id is not None:
            self.check_owner(job_id, session_id)
        h = self._handle(job_id)
        if h is not None:
            if h.done.is_set():
                return False
            h.cancel.cancel()
            return True
        job = self.store.job(job_id)
        if job.status == "interrupted":
            self.store.update_job(job_id, status="cancelled", error="Dismissed by the user.")
            return True
        return False

    def check_owner(self, job_id: str, session_id: Optional[str]) -> None:
        """An InputError unless job ``job_id`` was submitted by the session whose secret is
        ``session_id`` (its owner id, which a stranger may have read, does not pass)."""
        h = self._handle(job_id)
        try:
            owner = h.session_id if h is not None else self.store.job(job_id).session_id
        except VcsError:
            owner = None
        caller = self.owner(session_id)
        if caller is None or owner != caller:
            raise InputError("That job belongs to another visitor (or does not exist); you can "
                             "stop and resume only your own jobs.")

    def wait(self, job_id: str, timeout: Optional[float] = None) -> JobOutcome:
        """Block until the job ends (or ``timeout``); its outcome, current status if not done."""
        h = self._handle(job_id)
        if h is None:  # from an earlier process or pruned: only the record is left
            job = self.store.job(job_id)
            return JobOutcome(job_id, job.status, message=job.error or job.message)
        h.done.wait(timeout)
        msg = str(h.error) if h.error is not None else ""
        if h.status == "failed" and not isinstance(h.error, VcsError):
            msg = self.store.job(job_id).error or msg
        return JobOutcome(job_id, h.status, h.result, h.error, msg)

    def result(self, job_id: str, timeout: Optional[float] = None) -> Any:
        """The job's return value; raises what it failed with (a VcsError for user errors)."""
        out = self.wait(job_id, timeout)
        if out.status in ("done", "stopped"):
            return out.result
        if out.error is not None:
            raise out.error
        if not out.finished:
            raise TimeoutError(f"job {job_id} is still {out.status}")
        raise VcsError(out.message or f"The job ended as {out.status}.")

    def events(self, job_id: str, timeout: Optional[float] = None,
               backlog: int = 64) -> Iterator[Event]:
        """Progress events of a live job as they come (the latest one first, if any), ending
        when the job ends. A slow reader misses intermediate events, never the end: at most
        ``backlog`` unread events wait, the oldest dropped for a new one. With a
        ``timeout``, stops after that many seconds without an event.

        Subscribes at once, when called (not at the first ``next``), so a caller that does
        other work before reading loses nothing published meanwhile."""
        h = self._handle(job_id)
        if h is None:
            return iter(())
        q: queue.Queue = queue.Queue(maxsize=max(1, backlog))
        with h.lock:
            if h.last_event is not None:
                q.put(h.last_event)
            if h.done.is_set():
                q.put(_END)
            else:
                h.subscribers.append(q)
        return self._drain(h, q, timeout)

    @staticmethod
    def _drain(h, q: queue.Queue, timeout: Optional[float]) -> Iterator[Event]:
        try:
            while True:
                try:
                    item = q.get(timeout=timeout)
                except queue.Empty:
                    return
                if item is _END:
                    return
                yield item
        finally:
            with h.lock:
                if q in h.subscribers:
                    h.subscribers.remove(q)

    def queue_position(self, job_id: str) -> int:
        """0 when running or done, else how many jobs wait for the same device (incl. this)."""
        h = self._handle(job_id)
        if h is None or h.status != "queued":
            return 0
        return self.device_lock(h.device).waiting

    def close(self, timeout: float = 10.0) -> None:
        """Cancel live jobs, wait for them briefly, close the store (unfinished jobs become
        resumable)."""
        self._closing.set()
        with self._mu:
            live = [h for h in self._jobs.values() if not h.done.is_set()]
        for h in live:
            h.cancel.cancel()
        deadline = time.monotonic() + timeout
        for h in live:
            if h.thread is not None:
                h.thread.join(max(0.0, deadline - time.monotonic()))
        self.store.close()

    def __enter__(self) -> "Studio":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_default: Optional[Studio] = None
_default_mu = threading.Lock()


def default(jobs: Optional[Mapping[str, JobSpec]] = None) -> Studio:
    """The process's Studio (data folder from ``$VCSTUDIO_DATA`` or the user data dir), built
    once with the job registry it is first handed (``vcstudio.jobs.default_studio()``)."""
    global _default
    with _default_mu:
        if _default is None:
            _default = Studio(jobs=jobs)
        elif jobs is not None and not _default.jobs:
            _default.jobs = jobs
        return _default


# ----------------------------------------------------------------------------- helpers

def _put_latest(q: queue.Queue, item: Any) -> None:
    """Put without blocking; when full, drop the oldest event to make room."""
    while True:
        try:
            q.put_nowait(item)
            return
        except queue.Full:
            with contextlib.suppress(queue.Empty):
                q.get_nowait()


def _attr(result: Any, name: str) -> Any:
    return result.get(name) if isinstance(result, dict) else getattr(result, name, None)


def _run_id_of(result: Any) -> Optional[str]:
    rid = _attr(result, "run_id")
    return rid if isinstance(rid, str) else None


def _newest_mtime(folder: Path) -> float:
    newest = folder.stat().st_mtime
    for p in folder.rglob("*"):
        with contextlib.suppress(OSError):
            newest = max(newest, p.lstat().st_mtime)
    return newest
