"""The Wan VAE's latents: their normalisation as WanPipeline applies it, and encoding /
decoding a clip through it.

``AutoencoderKLWan.config`` carries per-channel ``latents_mean`` and ``latents_std``; the
pipelines feed the transformer ``(z - mean) / std`` and decode ``z * std + mean`` (both written
with the reciprocal 1/std as the pipelines write them, so the numbers match theirs). Every
latent vcstudio stores or hands a Wan transformer is normalised.

The VAE is causal in time (the first frame alone, then 4 frames per latent frame), so decoding
latent frames 0..b gives exactly pixel frames 0..4b of the full decode: a subset of frames is
decoded exactly by decoding the prefix up to the latent frame that holds the last one. With
gradients that prefix's decoder activations are kept, ~1.1 GiB per pixel frame at 368 x 272 in
bf16 (counted by storage with saved-tensor hooks on the full-size VAE).
"""
from __future__ import annotations

import contextlib
from typing import Optional, Sequence

import torch

from ...errors import InputError


def latent_stats(vae, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, 1/std), each (1, C, 1, 1, 1), on ``like``'s device and dtype."""
    c = vae.config
    mean = torch.tensor(c.latents_mean).view(1, c.z_dim, 1, 1, 1).to(like.device, like.dtype)
    inv_std = 1.0 / torch.tensor(c.latents_std).view(1, c.z_dim, 1, 1, 1).to(like.device,
                                                                               like.dtype)
    return mean, inv_std


def normalize(z: torch.Tensor, vae) -> torch.Tensor:
    """Raw VAE latents -> what the transformer sees."""
    mean, inv_std = latent_stats(vae, z)
    return (z - mean) * inv_std


def denormalize(z: torch.Tensor, vae) -> torch.Tensor:
    """Transformer-space latents -> what the VAE decodes."""
    mean, inv_std = latent_stats(vae, z)
    return z / inv_std + mean


@torch.no_grad()
def encode_video(vae, video: torch.Tensor) -> torch.Tensor:
    """(1, 3, F, H, W) in [-1, 1] -> normalised latents (the posterior's mode: deterministic,
    as the I2V pipeline encodes its condition)."""
    z = vae.encode(video.to(vae.dtype)).latent_dist.mode().float()
    return normalize(z, vae)


def latent_prefix(frames: Sequence[int], latent_frames: int, temporal: int) -> int:
    """The last latent frame a causal decode needs for 0-based pixel ``frames``."""
    n = (latent_frames - 1) * temporal + 1
    bad = [i for i in frames if not 0 <= i < n]
    if bad or not frames:
        raise InputError(f"Frames must be within 0..{n - 1}; got {list(frames)}.")
    return -(-max(frames) // temporal)


def decode_frames(vae, latents: torch.Tensor, frames: Optional[Sequence[int]] = None,
                  autocast=None) -> torch.Tensor:
    """Normalised latents (1, C, F_lat, h, w) -> (K, 3, H, W) in [0, 1] for 0-based pixel
    ``frames`` (all if None): exact for any subset (the causal prefix), differentiable w.r.t.
    the latents."""
    z = denormalize(latents.float(), vae)
    pick = None
    if frames is not None:
        pick = list(frames)
        z = z[:, :, :latent_prefix(pick, z.shape[2], vae.config.scale_factor_temporal) + 1]
    with autocast or contextlib.nullcontext():
        video = vae.decode(z.to(vae.dtype), return_dict=False)[0].float()
    video = video[0].permute(1, 0, 2, 3)  # (F, 3, H, W)
    if pick is not None:
        video = video[pick]
    return (video / 2 + 0.5).clamp(0, 1)


def decode_each(vae, latents: torch.Tensor, latent_frames: Sequence[int],
                autocast=None) -> torch.Tensor:
    """Normalised latents (1, C, F_lat, h, w) -> (K, 3, H, W) in [0, 1]: each of
    ``latent_frames`` decoded ON ITS OWN, as the causal VAE decodes a first frame (one pixel
    frame per latent frame, the K frames in one batch), differentiable w.r.t. the latents.

    Not the clip's exact pixel frames past latent frame 0 (those need the causal prefix:
    :func:`decode_frames`), but the cost of one pixel frame each wherever the frame sits, which
    a loss comparing the decode of a prediction with the same decode of the clip's own latents
    can use (DCT on a DiT: methods/dit.py)."""
    idx = list(latent_frames)
    bad = [i for i in idx if not 0 <= i < latents.shape[2]]
    if bad or not idx or latents.shape[0] != 1:
        raise InputError(f"Latent frames must be within 0..{latents.shape[2] - 1} of one clip; "
                         f"got {idx}.")
    z = denormalize(latents[:, :, idx].float(), vae)  # (1, C, K, h, w)
    z = z[0].permute(1, 0, 2, 3).unsqueeze(2)  # (K, C, 1, h, w): K one-frame clips
    with autocast or contextlib.nullcontext():
        video = vae.decode(z.to(vae.dtype), return_dict=False)[0].float()
    return (video[:, :, 0] / 2 + 0.5).clamp(0, 1)


@torch.no_grad()
def glimpse(vae, latents: torch.Tensor, picks: Sequence[int], autocast=None) -> torch.Tensor:
    """A cheap look at latent frames ``picks`` of normalised latents (1, C, F_lat, h, w), e.g. a
    long video's predicted x0 while it is denoised -> (K, 3, H, W) in [0, 1]: :func:`decode_each`
    without gradients (an approximation of that moment of the video, not its exact frames; the
    final decode is :func:`decode_frames`)."""
    return decode_each(vae, latents, picks, autocast)
