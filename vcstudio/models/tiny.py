"""Tiny Stable-Diffusion-shaped checkpoints built with the REAL diffusers/transformers classes.

Tests (and `vcstudio bench` at full size) build models here, save them with ``save_pretrained``
and load them back through :func:`vcstudio.models.loading.load_base`, the users' code path.
"""
from __future__ import annotations

from pathlib import Path

import torch

TINY_WORDS = ("a an the is on in of and with red blue green yellow white black orange purple "
              "circle square triangle star man woman dog car moving right left up down skiing "
              "beach snow night sky cartoon style spider jeep porsche road").split()


def tiny_unet_config(cross_dim: int = 32) -> dict:
    return dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=cross_dim,
                attention_head_dim=8, norm_num_groups=8)


def tiny_vae_config() -> dict:
    # four blocks -> three downsamples -> the 8x factor of SD's VAE
    return dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                block_out_channels=(8, 16, 16, 16), norm_num_groups=8,
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, sample_size=64)


def sd15_unet_config() -> dict:
    """The full-size SD-1.5 U-Net (for benchmarks with random weights)."""
    return dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                block_out_channels=(320, 640, 1280, 1280),
                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                  "CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                "CrossAttnUpBlock2D"),
                cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)


def sd15_vae_config() -> dict:
    return dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                block_out_channels=(128, 256, 512, 512), norm_num_groups=32,
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512)


def scheduler_config(prediction_type: str = "epsilon") -> dict:
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                steps_offset=1, prediction_type=prediction_type)


def build_sd(folder: str | Path, unet_config: dict, vae_config: dict, text_hidden: int,
             text_layers: int, seed: int = 0, prediction_type: str = "epsilon",
             words=TINY_WORDS, dtype: torch.dtype = torch.float32) -> Path:
    """Write a StableDiffusionPipeline folder (random weights) and return its path."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .tokenizer import build_clip_tokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    tok = build_clip_tokenizer(words, folder / "_tok")
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tok), hidden_size=text_hidden, intermediate_size=4 * text_hidden,
        num_hidden_layers=text_layers, num_attention_heads=max(1, text_hidden // 64 or 4),
        max_position_embeddings=77, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id))
    unet = UNet2DConditionModel(**unet_config)
    vae = AutoencoderKL(**vae_config)
    sched = DDIMScheduler(**scheduler_config(prediction_type))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                   scheduler=sched, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    if dtype != torch.float32:
        pipe.to(dtype=dtype)
    pipe.save_pretrained(folder, safe_serialization=True)
    import shutil

    shutil.rmtree(folder / "_tok", ignore_errors=True)
    return folder


def build_tiny_sd(folder: str | Path, seed: int = 0, prediction_type: str = "epsilon") -> Path:
    """A ~1 MB SD-shaped checkpoint: 64x64 images, 8x8x4 latents, 32-wide text encoder."""
    return build_sd(folder, tiny_unet_config(32), tiny_vae_config(), text_hidden=32,
                    text_layers=2, seed=seed, prediction_type=prediction_type)
