"""Training data of the toy world: random scenes -> rendered images + captions, and the fixed,
encoded set the U-Net trains on.

Sampling is vectorised numpy from one seeded generator (reproducible, and checkpointed by the
trainer); rendering is torch (render.py). A scene's attributes are kept as indices, and
:func:`speak` turns them into a caption, so the same scene is described differently each time
it is drawn (size and texture words spoken or not, CFG's empty caption).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F

from .render import SceneBatch, render
from .world import (BACKGROUNDS, COLOURS, MOTIONS, SHAPES, SIZES, TEXTURES, combos,
                    motion_geometry)

# columns of a scene's attribute row
SHAPE, COLOUR, BACKGROUND, SIZE, TEXTURE, MOTION = range(6)
_BG_PHRASE = list(BACKGROUNDS.values())
_MOTION_PHRASE = list(MOTIONS.values())
_COLOURS, _SIZES = list(COLOURS), list(SIZES)


@dataclass
class CaptionPolicy:
    """How captions are spoken during training."""

    attr_p: float = 0.7  # chance to speak a non-default size / texture word
    motion_p: float = 0.25  # share of samples that are a random frame of a moving clip
    empty_p: float = 0.0  # classifier-free guidance dropout (the U-Net phase sets 0.1)


def speak(attrs: np.ndarray, rng: np.random.Generator, policy: CaptionPolicy) -> list[str]:
    """Captions for (n, 6) attribute rows (world.caption's words; medium size and solid
    texture are never spoken, the others with ``attr_p``; ``empty_p`` of them are empty)."""
    n = len(attrs)
    say_size = rng.random(n) < policy.attr_p
    say_tex = rng.random(n) < policy.attr_p
    empty = rng.random(n) < policy.empty_p
    out = []
    for k in range(n):
        if empty[k]:
            out.append("")
            continue
        a = attrs[k]
        w = ["a"]
        if say_size[k] and _SIZES[a[SIZE]] != "medium":
            w.append(_SIZES[a[SIZE]])
        w.append(_COLOURS[a[COLOUR]])
        if say_tex[k] and a[TEXTURE] != 0:
            w.append(TEXTURES[a[TEXTURE]])
        w.append(SHAPES[a[SHAPE]])
        if a[MOTION] >= 0:
            w.append(_MOTION_PHRASE[a[MOTION]])
        w.append(_BG_PHRASE[a[BACKGROUND]])
        out.append(" ".join(w))
    return out


class BatchSampler:
    """Draws (images in [-1, 1] (B, 3, H, W) on ``device``, captions) batches of a split."""

    def __init__(self, seed: int, size: int = 64, device="cpu", split: str = "train",
                 policy: CaptionPolicy | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.size = size
        self.device = torch.device(device)
        self.policy = policy or CaptionPolicy()
        cs = combos(split)
        self.combo_idx = np.array([[SHAPES.index(s), list(COLOURS).index(c),
                                    list(BACKGROUNDS).index(b)] for s, c, b in cs])

    def scenes(self, n: int) -> tuple[SceneBatch, np.ndarray]:
        """``n`` random scenes and their (n, 6) attribute rows."""
        rng, p = self.rng, self.policy
        pick = self.combo_idx[rng.integers(len(self.combo_idx), size=n)]
        size_i = rng.integers(len(SIZES), size=n)
        tex_i = rng.integers(len(TEXTURES), size=n)
        moving = rng.random(n) < p.motion_p
        motion = np.where(moving, rng.integers(len(MOTIONS), size=n), -1)
        radius = np.array([SIZES[s] for s in _SIZES])[size_i]
        cx, cy, r = motion_geometry(radius, motion, rng.random(n), rng.random(n), rng.random(n))
        seeds = rng.integers(2**31 - 1, size=n)

        def t(a, dt=torch.long):
            return torch.as_tensor(np.asarray(a), dtype=dt)

        batch = SceneBatch(shape=t(pick[:, 0]), colour=t(pick[:, 1]), background=t(pick[:, 2]),
                           texture=t(tex_i), cx=t(cx, torch.float32), cy=t(cy, torch.float32),
                           r=t(r, torch.float32), seed=t(seeds))
        attrs = np.stack([pick[:, 0], pick[:, 1], pick[:, 2], size_i, tex_i, motion], 1)
        return batch, attrs

    def draw(self, n: int) -> tuple[SceneBatch, list[str], np.ndarray]:
        """Scenes, captions and the (n, 6) attribute rows."""
        batch, attrs = self.scenes(n)
        return batch, speak(attrs, self.rng, self.policy), attrs

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


class LatentSet:
    """The U-Net's training set: ``n`` training-split scenes drawn once from ``seed``, their
    VAE latents (posterior means times the scaling factor, fp16) and attribute rows. Encoded
    in order and resumable: :meth:`encode_next` continues at ``n_done``."""

    def __init__(self, n: int, seed: int, sizes) -> None:
        self.sampler = BatchSampler(seed, sizes.size, policy=CaptionPolicy(motion_p=0.25))
        self.scene_batch, self.attrs = self.sampler.scenes(n)
        lat = sizes.size // sizes.vae_scale
        self.latents = torch.zeros(n, 4, lat, lat, dtype=torch.float16)
        self.size = sizes.size
        self.n_done = 0

    def __len__(self) -> int:
        return self.n_done

    def _rows(self, a, b=None) -> SceneBatch:
        """Rows ``a:b`` of the set's scenes, or the rows an index array ``a`` names."""
        sel = slice(a, b) if b is not None else torch.as_tensor(np.asarray(a), dtype=torch.long)
        return self.scene_batch.select(sel)

    @torch.no_grad()
    def object_mask(self, idx: np.ndarray, scale: int) -> torch.Tensor:
        """float (B, 1, h, w) in [0, 1]: which latent cells of the scenes ``idx`` the object
        touches (its rendered coverage, max-pooled over each ``scale`` x ``scale`` cell and
        grown by one cell, so the rim where its outline is decided counts too)."""
        _, alpha = render(self._rows(idx), self.size, with_alpha=True)
        cells = F.max_pool2d(alpha, scale)
        return F.max_pool2d(cells, 3, 1, 1)

    @torch.no_grad()
    def encode_next(self, vae, batch: int, scaling_factor: float) -> int:
        a = self.n_done
        b = min(a + batch, len(self.attrs))
        if b <= a:
            return 0
        x = render(self._rows(a, b), self.size) * 2 - 1
        self.latents[a:b] = (vae.encode(x).latent_dist.mean * scaling_factor).half()
        self.n_done = b
        return b - a

    def captions(self, idx: np.ndarray, rng: np.random.Generator,
                 policy: CaptionPolicy) -> list[str]:
        return speak(self.attrs[idx], rng, policy)

    def save(self, path: Path) -> None:
        from ..models.delta import save_tensors

        save_tensors(path, {"latents": self.latents[:self.n_done].contiguous()},
                     {"n_done": self.n_done, "n": len(self.attrs)})

    @classmethod
    def resume(cls, path: Path, n: int, seed: int, sizes) -> "LatentSet":
        """The set of ``n`` scenes from ``seed``, with what ``path`` holds already encoded."""
        ds = cls(n, seed, sizes)
        if Path(path).is_file():
            from ..models.delta import load_tensors

            t, meta = load_tensors(path)
            if int(meta.get("n", -1)) == n:
                k = int(meta["n_done"])
                ds.latents[:k] = t["latents"]
                ds.n_done = k
        return ds

