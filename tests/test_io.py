"""Video I/O: round trips, sampling, resizing, and every bad input -> InputError."""
import numpy as np
import pytest

from vcstudio.config import Limits
from vcstudio.errors import InputError
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


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def _ffmpeg_write(clip, path, codec, **kw):
    import imageio.v2 as iio2

    w = iio2.get_writer(str(path), format="FFMPEG", fps=8, codec=codec, macro_block_size=1,
                        ffmpeg_log_level="error", **kw)
    for f in clip:
        w.append_data(f)
    w.close()
    return path


@pytest.mark.parametrize("ext,codec,kw", [
    (".webm", "libvpx-vp9", {}),
    (".mov", "libx264", {"pixelformat": "yuv420p"}),
    (".avi", "mjpeg", {"pixelformat": "yuvj420p"}),
])
def test_webm_mov_avi_read(tmp_path, ext, codec, kw):
    clip = moving_shape_clip(6, 64)
    back = read_video(_ffmpeg_write(clip, tmp_path / f"a{ext}", codec, **kw))
    assert back.shape == clip.shape
    assert np.abs(back.astype(int) - clip).mean() < 8


def test_text_renamed_mp4_says_it_is_not_a_video(tmp_path):
    junk = tmp_path / "notes.mp4"
    junk.write_text("shopping list: eggs, milk\n" * 20)
    with pytest.raises(InputError) as e:
        read_video(junk)
    msg = _one_line(e)
    assert "holds text, not video" in msg and "give a video file" in msg


def test_empty_file_says_upload_again(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError) as e:
        read_video(empty)
    assert "empty (0 bytes); upload the file again" in _one_line(e)


def test_truncated_mp4_index_at_end(tmp_path):
    # our writer puts the mp4 index (moov) at the end: cutting the file loses it
    path = write_mp4(moving_shape_clip(30, 64), tmp_path / "t.mp4")
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError) as e:
        read_video(cut, count=30)
    assert "cut short" in _one_line(e) and "upload the complete file" in str(e.value)


def test_truncated_mp4_index_first_is_not_read_silently(tmp_path):
    # index first (faststart, as phones and web exports write): a cut file still opens and
    # simply stops; before, read_video returned the first half as if it were the whole clip
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 255, (30, 64, 64, 3), dtype=np.uint8)  # noise: big frames
    path = _ffmpeg_write(clip, tmp_path / "fs.mp4", "libx264", pixelformat="yuv420p",
                         ffmpeg_params=["-crf", "18", "-movflags", "+faststart"])
    assert read_video(path).shape[0] == 30
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        read_video(cut)
    msg = _one_line(e)
    assert "is cut short: only" in msg and "of its 30 frames decode" in msg
    assert read_video(cut, count=5).shape[0] == 5  # the intact head is still usable


def test_truncated_gif(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (10, 64, 64, 3), dtype=np.uint8)
    path = write_gif(noise, tmp_path / "a.gif")
    data = path.read_bytes()
    cut = tmp_path / "cut.gif"
    cut.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(InputError) as e:
        read_video(cut)
    assert "is damaged after frame" in _one_line(e)


def _save_frames(folder, frames, names=None):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / (names[i] if names else f"{i:03d}.png"))
    return folder


def test_folder_frames_sorted_as_numbers(tmp_path):
    clip = moving_shape_clip(11, 32)
    folder = _save_frames(tmp_path / "f", clip, [f"frame_{i}.png" for i in range(11)])
    (folder / ".DS_Store").write_bytes(b"\0\1")
    assert np.array_equal(read_video(folder), clip)  # frame_2 before frame_10


def test_folder_of_mixed_sizes_names_the_odd_frame(tmp_path):
    frames = list(moving_shape_clip(4, 32))
    frames[2] = moving_shape_clip(1, 48)[0]
    folder = _save_frames(tmp_path / "mixed", frames)
    with pytest.raises(InputError) as e:
        read_video(folder)
    msg = _one_line(e)
    assert "must share one size" in msg and "000.png is 32x32" in msg
    assert "002.png is 48x48" in msg and "1 of 4 frames differ" in msg
    with pytest.raises(InputError, match="must share one size"):  # sampling does not hide it
        read_video(folder, count=2)


def test_oversized_image_refused_before_decoding(tmp_path):
    from PIL import Image

    folder = tmp_path / "big"
    folder.mkdir()
    Image.new("RGB", (4200, 16)).save(folder / "0.png")
    with pytest.raises(InputError, match="resolution 4200x16"):
        read_video(folder)


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
