"""Average fusion at step k (seed 001, section 3.2, eq. 11).

    r'_k = (1/n) w1 sum_{i=1..n} m_bg_{i,k} + w2 m_fg_k                      (eq. 11)

Our reading: the paper calls m_bg_{i,k} "the i-th masked background area randomly sampled from r
at step k" and m_fg_k "the masked foreground area of r_k", i.e. masked *content*, not the binary
masks: m_bg_{i,k} = M_bg_i (x) r_i and m_fg_k = M_fg (x) r_fg, where r_1..r_n are the n candidate
frame sets at step k (paper: n = 5 at t = 995), M_bg_i the background mask SAM found on candidate
i's predicted x0, and r_fg the candidate whose foreground is kept with its mask M_fg. So

    r'_k = (w1 / n) sum_i M_bg_i (x) r_i + w2 M_fg (x) r_fg                  ("paper")

w1, w2 are learnable (pass tensors with requires_grad to learn them). Taken literally, a pixel
that is foreground in some candidates gets a background average shrunk by the missing terms and,
if it is also foreground in r_fg, both terms. ``mode="normalised"`` is the variant we recommend:
the foreground of r_fg where M_fg is set, elsewhere the background average over the candidates
that see background there (falling back to r_fg where none does):

    r'_k = w2 M_fg (x) r_fg + (1 - M_fg) (x) w1 sum_i M_bg_i r_i / sum_i M_bg_i
"""
from __future__ import annotations

from typing import Union

import torch

from ..errors import InputError

Weight = Union[float, torch.Tensor]


def average_fusion(candidates: torch.Tensor, bg_masks: torch.Tensor, fg: torch.Tensor,
                   fg_mask: torch.Tensor, w1: Weight = 1.0, w2: Weight = 1.0,
                   mode: str = "paper") -> torch.Tensor:
    """Eq. 11. ``candidates``: (n, ...) the r_i; ``bg_masks``: (n, ...) broadcastable to them;
    ``fg``: (...) the r_fg whose foreground is kept; ``fg_mask``: (...) broadcastable to ``fg``.
    Masks are in [0, 1] at the candidates' resolution (latent masks for latents)."""
    n = candidates.shape[0]
    if n < 1:
        raise InputError("Average fusion needs at least one candidate.")
    if bg_masks.shape[0] != n:
        raise ValueError(f"{bg_masks.shape[0]} background masks for {n} candidates")
    bg_masks = bg_masks.to(candidates.dtype)
    fg_mask = fg_mask.to(fg.dtype)
    bg_sum = (bg_masks * candidates).sum(0)
    if mode == "paper":
        return (w1 / n) * bg_sum + w2 * (fg_mask * fg)
    if mode == "normalised":
        count = torch.broadcast_to(bg_masks, candidates.shape).sum(0)
        bg_avg = torch.where(count > 0, bg_sum / count.clamp_min(1e-8), fg)
        return w2 * (fg_mask * fg) + (1 - fg_mask) * (w1 * bg_avg)
    raise InputError(f"Unknown fusion mode '{mode}'; use 'paper' or 'normalised'.")


def fuse_candidates(candidates: torch.Tensor, fg_masks: torch.Tensor, fg_index: int = 0,
                    w1: Weight = 1.0, w2: Weight = 1.0, mode: str = "paper") -> torch.Tensor:
    """Eq. 11 from the candidates' foreground masks: M_bg_i = 1 - M_fg_i, the foreground taken
    from candidate ``fg_index`` with its own mask."""
    if not 0 <= fg_index < candidates.shape[0]:
        raise InputError(f"fg_index {fg_index} is not one of the {candidates.shape[0]} candidates.")
    fg_masks = fg_masks.to(candidates.dtype)
    return average_fusion(candidates, 1 - fg_masks, candidates[fg_index], fg_masks[fg_index],
                          w1, w2, mode)
