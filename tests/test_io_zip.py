"""A zip of images is a clip: frames sorted by name, only image members, nothing extracted,
bombs bounded by the upload and frame limits, every broken case a one-line InputError."""
import io
import os
import zipfile

import numpy as np
import pytest

from vcstudio.config import Limits
from vcstudio.errors import InputError
from vcstudio.io import read_video
from vcstudio.io.images import zip_entry_count
from vcstudio.io.synthetic import moving_shape_clip


def png(frame) -> bytes:
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(frame).save(b, format="PNG")
    return b.getvalue()


def make_zip(path, members, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members:
            z.writestr(name, data)
    return path


def one_line(e) -> str:
    assert "\n" not in str(e.value)
    return str(e.value)


def test_zip_frames_in_name_order_and_only_images(tmp_path):
    clip = moving_shape_clip(12, 32)
    order = np.random.default_rng(0).permutation(12)  # written out of order
    members = [(f"clip/frame_{i}.png", png(clip[i])) for i in order]
    members += [("clip/readme.txt", b"not a frame"), ("__MACOSX/clip/._frame_1.png", b"\0junk"),
                ("clip/.hidden.png", b"junk"), ("clip/sub/", b"")]
    z = make_zip(tmp_path / "frames.zip", members)
    got = read_video(z)
    assert np.array_equal(got, clip)  # frame_2 before frame_10, the junk members ignored
    assert np.array_equal(read_video(z, start=1, stride=4, count=3), clip[[1, 5, 9]])


def test_zip_member_paths_never_reach_the_disk(tmp_path, monkeypatch):
    clip = moving_shape_clip(3, 32)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    z = make_zip(tmp_path / "evil.zip", [("../../escape0.png", png(clip[0])),
                                         ("/tmp/escape1.png", png(clip[1])),
                                         ("a/../../escape2.png", png(clip[2]))])
    before = {p for p in tmp_path.rglob("*")}
    got = read_video(z)
    assert got.shape == (3, 32, 32, 3)
    assert {p for p in tmp_path.rglob("*")} == before
    assert not any(os.path.exists(p) for p in ("/tmp/escape1.png", tmp_path.parent / "escape0.png"))


def test_zip_without_images(tmp_path):
    z = make_zip(tmp_path / "docs.zip", [("a.txt", b"hello"), ("b.mp4", b"not here")])
    with pytest.raises(InputError) as e:
        read_video(z)
    assert "holds no images" in one_line(e) and "one image file per frame" in str(e.value)


def test_zip_of_mixed_sizes(tmp_path):
    clip = moving_shape_clip(3, 32)
    z = make_zip(tmp_path / "mixed.zip", [("0.png", png(clip[0])), ("1.png", png(clip[1])),
                                          ("2.png", png(moving_shape_clip(1, 40)[0]))])
    with pytest.raises(InputError) as e:
        read_video(z)
    assert "must share one size: 0.png is 32x32 but 2.png is 40x40" in one_line(e)


def test_zip_bomb_bounded_by_upload_limit(tmp_path):
    # 20 black 128x128 BMPs: 49 KB each unpacked, a few hundred bytes packed
    from PIL import Image

    b = io.BytesIO()
    Image.new("RGB", (128, 128)).save(b, format="BMP")
    z = make_zip(tmp_path / "bomb.zip", [(f"{i}.bmp", b.getvalue()) for i in range(20)])
    assert z.stat().st_size < 20_000
    with pytest.raises(InputError) as e:
        read_video(z, limits=Limits(max_upload_mb=0.5))
    assert "unpacks to 1 MB of images, over the 0.5 MB upload limit" in one_line(e)
    assert read_video(z, limits=Limits(max_upload_mb=2)).shape == (20, 128, 128, 3)


def test_zip_bounded_by_frame_limit(tmp_path):
    clip = moving_shape_clip(6, 16)
    z = make_zip(tmp_path / "many.zip", [(f"{i}.png", png(f)) for i, f in enumerate(clip)])
    with pytest.raises(InputError, match="holds 6 images; at most 4"):
        read_video(z, limits=Limits(max_source_frames=4))
    # entries are counted from the end record before the directory is parsed
    z2 = make_zip(tmp_path / "entries.zip", [(f"{i}.txt", b"") for i in range(30)])
    assert zip_entry_count(z2) == 30
    with pytest.raises(InputError, match="holds 30 entries; at most 24"):
        read_video(z2, limits=Limits(max_source_frames=4))


def test_zip_cut_short_or_damaged_member(tmp_path):
    clip = moving_shape_clip(4, 32)
    z = make_zip(tmp_path / "ok.zip", [(f"{i}.png", png(f)) for i, f in enumerate(clip)])
    cut = tmp_path / "cut.zip"
    cut.write_bytes(z.read_bytes()[:-200])  # the directory at the end is gone
    with pytest.raises(InputError) as e:
        read_video(cut)
    assert "is not a readable zip archive" in one_line(e) and "cut short" in str(e.value)
    bad = make_zip(tmp_path / "bad.zip", [("0.png", png(clip[0])), ("1.png", b"\x89PNG junk")])
    with pytest.raises(InputError) as e:
        read_video(bad)
    assert "1.png in bad.zip is not a readable image" in one_line(e)


def test_zip_member_names_cannot_break_the_message_line(tmp_path):
    z = make_zip(tmp_path / "odd.zip", [("a\nb.png", b"junk")])
    with pytest.raises(InputError) as e:
        read_video(z)
    assert "a?b.png in odd.zip" in one_line(e)
