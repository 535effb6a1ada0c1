"""The sampling loop every sampler runs (DDIM with classifier-free guidance by default).

:func:`run_steps` is the one denoising loop: :func:`denoise` (vcstudio's DDIM samplers: previews,
long video, mask fusion, benchmarks) and
:class:`~vcstudio.pipelines.edit.video_pipeline.VideoEditPipeline` (the diffusers pipeline the
edit job samples through, any diffusers scheduler) both step through it.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Optional

import torch

from ...progress import CancelToken, Event, ProgressFn, null_progress


def ddim_scheduler(scheduler_config: dict, steps: int, device):
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(scheduler_config)
    sched.set_timesteps(steps, device=device)
    return sched


def guided_prediction(model, latents: torch.Tensor, t, cond: torch.Tensor,
                      uncond: Optional[torch.Tensor], guidance: float) -> torch.Tensor:
    """eps_u + g (eps_c - eps_u), both branches in one batch (Ho & Salimans' CFG)."""
    from ...config import guided_passes

    b = latents.shape[0]
    if uncond is None or guided_passes(guidance) == 1:
        return model(latents, t, cond.expand(b, -1, -1)).float()
    x = torch.cat([latents, latents])
    e = torch.cat([uncond.expand(b, -1, -1), cond.expand(b, -1, -1)])
    u, c = model(x, t, e).float().chunk(2)
    return u + guidance * (c - u)


def run_steps(scheduler, timesteps, latents: torch.Tensor,
              predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              step_kwargs: Optional[dict] = None, progress: ProgressFn = null_progress,
              cancel: Optional[CancelToken] = None, autocast=None, stage: str = "sample",
              on_step_end: Optional[Callable[[int, Any, torch.Tensor], torch.Tensor]] = None,
              stop: Optional[Callable[[], bool]] = None,
              on_x0: Optional[Callable[[int, torch.Tensor], None]] = None) -> torch.Tensor:
    """x_t -> x_{t-1} for each of ``timesteps``: ``predict(x, t)`` (under ``autocast``) then
    ``scheduler.step``. Latents stay fp32 between steps.

    ``on_step_end(i, t, x) -> x`` may replace the latents after each step (diffusers'
    ``callback_on_step_end``); ``stop()`` ends the loop early (diffusers' ``interrupt``).
    ``on_x0(i, x0)`` is handed the scheduler's predicted clean latents of each step (its
    ``pred_original_sample``, where the scheduler reports one): the streamed previews.
    """
    from ...progress import StepTimer

    ac = autocast or contextlib.nullcontext()
    kw = step_kwargs or {}
    x = latents.float()
    n = len(timesteps)
    timer = StepTimer(n)
    for i, t in enumerate(timesteps):
        if cancel is not None:
            cancel.check()
        if stop is not None and stop():
            break
        with ac:
            out = predict(x, t)
        res = scheduler.step(out.float(), t, x, **kw)
        x = res.prev_sample
        if on_x0 is not None and getattr(res, "pred_original_sample", None) is not None:
            on_x0(i, res.pred_original_sample)
        if on_step_end is not None:
            x = on_step_end(i, t, x)
        progress(Event(i + 1, n, f"denoising step {i + 1}/{n}", stage=stage, eta=timer.tick()))
    return x


@torch.no_grad()
def denoise(model, scheduler_config: dict, latents: torch.Tensor, cond: torch.Tensor,
            uncond: Optional[torch.Tensor], guidance: float, steps: int, eta: float = 0.0,
            generator: Optional[torch.Generator] = None, progress: ProgressFn = null_progress,
            cancel: Optional[CancelToken] = None, autocast=None, start_index: int = 0,
            predict: Optional[Callable] = None, stage: str = "sample",
            stop_index: Optional[int] = None,
            on_x0: Optional[Callable[[int, torch.Tensor], None]] = None) -> torch.Tensor:
    """Run DDIM from ``latents`` (at timestep index ``start_index``) to x_0, or only up to
    timestep index ``stop_index`` (exclusive; the latents returned are then at that timestep:
    average fusion stops at step k, eq. 11, and continues from there, eq. 12).

    ``predict(latents, t) -> model output`` replaces the plain guided prediction (long-video
    co-denoising plugs in its window fusion here).
    """
    sched = ddim_scheduler(scheduler_config, steps, latents.device)
    timesteps = sched.timesteps[start_index:stop_index]
    if predict is None:
        def predict(x, t):
            return guided_prediction(model, x, t, cond, uncond, guidance)
    return run_steps(sched, timesteps, latents, predict, dict(eta=eta, generator=generator),
                     progress, cancel, autocast, stage, on_x0=on_x0)
