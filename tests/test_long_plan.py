"""The Long tab's plan: the scene graph however the prompts came (a story, or one prompt per
line), and the timeline figure (frames on x, one row per window with its prompt, overlaps
shaded, fusion weights, a legend) at a readable size."""
from __future__ import annotations

import numpy as np

from vcstudio.jobs.long import plan
from vcstudio.ui import long_tab
from vcstudio.ui.figures import plan_timeline

PROMPTS = ["a dog runs on the beach", "it jumps into the sea while a cat sleeps",
           "a beach at sunset"]


def test_prompts_one_per_line_make_a_scene_graph_of_the_timeline():
    graph, rows, image, windows = long_tab.plan("", "\n".join(PROMPTS) + "\n\n", 30, 8, 4,
                                                "pyramid")
    assert graph["source"] == "prompts (one per segment)"
    assert graph["segments"] == PROMPTS  # each line is one segment, as written
    assert [(t["prompt"], t["first_frame"], t["last_frame"]) for t in graph["timeline"]] == [
        (PROMPTS[0], 0, 9), (PROMPTS[1], 10, 19), (PROMPTS[2], 20, 29)]
    assert rows == [[p, 10 * i, 10 * i + 9] for i, p in enumerate(PROMPTS)]
    # parsed like a story: "it" is the dog, one beach across the lines, the cat's clause
    # happens during its line's segment, the lines follow each other
    names = [e["name"] for e in graph["entities"]]
    assert names.count("dog") == 1 and names.count("beach") == 1 and "cat" in names
    mains = [e for e in graph["events"] if e["attached_to"] is None]
    assert [e["prompt"] for e in mains] == PROMPTS and graph["order"] == [e["id"] for e in mains]
    jump = mains[1]
    dog = next(e["id"] for e in graph["entities"] if e["name"] == "dog")
    assert jump["subjects"] == [dog]
    during = [t for t in graph["temporal"] if t["type"] == "during"]
    assert [(t["b"], t["cue"]) for t in during] == [(jump["id"], "same prompt")]
    before = [(t["a"], t["b"]) for t in graph["temporal"] if t["type"] == "before"]
    assert before == [(mains[0]["id"], mains[1]["id"]), (mains[1]["id"], mains[2]["id"])]
    # a story still comes out as before, with its timeline
    story = plan("a dog runs on the beach, then it jumps into the sea", [], 20, 8, 4,
                 "uniform")["graph"]
    assert story["source"] == "story" and story["segments"] == [
        "a dog runs on the beach", "a dog jumps into the sea"]
    assert [(t["first_frame"], t["last_frame"]) for t in story["timeline"]] == [(0, 9),
                                                                                 (10, 19)]


def test_the_plan_figure_is_a_timeline_with_axes_rows_overlaps_and_a_legend():
    p = plan("", ["a red circle moves right on the beach", "a blue square moves left"], 32, 8,
             4, "pyramid")
    lay, segs = p["layout"], p["segments"]
    assert lay.starts == [0, 4, 8, 12, 16, 20, 24]
    fig = plan_timeline(lay, segs, p["prompts"])
    ax_seg, ax = fig.axes
    assert ax.get_xlabel() == "frame" and ax.get_xlim() == (-0.5, 31.5)
    assert all(float(t).is_integer() for t in ax.get_xticks())
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [f"w{i}: {s}-{s + 7}" for i, s in enumerate(lay.starts)]  # a row each
    assert ax.get_ylim() == (6.5, -0.5)  # window 0 on top
    # each window's row carries its prompt; the segments' row writes them out
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 7 and texts[0].startswith("a red circle") \
        and texts[-1].startswith("a blue square")
    assert [t.get_text() for t in ax_seg.texts] == [s.prompt for s in segs]
    # the overlap shading spans exactly the frames two windows share (4..27)
    spans = [pt for pt in ax.patches if pt.get_facecolor()[:3] == (217 / 255,) * 3]
    assert len(spans) == 1
    x0 = spans[0].get_x()
    assert (x0, x0 + spans[0].get_width()) == (3.5, 27.5)
    assert np.array_equal(np.flatnonzero(lay.coverage() > 1), np.arange(4, 28))
    # the fusion weights: a filled profile per window whose peak is the window's centre
    fills = ax.collections
    assert len(fills) == 7
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:2] == [s.prompt for s in segs]
    assert "frames in 2+ windows (fused)" in legend and any("fusion weight" in t for t in legend)
    assert "7 windows of 8 frames, stride 4, pyramid fusion, over 32 frames" in \
        ax_seg.get_title()
    # readable: about 1000 px wide, a row of ~34 px per window (not a 100 px strip)
    w, h = fig.get_size_inches() * fig.dpi
    assert w >= 900 and h >= 300


def test_the_tabs_plan_picture_is_the_figure():
    graph, rows, image, windows = long_tab.plan("a red circle moves right, then a blue "
                                                "square moves left", "", 20, 8, 4, "gaussian")
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert image.shape[1] >= 900 and image.shape[0] >= 300  # not a strip
    assert len(windows) == 4 and windows[-1]["frames"] == "12-19"


def test_a_wan_plan_counts_windows_in_latent_frames_and_the_timeline_in_video_frames():
    """Wan2.1 packs 4 video frames per latent frame after the first: 29 frames are 8 latent
    frames, a window of 13 frames 4 of them, a stride of 8 frames 2. The windows' table gives
    both units; the segments table stays in the video frames the user counts."""
    graph, rows, image, windows = long_tab.plan("", "a red circle\na blue square", 29, 13, 8,
                                                "pyramid", temporal=4)
    assert [w["latent_frames"] for w in windows] == ["0-3", "2-5", "4-7"]
    assert [w["frames"] for w in windows] == ["0-12", "5-20", "13-28"]
    assert rows == [["a red circle", 0, 13], ["a blue square", 14, 28]]
    assert image.ndim == 3 and image.shape[1] > 900
