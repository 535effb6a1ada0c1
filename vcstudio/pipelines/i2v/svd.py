"""Stable Video Diffusion behind the :class:`~vcstudio.pipelines.i2v.base.I2VBackbone` interface.

Its loop reproduces ``StableVideoDiffusionPipeline.__call__``: same noise order for a seed, same
per-frame CFG ramp, same Euler steps. The tests check it against diffusers itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ...config import guided_passes
from ...device import Precision, precision_for
from ...errors import InputError
from ...progress import CancelToken, ProgressFn, null_progress
from .base import image_to_tensor, truncated_loop


@dataclass
class I2VCond:
    """What one conditioning image turns into (SVD: CLIP embedding, VAE latent, time ids)."""

    image: torch.Tensor  # (1, 3, H, W) in [0, 1], at the video's size
    embeds: torch.Tensor  # (B, 1, D), B = 2 with CFG (uncond zeros first)
    image_latents: torch.Tensor  # (B, F, C, h, w)
    added_time_ids: torch.Tensor  # (B, 3)
    num_frames: int
    guidance: torch.Tensor  # (1, F, 1, 1, 1) per-frame CFG scale
    cfg: bool


class SVDBackbone:
    """Stable Video Diffusion (img2vid / img2vid-xt) through its diffusers parts."""

    name = "stable-video-diffusion"
    denoiser_name = "unet"  # StableVideoDiffusionPipeline.unet

    def __init__(self, parts, precision: Optional[Precision] = None, fps: int = 7,
                 motion_bucket_id: int = 127, noise_aug_strength: float = 0.02,
                 min_guidance: float = 1.0, max_guidance: float = 3.0) -> None:
        self.parts = parts
        self.denoiser = parts.unet
        self.device = next(parts.unet.parameters()).device
        self.precision = precision or precision_for(self.device)
        self.fps, self.motion_bucket_id = fps, motion_bucket_id
        self.noise_aug_strength = noise_aug_strength
        self.min_guidance, self.max_guidance = min_guidance, max_guidance
        self.vae_scale = 2 ** (len(parts.vae.config.block_out_channels) - 1)

    # ---- sizes
    @property
    def default_frames(self) -> int:
        return int(self.parts.unet.config.num_frames)

    def default_size(self) -> tuple[int, int]:
        """(height, width): SVD's documented 576 x 1024, or the tiny model's own sample size."""
        s = self.parts.unet.config.sample_size
        if s and s * self.vae_scale < 256:
            return s * self.vae_scale, s * self.vae_scale
        return 576, 1024

    def check(self, num_frames: Optional[int] = None, height: Optional[int] = None,
              width: Optional[int] = None) -> tuple[int, int, int]:
        """(frames, height, width) with the model's own for None; sizes it cannot take are a
        one-line InputError (before anything runs)."""
        h0, w0 = self.default_size()
        height, width = height or h0, width or w0
        if height % 8 or width % 8:
            raise InputError(f"Height and width must be multiples of 8; got {height}x{width}.")
        n = num_frames or self.default_frames
        if n < 2:
            raise InputError("An image-to-video sample needs at least 2 frames.")
        return n, height, width

    # ---- conditioning
    @torch.no_grad()
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """CLIP image embeddings (N, D) of (N, 3, H, W) in [0, 1] (also the fidelity probe)."""
        enc = self.parts.image_encoder
        size = enc.config.image_size
        x = images.to(self.device).float()
        if tuple(x.shape[-2:]) != (size, size):
            # SVD normalises to [-1, 1] before an antialiased resize; resizing [0, 1] is the same map.
            x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True,
                              align_corners=True).clamp(0, 1)
        mean = torch.tensor(self.parts.image_mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.parts.image_std, device=self.device).view(1, 3, 1, 1)
        x = ((x - mean) / std).to(enc.dtype)
        return enc(x).image_embeds.float()

    @torch.no_grad()
    def encode(self, image, num_frames: Optional[int] = None, height: Optional[int] = None,
               width: Optional[int] = None, generator: Optional[torch.Generator] = None,
               prompt: Optional[str] = None) -> I2VCond:
        """``prompt`` is accepted for the common interface; SVD is conditioned on the image only."""
        n, height, width = self.check(num_frames, height, width)
        img = image_to_tensor(image, height, width).to(self.device)
        cfg = guided_passes(self.max_guidance) == 2
        emb = self.embed_images(img)[:, None]  # (1, 1, D)
        # The same draw order as the diffusers pipeline: first the image noise augmentation ...
        noise = torch.randn(img.shape, generator=generator, device=generator.device
                            if generator is not None else "cpu").to(self.device)
        aug = (img * 2 - 1) + self.noise_aug_strength * noise
        vae = self.parts.vae
        lat = vae.encode(aug.to(vae.dtype)).latent_dist.mode().float()  # unscaled, as SVD trains
        lat = lat[:, None].repeat(1, n, 1, 1, 1)
        ids = torch.tensor([[self.fps - 1, self.motion_bucket_id, self.noise_aug_strength]],
                           device=self.device)
        if cfg:
            emb = torch.cat([torch.zeros_like(emb), emb])
            lat = torch.cat([torch.zeros_like(lat), lat])
            ids = ids.repeat(2, 1)
        guid = torch.linspace(self.min_guidance, self.max_guidance, n, device=self.device)
        return I2VCond(image=img, embeds=emb, image_latents=lat, added_time_ids=ids,
                       num_frames=n, guidance=guid.view(1, n, 1, 1, 1), cfg=cfg)

    # ---- sampling loop
    def denoise(self, cond: I2VCond, steps: int = 25, generator: Optional[torch.Generator] = None,
                grad_steps: int = 0, latents: Optional[torch.Tensor] = None,
                progress: ProgressFn = null_progress,
                cancel: Optional[CancelToken] = None) -> torch.Tensor:
        """Euler sampling (eq. of the SVD pipeline); the last ``grad_steps`` keep the graph."""
        if steps < 1:
            raise InputError("Use at least 1 denoising step.")
        if not 0 <= grad_steps <= steps:
            raise InputError(f"grad_steps must be within 0..{steps}, got {grad_steps}.")
        sched = self.parts.scheduler
        sched.set_timesteps(steps, device=self.device)
        n, (h, w) = cond.num_frames, cond.image_latents.shape[-2:]
        shape = (1, n, self.parts.unet.config.out_channels, h, w)
        if latents is None:
            # ... then the initial latents (randn on the generator's device, like randn_tensor).
            latents = torch.randn(shape, generator=generator, device=generator.device
                                  if generator is not None else "cpu")
        x = latents.to(self.device).float() * sched.init_noise_sigma
        return truncated_loop(lambda x, t: self._step(cond, x, t), x, sched.timesteps,
                              grad_steps, progress, cancel)

    def _step(self, cond: I2VCond, x: torch.Tensor, t) -> torch.Tensor:
        sched = self.parts.scheduler
        inp = torch.cat([x] * 2) if cond.cfg else x
        inp = sched.scale_model_input(inp, t)
        inp = torch.cat([inp, cond.image_latents], dim=2)
        unet = self.parts.unet
        with self.precision.autocast():
            pred = unet(inp.to(unet.dtype), t, encoder_hidden_states=cond.embeds.to(unet.dtype),
                        added_time_ids=cond.added_time_ids.to(unet.dtype), return_dict=False)[0]
        pred = pred.float()
        if cond.cfg:
            un, co = pred.chunk(2)
            pred = un + cond.guidance * (co - un)
        return sched.step(pred, t, x).prev_sample.float()

    # ---- decoding
    def decode(self, latents: torch.Tensor, frames: Optional[Sequence[int]] = None,
               chunk: int = 8, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """(1, F, C, h, w) latents -> (K, 3, H, W) in [0, 1] for 0-based ``frames`` (all if None).

        The temporal decoder mixes the frames of one call; decoding a subset decodes those frames
        together (the reward's "random subset of frames").
        """
        z = latents[0]
        if frames is not None:
            z = z[list(frames)]
        vae = self.parts.vae
        z = z / vae.config.scaling_factor
        out = []
        for s in range(0, z.shape[0], chunk):
            part = z[s:s + chunk].to(vae.dtype)
            with self.precision.autocast():
                out.append(vae.decode(part, num_frames=part.shape[0]).sample.float())
        return (torch.cat(out) / 2 + 0.5).clamp(0, 1)



__all__ = ["I2VCond", "SVDBackbone"]
