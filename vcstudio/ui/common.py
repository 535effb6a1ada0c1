"""Widgets and glue every tab shares: the session id, submitting a job (``Studio.submit``, the
same jobs the CLI and the API run) and streaming its events, error mapping, plots and frame
strips. No torch math here, and no pipelines: the tabs format what the jobs return."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from ..errors import VcsError
from ..progress import Event

VIDEO_TYPES = [".mp4", ".webm", ".mov", ".avi", ".mkv", ".gif"]
IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".webp", ".bmp"]
EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"


def gr_error(e: BaseException):
    """A user error becomes a message in the page; the session keeps working."""
    import gradio as gr

    if isinstance(e, VcsError):
        return gr.Error(str(e))
    return gr.Error(f"Something went wrong ({type(e).__name__}: {e}). The studio is still "
                    "running; try again with smaller settings.")


def ensure_session(studio, sid: Optional[str]) -> str:
    """gr.State holds only this id; a forged or expired one gets a fresh session."""
    if sid:
        try:
            studio.session(sid)
            return sid
        except VcsError:
            pass
    return studio.new_session().id


def upload(studio, sid: str, path: Optional[str], kinds=VIDEO_TYPES) -> Path:
    """Copy a Gradio upload into the session folder (client paths are never used directly).
    Example files shipped in assets/ are read from there."""
    from ..errors import InputError

    if not path:
        raise InputError("Upload a clip first (or pick one of the examples).")
    p = Path(path).resolve()
    if p.is_relative_to(EXAMPLES.resolve()):
        return p
    return studio.save_upload(sid, p, allowed_suffixes=kinds)


def ensure_jobs(studio) -> None:
    """A Studio built without a job registry gets the default one when a page first uses it."""
    if not studio.jobs:
        from ..jobs import REGISTRY

        studio.jobs = REGISTRY


def run_job(studio, sid: str, name: str, cfg: Any, **kwargs) -> Iterator[Any]:
    """Submit job ``name`` with ``cfg`` for session ``sid`` and yield ``("job", id)``, its
    Events, then ``("result", result)`` (what it failed with is raised)."""
    ensure_jobs(studio)
    job = studio.submit(name, cfg, sid, **kwargs)
    yield ("job", job)
    for ev in studio.events(job):
        yield ev
    yield ("result", studio.result(job))


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
        if ev.preview is not None or ev.step >= ev.total or now - self.t >= self.every:
            self.t = now
            return True
        return False
