"""Warp error (Lai et al. 2018, "Learning Blind Video Temporal Consistency", their evaluation).

For each pair (t, t+1): warp frame t+1 back to frame t with the forward flow w (sample
I_{t+1} at x + w(x)), and average the squared RGB difference (values in [0, 1]) over the pixels
that are neither occluded nor on a motion boundary:

- occlusion (forward-backward check), with w' the backward flow sampled at x + w(x):
  |w + w'|^2 > 0.01 (|w|^2 + |w'|^2) + 0.5
- motion boundary: |grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002

The video's warp error is the mean over its T-1 pairs. The mean is over valid pixels and the three
channels; when no pixel is valid the whole frame counts (as in the reference).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .flow import FlowCache
from .result import MetricResult, pad_front

DEFINITION = ("warp error (Lai et al. 2018): mean squared RGB difference in [0,1] between frame t "
              "and frame t+1 warped back by the forward flow, over non-occluded, "
              "non-motion-boundary pixels; mean over pairs")


def warp_by_flow(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample ``image`` at x + flow(x), bilinear, borders replicated. Works for images and flows."""
    import cv2

    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx = gx + flow[..., 0].astype(np.float32)
    my = gy + flow[..., 1].astype(np.float32)
    src = image.astype(np.float32) if image.dtype != np.float32 else image
    return cv2.remap(src, mx, my, interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def occlusion_mask(fw: np.ndarray, bw: np.ndarray) -> np.ndarray:
    """Forward-backward inconsistency: True where occluded."""
    bw_at = warp_by_flow(bw, fw)  # w'(x + w(x))
    fb = fw + bw_at
    return (fb ** 2).sum(-1) > 0.01 * ((fw ** 2).sum(-1) + (bw_at ** 2).sum(-1)) + 0.5


def motion_boundary_mask(fw: np.ndarray) -> np.ndarray:
    """True where the flow gradient is large: |grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002."""
    u, v = fw[..., 0].astype(np.float64), fw[..., 1].astype(np.float64)
    grad = np.zeros_like(u)
    for c in (u, v):  # one-sided differences to the next pixel (0 on the last row / column)
        dx = np.zeros_like(c)
        dy = np.zeros_like(c)
        dx[:, :-1] = c[:, :-1] - c[:, 1:]
        dy[:-1, :] = c[:-1, :] - c[1:, :]
        grad += dx ** 2 + dy ** 2
    return grad > 0.01 * (u ** 2 + v ** 2) + 0.002


def warp_error_pair(a: np.ndarray, b: np.ndarray, fw: np.ndarray,
                    bw: Optional[np.ndarray] = None) -> float:
    """Warp error of one pair: frame ``a`` (t), ``b`` (t+1), forward flow a->b, backward b->a.

    Without ``bw`` only the motion-boundary mask applies.
    """
    a01 = a.astype(np.float32) / 255.0
    warped = warp_by_flow(b.astype(np.float32) / 255.0, fw)
    invalid = motion_boundary_mask(fw)
    if bw is not None:
        invalid |= occlusion_mask(fw, bw)
    valid = ~invalid
    sq = (warped - a01) ** 2
    if valid.sum() == 0:
        return float(sq.mean())
    return float(sq[valid].mean())


def warp_error(frames: np.ndarray, flows: Optional[FlowCache] = None,
               source: Optional[np.ndarray] = None, method: str = "dis") -> MetricResult:
    """Warp error of ``frames``. The flow comes from ``flows`` if given, else from ``source``
    (the edited clip's source, same size) if given, else from ``frames`` themselves."""
    n = len(frames)
    if n < 2:
        return MetricResult.too_few("warp_error", 2, DEFINITION)
    if flows is None:
        flows = FlowCache(source if source is not None else frames, method,
                          "source" if source is not None else "generated")
        flows.compute_all()
    vals = [warp_error_pair(frames[t], frames[t + 1], flows.forward(t), flows.backward(t))
            for t in range(n - 1)]
    return MetricResult("warp_error", float(np.mean(vals)), pad_front(vals, n), flows.model,
                        DEFINITION + f"; flow from the {flows.label} video", False,
                        extra={"flow_from": flows.label})
