"""DDIM inversion of clip latents (Tune-A-Video Sec. 4.2; Song et al. DDIM eq. 12 run backwards).

Each step moves x_{t_prev} -> x_t with the noise the model predicts at (x_{t_prev}, t):
    x_t = sqrt(a_t) x0_hat + sqrt(1 - a_t) eps,  x0_hat = (x_{t_prev} - sqrt(1 - a_prev) eps) / sqrt(a_prev)
which is the deterministic DDIM (eta = 0) update reversed, so sampling from the result with the
same prompt, steps and guidance 1 returns close to the original latents. The approximation is
eps(x_{t_prev}, t) for eps(x_t, t); ``fixed_point_iters`` > 0 re-evaluates the noise at the
current estimate of x_t that many times per step (a fixed-point solve of the implicit DDIM step),
which makes the round trip much tighter when the model's prediction varies quickly with x.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch

from ...models.diffusion_math import x0_and_eps
from ...progress import CancelToken, Event, ProgressFn, null_progress
from .sample import ddim_scheduler


@torch.no_grad()
def ddim_invert(model, scheduler_config: dict, latents: torch.Tensor, cond: torch.Tensor,
                steps: int, progress: ProgressFn = null_progress,
                cancel: Optional[CancelToken] = None, autocast=None,
                fixed_point_iters: int = 0) -> torch.Tensor:
    sched = ddim_scheduler(scheduler_config, steps, latents.device)
    ac_all = sched.alphas_cumprod.to(latents.device)
    final = torch.as_tensor(sched.final_alpha_cumprod, device=latents.device)
    ratio = sched.config.num_train_timesteps // steps
    pt = sched.config.prediction_type
    ctx = autocast or contextlib.nullcontext()
    x = latents.float()
    ts = sched.timesteps.flip(0)  # ascending
    for i, t in enumerate(ts):
        if cancel is not None:
            cancel.check()
        t_prev = int(t) - ratio
        a_prev = ac_all[t_prev] if t_prev >= 0 else final
        a_t = ac_all[int(t)]
        c = cond.expand(x.shape[0], -1, -1)
        x_t = x
        for _ in range(1 + fixed_point_iters):
            with ctx:
                out = model(x_t, t, c)
            # read eps treating the input as x_t (exact for epsilon prediction)
            eps = x0_and_eps(out, x_t, a_t, pt)[1]
            x0 = (x - (1 - a_prev).sqrt() * eps) / a_prev.sqrt()
            x_t = a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps
        x = x_t
        progress(Event(i + 1, len(ts), f"inversion step {i + 1}/{len(ts)}", stage="invert"))
    return x
