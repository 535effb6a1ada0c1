"""The I2V job: a video from one image with an image-to-video model (Stable Video Diffusion,
LTX-Video or Wan2.1 I2V), and with a VCD-tuned LoRA the A/B: base and tuned from the same image
and seed, both scored with VCD against the image (VCD paper).

Config: :class:`I2VABConfig`. Writes ``NAME`` (and ``NAME_base`` for the A/B) into the run
folder and records an ``i2v_ab`` run with the mean VCD of each.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import time

import numpy as np

from ..config import Limits, fps_setting, sampling_steps
from ..settings import check
from .. import validate as v

BACKBONES = ("auto", "svd", "ltx", "wan")


@dataclass
class I2VABConfig:
    model: str = ""  # hub id or diffusers folder
    image: str = ""  # the conditioning image
    prompt: str = ""  # LTX-Video and Wan read it; SVD is conditioned on the image alone
    lora: str = ""  # a tuned LoRA (.safetensors); "" = the base model only
    ab: bool = True  # with a LoRA: also the base video from the same seed, both VCD-scored
    backbone: str = "auto"
    frames: int = 0  # 0 = the model's own (SVD 14, LTX-Video 121, Wan 25: the VCD paper's)
    size: int = 0  # square size; 0 = the model's own (height/width override it)
    height: int = 0
    width: int = 0
    steps: int = sampling_steps(25, flag="--steps")  # denoising steps
    seed: int = 0
    fps: float = fps_setting(7.0, flag="--fps")
    encoder: str = "auto"  # VCD encoder (A/B scores)
    name: str = "i2v.mp4"  # file name of the (tuned) video in the run folder
    step_cache: Optional[float] = None  # Wan: the step cache's threshold (None = off)


@dataclass
class I2VOutcome:
    run_id: str
    video: Path  # the (tuned) video
    frames: np.ndarray
    base_video: Optional[Path] = None
    base_frames: Optional[np.ndarray] = None
    scores: Optional[tuple] = None  # (VCDResult base, VCDResult tuned)
    backbone: str = ""
    note: str = ""  # what was done to the image (aspect_note), "" if nothing


def check_model(model: str) -> str:
    from ..errors import InputError

    if not model or not model.strip():
        raise InputError("Give an image-to-video model: a Hub id such as "
                         "stabilityai/stable-video-diffusion-img2vid, Lightricks/LTX-Video or "
                         "weizhou03/Wan2.1-Fun-1.3B-InP-Diffusers, or a local folder. None "
                         "ships offline.")
    return model.strip()


def validate(cfg: I2VABConfig, limits: Limits) -> None:
    check_model(cfg.model)
    v.text("image (--image)", cfg.image, "give the conditioning image")
    v.choice("backbone (--backbone)", cfg.backbone, BACKBONES)
    v.whole("frames (--frames)", cfg.frames, 0, limits.max_frames, " (0 = the model's own)")
    for name in ("size", "height", "width"):
        v.whole(f"{name} (--{name})", getattr(cfg, name), 0, limits.max_side,
                " (0 = the model's own)")
    check(cfg, "steps", limits)
    v.seed("seed (--seed)", cfg.seed)
    check(cfg, "fps", limits)
    check_step_cache(cfg.step_cache)


def check_step_cache(value) -> None:
    if value is not None:
        v.number("step_cache (--step-cache)", value, 0, 10)


def open_backbone(cfg, ctx):
    """The job's backbone on its device (a fresh model cache: LoRA goes into the denoiser in
    place and must not leak into other jobs), a hub model downloaded first with progress."""
    import torch

    from ..models.cache import ModelCache
    from ..models.catalog import download
    from ..pipelines.i2v.backbones import build_backbone

    download(cfg.model, ctx)
    return build_backbone(cfg.model, torch.device(ctx.device), cache=ModelCache(),
                          backbone=cfg.backbone, step_cache=cfg.step_cache)


def load_image_for(bb, path: str, n, h, w):
    """(uint8 image, note): the image and what fitting it to the video's size does to it."""
    from ..io import read_image
    from ..pipelines.i2v.base import aspect_note

    image = read_image(path)
    h0, w0 = bb.default_size()
    return image, aspect_note(image.shape[:2], h or h0, w or w0)


# denoiser parameters of the full-size SVD U-Net and LTX-Video transformer (the rough figures
# below scale the per-device SD-1.x constants by them; Wan is counted from its architecture)
_FAMILY_PARAMS = {"svd": 1.52e9, "ltx": 1.92e9}


def figures(model: str, backbone: str, frames: Optional[int], height: Optional[int],
            width: Optional[int], steps: int, device="cpu", tune=None) -> dict:
    """Seconds and peak GiB of one sample (and with ``tune``, an I2VTuneConfig, of one VCD
    reward step) from the backbone's own figures: Wan's FLOPs and counted activations
    (models/wan/estimate.py); SVD / LTX-Video the SD-1.x per-frame constants scaled by the
    denoiser's size (rough). The step cache's savings are not counted (an upper bound).
    Returns {"sample_s", "sample_gib", "step_s", "step_gib", "how", "frames", "height",
    "width"} (the step_* keys only with ``tune``)."""
    from .. import memory
    from ..pipelines.i2v.backbones import OWN_SIZES, backbone_kind

    kind = backbone_kind(model, backbone)
    f0, h0, w0 = OWN_SIZES[kind]
    n, h, w = int(frames or f0), int(height or h0), int(width or w0)
    out: dict = {"frames": n, "height": h, "width": w}
    if kind == "wan":
        from ..models.wan import estimate as we

        tc = we.transformer_config(model)
        s = we.sample(tc, n, h, w, steps, device)
        out.update(sample_s=s.seconds, sample_gib=s.peak_gib, how=s.how)
        if tune is not None:
            r = we.reward_step(tc, n, h, w, tune.inference_steps, tune.grad_steps,
                               tune.decode_frames, device,
                               checkpointing=tune.gradient_checkpointing)
            out.update(step_s=r.seconds, step_gib=r.peak_gib)
        return out
    from .tune import uncalibrated_pass_s

    scale = _FAMILY_PARAMS[kind] / memory.SD_UNET_PARAMS
    pass_s = uncalibrated_pass_s(n, w, h, device, scale)
    out.update(sample_s=2 * steps * pass_s, sample_gib=memory.sample_gib(n, h, w, scale),
               how="uncalibrated: SD-1.x per-frame constants scaled by the denoiser's size")
    if tune is not None:
        out.update(step_s=2 * (tune.inference_steps + 3 * tune.grad_steps) * pass_s,
                   step_gib=memory.tune_gib(n, h, w, 0.0, True, scale))
    return out


def sizes(cfg) -> tuple[Optional[int], Optional[int], Optional[int]]:
    """(frames, height, width), None where the model's own is meant."""
    return (cfg.frames or None, cfg.height or cfg.size or None, cfg.width or cfg.size or None)


def step_unit(model: str, backbone: str) -> str:
    """The calibration unit of one image-to-video denoising step (encode and decode shared out)."""
    return f"i2v:{backbone}:{model}"


def estimate(cfg: I2VABConfig, device="cpu", calibration_dir=None, probe=None,
             rate: Optional[float] = None) -> dict:
    """Seconds of this image-to-video job: each video (two for the A/B) = ``steps`` denoising
    steps of the backbone at these frames and size (seconds per step measured by an earlier
    generation on this device, with its encode and decode shared out; vcstudio/calibration.py
    units, scaled by the machine's load now: ``rate``), plus the VCD scoring of both A/B videos
    (jobs/eval.py's per-frame figure). Nothing is guessed before a first generation measures
    the model: until then the backbone's own figures (:func:`figures`, labelled uncalibrated;
    the job's events carry an ETA from its own first steps). ``probe`` (a tune's) does not
    apply. Returns {"seconds", "low", "high", "how", "load", "parts", "videos", "peak_gib"}."""
    from .. import calibration as cal
    from .estimates import finish, rate_now

    rate = rate_now(device, rate)
    n, h, w = sizes(cfg)
    videos = 2 if cfg.lora and cfg.ab else 1
    per, how, load = cal.lookup_unit(calibration_dir, device, step_unit(cfg.model, cfg.backbone),
                                     (n or 0, w or 0, h or 0), rate)
    f = figures(cfg.model, cfg.backbone, n, h, w, cfg.steps, device)
    if per is None:
        parts, how = {"sample_s": videos * f["sample_s"]}, f["how"]
    else:
        parts = {"sample_s": videos * cfg.steps * per}
    if videos == 2:
        from .eval import PRIOR_VCD_FRAME_S, vcd_unit

        vcd, _, _ = cal.lookup_unit(calibration_dir, device, vcd_unit(cfg.encoder), (224,), rate)
        parts["vcd_s"] = 2 * (n or 14) * (vcd or PRIOR_VCD_FRAME_S.get(cfg.encoder, 0.5))
    return finish(parts, how, load, videos=videos, peak_gib=round(f["sample_gib"], 1))


def estimate_line(est: dict, device="cpu") -> str:
    """The I2V panel's ``Estimate: ...`` line (jobs/estimates.py ``line``)."""
    from .estimates import line

    v = est.get("videos", 1)
    counts = [f"{v} video{'s' * (v != 1)}"] + (["VCD of both"] if v == 2 else [])
    return line(est, device, counts)


def record_step(ctx, cfg, n_frames, height, width, steps: int, seconds: float) -> None:
    """Record the seconds per denoising step of a generation that took ``seconds``."""
    from .. import calibration as cal
    from .. import loadfactor
    from .estimates import calibration_dir

    try:
        cal.record_unit(calibration_dir(ctx), ctx.device, step_unit(cfg.model, cfg.backbone),
                        (n_frames or 0, width or 0, height or 0), seconds / max(1, steps),
                        loadfactor.rate(ctx.device, busy_s=seconds))
    except OSError:
        pass


def run(cfg: I2VABConfig, ctx) -> I2VOutcome:
    import torch

    from ..io import write_mp4
    from ..methods.vcd import VCD
    from ..pipelines.i2v.backbones import check_i2v_memory, sample_i2v
    from ..pipelines.i2v.tune import ab_sample
    from .estimates import announce
    from .eval import vcd_encoder

    announce(ctx, estimate, estimate_line, cfg)
    bb = open_backbone(cfg, ctx)
    n, h, w = sizes(cfg)
    bb.check(n, h, w)  # before a run is recorded: a refusal leaves nothing
    image, note = load_image_for(bb, cfg.image, n, h, w)
    check_i2v_memory(bb, n, h, w)
    if cfg.lora:  # a delta of another backbone is refused before a run is recorded
        from ..models.lora import load_lora

        load_lora(cfg.lora, bb.denoiser, backbone=bb.name)
    folder = ctx.run_folder("i2v")
    run_id = ctx.open_run("i2v_ab", folder, cfg, seed=cfg.seed, label=cfg.prompt[:80])
    kw = dict(num_frames=n, height=h, width=w, steps=cfg.steps, prompt=cfg.prompt or None)
    out = folder / cfg.name
    res = I2VOutcome(run_id, out, np.zeros((0,), np.uint8), backbone=bb.name, note=note)
    t0 = time.perf_counter()
    if cfg.lora and cfg.ab:
        base, tuned = ab_sample(bb, image, cfg.seed, cfg.steps, n, h, w, prompt=cfg.prompt or None)
        record_step(ctx, cfg, n, h, w, 2 * cfg.steps, time.perf_counter() - t0)
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
        record_step(ctx, cfg, n, h, w, cfg.steps, time.perf_counter() - t0)
    res.frames = tuned
    write_mp4(tuned, out, cfg.fps)
    ctx.add_artifact(run_id, "mp4", out)
    ctx.finish_run(run_id)
    return res
