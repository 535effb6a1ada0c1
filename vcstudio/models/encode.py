"""The one place frames become model tensors and back, and prompts become embeddings.

uint8 (F, H, W, 3) <-> float (B, 3, F, H, W) in [-1, 1] <-> latents (B, 4, F, H/8, W/8) scaled by
the VAE's scaling factor.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..config import check_prompt
from .loading import BaseModel


def frames_to_tensor(frames: np.ndarray, device=None) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> float (1, 3, F, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    return (x.permute(3, 0, 1, 2).float() / 127.5 - 1.0).unsqueeze(0)


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """float (1, 3, F, H, W) or (3, F, H, W) in [-1, 1] -> uint8 (F, H, W, 3)."""
    if x.ndim == 5:
        x = x[0]
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


@torch.no_grad()
def encode_video(base: BaseModel, frames: np.ndarray, chunk: int = 8) -> torch.Tensor:
    """uint8 frames -> scaled latents (1, 4, F, h, w). Uses the posterior mean (deterministic)."""
    x = frames_to_tensor(frames, base.device)[0].permute(1, 0, 2, 3)  # (F, 3, H, W)
    outs = []
    for i in range(0, x.shape[0], chunk):
        post = base.vae.encode(x[i:i + chunk].to(base.dtype)).latent_dist
        outs.append(post.mean.float())
    lat = torch.cat(outs) * base.latent_scaling
    return lat.permute(1, 0, 2, 3).unsqueeze(0)


def decode_latents(base: BaseModel, latents: torch.Tensor, chunk: int = 8,
                   grad: bool = False) -> torch.Tensor:
    """Scaled latents (B, 4, F, h, w) -> float (B, 3, F, H, W) in [-1, 1].

    With ``grad=True`` the decode stays on the autograd graph (DCT's consistency losses need the
    path predicted x0 -> VAE decode -> features).
    """
    b, c, f, h, w = latents.shape
    z = (latents / base.latent_scaling).permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    ctx = torch.enable_grad() if grad else torch.no_grad()
    outs = []
    with ctx:
        for i in range(0, z.shape[0], chunk):
            outs.append(base.vae.decode(z[i:i + chunk].to(base.dtype)).sample.float())
    x = torch.cat(outs)
    return x.reshape(b, f, 3, x.shape[-2], x.shape[-1]).permute(0, 2, 1, 3, 4)


@torch.no_grad()
def encode_prompts(base: BaseModel, prompts: Sequence[str]) -> torch.Tensor:
    """Text -> CLIP text-encoder hidden states (N, 77, D), as Stable Diffusion conditions on."""
    for p in prompts:  # every job's prompts pass here: non-UTF-8 text fails with a message
        check_prompt(p, required=False)
    tok = base.tokenizer(list(prompts), padding="max_length", truncation=True,
                         max_length=base.tokenizer.model_max_length, return_tensors="pt")
    ids = tok.input_ids.to(base.device)
    return base.text_encoder(ids)[0].float()


@torch.no_grad()
def decode_to_frames(base: BaseModel, latents: torch.Tensor, chunk: int = 8,
                     cancel=None, on_chunk=None) -> np.ndarray:
    """Scaled latents (1, 4, F, h, w) -> uint8 (F, H, W, 3), ``chunk`` frames at a time.

    Each chunk becomes uint8 at once, so a long video never exists as a float pixel tensor
    (120 frames at 512x512 would be 377 MB in fp32, 94 MB as uint8). ``on_chunk(frames so
    far)`` is called after each chunk (the page shows the frames as they decode).
    """
    chunk = max(1, int(chunk))
    out = np.empty((latents.shape[2], 0, 0, 3), np.uint8)
    for a in range(0, latents.shape[2], chunk):
        if cancel is not None:
            cancel.check()
        part = tensor_to_frames(decode_latents(base, latents[:, :, a:a + chunk], chunk))
        if a == 0:  # the output allocated once at its final size (no list + concatenate copy)
            out = np.empty((latents.shape[2], *part.shape[1:]), np.uint8)
        out[a:a + len(part)] = part
        if on_chunk is not None:
            on_chunk(out[:a + len(part)])
    return out


@torch.no_grad()
def preview_strip(base: BaseModel, latents: torch.Tensor, max_side: int = 128,
                  max_frames: int = 8) -> np.ndarray:
    """A cheap look at latents (1, 4, F, h, w), e.g. a sampler's predicted x0: at most
    ``max_frames`` evenly picked frames, the latents area-downscaled so the decoded frames are
    at most ``max_side`` px on their long side -> uint8 (f, H', W', 3). Costs about
    (max_frames / F) x (max_side / side)^2 of a full decode."""
    import torch.nn.functional as nnf

    f, h, w = latents.shape[2:]
    idx = torch.linspace(0, f - 1, min(max_frames, f)).round().long().to(latents.device)
    z = latents[:, :, idx]
    s = base.vae_scale
    r = max(1, -(-max(h, w) * s // max(s, int(max_side))))  # ceil: decoded side <= max_side
    if r > 1:
        b, c, k = z.shape[:3]
        flat = z.permute(0, 2, 1, 3, 4).reshape(b * k, c, h, w)
        flat = nnf.interpolate(flat.float(), size=(max(1, h // r), max(1, w // r)), mode="area")
        z = flat.reshape(b, k, c, *flat.shape[-2:]).permute(0, 2, 1, 3, 4)
    return tensor_to_frames(decode_latents(base, z, chunk=len(idx)))
