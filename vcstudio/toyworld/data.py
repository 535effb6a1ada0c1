"""Training batches drawn on the fly: random scenes -> rendered on the training device + captions.

Sampling is vectorised numpy from one seeded generator (reproducible); rendering runs on the
device (see render.py), so a GPU step never waits for data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .render import SceneBatch, render
from .world import (BACKGROUNDS, COLOURS, MOTIONS, SHAPES, SIZES, TEXTURES, combos,
                    motion_geometry)


@dataclass
class CaptionPolicy:
    """How captions are spoken during training."""

    attr_p: float = 0.7  # chance to speak a non-default size / texture word
    motion_p: float = 0.25  # share of samples that are a random frame of a moving clip
    empty_p: float = 0.0  # classifier-free guidance dropout (the U-Net phase sets 0.1)


class BatchSampler:
    """Draws (images in [-1, 1] (B, 3, H, W) on ``device``, captions) batches of a split."""

    def __init__(self, seed: int, size: int = 64, device="cpu", split: str = "train",
                 policy: CaptionPolicy | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.size = size
        self.device = torch.device(device)
        self.policy = policy or CaptionPolicy()
        cs = combos(split)
        self.combo_idx = np.array([[SHAPES.index(s), list(COLOURS).index(c), list(BACKGROUNDS).index(b)]
                                   for s, c, b in cs])
        self._bg_phrase = list(BACKGROUNDS.values())
        self._colours = list(COLOURS)
        self._sizes = list(SIZES)
        self._motion_phrase = list(MOTIONS.values())

    def draw(self, n: int) -> tuple[SceneBatch, list[str], np.ndarray]:
        """Scenes, captions and the (n, 3) attribute indices (shape, colour, background)."""
        rng, p = self.rng, self.policy
        pick = self.combo_idx[rng.integers(len(self.combo_idx), size=n)]
        size_i = rng.integers(len(SIZES), size=n)
        tex_i = rng.integers(len(TEXTURES), size=n)
        moving = rng.random(n) < p.motion_p
        motion = np.where(moving, rng.integers(len(MOTIONS), size=n), -1)
        radius = np.array([SIZES[s] for s in self._sizes])[size_i]
        cx, cy, r = motion_geometry(radius, motion, rng.random(n), rng.random(n), rng.random(n))
        seeds = rng.integers(2**31 - 1, size=n)
        say_size = rng.random(n) < p.attr_p
        say_tex = rng.random(n) < p.attr_p
        empty = rng.random(n) < p.empty_p
        caps = []
        for k in range(n):
            if empty[k]:
                caps.append("")
                continue
            w = ["a"]
            if say_size[k] and self._sizes[size_i[k]] != "medium":
                w.append(self._sizes[size_i[k]])
            w.append(self._colours[pick[k, 1]])
            if say_tex[k] and tex_i[k] != 0:
                w.append(TEXTURES[tex_i[k]])
            w.append(SHAPES[pick[k, 0]])
            if motion[k] >= 0:
                w.append(self._motion_phrase[motion[k]])
            w.append(self._bg_phrase[pick[k, 2]])
            caps.append(" ".join(w))

        def t(a, dt=torch.long):
            return torch.as_tensor(np.asarray(a), dtype=dt)

        batch = SceneBatch(shape=t(pick[:, 0]), colour=t(pick[:, 1]), background=t(pick[:, 2]),
                           texture=t(tex_i), cx=t(cx, torch.float32), cy=t(cy, torch.float32),
                           r=t(r, torch.float32), seed=t(seeds))
        return batch, caps, pick

    def __call__(self, n: int) -> tuple[torch.Tensor, list[str]]:
        batch, caps, _ = self.draw(n)
        images = render(batch.to(self.device), self.size)
        return images * 2 - 1, caps


class TokenCache:
    """Caption -> padded token ids, memoised (a world has a few thousand distinct captions)."""

    def __init__(self, tokenizer) -> None:
        self.tok = tokenizer
        self._ids: dict[str, torch.Tensor] = {}

    def __call__(self, captions: list[str], device) -> torch.Tensor:
        missing = [c for c in set(captions) if c not in self._ids]
        if missing:
            ids = self.tok(missing, padding="max_length", max_length=self.tok.model_max_length,
                           truncation=True, return_tensors="pt").input_ids
            for c, row in zip(missing, ids):
                self._ids[c] = row
        return torch.stack([self._ids[c] for c in captions]).to(device)
