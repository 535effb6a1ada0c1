"""Stable Video Diffusion parts through diffusers: load by hub id / local folder, tiny test model.

The parts are those of ``StableVideoDiffusionPipeline``: ``UNetSpatioTemporalConditionModel``
(denoiser), ``AutoencoderKLTemporalDecoder`` (VAE), ``CLIPVisionModelWithProjection`` (image
encoder), ``EulerDiscreteScheduler`` and ``CLIPImageProcessor`` (its mean/std).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from .cache import ModelCache, default_cache
from .pipeline_parts import cached, freeze, load_pipeline

SVD_DEFAULT = "stabilityai/stable-video-diffusion-img2vid"  # 14 frames at 576 x 1024


@dataclass
class SVDParts:
    unet: Any
    vae: Any
    image_encoder: Any
    scheduler: Any
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    source: str


def load_svd(model: str | Path = SVD_DEFAULT, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32, cache: Optional[ModelCache] = default_cache,
             local_files_only: bool = False) -> SVDParts:
    """Load SVD from a diffusers folder or hub id; a missing/unreachable model -> ModelNotFoundError."""

    def build() -> SVDParts:
        pipe = load_pipeline("StableVideoDiffusionPipeline", model, dtype, "image-to-video",
                             "unet/, vae/, image_encoder/, scheduler/", local_files_only)
        fe = pipe.feature_extractor
        parts = SVDParts(unet=pipe.unet, vae=pipe.vae, image_encoder=pipe.image_encoder,
                         scheduler=pipe.scheduler, image_mean=tuple(fe.image_mean),
                         image_std=tuple(fe.image_std), source=str(model))
        freeze(device, parts.unet, parts.vae, parts.image_encoder)
        return parts

    return cached(cache, ("svd", str(model), str(device), str(dtype)), build)


def tiny_svd_configs(frames: int = 4) -> dict[str, dict]:
    """Configs of a tiny SVD (same classes and wiring, a few thousand parameters per block)."""
    return {
        "unet": dict(sample_size=8, in_channels=8, out_channels=4,
                     down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
                     up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
                     block_out_channels=(32, 32), addition_time_embed_dim=8,
                     projection_class_embeddings_input_dim=24, layers_per_block=1,
                     cross_attention_dim=16, num_attention_heads=(2, 4), num_frames=frames),
        "vae": dict(in_channels=3, out_channels=3,
                    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                    block_out_channels=(32, 32), layers_per_block=1, latent_channels=4,
                    sample_size=32),
        "image_encoder": dict(hidden_size=16, intermediate_size=32, projection_dim=16,
                              num_hidden_layers=1, num_attention_heads=2, image_size=32,
                              patch_size=8, num_channels=3),
    }


def build_tiny_svd(folder: str | Path, seed: int = 0, frames: int = 4) -> Path:
    """Write a tiny random StableVideoDiffusion diffusers folder (real classes) for tests.

    Frames default to 16 x 16 (latents 4 x 8 x 8); ``load_svd(folder)`` reads it back through the same
    ``from_pretrained`` path a user's checkpoint takes.
    """
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler,
                           StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = tiny_svd_configs(frames)
    torch.manual_seed(seed)
    unet = UNetSpatioTemporalConditionModel(**cfg["unet"])
    vae = AutoencoderKLTemporalDecoder(**cfg["vae"])
    enc = CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg["image_encoder"]))
    # SVD's own scheduler settings (EDM-style Karras sigmas, v-prediction).
    sched = EulerDiscreteScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                   beta_schedule="scaled_linear", prediction_type="v_prediction",
                                   interpolation_type="linear", use_karras_sigmas=True,
                                   timestep_spacing="leading", steps_offset=1, sigma_min=0.002,
                                   sigma_max=700.0, timestep_type="continuous",
                                   final_sigmas_type="zero")
    fe = CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32})
    pipe = StableVideoDiffusionPipeline(vae=vae, image_encoder=enc, unet=unet, scheduler=sched,
                                        feature_extractor=fe)
    folder = Path(folder)
    pipe.save_pretrained(folder)
    return folder


def full_size_svd(frames: int = 14, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.bfloat16) -> SVDParts:
    """SVD-img2vid's architecture with random weights (for `vcstudio bench`; no download)."""
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler,
                           UNetSpatioTemporalConditionModel)
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.device(device):
        unet = UNetSpatioTemporalConditionModel(num_frames=frames)  # defaults = SVD's config
        vae = AutoencoderKLTemporalDecoder(
            down_block_types=("DownEncoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
            layers_per_block=2, latent_channels=4, sample_size=768)
        enc = CLIPVisionModelWithProjection(CLIPVisionConfig(  # OpenCLIP ViT-H/14
            hidden_size=1280, intermediate_size=5120, projection_dim=1024, num_hidden_layers=32,
            num_attention_heads=16, image_size=224, patch_size=14, hidden_act="gelu"))
    sched = EulerDiscreteScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                   beta_schedule="scaled_linear", prediction_type="v_prediction",
                                   interpolation_type="linear", use_karras_sigmas=True,
                                   timestep_spacing="leading", steps_offset=1, sigma_min=0.002,
                                   sigma_max=700.0, timestep_type="continuous",
                                   final_sigmas_type="zero")
    parts = SVDParts(unet=unet, vae=vae, image_encoder=enc, scheduler=sched,
                     image_mean=(0.48145466, 0.4578275, 0.40821073),
                     image_std=(0.26862954, 0.26130258, 0.27577711), source="random full-size SVD")
    for m in (parts.unet, parts.vae, parts.image_encoder):
        m.to(dtype=dtype)
        m.requires_grad_(False)
        m.eval()
    return parts
