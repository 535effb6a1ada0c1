"""Frame size: validation, resize that keeps the aspect (crop with a position, or pad), and the
default size that keeps a clip's aspect at the largest size allowed.

Sizes are multiples of 8 (SD's VAE downsamples by 8). Nothing here ever stretches a frame.
"""
from __future__ import annotations

import numbers

import numpy as np

# POSITIONS: which part of the frame is kept (crop) or where the frame sits on the canvas
# (pad); top/bottom place the vertical axis, left/right the horizontal one, the other axis is
# centred. RESIZE_MODES: crop | pad. Both are DataConfig's declared choices.
from ..config import POSITIONS, RESIZE_MODES, Limits  # noqa: F401
from ..errors import InputError

SIZE_MULTIPLE = 8


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _multiple_hint(v: int) -> str:
    lo = v // SIZE_MULTIPLE * SIZE_MULTIPLE
    return f"use {lo} or {lo + SIZE_MULTIPLE}" if lo else f"use {SIZE_MULTIPLE}"


def check_size(width, height, limits: Limits = Limits()) -> None:
    """Width and height must be whole numbers, multiples of 8, within min_side..max_side."""
    for name, v in (("width", width), ("height", height)):
        if not _is_int(v):
            raise InputError(f"The {name} must be a whole number of pixels, got {v!r}.")
        if not limits.min_side <= v <= limits.max_side:
            raise InputError(f"The {name} {v} is outside {limits.min_side}..{limits.max_side}; "
                             f"choose a {name} in that range (a multiple of {SIZE_MULTIPLE}).")
        if v % SIZE_MULTIPLE:
            raise InputError(f"The {name} {v} is not a multiple of {SIZE_MULTIPLE} (the VAE works "
                             f"in {SIZE_MULTIPLE}-pixel blocks); {_multiple_hint(v)}.")


def check_fit(mode: str, position: str) -> None:
    if mode not in RESIZE_MODES:
        raise InputError(f"Resize mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}.")
    if position not in POSITIONS:
        raise InputError(f"Crop position must be one of {', '.join(POSITIONS)}, got "
                         f"{position!r}.")


def _offset(spare: int, position: str, low: str, high: str) -> int:
    return 0 if position == low else spare if position == high else spare // 2


def resize_frames(frames: np.ndarray, width: int, height: int, mode: str = "crop",
                  position: str = "center") -> np.ndarray:
    """uint8 (F, H, W, 3) -> (F, height, width, 3), keeping the aspect ratio.

    ``crop``: scale to cover the target, then cut the excess; ``position`` says which part is
    kept (``top`` keeps the top rows, ``left`` the left columns, ``center`` the middle).
    ``pad``: scale to fit inside the target and fill the rest with black (letterbox);
    ``position`` says where the frame sits (``center`` = bands on both sides).
    """
    import cv2

    for name, v in (("width", width), ("height", height)):
        if not _is_int(v) or v <= 0 or v % SIZE_MULTIPLE:
            raise InputError(f"Width and height must be positive multiples of {SIZE_MULTIPLE}; "
                             f"got {width}x{height}.")
    check_fit(mode, position)
    f, h, w, _ = frames.shape
    if mode == "crop":
        s = max(width / w, height / h)
        nw, nh = max(width, round(w * s)), max(height, round(h * s))
    else:
        s = min(width / w, height / h)
        nw, nh = max(1, min(width, round(w * s))), max(1, min(height, round(h * s)))
    x0 = _offset(abs(nw - width), position, "left", "right")
    y0 = _offset(abs(nh - height), position, "top", "bottom")
    interp = cv2.INTER_AREA if nw * nh < w * h else cv2.INTER_CUBIC
    out = np.zeros((f, height, width, 3), np.uint8)
    for i in range(f):
        r = frames[i] if (nw, nh) == (w, h) else cv2.resize(frames[i], (nw, nh),
                                                            interpolation=interp)
        if mode == "crop":
            out[i] = r[y0:y0 + height, x0:x0 + width]
        else:
            out[i, y0:y0 + nh, x0:x0 + nw] = r
    return out


def default_size(native_hw: tuple[int, int], max_side: int, multiple: int = SIZE_MULTIPLE,
                 min_side: int = 16) -> tuple[int, int]:
    """(width, height) keeping a clip's aspect at the largest size allowed: the long side is
    ``max_side`` (rounded down to ``multiple``), the short side the nearest multiple that keeps
    the aspect, at least ``min_side``. E.g. a 640x360 clip at max 256 -> (256, 144)."""
    h, w = native_hw
    if not (_is_int(h) and _is_int(w) and h > 0 and w > 0):
        raise InputError(f"A clip's size must be positive whole pixels, got {w}x{h}.")
    top = max_side // multiple * multiple
    floor = -(-min_side // multiple) * multiple  # min_side rounded up to the multiple
    if top < max(multiple, floor):
        raise InputError(f"The largest side {max_side} allowed is below the smallest size "
                         f"{max(multiple, floor)}.")
    scale = top / max(h, w)

    def side(v: int) -> int:
        return int(min(top, max(floor, multiple, round(v * scale / multiple) * multiple)))

    return side(w), side(h)
