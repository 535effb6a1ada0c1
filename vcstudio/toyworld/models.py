"""The embedded demo model's parts, built with the same classes as Stable Diffusion, and how
they are saved: a standard ``StableDiffusionPipeline`` folder (``assets/toy-sd``) and the toy
CLIP folder (``assets/toy-clip``) that the offline metrics use.

Sizes (``ModelSizes``), chosen so that the whole recipe trains on a 2-core CPU in two hours
(see ``train.py`` and ``assets/toy-sd/README.md`` for the measurements behind them):

* AutoencoderKL with THREE blocks: 4x downsampling, 64x64 images -> 16x16x4 latents. SD's VAE
  downsamples 8x; at 64 px that leaves an 8x8 latent in which a medium object spans about one
  and a half cells, so shapes live in a few channel values that neither the VAE nor the U-Net
  learned to read on a CPU budget (the earlier demo model read shape right for 13.5% of held-
  out captions: its own VAE's reconstructions read 20%). At 4x, an object spans 4-6 cells and
  its shape is drawn spatially. No attention in the VAE's middle block: a purely convolutional
  VAE trains on crops. The pipelines read the factor from the VAE's config, as diffusers does.
* UNet2DConditionModel with SD's block types, its (cross-)attention on the 8x8 and 4x4 levels
  and plain ResNet blocks at 16x16: attention over the 256 positions of the top level cost
  over half of a training step (2.2 vs 0.9 CPU-seconds per 64 images, measured here), and an
  object spans 2-3 cells at 8x8, enough to bind a colour and a shape word to it.
  CLIPTextModel = the toy CLIP's text tower, then trained with the U-Net in the shipped model
  (train.py's ``text_lr``: frozen, the tower hardly tells circle, square and diamond apart);
  DDIM scheduler, epsilon prediction, SD's betas.
* Token length 24 (the world's longest caption is 13 tokens; SD pads to 77: the cross-attention
  then spends most of its keys on padding).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..models.tokenizer import build_clip_tokenizer
from .world import vocabulary

SD_BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                beta_schedule="scaled_linear")


@dataclass
class ModelSizes:
    """Architecture knobs (defaults: the recipe's; assets/toy-sd/unet/config.json says which
    of them the shipped model was trained with)."""

    size: int = 64
    vae_channels: tuple[int, ...] = (16, 32, 64)  # 3 blocks = 4x downsampling
    vae_layers: int = 1
    vae_groups: int = 8
    unet_channels: tuple[int, ...] = (32, 64, 64)
    unet_layers: int = 2
    unet_heads: int = 4
    unet_groups: int = 16
    # the pooled caption joins the timestep embedding (GLIDE, Nichol et al. 2022, sec. 2.2;
    # Imagen, Saharia et al. 2022, sec. 2.4), which scales and shifts every ResNet block's
    # GroupNorm (ADM's AdaGN, Dhariwal & Nichol 2021, sec. 3): the 16x16 blocks, where the
    # object's outline is drawn and which hold no cross-attention, then hear the caption too.
    # Off by default (the shipped model has it off): on, with the text encoder frozen, a U-Net
    # drew shapes right 0.685 of the time instead of 0.50, but its edits kept the source's
    # motion worse (track error 12.1% vs 8.5%, bench toy-edit N=40): every block then hears
    # the edit prompt, the layout's too (assets/toy-sd/README.md, "a candidate not shipped").
    # ``--unet-text-in-time`` turns it on.
    unet_text_in_time: bool = False
    text_width: int = 128
    text_layers: int = 3
    text_heads: int = 4
    vision_width: int = 128
    vision_layers: int = 3
    vision_heads: int = 4
    patch: int = 8
    projection_dim: int = 128
    max_length: int = 24

    @classmethod
    def tiny(cls) -> "ModelSizes":
        """For tests: seconds on a CPU."""
        return cls(size=32, vae_channels=(8, 16, 16), vae_layers=1, vae_groups=8,
                   unet_channels=(16, 32, 32), unet_layers=1, unet_heads=2, unet_groups=8,
                   text_width=32, text_layers=1, text_heads=2, vision_width=32, vision_layers=1,
                   vision_heads=2, patch=8, projection_dim=32, max_length=16)

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae_channels) - 1)


def build_tokenizer(folder, max_length: int = 77):
    """The world's CLIPTokenizer: each world word is one token."""
    return build_clip_tokenizer(vocabulary(), folder, model_max_length=max_length)


def build_vae(s: ModelSizes):
    from diffusers import AutoencoderKL

    n = len(s.vae_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=s.vae_channels,
                         layers_per_block=s.vae_layers, latent_channels=4, norm_num_groups=s.vae_groups,
                         sample_size=s.size, mid_block_add_attention=False)


def build_unet(s: ModelSizes):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=s.size // s.vae_scale, in_channels=4, out_channels=4,
        block_out_channels=s.unet_channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=s.unet_layers, cross_attention_dim=s.text_width,
        attention_head_dim=s.unet_heads, norm_num_groups=s.unet_groups,
        **(dict(addition_embed_type="text", addition_embed_type_num_heads=s.unet_heads,
                resnet_time_scale_shift="scale_shift") if s.unet_text_in_time else {}))


def _special_ids(tok) -> dict:
    return dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)


def build_clip(s: ModelSizes, tok):
    from transformers import CLIPConfig, CLIPModel

    text = dict(hidden_size=s.text_width, intermediate_size=4 * s.text_width,
                num_hidden_layers=s.text_layers, num_attention_heads=s.text_heads,
                max_position_embeddings=s.max_length, projection_dim=s.projection_dim,
                **_special_ids(tok))
    vision = dict(hidden_size=s.vision_width, intermediate_size=4 * s.vision_width,
                  num_hidden_layers=s.vision_layers, num_attention_heads=s.vision_heads,
                  image_size=s.size, patch_size=s.patch, projection_dim=s.projection_dim)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision,
                                projection_dim=s.projection_dim))


def text_encoder_from_clip(clip):
    """A CLIPTextModel holding the CLIP model's text tower (what SD's text encoder is)."""
    from transformers import CLIPTextModel

    te = CLIPTextModel(clip.config.text_config)
    te.load_state_dict(clip.text_model.state_dict())  # transformers 5: the tower itself
    return te


def clip_processor(tok, size: int):
    """Processor for the toy CLIP: resize + centre crop to ``size``, pixels mapped to [-1, 1]."""
    from transformers import CLIPImageProcessor, CLIPProcessor

    ip = CLIPImageProcessor(do_resize=True, size={"shortest_edge": size}, do_center_crop=True,
                            crop_size={"height": size, "width": size}, image_mean=[0.5] * 3,
                            image_std=[0.5] * 3)
    return CLIPProcessor(image_processor=ip, tokenizer=tok)


def save_pipeline(out, vae, unet, text_encoder, tok, card: Optional[str] = None) -> Path:
    """A standard diffusers StableDiffusionPipeline folder in safetensors, written whole or
    not at all: U-Net and VAE in fp16 (diffusers loads them in the pipeline's dtype, fp32 by
    default), the text encoder in fp32 (transformers keeps a checkpoint's dtype, so an fp16
    encoder would break a plain ``StableDiffusionPipeline.from_pretrained(folder)`` on CPU)
    with fp16-rounded values, as the toy CLIP folder holds the same tower."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from ..io.atomic import atomic_dir

    scheduler = DDIMScheduler(**SD_BETAS, clip_sample=False, set_alpha_to_one=False,
                              steps_offset=1, prediction_type="epsilon")
    pipe = StableDiffusionPipeline(vae=copy.deepcopy(vae).cpu(),
                                   text_encoder=copy.deepcopy(text_encoder).cpu(),
                                   tokenizer=tok, unet=copy.deepcopy(unet).cpu(),
                                   scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.unet.to(torch.float16)
    pipe.vae.to(torch.float16)
    pipe.text_encoder.to(torch.float16).to(torch.float32)
    out = Path(out)
    with atomic_dir(out, replace=True) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        if card is not None:
            (tmp / "README.md").write_text(card)
    return out


def save_clip(out, clip, tok, size: int) -> Path:
    from ..io.atomic import atomic_dir

    out = Path(out)
    model = copy.deepcopy(clip).cpu().to(torch.float16)
    with atomic_dir(out, replace=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        clip_processor(tok, size).save_pretrained(tmp)
    return out


def folder_mb(path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20

