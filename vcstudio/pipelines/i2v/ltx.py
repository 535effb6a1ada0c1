"""LTX-Video image-to-video behind the :class:`~vcstudio.pipelines.i2v.base.I2VBackbone` interface.

The loop reproduces ``LTXImageToVideoPipeline.__call__`` (diffusers 0.42): the same draws for a
seed (VAE posterior sample of the image, then the initial noise), the first latent frame held at
the (normalised) image latent with timestep 0 on its tokens, text CFG against the empty negative
prompt, a flow-matching Euler schedule with the resolution-dependent shift, and only latent
frames 1.. stepped. The tests check it against diffusers itself.

What differs from SVD and how the interface absorbs it:

* the text prompt conditions the video: ``encode(..., prompt=...)`` (SVD ignores the keyword);
* latents are compressed 8x in time (tiny: 4x), r pixel frames per latent frame after the
  first: ``num_frames`` must be ``r * k + 1``. ``decode(latents, frames)`` decodes the window of
  latent frames ``a..b`` that covers the wanted pixel frames and picks them out: a window decoded
  on its own yields ``r * (b - a) + 1`` frames, the video's frames ``r*a .. r*b``. The decoder
  then sees only the window (as SVD's subset decode sees only the subset), so a subset's pixels
  differ from the full decode's (the non-causal decoder loses temporal context; on the random
  tiny VAE by ~0.1 mean absolute in [0, 1], unmeasured on the trained one). Its cost is the
  window's, not the subset's: up to ``r`` frames decoded per wanted frame.
  ``subset_decode="full"`` decodes every latent frame and picks (exact, full decode cost);
  ``frames=None`` is always the exact full decode.
* VAEs with timestep conditioning (LTX 0.9.1) add decode noise: ``decode(..., generator=)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ...config import guided_passes
from ...device import Precision, precision_for
from ...errors import InputError
from ...progress import CancelToken, ProgressFn, null_progress
from .base import image_to_tensor, truncated_loop


@dataclass
class LTXCond:
    """What one image + prompt turn into for LTX-Video."""

    image: torch.Tensor  # (1, 3, H, W) in [0, 1], at the video's size
    image_latents: torch.Tensor  # (1, C, 1, h, w) normalised VAE latent of the image
    embeds: torch.Tensor  # (B, L, D) T5 states, B = 2 with CFG (negative prompt first)
    attention_mask: torch.Tensor  # (B, L) bool
    num_frames: int  # pixel frames
    latent_frames: int
    height: int
    width: int
    cfg: bool
    prompt: str


def time_shift_mu(seq_len: int, base_len: int, max_len: int, base_shift: float,
                  max_shift: float) -> float:
    """Flow-matching shift mu, linear in the token count between (base_len, base_shift) and
    (max_len, max_shift) -- the resolution-dependent timestep shift of SD3/Flux that LTX uses."""
    slope = (max_shift - base_shift) / (max_len - base_len)
    return base_shift + slope * (seq_len - base_len)


def pack(x: torch.Tensor, p: int, pt: int) -> torch.Tensor:
    """(B, C, F, H, W) -> tokens (B, F/pt * H/p * W/p, C * pt * p * p), frame-major."""
    b, c, f, h, w = x.shape
    x = x.reshape(b, c, f // pt, pt, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, (f // pt) * (h // p) * (w // p), -1)


def unpack(x: torch.Tensor, f: int, h: int, w: int, p: int, pt: int) -> torch.Tensor:
    """Inverse of :func:`pack` for a (B, S, D) token tensor of an (f, h, w) latent grid."""
    b = x.shape[0]
    x = x.reshape(b, f // pt, h // p, w // p, -1, pt, p, p)
    return x.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(b, -1, f, h, w)


class LTXBackbone:
    """LTX-Video (0.9.x image-to-video) through its diffusers parts."""

    name = "ltx-video"
    denoiser_name = "transformer"  # LTXImageToVideoPipeline.transformer

    def __init__(self, parts, precision: Optional[Precision] = None, guidance: float = 3.0,
                 frame_rate: int = 25, max_sequence_length: int = 128,
                 negative_prompt: str = "", decode_timestep: float = 0.0,
                 decode_noise_scale: Optional[float] = None, subset_decode: str = "window",
                 clip=None) -> None:
        if subset_decode not in ("window", "full"):
            raise InputError(f"subset_decode is 'window' or 'full', not {subset_decode!r}.")
        self.subset_decode = subset_decode
        self.parts = parts
        self.denoiser = parts.transformer
        self.device = next(parts.transformer.parameters()).device
        self.precision = precision or precision_for(self.device)
        self.guidance, self.frame_rate = guidance, frame_rate
        self.max_sequence_length = max_sequence_length
        self.negative_prompt = negative_prompt
        self.decode_timestep = decode_timestep
        self.decode_noise_scale = decode_timestep if decode_noise_scale is None else decode_noise_scale
        self.r_s = parts.vae.spatial_compression_ratio
        self.r_t = parts.vae.temporal_compression_ratio
        self.p = parts.transformer.config.patch_size
        self.pt = parts.transformer.config.patch_size_t
        self._clip = clip

    # ---- sizes
    default_frames = 121  # LTX-Video's documented 121 frames at 512 x 704

    def default_size(self) -> tuple[int, int]:
        return 512, 704

    def check(self, num_frames: Optional[int] = None, height: Optional[int] = None,
              width: Optional[int] = None) -> tuple[int, int, int]:
        """(frames, height, width) with the model's own for None; sizes it cannot take are a
        one-line InputError (before anything runs)."""
        h0, w0 = self.default_size()
        height, width = height or h0, width or w0
        step = max(32, self.r_s * self.p)
        if height % step or width % step:
            raise InputError(f"LTX-Video needs height and width that are multiples of {step}; "
                             f"got {height}x{width}.")
        n = num_frames or self.default_frames
        if n < self.r_t + 1 or (n - 1) % self.r_t:
            k = max(1, round((n - 1) / self.r_t))
            raise InputError(f"LTX-Video makes {self.r_t}k + 1 frames (its VAE packs {self.r_t} "
                             f"frames per latent); got {n}, try {self.r_t * k + 1}.")
        return n, height, width

    # ---- conditioning
    @torch.no_grad()
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """CLIP image embeddings (N, D) for the fidelity probe (LTX itself has no image encoder,
        so the shared CLIP loader answers: open_clip ViT-B/32, offline the embedded toy CLIP)."""
        if self._clip is None:
            from ...models.clip import load_default_clip_encoder

            self._clip = load_default_clip_encoder(device=self.device)
        return self._clip.encode_images(images.float().clamp(0, 1))

    @torch.no_grad()
    def encode_prompt(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 states and mask of one prompt, padded to ``max_sequence_length`` (the pipeline feeds
        T5 without the mask and hands the mask to the transformer's cross-attention)."""
        tok = self.parts.tokenizer(prompt, padding="max_length", max_length=self.max_sequence_length,
                                   truncation=True, add_special_tokens=True, return_tensors="pt")
        te = self.parts.text_encoder
        states = te(tok.input_ids.to(self.device))[0]
        return states, tok.attention_mask.bool().to(self.device)

    @torch.no_grad()
    def encode(self, image, num_frames: Optional[int] = None, height: Optional[int] = None,
               width: Optional[int] = None, generator: Optional[torch.Generator] = None,
               prompt: Optional[str] = None) -> LTXCond:
        n, height, width = self.check(num_frames, height, width)
        img = image_to_tensor(image, height, width).to(self.device)
        vae = self.parts.vae
        # Draw 1 of the seed: a posterior sample of the image latent (as the pipeline does).
        post = vae.encode((img * 2 - 1).unsqueeze(2).to(vae.dtype)).latent_dist
        lat = post.sample(generator).float()
        mean = vae.latents_mean.view(1, -1, 1, 1, 1).to(lat)
        std = vae.latents_std.view(1, -1, 1, 1, 1).to(lat)
        lat = (lat - mean) / std  # the pipeline normalises with scaling factor 1 here
        prompt = prompt or ""
        emb, mask = self.encode_prompt(prompt)
        cfg = guided_passes(self.guidance) == 2
        if cfg:
            nemb, nmask = self.encode_prompt(self.negative_prompt)
            emb, mask = torch.cat([nemb, emb]), torch.cat([nmask, mask])
        return LTXCond(image=img, image_latents=lat, embeds=emb, attention_mask=mask,
                       num_frames=n, latent_frames=(n - 1) // self.r_t + 1, height=height,
                       width=width, cfg=cfg, prompt=prompt)

    # ---- sampling loop
    def _set_schedule(self, steps: int, cond: LTXCond) -> None:
        sched = self.parts.scheduler
        seq = cond.latent_frames * (cond.height // self.r_s) * (cond.width // self.r_s)
        c = sched.config
        mu = time_shift_mu(seq, c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096),
                           c.get("base_shift", 0.5), c.get("max_shift", 1.15))
        sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu, device=self.device)

    def denoise(self, cond: LTXCond, steps: int = 50, generator: Optional[torch.Generator] = None,
                grad_steps: int = 0, latents: Optional[torch.Tensor] = None,
                progress: ProgressFn = null_progress,
                cancel: Optional[CancelToken] = None) -> torch.Tensor:
        """Flow-matching Euler sampling; the last ``grad_steps`` keep the graph.

        Returns normalised latents (1, C, F_lat, h, w); frame 0 stays the image latent.
        """
        min_steps = 2 if self.parts.scheduler.config.get("shift_terminal") else 1
        if steps < min_steps:
            # diffusers stretches the sigmas to shift_terminal by dividing by (1 - last sigma),
            # which is 0/0 for a single step: the pipeline itself returns NaN there.
            raise InputError(f"LTX-Video's schedule needs at least {min_steps} denoising steps.")
        if not 0 <= grad_steps <= steps:
            raise InputError(f"grad_steps must be within 0..{steps}, got {grad_steps}.")
        self._set_schedule(steps, cond)
        c = self.parts.transformer.config.in_channels
        shape = (1, c, cond.latent_frames, cond.height // self.r_s, cond.width // self.r_s)
        if latents is None:
            # Draw 2 of the seed: the noise for every latent frame (frame 0's is then masked out).
            latents = torch.randn(shape, generator=generator, device=generator.device
                                  if generator is not None else "cpu")
        noise = latents.to(self.device).float()
        x = torch.cat([cond.image_latents.to(noise).expand(1, -1, 1, -1, -1), noise[:, :, 1:]], 2)
        return truncated_loop(lambda x, t: self._step(cond, x, t), x,
                              self.parts.scheduler.timesteps, grad_steps, progress, cancel)

    def _step(self, cond: LTXCond, x: torch.Tensor, t) -> torch.Tensor:
        f, h, w = x.shape[2:]
        tr = self.parts.transformer
        tokens = pack(x, self.p, self.pt)
        # Timestep per token: t on the frames being generated, 0 on the conditioning frame.
        keep = torch.zeros(1, 1, f, h, w, device=x.device)
        keep[:, :, 0] = 1
        tstep = t * (1 - pack(keep, self.p, self.pt)[..., 0])  # (1, S)
        b = 2 if cond.cfg else 1
        with self.precision.autocast():
            pred = tr(hidden_states=torch.cat([tokens] * b).to(tr.dtype),
                      encoder_hidden_states=cond.embeds.to(tr.dtype),
                      timestep=tstep.expand(b, -1), encoder_attention_mask=cond.attention_mask,
                      num_frames=f // self.pt, height=h // self.p, width=w // self.p,
                      rope_interpolation_scale=(self.r_t / self.frame_rate, self.r_s, self.r_s),
                      return_dict=False)[0]
        pred = pred.float()
        if cond.cfg:
            un, co = pred.chunk(2)
            pred = un + self.guidance * (co - un)
        pred = unpack(pred, f, h, w, self.p, self.pt)
        moved = self.parts.scheduler.step(pred[:, :, 1:], t, x[:, :, 1:]).prev_sample.float()
        return torch.cat([x[:, :, :1], moved], dim=2)

    # ---- decoding
    def latent_window(self, frames: Sequence[int], latent_frames: int) -> tuple[int, int]:
        """Latent frames [a, b] whose decode holds pixel frames ``frames`` (as r*a .. r*b)."""
        lo, hi = min(frames), max(frames)
        n = (latent_frames - 1) * self.r_t + 1
        if lo < 0 or hi >= n:
            raise InputError(f"Frames must be within 0..{n - 1}; got {list(frames)}.")
        return lo // self.r_t, -(-hi // self.r_t)

    def decode(self, latents: torch.Tensor, frames: Optional[Sequence[int]] = None,
               chunk: int = 8, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """(1, C, F_lat, h, w) latents -> (K, 3, H, W) in [0, 1] for 0-based pixel ``frames``.

        Differentiable w.r.t. the latents. ``chunk`` is unused (the LTX VAE decodes a latent
        window in one call); ``generator`` feeds the decode-noise of VAEs with timestep
        conditioning (LTX 0.9.1), drawn over the full latents as the pipeline does.
        """
        vae = self.parts.vae
        mean = vae.latents_mean.view(1, -1, 1, 1, 1).to(latents)
        std = vae.latents_std.view(1, -1, 1, 1, 1).to(latents)
        z = latents * std / vae.config.scaling_factor + mean
        temb = None
        if vae.config.timestep_conditioning:
            if self.decode_noise_scale:
                noise = torch.randn(z.shape, generator=generator, device=generator.device
                                    if generator is not None else "cpu").to(z)
                z = (1 - self.decode_noise_scale) * z + self.decode_noise_scale * noise
            temb = torch.tensor([self.decode_timestep], device=z.device)
        a, pick = 0, None
        if frames is not None:
            frames = list(frames)
            a, b = self.latent_window(frames, z.shape[2])
            if self.subset_decode == "full":
                a, b = 0, z.shape[2] - 1
            z = z[:, :, a:b + 1]
            pick = [i - self.r_t * a for i in frames]
        with self.precision.autocast():
            video = vae.decode(z.to(vae.dtype), temb, return_dict=False)[0].float()
        video = video[0].permute(1, 0, 2, 3)  # (F, 3, H, W)
        if pick is not None:
            video = video[pick]
        return (video / 2 + 0.5).clamp(0, 1)


__all__ = ["LTXBackbone", "LTXCond", "pack", "time_shift_mu", "unpack"]
