"""Video Consistency Distance (VCD paper, eq. 2) -- metric and differentiable reward.

    VCD(x_cnd, x_i) = (N - i + 1) / N * ( WD(A_E(x_cnd), A_E(x_i)) + WD(P_E(x_cnd), P_E(x_i)) )

for frames i = 2..N of an N-frame video and the conditioning image x_cnd (default: frame 1).
E is a frozen multi-layer encoder (VGG19 relu1_1..relu5_1 in the paper; see
:mod:`vcstudio.models.vgg`), A and P the amplitude |F| and phase angle(F) of the per-channel,
unnormalised, unshifted 2-D DFT of each feature map. WD is the sliced Wasserstein distance of
the Frequency Distribution Loss (FDL, Ni et al. CVPR 2024, eq. 1) that VCD builds on: random
5x5xC projection filters of unit L2 norm are convolved with the amplitude (resp. phase) maps
without padding; the projected values of each image are sorted over positions and compared by
mean absolute difference (1-Wasserstein per slice, averaged over slices). The per-layer terms are
summed over layers.

Projections. As a *metric* the filters are drawn once from a FIXED seed (``seed``), so a score
is reproducible bit for bit and comparable across runs. As a *reward* (eq. 3, reward tuning) a
fixed set would push on the same 256 directions every step; FDL draws fresh projections at every
call, so reward tuning redraws them every step by default (``projection_seed`` per call, seeded
from the tuning seed and step so a run is still reproducible; ``I2VTuneConfig.vcd_projections``).

Choices the paper leaves open are parameters with FDL's defaults:
``num_proj=256``, ``patch=5``, ``stride=1``, ``phase_weight=1.0`` (eq. 1's alpha; eq. 2 uses 1),
``layer_reduce="sum"`` and ``size=224``: DFT amplitudes grow with H x W, so scores are only
comparable at one size, and frames are brought to a size x size square keeping their aspect
(``fit="crop"``: short side to ``size``, centre crop; ``"pad"``: long side to ``size``, black
bars; ``"stretch"``: the old anisotropic resize, which distorts every spatial frequency).

Memory. Frames are prepared (converted, resized) and encoded ``batch`` at a time together with
x_cnd, and the slices are projected :data:`PROJ_CHUNK` at a time, so scoring any number of frames
holds one batch's features, never the whole clip's (:meth:`VCD.score_stream` takes the clip as
an iterable of chunks, e.g. straight from the decoder).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..models.cache import ModelCache, default_cache
from ..models.vgg import FeatureEncoder, load_encoder
from ..progress import Event, ProgressFn, null_progress

DEFAULT_SEED = 0  # the fixed seed of the projection filters; scores are comparable only under one
# Frames per encoder batch. At 224 px with VGG19 on the CPU the whole scoring process (imports,
# weights, one batch of x_cnd + 8 frames: the relu1_1 taps and their DFT dominate) peaks at
# about 2 GiB RSS, whatever the clip's length (``vcstudio bench metrics --metrics vcd``).
DEFAULT_BATCH = 8
PROJ_CHUNK = 64  # slices projected at once: bounds the (frames, slices, positions) sort buffers
FITS = ("crop", "pad", "stretch")


def reward_projection_seed(run_seed: int, step: int) -> int:
    """The slice seed of reward step ``step``: fresh every step (FDL draws new projections at
    every call), reproducible per tuning seed, never the metric's :data:`DEFAULT_SEED`."""
    return 1 + (int(run_seed) * 1_000_003 + int(step)) % (2**31 - 2)


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


def _sort_last(p: torch.Tensor) -> torch.Tensor:
    """Values sorted along the last dim. Without a graph on the CPU numpy's vectorised sort gives
    the same values about 7x faster than torch.sort (the projections' sort dominates VCD's time)."""
    if p.device.type == "cpu" and p.dtype == torch.float32 and not (
            p.requires_grad and torch.is_grad_enabled()):
        return torch.from_numpy(np.sort(p.detach().numpy(), axis=-1))
    return torch.sort(p, dim=-1).values


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, filters: torch.Tensor,
                       stride: int = 1, chunk: int = PROJ_CHUNK) -> torch.Tensor:
    """Sliced 1-Wasserstein distance between the patch distributions of x and y (FDL).

    x: (B, C, H, W) or (1, C, H, W) (one reference against every y); y: (B, C, H, W); filters:
    (P, C, k, k). Each filter projects every k x k x C patch to a scalar (conv, no padding);
    sorting the projections over positions gives the 1-D quantile functions whose mean absolute
    difference is W1 for that slice. Returns (B,), the mean over slices and positions. Symmetric
    in x and y; zero iff all sorted projections agree. x and y are projected in one batch (so
    identical inputs give identical projections), ``chunk`` slices at a time.
    """
    if x.shape[1:] != y.shape[1:] or x.shape[0] not in (1, y.shape[0]):
        raise InputError(f"Distribution shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}.")
    k = filters.shape[-1]
    if x.shape[-1] < k or x.shape[-2] < k:
        raise InputError(f"Feature maps of {x.shape[-2]}x{x.shape[-1]} are smaller than the "
                         f"{k}x{k} projection patch; use a larger VCD size.")
    w = filters.to(device=x.device, dtype=x.dtype)
    nx, both = x.shape[0], torch.cat([x, y])
    total, count = None, 0
    for i in range(0, w.shape[0], max(1, chunk)):
        p = _sort_last(F.conv2d(both, w[i:i + chunk], stride=stride).flatten(2))
        part = (p[:nx] - p[nx:]).abs().sum(dim=(1, 2))
        total = part if total is None else total + part
        count += p.shape[1] * p.shape[2]
    return total / count


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


def fit_square(x: torch.Tensor, size: Optional[int], fit: str = "crop") -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, size, size) keeping the aspect: "crop" = short side to ``size`` and
    a centre crop, "pad" = long side to ``size`` and centred black bars, "stretch" = resize both
    sides (distorts). ``size`` None/0 keeps the frames as they are."""
    if fit not in FITS:
        raise InputError(f"Unknown VCD fit {fit!r}; use one of {', '.join(FITS)}.")
    if not size:
        return x
    h, w = x.shape[-2:]
    if fit == "stretch":
        nh = nw = size
    elif fit == "crop":  # the short side becomes size (the long one at least size)
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    else:  # pad: the long side becomes size (the short one at most size)
        scale = size / max(h, w)
        nh, nw = min(size, max(1, round(h * scale))), min(size, max(1, round(w * scale)))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    if fit == "crop":
        top, left = (nh - size) // 2, (nw - size) // 2
        x = x[..., top:top + size, left:left + size]
    elif fit == "pad" and (nh, nw) != (size, size):
        top, left = (size - nh) // 2, (size - nw) // 2
        x = F.pad(x, (left, size - nw - left, top, size - nh - top))
    return x


def _count(frames) -> int:
    return int(frames.shape[0]) if frames.ndim == 4 else 1


class VCD(nn.Module):
    """VCD with a fixed encoder and (for the metric) fixed projection filters: build once, call
    many times. ``batch`` frames are encoded at a time (bounded memory, any clip length)."""

    def __init__(self, encoder: FeatureEncoder, size: Optional[int] = 224, num_proj: int = 256,
                 patch: int = 5, stride: int = 1, phase_weight: float = 1.0,
                 layer_reduce: str = "sum", seed: int = DEFAULT_SEED, fit: str = "crop",
                 batch: int = DEFAULT_BATCH) -> None:
        super().__init__()
        if layer_reduce not in ("sum", "mean"):
            raise InputError(f"layer_reduce must be 'sum' or 'mean', got {layer_reduce!r}.")
        if fit not in FITS:
            raise InputError(f"Unknown VCD fit {fit!r}; use one of {', '.join(FITS)}.")
        if int(batch) < 1:
            raise InputError(f"The VCD batch must be at least 1 frame, got {batch}.")
        self.encoder = encoder
        self.size, self.num_proj, self.patch, self.stride = size, num_proj, patch, stride
        self.phase_weight, self.layer_reduce, self.seed = phase_weight, layer_reduce, seed
        self.fit, self.batch = fit, int(batch)
        self._filters: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def params(self) -> dict:
        return {"size": self.size, "fit": self.fit, "num_proj": self.num_proj,
                "patch": self.patch, "stride": self.stride, "phase_weight": self.phase_weight,
                "layer_reduce": self.layer_reduce, "seed": self.seed,
                "layers": list(getattr(self.encoder, "layers", ()))}

    def filters(self, layer: int, channels: int, seed: Optional[int] = None) -> torch.Tensor:
        """The slices of one layer: the metric's fixed ones (``seed`` None, cached), or a set
        drawn from ``seed`` (a reward step's; not cached)."""
        if seed is not None and seed != self.seed:
            return projection_filters(channels, self.num_proj, self.patch, seed, layer)
        key = (layer, channels)
        if key not in self._filters:
            self._filters[key] = projection_filters(channels, self.num_proj, self.patch,
                                                    self.seed, layer)
        return self._filters[key]

    def _prep(self, x) -> torch.Tensor:
        dev = next(self.encoder.parameters()).device
        x = fit_square(to_unit_tensor(x).to(dev), self.size, self.fit)
        return x.clamp(0, 1).to(self.encoder.dtype)

    def _distance_batch(self, cond: torch.Tensor, frames: torch.Tensor,
                        seed: Optional[int]) -> tuple[torch.Tensor, torch.Tensor]:
        # One encoder batch for x_cnd and the frames: identical inputs then give bit-identical
        # features, so VCD(x, x) is exactly 0 (separate batches differ in the last float bits).
        if cond.shape[-2:] != frames.shape[-2:]:
            raise InputError(f"The conditioning image ({cond.shape[-1]}x{cond.shape[-2]}) and the "
                             f"frames ({frames.shape[-1]}x{frames.shape[-2]}) differ in size; give "
                             "VCD a size to bring both to.")
        feats = self.encoder(torch.cat([cond, frames]))
        amp_terms, ph_terms = [], []
        for li, f in enumerate(feats):
            amp, ph = amplitude_phase(f)
            filt = self.filters(li, f.shape[1], seed)
            amp_terms.append(sliced_wasserstein(amp[:1], amp[1:], filt, self.stride))
            ph_terms.append(sliced_wasserstein(ph[:1], ph[1:], filt, self.stride))
            del amp, ph
        amp, ph = torch.stack(amp_terms).sum(0), torch.stack(ph_terms).sum(0)
        if self.layer_reduce == "mean":
            amp, ph = amp / len(amp_terms), ph / len(ph_terms)
        return amp, self.phase_weight * ph

    def distance(self, cond, frames, projection_seed: Optional[int] = None,
                 progress: ProgressFn = null_progress,
                 total: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Unweighted (amplitude WD, phase_weight * phase WD) per frame vs ``cond``; (K,), (K,).

        ``frames``: uint8 (K,H,W,3) / float (K,3,H,W), or an iterable of such chunks (streamed:
        each chunk is prepared and encoded ``batch`` frames at a time, then dropped)."""
        c = self._prep(cond)[:1]
        chunks = [frames] if isinstance(frames, (np.ndarray, torch.Tensor)) else frames
        amps, phs, done = [], [], 0
        for chunk in chunks:
            for i in range(0, _count(chunk), self.batch):
                part = chunk[i:i + self.batch] if chunk.ndim == 4 else chunk
                a, p = self._distance_batch(c, self._prep(part), projection_seed)
                amps.append(a)
                phs.append(p)
                done += a.shape[0]
                progress(Event(done, total or 0, f"VCD: {done}{f'/{total}' if total else ''} "
                               "frames scored", stage="vcd"))
        if not amps:
            raise InputError("VCD needs at least one frame to score.")
        return torch.cat(amps), torch.cat(phs)

    def _result(self, amp, ph, pos, n) -> VCDResult:
        w = temporal_weights(n, pos)
        wt = w.to(device=amp.device, dtype=amp.dtype)
        per = wt * (amp + ph)
        return VCDResult(per_frame=per, mean=per.mean(), amplitude=amp, phase=ph, weights=w,
                         positions=pos, n_frames=n, encoder=self.encoder.name, params=self.params)

    def forward(self, frames, image=None, positions: Optional[Sequence[int]] = None,
                n_frames: Optional[int] = None, projection_seed: Optional[int] = None,
                progress: ProgressFn = null_progress) -> VCDResult:
        """Score ``frames`` against ``image`` (default: frames[0]).

        frames: uint8 (F,H,W,3) or float (F,3,H,W) in [0,1]. By default frame 1 is x_cnd and
        frames 2..F are scored (eq. 2 with x_cnd = x_1). For a random subset of a longer video
        (reward tuning), give ``image`` plus the 1-based ``positions`` of the given frames and
        the video length ``n_frames`` so the temporal weights stay (N - i + 1) / N.
        ``projection_seed`` draws this call's slices from that seed (a reward step's); None =
        the metric's fixed ones.
        """
        if not isinstance(frames, (np.ndarray, torch.Tensor)):
            raise InputError(f"Frames must be a numpy array or a torch tensor, got "
                             f"{type(frames).__name__}.")
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            frames = frames[None]
        elif isinstance(frames, torch.Tensor) and frames.ndim == 3:
            frames = frames[None]
        f = _count(frames)
        if image is None:
            if positions is not None:
                raise InputError("Give the conditioning image when scoring a subset of frames.")
            if f < 2:
                raise InputError("VCD needs at least 2 frames when the first frame is x_cnd.")
            cond, scored, n = frames[:1], frames[1:], f
            pos = list(range(2, n + 1))
        else:
            cond = image
            n = n_frames if n_frames is not None else f
            if positions is None:
                # The video's frame 1 is the generated conditioning frame; eq. 2 scores i = 2..N.
                if f < 2:
                    raise InputError("VCD needs at least 2 frames.")
                scored, pos = frames[1:], list(range(2, n + 1))
            else:
                pos = [int(p) for p in positions]
                if len(pos) != f:
                    raise InputError(f"{len(pos)} positions given for {f} frames.")
                scored = frames
        temporal_weights(n, pos)  # bad positions fail before any encoding
        amp, ph = self.distance(cond, scored, projection_seed, progress, len(pos))
        return self._result(amp, ph, pos, n)

    def score_stream(self, chunks: Iterable, image=None, progress: ProgressFn = null_progress,
                     total: Optional[int] = None) -> VCDResult:
        """Eq. 2 over a video given as an iterable of uint8 (k, H, W, 3) chunks (e.g. from
        :func:`vcstudio.io.iter_video`), as :meth:`forward` scores a whole array: frames 2..N
        against ``image`` (default: frame 1), N known once the stream ends. At most one chunk
        and one encoder batch are in memory; ``total`` (frames, if known) labels the progress."""
        it = iter(chunks)
        first = None
        for chunk in it:
            if _count(chunk):
                first = chunk
                break
        if first is None:
            raise InputError("VCD needs at least 2 frames; the video holds none.")
        cond = first[:1] if image is None else image

        def scored():
            if _count(first) > 1:
                yield first[1:]
            yield from it

        try:
            amp, ph = self.distance(cond, scored(), None, progress,
                                    None if total is None else max(total - 1, 1))
        except InputError as e:
            if "at least one frame" in str(e):
                raise InputError("VCD needs at least 2 frames; the video holds 1.") from None
            raise
        n = amp.shape[0] + 1
        return self._result(amp, ph, list(range(2, n + 1)), n)


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
