"""Plots and tables of the tabs, and the streamed view of a generating job.

Plots carry real numbers. Each series is drawn on an axis of its own quantity and unit (a CLIP
score of ~30 and a warp error of ~0.0001 never share one): the browser shows a figure of small
multiples (:mod:`vcstudio.ui.figures`), one panel per axis, drawn from the rows API clients
get: a (visually hidden) gr.LinePlot's value with columns x (whole frames from 0 / steps from 1),
``value`` (the real value), ``raw`` (the same number; kept for clients from when ``value`` was
normalised), ``series`` (the term or metric) and ``axis`` (what the value measures, with its
unit). Tables wrap their text and get column widths, so no column is cut off.

:class:`StreamView` turns an Edit / Long / Compare job's events into what the page shows while
it runs: the predicted-x0 previews and then the frames as they decode, each as a small video in
the output's own slot (the final video replaces them), and the per-frame metrics as each frame
is scored. Formatting only: the jobs make the previews and scores.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

import numpy as np

from ..progress import Event

# which axis a series is drawn on: a {series: axis} mapping or a function of the series' name
Axes = Union[Mapping[str, str], Callable[[str], str], None]


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def unit_of(name: str) -> str:
    """The quantity a series measures: "baseline · clip_text" -> "clip_text" (the runs of one
    metric share its axis, so they stay comparable with each other)."""
    return name.rsplit(" · ", 1)[-1]


def metric_axis(name: str) -> str:
    """The axis of a per-frame metric series ("dct · warp_error" too): the metric's own label
    and unit from the metrics registry."""
    from ..metrics.registry import axis_label

    return axis_label(unit_of(name))


def _axis(axes: Axes, name: str) -> str:
    if axes is None:
        return unit_of(name)
    if callable(axes):
        return axes(name)
    return axes.get(name, unit_of(name))


def plot_frame(series: dict[str, Sequence], x: str = "frame", axes: Axes = None,
               start: Optional[int] = None):
    """{name: values by index} -> long DataFrame with columns ``x`` (int: frame index from 0,
    step from 1), ``value`` and ``raw`` (the real value), ``series`` and ``axis`` (the
    quantity and unit it is read on: ``axes``, default the series' :func:`unit_of`); None
    while there is nothing to draw (a placeholder series would fix the browser's colour scale
    to it). Missing and non-finite values are left out."""
    import pandas as pd

    first = (1 if x == "step" else 0) if start is None else start
    rows = [{x: int(i + first), "value": float(v), "raw": float(v), "series": name,
             "axis": _axis(axes, name)}
            for name, vals in series.items() for i, v in enumerate(vals) if _finite(v)]
    if not rows:
        return None
    df = pd.DataFrame(rows)
    df[x] = df[x].astype("int64")
    return df


def plot_update(series: dict[str, Sequence], x: str = "frame", what: str = "metric",
                axes: Axes = None):
    """A gr.LinePlot update with ``series``' rows (:func:`plot_frame`): see
    :func:`rows_update`."""
    return rows_update(plot_frame(series, x, axes), x, what)


def rows_update(df, x: str = "frame", what: str = "metric"):
    """A gr.LinePlot update with the rows ``df``: legend titled ``what`` listing the series
    drawn, integer x ticks, the real value and its axis in the tooltip. The tabs keep this
    plot in the page, visually hidden, for API clients (its value is the rows), and its
    change draws the figure of the same rows (:func:`figure_of`)."""
    import gradio as gr

    names = [] if df is None else list(dict.fromkeys(df["series"]))
    return gr.update(value=df, x=x, y="value", color="series", color_title=what,
                     colors_in_legend=names or None, x_axis_format="d",
                     y_title="value (each series on its own axis: see the axis column)",
                     tooltip=["series", "value", "axis"])


def rows_frame(value):
    """A plot's rows back as a DataFrame: what a gr.LinePlot hands an event (its PlotData,
    or the dict API clients see: ``{"columns", "data"}``), or a DataFrame; None if empty."""
    import pandas as pd

    if isinstance(value, Mapping) and "columns" not in value and "value" in value:
        return rows_frame(value["value"])  # a whole update: its "value" holds the rows
    if value is None:
        return None
    if isinstance(value, pd.DataFrame):
        return value if len(value) else None
    if not isinstance(value, Mapping):
        value = value.model_dump() if hasattr(value, "model_dump") else vars(value)
    cols, data = value.get("columns"), value.get("data")
    return pd.DataFrame(data, columns=cols) if cols and data else None


def figure_of(value, labels: Optional[Mapping[str, str]] = None,
              marks: Optional[Mapping[int, str]] = None, title: str = ""):
    """The page's figure of a plot's rows (:func:`plot_frame`, or what a LinePlot hands an
    event: :func:`rows_frame`): small multiples, one panel per ``axis``, real values
    (:func:`vcstudio.ui.figures.small_multiples`); x is "step" or "frame", whichever the
    rows have; loss rows with an ``earlier`` column (a resumed tune's steps from before its
    checkpoint) get a dashed line where the tune went on. None while there is nothing to
    draw."""
    from .figures import small_multiples

    df = rows_frame(value)
    if df is None or "axis" not in df.columns:
        return None
    x = "step" if "step" in df.columns else "frame"
    if marks is None and "earlier" in df.columns and df["earlier"].astype(bool).any():
        k = int(df.loc[df["earlier"].astype(bool), x].max())  # a resumed tune went on here
        marks = {k: f"resumed from step {k}"}
    return small_multiples(df, x, labels=labels, marks=marks, title=title)


def set_point(series: dict[str, list], name: str, index: int, value) -> None:
    """``series[name][index] = value``, None-padded: terms that skip steps (DCT's stepwise
    schedule) and frames scored out of order stay at their own index."""
    s = series.setdefault(name, [])
    s.extend([None] * (index + 1 - len(s)))
    s[index] = float(value) if _finite(value) else None


class StepSeries:
    """A tune's logged terms by step ({term: [value of step 1, step 2, ...]}) for the loss
    plots: only the ``terms`` drawn (methods/registry.plotted_terms), earlier steps first
    (a resumed tune's from its run folder), each step's values replacing what was there."""

    def __init__(self, terms: Sequence[str]) -> None:
        self.terms = tuple(terms)
        self.series: dict[str, list] = {}
        self.resumed_at = 0  # the steps tuned before a resume (:meth:`extend`): 0 = none

    def add(self, step: int, metrics: Mapping[str, float]) -> bool:
        hit = False
        for k in self.terms:
            if k in metrics and step >= 1:
                set_point(self.series, k, step - 1, metrics[k])
                hit = True
        return hit

    def extend(self, logs: Sequence[Mapping]) -> None:
        """A resumed tune's earlier per-step logs (its losses.json rows: {"step": k, term:
        value, ...}), before the steps it goes on with."""
        for row in logs:
            if isinstance(row, Mapping) and isinstance(row.get("step"), int):
                self.add(row["step"], row)
                self.resumed_at = max(self.resumed_at, row["step"])

    def rows(self, axes: Axes = None):
        """:func:`plot_frame`'s rows (x = "step") with a column ``earlier``: True for the
        steps tuned before a resume."""
        ordered = {k: self.series[k] for k in self.terms if k in self.series}  # terms' order
        df = plot_frame(ordered, "step", axes)
        if df is not None:
            df["earlier"] = df["step"] <= self.resumed_at
        return df

    @property
    def steps(self) -> int:
        return max((len(v) for v in self.series.values()), default=0)


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
            set_point(self.series, name, ev.frame, v)
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
