"""The figures the tabs draw with matplotlib (no pyplot: no global state in a server).

:func:`small_multiples`: the rows of a plot (:func:`vcstudio.ui.plots.plot_frame`) as one panel
per axis -- each quantity on its own y axis with its real values and unit, integer x ticks, a
legend where a panel holds several series. :func:`plan_timeline`: a long video's plan -- the
prompt segments over the frames, one row per co-denoising window with its prompt, the frames
that several windows share shaded, and each window's fusion weights.

Formatting only: the rows, the layout and the segments come from the jobs.
"""
from __future__ import annotations

import math
import textwrap
from typing import Mapping, Optional, Sequence

import numpy as np

# matplotlib's tab10: the series of a panel, and the prompt segments of a plan
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


def plan_timeline(layout, segments: Sequence, prompts: Sequence[Sequence[tuple[int, float]]],
                  width: float = 10.0, unit: str = "frame", note: str = ""):
    """A long video's plan: frames on x. The top row: the timeline of prompt segments (each
    its colour, its prompt written in it). Below, one row per window (window 0 on top) over
    its frames, coloured by the prompt(s) conditioning it (``prompts``: per window the
    (segment, weight) pairs of windows.window_prompts), its normalised fusion weight at
    each frame the filled height of the bar. Frames two or more windows share are shaded grey
    behind the rows; dashed lines mark where a segment begins. ``unit``: what x counts (a
    Wan2.1 plan is laid out in latent frames; ``segments`` must then be in them too), ``note``
    ends the title."""
    from matplotlib.patches import Patch, Rectangle

    L, n = int(layout.length), int(layout.n_windows)
    row_h = 0.34 if n <= 16 else max(0.13, 5.4 / n)
    fig = _figure(width, 1.9 + row_h * (n + 1.6))
    ax_seg, ax = fig.subplots(2, 1, sharex=True,
                              gridspec_kw={"height_ratios": [1.1, max(1.5, n * 0.9)]})
    cols = [COLOURS[i % len(COLOURS)] for i in range(len(segments))]

    # the segments: the prompt timeline
    for i, seg in enumerate(segments):
        ax_seg.add_patch(Rectangle((seg.start - 0.5, 0), seg.end - seg.start, 1,
                                   color=cols[i], alpha=0.85))
        span = seg.end - seg.start
        text = _fit(seg.prompt, span * width * 11 / max(L, 1))
        ax_seg.text((seg.start + seg.end - 1) / 2, 0.5, text, ha="center", va="center",
                    fontsize=8, color="white", clip_on=True)
    ax_seg.set_ylim(0, 1)
    ax_seg.set_yticks([0.5], ["prompts"], fontsize=8)
    ax_seg.set_title(f"{n} window{'s' if n != 1 else ''} of {layout.window} {unit}s, stride "
                     f"{layout.stride}, {layout.fusion} fusion, over {L} {unit}s"
                     + (f" ({note})" if note else ""), fontsize=10)

    # overlaps: frames that more than one window denoises (fused, eq. 19)
    cov = layout.coverage()
    for a, b in _runs(cov > 1):
        ax.axvspan(a - 0.5, b - 0.5, color="#d9d9d9", zorder=0)
    for seg in segments[1:]:
        for a in (ax, ax_seg):
            a.axvline(seg.start - 0.5, color="#333", ls="--", lw=0.9, zorder=3)

    dense = layout.frame_weights()
    show_text = n <= 24
    from matplotlib import patheffects

    halo = [patheffects.withStroke(linewidth=2.5, foreground="white")]
    for i, start in enumerate(layout.starts):
        pairs = list(prompts[i]) if i < len(prompts) else []
        colour = _mix([(cols[j], w) for j, w in pairs]) if pairs else "#999999"
        lo, hi = i + 0.4, i - 0.4  # the row's bottom and top (window 0 on top)
        ax.add_patch(Rectangle((start - 0.5, hi), layout.window, 0.8, facecolor=colour,
                               alpha=0.25, edgecolor=colour, lw=0.8, zorder=1))
        fr = np.arange(start, start + layout.window)
        wts = dense[i, start:start + layout.window]
        # the fusion weight as the filled height (the whole bar = 1)
        ax.fill_between(np.r_[fr - 0.5, fr[-1] + 0.5], lo, lo - 0.8 * np.r_[wts, wts[-1]],
                        step="post", color=colour, alpha=0.8, lw=0, zorder=2)
        if show_text and pairs:
            prompt = " + ".join(segments[j].prompt for j, _ in pairs)
            ax.text(start + layout.window - 0.6, i, _fit(prompt, layout.window * width * 9 / L),
                    ha="right", va="center", fontsize=7, zorder=4, clip_on=True,
                    path_effects=halo)
    ax.set_ylim(n - 0.5, -0.5)
    step = 1 if n <= 24 else math.ceil(n / 24)
    ticks = list(range(0, n, step))
    ax.set_yticks(ticks, [f"w{i}: {layout.starts[i]}-{layout.starts[i] + layout.window - 1}"
                          for i in ticks], fontsize=7)
    ax.set_ylabel("window (frames)", fontsize=8)
    ax.set_xlim(-0.5, L - 0.5)
    ax.set_xlabel(unit, fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    _integer_ticks(ax)
    handles = [Patch(color=c, alpha=0.85, label=_fit(s.prompt, 40))
               for c, s in zip(cols, segments)]
    handles.append(Patch(color="#d9d9d9", label="frames in 2+ windows (fused)"))
    handles.append(Patch(facecolor="#777777", alpha=0.8,
                         label="a window's fusion weight at a frame (filled height; bar = 1)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=2 if len(handles) > 3
               else len(handles), fontsize=8, frameon=False)
    return fig


def figure_image(fig) -> np.ndarray:
    """uint8 (H, W, 3) of a figure (for an image output: a file API clients download)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _fit(text: str, chars: float) -> str:
    """``text`` cut to about ``chars`` characters, with an ellipsis."""
    k = max(4, int(chars))
    return text if len(text) <= k else text[:k - 1].rstrip() + "…"


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of the runs of True in ``mask``."""
    out, a = [], None
    for i, m in enumerate(list(mask) + [False]):
        if m and a is None:
            a = i
        elif not m and a is not None:
            out.append((a, i))
            a = None
    return out


def _mix(pairs: Sequence[tuple[str, float]]) -> tuple:
    from matplotlib.colors import to_rgb

    total = sum(w for _, w in pairs) or 1.0
    rgb = sum(np.array(to_rgb(c)) * w for c, w in pairs) / total
    return tuple(float(v) for v in rgb)
