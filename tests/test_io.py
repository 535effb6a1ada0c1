"""Video I/O: round trips, sampling, resizing, and every bad input -> InputError."""
import numpy as np
import pytest

from vcstudio.config import Limits
from vcstudio.errors import InputError, VcsError
from vcstudio.io import clip_hash, load_clip, read_video, resize_frames, write_gif, write_mp4
from vcstudio.io.synthetic import moving_shape_clip


def test_mp4_and_gif_round_trip(tmp_path):
    clip = moving_shape_clip(10, 64)
    for path in (write_mp4(clip, tmp_path / "a.mp4"), write_gif(clip, tmp_path / "a.gif")):
        back = read_video(path)
        assert back.shape == clip.shape and back.dtype == np.uint8
        assert np.abs(back.astype(int) - clip).mean() < 8  # lossy codecs, same content


def test_sampling_start_stride_count(tmp_path):
    clip = moving_shape_clip(12, 32)
    folder = tmp_path / "frames"
    folder.mkdir()
    from PIL import Image
    for i, f in enumerate(clip):
        Image.fromarray(f).save(folder / f"{i:03d}.png")
    got = read_video(folder, start=1, stride=3, count=4)
    assert np.array_equal(got, clip[[1, 4, 7, 10]])


def test_too_few_frames_says_how_many(tmp_path):
    path = write_mp4(moving_shape_clip(6, 32), tmp_path / "s.mp4")
    with pytest.raises(InputError, match="has 6 frames") as e:
        read_video(path, stride=2, count=5)
    assert "3 frames fit" in str(e.value)


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_resize_keeps_aspect(mode):
    frames = np.zeros((1, 40, 80, 3), np.uint8)
    frames[:, :, 38:42] = 255  # a vertical bar in the middle
    out = resize_frames(frames, 64, 64, mode)
    assert out.shape == (1, 64, 64, 3)
    if mode == "pad":  # 80x40 -> 64x32 letterboxed: black bands top and bottom
        assert out[0, :15].max() == 0 and out[0, -15:].max() == 0
        assert out[0, 32, 31:33].min() > 200
    else:  # 80x40 -> 128x64 cropped to the middle 64 columns: the bar stays centred, full height
        assert out[0, :, 30:34].min() > 200


def test_resize_rejects_non_multiple_of_8():
    with pytest.raises(InputError, match="multiples of 8"):
        resize_frames(np.zeros((1, 8, 8, 3), np.uint8), 60, 64)


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_video(tmp_path / "missing.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_video(empty)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(InputError, match="Could not"):
        read_video(junk)
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(InputError, match="not a supported video"):
        read_video(txt)
    img = tmp_path / "one.png"
    from PIL import Image
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    with pytest.raises(InputError, match="single image"):
        read_video(img)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(InputError, match="no image files"):
        read_video(tmp_path / "nothing")


def test_truncated_file_is_an_input_error(tmp_path):
    path = write_mp4(moving_shape_clip(30, 64), tmp_path / "t.mp4")
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(VcsError):
        read_video(cut, count=30)


def test_limits(tmp_path):
    path = write_mp4(moving_shape_clip(4, 64), tmp_path / "a.mp4")
    with pytest.raises(InputError, match="limit"):
        load_clip(path, 200, limits=Limits(max_frames=128))
    with pytest.raises(InputError, match="outside"):
        load_clip(path, 2, width=4096, height=64)
    with pytest.raises(InputError, match="resolution"):
        read_video(path, limits=Limits(min_side=100))


def test_clip_hash_changes_with_content():
    a = moving_shape_clip(4, 32)
    b = a.copy()
    b[0, 0, 0, 0] ^= 1
    assert clip_hash(a) == clip_hash(a.copy()) and clip_hash(a) != clip_hash(b)
