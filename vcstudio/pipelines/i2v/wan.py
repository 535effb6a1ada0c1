"""Wan2.1 image-to-video behind the :class:`~vcstudio.pipelines.i2v.base.I2VBackbone` interface:
the VCD paper's own backbone (Wan2.1-1.3B I2V, Table 2).

The loop reproduces ``WanImageToVideoPipeline.__call__`` (diffusers 0.42, Wan2.1 I2V: no
``expand_timesteps``, one transformer): the same single draw for a seed (the initial noise), the
image's CLIP penultimate states as ``encoder_hidden_states_image``, the condition = 4 mask
channels (the first frame known) + the normalised VAE latent (posterior mode) of the image
followed by black frames, concatenated to the noisy latents on the channel axis; text CFG
against the negative prompt with the conditional pass first; the scheduler's own steps (UniPC
with flow sigmas in the Wan-AI conversions). The tests check it against diffusers itself.

Sizes: frames 4k + 1, sides multiples of 16 (models/wan/rules.py); the default is the VCD
paper's Wan setting, 25 frames at 368 x 272 (:data:`PAPER`). The image is resized to cover the
video size and centre-cropped, keeping its aspect (:func:`~.i2v_base.aspect_note` says so).

Decoding is exact for any subset of frames: the Wan VAE is causal in time, so decoding latent
frames 0..b gives exactly pixel frames 0..4b of the full decode; ``decode(latents, frames)``
decodes that prefix (up to the latent frame holding the last wanted frame) and picks. The
reward's graph holds the prefix's decoder activations, ~1.1 GiB per pixel frame at 368 x 272 in
bf16 (counted by storage with saved-tensor hooks on the full-size VAE), 27 GiB for all 25
frames at worst. Keeping the graph only for the wanted frames' own latent frames would cut that
to 4 frames each, but drops the gradient through the VAE's causal cache; on the tiny model
that truncated gradient pointed uphill (the reward rose step after step where the full one
fell), so vcstudio keeps the exact one.

The text encoder runs once per prompt (embeddings cached, models/wan/text.py); on CUDA it waits
in host memory between prompts (``offload_text_encoder``), which keeps UMT5-XXL's 11 GB off the
GPU during reward tuning.

``step_cache`` (a threshold; None = off) skips the transformer's blocks on no-grad steps whose
input barely changed (TeaCache-style, models/wan/step_cache.py); the truncated-backprop steps
always compute.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ...config import guided_passes
from ...device import Precision, precision_for
from ...errors import InputError
from ...models.wan.latents import decode_frames, encode_video
from ...models.wan.rules import check_frames, check_size
from ...models.wan.step_cache import StepCache
from ...models.wan.text import MAX_SEQUENCE_LENGTH, PromptEmbeddings
from ...progress import CancelToken, ProgressFn, null_progress
from .base import image_to_tensor, to_uint8, truncated_loop

# The VCD paper's Wan2.1-1.3B-I2V setting (Sec. 4): 25 frames at 368 x 272, 30 steps, LoRA,
# AdamW 2e-4 constant, gradients through the final step only.
PAPER = dict(num_frames=25, height=272, width=368, inference_steps=30, grad_steps=1, lr=2e-4)


@dataclass
class WanCond:
    """What one image + prompt turn into for Wan2.1 I2V."""

    image: torch.Tensor  # (1, 3, H, W) in [0, 1], at the video's size
    condition: torch.Tensor  # (1, 4 + C, F_lat, h, w): first-frame mask + normalised latents
    image_embeds: torch.Tensor  # (1, T, D) CLIP penultimate states
    embeds: torch.Tensor  # (1, L, D) UMT5 states of the prompt
    negative: Optional[torch.Tensor]  # (1, L, D) of the negative prompt (CFG), else None
    num_frames: int
    latent_frames: int
    height: int
    width: int
    cfg: bool
    prompt: str


class WanI2VBackbone:
    """Wan2.1 image-to-video (Wan2.1-Fun-1.3B-InP, Wan2.1-I2V-14B) through its diffusers parts."""

    name = "wan2.1-i2v"
    denoiser_name = "transformer"  # WanImageToVideoPipeline.transformer
    default_frames = PAPER["num_frames"]
    paper = PAPER

    def __init__(self, parts, precision: Optional[Precision] = None, guidance: float = 5.0,
                 negative_prompt: str = "", max_sequence_length: int = MAX_SEQUENCE_LENGTH,
                 step_cache: Optional[float] = None,
                 offload_text_encoder: Optional[bool] = None) -> None:
        self._conds: dict = {}  # encode() results by (image, sizes, prompt): no draws, reusable
        self.parts = parts
        self.denoiser = parts.transformer
        self.device = next(parts.transformer.parameters()).device
        self.precision = precision or precision_for(self.device)
        self.guidance = float(guidance)
        self.negative_prompt = negative_prompt
        self.r_t = parts.vae.config.scale_factor_temporal
        self.r_s = parts.vae.config.scale_factor_spatial
        self.multiple = self.r_s * parts.transformer.config.patch_size[1]
        offload = (self.device.type == "cuda" if offload_text_encoder is None
                   else offload_text_encoder)
        self.prompts = PromptEmbeddings(parts.tokenizer, parts.text_encoder, self.device,
                                        max_sequence_length, offload)
        self.cache: Optional[StepCache] = None
        self.set_step_cache(step_cache)

    # ---- sizes
    def default_size(self) -> tuple[int, int]:
        """(height, width): the paper's 272 x 368."""
        return PAPER["height"], PAPER["width"]

    def check(self, num_frames: Optional[int] = None, height: Optional[int] = None,
              width: Optional[int] = None) -> tuple[int, int, int]:
        """(frames, height, width) with the paper's for None; frames not 4k + 1 and sides not
        multiples of 16 are a one-line InputError naming the nearest valid values."""
        h0, w0 = self.default_size()
        height, width = check_size(height or h0, width or w0, self.multiple)
        return check_frames(num_frames or self.default_frames, self.r_t), height, width

    def set_step_cache(self, threshold: Optional[float]) -> None:
        """Switch the step cache on at ``threshold`` (0 = on but never skipping), or off (None)."""
        if self.cache is not None:
            self.cache.remove()
            self.cache = None
        if threshold is not None:
            if threshold < 0:
                raise InputError(f"The step cache threshold must be >= 0, got {threshold}.")
            self.cache = StepCache(self.denoiser, threshold)

    # ---- conditioning
    def _clip_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> the CLIP tower's input, through its own image processor."""
        proc = self.parts.image_processor
        arrs = list(to_uint8(images))
        px = proc(images=arrs, return_tensors="pt").pixel_values
        return px.to(self.device, self.parts.image_encoder.dtype)

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """CLIP image embeddings (N, D) of (N, 3, H, W) in [0, 1] (the fidelity probe): the
        projected embedding where the tower has a projection, else its pooled output."""
        out = self.parts.image_encoder(pixel_values=self._clip_pixels(images))
        emb = getattr(out, "image_embeds", None)
        return (emb if emb is not None else out.pooler_output).float()

    @torch.no_grad()
    def encode(self, image, num_frames: Optional[int] = None, height: Optional[int] = None,
               width: Optional[int] = None, generator: Optional[torch.Generator] = None,
               prompt: Optional[str] = None) -> WanCond:
        n, height, width = self.check(num_frames, height, width)
        img = image_to_tensor(image, height, width).to(self.device)
        key = (_digest(img), n, height, width, prompt or "", self.negative_prompt, self.guidance)
        if key in self._conds:  # a reward tune encodes the same image every step
            return self._conds[key]
        cond = self._encode(img, n, height, width, prompt)
        if len(self._conds) >= 4:
            self._conds.pop(next(iter(self._conds)))
        self._conds[key] = cond
        return cond

    def _encode(self, img: torch.Tensor, n: int, height: int, width: int,
                prompt: Optional[str]) -> WanCond:
        # The image's CLIP penultimate hidden states (WanImageToVideoPipeline.encode_image).
        enc = self.parts.image_encoder
        image_embeds = enc(pixel_values=self._clip_pixels(img),
                           output_hidden_states=True).hidden_states[-2]
        # The condition video: the image, then black frames; the VAE's posterior mode.
        video = torch.cat([(img * 2 - 1).unsqueeze(2), img.new_zeros(1, 3, n - 1, height, width)],
                          dim=2)
        lat = encode_video(self.parts.vae, video)
        f, h, w = lat.shape[2:]
        mask = torch.zeros(1, self.r_t, f, h, w, device=self.device)
        mask[:, :, 0] = 1  # the first pixel frame is known; its latent frame packs r_t copies
        prompt = prompt or ""
        emb = self.prompts(prompt)
        cfg = guided_passes(self.guidance) == 2
        neg = self.prompts(self.negative_prompt) if cfg else None
        return WanCond(image=img, condition=torch.cat([mask, lat], 1), image_embeds=image_embeds,
                       embeds=emb, negative=neg, num_frames=n, latent_frames=f, height=height,
                       width=width, cfg=cfg, prompt=prompt)

    # ---- sampling loop
    def denoise(self, cond: WanCond, steps: int = 30, generator: Optional[torch.Generator] = None,
                grad_steps: int = 0, latents: Optional[torch.Tensor] = None,
                progress: ProgressFn = null_progress,
                cancel: Optional[CancelToken] = None) -> torch.Tensor:
        """The pipeline's sampling; the last ``grad_steps`` keep the graph. Returns normalised
        latents (1, C, F_lat, h, w)."""
        if steps < 1:
            raise InputError("Use at least 1 denoising step.")
        if not 0 <= grad_steps <= steps:
            raise InputError(f"grad_steps must be within 0..{steps}, got {grad_steps}.")
        sched = self.parts.scheduler
        sched.set_timesteps(steps, device=self.device)
        c = self.parts.vae.config.z_dim
        shape = (1, c, cond.latent_frames, cond.height // self.r_s, cond.width // self.r_s)
        if latents is None:  # the seed's one draw (randn_tensor on the generator's device)
            latents = torch.randn(shape, generator=generator, device=generator.device
                                  if generator is not None else "cpu")
        x = latents.to(self.device).float()
        if self.cache is not None:
            self.cache.reset()
        timesteps = sched.timesteps
        n = len(timesteps)
        counter = iter(range(n))
        return truncated_loop(lambda x, t: self._step(cond, x, t, next(counter), n), x,
                              timesteps, grad_steps, progress, cancel)

    def velocity(self, cond: WanCond, x: torch.Tensor, t, step: int = 0,
                 total: int = 1) -> torch.Tensor:
        """The guided flow prediction at ``x`` (normalised latents) and timestep ``t``."""
        tr = self.denoiser
        inp = torch.cat([x, cond.condition.to(x)], 1).to(tr.dtype)
        ts = torch.as_tensor(t, device=x.device).reshape(1).expand(x.shape[0])
        img = cond.image_embeds.to(tr.dtype)

        def run(branch: str, emb: torch.Tensor) -> torch.Tensor:
            ctx = (self.cache.context(branch, step, total) if self.cache is not None
                   else _null())
            with ctx, self.precision.autocast():
                return tr(hidden_states=inp, timestep=ts, encoder_hidden_states=emb.to(tr.dtype),
                          encoder_hidden_states_image=img, return_dict=False)[0].float()

        v = run("cond", cond.embeds)
        if cond.cfg:
            vu = run("uncond", cond.negative)
            v = vu + self.guidance * (v - vu)
        return v

    def _step(self, cond: WanCond, x: torch.Tensor, t, i: int, n: int) -> torch.Tensor:
        v = self.velocity(cond, x, t, i, n)
        return self.parts.scheduler.step(v, t, x, return_dict=False)[0].float()

    # ---- decoding
    def decode(self, latents: torch.Tensor, frames: Optional[Sequence[int]] = None,
               chunk: int = 8, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """(1, C, F_lat, h, w) normalised latents -> (K, 3, H, W) in [0, 1] for 0-based pixel
        ``frames`` (all if None); exact for any subset (the causal prefix, module docstring),
        differentiable w.r.t. the latents. ``chunk`` and ``generator`` are unused (the Wan VAE
        decodes latent frame by latent frame itself; it adds no noise)."""
        return decode_frames(self.parts.vae, latents, frames, self.precision.autocast())


def _digest(t: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha1(t.detach().float().cpu().numpy().tobytes()).hexdigest()


def _null():
    import contextlib

    return contextlib.nullcontext()


__all__ = ["PAPER", "WanCond", "WanI2VBackbone"]
