"""Flow-matching sampling, inversion and FlowEdit on a clip's latents, against the backbone
interface (models/backbone.py) of a flow model (``parameterization == "flow"``: Wan2.1).

The ODE is dx/ds = v(x, s) over noise levels s from 1 (noise) to 0 (data), on the backbone's
own sigma schedule (``backbone.sigmas(steps)``: the scheduler's shifted sigmas).

* :func:`sample` integrates it with Euler steps x_{i+1} = x_i + (s_{i+1} - s_i) v(x_i, s_i)
  under a prompt, with classifier-free guidance v_u + g (v_c - v_u) (the conditional pass
  first, as WanPipeline does).
* :func:`invert` integrates the same ODE backwards from the clip's latents (s = 0) to s_0 with
  the velocity at the current point, x_i = x_{i+1} + (s_i - s_{i+1}) v(x_{i+1}, s_{i+1}):
  sampling from the result under the same prompt without guidance retraces the path, the
  round-trip error shrinking with the step count (explicit Euler both ways: O(step) per step).
* :func:`flow_edit` is FlowEdit (Kulikov et al. 2024, "FlowEdit: Inversion-Free Text-Based
  Editing Using Pre-Trained Flow Models", Alg. 1): from Z = X_src, for the steps with
  n_min < i <= n_max (of N, counted from the clean end) it draws n_avg noises, forms
  Z_src = (1 - s) X_src + s eps and Z_tar = Z + Z_src - X_src, and moves Z by
  (s_{i+1} - s_i) times the mean of v(Z_tar, s, target) - v(Z_src, s, source); no inversion, no
  tuning. The last n_min steps (if any) then sample plainly under the target from
  Z + Z_src - X_src. Defaults: N = 50, n_max = 33, n_min = 0, n_avg = 1 (the paper's SD3
  setting); guidance 3.5 for the source (the paper's) and 7.0 for the target (the paper's 13.5
  is on SD3's CFG scale; Wan samples at 5, so vcstudio keeps target > source at Wan's scale;
  not yet tried on the full-size model). With the target prompt equal to the source prompt
  and equal guidance the velocity difference is zero and the clip comes back unchanged.

Each function reports a progress Event per step (stage "sample", "invert", "flowedit"), with
the noise level in ``metrics`` and, every ``preview_every`` steps, a preview of the predicted
x0's first frame (uint8) for a page to stream.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ...config import guided_passes
from ...errors import InputError
from ...progress import CancelToken, Event, ProgressFn, null_progress
from ..i2v.base import to_uint8

FLOWEDIT_DEFAULTS = dict(steps=50, n_max=33, n_min=0, n_avg=1, source_guidance=3.5,
                         target_guidance=7.0)


def guided_velocity(backbone, x: torch.Tensor, sigma, cond: torch.Tensor,
                    uncond: Optional[torch.Tensor] = None, guidance: float = 1.0) -> torch.Tensor:
    """v_c, or v_u + g (v_c - v_u) with a negative/empty ``uncond`` and ``guidance`` != 1."""
    v = backbone.predict(x, sigma, cond)
    if uncond is not None and guided_passes(guidance) == 2:
        vu = backbone.predict(x, sigma, uncond)
        v = vu + guidance * (v - vu)
    return v


def _event(i: int, n: int, what: str, stage: str, sigma, preview_every: int, backbone,
           x0: torch.Tensor) -> Event:
    """Step i's event; every ``preview_every`` steps with the predicted x0's first frame."""
    prev = None
    if preview_every and ((i + 1) % preview_every == 0 or i + 1 == n):
        prev = to_uint8(backbone.decode(x0, [0]))  # the causal VAE: one latent frame's cost
    return Event(i + 1, n, f"{what} step {i + 1}/{n}", preview=prev, stage=stage,
                 metrics={"sigma": float(sigma)})


def _check_flow(backbone) -> None:
    if getattr(backbone, "parameterization", "") != "flow":
        raise InputError(f"{getattr(backbone, 'name', 'This backbone')} is not a flow-matching "
                         "model; use the DDIM sampler for it.")


@torch.no_grad()
def sample(backbone, x: torch.Tensor, cond: torch.Tensor, steps: int,
           uncond: Optional[torch.Tensor] = None, guidance: float = 1.0, start: int = 0,
           progress: ProgressFn = null_progress, cancel: Optional[CancelToken] = None,
           preview_every: int = 0, predict: Optional[Callable] = None,
           on_x0: Optional[Callable[[int, torch.Tensor], None]] = None) -> torch.Tensor:
    """Euler sampling of ``steps`` steps from ``x`` at noise level ``sigmas[start]`` (noise for
    start 0, an inversion's result, a partly noised clip) down to s = 0 -> normalised latents.

    ``predict(x, sigma) -> v`` replaces the guided velocity (a long video's co-denoiser fuses
    its windows' guided velocities: pipelines/long/codenoise.py; an Euler step is affine in v, so
    stepping the fused velocity is fusing the windows' steps). ``on_x0(k, x0)`` sees every
    step's predicted x0 (a long video's preview strip)."""
    _check_flow(backbone)
    sig = backbone.sigmas(steps)
    x = x.float()
    n = steps - start
    for k, i in enumerate(range(start, steps)):
        if cancel is not None:
            cancel.check()
        v = (guided_velocity(backbone, x, sig[i], cond, uncond, guidance) if predict is None
             else predict(x, sig[i]))
        x0 = backbone.x0(x, sig[i], v)
        progress(_event(k, n, "sampling", "sample", sig[i], preview_every, backbone, x0))
        if on_x0 is not None:
            on_x0(k, x0)
        x = x + (sig[i + 1] - sig[i]) * v
    return x


@torch.no_grad()
def invert(backbone, latents: torch.Tensor, cond: torch.Tensor, steps: int,
           progress: ProgressFn = null_progress, cancel: Optional[CancelToken] = None,
           stop: int = 0) -> torch.Tensor:
    """The clip's latents (s = 0) integrated backwards to ``sigmas[stop]`` (s ~ 1 for stop 0):
    the latents :func:`sample` with ``start=stop`` turns back into the clip."""
    _check_flow(backbone)
    sig = backbone.sigmas(steps)
    x = latents.float()
    n = steps - stop
    for k, i in enumerate(range(steps - 1, stop - 1, -1)):
        if cancel is not None:
            cancel.check()
        v = backbone.predict(x, sig[i + 1], cond)
        x = x + (sig[i] - sig[i + 1]) * v
        progress(Event(k + 1, n, f"inversion step {k + 1}/{n}", stage="invert",
                       metrics={"sigma": float(sig[i])}))
    return x


@torch.no_grad()
def flow_edit(backbone, latents: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
              uncond: Optional[torch.Tensor] = None, steps: int = 50, n_max: int = 33,
              n_min: int = 0, n_avg: int = 1, source_guidance: float = 3.5,
              target_guidance: float = 7.0, generator: Optional[torch.Generator] = None,
              progress: ProgressFn = null_progress, cancel: Optional[CancelToken] = None,
              preview_every: int = 0) -> torch.Tensor:
    """FlowEdit (module docstring) of the clip's normalised ``latents`` from the ``source``
    prompt's embeddings to the ``target``'s (``uncond``: the negative/empty prompt's, for CFG)
    -> the edited latents."""
    _check_flow(backbone)
    if not 0 <= n_min <= n_max <= steps:
        raise InputError(f"FlowEdit needs 0 <= n_min <= n_max <= steps; got n_min {n_min}, "
                         f"n_max {n_max}, steps {steps}.")
    if n_avg < 1:
        raise InputError(f"n_avg must be at least 1, got {n_avg}.")
    sig = backbone.sigmas(steps)
    x_src = latents.float()
    z = x_src.clone()
    first = steps - n_max  # index i of the first step taken: s_i is the n_max-th from the end
    total = n_max
    gen_dev = generator.device if generator is not None else "cpu"

    def noise() -> torch.Tensor:
        return torch.randn(x_src.shape, generator=generator, device=gen_dev).to(x_src)

    z_tar = None
    for k, i in enumerate(range(first, steps)):
        if cancel is not None:
            cancel.check()
        s, s_next = sig[i], sig[i + 1]
        if i < steps - n_min:  # the edit's ODE on the velocity difference
            dv = torch.zeros_like(z)
            for _ in range(n_avg):
                z_src = (1 - s) * x_src + s * noise()
                zt = z + z_src - x_src
                dv += (guided_velocity(backbone, zt, s, target, uncond, target_guidance)
                       - guided_velocity(backbone, z_src, s, source, uncond, source_guidance))
            dv /= n_avg
            z = z + (s_next - s) * dv
            x0 = z  # FlowEdit's Z is itself a clean-clip estimate
        else:  # the last n_min steps: plain sampling under the target
            if z_tar is None:  # Z_tar = Z + Z_src - X_src with Z_src = (1 - s) X_src + s eps
                z_tar = z + s * (noise() - x_src)
            v = guided_velocity(backbone, z_tar, s, target, uncond, target_guidance)
            x0 = backbone.x0(z_tar, s, v)
            z_tar = z_tar + (s_next - s) * v
        progress(_event(k, total, "FlowEdit", "flowedit", s, preview_every, backbone, x0))
    return z if z_tar is None else z_tar


__all__ = ["FLOWEDIT_DEFAULTS", "flow_edit", "guided_velocity", "invert", "sample"]
