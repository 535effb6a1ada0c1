"""A clip as a video DiT takes it (DESIGN "Video DiTs": frame counts 4k + 1, sides multiples of
16 on Wan2.1), for the tune, the edit and FlowEdit alike.

* Frames: the frames read (``n_frames`` at ``stride`` from ``start``) are resampled DOWN to the
  nearest count the VAE takes (``temporal * k + 1``), evenly over the same span (first and last
  frame kept, so the motion's duration is kept), and a note says so.
* Size: ``size`` is the long side, rounded to the family's multiple (halves up), the other side
  follows the clip's aspect, rounded to the multiple (``io.default_size``); ``size`` 0 is the
  family's native long side. An explicit width/height off the multiple is refused in one line
  naming the nearest valid size (models/wan/rules.py); one side given: the other follows it.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from ...errors import InputError
from ...models.family import FamilyRules


def resample_frames(raw: np.ndarray, temporal: int, label: str = "Wan2.1"
                    ) -> tuple[np.ndarray, Optional[str]]:
    """(frames, note): ``raw`` resampled evenly to the largest ``temporal * k + 1`` count not
    above its own (k >= 1); the note is None when nothing changed."""
    n = int(len(raw))
    if temporal <= 1:
        return raw, None
    k = (n - 1) // temporal
    if k < 1:
        raise InputError(f"{label} needs at least {temporal + 1} frames ({temporal}k + 1); the "
                         f"clip gives {n}: use a longer clip or more --frames.")
    m = temporal * k + 1
    if m == n:
        return raw, None
    idx = np.round(np.linspace(0, n - 1, m)).astype(int)
    return raw[idx], (f"the clip's {n} frames are resampled to {m} ({label} makes "
                      f"{temporal}k + 1 frames: its VAE packs {temporal} frames per latent after "
                      "the first)")


def _round(v: int, multiple: int) -> int:
    return max(multiple, int(v / multiple + 0.5) * multiple)


def flow_size(width: int, height: int, size: int, clip_hw: tuple[int, int],
              rules: FamilyRules) -> tuple[int, int]:
    """(width, height) of the frames (module docstring)."""
    from ...models.wan.rules import check_size

    m = rules.multiple
    h, w = clip_hw
    if width > 0 and height > 0:
        hh, ww = check_size(height, width, m, rules.label)
        return ww, hh
    if width > 0 or height > 0:
        given = width or height
        check_size(given, given, m, rules.label)
        other = round(given * (h / w if width else w / h))
        return (width, _round(other, m)) if width else (_round(other, m), height)
    from ...io import default_size

    side = _round(size or rules.native_side, m)
    return default_size((h, w), side, m, min_side=m)


def prepare_clip(raw: np.ndarray, data, rules: FamilyRules, resize: str = "crop",
                 crop: str = "center") -> tuple[np.ndarray, object, list[str]]:
    """(uint8 frames, the DataConfig with the frames and size used, notes) for ``raw`` frames
    read as ``data`` says."""
    from ...io import fit_frames

    frames, note = resample_frames(raw, rules.temporal, rules.label)
    notes = [note] if note else []
    w, h = flow_size(data.width, data.height, data.size, raw.shape[1:3], rules)
    if abs((raw.shape[2] / raw.shape[1]) / (w / h) - 1) > 0.02 and data.width and data.height:
        how = "cropped" if resize == "crop" else "padded"
        notes.append(f"the clip ({raw.shape[2]}x{raw.shape[1]}) is {how} to {w}x{h} ({crop}); "
                     "give --size alone to keep its aspect")
    frames = fit_frames(frames, w, h, resize, crop)
    return frames, dataclasses.replace(data, n_frames=int(len(frames)), width=w, height=h), notes


def read_flow_clip(data, rules: FamilyRules, limits=None):
    """Read ``data.video_path`` (``n_frames`` at ``stride`` from ``start``) and prepare it."""
    from ...config import Limits
    from ...io import read_video

    if not data.video_path:
        raise InputError("No video given: pass --video PATH.")
    raw = read_video(data.video_path, data.start, data.stride, data.n_frames,
                     limits=limits or Limits())
    return prepare_clip(raw, data, rules, data.resize, data.crop)


__all__ = ["flow_size", "prepare_clip", "read_flow_clip", "resample_frames"]
