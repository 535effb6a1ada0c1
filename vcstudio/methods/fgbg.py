"""Foreground/background-weighted tuning losses (consistency-tuning paper, eqs. 14-16 and 20).

    L     = E || eps - eps_theta(x_t, t, h) ||^2                      (eq. 14 / 6)
    L_fg  = E || M_fg (x) (eps - eps_theta(x_t, t, h)) ||^2          (eq. 15)
    L_bg  = E || M_bg (x) (eps - eps_theta(x_t, t, h)) ||^2          (eq. 16)
    L_total = l1 L + l2 L_fg + l3 L_bg                                (eq. 20)

(x) is the Hadamard product with masks at latent resolution (see :func:`latent_mask`), broadcast
over the latent channels. The paper leaves the reduction open: ``reduction="all"`` (default)
averages over every latent element as eq. 15 reads, so an all-foreground mask gives L_fg == L
and, for binary complementary masks, L_fg + L_bg == L; ``reduction="masked"`` averages over the
masked elements only, which keeps a small object's loss from shrinking with its area. The paper
gives no lambda values; ours (1, 1, 0.5) weight the foreground, which the combined tuning is
meant to preserve, above the background.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError


@dataclass
class FgBgWeights:
    l1: float = 1.0  # plain denoising loss (eq. 20, lambda_1)
    l2: float = 1.0  # foreground (lambda_2)
    l3: float = 0.5  # background (lambda_3)
    reduction: str = "all"  # all | masked


def latent_mask(mask: Union[np.ndarray, torch.Tensor], size: tuple[int, int],
                threshold: Optional[float] = None) -> torch.Tensor:
    """Pixel masks -> latent-resolution masks (B, 1, F, h, w) in [0, 1].

    ``mask``: (F, H, W) or (B, F, H, W), bool / uint8 / float. Area averaging gives each latent
    cell the share of its 8x8 pixels that are foreground (soft edges); ``threshold`` binarises.
    """
    m = torch.as_tensor(np.asarray(mask) if isinstance(mask, np.ndarray) else mask)
    if m.dtype == torch.uint8 and m.max() > 1:
        m = m / 255.0
    m = m.float()
    if m.dim() == 3:
        m = m[None]
    if m.dim() != 4:
        raise InputError(f"Masks must be (frames, H, W) or (batch, frames, H, W); got {tuple(m.shape)}.")
    b, f, h, w = m.shape
    small = F.interpolate(m.reshape(b * f, 1, h, w), size=tuple(size), mode="area")
    small = small.reshape(b, f, 1, *size).permute(0, 2, 1, 3, 4)
    if threshold is not None:
        small = (small >= threshold).float()
    return small.clamp_(0, 1)


def masked_mse(err: torch.Tensor, mask: torch.Tensor, reduction: str = "all") -> torch.Tensor:
    """|| M (x) err ||^2 averaged over all elements ("all") or over the masked ones ("masked")."""
    mask = mask.to(err.dtype)
    sq = (mask * err) ** 2
    if reduction == "all":
        return sq.mean()
    if reduction == "masked":
        denom = torch.broadcast_to(mask, err.shape).sum()
        return sq.sum() / denom.clamp_min(1e-8)
    raise InputError(f"Unknown reduction '{reduction}'; use 'all' or 'masked'.")


def fgbg_losses(eps_pred: torch.Tensor, eps: torch.Tensor, fg_mask: torch.Tensor,
                bg_mask: Optional[torch.Tensor] = None,
                weights: FgBgWeights = FgBgWeights()) -> dict[str, torch.Tensor]:
    """Eq. 20 with its three terms. Returns {"total", "l", "l_fg", "l_bg"} (scalars).

    ``eps_pred``, ``eps``: (B, C, F, h, w); masks (B or 1, 1, F, h, w) at latent resolution;
    ``bg_mask`` defaults to 1 - fg_mask.
    """
    if fg_mask.shape[-2:] != eps.shape[-2:]:
        raise ValueError(f"mask {tuple(fg_mask.shape)} is not at latent resolution "
                         f"{tuple(eps.shape[-2:])}; use latent_mask() first")
    err = eps.float() - eps_pred.float()
    fg = fg_mask.float()
    bg = 1.0 - fg if bg_mask is None else bg_mask.float()
    l = (err ** 2).mean()
    l_fg = masked_mse(err, fg, weights.reduction)
    l_bg = masked_mse(err, bg, weights.reduction)
    total = weights.l1 * l + weights.l2 * l_fg + weights.l3 * l_bg
    return {"total": total, "l": l, "l_fg": l_fg, "l_bg": l_bg}
