"""The Wan VAE's latent normalisation, as WanPipeline applies it.

``AutoencoderKLWan.config`` carries per-channel ``latents_mean`` and ``latents_std``; the
pipelines feed the transformer ``(z - mean) / std`` and decode ``z * std + mean`` (both written
with the reciprocal 1/std as the pipelines write them, so the numbers match theirs). Every
latent vcstudio stores or hands a Wan transformer is normalised.
"""
from __future__ import annotations

import torch


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
