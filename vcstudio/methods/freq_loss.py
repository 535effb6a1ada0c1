"""Frequency-domain tools for DCT (DCT paper, Sec. 3.3.3): the consistency distance between the
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


def band_power(x: torch.Tensor, cutoff: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, total) mean spectral power per pixel of a batch of maps, DC removed (eq. 8).

    ``low`` counts the bins at radial frequency <= ``cutoff``. By Parseval ``total`` is the mean
    squared deviation of the map from its mean, so powers of maps of different sizes (the scales
    of eq. 6) are comparable.
    """
    h, w = x.shape[-2:]
    x = x.float()
    x = x - x.mean(dim=(-2, -1), keepdim=True)  # the mean is not structure: drop the DC bin
    e = amplitude_phase(x)[0] ** 2 / float(h * w) ** 2  # eq. 8 integrand, per pixel
    n = e[..., 0, 0].numel()
    r = radial_frequency(h, w, x.device)
    return e[..., r <= cutoff].sum() / n, e.sum() / n


def low_frequency_share(x: torch.Tensor, cutoff: float = 0.5) -> torch.Tensor:
    """Share of a map's spectral energy (eq. 8, DC removed) at radial frequency <= ``cutoff``.

    1 for a map whose variation is all coarse (global structure), 0 for one that is all fine
    detail (texture). Constant maps have no such energy: 0.5 (undecided).
    """
    return multiscale_low_share([x], (1,), cutoff)


def downsample(x: torch.Tensor, s: int) -> torch.Tensor:
    """I_s of eq. 6: the map average-pooled by an integer factor ``s`` (1 = unchanged)."""
    if s <= 1:
        return x
    return F.avg_pool2d(x.float(), kernel_size=s, stride=s, ceil_mode=True)


def multiscale_low_share(maps: Sequence[torch.Tensor], scales: Sequence[int] = (1,),
                         cutoff: float = 0.5) -> torch.Tensor:
    """Low-frequency power of I_s over the total power of I_1, averaged over scales s and maps
    (eqs. 6, 8), in [0, 1].

    Measuring every scale against the full-scale power matters: average pooling attenuates fine
    detail but also aliases what is left of it to low frequencies, so a pooled map's own
    low-frequency share would call a fine texture coarse. Scales that leave a map smaller than
    2x2 count as no low-frequency power.
    """
    vals = []
    for m in maps:
        if min(m.shape[-2:]) < 2:
            continue
        low1, total = band_power(m, cutoff)  # one FFT serves scale 1 and the total
        shares = []
        for s in scales:
            d = downsample(m, s)
            low = (low1 if s <= 1 else band_power(d, cutoff)[0]) if min(d.shape[-2:]) >= 2 \
                else total * 0
            shares.append(low)
        share = torch.stack(shares).mean() / total.clamp_min(_EPS)
        vals.append(torch.where(total > _EPS, share.clamp(0, 1), torch.full_like(share, 0.5)))
    if not vals:
        return torch.tensor(0.5)
    return torch.stack([v.to(vals[0].device) for v in vals]).mean()


def feature_loss(preds: Sequence[torch.Tensor], targets: Sequence[torch.Tensor],
                 phase_weight: float = 1.0) -> torch.Tensor:
    """Eq. 10 averaged over the maps of a feature extractor (CLIP grid, VGG layers)."""
    losses = [freq_distance(p, t, phase_weight) for p, t in zip(preds, targets)]
    return torch.stack(losses).mean()
