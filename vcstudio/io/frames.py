"""Helpers every frame reader shares: RGB uint8 frames, which frames a sampling picks, the bounds
on a source's resolution, and names fit to show in a one-line message."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..config import Limits
from ..errors import InputError


def as_rgb(frame: np.ndarray) -> np.ndarray:
    """Gray, gray+alpha, RGB or RGBA, any numeric dtype -> uint8 (H, W, 3)."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3:
        raise InputError(f"Unexpected frame shape {frame.shape}; expected H x W x channels.")
    if frame.shape[-1] in (2, 4):  # drop alpha
        frame = frame[..., :-1]
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    if frame.shape[-1] != 3:
        raise InputError(f"Unexpected frame with {frame.shape[-1]} channels; use RGB images.")
    if frame.dtype != np.uint8:
        if np.issubdtype(frame.dtype, np.floating) and frame.max() <= 1.0:
            frame = frame * 255.0
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frame)


def check_source_size(h: int, w: int, limits: Limits, what: str) -> None:
    """A source frame's resolution must lie within the limits (4x max_side: it is resized down)."""
    if min(h, w) < limits.min_side or max(h, w) > 4 * limits.max_side:
        raise InputError(f"{what} has resolution {w}x{h}; supported sizes are "
                         f"{limits.min_side}..{4 * limits.max_side} pixels per side.")


def frame_indices(total: int, start: int, stride: int, count: Optional[int]) -> list[int]:
    """Indices ``start, start+stride, ...`` of a clip with ``total`` frames (``count`` of them,
    or all); too few frames is an error that says how many fit."""
    if stride < 1:
        raise InputError(f"Frame stride must be >= 1, got {stride}.")
    if start < 0:
        raise InputError(f"Start frame must be >= 0, got {start}.")
    idx = list(range(start, total, stride))
    if count is not None:
        if count < 1:
            raise InputError(f"Frame count must be >= 1, got {count}.")
        if len(idx) < count:
            raise InputError(
                f"The clip has {total} frames; starting at {start} with stride {stride} gives "
                f"only {len(idx)} of the {count} frames asked for. Lower the frame count, the "
                f"stride or the start (at most {max(0, (total - 1 - start) // stride + 1)} "
                "frames fit with these settings).")
        idx = idx[:count]
    return idx


def shown(name: str, limit: int = 80) -> str:
    """A file or archive-member name made safe for a one-line message (no control characters,
    bounded length): the names come from users' files."""
    s = "".join(c if c.isprintable() else "?" for c in str(name))
    return s if len(s) <= limit else s[: limit - 3] + "..."
