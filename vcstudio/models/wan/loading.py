"""Load a Wan2.1 diffusers folder or hub id (text-to-video or image-to-video) into frozen parts.

``WanPipeline`` (T2V) and ``WanImageToVideoPipeline`` (I2V) share a ``WanTransformer3DModel``,
an ``AutoencoderKLWan`` (4x temporal, 8x spatial, per-channel latent mean/std), a UMT5 text
encoder with its tokenizer and a flow-matching scheduler (the Wan-AI conversions ship
``UniPCMultistepScheduler`` with ``use_flow_sigmas`` and ``flow_shift``;
``FlowMatchEulerDiscreteScheduler`` with ``shift`` works too). I2V adds a CLIP vision encoder
and its ``CLIPImageProcessor``; its transformer takes 36 input channels (16 noise + 4 mask + 16
image latent). Which one a folder holds is read from its ``model_index.json``; a hub id is read
from the local cache first, then from the Hub (a one-line ModelNotFoundError when neither
answers). Loading never trusts remote code and reads safetensors only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from ...errors import InputError
from ..cache import ModelCache, default_cache
from ..pipeline_parts import cached, freeze, load_pipeline, read_model_index

WAN_T2V_1_3B = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
# the VCD paper's I2V backbone: alibaba-pai's Wan2.1-Fun-1.3B-InP, converted to diffusers by
# a community member (not by alibaba-pai or Wan-AI)
WAN_FUN_INP_1_3B = "weizhou03/Wan2.1-Fun-1.3B-InP-Diffusers"
WAN_I2V_14B = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
PIPELINE_CLASS = {"t2v": "WanPipeline", "i2v": "WanImageToVideoPipeline"}
KIND_OF_CLASS = {v: k for k, v in PIPELINE_CLASS.items()}


@dataclass
class WanParts:
    transformer: Any  # WanTransformer3DModel
    vae: Any  # AutoencoderKLWan
    text_encoder: Any  # UMT5EncoderModel (None once freed)
    tokenizer: Any
    scheduler: Any
    source: str
    kind: str  # "t2v" | "i2v"
    image_encoder: Any = None  # CLIPVisionModel(WithProjection), I2V only
    image_processor: Any = None  # CLIPImageProcessor, I2V only


def wan_kind(model: str | Path) -> str:
    """"t2v" or "i2v" from the model_index.json's pipeline class; another class is a one-line
    InputError; no index at hand (an uncached hub id) falls back to the id's name."""
    idx = read_model_index(model)
    if idx is not None:
        cls = idx.get("_class_name", "")
        if cls in KIND_OF_CLASS:
            return KIND_OF_CLASS[cls]
        raise InputError(f"{model} holds a {cls or 'unknown'} pipeline, not Wan2.1 "
                         f"({' or '.join(PIPELINE_CLASS.values())}); pass a Wan2.1 model.")
    return "i2v" if any(k in str(model).lower() for k in ("i2v", "inp", "flf2v")) else "t2v"


def load_wan(model: str | Path = WAN_T2V_1_3B, kind: str = "auto",
             device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
             cache: Optional[ModelCache] = default_cache,
             local_files_only: bool = False) -> WanParts:
    """Frozen Wan2.1 parts on ``device`` (``dtype`` for every module; fp32 on the CPU, bf16 on
    CUDA by the device policy). ``kind`` "auto" reads it from the model (:func:`wan_kind`)."""
    kind = wan_kind(model) if kind == "auto" else kind
    if kind not in PIPELINE_CLASS:
        raise InputError(f"Wan kind must be t2v, i2v or auto, not {kind!r}.")

    def build() -> WanParts:
        pipe = load_pipeline(PIPELINE_CLASS[kind], model, dtype, f"Wan2.1 {kind.upper()}",
                             "transformer/, vae/, text_encoder/, tokenizer/, scheduler/"
                             + (", image_encoder/, image_processor/" if kind == "i2v" else ""),
                             local_files_only)
        parts = WanParts(transformer=pipe.transformer, vae=pipe.vae,
                         text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                         scheduler=pipe.scheduler, source=str(model), kind=kind,
                         image_encoder=getattr(pipe, "image_encoder", None),
                         image_processor=getattr(pipe, "image_processor", None))
        if parts.transformer is None:
            raise InputError(f"{model} has no transformer/ (a Wan2.2 two-stage folder?); "
                             "vcstudio runs Wan2.1 folders.")
        if kind == "i2v" and parts.image_encoder is None:
            raise InputError(f"{model} has no image_encoder/: vcstudio's Wan I2V runs Wan2.1 "
                             "I2V checkpoints (CLIP image conditioning).")
        freeze(device, *(m for m in (parts.transformer, parts.vae, parts.text_encoder,
                                     parts.image_encoder) if m is not None))
        return parts

    return cached(cache, ("wan", kind, str(model), str(device), str(dtype)), build)


def load_wan_i2v(model: str | Path = WAN_FUN_INP_1_3B, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, cache: Optional[ModelCache] = default_cache,
                 local_files_only: bool = False) -> WanParts:
    """:func:`load_wan` of an image-to-video folder (the I2V backbone registry's loader)."""
    return load_wan(model, "i2v", device, dtype, cache, local_files_only)
