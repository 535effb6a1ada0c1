"""Tiny Wan2.1 folders built with the REAL classes (tests), and the full-size architectures
with random weights (`vcstudio bench`).

The tiny models keep every wiring choice of the real ones (patch 1x2x2, 4x temporal / 8x
spatial causal VAE with z_dim 16 and Wan's latent mean/std, UMT5 text states, a UniPC
flow-matching scheduler with flow_shift 3 as the Wan-AI conversions ship it, for I2V 36 input
channels, a CLIP vision tower whose penultimate states feed ``image_dim`` and the added K/V
projections of the image cross-attention) at a few thousand parameters per block: 32 x 32
frames give 4 x 4 latents, 9 frames give 3 latent frames. They are written with
``save_pretrained`` and read back by ``WanPipeline.from_pretrained`` /
``WanImageToVideoPipeline.from_pretrained`` and :func:`~vcstudio.models.wan.load_wan` alike.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from ..tiny import TINY_WORDS

WORDS = tuple(TINY_WORDS) + ("ball", "cat", "rolls", "walks", "video", "camera", "slowly",
                             "wave", "waves", "ocean", "bird", "flies", "tree", "wind")
TEXT_DIM = 32
CLIP_DIM = 16


def tiny_wan_configs(i2v: bool) -> dict[str, dict]:
    tr = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
              in_channels=36 if i2v else 16, out_channels=16, text_dim=TEXT_DIM, freq_dim=32,
              ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
              rope_max_seq_len=32)
    if i2v:
        tr.update(image_dim=CLIP_DIM, added_kv_proj_dim=24)  # 24 = heads x head dim
    return {
        "transformer": tr,
        "vae": dict(base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                    temperal_downsample=[False, True, True]),
        "text_encoder": dict(d_model=TEXT_DIM, d_kv=8, d_ff=32, num_layers=1, num_heads=4,
                             relative_attention_num_buckets=8),
        "image_encoder": dict(hidden_size=CLIP_DIM, intermediate_size=32, projection_dim=CLIP_DIM,
                              num_hidden_layers=2, num_attention_heads=2, image_size=32,
                              patch_size=8),
    }


def wan_scheduler(flow_shift: float = 3.0):
    """The scheduler the Wan-AI diffusers conversions ship (flow sigmas, flow_shift 3 at 480p)."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                   num_train_timesteps=1000, flow_shift=flow_shift)


def _build(folder: str | Path, i2v: bool, seed: int) -> Path:
    from diffusers import (AutoencoderKLWan, WanImageToVideoPipeline, WanPipeline,
                           WanTransformer3DModel)
    from transformers import UMT5Config, UMT5EncoderModel

    from ..tokenizer import build_t5_tokenizer

    folder = Path(folder)
    cfg = tiny_wan_configs(i2v)
    with tempfile.TemporaryDirectory(prefix="vcs_wan_tok_") as d:
        tok = build_t5_tokenizer(WORDS, d, model_max_length=512)
    torch.manual_seed(seed)
    transformer = WanTransformer3DModel(**cfg["transformer"])
    vae = AutoencoderKLWan(**cfg["vae"])
    te = UMT5EncoderModel(UMT5Config(vocab_size=len(tok), **cfg["text_encoder"]))
    kw = dict(tokenizer=tok, text_encoder=te, vae=vae, scheduler=wan_scheduler(),
              transformer=transformer)
    if i2v:
        from transformers import (CLIPImageProcessor, CLIPVisionConfig,
                                  CLIPVisionModelWithProjection)

        enc = CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg["image_encoder"]))
        size = cfg["image_encoder"]["image_size"]
        proc = CLIPImageProcessor(crop_size=size, size={"shortest_edge": size})
        pipe = WanImageToVideoPipeline(image_encoder=enc, image_processor=proc, **kw)
    else:
        pipe = WanPipeline(**kw)
    pipe.save_pretrained(folder)
    return folder


def build_tiny_wan_t2v(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random ``WanPipeline`` folder (real classes); frames 4k+1, sides multiples of 16."""
    return _build(folder, False, seed)


def build_tiny_wan_i2v(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random ``WanImageToVideoPipeline`` folder (real classes, in_channels 36, CLIP
    vision encoder + CLIPImageProcessor), saved as diffusers saves that pipeline."""
    return _build(folder, True, seed)


# --- full size (random weights) ----------------------------------------------------------------

# Wan2.1 1.3B (T2V: Wan-AI/Wan2.1-T2V-1.3B; I2V: alibaba-pai's Fun-1.3B-InP, in_dim 36 with
# the CLIP image path): dim 1536 = 12 heads x 128, FFN 8960, 30 blocks, UMT5-XXL states (4096)
WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128,
                in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960,
                num_layers=30, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
                rope_max_seq_len=1024)
WAN_1_3B_I2V = dict(WAN_1_3B, in_channels=36, image_dim=1280, added_kv_proj_dim=1536)
# OpenCLIP ViT-H/14 (the CLIP vision tower Wan2.1 I2V conditions on)
VIT_H14 = dict(hidden_size=1280, intermediate_size=5120, projection_dim=1024,
               num_hidden_layers=32, num_attention_heads=16, image_size=224, patch_size=14,
               hidden_act="gelu")


def full_size_wan(i2v: bool = True, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.bfloat16, text_layers: int = 1):
    """Wan2.1-1.3B's transformer, VAE (and for I2V the ViT-H/14 image tower) with random
    weights, as frozen :class:`~vcstudio.models.wan.loading.WanParts` (no download).

    The UMT5-XXL encoder is replaced by ``text_layers`` UMT5 layers of its width (4096): it runs
    once per prompt, under no_grad, before the timed reward steps, so its depth does not change
    their timing (its 11 GB of bf16 weights are not counted in the bench's peak either: a tune
    encodes its prompts and frees it, models/wan/text.py)."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from ..pipeline_parts import freeze
    from ..tokenizer import build_t5_tokenizer
    from .loading import WanParts

    with tempfile.TemporaryDirectory(prefix="vcs_wan_tok_") as d:
        tok = build_t5_tokenizer(WORDS, d, model_max_length=512)
    enc = proc = None
    with torch.device(device):
        transformer = WanTransformer3DModel(**(WAN_1_3B_I2V if i2v else WAN_1_3B))
        vae = AutoencoderKLWan()  # defaults = Wan2.1's VAE
        te = UMT5EncoderModel(UMT5Config(vocab_size=len(tok), d_model=4096, d_kv=64, d_ff=10240,
                                         num_layers=text_layers, num_heads=64,
                                         feed_forward_proj="gated-gelu"))
        if i2v:
            from transformers import (CLIPImageProcessor, CLIPVisionConfig,
                                      CLIPVisionModelWithProjection)

            enc = CLIPVisionModelWithProjection(CLIPVisionConfig(**VIT_H14))
            proc = CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224})
    parts = WanParts(transformer=transformer, vae=vae, text_encoder=te, tokenizer=tok,
                     scheduler=wan_scheduler(), source="random full-size Wan2.1-1.3B "
                     + ("I2V (Fun-InP architecture)" if i2v else "T2V"),
                     kind="i2v" if i2v else "t2v", image_encoder=enc, image_processor=proc)
    mods = [m for m in (transformer, vae, te, enc) if m is not None]
    for m in mods:
        _cast(m, dtype)
    freeze(device, *mods)
    return parts


def _cast(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """``module`` to ``dtype`` except what its class keeps in fp32 (``_keep_in_fp32_modules``:
    Wan's rope, time embedder, modulation tables and norms), as from_pretrained(dtype=) does."""
    keep = tuple(getattr(module, "_keep_in_fp32_modules", None) or ())
    for name, sub in module.named_modules():
        parts = name.split(".")
        fp32 = any(k in parts for k in keep)
        for pname, p in sub.named_parameters(recurse=False):
            wanted = torch.float32 if fp32 or pname in keep else dtype
            p.data = p.data.to(wanted)
        for bname, b in sub.named_buffers(recurse=False):
            if b.is_floating_point():
                sub._buffers[bname] = b.to(torch.float32 if fp32 else dtype)


def copy_tiny(src: Path, dst: Path) -> Path:
    """A copy of a built tiny folder (tests that modify one)."""
    shutil.copytree(src, dst)
    return dst
