"""Image-to-video backbones behind one small interface, and plain I2V sampling.

An :class:`I2VBackbone` does three things the reward tuning (seed 002 eq. 3) needs:

* ``encode(image, ...)``: conditioning from one image (computed once, no grad);
* ``denoise(cond, ..., grad_steps=k)``: the full sampling loop where only the LAST ``k`` steps
  keep the autograd graph (truncated backprop; k = 0 is plain sampling);
* ``decode(latents, frames=[...])``: pixels in [0, 1] of a chosen subset of frames,
  differentiable w.r.t. the latents.

``denoiser`` is the module LoRA goes into. Two backbones are shipped: Stable Video Diffusion
(here; its loop reproduces ``StableVideoDiffusionPipeline.__call__``: same noise order for a seed,
same per-frame CFG ramp, same Euler steps) and LTX-Video (``i2v_ltx.py``, text + image
conditioned, temporally compressed latents). The tests check each against diffusers itself.
``build_backbone`` picks one from the model folder's pipeline class or an explicit choice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..device import Precision, precision_for
from ..errors import InputError
from ..progress import CancelToken, Event, ProgressFn, null_progress


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


class I2VBackbone(Protocol):
    """The conditioning object ``encode`` returns is the backbone's own (SVD: :class:`I2VCond`);
    callers only read its ``image`` (1, 3, H, W) and ``num_frames`` (pixel frames)."""

    name: str
    denoiser: torch.nn.Module

    def encode(self, image, num_frames: int, height: int, width: int,
               generator: torch.Generator, prompt: Optional[str] = None): ...

    def denoise(self, cond: I2VCond, steps: int, generator: torch.Generator, grad_steps: int = 0,
                progress: ProgressFn = null_progress,
                cancel: Optional[CancelToken] = None) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor, frames: Optional[Sequence[int]] = None,
               chunk: int = 8, generator: Optional[torch.Generator] = None) -> torch.Tensor: ...

    def embed_images(self, images: torch.Tensor) -> torch.Tensor: ...


def truncated_loop(step: Callable[[torch.Tensor, Any], torch.Tensor], x: torch.Tensor,
                   timesteps, grad_steps: int, progress: ProgressFn = null_progress,
                   cancel: Optional[CancelToken] = None) -> torch.Tensor:
    """The denoising loop where only the last ``grad_steps`` steps keep the autograd graph
    (seed 002's truncated backprop; 0 = plain sampling)."""
    n = len(timesteps)
    for i, t in enumerate(timesteps):
        if cancel is not None:
            cancel.check()
        with torch.set_grad_enabled(i >= n - grad_steps and torch.is_grad_enabled()):
            x = step(x, t)
        progress(Event(i + 1, n, f"denoising step {i + 1}/{n}", stage="sample"))
    return x


def image_to_tensor(image, height: int, width: int) -> torch.Tensor:
    """uint8 (H, W, 3) numpy or float (3, H, W)/(1, 3, H, W) in [0, 1] -> (1, 3, height, width)."""
    if isinstance(image, np.ndarray):
        from ..io import resize_frames

        if image.ndim != 3 or image.shape[-1] != 3:
            raise InputError(f"Conditioning image must be (H, W, 3), got {image.shape}.")
        if image.shape[:2] != (height, width):
            image = resize_frames(image[None], width, height, mode="crop")[0]
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
    t = image[None] if image.ndim == 3 else image
    if tuple(t.shape[-2:]) != (height, width):
        t = F.interpolate(t.float(), size=(height, width), mode="bilinear", antialias=True,
                          align_corners=False)
    return t.float()


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """float (F, 3, H, W) in [0, 1] -> uint8 (F, H, W, 3): the one exit to the io edge."""
    return (frames.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


class SVDBackbone:
    """Stable Video Diffusion (img2vid / img2vid-xt) through its diffusers parts."""

    name = "stable-video-diffusion"

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
        h0, w0 = self.default_size()
        height, width = height or h0, width or w0
        if height % 8 or width % 8:
            raise InputError(f"Height and width must be multiples of 8; got {height}x{width}.")
        n = num_frames or self.default_frames
        if n < 2:
            raise InputError("An image-to-video sample needs at least 2 frames.")
        img = image_to_tensor(image, height, width).to(self.device)
        cfg = self.max_guidance > 1
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


@dataclass
class I2VResult:
    frames: np.ndarray  # uint8 (F, H, W, 3)
    seed: int
    backbone: str
    model: str


BACKBONES = ("svd", "ltx")
PIPELINE_BACKBONE = {"StableVideoDiffusionPipeline": "svd", "LTXImageToVideoPipeline": "ltx"}


def backbone_kind(model: str, backbone: str = "auto") -> str:
    """"svd" | "ltx" for a model: an explicit choice wins; else the folder's model_index.json
    ``_class_name`` (cached hub files too); else the hub id's name; else SVD."""
    import json
    from pathlib import Path

    if backbone != "auto":
        if backbone not in BACKBONES:
            raise InputError(f"Unknown I2V backbone {backbone!r}; choose one of {BACKBONES} or auto.")
        return backbone
    index = Path(model) / "model_index.json"
    if not index.is_file() and not Path(model).exists():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "model_index.json")
            index = Path(cached) if isinstance(cached, str) else index
        except Exception:  # not a valid repo id: the loader reports it
            pass
    if index.is_file():
        cls = json.loads(index.read_text()).get("_class_name", "")
        if cls in PIPELINE_BACKBONE:
            return PIPELINE_BACKBONE[cls]
        raise InputError(f"{model} holds a {cls or 'unknown'} pipeline; the I2V job runs "
                         f"{', '.join(PIPELINE_BACKBONE)}. Pass --backbone to force one.")
    return "ltx" if "ltx" in str(model).lower() else "svd"


def build_backbone(model: str, device=None, mixed_precision: str = "auto",
                   cache=None, backbone: str = "auto", **kwargs):
    """The backbone for a model id / folder: SVD or LTX-Video (see :func:`backbone_kind`)."""
    from ..device import pick_device
    from ..models.cache import default_cache

    dev = pick_device(device)
    prec = precision_for(dev, mixed_precision)
    cache = default_cache if cache is None else cache
    if backbone_kind(model, backbone) == "ltx":
        from ..models.ltx import load_ltx
        from .i2v_ltx import LTXBackbone

        parts = load_ltx(model, device=dev, dtype=prec.frozen_dtype, cache=cache)
        return LTXBackbone(parts, precision=prec, **kwargs)
    from ..models.svd import load_svd

    parts = load_svd(model, device=dev, dtype=prec.frozen_dtype, cache=cache)
    return SVDBackbone(parts, precision=prec, **kwargs)


def sample_i2v(backbone: I2VBackbone, image, num_frames: Optional[int] = None,
               height: Optional[int] = None, width: Optional[int] = None, steps: int = 25,
               seed: int = 0, progress: ProgressFn = null_progress,
               cancel: Optional[CancelToken] = None, prompt: Optional[str] = None) -> np.ndarray:
    """Generate a video from one image (+ prompt, where the backbone reads one) -> uint8
    (F, H, W, 3). Same seed, same frames: one generator feeds encode, denoise and decode in the
    order the diffusers pipelines draw from it."""
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        cond = backbone.encode(image, num_frames, height, width, generator=g, prompt=prompt)
        lat = backbone.denoise(cond, steps, generator=g, progress=progress, cancel=cancel)
        return to_uint8(backbone.decode(lat, generator=g))


__all__ = ["BACKBONES", "I2VBackbone", "I2VCond", "I2VResult", "SVDBackbone", "backbone_kind",
           "build_backbone",
           "image_to_tensor", "sample_i2v", "to_uint8"]
