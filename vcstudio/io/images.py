"""Still images and clips given as images: one image file, a folder of frames, a zip of frames.

A folder or zip is a clip whose frames are its image files sorted by name, numbers in names
compared as numbers (``f2.png`` before ``f10.png``). Every frame must have the same size: a
clip whose frames differ is refused with a message naming the first odd one, never resized
behind the user's back (the same rule for tune, eval and eval-vcd, which all read through
:func:`vcstudio.io.read_video`).

A zip is read in memory, member by member: nothing is extracted, so no member name (``../x``,
``/etc/x``) can reach the disk. Zip bombs are bounded before anything is decompressed: at most
``2 * max_source_frames + 16`` entries (counted from the archive's end record, before the
directory is parsed), at most ``max_source_frames`` images, and their uncompressed sizes
together within ``max_upload_mb``; each image's pixel size is read from its header and checked
before it is decoded.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Callable, Optional

import numpy as np

from ..config import Limits
from ..errors import InputError
from .frames import as_rgb, check_source_size, frame_indices, shown

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
_EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that turn the picture by 90 degrees


def natural_key(name: str) -> tuple:
    """Sort key: digit runs compare as numbers, the rest case-insensitively."""
    parts = re.split(r"(\d+)", name.replace("\\", "/").lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def _reason(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return shown(lines[-1] if lines else type(e).__name__, 160)


@dataclass
class _Frame:
    name: str  # the file or member name, for sorting and messages
    open: Callable[[], IO[bytes]]


def _header(fr: _Frame, what: str) -> tuple[int, int]:
    """(height, width) as displayed (EXIF orientation applied), from the header only."""
    from PIL import Image

    try:
        with fr.open() as fp, Image.open(fp) as im:
            w, h = im.size
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception as e:  # pillow and zipfile raise many types for broken data
        raise InputError(f"{shown(fr.name)}{what} is not a readable image ({_reason(e)}); "
                         "remove or replace it (PNG or JPEG).") from None
    return (w, h) if orientation in _SWAPS_SIDES else (h, w)


def _decode(fr: _Frame, what: str, hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image, ImageOps

    try:
        with fr.open() as fp, Image.open(fp) as im:
            img = as_rgb(np.asarray(ImageOps.exif_transpose(im).convert("RGB")))
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{shown(fr.name)}{what} could not be decoded ({_reason(e)}); it may "
                         "be cut short: remove or replace it.") from None
    if img.shape[:2] != hw:  # a header that lies about the size
        raise InputError(f"{shown(fr.name)}{what} decodes to {img.shape[1]}x{img.shape[0]}, not "
                         f"the {hw[1]}x{hw[0]} its header says; re-save it.")
    return img


def read_image(path: str | Path, limits: Limits = Limits()) -> np.ndarray:
    """One image file -> uint8 (H, W, 3); its size is checked before it is decoded."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Image not found: {path}")
    fr = _Frame(path.name, partial(open, path, "rb"))
    try:
        h, w = _header(fr, "")
    except InputError:
        raise InputError(f"Could not read {shown(path.name)} as an image; use a PNG or JPEG "
                         "file.") from None
    check_source_size(h, w, limits, shown(path.name))
    return _decode(fr, "", (h, w))


def _read_sequence(frames: list[_Frame], where: str, start: int, stride: int,
                   count: Optional[int], limits: Limits) -> np.ndarray:
    """Sorted frames -> uint8 (F, H, W, 3): sizes checked on every header, then only the
    sampled frames decoded."""
    if len(frames) > limits.max_source_frames:
        raise InputError(f"{where} holds {len(frames)} images; at most "
                         f"{limits.max_source_frames} are accepted: use fewer frames.")
    what = f" in {where}"
    sizes = [_header(fr, what) for fr in frames]
    odd = [i for i, s in enumerate(sizes) if s != sizes[0]]
    if odd:
        (h0, w0), (h1, w1) = sizes[0], sizes[odd[0]]
        raise InputError(
            f"The frames{what} must share one size: {shown(frames[0].name)} is {w0}x{h0} but "
            f"{shown(frames[odd[0]].name)} is {w1}x{h1} ({len(odd)} of {len(frames)} frames "
            "differ); resize them to one size, or give the clip as a video file.")
    check_source_size(*sizes[0], limits, where)
    idx = frame_indices(len(frames), start, stride, count)
    return np.stack([_decode(frames[i], what, sizes[0]) for i in idx])


def read_image_folder(path: str | Path, start: int = 0, stride: int = 1,
                      count: Optional[int] = None, limits: Limits = Limits()) -> np.ndarray:
    """A folder of frames (its image files, sorted by name; hidden files skipped)."""
    path = Path(path)
    files = sorted((p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                    and p.suffix.lower() in IMAGE_EXTS), key=lambda p: natural_key(p.name))
    if not files:
        raise InputError(f"The folder {shown(str(path), 160)} holds no image files "
                         f"({', '.join(sorted(IMAGE_EXTS))}).")
    return _read_sequence([_Frame(p.name, partial(open, p, "rb")) for p in files],
                          f"the folder {shown(path.name)}", start, stride, count, limits)


def _is_frame_member(info: zipfile.ZipInfo) -> bool:
    parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if info.is_dir() or not parts or Path(parts[-1]).suffix.lower() not in IMAGE_EXTS:
        return False
    # macOS resource forks (__MACOSX/, ._name) and other hidden files are no frames
    return not any(p.startswith(".") or p == "__MACOSX" for p in parts)


def zip_entry_count(path: str | Path) -> Optional[int]:
    """The entry count an archive's end record declares (zip64 included), read before the
    central directory is parsed; None when there is no end record (not a zip)."""
    path = Path(path)
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        tail_start = max(0, size - (22 + 65535))  # end record + the longest comment
        f.seek(tail_start)
        tail = f.read()
        pos = tail.rfind(b"PK\x05\x06")
        if pos < 0 or len(tail) < pos + 22:
            return None
        n = int.from_bytes(tail[pos + 10:pos + 12], "little")
        loc = pos - 20  # zip64 end-record locator, right before the end record
        if n == 0xFFFF and loc >= 0 and tail[loc:loc + 4] == b"PK\x06\x07":
            f.seek(int.from_bytes(tail[loc + 8:loc + 16], "little"))
            rec = f.read(56)
            if rec[:4] == b"PK\x06\x06" and len(rec) == 56:
                n = int.from_bytes(rec[32:40], "little")
    return n


def read_image_zip(path: str | Path, start: int = 0, stride: int = 1,
                   count: Optional[int] = None, limits: Limits = Limits()) -> np.ndarray:
    """A zip of frames: its image members (any folder depth), sorted by name; other members
    are ignored. Read in memory; see the module docstring for the bounds."""
    path = Path(path)
    name = shown(path.name)
    n_entries = zip_entry_count(path)
    max_entries = 2 * limits.max_source_frames + 16
    if n_entries is not None and n_entries > max_entries:
        raise InputError(f"{name} holds {n_entries} entries; at most {max_entries} are accepted "
                         f"({limits.max_source_frames} frames): zip only the clip's frames.")
    try:
        zf = zipfile.ZipFile(path)
    except Exception as e:  # BadZipFile, OSError, a damaged directory
        raise InputError(f"{name} is not a readable zip archive ({_reason(e)}); it may be cut "
                         "short: zip the frames again and upload the whole file.") from None
    with zf:
        infos = [i for i in zf.infolist() if _is_frame_member(i)]
        if not infos:
            raise InputError(f"{name} holds no images ({', '.join(sorted(IMAGE_EXTS))}); put "
                             "the clip's frames in the zip, one image file per frame.")
        if any(i.flag_bits & 0x1 for i in infos):
            raise InputError(f"{name} is password-protected; zip the frames without a password.")
        unpacked = sum(i.file_size for i in infos)
        if unpacked > limits.max_upload_mb * 2**20:
            raise InputError(f"{name} unpacks to {unpacked / 2**20:.0f} MB of images, over the "
                             f"{limits.max_upload_mb:g} MB upload limit; use fewer or smaller "
                             "frames, or upload a video.")
        infos.sort(key=lambda i: natural_key(i.filename))
        frames = [_Frame(i.filename, partial(zf.open, i)) for i in infos]
        return _read_sequence(frames, name, start, stride, count, limits)
