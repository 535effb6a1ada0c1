"""DDIM sampling with classifier-free guidance on the inflated video model."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..progress import CancelToken, Event, ProgressFn, null_progress


def ddim_scheduler(scheduler_config: dict, steps: int, device):
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(scheduler_config)
    sched.set_timesteps(steps, device=device)
    return sched


def guided_prediction(model, latents: torch.Tensor, t, cond: torch.Tensor,
                      uncond: Optional[torch.Tensor], guidance: float) -> torch.Tensor:
    """eps_u + g (eps_c - eps_u), both branches in one batch (Ho & Salimans' CFG)."""
    b = latents.shape[0]
    if uncond is None or guidance == 1.0:
        return model(latents, t, cond.expand(b, -1, -1)).float()
    x = torch.cat([latents, latents])
    e = torch.cat([uncond.expand(b, -1, -1), cond.expand(b, -1, -1)])
    u, c = model(x, t, e).float().chunk(2)
    return u + guidance * (c - u)


@torch.no_grad()
def denoise(model, scheduler_config: dict, latents: torch.Tensor, cond: torch.Tensor,
            uncond: Optional[torch.Tensor], guidance: float, steps: int, eta: float = 0.0,
            generator: Optional[torch.Generator] = None, progress: ProgressFn = null_progress,
            cancel: Optional[CancelToken] = None, autocast=None, start_index: int = 0,
            predict: Optional[Callable] = None, stage: str = "sample",
            stop_index: Optional[int] = None) -> torch.Tensor:
    """Run DDIM from ``latents`` (at timestep index ``start_index``) to x_0, or only up to
    timestep index ``stop_index`` (exclusive; the latents returned are then at that timestep:
    average fusion stops at step k, eq. 11, and continues from there, eq. 12).

    ``predict(latents, t) -> model output`` replaces the plain guided prediction (long-video
    co-denoising plugs in its window fusion here).
    """
    import contextlib

    sched = ddim_scheduler(scheduler_config, steps, latents.device)
    timesteps = sched.timesteps[start_index:stop_index]
    ac = autocast or contextlib.nullcontext()
    x = latents.float()
    for i, t in enumerate(timesteps):
        if cancel is not None:
            cancel.check()
        with ac:
            out = (predict(x, t) if predict is not None
                   else guided_prediction(model, x, t, cond, uncond, guidance))
        x = sched.step(out.float(), t, x, eta=eta, generator=generator).prev_sample
        progress(Event(i + 1, len(timesteps), f"denoising step {i + 1}/{len(timesteps)}",
                       stage=stage))
    return x
