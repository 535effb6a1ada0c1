"""VBench-style scores (Vchitect/VBench and VBench-I2V), each split into embedding math and a
function over uint8 frames.

- subject_consistency (DINO ViT-B/16) and background_consistency (CLIP ViT-B/32): per frame
  t = 2..T, 1/2 [max(0, cos(f_1, f_t)) + max(0, cos(f_{t-1}, f_t))]; the video score is the mean.
- temporal_flickering: (255 - mean over pairs of mean |f_t - f_{t+1}|) / 255 on uint8 pixels.
- dynamic_degree (stand-in): VBench uses RAFT; here classical flow. Per pair, the mean of the top
  5% flow magnitudes; a video is dynamic (1.0) once round(4 n / 16) of its n pairs exceed
  6 * min(H, W) / 256.
- motion_smoothness (stand-in): VBench drops the odd frames, re-creates each from its two
  neighbours with the AMT interpolation network and scores (255 - mean |real - interpolated|)
  / 255; here the interpolation is classical: each neighbour warped half-way along its optical
  flow to the other, averaged (labelled a stand-in).
- i2v_subject (DINO) / i2v_background (CLIP; VBench-I2V uses DreamSim, not bundled here):
  w_max * max_t max(0, cos(image, f_t)) + w_mean * mean + w_min * min of the consecutive
  similarities max(0, cos(f_{t-1}, f_t)). Weights default to (0.4, 0.3, 0.3); some VBench
  revisions use (0.5, 0.5, 0.0), so they are a parameter.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from .flow import FlowCache, flow_magnitude
from .result import MetricResult, pad_front

SUBJ_DEF = ("VBench subject_consistency: mean over t>=2 of 1/2[max(0,cos(f1,ft)) + "
            "max(0,cos(f(t-1),ft))], DINO features (short side 224, no crop)")
BG_DEF = ("VBench background_consistency: same formula as subject_consistency on CLIP image "
          "features")
FLICKER_DEF = "VBench temporal_flickering: (255 - mean |f_t - f_t+1|) / 255"
DYN_DEF = ("dynamic degree, STAND-IN for VBench's RAFT version: classical flow, mean of top 5% "
           "magnitudes per pair vs 6*min(H,W)/256, dynamic once round(4n/16) pairs exceed it")
I2V_WEIGHTS = (0.4, 0.3, 0.3)
DYN_LABEL = "stand-in: classical flow instead of RAFT"


def _unit(e) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.as_tensor(e, dtype=torch.float32), dim=-1)


def vbench_consistency_from_embeddings(emb) -> np.ndarray:
    """Per-frame values for t = 2..T (T-1 values) of the subject/background consistency."""
    e = _unit(emb)
    to_first = (e[1:] @ e[0]).clamp(min=0)
    to_prev = (e[1:] * e[:-1]).sum(-1).clamp(min=0)
    return (0.5 * (to_first + to_prev)).numpy().astype(np.float64)


def i2v_score_from_embeddings(image_emb, frame_emb, weights=I2V_WEIGHTS) -> float:
    """VBench-I2V video-image consistency of frames against the conditioning image embedding."""
    e, img = _unit(frame_emb), _unit(image_emb).reshape(-1)
    conformity = (e @ img).clamp(min=0)
    consec = (e[1:] * e[:-1]).sum(-1).clamp(min=0)
    if consec.numel() == 0:
        return float("nan")
    w_max, w_mean, w_min = weights
    return float(w_max * conformity.max() + w_mean * consec.mean() + w_min * consec.min())


def flicker_pairs(frames: np.ndarray) -> np.ndarray:
    """Mean absolute pixel difference of each consecutive pair, on the 0..255 scale."""
    f = np.asarray(frames)
    return np.array([np.abs(f[t + 1].astype(np.int16) - f[t].astype(np.int16)).mean()
                     for t in range(len(f) - 1)], np.float64)


def flicker_from_pair_diffs(diffs) -> float:
    return float((255.0 - np.mean(diffs)) / 255.0)


def temporal_flickering(frames: np.ndarray) -> MetricResult:
    n = len(frames)
    if n < 2:
        return MetricResult.too_few("flicker", 2, FLICKER_DEF)
    d = flicker_pairs(frames)
    return MetricResult("flicker", flicker_from_pair_diffs(d), pad_front((255.0 - d) / 255.0, n),
                        "pixels", FLICKER_DEF, True)


def top5_flow_magnitude(flow: np.ndarray) -> float:
    """Mean of the largest 5% flow magnitudes of one pair."""
    m = np.sort(flow_magnitude(flow).ravel())
    k = max(1, int(math.ceil(0.05 * m.size)))
    return float(m[-k:].mean())


def dynamic_degree_from_pairs(top_mags, height: int, width: int) -> float:
    thr = 6.0 * min(height, width) / 256.0
    need = round(4 * len(top_mags) / 16.0)
    return 1.0 if sum(m > thr for m in top_mags) >= need else 0.0


def dynamic_degree(frames: np.ndarray, flows: Optional[FlowCache] = None) -> MetricResult:
    n = len(frames)
    if n < 2:
        return MetricResult.too_few("dynamic_degree", 2, DYN_DEF)
    flows = flows or FlowCache(frames)
    mags = [top5_flow_magnitude(flows.forward(t)) for t in range(n - 1)]
    h, w = frames[0].shape[:2]
    return MetricResult("dynamic_degree", dynamic_degree_from_pairs(mags, h, w),
                        pad_front(mags, n), flows.model, DYN_DEF, None, label=DYN_LABEL,
                        extra={"threshold_px": 6.0 * min(h, w) / 256.0})


SMOOTH_DEF = ("motion smoothness, STAND-IN for VBench's AMT version: odd frames re-created "
              "from their neighbours by half-way flow warping (OpenCV DIS), score (255 - mean "
              "|real - interpolated|) / 255")
SMOOTH_LABEL = "stand-in: flow interpolation instead of AMT"


def interpolate_midpoint(a: np.ndarray, c: np.ndarray, method: str = "dis") -> np.ndarray:
    """The frame half-way between uint8 frames ``a`` and ``c``: each warped half-way along its
    flow to the other (backward warping with the flow at the target pixel, a small-motion
    approximation), averaged -> float (H, W, 3) on the 0..255 scale."""
    import cv2

    from .flow import compute_flow

    h, w = a.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))

    def half(src, dst):
        f = compute_flow(src, dst, method)
        return cv2.remap(src, gx - 0.5 * f[..., 0], gy - 0.5 * f[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE).astype(np.float64)

    return (half(a, c) + half(c, a)) / 2


def smoothness_errors(frames: np.ndarray, method: str = "dis") -> np.ndarray:
    """Mean |real - interpolated| (0..255) of each odd frame t = 1, 3, ... with both neighbours."""
    f = np.asarray(frames)
    return np.array([np.abs(interpolate_midpoint(f[t - 1], f[t + 1], method) - f[t]).mean()
                     for t in range(1, len(f) - 1, 2)], np.float64)


def motion_smoothness(frames: np.ndarray, method: str = "dis") -> MetricResult:
    n = len(frames)
    if n < 3:
        return MetricResult.too_few("motion_smoothness", 3, SMOOTH_DEF)
    err = smoothness_errors(frames, method)
    per = [math.nan] * n
    for k, t in enumerate(range(1, n - 1, 2)):
        per[t] = float((255.0 - err[k]) / 255.0)
    return MetricResult("motion_smoothness", float((255.0 - err.mean()) / 255.0), per,
                        f"OpenCV {method.upper()} flow", SMOOTH_DEF, True, label=SMOOTH_LABEL)


def _consistency(name: str, emb, model: str, definition: str) -> MetricResult:
    n = emb.shape[0]
    if n < 2:
        return MetricResult.too_few(name, 2, definition)
    vals = vbench_consistency_from_embeddings(emb.cpu())
    return MetricResult(name, float(vals.mean()), pad_front(vals, n), model, definition, True)


def subject_consistency(frames: np.ndarray, dino=None, emb=None) -> MetricResult:
    if emb is None:
        if dino is None:
            from ..models.dino import load_dino_encoder

            dino = load_dino_encoder()
        emb = dino.encode_images(frames)
    return _consistency("subject_consistency", emb, dino.name if dino else "", SUBJ_DEF)


def background_consistency(frames: np.ndarray, clip=None, emb=None) -> MetricResult:
    if emb is None:
        if clip is None:
            from ..models.clip import load_default_clip_encoder

            clip = load_default_clip_encoder()
        emb = clip.encode_images(frames)
    return _consistency("background_consistency", emb, clip.name if clip else "", BG_DEF)


def i2v_consistency(name: str, frames_emb, image_emb, model: str,
                    weights=I2V_WEIGHTS) -> MetricResult:
    """``name`` "i2v_subject" (DINO features) or "i2v_background" (CLIP features here)."""
    definition = (f"VBench-I2V {name}: {weights[0]}*max conformity to the image + {weights[1]}*"
                  f"mean + {weights[2]}*min consecutive similarity; features: {model}")
    label = ""
    if name == "i2v_background":
        definition += " (VBench-I2V uses DreamSim; CLIP stands in)"
        label = "stand-in: CLIP instead of DreamSim"
    e = _unit(frames_emb)
    per = (e @ _unit(image_emb).reshape(-1)).clamp(min=0).numpy()
    return MetricResult(name, i2v_score_from_embeddings(image_emb, frames_emb, weights),
                        list(per.astype(np.float64)), model, definition, True, label=label)
