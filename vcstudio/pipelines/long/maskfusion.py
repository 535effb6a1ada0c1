"""Masks and average fusion at step k (consistency-tuning paper, secs. 3.1-3.2, eqs. 8-12).

1. Sample n candidate clips r_1..r_n (different seeds) from the tuned model down to step k, the
   first schedule timestep <= k (paper: n = 5, k = 995 of a 1000-step DDPM; with a DDIM schedule
   that is its first step).
2. Predict x0 at step k (eq. 8), decode it and mask it: [m_fg, m_bg] = F1(r) (eq. 9) with SAM, or
   the labelled GrabCut fallback.
3. Fuse the step-k latents with the masks at latent resolution (eq. 11, methods/fusion.py) and
   denoise the fused r'_k the rest of the way (eq. 12) -> r'.

The fused clip and its own masks are what combined tuning (sec. 3.3) trains on; the candidates'
x0 frames and masks are returned for preview.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from ...config import MaskConfig
from ...errors import InputError
from ...methods.fgbg import latent_mask
from ...methods.fusion import MODES as FUSION_MODES, fuse_candidates, fuse_x0_renoise
from ...methods.masks import MaskResult, find_sam_checkpoint, foreground_masks
from ...models.diffusion_math import alphas_cumprod, x0_and_eps
from ...progress import Event
from ...run_context import RunContext
from ...models.encode import decode_to_frames
from ..edit.sample import ddim_scheduler, denoise, guided_prediction

# the refinement candidates' noise seeds sit this far from the sampling seed (distinct draws)
REFINE_SEED_OFFSET = 1000


@dataclass
class FusionResult:
    frames: np.ndarray  # uint8 (K, H, W, 3): r', the fused clip denoised to the end (eq. 12)
    masks: np.ndarray  # bool (K, H, W): foreground of r' (for combined tuning)
    candidates: np.ndarray  # uint8 (n, K, H, W, 3): each candidate's predicted x0 at step k
    candidate_masks: np.ndarray  # bool (n, K, H, W)
    method: str  # how the masks were made ("sam-box", ..., or the GrabCut label)
    k_index: int  # index of step k in the sampling schedule
    k_timestep: int
    latents: torch.Tensor = field(repr=False)  # r'_0 latents (1, 4, K, h, w)


def dim_background(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Frames with the background (mask False) at a third of its brightness: a mask at a glance."""
    out = frames.copy()
    out[~masks] = out[~masks] // 3
    return out


def fusion_index(timesteps, k: int) -> int:
    """Index of the first schedule timestep <= k (step k of eq. 11); the last one if none is."""
    ts = [int(t) for t in timesteps]
    for i, t in enumerate(ts):
        if t <= k:
            return i
    return len(ts) - 1


def check_mask_source(mcfg: MaskConfig) -> None:
    """Fail before any sampling when SAM is asked for, its checkpoint is missing and no fallback
    is allowed (the error names the file and where to put it)."""
    if mcfg.method not in ("sam", "grabcut"):
        raise InputError(f"Unknown mask method '{mcfg.method}'; use 'sam' or 'grabcut'.")
    if mcfg.fusion_mode not in FUSION_MODES:
        raise InputError(f"Unknown fusion mode '{mcfg.fusion_mode}'; use one of "
                         f"{', '.join(FUSION_MODES)}.")
    if mcfg.fusion_space not in ("latent", "x0"):
        raise InputError(f"Unknown fusion space '{mcfg.fusion_space}'; use 'latent' or 'x0'.")
    if mcfg.n_candidates < 1:
        raise InputError(f"Average fusion needs at least one candidate (got {mcfg.n_candidates}).")
    if not 0 <= mcfg.fg_index < mcfg.n_candidates:
        raise InputError(f"fg_index {mcfg.fg_index} is not one of the {mcfg.n_candidates} "
                         "candidates.")
    if mcfg.method == "sam" and not mcfg.fallback:
        find_sam_checkpoint(mcfg.sam_model, mcfg.sam_checkpoint or None)


def _masks(frames: np.ndarray, mcfg: MaskConfig, device, cache, builder) -> MaskResult:
    return foreground_masks(frames, mcfg.method, point=mcfg.point, box=mcfg.box,
                            checkpoint=mcfg.sam_checkpoint or None, model_type=mcfg.sam_model,
                            device=device, fallback=mcfg.fallback, cache=cache, builder=builder)


@torch.no_grad()
def average_fusion_clip(tuned, cond: torch.Tensor, uncond: Optional[torch.Tensor],
                        mcfg: MaskConfig, n_frames: int, size: tuple[int, int], steps: int,
                        guidance: float, seed: int, eta: float = 0.0, decode_chunk: int = 8,
                        run: RunContext = RunContext(), sam_builder=None) -> FusionResult:
    """Secs. 3.1-3.2: n candidates to step k, x0 -> masks, eq. 11, eq. 12. ``size`` = (H, W).
    ``run``: progress (a "masks" event per candidate), cancel token, and the cache SAM loads
    through (on the tuned model's device)."""
    check_mask_source(mcfg)
    progress, cancel, cache = run.progress, run.cancel, run.cache
    base, model = tuned.base, tuned.model
    device, ac_ctx = base.device, tuned.precision.autocast
    h, w = size[0] // base.vae_scale, size[1] // base.vae_scale
    sched = ddim_scheduler(base.scheduler_config, steps, device)
    j = fusion_index(sched.timesteps, mcfg.k_step)
    t_k = sched.timesteps[j]
    a_k = alphas_cumprod(base.scheduler_config)[int(t_k)]
    lat_k, x0_k, eps_k, cand_frames, cand_masks, label = [], [], [], [], [], ""
    n = mcfg.n_candidates
    for i in range(n):
        if cancel is not None:
            cancel.check()
        g = torch.Generator(device).manual_seed(seed + REFINE_SEED_OFFSET + i)
        x = torch.randn((1, 4, n_frames, h, w), generator=g, device=device)
        if j > 0:  # separate tuning's sampling down to step k (eq. 7)
            x = denoise(model, base.scheduler_config, x, cond, uncond, guidance, steps, eta=eta,
                        generator=g, cancel=cancel, autocast=ac_ctx(), stop_index=j)
        with ac_ctx():
            out = guided_prediction(model, x, t_k, cond, uncond, guidance)
        x0, eps = x0_and_eps(out, x, a_k, base.prediction_type)  # eq. 8
        frames = decode_to_frames(base, x0, decode_chunk, cancel)
        res = _masks(frames, mcfg, device, cache, sam_builder)  # eq. 9
        label = res.method
        lat_k.append(x)
        x0_k.append(x0)
        eps_k.append(eps)
        cand_frames.append(frames)
        cand_masks.append(res.masks)
        progress(Event(i + 1, n, f"candidate {i + 1}/{n} at t={int(t_k)}: masks by {label}",
                       preview=frames, stage="masks"))
    fg = torch.stack([latent_mask(m, (h, w)) for m in cand_masks]).to(device)  # (n,1,1,K,h,w)
    if mcfg.fusion_space == "x0":  # eq. 11 on predicted x0, re-noised to step k
        r_k = fuse_x0_renoise(torch.stack(x0_k), torch.stack(eps_k), fg, a_k, mcfg.fg_index,
                              mcfg.w1, mcfg.w2, mcfg.fusion_mode)
    else:  # eq. 11 on the step-k latents (unit variance kept unless fusion_mode="literal")
        r_k = fuse_candidates(torch.stack(lat_k), fg, mcfg.fg_index, mcfg.w1, mcfg.w2,
                              mcfg.fusion_mode)
    g = torch.Generator(device).manual_seed(seed)
    r0 = denoise(model, base.scheduler_config, r_k, cond, uncond, guidance, steps, eta=eta,
                 generator=g, progress=progress, cancel=cancel, autocast=ac_ctx(),
                 start_index=j, stage="fusion")  # eq. 12
    fused = decode_to_frames(base, r0, decode_chunk, cancel)
    fused_masks = _masks(fused, mcfg, device, cache, sam_builder)
    progress(Event(1, 1, f"fused clip masked by {fused_masks.method}", preview=fused,
                   stage="fusion"))
    return FusionResult(fused, fused_masks.masks, np.stack(cand_frames), np.stack(cand_masks),
                        label, j, int(t_k), r0)
