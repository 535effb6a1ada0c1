"""Video Consistency Distance (VCD, seed 002 eq. 2) -- metric and differentiable reward.

    VCD(x_cnd, x_i) = (N - i + 1) / N * ( WD(A_E(x_cnd), A_E(x_i)) + WD(P_E(x_cnd), P_E(x_i)) )

for frames i = 2..N of an N-frame video and the conditioning image x_cnd (default: frame 1).
E is a frozen multi-layer encoder (VGG19 relu1_1..relu5_1 in the paper; see
:mod:`vcstudio.models.vgg`), A and P the amplitude |F| and phase angle(F) of the per-channel,
unnormalised, unshifted 2-D DFT of each feature map. WD is the sliced Wasserstein distance of
the Frequency Distribution Loss (FDL, Ni et al. CVPR 2024, eq. 1) that VCD builds on: random
5x5xC projection filters of unit L2 norm, drawn once from a FIXED seed, are convolved with the
amplitude (resp. phase) maps without padding; the projected values of each image are sorted over
positions and compared by mean absolute difference (1-Wasserstein per slice, averaged over
slices). The per-layer terms are summed over layers.

Choices the paper leaves open are parameters with FDL's defaults:
``num_proj=256``, ``patch=5``, ``stride=1``, ``phase_weight=1.0`` (eq. 1's alpha; eq. 2 uses 1),
``layer_reduce="sum"`` and ``size=224`` (frames are resized to a fixed square size because DFT
amplitudes grow with H x W, so scores are only comparable at one size).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..models.cache import ModelCache, default_cache
from ..models.vgg import FeatureEncoder, load_encoder

DEFAULT_SEED = 0  # the fixed seed of the projection filters; scores are comparable only under one


def temporal_weights(n_frames: int, indices: Optional[Sequence[int]] = None) -> torch.Tensor:
    """(N - i + 1) / N for 1-based frame positions i (default i = 2..N), eq. 2."""
    if n_frames < 1:
        raise InputError("VCD needs at least one frame.")
    idx = list(range(2, n_frames + 1)) if indices is None else list(indices)
    bad = [i for i in idx if not 1 <= i <= n_frames]
    if bad:
        raise InputError(f"Frame positions {bad} are outside 1..{n_frames}.")
    return torch.tensor([(n_frames - i + 1) / n_frames for i in idx], dtype=torch.float64)


def projection_filters(channels: int, num_proj: int = 256, patch: int = 5, seed: int = DEFAULT_SEED,
                       layer: int = 0) -> torch.Tensor:
    """``num_proj`` random (channels, patch, patch) filters with unit L2 norm (FDL slices).

    Drawn on the CPU from a generator seeded by (seed, layer), so the same filters come out on
    every device and run.
    """
    g = torch.Generator().manual_seed(int(seed) * 1000 + int(layer))
    w = torch.randn(num_proj, channels, patch, patch, generator=g)
    return w / w.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, filters: torch.Tensor,
                       stride: int = 1) -> torch.Tensor:
    """Sliced 1-Wasserstein distance between the patch distributions of x and y (FDL).

    x, y: (B, C, H, W); filters: (P, C, k, k). Each filter projects every k x k x C patch to a
    scalar (conv, no padding); sorting the projections over positions gives the 1-D quantile
    functions whose mean absolute difference is W1 for that slice. Returns (B,), the mean over
    slices and positions. Symmetric in x and y; zero iff all sorted projections agree.
    """
    if x.shape != y.shape:
        raise InputError(f"Distribution shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}.")
    k = filters.shape[-1]
    if x.shape[-1] < k or x.shape[-2] < k:
        raise InputError(f"Feature maps of {x.shape[-2]}x{x.shape[-1]} are smaller than the "
                         f"{k}x{k} projection patch; use a larger VCD size.")
    w = filters.to(device=x.device, dtype=x.dtype)
    px = F.conv2d(x, w, stride=stride).flatten(2)
    py = F.conv2d(y, w, stride=stride).flatten(2)
    px, _ = torch.sort(px, dim=-1)
    py, _ = torch.sort(py, dim=-1)
    return (px - py).abs().mean(dim=(1, 2))


def amplitude_phase(feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Amplitude |F| and phase angle(F) of the per-channel 2-D DFT (unnormalised, no shift).

    Computed in fp32 (FFT has no bf16 kernel). Where a coefficient is exactly zero (a dead ReLU
    channel) the phase is defined as 0 and given a zero gradient instead of 0/0 = NaN.
    """
    spec = torch.fft.fft2(feat.float(), dim=(-2, -1))
    re, im = spec.real, spec.imag
    mag2 = re * re + im * im
    live = mag2 > 1e-20
    safe_re = torch.where(live, re, torch.ones_like(re))
    safe_im = torch.where(live, im, torch.zeros_like(im))
    amp = torch.where(live, torch.sqrt(torch.where(live, mag2, torch.ones_like(mag2))),
                      torch.zeros_like(mag2))
    phase = torch.where(live, torch.atan2(safe_im, safe_re), torch.zeros_like(re))
    return amp, phase


@dataclass
class VCDResult:
    """Per-frame VCD (weighted, eq. 2) for the scored frames, their mean, and the parts."""

    per_frame: torch.Tensor  # (K,) weighted VCD, differentiable
    mean: torch.Tensor  # scalar, mean of per_frame
    amplitude: torch.Tensor  # (K,) unweighted amplitude WD (summed over layers)
    phase: torch.Tensor  # (K,) unweighted phase WD (times phase_weight)
    weights: torch.Tensor  # (K,) (N - i + 1) / N
    positions: list[int]  # 1-based i of each scored frame
    n_frames: int
    encoder: str
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready; every key says "vcd" so exported numbers cannot be mistaken."""
        return {
            "vcd_mean": float(self.mean.detach()),
            "vcd_per_frame": [float(v) for v in self.per_frame.detach().cpu()],
            "vcd_frame_positions": list(self.positions),
            "vcd_amplitude_per_frame": [float(v) for v in self.amplitude.detach().cpu()],
            "vcd_phase_per_frame": [float(v) for v in self.phase.detach().cpu()],
            "vcd_temporal_weights": [float(v) for v in self.weights],
            "vcd_n_frames": self.n_frames,
            "vcd_encoder": self.encoder,
            "vcd_params": dict(self.params),
        }


def to_unit_tensor(x, device=None) -> torch.Tensor:
    """uint8 (F,H,W,3)/(H,W,3) numpy or float tensor (F,3,H,W)/(3,H,W) in [0,1] -> float (F,3,H,W)."""
    if isinstance(x, np.ndarray):
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != 3:
            raise InputError(f"Expected frames (F, H, W, 3), got {x.shape}.")
        t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()
        t = t / 255.0 if x.dtype == np.uint8 else t
    elif isinstance(x, torch.Tensor):
        t = x[None] if x.ndim == 3 else x
        if t.ndim != 4 or t.shape[1] != 3:
            raise InputError(f"Expected a tensor (F, 3, H, W), got {tuple(x.shape)}.")
        t = t.float() if not t.is_floating_point() else t
    else:
        raise InputError(f"Frames must be a numpy array or a torch tensor, got {type(x).__name__}.")
    return t.to(device) if device is not None else t


class VCD(nn.Module):
    """VCD with a fixed encoder and fixed projection filters (build once, call many times)."""

    def __init__(self, encoder: FeatureEncoder, size: Optional[int] = 224, num_proj: int = 256,
                 patch: int = 5, stride: int = 1, phase_weight: float = 1.0,
                 layer_reduce: str = "sum", seed: int = DEFAULT_SEED) -> None:
        super().__init__()
        if layer_reduce not in ("sum", "mean"):
            raise InputError(f"layer_reduce must be 'sum' or 'mean', got {layer_reduce!r}.")
        self.encoder = encoder
        self.size, self.num_proj, self.patch, self.stride = size, num_proj, patch, stride
        self.phase_weight, self.layer_reduce, self.seed = phase_weight, layer_reduce, seed
        self._filters: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def params(self) -> dict:
        return {"size": self.size, "num_proj": self.num_proj, "patch": self.patch,
                "stride": self.stride, "phase_weight": self.phase_weight,
                "layer_reduce": self.layer_reduce, "seed": self.seed,
                "layers": list(getattr(self.encoder, "layers", ()))}

    def filters(self, layer: int, channels: int) -> torch.Tensor:
        key = (layer, channels)
        if key not in self._filters:
            self._filters[key] = projection_filters(channels, self.num_proj, self.patch,
                                                    self.seed, layer)
        return self._filters[key]

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        dev = next(self.encoder.parameters()).device
        x = x.to(dev)
        if self.size and (x.shape[-2], x.shape[-1]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=True)
        return x.clamp(0, 1).to(self.encoder.dtype)

    def distance(self, cond: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unweighted (amplitude WD, phase_weight * phase WD) per frame vs ``cond``; (K,), (K,)."""
        # One batch for x_cnd and the frames: identical inputs then give bit-identical features,
        # so VCD(x, x) is exactly 0 (separate batches differ in the last float bits).
        feats = self.encoder(self._prep(torch.cat([cond.to(frames.device), frames])))
        k = frames.shape[0]
        amp_terms, ph_terms = [], []
        for li, f in enumerate(feats):
            amp, ph = amplitude_phase(f)
            amp_c, amp_f, ph_c, ph_f = amp[:1], amp[1:], ph[:1], ph[1:]
            filt = self.filters(li, f.shape[1])
            amp_terms.append(sliced_wasserstein(amp_c.expand(k, -1, -1, -1), amp_f, filt, self.stride))
            ph_terms.append(sliced_wasserstein(ph_c.expand(k, -1, -1, -1), ph_f, filt, self.stride))
        amp, ph = torch.stack(amp_terms).sum(0), torch.stack(ph_terms).sum(0)
        if self.layer_reduce == "mean":
            amp, ph = amp / len(amp_terms), ph / len(ph_terms)
        return amp, self.phase_weight * ph

    def forward(self, frames, image=None, positions: Optional[Sequence[int]] = None,
                n_frames: Optional[int] = None) -> VCDResult:
        """Score ``frames`` against ``image`` (default: frames[0]).

        frames: uint8 (F,H,W,3) or float (F,3,H,W) in [0,1]. By default frame 1 is x_cnd and
        frames 2..F are scored (eq. 2 with x_cnd = x_1). For a random subset of a longer video
        (reward tuning), give ``image`` plus the 1-based ``positions`` of the given frames and
        the video length ``n_frames`` so the temporal weights stay (N - i + 1) / N.
        """
        x = to_unit_tensor(frames)
        if image is None:
            if positions is not None:
                raise InputError("Give the conditioning image when scoring a subset of frames.")
            if x.shape[0] < 2:
                raise InputError("VCD needs at least 2 frames when the first frame is x_cnd.")
            cond, scored, n = x[:1], x[1:], x.shape[0]
            pos = list(range(2, n + 1))
        else:
            cond = to_unit_tensor(image)[:1]
            n = n_frames if n_frames is not None else x.shape[0]
            if positions is None:
                # The video's frame 1 is the generated conditioning frame; eq. 2 scores i = 2..N.
                if x.shape[0] < 2:
                    raise InputError("VCD needs at least 2 frames.")
                scored, pos = x[1:], list(range(2, n + 1))
            else:
                pos = [int(p) for p in positions]
                if len(pos) != x.shape[0]:
                    raise InputError(f"{len(pos)} positions given for {x.shape[0]} frames.")
                scored = x
        w = temporal_weights(n, pos)
        amp, ph = self.distance(cond, scored)
        wt = w.to(device=amp.device, dtype=amp.dtype)
        per = wt * (amp + ph)
        return VCDResult(per_frame=per, mean=per.mean(), amplitude=amp, phase=ph, weights=w,
                         positions=pos, n_frames=n, encoder=self.encoder.name, params=self.params)


def build_vcd(encoder: FeatureEncoder | str | None = None, size: Optional[int] = 224,
              device: torch.device | str = "cpu", cache: Optional[ModelCache] = default_cache,
              **kwargs) -> VCD:
    """A :class:`VCD` on the named encoder ("vgg19" default, "efficientnet-lite0" offline)."""
    if encoder is None or isinstance(encoder, str):
        encoder = load_encoder(encoder or "vgg19", device=device, cache=cache)
    return VCD(encoder, size=size, **kwargs)


def vcd(frames, image=None, encoder: FeatureEncoder | str | None = None, size: Optional[int] = 224,
        positions: Optional[Sequence[int]] = None, n_frames: Optional[int] = None,
        **kwargs) -> VCDResult:
    """One-call VCD (eq. 2): per-frame values, their mean and the encoder's name."""
    return build_vcd(encoder, size=size, **kwargs)(frames, image, positions, n_frames)
