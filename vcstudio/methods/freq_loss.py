"""Frequency-domain tools for DCT (seed 000, Sec. 3.3.3): the consistency distance between the
spectra of two feature maps through their amplitude and phase (eqs. 7, 10), and the spectral
energies CLWS weighs with (eqs. 6, 8).

Feature maps are float tensors (N, C, H, W); the per-channel 2-D DFT over (H, W) runs in float32
(:func:`vcstudio.methods.vcd.amplitude_phase`, shared with VCD).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .vcd import amplitude_phase

_EPS = 1e-8


def freq_distance(pred: torch.Tensor, target: torch.Tensor, phase_weight: float = 1.0,
                  ) -> torch.Tensor:
    """Eq. 10 between the spectra of two batches of feature maps, split by eq. 7; a scalar.

    With F = |F| e^{j angle F} (eq. 7), eq. 10's sum_uv |F_p - F_t|^2 is exactly
        sum_uv (|F_p| - |F_t|)^2  +  2 sum_uv |F_p| |F_t| (1 - cos(angle F_p - angle F_t)),
    an amplitude term plus an amplitude-weighted phase term (smooth: no division by |F_p|).
    ``phase_weight`` scales the phase term; 1 gives eq. 10 itself. The sum is divided by the
    target's spectral energy sum_uv |F_t|^2 (per sample, over channels and bins), so features of
    different networks (CLIP tokens; VGG activations ~100x larger) give comparable losses for
    CLWS to weigh. Maps (N, C, H, W); the result is the mean over N.
    """
    ap, pp = amplitude_phase(pred)
    at, pt = amplitude_phase(target.to(pred.device))
    dims = (-3, -2, -1)
    amp = ((ap - at) ** 2).sum(dims)
    phase = 2.0 * (ap * at * (1.0 - torch.cos(pp - pt))).sum(dims)
    return ((amp + phase_weight * phase) / ((at ** 2).sum(dims) + _EPS)).mean()


def radial_frequency(h: int, w: int, device=None) -> torch.Tensor:
    """|(u, v)| of each DFT bin as a fraction of the Nyquist frequency (0 = DC, 1 = Nyquist)."""
    fy = torch.fft.fftfreq(h, device=device).abs() * 2
    fx = torch.fft.fftfreq(w, device=device).abs() * 2
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def low_frequency_share(x: torch.Tensor, cutoff: float = 0.5) -> torch.Tensor:
    """Share of a map's spectral energy (eq. 8, DC removed) at radial frequency <= ``cutoff``.

    1 for a map whose variation is all coarse (global structure), 0 for one that is all fine
    detail (texture). Maps of one pixel or constant maps have no such energy: 0.5 (undecided).
    """
    h, w = x.shape[-2:]
    x = x.float()
    x = x - x.mean(dim=(-2, -1), keepdim=True)  # the mean is not structure: drop the DC bin
    e = amplitude_phase(x)[0] ** 2  # eq. 8 integrand
    total = e.sum()
    if h * w < 2:
        return torch.tensor(0.5, device=x.device)
    r = radial_frequency(h, w, x.device)
    share = e[..., r <= cutoff].sum() / total.clamp_min(_EPS)
    return torch.where(total > _EPS, share, torch.full_like(share, 0.5))  # no host sync


def downsample(x: torch.Tensor, s: int) -> torch.Tensor:
    """I_s of eq. 6: the map average-pooled by an integer factor ``s`` (1 = unchanged)."""
    if s <= 1:
        return x
    return F.avg_pool2d(x.float(), kernel_size=s, stride=s, ceil_mode=True)


def multiscale_low_share(maps: Sequence[torch.Tensor], scales: Sequence[int] = (1,),
                         cutoff: float = 0.5) -> torch.Tensor:
    """Mean over maps and scales ``s`` of the low-frequency energy share of I_s (eqs. 6, 8).

    Scales that leave a map smaller than 2x2 are skipped for that map (nothing left to measure).
    """
    vals = []
    for m in maps:
        for s in scales:
            d = downsample(m, s)
            if min(d.shape[-2:]) >= 2:
                vals.append(low_frequency_share(d, cutoff))
    if not vals:
        return torch.tensor(0.5)
    return torch.stack([v.to(vals[0].device) for v in vals]).mean()


def feature_loss(preds: Sequence[torch.Tensor], targets: Sequence[torch.Tensor],
                 phase_weight: float = 1.0) -> torch.Tensor:
    """Eq. 10 averaged over the maps of a feature extractor (CLIP grid, VGG layers)."""
    losses = [freq_distance(p, t, phase_weight) for p, t in zip(preds, targets)]
    return torch.stack(losses).mean()
