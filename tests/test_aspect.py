"""Width and height separately, crop with a position or pad, the default size that keeps a
clip's aspect, and a preview that is exactly what tuning sees."""
import numpy as np
import pytest

from vcstudio.config import DataConfig, TuneConfig, save_yaml
from vcstudio.errors import InputError
from vcstudio.runs.tav_import import load_tune_config
from vcstudio.io import (check_size, clip_hash, default_size, load_clip, preview_clip,
                         resize_frames, write_frames)
from vcstudio.io.synthetic import moving_shape_clip
from vcstudio.run_context import RunContext

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def bands(h, w, vertical: bool) -> np.ndarray:
    """One frame in three equal colour bands: rows (top->bottom) or columns (left->right)."""
    f = np.zeros((1, h, w, 3), np.uint8)
    n = w if vertical else h
    for i, c in enumerate((RED, GREEN, BLUE)):
        sl = slice(i * n // 3, (i + 1) * n // 3)
        if vertical:
            f[0, :, sl] = c
        else:
            f[0, sl] = c
    return f


def colour(frame) -> tuple:
    return tuple(int(round(v)) for v in frame.reshape(-1, 3).mean(0))


@pytest.mark.parametrize("position,want", [("top", RED), ("center", GREEN), ("bottom", BLUE),
                                           ("left", GREEN), ("right", GREEN)])
def test_crop_position_keeps_that_band_of_a_tall_frame(position, want):
    # 48 rows of bands cropped to 16 rows: no scaling needed, the kept band is exact;
    # left/right place the horizontal axis, so a vertical excess stays centred
    out = resize_frames(bands(48, 32, vertical=False), 32, 16, "crop", position)
    assert out.shape == (1, 16, 32, 3) and colour(out[0]) == want


@pytest.mark.parametrize("position,want", [("left", RED), ("center", GREEN), ("right", BLUE),
                                           ("top", GREEN)])
def test_crop_position_keeps_that_band_of_a_wide_frame(position, want):
    # 96x64 -> scale 1/2 -> 48x32 -> cut to 16x32: one column band per position
    out = resize_frames(bands(64, 96, vertical=True), 16, 32, "crop", position)
    assert out.shape == (1, 32, 16, 3)
    assert np.abs(np.array(colour(out[0][:, 2:-2])) - want).max() <= 2


@pytest.mark.parametrize("position,black", [("top", slice(16, 32)), ("bottom", slice(0, 16)),
                                            ("center", np.r_[0:8, 24:32])])
def test_pad_letterboxes_at_the_position(position, black):
    frame = np.full((1, 16, 32, 3), 200, np.uint8)
    out = resize_frames(frame, 32, 32, "pad", position)
    img_rows = np.setdiff1d(np.arange(32), np.arange(32)[black])
    assert out[0, black].max() == 0 and out[0, img_rows].min() == 200


def test_pad_never_stretches():
    frame = np.full((1, 36, 64, 3), 255, np.uint8)  # 16:9
    out = resize_frames(frame, 32, 32, "pad")
    rows = np.flatnonzero(out[0, :, 16, 0])
    assert out[0, 16].min() == 255 and len(rows) == 18  # 32 x 18: still 16:9


def test_bad_fit_settings():
    f = np.zeros((1, 16, 16, 3), np.uint8)
    with pytest.raises(InputError, match="one of center, top, bottom, left, right"):
        resize_frames(f, 16, 16, "crop", "middle")
    with pytest.raises(InputError, match="one of crop, pad"):
        resize_frames(f, 16, 16, "stretch")


@pytest.mark.parametrize("w,h,msg", [
    (60, 64, "width 60 is not a multiple of 8 .*use 56 or 64"),
    (64, -64, "height -64 is outside 16..1024"),
    (0, 64, "width 0 is outside"),
    (2048, 64, "width 2048 is outside 16..1024"),
    (64.0, 64, "whole number"),
    (True, 64, "whole number"),
])
def test_check_size_messages(w, h, msg):
    with pytest.raises(InputError, match=msg):
        check_size(w, h)


def test_check_size_accepts_separate_sides():
    check_size(256, 144)
    check_size(16, 1024)


@pytest.mark.parametrize("native_hw,max_side,want", [
    ((360, 640), 256, (256, 144)),    # 16:9 landscape
    ((1920, 1080), 512, (288, 512)),  # portrait phone clip
    ((718, 718), 512, (512, 512)),
    ((100, 240), 512, (512, 216)),    # upscaled to the largest size allowed: 213.3 -> 216
    ((360, 640), 250, (248, 136)),    # max not a multiple of 8: 248 x 139.5 -> 136
    ((10, 4000), 256, (256, 16)),     # the short side never drops under min_side
])
def test_default_size_keeps_aspect(native_hw, max_side, want):
    assert default_size(native_hw, max_side) == want


def test_default_size_rejects_nonsense():
    with pytest.raises(InputError):
        default_size((0, 640), 256)
    with pytest.raises(InputError):
        default_size((360, 640), 4)


def test_crop_field_round_trips_yaml(tmp_path):
    assert DataConfig().crop == "center"
    cfg = TuneConfig(data=DataConfig(video_path="c.mp4", width=256, height=144, crop="top"))
    save_yaml(cfg, tmp_path / "c.yaml")
    back = load_tune_config(tmp_path / "c.yaml")
    assert back.data.crop == "top" and (back.data.width, back.data.height) == (256, 144)


def test_load_clip_checks_settings_before_reading(tmp_path):
    with pytest.raises(InputError, match="multiple of 8"):
        load_clip(tmp_path / "missing.mp4", 4, width=60, height=64)
    with pytest.raises(InputError, match="Crop position"):
        load_clip(tmp_path / "missing.mp4", 4, width=64, height=64, crop="up")


def test_preview_is_exactly_what_tune_trains_on(tiny_sd, tmp_path, cache, one_thread):
    from vcstudio.pipelines.tune.loop import tune

    clip = moving_shape_clip(6, 64, dx=4)
    wide = np.concatenate([clip, clip[:, :, ::-1]], axis=2)  # 128 x 64: 2:1
    folder = write_frames(wide, tmp_path / "frames")  # lossless, so frames are comparable
    data = DataConfig(video_path=str(folder), prompt="a red disc", n_frames=4, stride=1,
                      width=48, height=32, resize="crop", crop="left")
    shown = preview_clip(data)
    res = tune(TuneConfig(model=str(tiny_sd), data=data, steps=1, checkpoint_every=0),
               tmp_path / "run", run=RunContext(cache=cache), invert=False)
    assert shown.shape == (4, 32, 48, 3)
    assert np.array_equal(res.frames, shown)
    import json
    assert json.loads((res.run_dir / "meta.json").read_text())["clip_hash"] == clip_hash(shown)
    # and the position matters: the right half is the mirrored clip, not what was tuned on
    right = preview_clip(DataConfig(**{**data.__dict__, "crop": "right"}))
    assert not np.array_equal(right, shown)


def test_the_cli_keeps_the_clips_aspect_like_the_app(tiny_sd, tmp_path, capsys, one_thread):
    """`vcstudio tune --size 64` on a 2:1 clip tunes 64x32 frames, as the app sizes it (its
    clip_size: the same default_size); exact --width/--height that crop say so."""
    from vcstudio.cli import main
    from vcstudio.io import read_video, write_mp4
    from vcstudio.runs.folder import RunFolder

    clip = moving_shape_clip(4, 64, dx=3.0)
    wide = write_mp4(np.concatenate([clip, clip[:, :, ::-1]], axis=2), tmp_path / "wide.mp4")
    assert default_size((64, 128), 64) == (64, 32)  # what the app's upload sets
    common = ["tune", "--video", str(wide), "--prompt", "a red circle", "--model", str(tiny_sd),
              "--frames", "4", "--stride", "1", "--steps", "2", "--inversion-steps", "2"]
    assert main([*common, "--size", "64", "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert read_video(RunFolder(tmp_path / "a").source_path).shape == (4, 32, 64, 3)
    assert "cropped" not in err
    assert main([*common, "--width", "64", "--height", "64", "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert read_video(RunFolder(tmp_path / "b").source_path).shape == (4, 64, 64, 3)
    assert "note: the clip (128x64) is cropped to 64x64 (center)" in err
