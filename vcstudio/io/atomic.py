"""Atomic file writes: a reader never sees a half-written file (temp + fsync + rename)."""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``path`` (same suffix, so writers pick the right format);
    on success it is fsynced and renamed onto ``path``; on error it is removed and ``path`` is
    left as it was. A reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:40]}.tmp-", suffix=path.suffix,
                               dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if not tmp.is_file():
            raise OSError(f"the writer left no file at {tmp.name}")
        move_into_place(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def move_into_place(tmp: str | Path, path: str | Path) -> Path:
    """Rename a complete file written beside ``path`` onto it, durably (its data fsynced before
    the name points at it, the folder entry after): the one place files are renamed into place
    (the writer may only learn ``path`` once the data is written: a content-addressed upload)."""
    tmp, path = Path(tmp), Path(path)
    with open(tmp, "rb") as f:  # data on disk before the name points at it
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


@contextlib.contextmanager
def atomic_dir(path: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temp folder next to ``path``; on success it takes ``path``'s place
    whole (an existing ``path`` only with ``replace``: it is moved aside first and removed
    once the new one is in), on error it is removed and ``path`` is left as it was. A reader
    sees the old folder or the complete new one, never a half-written mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name[:40]}.tmp-", dir=path.parent))
    old = None
    try:
        yield tmp
        if path.exists() or path.is_symlink():
            if not replace:
                raise FileExistsError(f"{path} exists")
            old = Path(tempfile.mkdtemp(prefix=f".{path.name[:40]}.old-", dir=path.parent))
            os.replace(path, old / "x")
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    # the rename itself is durable only once the directory entry is flushed (POSIX)
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: str | Path, obj) -> Path:
    """``obj`` as indented JSON, written atomically (non-JSON values as their str)."""
    import json

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=str))
    return Path(path)


def is_disk_full(e: BaseException) -> bool:
    """Whether a write failed for lack of space: OSError ENOSPC/EDQUOT, or the same error as
    safetensors reports it (a SafetensorError wrapping the OS's "No space left on device")."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e)
    return "No space left" in text or "StorageFull" in text or "os error 28" in text


def free_bytes(folder: str | Path) -> int:
    """Free space where ``folder`` (or its nearest existing parent) lives; -1 if unknown."""
    p = Path(folder)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return -1
