"""APLA's adversarial training with a 1x1 convolution (APLA paper, eqs. 19, 20).

The discriminator is ONE 1x1(x1) convolution over the latent channels, applied at every frame
and pixel position and keeping them apart: it maps true noise or predicted noise
(B, C, F, h, w) to a logit map (B, 1, F, h, w), one real/fake score per frame position and pixel.
Being linear per position, it can only tell the two apart by their first moments per channel
(a bias or a channel mix the true noise does not have); the paper chose it as a light
regulariser, and that is all it can be.

Losses (binary cross-entropy on every logit):

* discriminator (the "max_D" of eq. 19): BCE(D(eps), 1) + BCE(D(eps_hat), 0), halved so chance
  level reads ln 2 = 0.693; eps_hat is detached, so this loss reaches the discriminator only;
* generator (lambda * L_g of eq. 20): the non-saturating form BCE(D(eps_hat), 1) = -log D(eps_hat)
  instead of log(1 - D(eps_hat)), whose gradient vanishes when D wins (Goodfellow et al.'s
  standard fix). The discriminator's weights enter it DETACHED, so this loss reaches the
  generator (U-Net + VGT) only and the tuning loop's optimiser, which holds every trainable
  tensor, never steps the discriminator.

Alternate updates: the loop steps the generator, then :meth:`AdversarialTrainer.update` steps the
discriminator with its own Adam on the same step's noise pair.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


class NoiseDiscriminator(nn.Module):
    """A single 1x1x1 Conv3d: (B, C, F, h, w) noise -> (B, 1, F, h, w) logits."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, 1, kernel_size=1)

    def forward(self, noise: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """``frozen=True``: the weights enter detached (no gradient reaches them)."""
        w, b = self.conv.weight, self.conv.bias
        if frozen:
            w, b = w.detach(), b.detach()
        return F.conv3d(noise.to(w.dtype), w, b)


def generator_loss(disc: NoiseDiscriminator, fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating L_g (eq. 19/20): -log D(eps_hat), the discriminator frozen."""
    logits = disc(fake.float(), frozen=True)
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def discriminator_loss(disc: NoiseDiscriminator, real: torch.Tensor, fake: torch.Tensor,
                       ) -> tuple[torch.Tensor, float]:
    """max_D of eq. 19 as a loss to minimise, and the accuracy (share of logits on the right side
    of 0, real and fake alike)."""
    lr = disc(real.detach().float())
    lf = disc(fake.detach().float())
    loss = 0.5 * (F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr))
                  + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf)))
    acc = 0.5 * (float((lr > 0).float().mean()) + float((lf < 0).float().mean()))
    return loss, acc


class AdversarialTrainer:
    """The discriminator's own optimiser and update step; its state checkpoints as tensors."""

    def __init__(self, disc: NoiseDiscriminator, lr: float = 1e-4,
                 betas: tuple[float, float] = (0.5, 0.999)) -> None:
        self.disc = disc
        self.lr, self.betas = lr, tuple(betas)
        self._opt: Optional[torch.optim.Optimizer] = None
        self._pending: dict[str, torch.Tensor] = {}

    @property
    def opt(self) -> torch.optim.Optimizer:
        # made on first use: the tuning loop moves and casts the model after the method's setup
        if self._opt is None:
            self._opt = torch.optim.Adam(self.disc.parameters(), lr=self.lr, betas=self.betas)
            if self._pending:
                self._restore(self._pending)
                self._pending = {}
        return self._opt

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return generator_loss(self.disc, fake)

    def update(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        """One discriminator step on (true noise, predicted noise); returns its logs."""
        opt = self.opt
        opt.zero_grad(set_to_none=True)
        with torch.autocast(real.device.type, enabled=False):
            loss, acc = discriminator_loss(self.disc, real, fake)
            loss.backward()
        opt.step()
        # grads to None: the tuning loop's optimiser also holds these tensors and must not see
        # them at its next step
        opt.zero_grad(set_to_none=True)
        return {"disc_loss": float(loss.detach()), "disc_acc": acc}

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, p in self.disc.named_parameters():
            st = self.opt.state.get(p, {})
            for k in ("exp_avg", "exp_avg_sq", "step"):
                if k in st:
                    out[f"disc_opt/{name}/{k}"] = torch.as_tensor(st[k]).detach().float().clone()
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        state = {k: v for k, v in state.items() if k.startswith("disc_opt/")}
        if self._opt is None:
            self._pending = dict(state)
        else:
            self._restore(state)

    def _restore(self, state: dict[str, torch.Tensor]) -> None:
        for name, p in self.disc.named_parameters():
            st = {k: state[f"disc_opt/{name}/{k}"] for k in ("exp_avg", "exp_avg_sq", "step")
                  if f"disc_opt/{name}/{k}" in state}
            if st:
                st["exp_avg"] = st["exp_avg"].to(p.device, p.dtype)
                st["exp_avg_sq"] = st["exp_avg_sq"].to(p.device, p.dtype)
                st["step"] = st["step"].cpu().float()
                self._opt.state[p] = st
