"""The figures the tabs draw with matplotlib (no pyplot: no global state in a server).

:func:`small_multiples`: the rows of a plot (:func:`vcstudio.ui.plots.plot_frame`) as one panel
per axis -- each quantity on its own y axis with its real values and unit, integer x ticks, a
legend where a panel holds several series.

Formatting only: the rows come from the jobs.
"""
from __future__ import annotations

import math
import textwrap
from typing import Mapping, Optional, Sequence

import numpy as np

# matplotlib's tab10: the series of a panel
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
DPI = 100


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _integer_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))


def small_multiples(df, x: str, labels: Optional[Mapping[str, str]] = None,
                    marks: Optional[Mapping[int, str]] = None, title: str = "",
                    width: float = 6.4):
    """One panel per distinct ``df["axis"]`` (in order of appearance), titled with it; each
    series of that axis a line of its real values over ``x``. ``labels`` give a series' legend
    text (default its name), ``marks`` {x: text} draw a dashed vertical line on every panel
    (a resumed tune's first step). At most two panels a row."""
    axes_names = list(dict.fromkeys(df["axis"]))
    n = len(axes_names)
    cols = 1 if n == 1 else 2
    rows = math.ceil(n / cols)
    fig = _figure(width, 0.45 + 2.25 * rows + (0.3 if title else 0))
    grid = fig.subplots(rows, cols, squeeze=False)
    for k, name in enumerate(axes_names):
        ax = grid[k // cols][k % cols]
        part = df[df["axis"] == name]
        series = list(dict.fromkeys(part["series"]))
        for j, s in enumerate(series):
            pts = part[part["series"] == s].sort_values(x)
            few = len(pts) <= 40
            ax.plot(pts[x].to_numpy(), pts["value"].to_numpy(), lw=1.3,
                    marker="o" if few else None, ms=3, color=COLOURS[j % len(COLOURS)],
                    label=(labels or {}).get(s, s))
        for at, text in (marks or {}).items():
            ax.axvline(at, color="#555", ls="--", lw=0.9, label=text)
        ax.set_title(textwrap.fill(name, 70 if cols == 1 else 40), fontsize=9)
        ax.set_xlabel(x, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        _integer_ticks(ax)
        if len(series) > 1 or marks:
            ax.legend(fontsize=7, loc="best", framealpha=0.8)
    for k in range(n, rows * cols):  # an odd number of panels: the last slot stays empty
        grid[k // cols][k % cols].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def figure_image(fig) -> np.ndarray:
    """uint8 (H, W, 3) of a figure (for an image output: a file API clients download)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
