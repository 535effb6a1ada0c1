"""Session manager: per-browser-session folders, one lock per device, the job runner, the
process-wide model cache and the run store, all owned by one :class:`Studio`.

What ``gr.State`` holds is a session id (a string), never tensors. A job is any function
``fn(*args, progress=..., cancel=..., **kwargs)``; :meth:`Studio.submit` runs it on a worker
thread under its device's lock, so two sessions' jobs queue instead of colliding on one GPU,
records it and its progress events in the run store, and turns what it raises into a job status
(``VcsError`` -> failed with its message, out-of-memory -> :class:`OutOfMemoryError` with a
suggestion, ``CancelledError`` -> cancelled): the server keeps working after any of them.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
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
from typing import Any, Callable, Iterator, Optional, Sequence

from .config import Limits, TuneConfig
from .errors import CancelledError, InputError, OutOfMemoryError, VcsError
from .models.cache import ModelCache, default_cache
from .progress import CancelToken, Event
from .store import Store, atomic_path, default_data_dir

log = logging.getLogger(__name__)

_SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_END = object()  # end-of-stream marker for progress subscribers


# ----------------------------------------------------------------------------- sessions

@dataclass(frozen=True)
class Session:
    """One browser session: its id and its private folder (resolved, absolute)."""

    id: str
    folder: Path

    @property
    def uploads(self) -> Path:
        return self.folder / "uploads"

    @property
    def outputs(self) -> Path:
        return self.folder / "outputs"


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


def _clean_name(name: str) -> str:
    base = Path(name.replace("\\", "/")).name  # drop any directory part a client sent
    stem, suffix = os.path.splitext(base)
    stem = _UNSAFE_CHARS.sub("_", stem).strip("._") or "upload"
    suffix = _UNSAFE_CHARS.sub("", suffix).lower()
    return f"{stem[:60]}{suffix[:10]}"


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
    status: str  # queued | running | done | failed | cancelled | interrupted
    result: Any = None
    error: Optional[BaseException] = None
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled")


@dataclass
class _Handle:
    id: str
    session_id: Optional[str]
    kind: str
    device: str
    cancel: CancelToken = field(default_factory=CancelToken)
    done: threading.Event = field(default_factory=threading.Event)
    status: str = "queued"
    result: Any = None
    error: Optional[BaseException] = None
    last_event: Optional[Event] = None
    subscribers: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: Optional[threading.Thread] = None


class JobContext:
    """The ``progress`` a job function receives: call it with an :class:`Event` per step.

    Each call streams the event to subscribers, records it in the run store (events with
    metrics, stage changes and the last step always; plain ticks at most every
    ``record_every_s``), then checks the cancel token, so a job stops at its next reported step
    even if it never calls ``cancel.check()`` itself."""

    record_every_s = 0.5

    def __init__(self, studio: "Studio", handle: _Handle) -> None:
        self._studio = studio
        self._h = handle
        self._last_record = 0.0
        self._last_stage: Optional[str] = None

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

    def __call__(self, ev: Event) -> None:
        self._studio._publish(self._h, ev)
        now = time.monotonic()
        if (ev.metrics or ev.stage != self._last_stage or ev.step >= ev.total
                or now - self._last_record >= self.record_every_s):
            self.store.add_event(self._h.id, ev.step, ev.total, ev.stage, ev.message,
                                 ev.metrics)
            self._last_record, self._last_stage = now, ev.stage
        self._h.cancel.check()

    def set_run(self, run_id: str) -> None:
        """Link the run this job produces (the Compare tab re-opens it)."""
        self.store.update_job(self._h.id, run_id=run_id)

    def set_checkpoint(self, path: str | os.PathLike) -> None:
        """Record the latest checkpoint (relative to the data folder) so a restart can resume."""
        p = Path(path)
        rel = p.resolve().relative_to(self.store.data_dir.resolve()) if p.is_absolute() else p
        self.store.update_job(self._h.id, checkpoint=rel.as_posix())


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
                 device: Any = None, public: Optional[bool] = None) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
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

    # -- sessions -------------------------------------------------------------------------
    def new_session(self) -> Session:
        sid = secrets.token_hex(16)
        folder = self.sessions_dir / sid
        (folder / "uploads").mkdir(parents=True)
        (folder / "outputs").mkdir()
        return Session(sid, folder.resolve())

    def session(self, session_id: str) -> Session:
        """The session with this id; a forged or expired id is an InputError."""
        if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
            raise InputError("This page's session is not valid; reload the page.")
        folder = self.sessions_dir / session_id
        if not folder.is_dir():
            raise InputError("This page's session has expired; reload the page.")
        return Session(session_id, folder.resolve())

    def safe_path(self, session_id: str, user_path: str | os.PathLike,
                  must_exist: bool = False) -> Path:
        return safe_path(self.session(session_id), user_path, must_exist)

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
        if isinstance(src, (bytes, bytearray)):
            reader = None
            name = name or "upload"
        else:
            src_path = Path(os.fspath(src)).resolve()
            if not any(src_path.is_relative_to(r) for r in self.upload_roots):
                raise InputError("That file did not come through the upload box; upload it "
                                 "again.")
            if not src_path.is_file():
                raise InputError(f"The upload {Path(src).name!r} is not a file; upload a video "
                                 "or image file.")
            reader = src_path  # its size is counted while copying: it may still grow
            name = name or src_path.name
        clean = _clean_name(name)
        suffix = Path(clean).suffix
        if allowed_suffixes is not None and suffix not in {s.lower() for s in allowed_suffixes}:
            raise InputError(f"{Path(name).name!r} is not a supported file type; use one of "
                             f"{', '.join(allowed_suffixes)}.")
        too_big = InputError(
            f"{Path(name).name!r} is larger than the {self.limits.max_upload_mb:g} MB upload "
            "limit; trim or compress the clip first.")
        dest = sess.uploads / f"{secrets.token_hex(4)}-{clean}"
        with atomic_path(dest) as tmp:
            if reader is None:
                if len(src) > limit:
                    raise too_big
                tmp.write_bytes(bytes(src))
            else:
                copied = 0
                with open(reader, "rb") as fi, open(tmp, "wb") as fo:
                    while chunk := fi.read(1 << 20):
                        copied += len(chunk)
                        if copied > limit:
                            raise too_big
                        fo.write(chunk)
        return dest

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
        return removed

    # -- devices --------------------------------------------------------------------------
    def device_lock(self, device: Any = None) -> DeviceLock:
        key = device_key(device if device is not None else self.default_device)
        with self._mu:
            if key not in self._locks:
                self._locks[key] = DeviceLock(key)
            return self._locks[key]

    # -- jobs -----------------------------------------------------------------------------
    def submit(self, session_id: Optional[str], kind: str, fn: Callable[..., Any], *args: Any,
               device: Any = None, params: Any = None, run_id: Optional[str] = None,
               resume_of: Optional[str] = None, **kwargs: Any) -> str:
        """Queue ``fn(*args, progress=JobContext, cancel=CancelToken, **kwargs)`` on the
        device's lock; return the job id at once. ``params`` (a config, JSON-able) is stored so
        an interrupted job can be resumed; ``resume_of`` names the job this one resumes."""
        if session_id is not None:
            self.session(session_id)
        lock = self.device_lock(device)
        job_id = self.store.add_job(kind, session_id, params=_jsonable(params), run_id=run_id)
        if resume_of is not None:
            self.store.mark_resumed(resume_of, job_id)
        h = _Handle(job_id, session_id, kind, lock.name)
        h.thread = threading.Thread(target=self._work, args=(h, lock, fn, args, kwargs),
                                    name=f"vcstudio-{kind}-{job_id[-8:]}", daemon=True)
        with self._mu:
            self._jobs[job_id] = h
            self._prune()
        h.thread.start()
        return job_id

    def _work(self, h: _Handle, lock: DeviceLock, fn: Callable, args: tuple,
              kwargs: dict) -> None:
        ctx = JobContext(self, h)
        try:
            lock.acquire(cancel=h.cancel)
            try:
                h.cancel.check()  # cancelled right as the lock came free
                h.status = "running"
                self._record(h.id, status="running")
                h.result = fn(*args, progress=ctx, cancel=h.cancel, **kwargs)
            except Exception as e:
                if isinstance(e, OutOfMemoryError) or _is_oom(e):
                    # free what we can while still holding the device, so the next job starts
                    # clean; cached models are reloaded on demand
                    self.cache.clear()
                    if not isinstance(e, OutOfMemoryError):
                        raise OutOfMemoryError(
                            f"The device ({h.device}) ran out of memory during this {h.kind} "
                            "job. Try fewer frames, a smaller width/height or fewer frames per "
                            "step; the memory estimate before starting shows what fits.") from e
                raise
            finally:
                lock.release()
            h.status = "done"
            run_id = _run_id_of(h.result)
            self._record(h.id, status="done", progress=1.0, run_id=run_id)
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

    def cancel(self, job_id: str) -> bool:
        """Ask a job to stop: it sees its token at its next step (or leaves the queue). An
        interrupted job from an earlier process is dismissed (marked cancelled). Returns
        whether anything was cancelled."""
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
        if out.status == "done":
            return out.result
        if out.error is not None:
            raise out.error
        if not out.finished:
            raise TimeoutError(f"job {job_id} is still {out.status}")
        raise VcsError(out.message or f"The job ended as {out.status}.")

    def events(self, job_id: str, timeout: Optional[float] = None) -> Iterator[Event]:
        """Progress events of a live job as they come (the latest one first, if any), ending
        when the job ends. A slow reader misses intermediate events, never the end. With a
        ``timeout``, stops after that many seconds without an event."""
        h = self._handle(job_id)
        if h is None:
            return
        q: queue.Queue = queue.Queue(maxsize=64)
        with h.lock:
            if h.last_event is not None:
                q.put(h.last_event)
            if h.done.is_set():
                q.put(_END)
            else:
                h.subscribers.append(q)
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


@functools.lru_cache(maxsize=1)
def default() -> Studio:
    """The process's Studio (data folder from ``$VCSTUDIO_DATA`` or the user data dir)."""
    return Studio()


# ----------------------------------------------------------------------------- estimate

# Rough constants for a Stable-Diffusion-1.x-size U-Net (860 M parameters), per 512x512 frame,
# measured on nothing yet: replace with `vcstudio bench` numbers. A training step is forward +
# backward with gradient checkpointing; a sampling/inversion step is forward only (x2 for CFG).
_SEC_PER_FRAME_STEP = {"cuda": 0.15, "mps": 1.5, "cpu": 25.0}  # Tune-A-Video: ~10 min/500 st.
_SAMPLE_STEP_SHARE = 0.35  # one DDIM inversion step, in training steps
_BASE_GIB = 3.3  # frozen SD parts in bf16 (~2.1) + trainable q/temporal params with AdamW (~1.2)
_ACT_GIB_PER_FRAME = {True: 0.9, False: 3.2}  # activations per 512^2 frame, by checkpointing
_METHOD_GIB = {"baseline": 0.0, "dct": 0.6, "apla": 0.4}  # CLIP+VGG / VGT+discriminator weights
_DCT_DECODE_GIB_PER_FRAME = 2.2  # VAE decode with a gradient path, per decoded 512^2 frame
_METHOD_TIME = {"baseline": 1.0, "dct": 1.35, "apla": 1.2}


def estimate(cfg: TuneConfig, device: Any = "cpu", model_scale: float = 1.0) -> dict:
    """A rough memory/time estimate of one-shot tuning + inversion, from
    frames x latent pixels x steps with per-device constants (an estimate, not a promise:
    attention grows faster than linearly at large sizes, and the constants are not yet
    calibrated by ``vcstudio bench``). ``model_scale`` scales weights and compute for a model
    smaller or larger than SD 1.x (e.g. ~0.01 for the embedded default model).

    Returns ``{"gib", "seconds", "device_gib", "fits"}``; the last two are ``None`` where the
    device memory is unknown (CPU)."""
    dtype = str(device).split(":")[0]
    d = cfg.data
    units = d.n_frames * (d.width * d.height) / (512 * 512)  # 512^2-frame equivalents
    # the parts that cost: apla+dct costs both; fgbg costs what it tunes on top of
    name = cfg.fgbg.base_method if cfg.method == "fgbg" else cfg.method
    parts = [m for m in str(name).split("+") if m in _METHOD_GIB]
    gib = model_scale * (_BASE_GIB + sum(_METHOD_GIB[m] for m in parts)
                         + units * _ACT_GIB_PER_FRAME[bool(cfg.gradient_checkpointing)])
    if "dct" in parts:  # the decode graph of the frames_per_step frames at decode_size
        n = min(cfg.dct.frames_per_step or d.n_frames, d.n_frames)
        k = min(1.0, cfg.dct.decode_size / min(d.width, d.height)) if cfg.dct.decode_size else 1.0
        gib += model_scale * _DCT_DECODE_GIB_PER_FRAME * n * k * k * (
            d.width * d.height) / (512 * 512)
    spf = _SEC_PER_FRAME_STEP.get(dtype, _SEC_PER_FRAME_STEP["cpu"]) * model_scale
    seconds = units * spf * (cfg.steps * math.prod(_METHOD_TIME[m] for m in parts)
                             + cfg.inversion_steps * _SAMPLE_STEP_SHARE)
    device_gib = fits = None
    if dtype == "cuda":
        import torch

        if torch.cuda.is_available():
            idx = torch.device(str(device)).index or 0
            device_gib = torch.cuda.get_device_properties(idx).total_memory / 2**30
            fits = gib <= 0.92 * device_gib  # leave room for the CUDA context and fragmentation
    return {"gib": round(gib, 2), "seconds": round(seconds, 1), "device_gib": device_gib,
            "fits": fits}


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


def _run_id_of(result: Any) -> Optional[str]:
    rid = result.get("run_id") if isinstance(result, dict) else getattr(result, "run_id", None)
    return rid if isinstance(rid, str) else None


def _jsonable(params: Any) -> Any:
    from dataclasses import is_dataclass

    from .config import to_dict

    return to_dict(params) if is_dataclass(params) else params


def _newest_mtime(folder: Path) -> float:
    newest = folder.stat().st_mtime
    for p in folder.rglob("*"):
        with contextlib.suppress(OSError):
            newest = max(newest, p.lstat().st_mtime)
    return newest
