"""Widgets and glue every tab shares: the session id, submitting a job (``Studio.submit``, the
same jobs the CLI and the API run) and streaming its events, error mapping, plots and frame
strips. No torch math here, and no pipelines: the tabs format what the jobs return."""
from __future__ import annotations

import functools
import hashlib
import math
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from ..errors import VcsError
from ..progress import Event

# what the clip inputs accept (their labels say so): read_video's files, a zip of frames too
VIDEO_TYPES = [".mp4", ".webm", ".mov", ".avi", ".mkv", ".gif", ".zip"]
IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".webp", ".bmp"]
EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"
NO_CLIP = "Upload a clip first (or pick one of the examples)."
QUEUE_MAX = 64  # events waiting in Gradio's queue at most (a visitor past that is told so)


# the settings the jobs' messages name (config key, CLI flag) as the page labels them
UI_LABELS = {
    "data.n_frames": "Frames", "data.stride": "Stride", "data.start": "Start frame",
    "data.width": "Width", "data.height": "Height", "data.size": "Size",
    "data.video_path": "Clip", "steps": "Tuning steps", "lr": "Learning rate", "seed": "Seed",
    "edit.steps": "Sampling steps", "edit.guidance": "Guidance", "edit.seed": "Seed",
    "edit.eta": "eta", "guidance": "Guidance", "edit_steps": "Sampling steps",
    "edit_prompt": "Edit prompt", "seeds": "Seeds", "runs": "Tuned runs", "run": "Run folder",
    "size": "Size", "frames": "Frames", "long.frames": "Frames", "long.window": "Window K",
    "long.stride": "Stride S", "long.steps": "Sampling steps", "long.seed": "Seed",
    "long.guidance": "Guidance", "long.size": "Size", "long.fps": "fps",
    "long.mask.n_candidates": "Candidates", "long.mask.tune_steps": "Combined tuning steps",
    "tune.steps": "Reward steps", "tune.lr": "Learning rate", "tune.lora_rank": "LoRA rank",
    "tune.inference_steps": "Sampling steps", "tune.seed": "Seed", "image": "Image",
    "images": "Image", "checkpoint_every": "Checkpoint every",
}


# the loaders' advice on the base model (models/loading.py, pipelines/edit/tuned.py) in the page's
# words: the CLI's --model is the tabs' Base model picker (ui/model_picker.py)
MODEL_WORDS = (
    ("and pass --model DIR, or run without --model to use the embedded demo model",
     "and type DIR into the Base model picker, or pick the embedded demo model"),
    ("Use it with --model pointing at that model", "Pick that model in the Base model picker"),
    ("pass --model with a copy of it", "type a copy of it into the Base model picker"),
    ("pass --model a local folder", "type a local folder into the Base model picker"),
    ("pass the local folder with --model", "type the local folder into the Base model picker"),
)


def ui_words(msg: str) -> str:
    """A job's message in the page's words: the settings it names by config key and CLI flag
    ("data.n_frames (--frames)") by their labels ("Frames"); the CLI keeps the flags."""
    import re

    def cond(m: re.Match) -> str:
        return f"Structure condition {int(m.group(1)) + 1}"

    msg = re.sub(r"(?:[a-z_]+\.)?control \(--control\)\[(\d+)\]", cond, msg)
    msg = msg.replace("(--control-model ID)", "(the Structure panel's model box)")
    msg = msg.replace("--control-video PATH", "the Structure panel's video")
    for cli, page in MODEL_WORDS:  # the base model's flag is the Base model picker here
        msg = msg.replace(cli, page)

    def setting(m: re.Match) -> str:
        key = m.group(1)
        return UI_LABELS.get(key, key.rsplit(".", 1)[-1].replace("_", " ").capitalize())

    return re.sub(r"\b([a-z_]+(?:\.[a-z_]+)*) \(--[a-z-]+(?:/--[a-z-]+)*\)", setting, msg)


def gr_error(e: BaseException):
    """A user error becomes a message in the page (in its own words); the session keeps
    working."""
    import gradio as gr

    if isinstance(e, gr.Error):
        return e
    if isinstance(e, VcsError):
        return gr.Error(ui_words(str(e)))
    return gr.Error(f"Something went wrong ({type(e).__name__}: {e}). The studio is still "
                    "running; try again with smaller settings.")


def job_validator(studio, job: str, build):
    """A Gradio ``validator=`` for a job event: ``build(*inputs)`` makes the same config the
    handler submits and the job's own ``validate(cfg, limits)`` checks it, so a bad input is
    refused with the same one-line VcsError message before the event joins the device queue
    (the validator runs with queue=False; under load the queue wait was ~1 min). Only what
    needs no session or upload is checked here; the handler still checks everything.

    The message goes on the input its setting names (``data.n_frames (--frames)`` ->
    ``frames``), else on the first one after the session; anything not a VcsError is left
    to the handler, which reports it in full."""
    import inspect

    import gradio as gr

    def check(*args):
        try:
            _check_bounds(check.bounds, args)
            cfg = build(*args)
            if cfg is not None:
                spec = studio.spec(job)
                cfg = spec.load(cfg)
                if spec.validate is not None:
                    spec.validate(cfg, studio.limits)
        except VcsError as e:
            msg = str(e)
            names = list(inspect.signature(check.main).parameters) if check.main else []
            setting = getattr(e, "setting", None)
            at = (e.index if isinstance(e, _BoundError) else
                  names.index(setting) if setting in names[:len(args)] else
                  _named_input(msg, names[:len(args)], default=min(1, len(args) - 1)))
            return [gr.validate(i != at, ui_words(msg) if i == at else "")
                    for i in range(len(args))]
        except Exception:  # the handler's own path reports it (with its context)
            pass
        return [gr.validate(True, "") for _ in args]

    check.main = None  # the event's function (its parameter names place the message)
    check.bounds = {}  # input index -> (label, min, max): see validated()
    return check


def about(setting: str, msg: str):
    """An InputError about the event input named ``setting`` (where a validator shows it)."""
    from ..errors import InputError

    e = InputError(msg)
    e.setting = setting
    return e


def _named_input(msg: str, names: list[str], default: int) -> int:
    """Index of the input a validate message is about: a parameter name written as a word in
    the message's subject (the part before "must"/"is")."""
    import re

    subject = re.split(r" (?:must|is) ", msg, maxsplit=1)[0].lower()
    words = set(re.findall(r"[a-z_]+", subject))
    for i, n in enumerate(names):
        if i and (n in words or n.rstrip("s") in words):
            return i
    return default


def validated(fn, check, inputs=()):
    """``check`` (a :func:`job_validator`) for the event of ``fn`` on ``inputs``; returns it.

    Gradio checks a slider's bounds while preprocessing, before a validator runs, and an
    error there answers the queue's join with a bare HTTP 400 (gradio_client raises
    ``HTTPStatusError`` without the message). So the event's number inputs leave their bounds
    to ``check``, which names the setting by its label ("Frames must be within 1..8; got -3.");
    the handler runs only once the validator has passed."""
    import gradio as gr

    check.main = fn
    check.bounds = bounds_of(inputs)
    for comp in inputs:  # bounds and non-numbers (NaN): the validator, by label
        if isinstance(comp, (gr.Slider, gr.Number)):
            comp.preprocess = functools.partial(_unbounded, comp)
    return check


def bounds_of(inputs) -> dict:
    """{input index: (label, min, max)} of the bounded number inputs among ``inputs``. Once
    :func:`validated` has taken a slider's bounds off its preprocessing, every other event
    on that slider (the estimate) checks them with :func:`check_bounds`."""
    import gradio as gr

    return {i: (comp.label or f"input {i}", comp.minimum, comp.maximum)
            for i, comp in enumerate(inputs)
            if isinstance(comp, (gr.Slider, gr.Number))
            and (comp.minimum is not None or comp.maximum is not None)}


def check_bounds(bounds: dict, args) -> None:
    """Raise the gr.Error "<label> must be within lo..hi; got v." for the first out-of-range
    number of ``args`` (bounds from :func:`bounds_of`)."""
    try:
        _check_bounds(bounds, args)
    except VcsError as e:
        raise gr_error(e) from None


def _unbounded(comp, payload):
    """Slider/Number preprocessing without the bounds check (Gradio's rounding kept). A value
    that is not a finite number (a raw client's NaN) is passed on as it came, for the
    validator to name it ("Seed must be a whole number, got nan."), not failed here with a
    bare HTTP 400."""
    from gradio.components.number import Number

    if payload is None or not isinstance(payload, (int, float)) or isinstance(payload, bool) \
            or not math.isfinite(payload):
        return payload
    return Number.round_to_precision(payload, comp.precision)


def _check_bounds(bounds: dict, args) -> None:
    """The number inputs' slider bounds, named by label (see :func:`validated`)."""
    for i, (label, lo, hi) in bounds.items():
        v = args[i] if i < len(args) else None
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"{lo:g}..{hi:g}" if lo is not None and hi is not None else (
                f">= {lo:g}" if lo is not None else f"<= {hi:g}")
            raise _BoundError(i, f"{label} must be within {rng}; got {v:g}.")


class _BoundError(VcsError):
    def __init__(self, index: int, msg: str) -> None:
        super().__init__(msg)
        self.index = index


def estimate_device(studio) -> str:
    """The device a studio's jobs run on ("cpu", "cuda:0"): what its estimates are for (the
    key of its device lock and queue group, :func:`device_group`)."""
    from ..session import device_key

    return device_key(studio.default_device)


def uncalibrated_scale(width: int, height: int) -> float:
    """The model size an uncalibrated estimate assumes, relative to SD 1.x: the embedded demo
    model (64 px) is ~1/50 of it; only until a first tune measures the real speed."""
    return 1.0 if max(int(width or 0), int(height or 0)) > 128 else 0.02


def ui_tier(studio):
    """The settings tier the tabs start from (:class:`vcstudio.config.TierDefaults`): the demo
    tier with the embedded demo model or on a CPU-sized Space (at most 8 frames), else the
    full tier."""
    from ..config import tier_defaults

    return tier_defaults(demo_tier(studio))


def ensure_session(studio, sid: Optional[str]) -> str:
    """The hidden textbox holds only the session's secret; a forged or expired one (another
    visitor's owner id read from a path included) gets a fresh session."""
    if sid:
        try:
            studio.session(sid)
            return sid
        except VcsError:
            pass
    return studio.new_session().id


def served(studio, path) -> Optional[str]:
    """The path a handler returns for a file it hands its visitor (a video, a GIF, a preview,
    a download).

    A desktop studio serves its data folder to its one user (``launch`` allows it): the path
    as it is. A public studio serves nothing under its data folder: the store, other visitors'
    sessions, uploads, deltas and calibration must stay unreachable by any URL, and a visitor
    is handed run folder paths that a stranger may later present. So the file is copied into
    Gradio's own cache, in a folder named by a keyed hash of its content (the key is Gradio's
    hash seed, a random secret of this install): only the visitor it is returned to learns
    that link, and Gradio's cache TTL deletes it. Gradio finds the copy already cached and
    serves it as it serves any output file."""
    if path is None or path == "":
        return None
    if not studio.public:
        return str(path)
    from gradio import processing_utils, utils

    return processing_utils.save_file_to_cache(str(path), utils.get_upload_folder())


def any_string(component):
    """A choice list that changes while the app runs (runs, job ids, sweep ids): API clients
    send a plain string (or a list of strings), which the handler checks when it is called
    (does it exist, is it the caller's). Gradio would otherwise type the parameter as a
    Literal of the choices the page was built with -- frozen at start, and naming one
    visitor's runs to everyone -- and refuse any other value with a bare error."""
    import gradio as gr

    many = isinstance(component, gr.CheckboxGroup) or getattr(component, "multiselect", False)
    info = {"type": "array", "items": {"type": "string"}} if many else {"type": "string"}
    component.api_info = lambda: info
    if isinstance(component, gr.CheckboxGroup):
        component.preprocess = lambda payload: [str(v) for v in (payload or [])]
    else:
        component.allow_custom_value = True
    return component


def account_of(request) -> Optional[str]:
    """The Hugging Face account a visitor signed in with (Gradio's OAuth), else None."""
    name = getattr(request, "username", None) if request is not None else None
    return name if isinstance(name, str) and name else None


def open_session(studio, saved: Optional[str], request=None) -> str:
    """The session secret a page starts with: a signed-in visitor's account session (their
    runs follow the account), else the one this browser kept, else a new one."""
    account = account_of(request)
    if account:
        return studio.new_session(account=account).id
    return ensure_session(studio, saved)


def demo_tier(studio) -> bool:
    """The demo tier: the embedded demo model, or a CPU-sized Space. Its defaults are small
    (frames, size, steps, guidance) so a job finishes in minutes; every tab asks here."""
    return bool(studio.embedded) or studio.limits.max_frames <= 8


def device_group(studio) -> str:
    """Gradio concurrency id of the studio's device ("device-cpu", "device-cuda:0"): one job
    event at a time per device, so the queue shows a visitor their place; the Studio's own
    device lock stays the guard for the CLI and sweeps."""
    from ..session import device_key

    return f"device-{device_key(studio.default_device)}"


# ----------------------------------------------------------------------------- uploads

class UploadGuard:
    """Which session may read which file of Gradio's upload cache (a public studio).

    Gradio hands a handler any file in its cache: one uploaded through its upload route, but
    also one a client named as ``FileData`` that Gradio copied in, or another visitor's upload
    whose cache path was replayed. The guard counts the uploads of each cache path (Gradio
    names them by content, so two visitors uploading the same clip share a path) and lets as
    many sessions claim a path as it was uploaded: the uploader's own events claim it first,
    and a replay of a path uploaded once, by someone else, is refused."""

    prune_at = 10000  # paths remembered before the deleted ones are forgotten

    def __init__(self) -> None:
        self._uploads: dict[str, int] = {}
        self._claims: dict[str, set[str]] = {}
        self._mu = threading.Lock()

    def install(self, demo) -> None:
        """Count what Gradio's upload route records (``Blocks.upload_file_set``)."""
        guard = self

        class CountingSet(set):
            def update(self, *its):
                items = [str(p) for it in its for p in it]
                guard.uploaded(items)
                super().update(items)

            def add(self, item):
                guard.uploaded([str(item)])
                super().add(item)

        old = demo.upload_file_set
        counting = CountingSet(old)
        demo.upload_file_set = counting
        demo.temp_file_sets = [counting if s is old else s for s in demo.temp_file_sets]

    def uploaded(self, paths) -> None:
        with self._mu:
            for p in paths:
                key = str(Path(p).resolve())
                self._uploads[key] = self._uploads.get(key, 0) + 1
            if len(self._uploads) > self.prune_at:  # Gradio's cache TTL deleted the files
                for key in [k for k in self._uploads if not os.path.exists(k)]:
                    self._uploads.pop(key, None)
                    self._claims.pop(key, None)

    def claim(self, sid: str, path: str | Path) -> bool:
        """Whether session ``sid`` may read ``path`` (claiming one of its uploads if new)."""
        key = str(Path(path).resolve())
        with self._mu:
            owners = self._claims.setdefault(key, set())
            if sid in owners:
                return True
            if len(owners) < self._uploads.get(key, 0):
                owners.add(sid)
                return True
            return False


_GUARDS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def upload_guard(studio) -> UploadGuard:
    guard = _GUARDS.get(studio)
    if guard is None:
        guard = _GUARDS[studio] = UploadGuard()
    return guard


@functools.lru_cache(maxsize=1)
def _example_hashes() -> dict[str, Path]:
    out = {}
    if EXAMPLES.is_dir():
        for p in EXAMPLES.iterdir():
            if p.is_file() and p.suffix.lower() in VIDEO_TYPES + IMAGE_TYPES:
                out[_sha256(p)] = p.resolve()
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def upload(studio, sid: str, path: Optional[str], kinds=VIDEO_TYPES) -> Path:
    """Copy a Gradio upload into the session folder (client paths are never used directly):
    one stored copy per distinct content, however often a page re-reads it. Example files
    shipped in assets/ are read from there. A public studio takes only this visitor's own
    uploads (and the examples, recognised by content: Gradio serves them from its cache)."""
    from ..errors import InputError

    if not path:
        raise InputError(NO_CLIP)
    if isinstance(path, dict):  # a FileData the handler was handed unprocessed
        path = path.get("path") or ""
    p = Path(path).resolve()
    if p.is_relative_to(EXAMPLES.resolve()):
        return p
    if studio.public and not upload_guard(studio).claim(sid, p):
        example = _example_hashes().get(_sha256(p)) if p.is_file() else None
        if example is not None:
            return example
        raise InputError("That file was not uploaded from this page; upload it with the upload "
                         "box (or pick one of the examples).")
    return studio.save_upload(sid, p, allowed_suffixes=kinds)


def ensure_jobs(studio) -> None:
    """A Studio built without a job registry gets the default one when a page first uses it."""
    if not studio.jobs:
        from ..jobs import REGISTRY

        studio.jobs = REGISTRY


# ----------------------------------------------------------------------------- jobs

# live jobs by Gradio session (a browser tab or an API client): cancelled when it leaves
_CLIENT_JOBS: dict[str, set[tuple[Any, str]]] = {}
_CLIENT_MU = threading.Lock()


def _client(request) -> Optional[str]:
    return getattr(request, "session_hash", None) if request is not None else None


def cancel_client_jobs(studio, request) -> int:
    """A visitor closed the tab (demo.unload) or their client went away: stop their jobs (a
    tune keeps its checkpoint) so they stop holding the device."""
    key = _client(request)
    if not key:
        return 0
    with _CLIENT_MU:
        jobs = _CLIENT_JOBS.pop(key, set())
    return sum(bool(st.cancel(j)) for st, j in jobs if st is studio)


def run_job(studio, sid: str, name: str, cfg: Any, request=None, progress=None,
            backlog: int = 64, **kwargs) -> Iterator[Any]:
    """Submit job ``name`` with ``cfg`` for session ``sid`` and yield ``("job", id)``, its
    Events, then ``("result", result)`` (what it failed with is raised). ``progress`` (a
    gr.Progress) gets every event as a bar with an ETA. ``backlog``: the unread events kept
    for a slow page (the newest; Studio.events).

    The job is cancelled when this generator is closed before the job ends: Gradio closes a
    handler's generator when its event is cancelled or its client disconnects, and the
    handler's loop over this one unwinds with it."""
    ensure_jobs(studio)
    job = studio.submit(name, cfg, sid, **kwargs)
    key = _client(request)
    if key:
        with _CLIENT_MU:
            _CLIENT_JOBS.setdefault(key, set()).add((studio, job))
    try:
        events = studio.events(job, backlog=backlog)  # subscribed now: nothing published
        # while the page updates is lost (up to ``backlog`` unread events)
        yield ("job", job)
        for ev in events:
            if progress is not None and ev.total:
                try:
                    progress((min(ev.step, ev.total), ev.total),
                             desc=f"{ev.stage or name}: {ev.message or ''}".strip(": "))
                except Exception:  # a progress bar must never fail the job
                    pass
            yield ev
        yield ("result", studio.result(job))
    finally:
        studio.cancel(job)  # a no-op once the job ended; else it stops at its next step
        if key:
            with _CLIENT_MU:
                live = _CLIENT_JOBS.get(key)
                if live is not None:
                    live.discard((studio, job))
                    if not live:
                        _CLIENT_JOBS.pop(key, None)


def last_result(items) -> Any:
    """Drain a run_job stream; the job's result."""
    res = None
    for item in items:
        if isinstance(item, tuple) and item[0] == "result":
            res = item[1]
    return res


def as_int(name: str, value: Any) -> int:
    """A slider/number value as a whole number; a fraction or a non-number is an error,
    never rounded away silently."""
    from ..errors import InputError

    if isinstance(value, bool):
        raise InputError(f"{name} must be a whole number, got {value!r}.")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InputError(f"{name} must be a whole number, got {value!r}.") from None
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{name} must be a whole number, got {value!r}.")
    if float(value) != int(value):
        raise InputError(f"{name} must be a whole number, got {value}.")
    return int(value)


def as_float(name: str, value: Any) -> float:
    from ..errors import InputError

    try:
        if isinstance(value, bool) or value is None:
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}.") from None


def frame_strip(frames: np.ndarray, max_frames: int = 12) -> np.ndarray:
    """Frames side by side (evenly picked when there are many)."""
    idx = np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int)
    return np.concatenate([frames[i] for i in idx], axis=1)


def series_frame(series: dict[str, list[float]], x: str = "step"):
    """{name: values} -> long DataFrame (x, value, series) for gr.LinePlot; None (an empty
    plot) while there is nothing to draw. A placeholder series would fix the plot's colour
    scale to it in the browser, and the real series that follow were then never drawn."""
    import pandas as pd

    rows = [{x: i + 1 if x == "step" else i, "value": float(v), "series": name}
            for name, vals in series.items() for i, v in enumerate(vals)
            if v is not None and v == v]
    return pd.DataFrame(rows) if rows else None


def gr_update(**props):
    """``gr.update(...)`` without importing gradio at module load; no props = leave as is."""
    import gradio as gr

    return gr.update(**props)


class Ticker:
    """Limits how often a generator pushes UI updates (every ``every`` seconds)."""

    def __init__(self, every: float = 0.4) -> None:
        self.every, self.t = every, 0.0

    def due(self, ev: Event) -> bool:
        now = time.time()
        if ev.preview is not None or ev.step >= ev.total or now - self.t >= self.every \
                or ev.stage == "estimate":  # a job's estimate line is always shown
            self.t = now
            return True
        return False


def event_status(ev: Event, text: Optional[str] = None) -> str:
    """A job's event as a status line: a job's ``Estimate: ...`` line as it is, else ``text``
    (default "stage: message") with the event's ETA where it has one."""
    if ev.stage == "estimate":
        return ev.message
    text = text if text is not None else f"{ev.stage}: {ev.message or f'{ev.step}/{ev.total}'}"
    if ev.eta is not None and "ETA" not in text:
        from ..calibration import format_seconds

        text += f" (ETA {format_seconds(ev.eta)})"
    return text
