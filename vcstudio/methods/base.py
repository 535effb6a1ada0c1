"""The tuning-method interface the one-shot loop drives (baseline = Tune-A-Video).

A method may install modules into the model (adapters, VGT), add trainable name patterns, replace
the denoising loss, add loss terms, and run its own update after each step (a discriminator).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F

from ..models.diffusion_math import x0_and_eps


@dataclass
class StepState:
    """Everything one training step knows; ``pred_x0`` is computed once, on demand."""

    step: int
    total: int
    model: Any  # VideoDenoiser
    base: Any  # BaseModel
    latents: torch.Tensor  # clean latents x_0 (B, 4, F, h, w)
    noise: torch.Tensor
    noisy: torch.Tensor
    timesteps: torch.Tensor  # (B,)
    alpha_bar: torch.Tensor  # (B,)
    text_emb: torch.Tensor
    pred: torch.Tensor  # model output
    target: torch.Tensor
    frames: torch.Tensor  # real frames, float (F, 3, H, W) in [0, 1]
    prediction_type: str
    generator: torch.Generator
    _x0: Optional[torch.Tensor] = field(default=None, repr=False)

    def pred_x0(self) -> torch.Tensor:
        """Predicted clean latents from the model output at t (on the autograd graph)."""
        if self._x0 is None:
            self._x0 = x0_and_eps(self.pred, self.noisy, self.alpha_bar, self.prediction_type)[0]
        return self._x0


class TuneMethod:
    """Tune-A-Video's baseline: epsilon (or v) MSE on the trainable query projections and
    temporal attention."""

    name = "baseline"

    def __init__(self, cfg=None) -> None:
        self.cfg = cfg

    def setup(self, model, base, device: torch.device) -> None:
        """Install modules into ``model`` before the trainable tensors are chosen."""

    def trainable_patterns(self) -> tuple[str, ...]:
        return ()

    def summary(self) -> dict[str, Any]:
        """What the method set up (switches, parameter counts as ``*_params``, which feature
        nets answered), for meta.json's ``method_summary``, the log and the bench table."""
        return {}

    def denoise_loss(self, s: StepState) -> torch.Tensor:
        return F.mse_loss(s.pred.float(), s.target.float())

    def extra_losses(self, s: StepState) -> dict[str, torch.Tensor]:
        """Weighted loss terms added to the total; each is logged under its key."""
        return {}

    def after_step(self, s: StepState) -> dict[str, float]:
        """Runs after the main optimiser step (e.g. a discriminator update); returns logs."""
        return {}

    def finish(self, run_dir, losses: list[dict]) -> None:
        """Runs once when tuning has finished, with the run folder and the per-step logs
        (e.g. to write a plot of a logged term)."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Extra optimiser state to checkpoint (tensors only)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass
