"""Synthetic test clips: a textured disc moving over a textured background.

Used by the tests and as a last-resort example; the toy world (vcstudio.toyworld) draws richer
scenes.
"""
from __future__ import annotations

import numpy as np


def moving_shape_clip(n_frames: int = 8, size: int = 64, dx: float = 3.0, dy: float = 0.0,
                      seed: int = 0, color=(220, 40, 40)) -> np.ndarray:
    """uint8 (F, size, size, 3): a striped disc translating by (dx, dy) px per frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    bg = np.stack([96 + 60 * np.sin(xx / 5.0 + rng.uniform(0, 6)),
                   120 + 50 * np.cos(yy / 7.0),
                   140 + 40 * np.sin((xx + yy) / 9.0)], -1)
    frames = []
    r = size / 6
    for i in range(n_frames):
        cx, cy = size / 4 + dx * i, size / 2 + dy * i
        m = ((xx - cx) ** 2 + (yy - cy) ** 2) <= r * r
        img = bg.copy()
        stripes = (0.75 + 0.25 * np.sign(np.sin((xx - cx) / 2.0)))[..., None]
        img[m] = (np.array(color, np.float32) * stripes)[m]
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)
