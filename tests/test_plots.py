"""Plot and table helpers of the tabs: named series, integer frame column, series of different
units made comparable (normalised, raw value kept), wrapping tables; the streamed edit view."""
import math

import numpy as np
import pytest

from vcstudio.progress import Event
from vcstudio.ui.plots import (FrameSeries, StreamView, plot_frame, plot_update, table_update,
                                table_widths)


def test_plot_frame_names_series_with_integer_frames_and_separates_units():
    # the case: a score of scale ~100 and a warp error of ~0.0001 on one plot
    series = {"clip_text": [31.0, 29.5, 30.25, None], "warp_error": [math.nan, 1e-4, 3e-4, 2e-4]}
    df = plot_frame(series, x="frame")
    assert set(df["series"]) == {"clip_text", "warp_error"}
    assert df["frame"].dtype.kind == "i" and sorted(set(df["frame"])) == [0, 1, 2, 3]
    for name, vals in series.items():
        part = df[df["series"] == name]
        assert part["value"].min() == 0.0 and part["value"].max() == 1.0  # each spans the axis
        finite = [v for v in vals if v is not None and not math.isnan(v)]
        assert list(part["raw"]) == finite  # the raw value, for the tooltip
    assert list(df[df["series"] == "warp_error"]["frame"]) == [1, 2, 3]  # NaN frame 0 skipped
    # steps count from 1; a constant series sits mid-axis; nothing to draw -> None
    steps = plot_frame({"loss": [0.5, 0.5]}, x="step")
    assert list(steps["step"]) == [1, 2] and list(steps["value"]) == [0.5, 0.5]
    assert plot_frame({}) is None and plot_frame({"loss": [None, math.nan]}) is None
    # two runs of one metric share its scale (Compare): still comparable with each other
    two = plot_frame({"baseline · psnr": [20.0, 22.0], "dct · psnr": [24.0, 30.0]})
    assert list(two[two["series"] == "baseline · psnr"]["value"]) == [0.0, 0.2]
    assert list(two[two["series"] == "dct · psnr"]["value"]) == [0.4, 1.0]


def test_plot_update_has_a_titled_legend_of_the_series_and_integer_ticks():
    up = plot_update({"clip_text": [0.3, 0.31], "flicker": [0.9, 0.95]}, "frame", "metric")
    assert up["colors_in_legend"] == ["clip_text", "flicker"] and up["color_title"] == "metric"
    assert up["x_axis_format"] == "d" and up["tooltip"] == ["raw"] and up["x"] == "frame"
    empty = plot_update({}, "frame")
    assert empty["value"] is None and empty["colors_in_legend"] is None  # no empty heading


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
