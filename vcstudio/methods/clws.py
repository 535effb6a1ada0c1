"""Consistency Loss Weight Schedulers (DCT paper, Sec. 3.3.3, Table 2).

One interface: ``weights(step, t, features) -> (w_sem, w_tex)`` with both in [0, 1] and
w_sem + w_tex = 1, so L_consistency = w_sem L_semantic + w_tex L_texture (eq. 11, alpha = w_sem).

* ``step`` -- the training step (0-based), ``t`` -- the diffusion timestep of this step (0..T-1,
  large = noisy), ``features`` -- ``{"sem": [maps], "tex": [maps]}``, the (detached) semantic and
  texture feature maps of the predicted frames, each (N, C, H, W).
* Fixed schedules (functions of t only; "semantic first, then texture": the sampler visits large t
  first, where global structure is decided, so semantic weight is high at large t):
  ``constant`` (alpha fixed), ``linear`` (alpha = t / (T-1), Mao et al.), ``exponential``
  (alpha = exp(-k (1 - t/(T-1)))), ``gaussian`` (alpha = exp(-(1 - t/(T-1))^2 / (2 sigma^2))).
* Spectral schedules (the paper's): alpha = E_sem / (E_sem + E_tex + eps) (eq. 9) with E from the
  DFT of the feature maps (eq. 8): ``fourier`` at the maps' own scale, ``mul-fourier`` summed over
  the maps average-pooled by s in ``scales`` (eq. 6).

How E is measured (the paper leaves it open; see DESIGN "Method notes"). Eq. 8 taken literally
sums |F|^2 of two different networks' features whose magnitudes are unrelated (VGG relu4_1
activations are ~100x CLIP token values), which pins alpha near 0 or 1 whatever the frames show;
and by Parseval that sum does not depend on how the energy is spread over frequencies at all.
We follow the paper's stated rationale -- low frequencies carry global structure (semantics),
high frequencies texture -- and make E scale-free: E_sem is the share of the semantic maps'
(DC-removed) spectral energy at low frequency (radius <= ``cutoff`` x Nyquist), E_tex the share
of the texture maps' energy at high frequency (1 - their low share), averaged over maps and, for
``mul-fourier``, over the pooled maps I_s, each measured against the full-scale energy
(:func:`vcstudio.methods.freq_loss.multiscale_low_share`). Semantic features dominated by coarse
structure raise alpha; texture features rich in fine detail lower it.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch

from .freq_loss import multiscale_low_share

CLWS_NAMES = ("mul-fourier", "fourier", "exponential", "gaussian", "linear", "constant")
_EPS = 1e-8


class CLWS:
    """Base: a weighting of the semantic vs texture consistency terms."""

    name = "clws"
    uses_features = False

    def weights(self, step: int, t: float, features: Mapping[str, Sequence[torch.Tensor]] | None,
                ) -> tuple[float, float]:
        a = min(1.0, max(0.0, float(self.alpha(step, t, features))))
        return a, 1.0 - a

    def alpha(self, step: int, t: float, features) -> float:
        raise NotImplementedError


class ConstantCLWS(CLWS):
    name = "constant"

    def __init__(self, alpha: float = 0.5) -> None:
        self.value = alpha

    def alpha(self, step, t, features) -> float:
        return self.value


class _TimestepCLWS(CLWS):
    def __init__(self, num_train_timesteps: int = 1000) -> None:
        self.T = num_train_timesteps

    def _u(self, t: float) -> float:
        """Noise level in [0, 1]: 1 at the noisiest timestep."""
        return min(1.0, max(0.0, float(t) / max(1, self.T - 1)))


class LinearCLWS(_TimestepCLWS):
    name = "linear"

    def alpha(self, step, t, features) -> float:
        return self._u(t)


class ExponentialCLWS(_TimestepCLWS):
    name = "exponential"

    def __init__(self, num_train_timesteps: int = 1000, k: float = 3.0) -> None:
        super().__init__(num_train_timesteps)
        self.k = k

    def alpha(self, step, t, features) -> float:
        return math.exp(-self.k * (1.0 - self._u(t)))


class GaussianCLWS(_TimestepCLWS):
    name = "gaussian"

    def __init__(self, num_train_timesteps: int = 1000, sigma: float = 0.4) -> None:
        super().__init__(num_train_timesteps)
        self.sigma = sigma

    def alpha(self, step, t, features) -> float:
        return math.exp(-((1.0 - self._u(t)) ** 2) / (2 * self.sigma ** 2))


class FourierCLWS(CLWS):
    """Eq. 9 with spectral energies of the features at the given scales (eqs. 6, 8)."""

    name = "fourier"
    uses_features = True

    def __init__(self, scales: Sequence[int] = (1,), cutoff: float = 0.5) -> None:
        self.scales = tuple(int(s) for s in scales)
        self.cutoff = cutoff

    def energies(self, features) -> tuple[float, float]:
        """(E_sem, E_tex): low-frequency share of the semantic maps, high-frequency share of the
        texture maps (see the module docstring)."""
        sem = [f.detach() for f in features.get("sem", [])]
        tex = [f.detach() for f in features.get("tex", [])]
        e_sem = float(multiscale_low_share(sem, self.scales, self.cutoff)) if sem else 0.0
        e_tex = 1.0 - float(multiscale_low_share(tex, self.scales, self.cutoff)) if tex else 0.0
        return e_sem, e_tex

    def alpha(self, step, t, features) -> float:
        if not features:
            return 0.5
        e_sem, e_tex = self.energies(features)
        return e_sem / (e_sem + e_tex + _EPS)  # eq. 9


class MulFourierCLWS(FourierCLWS):
    """The paper's multi-scale Fourier weighting (Table 2 "Mul-Fourier")."""

    name = "mul-fourier"

    def __init__(self, scales: Sequence[int] = (1, 2, 4), cutoff: float = 0.5) -> None:
        super().__init__(scales, cutoff)


def make_clws(name: str, num_train_timesteps: int = 1000, scales: Sequence[int] = (1, 2, 4),
              cutoff: float = 0.5, constant: float = 0.5) -> CLWS:
    """The scheduler named ``name`` (one of :data:`CLWS_NAMES`)."""
    if name == "mul-fourier":
        return MulFourierCLWS(scales, cutoff)
    if name == "fourier":
        return FourierCLWS((1,), cutoff)
    if name == "exponential":
        return ExponentialCLWS(num_train_timesteps)
    if name == "gaussian":
        return GaussianCLWS(num_train_timesteps)
    if name == "linear":
        return LinearCLWS(num_train_timesteps)
    if name == "constant":
        return ConstantCLWS(constant)
    raise ValueError(f"unknown CLWS {name!r}; choose one of {', '.join(CLWS_NAMES)}")
