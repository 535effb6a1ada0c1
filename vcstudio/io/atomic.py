"""Atomic file writes: a reader never sees a half-written file (temp + fsync + rename)."""
from __future__ import annotations

import contextlib
import os
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
        with open(tmp, "rb") as f:  # data on disk before the name points at it
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _fsync_dir(folder: Path) -> None:
    # the rename itself is durable only once the directory entry is flushed (POSIX)
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
