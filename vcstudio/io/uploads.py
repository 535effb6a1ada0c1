"""One stored copy per distinct upload: ``<folder>/<sha256 of the content>/<client's name>``.

The content hash keeps one copy however often a page re-reads the same file; the client's
(cleaned) file name inside it is what a message about the file names, so a visitor reads
"Could not open notes.mp4 as a video", not a 64-digit hash."""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable, Optional

from ..errors import InputError
from .atomic import move_into_place
from .frames import shown

CHUNK = 1 << 20


def clean_name(name: str, suffix: str) -> str:
    """A client's file name reduced to letters, digits, ``._-`` and spaces (at most 80
    characters, no leading dot), ending in ``suffix``: safe to store, still recognisable."""
    stem = os.path.splitext(Path(name.replace("\\", "/")).name)[0]
    stem = re.sub(r"[^A-Za-z0-9._ -]", "_", stem).strip(" .")[:80]
    return (stem or "upload") + suffix


def clean_suffix(name: str) -> str:
    """The lower-cased extension of a client's file name, letters and digits only ('' if
    none): the stored name never carries anything else the client sent."""
    suffix = os.path.splitext(Path(name.replace("\\", "/")).name)[1]
    suffix = re.sub(r"[^a-z0-9]", "", suffix.lower())[:10]
    return f".{suffix}" if suffix else ""


def store_upload(src: str | os.PathLike | bytes, folder: str | os.PathLike, limit_bytes: int,
                 allowed_suffixes: Optional[Iterable[str]] = None,
                 name: Optional[str] = None) -> Path:
    """Copy ``src`` (a file path or the raw bytes) into ``folder`` as
    ``<sha256>/<name>`` (:func:`clean_name`).

    The copy goes in 1 MiB chunks and stops as soon as it passes ``limit_bytes`` (the size is
    counted while copying, not trusted from the file system: the file may still grow). The
    name comes from ``name`` (the client's file name) or else ``src``'s name; its suffix must
    be one of ``allowed_suffixes`` when given. When the same content was stored before with
    that suffix, that file is returned (its mtime refreshed, so age-based cleanup keeps it)
    and nothing is written.
    """
    folder = Path(folder)
    if name is None:
        name = "upload" if isinstance(src, (bytes, bytearray)) else Path(os.fspath(src)).name
    suffix = clean_suffix(name)
    if allowed_suffixes is not None:
        allowed = {"." + s.lower().lstrip(".") for s in allowed_suffixes}
        if suffix not in allowed:
            raise InputError(f"{shown(Path(name).name)} is not a supported file type; use one "
                             f"of {', '.join(sorted(allowed))}.")
    too_big = InputError(f"{shown(Path(name).name)} is larger than the "
                         f"{limit_bytes / 2**20:.3g} MB upload limit; trim or compress it first.")
    if not isinstance(src, (bytes, bytearray)) and not Path(os.fspath(src)).is_file():
        raise InputError(f"The upload {shown(Path(name).name)} is not a file; upload a video "
                         "or image file.")
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=folder)
    tmp = Path(tmp_name)
    try:
        copied = 0
        with os.fdopen(fd, "wb") as out:
            if isinstance(src, (bytes, bytearray)):
                if len(src) > limit_bytes:
                    raise too_big
                digest.update(src)
                out.write(src)
                copied = len(src)
            else:
                with open(src, "rb") as fi:
                    while chunk := fi.read(CHUNK):
                        copied += len(chunk)
                        if copied > limit_bytes:
                            raise too_big
                        digest.update(chunk)
                        out.write(chunk)
            if copied == 0:
                raise InputError(f"The upload {shown(Path(name).name)} is empty (0 bytes); "
                                 "upload the file again.")
            out.flush()
            os.fsync(out.fileno())
        home = folder / digest.hexdigest()
        for old in sorted(home.glob(f"*{suffix}")) if home.is_dir() else ():
            if old.is_file() and not old.is_symlink() and old.stat().st_size == copied \
                    and old.suffix == suffix:
                os.utime(old)
                os.utime(home)
                return old
        home.mkdir(exist_ok=True)
        dest = home / clean_name(name, suffix)
        return move_into_place(tmp, dest)  # atomic: a reader sees the whole file or none
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
