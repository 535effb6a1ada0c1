"""Seconds and peak memory of Wan2.1 work, from the architecture itself (before any weights
load): the transformer's FLOPs per forward pass (a closed form of its matmuls and attention,
within 0.2% of ``torch.utils.flop_counter`` on the full-size 1.3B I2V model; the tests check
the form against the counter), the VAE's decode FLOPs per pixel frame and the activation bytes
autograd keeps, both counted once on the full-size architectures on the meta device
(``FlopCounterMode``, saved-tensor hooks; the saved bytes count a tensor each time an op saves
it, so they are an upper bound), at an assumed sustained throughput per device.

Until a run measures one, these are labelled "uncalibrated"; they are what the I2V tab, the
ZeroGPU call durations and the T2V backbone's ``estimate`` answer with.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

GIB = 2**30
# sustained dense bf16 TFLOP/s assumed per GPU (~40% of the datasheet peak), fp32 on a CPU
GPU_TFLOPS = (("H200", 400.0), ("H100", 400.0), ("A100", 125.0), ("L40S", 145.0),
              ("A10G", 35.0), ("L4", 48.0), ("T4", 20.0))
DEFAULT_GPU_TFLOPS = 60.0
CPU_TFLOPS = 0.05
# AutoencoderKLWan decode: FLOPs per output pixel frame (21.39 TFLOP for 25 frames at 368x272,
# counted) and the bytes its backward keeps per pixel frame in bf16 (1.08 GiB at 368x272,
# counted by storage on a 9-frame decode)
VAE_DECODE_FLOPS_PER_PIXEL = 21.39e12 / (25 * 368 * 272)
VAE_GRAD_BYTES_PER_PIXEL = 1.08 * GIB / (368 * 272)
# the transformer's saved activations per token x width x block in bf16: with gradient
# checkpointing (the block inputs) and without (counted on the 1.3B I2V model, LoRA r16)
ACT_BYTES = {True: 0.3173 * GIB / (2737 * 1536 * 30), False: 36.64 * GIB / (2737 * 1536 * 30)}
TEXT_TOKENS, IMAGE_TOKENS = 512, 257


@dataclass
class Estimate:
    seconds: float
    peak_gib: float
    how: str  # "uncalibrated: ..." (the assumption the seconds rest on)
    parts: dict = field(default_factory=dict)


def device_tflops(device="cpu") -> tuple[float, str]:
    """(TFLOP/s assumed for ``device``, its name). ``"cuda:H100"`` (a GPU name after the colon)
    estimates for that GPU without one."""
    dev = str(device)
    if not dev.startswith("cuda"):
        return CPU_TFLOPS, "CPU"
    tail = dev.partition(":")[2]
    if tail and not tail.isdigit():
        name = tail
    else:
        try:
            import torch

            name = torch.cuda.get_device_name(dev) if torch.cuda.is_available() else "cuda"
        except Exception:  # no driver: estimating for a GPU elsewhere
            name = "cuda"
    for key, tf in GPU_TFLOPS:
        if key.lower() in name.lower():
            return tf, name
    return DEFAULT_GPU_TFLOPS, name


def transformer_config(model: str = "") -> dict:
    """The WanTransformer3DModel config of a folder (or a cached hub repo); by the id's name the
    1.3B (T2V or Fun-InP I2V) or the 14B I2V architecture when neither is at hand."""
    from .tiny import WAN_1_3B, WAN_1_3B_I2V

    path = Path(model) / "transformer" / "config.json"
    if not path.is_file() and model and not Path(model).exists():
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(model, "transformer/config.json")
            path = Path(hit) if isinstance(hit, str) else path
        except Exception:  # not a repo id
            pass
    if path.is_file():
        return json.loads(path.read_text())
    low = model.lower()
    i2v = any(k in low for k in ("i2v", "inp", "flf2v"))
    if "14b" in low:
        big = dict(WAN_1_3B, num_attention_heads=40, ffn_dim=13824, num_layers=40)
        return dict(big, in_channels=36, image_dim=1280, added_kv_proj_dim=5120) if i2v else big
    return dict(WAN_1_3B_I2V if i2v else WAN_1_3B)


def params(cfg: dict) -> float:
    """Parameters of the transformer's blocks (the rest is < 1%)."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    per = 8 * d * d + 2 * d * cfg["ffn_dim"]  # q k v o self + cross, FFN in and out
    if cfg.get("added_kv_proj_dim"):
        per += 2 * cfg["added_kv_proj_dim"] * d
    return cfg["num_layers"] * per


def tokens(cfg: dict, frames: int, height: int, width: int) -> int:
    pt, ph, pw = cfg.get("patch_size", (1, 2, 2))
    return ((frames - 1) // 4 + 1) // pt * (height // 8 // ph) * (width // 8 // pw)


def forward_flops(cfg: dict, n_tokens: int, text_tokens: int = TEXT_TOKENS,
                  image_tokens: int = IMAGE_TOKENS) -> float:
    """FLOPs of one transformer forward pass over ``n_tokens`` video tokens (per block: self
    q k v o, self attention, cross q o, cross k v of the text, cross attention, the image's
    k v and attention for I2V, the FFN)."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    s, L, f = n_tokens, text_tokens, cfg["ffn_dim"]
    per = 8 * s * d * d + 4 * s * s * d + 4 * s * d * d + 4 * L * d * d + 4 * s * L * d \
        + 4 * s * d * f
    if cfg.get("image_dim"):
        per += 4 * image_tokens * d * d + 4 * s * image_tokens * d
    return cfg["num_layers"] * per


def weights_gib(cfg: dict, bytes_per: int = 2, image_encoder: bool = True,
                text_encoder: bool = False) -> float:
    """Frozen weights on the device: transformer, VAE (127M), CLIP ViT-H (632M, I2V) and,
    unless offloaded / freed, UMT5-XXL (5.7B)."""
    n = params(cfg) + 127e6 + (632e6 if image_encoder and cfg.get("image_dim") else 0) \
        + (5.68e9 if text_encoder else 0)
    return n * bytes_per / GIB


def sample(cfg: dict, frames: int, height: int, width: int, steps: int, device="cpu",
           cfg_branches: int = 2, skip_share: float = 0.0) -> Estimate:
    """One sample: ``steps`` x ``cfg_branches`` forward passes (a share ``skip_share`` of them
    skipped by the step cache) + the VAE decode of every frame."""
    tf, name = device_tflops(device)
    s = tokens(cfg, frames, height, width)
    fwd = forward_flops(cfg, s)
    denoise = steps * cfg_branches * fwd * (1 - skip_share)
    dec = VAE_DECODE_FLOPS_PER_PIXEL * frames * height * width
    secs = (denoise + dec) / (tf * 1e12)
    bytes_per = 2 if str(device).startswith("cuda") else 4
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    # one block's live tensors without a graph (FFN hidden + a few widths), and one latent
    # frame's decode (4 pixel frames of the 96-wide full-resolution stage, a few tensors)
    act = s * (cfg["ffn_dim"] + 6 * d) * bytes_per / GIB
    vae = 4 * height * width * 96 * 6 * bytes_per / GIB
    peak = weights_gib(cfg, bytes_per) + max(act, vae) + 0.3
    return Estimate(secs, peak, f"uncalibrated: {tf:g} TFLOP/s assumed on {name}",
                    {"denoise_s": denoise / (tf * 1e12), "decode_s": dec / (tf * 1e12),
                     "tflop_per_forward": fwd / 1e12, "tokens": s})


def reward_step(cfg: dict, frames: int, height: int, width: int, steps: int,
                grad_steps: int = 1, decode_frames: int = 2, device="cpu",
                cfg_branches: int = 2, skip_share: float = 0.0, checkpointing: bool = True,
                text_encoder_on_device: bool = False) -> Estimate:
    """One VCD reward step (VCD paper eq. 3): the no-grad steps (``skip_share`` of their passes
    skipped by the step cache), ``grad_steps`` steps forward + backward (+ a recomputed forward
    with checkpointing), the causal decode of the frames up to the last of ``decode_frames``
    random ones with its backward (at worst all ``frames``: the peak counts that), AdamW on the
    LoRA."""
    tf, name = device_tflops(device)
    s = tokens(cfg, frames, height, width)
    fwd = forward_flops(cfg, s)
    free = (steps - grad_steps) * cfg_branches * fwd * (1 - skip_share)
    graph = grad_steps * cfg_branches * fwd * (4 if checkpointing else 3)
    px = height * width
    # the prefix up to the last of k random frames of N reaches ~ N k / (k + 1) on average; its
    # backward costs about twice its forward; the peak is the worst case (all N frames)
    mean_prefix = frames * decode_frames / (decode_frames + 1)
    dec = VAE_DECODE_FLOPS_PER_PIXEL * px * 3 * mean_prefix
    dec_frames = frames
    secs = (free + graph + dec) / (tf * 1e12)
    bytes_per = 2 if str(device).startswith("cuda") else 4
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    act = grad_steps * cfg_branches * s * d * cfg["num_layers"] * ACT_BYTES[checkpointing] \
        * bytes_per / 2 / GIB
    vae = dec_frames * px * VAE_GRAD_BYTES_PER_PIXEL * bytes_per / 2 / GIB
    peak = weights_gib(cfg, bytes_per, text_encoder=text_encoder_on_device) + act + vae + 0.6
    return Estimate(secs, peak, f"uncalibrated: {tf:g} TFLOP/s assumed on {name}",
                    {"denoise_s": (free + graph) / (tf * 1e12), "decode_s": dec / (tf * 1e12),
                     "tflop_per_forward": fwd / 1e12, "tokens": s,
                     "activations_gib": act, "decode_graph_gib": vae})


def train_step(cfg: dict, frames: int, height: int, width: int, device="cpu",
               checkpointing: bool = True) -> Estimate:
    """One flow-matching LoRA step on a clip (T2V one-shot tuning): forward + backward (+ the
    recomputed forward with checkpointing), no decode."""
    tf, name = device_tflops(device)
    s = tokens(cfg, frames, height, width)
    fwd = forward_flops(cfg, s)
    secs = fwd * (4 if checkpointing else 3) / (tf * 1e12)
    bytes_per = 2 if str(device).startswith("cuda") else 4
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    act = s * d * cfg["num_layers"] * ACT_BYTES[checkpointing] * bytes_per / 2 / GIB
    peak = weights_gib(cfg, bytes_per, image_encoder=False) + act + 0.6
    return Estimate(secs, peak, f"uncalibrated: {tf:g} TFLOP/s assumed on {name}",
                    {"tflop_per_forward": fwd / 1e12, "tokens": s, "activations_gib": act})
