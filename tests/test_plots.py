"""Plot and table helpers of the tabs: named series with their real values, integer x, each
quantity on an axis of its own (rows for API clients, small multiples for the page); wrapping
tables; the streamed edit view."""
import math

import numpy as np
import pytest

from vcstudio.progress import Event
from vcstudio.ui.plots import (FrameSeries, StepSeries, StreamView, figure_of, metric_axis,
                               plot_frame, plot_update, rows_frame, table_update, table_widths)


def test_plot_rows_keep_the_real_values_with_their_axis_and_integer_x():
    # the case: a score of scale ~30 and a warp error of ~0.0001 on one plot
    series = {"clip_text": [31.0, 29.5, 30.25, None], "warp_error": [math.nan, 1e-4, 3e-4, 2e-4]}
    df = plot_frame(series, x="frame", axes=metric_axis)
    assert set(df["series"]) == {"clip_text", "warp_error"}
    assert df["frame"].dtype.kind == "i" and sorted(set(df["frame"])) == [0, 1, 2, 3]
    for name, vals in series.items():
        part = df[df["series"] == name]
        finite = [v for v in vals if v is not None and not math.isnan(v)]
        assert list(part["value"]) == finite and list(part["raw"]) == finite  # not normalised
    assert list(df[df["series"] == "warp_error"]["frame"]) == [1, 2, 3]  # NaN frame 0 skipped
    axis = dict(zip(df["series"], df["axis"]))
    assert axis == {"clip_text": "CLIP text alignment (100 x cos)",
                    "warp_error": "warp error (MSE of RGB in 0-1)"}
    # steps count from 1; nothing to draw -> None; a run's metric keeps the metric's axis
    steps = plot_frame({"loss": [0.5, 0.25]}, x="step", axes={"loss": "denoising loss"})
    assert list(steps["step"]) == [1, 2] and list(steps["value"]) == [0.5, 0.25]
    assert list(steps["axis"]) == ["denoising loss"] * 2
    assert plot_frame({}) is None and plot_frame({"loss": [None, math.nan]}) is None
    two = plot_frame({"baseline · psnr": [20.0, 22.0], "dct · psnr": [24.0, 30.0]},
                     axes=metric_axis)
    assert list(two["value"]) == [20.0, 22.0, 24.0, 30.0]
    assert set(two["axis"]) == {"PSNR to the source (dB)"}


def test_plot_update_has_a_titled_legend_of_the_series_and_integer_ticks():
    up = plot_update({"clip_text": [0.3, 0.31], "flicker": [0.9, 0.95]}, "frame", "metric",
                     metric_axis)
    assert up["colors_in_legend"] == ["clip_text", "flicker"] and up["color_title"] == "metric"
    assert up["x_axis_format"] == "d" and up["x"] == "frame" and up["y"] == "value"
    assert set(up["tooltip"]) == {"series", "value", "axis"}
    assert list(up["value"].columns) == ["frame", "value", "raw", "series", "axis"]
    empty = plot_update({}, "frame")
    assert empty["value"] is None and empty["colors_in_legend"] is None  # no empty heading


def test_the_figure_draws_one_panel_per_axis_with_the_real_values():
    series = {"clip_text": [31.0, 29.5, 30.25], "consistency_adjacent": [None, 97.0, 96.5],
              "warp_error": [None, 1e-4, 3e-4]}
    rows = plot_update(series, "frame", "metric", metric_axis)["value"]
    # what a LinePlot hands its change event: the rows as columns + data
    payload = {"columns": list(rows.columns), "data": rows.values.tolist()}
    assert rows_frame(payload).shape == rows.shape
    fig = figure_of(payload)
    axes = [a for a in fig.axes if a.get_visible()]
    titles = [a.get_title().replace("\n", " ") for a in axes]
    assert titles == ["CLIP text alignment (100 x cos)",
                      "CLIP consistency with the previous frame (100 x cos)",
                      "warp error (MSE of RGB in 0-1)"]
    for ax, name in zip(axes, series):
        (line,) = ax.get_lines()
        finite = [v for v in series[name] if v is not None]
        assert list(line.get_ydata()) == finite  # the real values, on the metric's own axis
        lo, hi = ax.get_ylim()
        assert lo <= min(finite) and max(finite) <= hi
        assert ax.get_xlabel() == "frame"
        assert all(float(t).is_integer() for t in ax.get_xticks())  # whole frames
    warp = axes[2]
    assert warp.get_ylim()[1] < 1e-3  # a warp error of 1e-4 is not flattened by a CLIP score
    assert figure_of(None) is None and figure_of({"columns": [], "data": []}) is None


def test_step_series_continue_a_resumed_tune_and_mark_where_it_went_on():
    terms = ["loss", "l_sem", "alpha"]
    s = StepSeries(terms)
    s.extend([{"step": 1, "loss": 0.9, "t": 10}, {"step": 2, "loss": 0.8, "l_sem": 0.5},
              {"step": 3, "loss": 0.7, "alpha": 0.1}])
    assert s.add(4, {"loss": 0.6, "grad_norm": 1.0}) and not s.add(5, {"grad_norm": 1.0})
    assert s.series == {"loss": [0.9, 0.8, 0.7, 0.6], "l_sem": [None, 0.5],
                        "alpha": [None, None, 0.1]}
    df = s.rows({"loss": "denoising loss", "l_sem": "DCT", "alpha": "CLWS"})
    loss = df[df["series"] == "loss"]
    assert list(loss["step"]) == [1, 2, 3, 4] and list(loss["earlier"]) == [True] * 3 + [False]
    fig = figure_of(df, {"loss": "loss"})
    first = fig.axes[0]
    marks = [ln for ln in first.get_lines() if ln.get_label().startswith("resumed")]
    assert len(marks) == 1 and marks[0].get_label() == "resumed from step 3"
    assert list(marks[0].get_xdata()) == [3, 3]
    fresh = StepSeries(terms)
    fresh.add(1, {"loss": 1.0})
    assert not fresh.rows()["earlier"].any()
    assert not [ln for ln in figure_of(fresh.rows()).axes[0].get_lines()
                if ln.get_label().startswith("resumed")]


def test_tables_wrap_share_the_width_and_reach_api_clients_as_plain_tables():
    headers = ["run", "clip_text", "consistency_adjacent", "warp_error", "fci", "flicker",
               "psnr", "vcd"]
    widths = table_widths(headers)
    assert len(widths) == len(headers) and float(widths[0].rstrip("%")) > float(widths[1][:-1])
    assert sum(float(w.rstrip("%")) for w in widths) == pytest.approx(100, abs=2)
    df = table_update([["baseline · s33", "0.31 ★", "0.97", "0.002", "0.5", "0.9", "21", "0.1"]],
                      headers)
    assert list(df.columns) == headers and len(df) == 1  # a value, not an update dict


def test_frame_series_and_stream_view_follow_streamed_events(tmp_path):
    fs = FrameSeries()
    for i in range(3):
        assert fs.add(Event(i + 1, 3, stage="frame-metrics", frame=i,
                            metrics={"clip_text": 0.3 + i, **({"warp": 0.1} if i else {})}))
    assert not fs.add(Event(1, 1, stage="metrics", metrics={"clip_text": 0.3}))
    assert fs.series == {"clip_text": [0.3, 1.3, 2.3], "warp": [None, 0.1, 0.1]}
    view = StreamView(tmp_path / "previews")
    strip = np.zeros((4, 16, 16, 3), np.uint8)
    assert view.update(Event(3, 12, stage="sample", preview=strip)) == {"video"}
    first = view.video
    assert view.update(Event(4, 6, stage="decode", preview=strip)) == {"video"}
    assert view.video != first and all(p.suffix == ".mp4" for p in (tmp_path / "previews")
                                       .iterdir())
    assert view.update(Event(5, 30, stage="tune", preview=strip)) == set()  # not an edit's
    view.close()
    assert not (tmp_path / "previews").exists()


def test_each_method_declares_the_terms_its_loss_plot_draws_and_their_axes():
    from vcstudio.config import TuneConfig
    from vcstudio.methods.registry import plotted_terms

    def axes(method):
        terms = plotted_terms(TuneConfig(method=method))
        return {k: p.axis for k, p in terms.items()}

    assert axes("baseline") == {"loss": "denoising loss"}  # its total is its loss
    dct = axes("dct")
    assert list(dct) == ["loss", "total", "l_sem", "l_tex", "l_cons", "alpha"]
    assert dct["total"] == dct["loss"] and dct["l_sem"] == dct["l_tex"] == dct["l_cons"]
    assert len(set(dct.values())) == 3  # loss, the consistency losses, the CLWS weight
    apla = axes("apla")
    assert {"mse", "l1", "perceptual", "adv_g", "disc_loss", "disc_acc", "vgt_ratio"} <= set(apla)
    both = axes("apla+dct")
    assert list(both)[0] == "loss" and set(both) == set(dct) | set(apla)
    assert len(set(both.values())) == 6
    assert set(plotted_terms()) >= set(both) | {"l", "l_fg", "l_bg"}  # every method's


def test_the_compare_figure_has_a_panel_per_metric_and_a_line_per_run():
    from vcstudio.ui.compare_tab import _rows, compare_figure

    series = {"baseline · clip_text": [30.0, 31.0, 29.0], "dct · clip_text": [32.0, 33.0, 31.5],
              "baseline · warp_error": [None, 2e-3, 1e-3], "dct · warp_error": [None, 1e-3, 5e-4]}
    rows = _rows(series)
    assert set(rows["value"]["axis"]) == {"CLIP text alignment (100 x cos)",
                                          "warp error (MSE of RGB in 0-1)"}
    fig = compare_figure(rows["value"])
    panels = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title() for a in panels] == ["CLIP text alignment (100 x cos)",
                                               "warp error (MSE of RGB in 0-1)"]
    for ax, metric in zip(panels, ("clip_text", "warp_error")):
        lines = {ln.get_label(): list(ln.get_ydata()) for ln in ax.get_lines()}
        assert lines == {run: [v for v in series[f"{run} · {metric}"] if v is not None]
                         for run in ("baseline", "dct")}
    assert compare_figure(None) is None
