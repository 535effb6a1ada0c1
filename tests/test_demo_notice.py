"""Real footage on the demo model (issue 29, part 5): the toy-scene rule on known frames, and the
notice the CLI's tune and the Edit tab give before any tune."""
import cv2
import numpy as np
import pytest
from skimage import data

from vcstudio.io import read_video, write_mp4
from vcstudio.models.loading import EMBEDDED_MODEL, REAL_FOOTAGE_NOTICE
from vcstudio.toyworld import world
from vcstudio.toyworld.checker import looks_like_toy_scene
from vcstudio.toyworld.render import render_images

EXAMPLE = sorted((EMBEDDED_MODEL.parent / "examples").glob("*.mp4"))[0]
PHOTOS = ("astronaut", "chelsea", "coffee")


def _photo(name: str, size=None) -> np.ndarray:
    img = np.ascontiguousarray(getattr(data, name)()[..., :3])
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA) if size else img


@pytest.mark.parametrize("size,n", [(64, 60), (256, 12)])
def test_rendered_toy_frames_look_like_toy_scenes(size, n):
    rng = np.random.default_rng(2)
    frames = render_images([world.random_scene(rng, "all") for _ in range(n)], size)
    assert all(looks_like_toy_scene(f) for f in frames)


def test_bundled_examples_look_like_toy_scenes_after_h264():
    examples = sorted((EMBEDDED_MODEL.parent / "examples").glob("*.mp4"))
    assert len(examples) >= 5
    assert all(looks_like_toy_scene(read_video(p, 0, 1, 1)[0]) for p in examples)


@pytest.mark.parametrize("name", PHOTOS)
def test_real_photos_do_not_look_like_toy_scenes(name):
    assert not looks_like_toy_scene(_photo(name))
    assert not looks_like_toy_scene(_photo(name, 64))
    # a photo between black letterbox bars: the borders are a toy background, the photo no object
    boxed = np.full((64, 64, 3), 18, np.uint8)
    boxed[:, 12:52] = cv2.resize(_photo(name), (40, 64), interpolation=cv2.INTER_AREA)
    assert not looks_like_toy_scene(boxed)


def test_an_empty_toy_background_is_no_scene():
    rows = world.background_rows(64)[list(world.BACKGROUNDS).index("sky")]
    empty = np.broadcast_to(rows[:, None, :], (64, 64, 3)).round().astype(np.uint8)
    assert not looks_like_toy_scene(empty)


@pytest.fixture
def photo_clip(tmp_path):
    return write_mp4(np.stack([_photo("chelsea", 64)] * 4), tmp_path / "up" / "cat.mp4")


def test_cli_tune_says_the_demo_model_needs_a_real_model_for_real_footage(photo_clip, capsys):
    """Before tuning (here the job then refuses --steps 0: nothing is tuned), on the demo
    model only, and only for a clip that is no toy scene; tune and compare alike."""
    from vcstudio.cli import main

    def tune(video, model):
        rc = main(["tune", "--video", str(video), "--prompt", "a cat", "--model", model,
                   "--steps", "0"])
        return rc, capsys.readouterr().err

    rc, err = tune(photo_clip, str(EMBEDDED_MODEL))
    assert rc == 2 and "steps (--steps) must be within" in err
    assert f"note: {REAL_FOOTAGE_NOTICE}" in err
    assert err.index("does not look like a toy-world scene") < err.index("error:")
    assert "--model" in REAL_FOOTAGE_NOTICE and "VCSTUDIO_MODEL" in REAL_FOOTAGE_NOTICE
    assert "toy-world scene" not in tune(EXAMPLE, str(EMBEDDED_MODEL))[1]  # a toy clip
    assert "toy-world scene" not in tune(photo_clip, str(photo_clip.parent))[1]  # other model
    # compare tunes too: the same note first
    rc = main(["compare", "--video", str(photo_clip), "--prompt", "a cat", "--edit-prompt",
               "a dog", "--model", str(EMBEDDED_MODEL), "--steps", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and f"note: {REAL_FOOTAGE_NOTICE}" in err and "error:" in err


def test_edit_tab_notices_real_footage_on_the_demo_model(photo_clip, tmp_path):
    from vcstudio.config import Limits
    from vcstudio.session import Studio
    from vcstudio.ui.edit_tab import footage_notice

    studio = Studio(tmp_path / "data", limits=Limits(), upload_roots=[photo_clip.parent])
    try:
        studio.model, studio.embedded = str(EMBEDDED_MODEL), True
        sid = studio.new_session().id
        assert footage_notice(studio, sid, str(photo_clip)) == REAL_FOOTAGE_NOTICE
        assert footage_notice(studio, sid, str(EXAMPLE)) == ""  # a toy clip
        assert footage_notice(studio, sid, None) == ""
        bad = photo_clip.parent / "broken.mp4"
        bad.write_bytes(b"not a video")
        assert footage_notice(studio, sid, str(bad)) == ""  # the preview reports that one
        studio.model, studio.embedded = "some/real-model", False
        assert footage_notice(studio, sid, str(photo_clip)) == ""
    finally:
        studio.close()
