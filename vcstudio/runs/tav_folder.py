"""A Tune-A-Video output folder, read: the TuneConfig it was tuned with and the vcstudio run it
was converted into, if any (file reading only: ``open_run`` uses it; converting the folder,
which loads its base model, is runs/convert.py).

A folder is converted once into the data folder (``tav-runs/<name>-<key>-<base>``), keyed by the
folder, its weight files' sizes and times and the base's fingerprint; later opens reuse that run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Optional

from ..config import TuneConfig, read_yaml
from ..errors import VcsError
from .folder import RunFolder
from .tav_import import is_tuneavideo_config, read_tuneavideo


def tav_config(folder: Path) -> tuple[TuneConfig, list[str]]:
    """The TuneConfig a Tune-A-Video folder was tuned with (its own config.yaml), set to compute
    what Tune-A-Video computes: its route, clip-wide GroupNorm, no frame positions."""
    cfg, notes = TuneConfig(), []  # default trainables are Tune-A-Video's
    yml = folder / "config.yaml"
    if yml.is_file():
        try:
            d = read_yaml(yml)
        except VcsError:
            d = {}
        if is_tuneavideo_config(d):
            imp = read_tuneavideo(d, yml)
            cfg, notes = imp.cfg, imp.notes
    return dataclasses.replace(cfg, temporal="vcstudio", motion_adapter="", method="baseline",
                               groupnorm="clip", frame_positions=False, init_from=""), notes


def _stamp(folder: Path) -> str:
    """What identifies the folder's current weights: path, and size + time of its files."""
    h = hashlib.sha256(str(folder).encode())
    for p in sorted([*(folder / "unet").glob("diffusion_pytorch_model.*"),
                     *(folder / "inv_latents").glob("*.pt"), folder / "config.yaml"]):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def _run_name(folder: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.name)[:40] or "tav"


def converted_dir(folder: Path, base_fingerprint: str = "*") -> Path:
    """Where a Tune-A-Video folder's current weights are converted to, onto the base with this
    fingerprint (``*``: a glob over every base)."""
    from ..paths import data_dir

    key = base_fingerprint if base_fingerprint == "*" else base_fingerprint[:8]
    return data_dir() / "tav-runs" / f"{_run_name(folder)}-{_stamp(folder)}-{key}"


def converted_tav_run(folder: str | Path) -> Optional[Path]:
    """The run a Tune-A-Video folder's current weights were converted into (any base), by
    reading the data folder only; None before a job converted it."""
    pattern = converted_dir(Path(folder).resolve())
    found = sorted(pattern.parent.glob(pattern.name),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    for out in found:
        rf = RunFolder(out)
        if rf.delta_path.is_file() and rf.meta().get("status") == "done":
            return out
    return None
