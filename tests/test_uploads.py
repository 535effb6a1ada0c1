"""One stored copy per distinct upload: named by content hash, copied in chunks under a limit."""
import hashlib
import os

import pytest

from vcstudio.errors import InputError
from vcstudio.io import store_upload
from vcstudio.io.uploads import CHUNK, clean_suffix

VIDEO = (".mp4", ".webm", ".mov", ".avi", ".gif", ".zip")


def test_same_content_is_stored_once(tmp_path):
    folder = tmp_path / "uploads"
    data = os.urandom(3 * CHUNK + 17)  # several chunks
    a, b = tmp_path / "a.mp4", tmp_path / "clip (copy).MP4"
    a.write_bytes(data)
    b.write_bytes(data)
    p1 = store_upload(a, folder, 10 * CHUNK, VIDEO)
    p2 = store_upload(b, folder, 10 * CHUNK, VIDEO)
    p3 = store_upload(data, folder, 10 * CHUNK, VIDEO, name="third.mp4")
    assert p1 == p2 == p3 == folder / f"{hashlib.sha256(data).hexdigest()}.mp4"
    assert p1.read_bytes() == data
    assert sorted(os.listdir(folder)) == [p1.name]  # no second copy, no temp left over
    c = tmp_path / "c.mp4"
    c.write_bytes(data + b"x")
    p4 = store_upload(c, folder, 10 * CHUNK, VIDEO)
    assert p4 != p1 and len(os.listdir(folder)) == 2


def test_seen_again_refreshes_mtime(tmp_path):
    src = tmp_path / "a.gif"
    src.write_bytes(b"GIF89a" + b"\0" * 100)
    p = store_upload(src, tmp_path / "up", 1000)
    os.utime(p, (1, 1))
    assert store_upload(src, tmp_path / "up", 1000) == p and p.stat().st_mtime > 1


def test_limit_is_counted_while_copying(tmp_path):
    folder = tmp_path / "up"
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\1" * (2 * CHUNK + 1))
    with pytest.raises(InputError, match="larger than the 2 MB upload limit"):
        store_upload(big, folder, 2 * CHUNK, VIDEO)
    assert os.listdir(folder) == []  # the partial copy is gone
    with pytest.raises(InputError, match="larger than"):
        store_upload(b"\1" * 11, folder, 10, VIDEO, name="b.mp4")
    exact = tmp_path / "exact.mp4"
    exact.write_bytes(b"\2" * (2 * CHUNK))
    assert store_upload(exact, folder, 2 * CHUNK, VIDEO).stat().st_size == 2 * CHUNK


def test_suffix_checked_and_cleaned(tmp_path):
    folder = tmp_path / "up"
    with pytest.raises(InputError, match="not a supported file type; use one of .avi, .gif"):
        store_upload(b"data", folder, 100, VIDEO, name="notes.txt")
    with pytest.raises(InputError, match="not a supported"):
        store_upload(b"data", folder, 100, VIDEO, name="x.mp4;rm -rf")
    p = store_upload(b"data", folder, 100, ["mp4"], name="../../Clip.MP4")
    assert p.parent == folder and p.suffix == ".mp4"
    assert clean_suffix("a.tar.GZ") == ".gz" and clean_suffix("noext") == ""
    assert clean_suffix("C:\\x\\y.WebM") == ".webm"


def test_empty_and_missing_uploads(tmp_path):
    empty = tmp_path / "e.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        store_upload(empty, tmp_path / "up", 100)
    with pytest.raises(InputError, match="not a file"):
        store_upload(tmp_path, tmp_path / "up", 100, name="d.mp4")
    assert os.listdir(tmp_path / "up") == []


def test_damaged_earlier_copy_is_replaced(tmp_path):
    data = b"the real content"
    folder = tmp_path / "up"
    folder.mkdir()
    stale = folder / f"{hashlib.sha256(data).hexdigest()}.mp4"
    stale.write_bytes(b"the real")  # cut short by a crash of an older version
    assert store_upload(data, folder, 100, name="a.mp4").read_bytes() == data
