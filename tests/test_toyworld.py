"""Toy world: generator determinism, held-out split, vocabulary, and the checker vs ground truth."""
import json

import numpy as np
import pytest
import torch

from vcstudio.toyworld import checker, world
from vcstudio.toyworld.data import BatchSampler
from vcstudio.toyworld.examples import test_clip as make_test_clip
from vcstudio.toyworld.examples import write_examples
from vcstudio.toyworld.render import render_clip, render_image, render_images
from vcstudio.toyworld.world import Scene, caption, combos, random_scene


def test_same_seed_same_scenes_and_pixels():
    a = [random_scene(np.random.default_rng(7)) for _ in range(1)] + \
        [random_scene(np.random.default_rng(8))]
    b = [random_scene(np.random.default_rng(7)), random_scene(np.random.default_rng(8))]
    assert a == b and a[0] != a[1]
    assert np.array_equal(render_images(a), render_images(b))
    s1, s2 = BatchSampler(3, 32), BatchSampler(3, 32)
    (x1, c1), (x2, c2) = s1(16), s2(16)
    assert c1 == c2 and torch.equal(x1, x2)
    x3, c3 = BatchSampler(4, 32)(16)
    assert c3 != c1
    assert x1.shape == (16, 3, 32, 32) and x1.min() >= -1 and x1.max() <= 1


def test_caption_is_plain_english():
    s = Scene("circle", "red", "beach", "large", "striped")
    assert caption(s, "right") == "a large red striped circle moving right on the beach"
    assert caption(Scene("star", "blue", "night")) == "a blue star in the night sky"
    with pytest.raises(ValueError):
        Scene("hexagon", "red", "beach")


def test_held_out_combinations_never_drawn_for_training():
    held = set(combos("heldout"))
    train = set(combos("train"))
    assert held and not (held & train)
    assert held | train == set(combos("all"))
    assert 0.08 < len(held) / len(combos("all")) < 0.2
    # every single attribute value still appears in training
    for i, values in enumerate((world.SHAPES, world.COLOURS, world.BACKGROUNDS)):
        assert {c[i] for c in train} == set(values)
    _, _, attrs = BatchSampler(0, 32).draw(3000)
    drawn = {(world.SHAPES[s], list(world.COLOURS)[c], list(world.BACKGROUNDS)[b])
             for s, c, b in attrs[:, :3]}
    assert not (drawn & held) and len(drawn) > 0.9 * len(train)


def test_tokenizer_has_one_token_per_world_word(tmp_path):
    from vcstudio.toyworld.models import build_tokenizer

    tok = build_tokenizer(tmp_path)
    vocab = world.vocabulary()
    assert {"circle", "striped", "beach", "bouncing", "sunset"} <= set(vocab)
    for w in vocab:
        ids = tok(w).input_ids
        assert len(ids) == 3, (w, ids)  # <start> word <end>
    cap = "a small pink dotted cross moving up in the night sky"
    assert len(tok(cap).input_ids) == len(cap.split()) + 2


@pytest.mark.parametrize("size", [64, 96])
def test_checker_agrees_with_ground_truth_on_clean_renders(size):
    rng = np.random.default_rng(11)
    scenes = [random_scene(rng, "all") for _ in range(240)]
    images = render_images(scenes, size)
    got = [checker.detect(im) for im in images]
    shape = np.mean([d.shape == s.shape for d, s in zip(got, scenes)])
    colour = np.mean([d.colour == s.colour for d, s in zip(got, scenes)])
    bg = np.mean([d.background == s.background for d, s in zip(got, scenes)])
    centre = np.mean([abs(d.centre[0] - s.cx) < 0.02 and abs(d.centre[1] - s.cy) < 0.02
                      for d, s in zip(got, scenes)])
    assert shape >= 0.95 and colour >= 0.95 and bg >= 0.95 and centre >= 0.95, (shape, colour, bg, centre)


def test_checker_reports_no_object_on_empty_background():
    img = render_image(Scene("circle", "red", "night"))
    rows = world.background_rows(64)[list(world.BACKGROUNDS).index("night")]
    empty = np.broadcast_to(rows[:, None, :], img.shape).astype(np.uint8).copy()
    d = checker.detect(empty)
    assert not d.found and d.background == "night"


def test_clip_motions_are_tracked():
    right = make_test_clip("right")
    tr = checker.track(right)
    assert np.all(np.diff(tr[:, 0]) > 0.02) and np.ptp(tr[:, 1]) < 0.01
    # the edit pair: same motion, other object -> the tracks correlate
    edit = make_test_clip("right", shape="square", colour="blue")
    assert checker.track_correlation(tr, checker.track(edit)) > 0.99
    left = make_test_clip("left")
    assert checker.track_correlation(tr, checker.track(left)) < -0.99
    grow = checker.track(make_test_clip("growing"))
    assert np.all(np.diff(grow[:, 2]) > 0)
    bounce = checker.track(make_test_clip("bouncing"))
    assert bounce[0, 1] > bounce[2, 1] < bounce[4, 1]  # up and back down to the ground
    # every frame of every motion stays inside the image margins
    rng = np.random.default_rng(0)
    for m in world.MOTIONS:
        for _ in range(20):
            geo = world.trajectory(world.random_clip(rng, motion=m))
            ext = world.EXTENT * geo[:, 2]
            assert np.all(geo[:, 0] - ext >= world.MARGIN - 1e-6) and np.all(geo[:, 0] + ext <= 1 - world.MARGIN + 1e-6)
            assert np.all(geo[:, 1] - ext >= world.MARGIN - 1e-6) and np.all(geo[:, 1] + ext <= 1 - world.MARGIN + 1e-6)


def test_checker_reads_every_frame_of_random_clips():
    rng = np.random.default_rng(5)
    ok = n = 0
    for _ in range(24):
        clip = world.random_clip(rng, "all")
        for d in checker.detect_clip(render_clip(clip)):
            ok += (d.shape == clip.scene.shape) and (d.colour == clip.scene.colour)
            n += 1
    assert ok / n >= 0.95


def test_examples_written_and_readable(tmp_path):
    from vcstudio.io import read_video

    out = write_examples(tmp_path / "ex")
    index = json.loads((out / "prompts.json").read_text())
    assert len(index) >= 5
    words = set(world.vocabulary())
    for item in index:
        frames = read_video(out / item["video"])
        assert frames.shape == (8, 64, 64, 3)
        for p in [item["prompt"], *item["edits"]]:
            assert set(p.split()) <= words
        # H.264 keeps the colour and the shape readable
        d = checker.detect(frames[0])
        assert item["prompt"].split()[1:].count(d.colour) or d.colour in item["prompt"], (item, d)
        assert d.shape in item["prompt"], (item, d)
