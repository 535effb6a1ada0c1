"""Wan2.1's size rules: frames 4k + 1, sides multiples of 16.

The Wan VAE compresses time 4x causally (the first frame alone, then 4 frames per latent
frame) and space 8x; the transformer patches latents 2 x 2. So a clip has 4k + 1 frames and
height and width are multiples of 8 x 2 = 16 (WanPipeline / WanImageToVideoPipeline round
other values down with a warning; vcstudio refuses them with the valid neighbours instead, so
a run never silently differs from what was asked).
"""
from __future__ import annotations

from ...errors import InputError

TEMPORAL = 4  # AutoencoderKLWan.config.scale_factor_temporal
SPATIAL = 8  # AutoencoderKLWan.config.scale_factor_spatial
PATCH = 2  # WanTransformer3DModel.config.patch_size[1:]
SIDE_MULTIPLE = SPATIAL * PATCH


def latent_frames(num_frames: int, temporal: int = TEMPORAL) -> int:
    """Latent frames of a ``temporal * k + 1``-frame clip: the first frame, then one per
    ``temporal`` frames."""
    return (int(num_frames) - 1) // temporal + 1


def nearest_frames(num_frames: int, temporal: int = TEMPORAL) -> tuple[int, int]:
    """The valid counts (``temporal * k + 1``, k >= 1) just below and above ``num_frames``."""
    k = max(1, (int(num_frames) - 1) // temporal)
    lo = temporal * k + 1
    hi = lo if lo >= num_frames else lo + temporal
    return min(lo, hi), hi


def check_frames(num_frames: int, temporal: int = TEMPORAL, what: str = "Wan2.1") -> int:
    """``num_frames`` if the VAE can take it, else a one-line InputError naming the nearest
    valid counts."""
    n = int(num_frames)
    if n >= temporal + 1 and (n - 1) % temporal == 0:
        return n
    lo, hi = nearest_frames(n, temporal)
    near = f"{lo}" if lo == hi else f"{lo} or {hi}"
    raise InputError(f"{what} makes {temporal}k + 1 frames (its VAE packs {temporal} frames per "
                     f"latent after the first); got {n}: use {near}.")


def check_size(height: int, width: int, multiple: int = SIDE_MULTIPLE,
               what: str = "Wan2.1") -> tuple[int, int]:
    """(height, width) if both are positive multiples of ``multiple``, else a one-line
    InputError naming the nearest valid size."""
    h, w = int(height), int(width)
    if h > 0 and w > 0 and h % multiple == 0 and w % multiple == 0:
        return h, w

    def near(v: int) -> int:  # halves round up: 40 -> 48 with 16
        return max(multiple, int(v / multiple + 0.5) * multiple)

    raise InputError(f"{what} needs height and width in multiples of {multiple} (VAE 8 x patch "
                     f"2); got {w}x{h}: use {near(w)}x{near(h)}.")
