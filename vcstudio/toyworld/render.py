"""Batched renderer of toy-world scenes in torch (the same code on CPU and GPU).

Shapes are unions of convex polygons (or a disc) drawn through signed distances, so edges are
anti-aliased at one pixel without supersampling. Stars and snowflakes come from an integer hash
of (x, y, seed): exact on every device. Training renders whole batches on the training device, so
data never waits on a DataLoader; the single-scene helpers call the same batch code with B=1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .world import (BACKGROUNDS, COLOURS, DOT_TINT, SHAPES, STRIPE_SHADE, TEXTURES, Clip, Scene,
                    background_rows, trajectory)


def _regular(n: int, radius: float, start_deg: float) -> list[tuple[float, float]]:
    return [(radius * math.cos(math.radians(start_deg + 360 * k / n)),
             radius * math.sin(math.radians(start_deg + 360 * k / n))) for k in range(n)]


def _star_pieces(outer: float = 1.2, inner: float = 0.54) -> list[list[tuple[float, float]]]:
    """A 5-point star = its inner pentagon + five tip triangles (all convex)."""
    o = _regular(5, outer, -90)  # image y points down: -90 deg is the top tip
    i = _regular(5, inner, -90 + 36)
    return [i] + [[i[k - 1], o[k], i[k]] for k in range(5)]


# Each shape in units of its radius; None = the disc.
_POLYGONS: dict[str, list[list[tuple[float, float]]] | None] = {
    "circle": None,
    "square": [[(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]],
    "triangle": [_regular(3, 1.15, -90)],
    "star": _star_pieces(),
    "diamond": [[(0, -1.15), (1.15, 0), (0, 1.15), (-1.15, 0)]],
    "cross": [[(-1, -0.36), (1, -0.36), (1, 0.36), (-1, 0.36)],
              [(-0.36, -1), (0.36, -1), (0.36, 1), (-0.36, 1)]],
}


def _half_planes(poly: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Outward unit normals n_k and offsets d_k so that inside <=> max_k(n_k . p - d_k) <= 0."""
    p = np.asarray(poly, np.float64)
    centre = p.mean(0)
    normals, offsets = [], []
    for a, b in zip(p, np.roll(p, -1, 0)):
        e = b - a
        n = np.array([e[1], -e[0]]) / np.linalg.norm(e)
        if n @ (centre - a) > 0:
            n = -n
        normals.append(n)
        offsets.append(n @ a)
    return np.asarray(normals, np.float32), np.asarray(offsets, np.float32)


_PLANES = {name: None if polys is None else [_half_planes(p) for p in polys]
           for name, polys in _POLYGONS.items()}


def shape_sdf(shape: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Signed distance (units of the radius, < 0 inside) of ``shape`` centred at the origin."""
    planes = _PLANES[shape]
    if planes is None:
        return torch.sqrt(u * u + v * v) - 1.0
    best = None
    for normals, offsets in planes:  # union of convex pieces = min over pieces
        d = None
        for (nx, ny), off in zip(normals.tolist(), offsets.tolist()):
            e = nx * u + ny * v - off
            d = e if d is None else torch.maximum(d, e)
        best = d if best is None else torch.minimum(best, d)
    return best


def _hash01(x: torch.Tensor, y: torch.Tensor, seed: torch.Tensor, salt: int) -> torch.Tensor:
    """Uniform [0, 1) from integers, exact on any device (a 32-bit integer mix)."""
    m = 0xFFFFFFFF
    z = (x * 0x9E3779B1 + y * 0x85EBCA77 + seed * 0xC2B2AE3D + salt * 0x27D4EB2F) & m
    z = z ^ (z >> 15)
    z = (z * 0x2C1B3C6D) & m
    z = z ^ (z >> 12)
    z = (z * 0x297A2D39) & m
    z = z ^ (z >> 15)
    return z.to(torch.float32) / 4294967296.0


@dataclass
class SceneBatch:
    """Scenes as tensors, one row per image (or per frame of a clip)."""

    shape: torch.Tensor  # long (B,) index into SHAPES
    colour: torch.Tensor  # long (B,) index into COLOURS
    background: torch.Tensor  # long (B,) index into BACKGROUNDS
    texture: torch.Tensor  # long (B,) index into TEXTURES
    cx: torch.Tensor  # float (B,) centre, units of the side
    cy: torch.Tensor
    r: torch.Tensor  # float (B,) radius, units of the side
    seed: torch.Tensor  # long (B,)

    def to(self, device) -> "SceneBatch":
        return SceneBatch(**{k: getattr(self, k).to(device) for k in self.__dataclass_fields__})

    def __len__(self) -> int:
        return int(self.shape.shape[0])

    def select(self, rows) -> "SceneBatch":
        """The rows a slice or an index tensor names."""
        return SceneBatch(**{k: getattr(self, k)[rows] for k in self.__dataclass_fields__})


def batch_of(scenes: Sequence[Scene], geometry: np.ndarray | None = None) -> SceneBatch:
    """Tensors for ``scenes``; ``geometry`` (B, 3) overrides (cx, cy, r) per row."""
    if geometry is None:
        geometry = np.array([[s.cx, s.cy, s.radius] for s in scenes], np.float32)
    g = torch.as_tensor(np.asarray(geometry, np.float32))
    return SceneBatch(
        shape=torch.tensor([SHAPES.index(s.shape) for s in scenes]),
        colour=torch.tensor([list(COLOURS).index(s.colour) for s in scenes]),
        background=torch.tensor([list(BACKGROUNDS).index(s.background) for s in scenes]),
        texture=torch.tensor([TEXTURES.index(s.texture) for s in scenes]),
        cx=g[:, 0], cy=g[:, 1], r=g[:, 2],
        seed=torch.tensor([s.seed for s in scenes], dtype=torch.long))


_TABLES: dict = {}


def _tables(size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    key = (size, str(device))
    if key not in _TABLES:
        rows = torch.as_tensor(background_rows(size), device=device)
        cols = torch.tensor(list(COLOURS.values()), dtype=torch.float32, device=device)
        _TABLES[key] = (rows, cols)
    return _TABLES[key]


def render(batch: SceneBatch, size: int = 64, with_alpha: bool = False):
    """float (B, 3, size, size) in [0, 1] on the batch's device; with ``with_alpha`` also the
    object's coverage (B, 1, size, size) in [0, 1] (training weighs the object's pixels)."""
    dev = batch.shape.device
    n = len(batch)
    rows, cols = _tables(size, dev)
    img = rows[batch.background][:, :, None, :].expand(n, size, size, 3).clone()  # (B, H, W, 3)

    ys = torch.arange(size, device=dev)
    xi, yi = ys[None, None, :].expand(n, size, size), ys[None, :, None].expand(n, size, size)
    seed = batch.seed[:, None, None]
    night = batch.background == list(BACKGROUNDS).index("night")
    snow = batch.background == list(BACKGROUNDS).index("snow")
    if night.any():  # single-pixel stars of varying brightness
        star = _hash01(xi, yi, seed, 1) < 0.012
        level = 150 + 105 * _hash01(xi, yi, seed, 2)
        m = star & night[:, None, None]
        img[m] = level[m][:, None].expand(-1, 3)
    if snow.any():  # plus-shaped flakes
        c = _hash01(xi, yi, seed, 3) < 0.008
        flake = c | c.roll(1, 1) | c.roll(-1, 1) | c.roll(1, 2) | c.roll(-1, 2)
        m = flake & snow[:, None, None]
        img[m] = 255.0

    # object, in pixel units relative to its centre
    px = (xi.to(torch.float32) + 0.5) - batch.cx[:, None, None] * size
    py = (yi.to(torch.float32) + 0.5) - batch.cy[:, None, None] * size
    r_px = (batch.r * size)[:, None, None]
    sdf = torch.empty(n, size, size, device=dev)
    for k, name in enumerate(SHAPES):  # each shape only on the rows that have it
        idx = (batch.shape == k).nonzero(as_tuple=True)[0]
        if idx.numel():
            sdf[idx] = shape_sdf(name, px[idx] / r_px[idx], py[idx] / r_px[idx]) * r_px[idx]
    alpha = (0.5 - sdf).clamp(0, 1)[..., None]

    base = cols[batch.colour][:, None, None, :]
    obj = base.expand(n, size, size, 3).clone()
    period = max(size / 10.0, 4.0)  # texture scale follows the image size
    striped = (batch.texture == TEXTURES.index("striped"))[:, None, None]
    stripe = torch.remainder(px + py, period) < period / 2
    sm = striped & stripe
    obj[sm] = obj[sm] * STRIPE_SHADE
    dotted = (batch.texture == TEXTURES.index("dotted"))[:, None, None]
    gx = px - period * torch.round(px / period)
    gy = py - period * torch.round(py / period)
    dm = dotted & (gx * gx + gy * gy <= (0.22 * period) ** 2)
    obj[dm] = obj[dm] + DOT_TINT * (255.0 - obj[dm])

    img = img * (1 - alpha) + obj * alpha
    out = (img / 255.0).clamp(0, 1).permute(0, 3, 1, 2).contiguous()
    return (out, alpha.permute(0, 3, 1, 2).contiguous()) if with_alpha else out


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> uint8 (B, H, W, 3)."""
    return (images.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def render_image(scene: Scene, size: int = 64) -> np.ndarray:
    """uint8 (size, size, 3) RGB."""
    return to_uint8(render(batch_of([scene]), size))[0]


def render_images(scenes: Sequence[Scene], size: int = 64) -> np.ndarray:
    """uint8 (B, size, size, 3) RGB."""
    return to_uint8(render(batch_of(list(scenes)), size))


def render_clip(clip: Clip, size: int = 64) -> np.ndarray:
    """uint8 (F, size, size, 3) RGB: the scene with its object following the motion."""
    geo = trajectory(clip)
    return to_uint8(render(batch_of([clip.scene] * clip.n_frames, geo), size))
