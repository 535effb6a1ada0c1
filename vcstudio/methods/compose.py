"""Several methods' parts in one tuning run: ``--method apla+dct``.

APLA and DCT act on different things and stack: DCT's MS-Adapters sit inside the U-Net and its
consistency losses read the predicted x0, which already includes APLA's VGT (eq. 4), so they
train the VGT too; APLA's hyper-loss replaces the denoising loss and its discriminator runs its
own update after the step. At most one part may replace the denoising loss (each part says so
in its ``replaces_denoise_loss`` attribute).
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError
from .base import Preset, StepState, TuneMethod


class ComposedMethod(TuneMethod):
    """The union of ``parts``: all their modules, trainables, extra terms and after-step
    updates; the denoising loss of the part that replaces it (else plain MSE)."""

    presets = (Preset("apla+dct", "APLA + DCT", {"method": "apla+dct"}),)

    def __init__(self, cfg, parts: list[TuneMethod]) -> None:
        super().__init__(cfg)
        owners = [m for m in parts if m.replaces_denoise_loss]
        if len(owners) > 1:
            raise InputError(f"{' and '.join(m.name for m in owners)} both replace the "
                             "denoising loss; combine at most one of them.")
        self.parts = parts
        self.loss_owner = owners[0] if owners else None
        self.replaces_denoise_loss = self.loss_owner is not None
        self.name = "+".join(m.name for m in parts)

    def setup(self, model, base, device: torch.device) -> None:
        for m in self.parts:
            m.setup(model, base, device)

    def trainable_patterns(self) -> tuple[str, ...]:
        return tuple(p for m in self.parts for p in m.trainable_patterns())

    def trainables(self) -> list[torch.nn.Parameter]:
        return [p for m in self.parts for p in m.trainables()]

    def modules(self) -> dict[str, torch.nn.Module]:
        return {k: v for m in self.parts for k, v in m.modules().items()}

    def notes(self) -> list[str]:
        return [n for m in self.parts for n in m.notes()]

    def summary(self) -> dict[str, Any]:
        return {k: v for m in self.parts for k, v in m.summary().items()}

    def denoise_loss(self, s: StepState) -> torch.Tensor:
        owner = self.loss_owner
        return owner.denoise_loss(s) if owner is not None else super().denoise_loss(s)

    def extra_losses(self, s: StepState) -> dict[str, torch.Tensor]:
        return {k: v for m in self.parts for k, v in m.extra_losses(s).items()}

    def after_step(self, s: StepState) -> dict[str, float]:
        return {k: v for m in self.parts for k, v in m.after_step(s).items()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{m.name}/{k}": v for m in self.parts for k, v in m.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for m in self.parts:
            pre = f"{m.name}/"
            m.load_state_dict({k[len(pre):]: v for k, v in state.items() if k.startswith(pre)})

    def finish(self, run_dir, losses: list[dict]) -> None:
        for m in self.parts:
            m.finish(run_dir, losses)
