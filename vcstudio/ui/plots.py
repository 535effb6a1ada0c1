"""Plots and tables of the tabs, and the streamed view of a generating job.

Plots: named series with a legend headed by what the series are (never an empty heading), one
y axis per unit made comparable by normalising each series to 0..1 over what has been drawn so
far, with the raw value in the tooltip (a CLIP score of ~30 and a warp error of ~0.0001 on one
raw axis leave one of them flat), and whole-number x ticks (frames and steps are integers).
Tables wrap their text and get column widths, so no column is cut off.

:class:`StreamView` turns an Edit / Long / Compare job's events into what the page shows while
it runs: the predicted-x0 previews and then the frames as they decode, each as a small video in
the output's own slot (the final video replaces them), and the per-frame metrics as each frame
is scored. Formatting only: the jobs make the previews and scores.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..progress import Event


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def unit_of(name: str) -> str:
    """The quantity a series measures: "baseline · clip_text" -> "clip_text" (the runs of one
    metric share a scale, so they stay comparable with each other)."""
    return name.rsplit(" · ", 1)[-1]


def plot_frame(series: dict[str, Sequence], x: str = "frame", normalise: bool = True,
               start: Optional[int] = None):
    """{name: values by index} -> long DataFrame with columns ``x`` (int: frame index from 0,
    step from 1), ``value`` (normalised 0..1 per quantity -- :func:`unit_of`: a metric over
    every run it is drawn for --, or the raw value), ``raw`` and ``series``; None while there
    is nothing to draw (a placeholder series would fix the browser's colour scale to it). A
    quantity with one distinct value sits at 0.5."""
    import pandas as pd

    first = (1 if x == "step" else 0) if start is None else start
    points = {name: [(i + first, float(v)) for i, v in enumerate(vals) if _finite(v)]
              for name, vals in series.items()}
    span: dict[str, tuple[float, float]] = {}
    for name, pts in points.items():
        for _, v in pts:
            lo, hi = span.get(unit_of(name), (v, v))
            span[unit_of(name)] = (min(lo, v), max(hi, v))
    rows = []
    for name, pts in points.items():
        if not pts:
            continue
        lo, hi = span[unit_of(name)]
        for i, v in pts:
            y = (0.5 if hi == lo else (v - lo) / (hi - lo)) if normalise else v
            rows.append({x: int(i), "value": y, "raw": v, "series": name})
    if not rows:
        return None
    df = pd.DataFrame(rows)
    df[x] = df[x].astype("int64")
    return df


def plot_update(series: dict[str, Sequence], x: str = "frame", what: str = "metric",
                normalise: bool = True):
    """A gr.LinePlot update for ``series``: legend titled ``what`` listing the series drawn,
    integer x ticks, normalised y with the raw value in the tooltip."""
    import gradio as gr

    df = plot_frame(series, x, normalise)
    names = [] if df is None else list(dict.fromkeys(df["series"]))
    return gr.update(value=df, x=x, y="value", color="series", color_title=what,
                     colors_in_legend=names or None, x_axis_format="d",
                     y_title="normalised per series (0-1; hover: raw)" if normalise else "value",
                     tooltip=["raw"])


def table_widths(headers: list[str]) -> list[str]:
    """Column widths that share a table's box (the first, the name column, wider), so a wide
    table fits; set on the gr.Dataframe with ``wrap=True``."""
    n = len(headers)
    if n <= 1:
        return ["100%"] * n
    first = min(40, max(20, 100 // n + 10))
    rest = (100 - first) / (n - 1)
    return [f"{first}%"] + [f"{rest:.0f}%"] * (n - 1)


def table_update(rows: list[list], headers: list[str]):
    """A table's value: a plain DataFrame, so API clients get ``{"headers", "data"}`` (API.md);
    the wrapping and widths are the component's own (:func:`table_widths`)."""
    import pandas as pd

    return pd.DataFrame(rows, columns=headers)


class FrameSeries:
    """Per-frame metrics as they stream in (Event stage "frame-metrics"): {name: [values]}."""

    def __init__(self) -> None:
        self.series: dict[str, list] = {}

    def add(self, ev: Event) -> bool:
        if ev.stage != "frame-metrics" or ev.frame is None:
            return False
        for name, v in ev.metrics.items():
            s = self.series.setdefault(name, [])
            s.extend([None] * (ev.frame + 1 - len(s)))
            s[ev.frame] = float(v)
        return True


class StreamView:
    """What a generating job shows while it runs. ``update(ev)`` -> the kinds that changed
    ("video", "metrics") and keeps ``video`` (path of a small mp4 of the newest x0 preview or
    of the frames decoded so far) and ``metrics`` (a FrameSeries). Preview files go to
    ``folder`` and are removed by :meth:`close`."""

    def __init__(self, folder: str | Path, fps: float = 8.0) -> None:
        self.folder = Path(folder)
        self.fps = fps
        self.video: Optional[str] = None
        self.metrics = FrameSeries()
        self.stage = ""
        self._n = 0

    def _write(self, frames: np.ndarray) -> str:
        from ..io import write_mp4

        self.folder.mkdir(parents=True, exist_ok=True)
        self._n += 1  # a new name each time: the browser and Gradio's cache key on the path
        return str(write_mp4(frames, self.folder / f"preview-{self._n:03d}.mp4", self.fps))

    def update(self, ev: Event) -> set[str]:
        changed = set()
        self.stage = ev.stage
        if ev.preview is not None and ev.stage != "tune" and len(ev.preview):
            self.video = self._write(ev.preview)
            changed.add("video")
        if self.metrics.add(ev):
            changed.add("metrics")
        return changed

    def status(self, ev: Event) -> str:
        if ev.stage == "decode":
            return f"Decoding: {ev.step}/{ev.total} frames"
        if ev.stage == "frame-metrics":
            return f"Scoring: frame {ev.step}/{ev.total}"
        if ev.preview is not None:
            return f"Denoising {ev.step}/{ev.total} (preview of the predicted frames)"
        return f"{ev.stage}: {ev.step}/{ev.total}"

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
