"""A classical (OpenCV) checker of toy-world images: what object, what colour, on what, where.

1. Background: every toy background varies only by row, so the median of the left and right
   border strips per row estimates it; the nearest world background profile names it.
2. Object: pixels far from their row's background colour, opened to drop stars / snowflakes;
   the largest connected component, holes filled (its outer contour), is the object.
3. Colour: each object pixel votes for the nearest world colour (or its stripe shade); near-white
   dot pixels abstain.
4. Shape: contour analysis: solidity (area / convex hull area) separates star and cross from the
   convex shapes; circularity 4 pi A / P^2, polygon vertices and extent (area / axis-aligned box)
   separate circle, triangle, square and diamond.
It judges the model's samples, so it assumes nothing beyond what a viewer would: no masks from
the renderer. :func:`looks_like_toy_scene` tells a toy frame from real footage with steps 1-2.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from .world import BACKGROUNDS, COLOURS, STRIPE_SHADE, background_rows

BORDER = 3  # px of each side read as pure background
DIFF_THRESHOLD = 45.0  # RGB distance from the row background that counts as object
MIN_AREA = 0.004  # share of the image below which "no object" is reported
# looks_like_toy_scene: rendered toy frames (also after H.264) stay within ~5 of a background
# profile, photos are 25+ away; the largest toy object (a large grown shape) covers ~0.3
TOY_BACKGROUND_MAX_DIST = 15.0
TOY_OBJECT_MAX_AREA = 0.4


@dataclass
class Detection:
    found: bool
    background: str
    shape: Optional[str] = None
    colour: Optional[str] = None
    centre: tuple[float, float] = (float("nan"), float("nan"))  # units of the side (x, y)
    area: float = 0.0  # share of the image
    features: dict[str, float] = field(default_factory=dict)


def _row_background(img: np.ndarray) -> np.ndarray:
    h, w, _ = img.shape
    b = max(1, round(BORDER * w / 64))
    strips = np.concatenate([img[:, :b], img[:, w - b:]], 1).astype(np.float32)
    rows = np.median(strips, axis=1)  # (H, 3)
    # a 3-row median smooths a sampler's noisy borders without moving band edges much
    padded = np.concatenate([rows[:1], rows, rows[-1:]])
    return np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)


def _background_distances(rows: np.ndarray) -> np.ndarray:
    """Mean RGB distance over the rows of a (H, 3) row estimate from each world background."""
    return np.linalg.norm(background_rows(len(rows)) - rows[None], axis=2).mean(1)


def classify_background(img: np.ndarray, rows: Optional[np.ndarray] = None) -> str:
    rows = _row_background(img) if rows is None else rows
    return list(BACKGROUNDS)[int(np.argmin(_background_distances(rows)))]


def _palette() -> tuple[np.ndarray, list[str]]:
    cols, names = [], []
    for name, rgb in COLOURS.items():
        base = np.asarray(rgb, np.float32)
        cols += [base, base * STRIPE_SHADE]
        names += [name, name]
    return np.stack(cols), names


_PAL, _PAL_NAMES = _palette()


def colour_name(pixels: np.ndarray) -> Optional[str]:
    """Majority vote of (N, 3) RGB pixels over the world colours; near-white/grey pixels abstain."""
    px = pixels.reshape(-1, 3).astype(np.float32)
    mx, mn = px.max(1), px.min(1)
    chroma = mx - mn
    px = px[chroma > 40]  # dots (tinted toward white) and greys carry no hue vote
    if len(px) == 0:
        return None
    d = np.linalg.norm(px[:, None, :] - _PAL[None], axis=2)
    votes = np.bincount(d.argmin(1), minlength=len(_PAL_NAMES))
    per_name: dict[str, int] = {}
    for k, n in enumerate(_PAL_NAMES):
        per_name[n] = per_name.get(n, 0) + int(votes[k])
    return max(per_name, key=per_name.get)


def shape_features(mask: np.ndarray) -> dict[str, float]:
    cs, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(cs, key=cv2.contourArea)
    area = float(cv2.contourArea(c))
    perim = float(cv2.arcLength(c, True))
    hull = cv2.convexHull(c)
    hull_area = float(cv2.contourArea(hull))
    x, y, w, h = cv2.boundingRect(c)
    approx = cv2.approxPolyDP(hull, 0.06 * cv2.arcLength(hull, True), True)
    return {
        "area": area,
        "solidity": area / max(hull_area, 1e-6),
        "circularity": 4 * np.pi * area / max(perim, 1e-6) ** 2,
        "hull_circularity": 4 * np.pi * hull_area / max(cv2.arcLength(hull, True), 1e-6) ** 2,
        "extent": area / max(w * h, 1),
        "vertices": float(len(approx)),
    }


def classify_shape(f: dict[str, float]) -> str:
    """Decision rules on contour features, tuned on clean renders (see tests)."""
    if f["solidity"] < 0.8:  # concave: star (solidity ~0.56, extent ~0.37) or cross (~0.73, ~0.52)
        return "star" if f["solidity"] + f["extent"] < 1.08 else "cross"
    if f["hull_circularity"] > 0.91:
        return "circle"
    if f["vertices"] == 3 or f["hull_circularity"] < 0.68:
        return "triangle"
    # four corners: a square fills its upright box, a diamond half of it
    return "square" if f["extent"] > 0.72 else "diamond"


def object_mask(img: np.ndarray, rows: np.ndarray) -> np.ndarray:
    diff = np.linalg.norm(img.astype(np.float32) - rows[:, None, :], axis=2)
    raw = (diff > DIFF_THRESHOLD).astype(np.uint8)
    k = max(3, round(3 * img.shape[1] / 64)) | 1
    mask = cv2.morphologyEx(raw, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return np.zeros_like(mask, bool)
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    comp = (labels == big).astype(np.uint8)
    # the opening also shaved thin tips (star points): take the raw mask back near the body
    near = cv2.dilate(comp, np.ones((k, k), np.uint8), iterations=2)
    comp = (raw & near).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(comp, connectivity=8)
    comp = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    cs, _ = cv2.findContours(comp, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(comp)
    cv2.drawContours(filled, cs, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


def detect(img: np.ndarray) -> Detection:
    """Read one uint8 (H, W, 3) RGB image."""
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError("detect() takes one uint8 (H, W, 3) RGB image")
    rows = _row_background(img)
    bg = classify_background(img, rows)
    mask = object_mask(img, rows)
    h, w = mask.shape
    area = float(mask.sum()) / (h * w)
    if area < MIN_AREA:
        return Detection(False, bg, area=area)
    f = shape_features(mask)
    ys, xs = np.nonzero(mask)
    centre = ((xs.mean() + 0.5) / w, (ys.mean() + 0.5) / h)
    return Detection(True, bg, classify_shape(f), colour_name(img[mask]), centre, area, f)


def looks_like_toy_scene(frame: np.ndarray) -> bool:
    """Whether one uint8 (H, W, 3) RGB frame reads as a toy-world scene. The rule: (1) its
    border strips, read per row (step 1), lie within ``TOY_BACKGROUND_MAX_DIST`` (mean RGB
    distance over the rows) of one world background profile: real footage has borders that
    vary along the row, and no toy background's colours; (2) one object is found on it
    (step 2, at least ``MIN_AREA`` of the image) and (3) covers at most
    ``TOY_OBJECT_MAX_AREA`` of it (a photo behind uniform letterbox bars is all "object").
    A real photo of one object on a plain backdrop of a toy background's colour can pass."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError("looks_like_toy_scene() takes one uint8 (H, W, 3) RGB image")
    rows = _row_background(frame)
    if _background_distances(rows).min() > TOY_BACKGROUND_MAX_DIST:
        return False
    mask = object_mask(frame, rows)
    area = float(mask.mean())
    return MIN_AREA <= area <= TOY_OBJECT_MAX_AREA


def detect_clip(frames: np.ndarray) -> list[Detection]:
    """One detection per frame of a uint8 (F, H, W, 3) clip."""
    return [detect(f) for f in frames]


def track(frames: np.ndarray) -> np.ndarray:
    """float (F, 3): object centre x, y (units of the side) and area share per frame (nan if none)."""
    out = []
    for d in detect_clip(frames):
        out.append([d.centre[0], d.centre[1], d.area if d.found else float("nan")])
    return np.asarray(out, np.float32)


def track_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r between two centre tracks (F, >=2), x and y stacked, ignoring missing frames.

    Motion along one axis leaves the other constant; stacking both (mean-removed per axis) scores
    the path, not the absolute position.
    """
    a, b = np.asarray(a, np.float64)[:, :2], np.asarray(b, np.float64)[:, :2]
    ok = np.isfinite(a).all(1) & np.isfinite(b).all(1)
    if ok.sum() < 3:
        return float("nan")
    a, b = a[ok] - a[ok].mean(0), b[ok] - b[ok].mean(0)
    a, b = a.ravel(), b.ravel()
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else float("nan")
