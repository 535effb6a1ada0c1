"""The video-backbone interface one-shot tuning, inversion, sampling and editing are written
against (DESIGN: "backbones ... behind one interface"), so a job never asks which family it runs.

A backbone wraps one family's frozen diffusers parts on one device. What a clip job needs from
it, and how each family answers (Wan2.1 T2V is implemented: ``models/wan/t2v.py``; the
Stable-Diffusion column is what the inflated-U-Net path would map to -- ``models/encode.py``,
``models/diffusion_math.py``, ``pipelines/tune/loop.py`` / ``edit/invert.py`` /
``edit/sample.py`` hold it today):

========================  ======================================  ==================================
member                    Wan2.1 T2V (flow matching, DiT)          Stable Diffusion (DDPM, U-Net)
========================  ======================================  ==================================
``name``                  "wan2.1-t2v"                             "sd"
``denoiser`` /            the transformer / "transformer"          the (inflated) U-Net / "unet"
``denoiser_name``         (prefix of saved LoRA keys)
``parameterization``      "flow": the model predicts v = eps - x0  "epsilon" | "v_prediction"
``check(f, h, w)``        frames 4k+1, sides multiples of 16       sides multiples of 8
``encode_clip(frames)``   uint8 (F,H,W,3) -> normalised VAE        -> latents x scaling_factor
                          latents (1,16,1+(F-1)/4,H/8,W/8), once   (1,4,F,H/8,W/8)
``decode(z, frames)``     [0,1] (K,3,H,W), differentiable; causal  per-frame VAE decode
                          VAE: the prefix up to the last frame
``encode_prompts(ps)``    UMT5 states (N,512,4096), cached         CLIP states (N,77,D)
``free_text_encoder()``   drops UMT5 (~11 GB); cached ones answer  optional (small)
``predict(x, s, emb)``    v at noise level s (timestep 1000 s),    eps or v at timestep t
                          + each ``perturb`` (APLA's VGT)          (+ VideoDenoiser.perturb)
``decode_latent_frames``  latent frames decoded each on its own    per-frame VAE decode
                          (one pixel frame each; DCT's cheap path)
``x0(x, s, out)``         x - s v                                  diffusion_math.x0_and_eps
``sigmas(steps)``         the scheduler's shifted flow sigmas,     alpha-bar at the DDIM timesteps
                          1 -> 0 (steps + 1 values)
``train_sigmas(n, g)``    u ~ U(0,1) shifted by the scheduler's    t ~ U{0..T-1}
                          shift: s u / (1 + (s - 1) u)
``add_noise(x0, e, s)``   (1 - s) x0 + s e                         sqrt(a) x0 + sqrt(1-a) e
``target(x0, e)``         e - x0                                   e (or v)
``add_lora(...)``         peft LoRA on attention projections;      Tune-A-Video's trainables
``save_lora(path)``       diffusers' layout ("transformer." keys)  (a vcstudio delta)
``estimate(...)``         seconds / peak GiB per step from the     calibration.py's measured speeds
                          architecture (models/wan/estimate.py)
========================  ======================================  ==================================

The noise level is a *sigma in [0, 1]* on the interface (flow matching's own time); a DDPM
backbone maps it to its timestep (the alpha-bar whose noise share is sigma), so CLWS and the
samplers schedule over one quantity. Sampling, inversion and FlowEdit for the flow case live in
``pipelines/flow/ode.py``; the one-shot LoRA loop in ``pipelines/flow/tune.py``; DCT / APLA on a
DiT in ``methods/dit.py``.
"""
from __future__ import annotations

from typing import Optional, Protocol, Sequence

import numpy as np
import torch


class VideoBackbone(Protocol):
    name: str
    denoiser: torch.nn.Module
    denoiser_name: str
    parameterization: str
    device: torch.device

    def check(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]: ...

    def encode_clip(self, frames: np.ndarray) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor,
               frames: Optional[Sequence[int]] = None) -> torch.Tensor: ...

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor: ...

    def free_text_encoder(self) -> None: ...

    def predict(self, x: torch.Tensor, sigma, embeds: torch.Tensor) -> torch.Tensor: ...

    def x0(self, x: torch.Tensor, sigma, output: torch.Tensor) -> torch.Tensor: ...

    def sigmas(self, steps: int) -> torch.Tensor: ...

    def train_sigmas(self, n: int, generator: torch.Generator) -> torch.Tensor: ...

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, sigma) -> torch.Tensor: ...

    def target(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor: ...

    def add_lora(self, rank: int = 16, alpha: Optional[float] = None,
                 targets: Optional[Sequence[str]] = None) -> list[torch.nn.Parameter]: ...

    def save_lora(self, path, config: Optional[dict] = None): ...

    def estimate(self, num_frames: int, height: int, width: int, what: str = "train",
                 steps: int = 1): ...
