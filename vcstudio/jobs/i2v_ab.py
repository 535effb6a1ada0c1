"""The I2V job: a video from one image with an image-to-video model (Stable Video Diffusion or
LTX-Video), and with a VCD-tuned LoRA the A/B: base and tuned from the same image and seed, both
scored with VCD against the image (VCD paper).

Config: :class:`I2VABConfig`. Writes ``NAME`` (and ``NAME_base`` for the A/B) into the run
folder and records an ``i2v_ab`` run with the mean VCD of each.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import Limits
from . import validate as v

BACKBONES = ("auto", "svd", "ltx")


@dataclass
class I2VABConfig:
    model: str = ""  # hub id or diffusers folder
    image: str = ""  # the conditioning image
    prompt: str = ""  # LTX-Video reads it; SVD is conditioned on the image alone
    lora: str = ""  # a tuned LoRA (.safetensors); "" = the base model only
    ab: bool = True  # with a LoRA: also the base video from the same seed, both VCD-scored
    backbone: str = "auto"
    frames: int = 0  # 0 = the model's own (SVD 14, LTX-Video 121)
    size: int = 0  # square size; 0 = the model's own (height/width override it)
    height: int = 0
    width: int = 0
    steps: int = 25  # denoising steps
    seed: int = 0
    fps: float = 7.0
    encoder: str = "auto"  # VCD encoder (A/B scores)
    name: str = "i2v.mp4"  # file name of the (tuned) video in the run folder


@dataclass
class I2VOutcome:
    run_id: str
    video: Path  # the (tuned) video
    frames: np.ndarray
    base_video: Optional[Path] = None
    base_frames: Optional[np.ndarray] = None
    scores: Optional[tuple] = None  # (VCDResult base, VCDResult tuned)
    backbone: str = ""


def check_model(model: str) -> str:
    from ..errors import InputError

    if not model or not model.strip():
        raise InputError("Give an image-to-video model: a Hub id such as "
                         "stabilityai/stable-video-diffusion-img2vid or Lightricks/LTX-Video, "
                         "or a local folder. None ships offline.")
    return model.strip()


def validate(cfg: I2VABConfig, limits: Limits) -> None:
    check_model(cfg.model)
    v.text("image (--image)", cfg.image, "give the conditioning image")
    v.choice("backbone (--backbone)", cfg.backbone, BACKBONES)
    v.whole("frames (--frames)", cfg.frames, 0, limits.max_frames, " (0 = the model's own)")
    for name in ("size", "height", "width"):
        v.whole(f"{name} (--{name})", getattr(cfg, name), 0, limits.max_side,
                " (0 = the model's own)")
    v.whole("steps (--steps)", cfg.steps, 1, 1000)
    v.seed("seed (--seed)", cfg.seed)
    v.number("fps (--fps)", cfg.fps, 0, 240, open_lo=True)


def sizes(cfg) -> tuple[Optional[int], Optional[int], Optional[int]]:
    """(frames, height, width), None where the model's own is meant."""
    return (cfg.frames or None, cfg.height or cfg.size or None, cfg.width or cfg.size or None)


def run(cfg: I2VABConfig, ctx) -> I2VOutcome:
    import torch

    from ..io import read_image, write_mp4
    from ..methods.vcd import VCD
    from ..models.cache import ModelCache
    from ..pipelines.i2v import build_backbone, check_i2v_memory, sample_i2v
    from ..pipelines.i2v_tune import ab_sample
    from .eval import vcd_encoder

    image = read_image(cfg.image)
    # a fresh cache: LoRA goes into the denoiser in place and must not leak into other jobs
    bb = build_backbone(cfg.model, torch.device(ctx.device), cache=ModelCache(),
                        backbone=cfg.backbone)
    n, h, w = sizes(cfg)
    check_i2v_memory(bb, n, h, w)  # before a run is recorded: a refusal leaves nothing
    folder = ctx.run_folder("i2v")
    run_id = ctx.open_run("i2v_ab", folder, cfg, seed=cfg.seed, label=cfg.prompt[:80])
    kw = dict(num_frames=n, height=h, width=w, steps=cfg.steps, prompt=cfg.prompt or None)
    out = folder / cfg.name
    res = I2VOutcome(run_id, out, np.zeros((0,), np.uint8), backbone=bb.name)
    if cfg.lora:
        from ..models.lora import load_lora

        load_lora(cfg.lora, bb.denoiser)
    if cfg.lora and cfg.ab:
        base, tuned = ab_sample(bb, image, cfg.seed, cfg.steps, n, h, w, prompt=cfg.prompt or None)
        _, enc = vcd_encoder(cfg.encoder, ctx.cache, torch.device(ctx.device))
        vcd_fn = VCD(enc)
        with torch.no_grad():
            res.scores = vcd_fn(base, image), vcd_fn(tuned, image)
        res.base_video = write_mp4(base, out.with_name(f"{out.stem}_base{out.suffix}"), cfg.fps)
        res.base_frames = base
        ctx.add_artifact(run_id, "mp4", res.base_video)
        ctx.add_metrics(run_id, video={"vcd_base": float(res.scores[0].mean),
                                       "vcd_tuned": float(res.scores[1].mean)})
    else:
        tuned = sample_i2v(bb, image, seed=cfg.seed, progress=ctx, cancel=ctx.cancel, **kw)
    res.frames = tuned
    write_mp4(tuned, out, cfg.fps)
    ctx.add_artifact(run_id, "mp4", out)
    ctx.finish_run(run_id)
    return res
