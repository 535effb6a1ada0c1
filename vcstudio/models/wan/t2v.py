"""Wan2.1 text-to-video behind the video-backbone interface (models/backbone.py): what one-shot
tuning and editing of a clip need from the model, in flow matching's terms.

Flow matching (DESIGN "Video DiTs"): x_s = (1 - s) x0 + s eps for a noise level s in [0, 1],
the transformer predicts the velocity v = eps - x0 at timestep 1000 s, so x0 = x_s - s v and
eps = x_s + (1 - s) v. The sampling schedule is the scheduler's own (its shifted sigmas, read
from a copy of it: ``UniPCMultistepScheduler`` with ``flow_shift`` in the Wan-AI conversions,
``FlowMatchEulerDiscreteScheduler`` with ``shift`` works too); training draws u ~ U(0, 1) and
shifts it the same way, s = k u / (1 + (k - 1) u) with k the shift, so the noise levels tuning
sees are spread as the ones sampling visits.

Everything frozen lives in the precision the device policy gives (bf16 on CUDA, fp32 on the
CPU); the LoRA parameters stay fp32. The clip is encoded once (the posterior's mode), prompts
once each (then the 5.7B UMT5 encoder can go: :meth:`WanT2VBackbone.free_text_encoder`; load
the parts with a cache of their own, ``cache=None``, when freeing it, since the model cache
would keep a reference).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ...config import TRAIN_TIMESTEPS
from ...device import Precision, precision_for
from ...errors import InputError
from ..lora import ATTN_PROJECTIONS, lora_targets_for
from . import estimate as est
from .latents import decode_each, decode_frames, encode_video, glimpse
from .rules import check_frames, check_size
from .text import MAX_SEQUENCE_LENGTH, PromptEmbeddings


def flow_shift(scheduler) -> float:
    """The shift a Wan scheduler applies to its sigmas (UniPC's ``flow_shift``, the flow-match
    Euler scheduler's ``shift``); 1 = no shift."""
    c = scheduler.config
    if c.get("use_flow_sigmas") or c.get("prediction_type") == "flow_prediction":
        return float(c.get("flow_shift", 1.0))
    return float(c.get("shift", 1.0))


def shift_sigma(u: torch.Tensor, shift: float) -> torch.Tensor:
    """The time shift of SD3/Wan: u -> k u / (1 + (k - 1) u) (more time at high noise, k > 1)."""
    return shift * u / (1 + (shift - 1) * u)


class WanT2VBackbone:
    """Wan2.1 T2V (e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers) for one-shot tuning and editing."""

    name = "wan2.1-t2v"
    denoiser_name = "transformer"  # WanPipeline.transformer: the prefix of saved LoRA keys
    parameterization = "flow"

    def __init__(self, parts, precision: Optional[Precision] = None,
                 max_sequence_length: int = MAX_SEQUENCE_LENGTH,
                 offload_text_encoder: Optional[bool] = None) -> None:
        if getattr(parts, "kind", "t2v") != "t2v":
            raise InputError(f"{parts.source} is a Wan2.1 {parts.kind.upper()} model; the T2V "
                             "backbone runs WanPipeline folders.")
        self.parts = parts
        self.denoiser = parts.transformer
        self.device = next(parts.transformer.parameters()).device
        self.precision = precision or precision_for(self.device)
        self.r_t = parts.vae.config.scale_factor_temporal
        self.r_s = parts.vae.config.scale_factor_spatial
        self.multiple = self.r_s * parts.transformer.config.patch_size[1]
        self.num_train_timesteps = int(parts.scheduler.config.get("num_train_timesteps", TRAIN_TIMESTEPS))
        self.shift = flow_shift(parts.scheduler)
        offload = (self.device.type == "cuda" if offload_text_encoder is None
                   else offload_text_encoder)
        self.prompts = PromptEmbeddings(parts.tokenizer, parts.text_encoder, self.device,
                                        max_sequence_length, offload)
        # what a tuning method adds to the velocity, each ``f(x_s, sigma, v) -> v`` in order,
        # at every training AND sampling step (APLA's VGT on a DiT: methods/dit.py); an
        # nn.Module among them follows :meth:`training`
        self.perturb: dict = {}

    # ---- sizes
    def check(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Frames 4k + 1 and sides multiples of 16, else a one-line InputError naming the
        nearest valid values."""
        h, w = check_size(height, width, self.multiple)
        return check_frames(num_frames, self.r_t), h, w

    # ---- clip <-> latents
    @torch.no_grad()
    def encode_clip(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (F, H, W, 3) -> normalised latents (1, 16, 1 + (F - 1) / 4, H / 8, W / 8)."""
        from ..preprocess import frames_to_unit

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise InputError(f"A clip is uint8 frames (F, H, W, 3); got shape {frames.shape}.")
        self.check(frames.shape[0], frames.shape[1], frames.shape[2])
        x = frames_to_unit(frames, self.device) * 2 - 1  # (F, 3, H, W)
        return encode_video(self.parts.vae, x.permute(1, 0, 2, 3).unsqueeze(0))

    def decode(self, latents: torch.Tensor, frames: Optional[Sequence[int]] = None
               ) -> torch.Tensor:
        """Normalised latents -> (K, 3, H, W) in [0, 1] of 0-based pixel ``frames`` (all if
        None); exact for a subset (causal VAE), differentiable w.r.t. the latents."""
        return decode_frames(self.parts.vae, latents, frames, self.precision.autocast())

    def decode_latent_frames(self, latents: torch.Tensor, idx: Sequence[int]) -> torch.Tensor:
        """Latent frames ``idx`` each decoded on its own (one pixel frame each, one batch) ->
        (K, 3, H, W) in [0, 1], differentiable: a loss's cheap decode (models/wan/latents.py
        ``decode_each``)."""
        return decode_each(self.parts.vae, latents, idx, self.precision.autocast())

    def glimpse(self, latents: torch.Tensor, n: int = 6) -> torch.Tensor:
        """(K, 3, H, W) in [0, 1]: at most ``n`` evenly picked latent frames, each decoded on its
        own (latents.glimpse: a preview, one image decode each)."""
        f = latents.shape[2]
        picks = sorted({round(i * (f - 1) / max(1, n - 1)) for i in range(min(n, f))})
        return glimpse(self.parts.vae, latents, picks, self.precision.autocast())

    # ---- prompts
    def encode_prompts(self, prompts: Sequence[str] | str) -> torch.Tensor:
        """(N, 512, D) UMT5 states, each prompt encoded once (cached)."""
        return self.prompts(prompts)

    def free_text_encoder(self) -> None:
        """Drop UMT5 (~11 GB in bf16); prompts encoded before keep answering from the cache."""
        self.prompts.free()
        self.parts.text_encoder = None

    # ---- prediction
    def timestep(self, sigma, batch: int) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float32, device=self.device).reshape(-1)
        return (s * self.num_train_timesteps).expand(batch) if s.numel() == 1 else (
            s * self.num_train_timesteps)

    def predict(self, x: torch.Tensor, sigma, embeds: torch.Tensor) -> torch.Tensor:
        """The velocity v = eps - x0 at noise level ``sigma`` (scalar or (B,)) for normalised
        latents ``x`` (B, 16, f, h, w) under ``embeds`` (1 or B, L, D); float32."""
        tr = self.denoiser
        b = x.shape[0]
        emb = embeds.expand(b, -1, -1) if embeds.shape[0] == 1 else embeds
        with self.precision.autocast():
            v = tr(hidden_states=x.to(tr.dtype), timestep=self.timestep(sigma, b),
                   encoder_hidden_states=emb.to(tr.dtype), return_dict=False)[0].float()
            for add in self.perturb.values():
                v = add(x, sigma, v)
        return v.float()

    velocity = predict

    @staticmethod
    def _s(sigma, like: torch.Tensor) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float32, device=like.device)
        return s.reshape(-1, *([1] * (like.ndim - 1))) if s.numel() > 1 else s

    def x0(self, x: torch.Tensor, sigma, v: torch.Tensor) -> torch.Tensor:
        """x0 = x_s - s v (differentiable)."""
        return x.float() - self._s(sigma, x) * v

    def noise(self, x: torch.Tensor, sigma, v: torch.Tensor) -> torch.Tensor:
        """eps = x_s + (1 - s) v."""
        return x.float() + (1 - self._s(sigma, x)) * v

    # ---- schedule
    def sigmas(self, steps: int) -> torch.Tensor:
        """The sampling schedule, ``steps`` + 1 noise levels from ~1 down to 0: the scheduler's
        own shifted sigmas (a copy of it is set, so its state is not touched)."""
        if steps < 1:
            raise InputError("Use at least 1 step.")
        sched = type(self.parts.scheduler).from_config(self.parts.scheduler.config)
        sched.set_timesteps(steps, device="cpu")
        s = torch.as_tensor(sched.sigmas, dtype=torch.float32).reshape(-1)
        if s.numel() == steps:  # a scheduler that leaves the final 0 out
            s = torch.cat([s, s.new_zeros(1)])
        return s[:steps + 1].to(self.device)

    def train_sigmas(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` training noise levels: u ~ U(0, 1) shifted as the scheduler shifts (module
        docstring)."""
        u = torch.rand(n, generator=generator, device=generator.device)
        return shift_sigma(u, self.shift).to(self.device)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, sigma) -> torch.Tensor:
        s = self._s(sigma, x0)
        return (1 - s) * x0 + s * noise

    @staticmethod
    def target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the model is trained to output: v = eps - x0."""
        return noise - x0

    # ---- trainables
    def add_lora(self, rank: int = 16, alpha: Optional[float] = None,
                 targets: Optional[Sequence[str]] = None) -> list[torch.nn.Parameter]:
        """peft LoRA on the transformer's attention projections (``targets``: module-name
        suffixes, default q, k, v, out of self- and cross-attention); returns the trainable
        parameters (fp32)."""
        from ..lora import add_lora

        return add_lora(self.denoiser, rank, alpha, tuple(targets or lora_targets_for(self.name)))

    def save_lora(self, path: str | Path, config: Optional[dict] = None) -> Path:
        """The LoRA in diffusers' layout: ``WanPipeline.load_lora_weights(path)`` loads it."""
        from ..lora import save_lora

        return save_lora(path, self.denoiser, {**(config or {}), "backbone": self.name,
                                               "model": self.parts.source},
                         prefix=self.denoiser_name)

    def load_lora(self, path: str | Path) -> dict:
        from ..lora import load_lora

        return load_lora(path, self.denoiser, backbone=self.name)

    def gradient_checkpointing(self, on: bool = True) -> None:
        if on:
            self.denoiser.enable_gradient_checkpointing()
        else:
            self.denoiser.disable_gradient_checkpointing()

    @contextlib.contextmanager
    def training(self):
        """Train mode for the denoiser and the perturbation modules inside (dropout-free in
        Wan; for hooks that ask, e.g. APLA's log of the VGT's share)."""
        mods = [self.denoiser] + [m for m in self.perturb.values()
                                  if isinstance(m, torch.nn.Module)]
        for m in mods:
            m.train()
        try:
            yield
        finally:
            for m in mods:
                m.eval()

    # ---- estimates
    def estimate(self, num_frames: int, height: int, width: int, what: str = "train",
                 steps: int = 1, device=None) -> est.Estimate:
        """Seconds and peak GiB of one LoRA step on a clip (``what="train"``) or of a
        ``steps``-step CFG sample (``"sample"``), from this transformer's architecture
        (models/wan/estimate.py; uncalibrated)."""
        cfg = dict(self.denoiser.config)
        dev = device or str(self.device)
        if what == "train":
            return est.train_step(cfg, num_frames, height, width, dev,
                                  bool(getattr(self.denoiser, "gradient_checkpointing", True)))
        if what == "sample":
            return est.sample(cfg, num_frames, height, width, steps, dev)
        raise InputError(f"estimate what='train' or 'sample', not {what!r}.")


__all__ = ["ATTN_PROJECTIONS", "WanT2VBackbone", "flow_shift", "shift_sigma"]
