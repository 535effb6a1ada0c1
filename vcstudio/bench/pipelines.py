"""Benchmarks on full-size architectures with random weights (speed does not depend on values).

``vcstudio bench tune`` times the real tuning loop (``tune()``), ``vcstudio bench sample`` the real
sampler (50 CFG steps + VAE decode). Both print a table.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..config import DataConfig, TuneConfig
from ..device import peak_memory_gib, pick_device, precision_for, reset_peak
from ..models.loading import BaseModel
from ..runs.folder import RunFolder
from ..progress import Event

# Tune-A-Video's own code on an H100 (the anchor): s/step, s/50 steps, GiB.
ANCHOR = {"tune_s_per_step": 0.53, "tune_peak_gib": 13.0, "sample_s_per_call": 0.24,
          "sample_50_s": 12.0}


def random_base(arch: str, device: torch.device, dtype: torch.dtype) -> BaseModel:
    """SD-1.5 (or tiny) parts with random weights, built in memory with the real classes."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ..models import tiny
    from ..models.tokenizer import build_clip_tokenizer

    torch.manual_seed(0)
    if arch == "sd15":
        unet_cfg, vae_cfg, hidden, layers, heads = (tiny.sd15_unet_config(), tiny.sd15_vae_config(),
                                                    768, 12, 12)
    elif arch == "tiny":
        unet_cfg, vae_cfg, hidden, layers, heads = (tiny.tiny_unet_config(), tiny.tiny_vae_config(),
                                                    32, 2, 4)
    else:
        raise ValueError(f"unknown architecture {arch!r} (sd15 or tiny)")
    with tempfile.TemporaryDirectory() as d:
        tok = build_clip_tokenizer(tiny.TINY_WORDS, d)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=hidden,
                                        intermediate_size=4 * hidden, num_hidden_layers=layers,
                                        num_attention_heads=heads, max_position_embeddings=77))
    unet, vae = UNet2DConditionModel(**unet_cfg), AutoencoderKL(**vae_cfg)
    for m in (unet, vae, text):
        m.to(device=device, dtype=dtype).requires_grad_(False).eval()
    return BaseModel(model_id=f"random-{arch}", unet=unet, vae=vae, text_encoder=text,
                     tokenizer=tok, scheduler_config=tiny.scheduler_config(),
                     fingerprint=f"random-{arch}", device=device, dtype=dtype)


def bench_tune(frames: int = 24, size: int = 512, steps: int = 5, warmup: int = 3,
               method: str = "baseline", arch: str = "sd15", checkpointing: bool = True,
               device: Optional[torch.device] = None, cfg_overrides: Optional[dict] = None,
               dct: Optional[dict] = None) -> dict:
    """``dct``: DCT's bench flags (frames_per_step, decode_size, every_step); each method part
    applies its own benchmark settings (methods: ``bench_config``)."""
    from ..methods.registry import bench_config
    from ..pipelines.tune.loop import tune
    from ..run_context import RunContext

    device = device or pick_device()
    prec = precision_for(device)
    base = random_base(arch, device, prec.frozen_dtype)
    clip = np.random.default_rng(0).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    cfg = TuneConfig(model=base.model_id, data=DataConfig(prompt="a man is skiing",
                                                          n_frames=frames, width=size,
                                                          height=size),
                     method=method, steps=warmup + steps, checkpoint_every=0,
                     gradient_checkpointing=checkpointing)
    cfg, label = bench_config(cfg, **(dct or {}))
    what = f"tune/{method}" + (f" ({label})" if label else "")
    for k, v in (cfg_overrides or {}).items():
        cfg = dataclasses.replace(cfg, **{k: v})
    what += _route_label(cfg)
    stamps: list[float] = []

    def progress(ev: Event) -> None:
        if ev.stage == "tune" and ev.step > 0:
            if device.type == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())
            if ev.step == warmup:
                reset_peak(device)

    with tempfile.TemporaryDirectory() as d:
        reset_peak(device)
        tune(cfg, d, run=RunContext(progress=progress, device=device), frames=clip,
             invert=False, base=base, save_source=False)
        info = RunFolder(Path(d)).meta().get("method_summary", {})
    per_step = (stamps[-1] - stamps[warmup - 1]) / steps if warmup >= 1 else float("nan")
    return {"what": what, "frames": frames, "size": size, "s_per_step": per_step,
            "projected_500_steps_min": per_step * 500 / 60, "peak_gib": peak_memory_gib(device),
            **method_columns(info), "device": _device_name(device)}


def _route_label(cfg: TuneConfig) -> str:
    """The temporal route in a row's name, when it is not the default."""
    if cfg.temporal == "vcstudio":
        return ""
    return f" [{cfg.temporal}{': ' + cfg.motion_adapter if cfg.motion_adapter else ''}]"


def method_columns(info: dict) -> dict:
    """Table columns from a method's summary(): its modules' parameter counts (e.g. the VGT's)."""
    return {k: int(v) for k, v in info.items() if k.endswith("_params")}


def bench_sample(frames: int = 24, size: int = 512, steps: int = 50, guidance: float = 12.5,
                 arch: str = "sd15", device: Optional[torch.device] = None,
                 method: str = "baseline", compile: str = "auto",
                 cfg_overrides: Optional[dict] = None, control: str = "") -> dict:
    """``control="canny"``: the same sampling with a ControlNet (diffusers' ControlNetModel
    from the U-Net, as ControlNet trains it) on canny conditions of random frames, every U-Net
    call adding its residuals (vcstudio/control)."""
    from ..models.encode import decode_latents, encode_prompts
    from ..pipelines.edit.sample import denoise
    from ..pipelines.edit.video_model import build_video_model

    device = device or pick_device()
    prec = precision_for(device)
    base = random_base(arch, device, prec.frozen_dtype)
    cfg = TuneConfig(model=base.model_id, method=method, compile=compile)
    for k, v in (cfg_overrides or {}).items():
        cfg = dataclasses.replace(cfg, **{k: v})
    model, meth, _ = build_video_model(base, cfg, prec)
    model.eval()
    cond, uncond = encode_prompts(base, ["a man"]), encode_prompts(base, [""])
    lat = torch.randn(1, 4, frames, size // 8, size // 8, device=device)
    ctrl = _bench_control(control, base, frames, size, device, prec) if control else None

    def run(n: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with model.controlled(ctrl):
            if ctrl is not None:
                from ..pipelines.edit.sample import ddim_scheduler

                ctrl.set_timesteps(ddim_scheduler(base.scheduler_config, n, device).timesteps)
            out = denoise(model, base.scheduler_config, lat, cond, uncond, guidance, n,
                          autocast=prec.autocast())
        decode_latents(base, out)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    t_first = run(2)  # warm-up (compiles on CUDA)
    reset_peak(device)
    total = run(steps)
    what = f"sample/{method}{_route_label(cfg)}" + (f" + ControlNet ({control})" if control
                                                    else "")
    return {"what": what, "frames": frames, "size": size,
            "steps": steps, "s_per_call": total / steps, "total_s_incl_decode": total, "warmup_s": t_first,
            "peak_gib": peak_memory_gib(device), **method_columns(meth.summary()),
            "device": _device_name(device)}


def bench_long(frames: int = 120, window: int = 16, stride: int = 8, steps: int = 50,
               size: int = 512, guidance: float = 12.5, arch: str = "sd15",
               device: Optional[torch.device] = None, batch_windows: int = 0,
               fusion: str = "uniform", compile: str = "no") -> dict:
    """Long-video co-denoising (eqs. 18-19) with CFG + chunked decode, two segment prompts.

    Reports frames/s over the whole generation (``steps`` denoising steps + decode), peak device
    memory, and the memory held before sampling (weights + latents), so runs at several lengths
    show what grows with the video. A window longer than the video is shortened to it.
    """
    from ..scene.segments import even_segments
    from ..pipelines.long.codenoise import CoDenoiser
    from ..models.encode import decode_to_frames, encode_prompts
    from ..pipelines.long.video import auto_batch
    from ..pipelines.edit.sample import denoise
    from ..pipelines.edit.video_model import build_video_model
    from ..pipelines.long.windows import make_layout, mix_embeddings, window_prompts

    window = min(window, frames)
    stride = min(stride, window)
    device = device or pick_device()
    prec = precision_for(device)
    base = random_base(arch, device, prec.frozen_dtype)
    model, _, _ = build_video_model(base, TuneConfig(model=base.model_id, compile=compile), prec)
    model.eval()
    layout = make_layout(frames, window, stride, fusion)
    segs = even_segments(["a man is skiing", "a dog on the beach"], frames)
    cond = mix_embeddings(encode_prompts(base, [s.prompt for s in segs]),
                          window_prompts(layout, segs))
    uncond = encode_prompts(base, [""])
    cod = CoDenoiser(model, layout, cond, uncond, guidance,
                     batch_windows or auto_batch(layout.n_windows, device))
    g = torch.Generator(device).manual_seed(0)
    lat = torch.randn((1, 4, frames, size // base.vae_scale, size // base.vae_scale),
                      generator=g, device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    sync()
    t = time.perf_counter()
    denoise(model, base.scheduler_config, lat, cond[:1], uncond, guidance, 1,
            autocast=prec.autocast(), predict=cod)  # warm-up; settles the window batch
    sync()
    warm = time.perf_counter() - t
    held = torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    reset_peak(device)
    t = time.perf_counter()
    out = denoise(model, base.scheduler_config, lat, cond[:1], uncond, guidance, steps,
                  autocast=prec.autocast(), predict=cod)
    sync()
    t_denoise = time.perf_counter() - t
    decode_to_frames(base, out, 8)
    sync()
    total = time.perf_counter() - t
    return {"what": "long", "frames": frames, "size": size, "window": window, "stride": stride,
            "windows": layout.n_windows, "batch": cod.batch_windows, "steps": steps,
            "s_per_step": t_denoise / steps, "total_s": total, "frames_per_s": frames / total,
            "warmup_s": warm, "held_gib": held, "peak_gib": peak_memory_gib(device),
            "latents_mib": lat.numel() * 4 / 2**20, "device": _device_name(device)}


def _bench_control(kind: str, base: BaseModel, frames: int, size: int, device, prec):
    """A StructureControl with one random-weight ControlNet of the base's architecture."""
    from diffusers import ControlNetModel

    from ..control.conditions import extract
    from ..control.models import StructureControl, Unit
    from ..models.encode import frames_to_unit

    if kind != "canny":
        raise ValueError(f"bench control {kind!r}: only canny (works offline)")
    # the tiny architecture gets a condition embedding of its own scale (tests' tiny ControlNet);
    # full-size ones the SD ControlNets' (16, 32, 96, 256)
    emb = (8, 8, 16, 16) if base.unet.config.block_out_channels[0] < 128 else (16, 32, 96, 256)
    net = ControlNetModel.from_unet(base.unet, conditioning_embedding_out_channels=emb)
    net = net.to(device).eval()
    if prec.frozen_dtype != torch.float32:
        net = net.to(prec.frozen_dtype)
    clip = np.random.default_rng(0).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    return StructureControl([Unit("controlnet", net.requires_grad_(False),
                                  frames_to_unit(extract(kind, clip), device))])


def control_row(plain: dict, controlled: dict) -> dict:
    """The added cost of the control: seconds per CFG call and its share of a U-Net call."""
    added = controlled["s_per_call"] - plain["s_per_call"]
    return {"what": "added by the ControlNet", "frames": plain["frames"], "size": plain["size"],
            "steps": plain["steps"], "s_per_call": added,
            "total_s_incl_decode": controlled["total_s_incl_decode"]
            - plain["total_s_incl_decode"],
            "share_of_unet": added / plain["s_per_call"],
            "peak_gib": controlled["peak_gib"] - plain["peak_gib"], "device": plain["device"]}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def print_table(rows: list[dict]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    cells = [[fmt(r.get(k, "")) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = [" | ".join(k.ljust(w) for k, w in zip(keys, widths)),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
