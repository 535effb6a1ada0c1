"""Motion amount: mean optical-flow magnitude between consecutive frames (OpenCV Farneback).

The guardrail of VCD reward tuning: VCD alone is minimised by a still image, which the paper's
temporal weight (N - i + 1) / N only discourages, so tuning logs this next to VCD and warns when
it collapses.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError


def flow_magnitudes(frames: np.ndarray, max_side: int = 256) -> np.ndarray:
    """Mean Farneback flow magnitude (pixels of the original size) per consecutive pair, (F-1,)."""
    import cv2

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"Motion needs uint8 frames (F, H, W, 3), got {frames.dtype} {frames.shape}.")
    if frames.shape[0] < 2:
        return np.zeros(0)
    h, w = frames.shape[1:3]
    scale = min(1.0, max_side / max(h, w))
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    gray = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)
            for f in frames]
    out = []
    for a, b in zip(gray[:-1], gray[1:]):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=3, winsize=15,
                                            iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
        out.append(float(np.linalg.norm(flow, axis=-1).mean()) / scale)
    return np.array(out)


def motion_amount(frames: np.ndarray) -> float:
    """Mean flow magnitude over the clip, in pixels per frame (0 for a still image)."""
    m = flow_magnitudes(frames)
    return float(m.mean()) if m.size else 0.0
