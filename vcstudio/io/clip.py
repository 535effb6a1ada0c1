"""A clip as tuning sees it: read, sample, check the size, fit (crop/pad) — one path for the
tune job and for the frame preview, so the preview shows exactly the frames tuned on."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import DataConfig, Limits
from ..errors import InputError
from .resize import check_fit, check_size, resize_frames
from .video import read_video


def fit_frames(raw: np.ndarray, width: int, height: int, resize: str = "crop",
               crop: str = "center", limits: Limits = Limits()) -> np.ndarray:
    """Sampled source frames -> the frames tuned on: size checked, then cropped at ``crop``
    or padded (never stretched)."""
    check_size(width, height, limits)
    return resize_frames(raw, width, height, resize, crop)


def load_clip(path: str | Path, n_frames: int, start: int = 0, stride: int = 1,
              width: int = 512, height: int = 512, resize: str = "crop", crop: str = "center",
              limits: Limits = Limits()) -> np.ndarray:
    """Read, validate, sample and fit a clip in one call -> uint8 (F, height, width, 3).
    Settings are checked before the file is decoded."""
    if n_frames > limits.max_frames:
        raise InputError(f"{n_frames} frames asked for; the limit here is {limits.max_frames}.")
    check_size(width, height, limits)
    check_fit(resize, crop)
    return fit_frames(read_video(path, start, stride, n_frames, limits), width, height, resize,
                      crop, limits)


def preview_clip(data: DataConfig, limits: Limits = Limits()) -> np.ndarray:
    """Exactly the frames ``tune`` trains on for ``data`` (same read, sampling and fit; its
    width and height must be set, as the job sets them before tuning)."""
    return load_clip(data.video_path, data.n_frames, data.start, data.stride, data.width,
                     data.height, data.resize, data.crop, limits)
