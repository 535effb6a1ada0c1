"""Wan2.1 (text-to-video and image-to-video) through diffusers: loading, size rules, latent
normalisation, UMT5 prompt embeddings, a TeaCache-style step cache, tiny test folders, and the
text-to-video backbone (:mod:`.t2v`).

Each job has its module: ``loading`` (folders, hub ids, T2V/I2V detection), ``rules`` (4k + 1
frames, multiples of 16), ``latents`` (the VAE's per-channel mean/std), ``text`` (prompt
embeddings cached, encoder freed), ``step_cache`` (residual reuse over denoising steps),
``estimate`` (seconds and memory from the architecture), ``tiny`` (test folders and full-size
random architectures).
"""
from __future__ import annotations

from .latents import denormalize, latent_stats, normalize
from .loading import (WAN_FUN_INP_1_3B, WAN_I2V_14B, WAN_T2V_1_3B, WanParts, load_wan,
                      load_wan_i2v, wan_kind)
from .rules import check_frames, check_size, latent_frames, nearest_frames
from .text import PromptEmbeddings, encode_umt5
from .tiny import build_tiny_wan_i2v, build_tiny_wan_t2v, full_size_wan

__all__ = ["PromptEmbeddings", "WAN_FUN_INP_1_3B", "WAN_I2V_14B", "WAN_T2V_1_3B", "WanParts",
           "build_tiny_wan_i2v", "build_tiny_wan_t2v", "check_frames", "check_size",
           "denormalize", "encode_umt5", "full_size_wan", "latent_frames", "latent_stats",
           "load_wan", "load_wan_i2v", "nearest_frames", "normalize", "wan_kind"]
