"""LTX-Video parts through diffusers: load by hub id / local folder, tiny test model.

The parts are those of ``LTXImageToVideoPipeline``: ``LTXVideoTransformer3DModel`` (denoiser),
``AutoencoderKLLTXVideo`` (VAE, 32x spatial / 8x temporal compression at full size), a T5 text
encoder + tokenizer, and ``FlowMatchEulerDiscreteScheduler``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from .cache import ModelCache, default_cache
from .pipeline_parts import cached, freeze, load_pipeline

LTX_DEFAULT = "Lightricks/LTX-Video"  # 0.9.x; 121 frames at 512 x 704 in the docs
TINY_WORDS = ("a", "the", "red", "blue", "ball", "cat", "dog", "car", "rolls", "walks", "on",
              "road", "beach", "moving", "camera", "slowly", "video")


@dataclass
class LTXParts:
    transformer: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    source: str


def load_ltx(model: str | Path = LTX_DEFAULT, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32, cache: Optional[ModelCache] = default_cache,
             local_files_only: bool = False) -> LTXParts:
    """Load LTX-Video from a diffusers folder or hub id; missing/unreachable -> ModelNotFoundError."""

    def build() -> LTXParts:
        pipe = load_pipeline("LTXImageToVideoPipeline", model, dtype, "LTX-Video",
                             "transformer/, vae/, text_encoder/, tokenizer/, scheduler/; hub id "
                             "e.g. Lightricks/LTX-Video", local_files_only)
        parts = LTXParts(transformer=pipe.transformer, vae=pipe.vae, text_encoder=pipe.text_encoder,
                         tokenizer=pipe.tokenizer, scheduler=pipe.scheduler, source=str(model))
        freeze(device, parts.transformer, parts.vae, parts.text_encoder)
        return parts

    return cached(cache, ("ltx", str(model), str(device), str(dtype)), build)


def tiny_ltx_configs(timestep_conditioning: bool = False) -> dict[str, dict]:
    """Configs of a tiny LTX-Video (same classes and wiring; 4x spatial, 4x temporal VAE).

    ``timestep_conditioning=True`` gives the LTX 0.9.1-style VAE decoder (noised, timestep-aware
    decode)."""
    return {
        "transformer": dict(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                            num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
                            num_layers=2, caption_channels=16),
        "vae": dict(in_channels=3, out_channels=3, latent_channels=8,
                    block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                    layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
                    spatio_temporal_scaling=(True, True, False, False),
                    decoder_spatio_temporal_scaling=(True, True, False, False),
                    decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4,
                    upsample_factor=(1,) * 4, timestep_conditioning=timestep_conditioning, patch_size=1,
                    patch_size_t=1, encoder_causal=True, decoder_causal=False),
        "text_encoder": dict(d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                             relative_attention_num_buckets=8),
    }


def _ltx_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    # LTX-Video's scheduler settings (resolution-dependent shift between 0.95 and 2.05).
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0,
                                           use_dynamic_shifting=True, base_shift=0.95,
                                           max_shift=2.05, base_image_seq_len=1024,
                                           max_image_seq_len=4096, shift_terminal=0.1)


def build_tiny_ltx(folder: str | Path, seed: int = 0, timestep_conditioning: bool = False) -> Path:
    """Write a tiny random LTX-Video diffusers folder (real classes) for tests.

    Sizes must be multiples of 32 (the pipeline's rule) and frames 4k + 1; 32 x 32 x 9 frames
    gives 3 x 8 x 8 latents. The tokenizer is a real T5 Unigram tokenizer over ``TINY_WORDS``.
    The VAE's latent mean/std get non-trivial values so (de)normalisation is exercised.
    ``load_ltx(folder)`` reads it back through the same ``from_pretrained`` path.
    """
    from diffusers import AutoencoderKLLTXVideo, LTXImageToVideoPipeline, LTXVideoTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    from .tokenizer import build_t5_tokenizer

    folder = Path(folder)
    cfg = tiny_ltx_configs(timestep_conditioning)
    tok = build_t5_tokenizer(TINY_WORDS, folder / "_tokenizer_build", model_max_length=128)
    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(**cfg["transformer"])
    vae = AutoencoderKLLTXVideo(**cfg["vae"])
    with torch.no_grad():
        vae.latents_mean.copy_(torch.randn(vae.latents_mean.shape) * 0.1)
        vae.latents_std.copy_(torch.rand(vae.latents_std.shape) + 0.5)
    te = T5EncoderModel(T5Config(vocab_size=len(tok), **cfg["text_encoder"]))
    pipe = LTXImageToVideoPipeline(scheduler=_ltx_scheduler(), vae=vae, text_encoder=te,
                                   tokenizer=tok, transformer=transformer)
    pipe.save_pretrained(folder)
    import shutil

    shutil.rmtree(folder / "_tokenizer_build", ignore_errors=True)
    return folder


def full_size_ltx(device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.bfloat16) -> LTXParts:
    """LTX-Video 0.9's transformer + VAE with random weights (for `vcstudio bench`; no download).

    The T5-XXL text encoder is replaced by a one-layer T5 of the same width (4096): it runs once,
    under no_grad, outside the timed reward step, so its size does not change the timing.
    """
    from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    import tempfile

    from .tokenizer import build_t5_tokenizer

    with tempfile.TemporaryDirectory(prefix="vcs_t5tok_") as d:  # loaded into memory
        tok = build_t5_tokenizer(TINY_WORDS, d)
    with torch.device(device):
        transformer = LTXVideoTransformer3DModel()  # defaults = LTX-Video's config
        vae = AutoencoderKLLTXVideo()
        te = T5EncoderModel(T5Config(vocab_size=len(tok), d_model=4096, d_kv=64, d_ff=256,
                                     num_layers=1, num_heads=64))
    parts = LTXParts(transformer=transformer, vae=vae, text_encoder=te, tokenizer=tok,
                     scheduler=_ltx_scheduler(), source="random full-size LTX-Video")
    for m in (parts.transformer, parts.vae, parts.text_encoder):
        m.to(dtype=dtype)
    freeze(device, parts.transformer, parts.vae, parts.text_encoder)
    return parts
