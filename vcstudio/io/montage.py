"""Several videos side by side in one video, so they play in sync (the Compare tab)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

LABEL_BAND = 22  # pixels above each clip for its name


def _fit_height(frames: np.ndarray, height: int) -> np.ndarray:
    import cv2

    f, h, w = frames.shape[:3]
    if h == height:
        return frames
    width = max(1, round(w * height / h))
    return np.stack([cv2.resize(x, (width, height), interpolation=cv2.INTER_AREA) for x in frames])


def _labelled(frames: np.ndarray, label: str) -> np.ndarray:
    import cv2

    f, h, w = frames.shape[:3]
    band = np.full((LABEL_BAND, w, 3), 255, np.uint8)
    cv2.putText(band, label[: max(4, w // 7)], (3, LABEL_BAND - 7), cv2.FONT_HERSHEY_SIMPLEX,
                0.4, (20, 20, 20), 1, cv2.LINE_AA)
    return np.concatenate([np.broadcast_to(band, (f, *band.shape)), frames], axis=1)


def side_by_side(videos: Sequence[np.ndarray], labels: Sequence[str], gap: int = 4,
                 height: int | None = None) -> np.ndarray:
    """uint8 (F_i, H_i, W_i, 3) videos -> one (F, H', W', 3) video, each clip scaled to the same
    height and labelled. Shorter clips hold their last frame, so every frame index lines up."""
    if not videos:
        raise ValueError("no videos to put side by side")
    height = height or max(v.shape[1] for v in videos)
    n = max(len(v) for v in videos)
    cols = []
    for v, name in zip(videos, labels):
        v = _fit_height(np.asarray(v, np.uint8), height)
        if len(v) < n:
            v = np.concatenate([v, np.repeat(v[-1:], n - len(v), axis=0)])
        cols.append(_labelled(v, name))
    sep = np.full((n, height + LABEL_BAND, gap, 3), 255, np.uint8)
    parts = [cols[0]]
    for c in cols[1:]:
        parts += [sep, c]
    return np.concatenate(parts, axis=2)
