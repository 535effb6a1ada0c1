"""The few diffusion identities every method shares (DDPM/DDIM, epsilon or v parameterisation).

x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps,  v = sqrt(a_t) eps - sqrt(1 - a_t) x_0  (a_t = alpha-bar).
"""
from __future__ import annotations

import torch


def alphas_cumprod(scheduler_config: dict) -> torch.Tensor:
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(scheduler_config).alphas_cumprod.clone()


def _bcast(a: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    a = torch.as_tensor(a, device=like.device, dtype=torch.float32)
    while a.ndim < like.ndim:
        a = a.unsqueeze(-1)
    return a


def x0_and_eps(model_output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor,
               prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted clean sample and noise from a model output (differentiable)."""
    a = _bcast(alpha_bar, x_t)
    sa, s1a = a.sqrt(), (1 - a).sqrt()
    out, x = model_output.float(), x_t.float()
    if prediction_type == "epsilon":
        eps = out
        x0 = (x - s1a * eps) / sa
    elif prediction_type == "v_prediction":
        x0 = sa * x - s1a * out
        eps = sa * out + s1a * x
    elif prediction_type == "sample":
        x0 = out
        eps = (x - sa * x0) / s1a
    else:
        raise ValueError(f"unknown prediction_type {prediction_type!r}")
    return x0, eps


def training_target(prediction_type: str, x0: torch.Tensor, noise: torch.Tensor,
                    alpha_bar: torch.Tensor) -> torch.Tensor:
    """What the model is trained to output at this step (DDPM loss target)."""
    if prediction_type == "epsilon":
        return noise
    a = _bcast(alpha_bar, x0)
    if prediction_type == "v_prediction":
        return a.sqrt() * noise - (1 - a).sqrt() * x0
    if prediction_type == "sample":
        return x0
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def add_noise(x0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    a = _bcast(alpha_bar, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise
