"""One stored copy per distinct upload: in a folder named by content hash, under the client's
cleaned file name, copied in chunks under a limit."""
import hashlib
import os

import pytest

from vcstudio.errors import InputError
from vcstudio.io import store_upload
from vcstudio.io.uploads import CHUNK, clean_name, clean_suffix

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
    # the first name it came with: a message about the file names what the visitor chose
    assert p1 == p2 == p3 == folder / hashlib.sha256(data).hexdigest() / "a.mp4"
    assert p1.read_bytes() == data
    assert sorted(os.listdir(folder)) == [p1.parent.name]  # no temp left over
    assert os.listdir(p1.parent) == ["a.mp4"]  # no second copy
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
    assert p.parent.parent == folder and p.name == "Clip.mp4"
    assert clean_name("my clip (1).MP4", ".mp4") == "my clip _1_.mp4"
    assert clean_name("../.hidden;rm -rf.mp4", ".mp4") == "hidden_rm -rf.mp4"
    assert clean_name("\u00e9t\u00e9.gif", ".gif") == "_t_.gif"
    assert clean_name("...", ".mp4") == "upload.mp4"
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
    stale = folder / hashlib.sha256(data).hexdigest() / "a.mp4"
    stale.parent.mkdir()
    stale.write_bytes(b"the real")  # cut short by a crash of an older version
    assert store_upload(data, folder, 100, name="a.mp4").read_bytes() == data
