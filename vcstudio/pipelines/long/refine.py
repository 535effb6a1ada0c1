"""Progressive refinement helpers (MOV AI paper, PVR): low -> high resolution in stages.

A video is sampled at the lowest scale; for each higher scale its latents are upsampled
(:func:`upsample_latents`), noised back to an intermediate timestep and denoised only from there
(:func:`partial_timesteps`: the img2img "strength" rule), with the same windows and prompts.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from ...errors import InputError

LATENT_FACTOR = 8  # SD VAE: latents are H/8 x W/8
SIZE_MULTIPLE = 64  # SD U-Net halves the latent 3 times


def parse_scales(text: Union[str, Sequence[int]]) -> list[int]:
    """"256,512" -> [256, 512]: increasing sizes, each a multiple of 64 (SD's U-Net needs it)."""
    if isinstance(text, str):
        try:
            scales = [int(s) for s in text.replace(" ", "").split(",") if s]
        except ValueError:
            raise InputError(f"--refine takes sizes like 256,512 (got '{text}').") from None
    else:
        scales = [int(s) for s in text]
    if not scales:
        raise InputError("--refine needs at least one size, e.g. 256,512.")
    bad = [s for s in scales if s <= 0 or s % SIZE_MULTIPLE]
    if bad:
        raise InputError(f"Refinement sizes must be positive multiples of {SIZE_MULTIPLE}; "
                         f"{bad} are not (try 256,512).")
    if any(b <= a for a, b in zip(scales, scales[1:])):
        raise InputError(f"Refinement sizes must increase (got {scales}).")
    return scales


def latent_size(pixels: int) -> int:
    return pixels // LATENT_FACTOR


def upsample_latents(latents: torch.Tensor, size: Optional[tuple[int, int]] = None,
                     scale: Optional[float] = None, mode: str = "bilinear") -> torch.Tensor:
    """Spatially resize video latents (B, C, F, h, w) -> (B, C, F, H, W), frame by frame.

    Frames are never mixed (the time axis is untouched); ``mode``: nearest | bilinear | bicubic.
    """
    if latents.dim() != 5:
        raise ValueError(f"expected (B, C, F, h, w) latents, got {tuple(latents.shape)}")
    if (size is None) == (scale is None):
        raise ValueError("give exactly one of size or scale")
    b, c, f, h, w = latents.shape
    if size is None:
        size = (int(round(h * scale)), int(round(w * scale)))
    x = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    kw = {} if mode == "nearest" else {"align_corners": False}
    y = F.interpolate(x.float(), size=tuple(size), mode=mode, **kw).to(latents.dtype)
    return y.reshape(b, f, c, *size).permute(0, 2, 1, 3, 4).contiguous()


def partial_timesteps(timesteps: Sequence[int] | torch.Tensor, strength: float):
    """The tail of a denoising schedule to run at ``strength`` in (0, 1].

    Runs the last ``int(n * strength)`` of the n timesteps (strength 1 = all of them, a full
    re-generation; 0.3 = a light touch-up). Returns (timesteps_to_run, start_index); the latents
    are noised to ``timesteps_to_run[0]`` before the first step.
    """
    if not 0.0 < strength <= 1.0:
        raise InputError(f"Refinement strength must be in (0, 1] (got {strength}).")
    n = len(timesteps)
    run = min(n, max(1, int(n * strength)))
    start = n - run
    return timesteps[start:], start


def refine_timesteps(scheduler, num_steps: int, strength: float, device=None):
    """``scheduler.set_timesteps(num_steps)`` then :func:`partial_timesteps` on its schedule."""
    scheduler.set_timesteps(num_steps, device=device)
    return partial_timesteps(scheduler.timesteps, strength)


def renoise(scheduler, latents: torch.Tensor, timestep, generator: Optional[torch.Generator] = None):
    """q(x_t | x_0): noise upsampled latents to the first timestep of the partial schedule."""
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32,
                        device="cpu" if generator is None else generator.device).to(latents)
    t = torch.as_tensor(timestep).reshape(1).to(latents.device)
    return scheduler.add_noise(latents, noise, t)


def refine_plan(scales: Sequence[int], num_steps: int, strength: float) -> list[dict]:
    """Stages: the first scale is a full sampling, each later one a partial denoise."""
    plan = []
    for k, s in enumerate(scales):
        steps = num_steps if k == 0 else len(partial_timesteps(list(range(num_steps)), strength)[0])
        plan.append({"size": s, "latent": latent_size(s), "strength": 1.0 if k == 0 else strength,
                     "steps": steps})
    return plan
