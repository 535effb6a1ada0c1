"""Average fusion at step k (consistency-tuning paper, section 3.2, eq. 11).

    r'_k = (1/n) w1 sum_{i=1..n} m_bg_{i,k} + w2 m_fg_k                      (eq. 11)

Our reading: the paper calls m_bg_{i,k} "the i-th masked background area randomly sampled from r
at step k" and m_fg_k "the masked foreground area of r_k", i.e. masked *content*, not the binary
masks: m_bg_{i,k} = M_bg_i (x) r_i and m_fg_k = M_fg (x) r_fg, where r_1..r_n are the n candidate
frame sets at step k (paper: n = 5 at t = 995), M_bg_i the background mask SAM found on candidate
i's predicted x0, and r_fg the candidate whose foreground is kept with its mask M_fg.

Every variant below is, per latent element, a linear combination sum_j c_j r_j of the candidates
with coefficients c_j from the masks and w1, w2 (:func:`fusion_coefficients`). Two region rules:

* ``mode="paper"``: c_j = (w1 / n) M_bg_j + [j = fg] w2 M_fg, eq. 11's own structure;
* ``mode="normalised"``: the foreground of r_fg where M_fg is set, elsewhere the background
  average over the candidates that see background there (r_fg where none does):
  c_j = [j = fg] w2 M_fg + (1 - M_fg) w1 M_bg_j / sum_i M_bg_i.

**Default: the statistics of a step-k latent are kept.** At k = 995 (the paper's step, the first
step of a 50-step DDIM schedule) the candidates are independent N(0, I) noises, and a weighted sum
of independent unit-variance noises has variance sum_j c_j^2: the plain average of 5 has std
1/sqrt(5) = 0.45 where the foreground keeps 1.0. The sampler expects unit variance at that step,
so the literal formula gives a washed-out, low-detail background with a seam at the mask edge (on
the demo model a sample from it ended at latent std 0.71 against 0.94 unfused), and that clip r'
is the target of combined tuning (sec. 3.3). By default (``scale="variance"``) each element is
therefore divided by sqrt(sum_j c_j^2), in both modes: every region keeps unit variance, w1 and w2
act as the relative weights of background and foreground where their masks overlap (soft mask
edges, or the paper rule's overlap of M_fg with other candidates' backgrounds).

* ``mode="literal"`` (``scale="none"`` with the paper rule) is eq. 11 exactly as printed, for
  ablations and reproducing the paper's arithmetic; ``scale="none"`` with ``mode="normalised"`` is
  the unscaled normalised rule.
* :func:`fuse_x0_renoise` is a variant for a step k below the first step (candidates that already
  carry content): it fuses the candidates' predicted x0 as a convex combination (sum c x0 / sum c,
  content keeps its scale), fuses their noise estimates with the variance kept, and re-noises to
  step k: r'_k = sqrt(abar_k) x0' + sqrt(1 - abar_k) eps'.

**w1, w2 are fixed, not learned.** The paper calls them learnable but defines no objective for
them: eq. 11 acts once, on step-k latents, before a no-grad sampling (eq. 12), SAM and combined
tuning (eq. 20 trains theta on r', not the fusion); learning them would mean back-propagating a
loss we would have to invent through the whole sampling. So they are config fields
(``MaskConfig.w1``, ``w2``; defaults 1, 1). The functions stay differentiable in them (pass tensors
with ``requires_grad``) for anyone who brings such a loss.
"""
from __future__ import annotations

from typing import Optional, Union

import torch

from ..errors import InputError

Weight = Union[float, torch.Tensor]

MODES = ("paper", "normalised", "literal")
SCALES = ("variance", "none")


def _rule(mode: str, scale: str) -> tuple[str, str]:
    if mode not in MODES:
        raise InputError(f"Unknown fusion mode '{mode}'; use one of {', '.join(MODES)}.")
    if scale not in SCALES:
        raise InputError(f"Unknown fusion scale '{scale}'; use one of {', '.join(SCALES)}.")
    if mode == "literal":
        return "paper", "none"
    return mode, scale


def fusion_coefficients(bg_masks: torch.Tensor, fg_mask: torch.Tensor, fg_index: int,
                        w1: Weight = 1.0, w2: Weight = 1.0, mode: str = "paper") -> torch.Tensor:
    """The c_j of r'_k = sum_j c_j r_j (eq. 11 read per element), shape (n, ...).

    ``bg_masks``: (n, ...) the M_bg_i; ``fg_mask``: (...) the M_fg of candidate ``fg_index``
    (the r_fg); masks in [0, 1], broadcastable to each other."""
    mode, _ = _rule(mode, "none")
    n = bg_masks.shape[0]
    shape = torch.broadcast_shapes(bg_masks.shape, (1,) + tuple(fg_mask.shape))
    bg = torch.broadcast_to(bg_masks, shape)
    fgm = torch.broadcast_to(fg_mask, shape[1:])
    onehot = torch.zeros(shape, dtype=bg.dtype, device=bg.device)
    onehot[fg_index] = 1
    if mode == "paper":
        return (w1 / n) * bg + w2 * onehot * fgm
    count = bg.sum(0)
    share = torch.where(count > 0, bg / count.clamp_min(1e-8), onehot)  # none sees bg: r_fg
    return w2 * onehot * fgm + w1 * share * (1 - fgm)


def combine(candidates: torch.Tensor, coef: torch.Tensor, scale: str = "variance") -> torch.Tensor:
    """sum_j c_j r_j, divided per element by sqrt(sum_j c_j^2) when ``scale="variance"`` (keeps
    unit variance for independent unit-variance candidates)."""
    out = (coef * candidates).sum(0)
    if scale == "variance":
        out = out / coef.square().sum(0).sqrt().clamp_min(1e-8)
    return out


def average_fusion(candidates: torch.Tensor, bg_masks: torch.Tensor, fg: torch.Tensor,
                   fg_mask: torch.Tensor, w1: Weight = 1.0, w2: Weight = 1.0,
                   mode: str = "paper", scale: str = "variance") -> torch.Tensor:
    """Eq. 11 with r_fg given separately (an n+1-th independent source). ``candidates``: (n, ...)
    the r_i; ``bg_masks``: (n, ...) broadcastable to them; ``fg``: (...) the r_fg whose
    foreground is kept; ``fg_mask``: (...) broadcastable to ``fg``. Masks are in [0, 1] at the
    candidates' resolution (latent masks for latents). Defaults keep unit variance (module doc);
    ``mode="literal"`` is the printed formula."""
    n = candidates.shape[0]
    if n < 1:
        raise InputError("Average fusion needs at least one candidate.")
    if bg_masks.shape[0] != n:
        raise ValueError(f"{bg_masks.shape[0]} background masks for {n} candidates")
    mode, scale = _rule(mode, scale)
    dt = candidates.dtype
    bg_masks, fg_mask = bg_masks.to(dt), fg_mask.to(dt)
    src = torch.cat([candidates, fg.unsqueeze(0).to(dt)])
    bg_all = torch.cat([torch.broadcast_to(bg_masks, candidates.shape),
                        torch.zeros_like(fg, dtype=dt).unsqueeze(0)])  # r_fg has no bg term
    coef = fusion_coefficients(bg_all, fg_mask, n, w1, w2, mode)
    if mode == "paper":  # eq. 11 divides by the n background candidates, not n + 1
        coef = coef.clone()
        coef[:n] = coef[:n] * (n + 1) / n
    return combine(src, coef, scale)


def _check(candidates: torch.Tensor, fg_index: int) -> None:
    if candidates.shape[0] < 1:
        raise InputError("Average fusion needs at least one candidate.")
    if not 0 <= fg_index < candidates.shape[0]:
        raise InputError(f"fg_index {fg_index} is not one of the {candidates.shape[0]} candidates.")


def fuse_candidates(candidates: torch.Tensor, fg_masks: torch.Tensor, fg_index: int = 0,
                    w1: Weight = 1.0, w2: Weight = 1.0, mode: str = "paper",
                    scale: str = "variance") -> torch.Tensor:
    """Eq. 11 from the candidates' foreground masks: M_bg_i = 1 - M_fg_i, the foreground taken
    from candidate ``fg_index`` with its own mask. Default: the paper's region rule with unit
    variance kept per element; ``mode="literal"``: the formula as printed (module doc)."""
    _check(candidates, fg_index)
    mode, scale = _rule(mode, scale)
    fg_masks = fg_masks.to(candidates.dtype)
    coef = fusion_coefficients(1 - fg_masks, fg_masks[fg_index], fg_index, w1, w2, mode)
    return combine(candidates, coef, scale)


def fuse_x0_renoise(x0: torch.Tensor, eps: torch.Tensor, fg_masks: torch.Tensor,
                    alpha_bar: Union[float, torch.Tensor], fg_index: int = 0, w1: Weight = 1.0,
                    w2: Weight = 1.0, mode: str = "paper",
                    noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Eq. 11 on the candidates' predicted x0 (eq. 8), re-noised to step k (DDIM's forward
    marginal): r'_k = sqrt(abar_k) x0' + sqrt(1 - abar_k) eps', with x0' = sum c x0 / sum c (a
    weighted average: content keeps its scale) and eps' the noise estimates fused with unit
    variance kept, or ``noise`` (fresh N(0, I)) when given. ``x0``, ``eps``: (n, ...)."""
    _check(x0, fg_index)
    mode, _ = _rule(mode, "none")
    fg_masks = fg_masks.to(x0.dtype)
    coef = fusion_coefficients(1 - fg_masks, fg_masks[fg_index], fg_index, w1, w2, mode)
    x0f = (coef * x0).sum(0) / coef.sum(0).clamp_min(1e-8)
    epsf = combine(eps, coef, "variance") if noise is None else noise
    a = torch.as_tensor(alpha_bar, dtype=x0.dtype, device=x0.device)
    return a.sqrt() * x0f + (1 - a).sqrt() * epsf
