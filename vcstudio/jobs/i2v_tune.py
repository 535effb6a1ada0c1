"""The I2V reward-tuning job: LoRA on an image-to-video model's denoiser with VCD as the reward
(VCD paper, eq. 3; truncated backprop), then base vs tuned from the first image and the same
seed, both scored with VCD.

Config: :class:`I2VTuneJobConfig` (the pipeline's :class:`I2VTuneConfig` + the model, images,
prompts and the A/B sampling). Writes ``lora.safetensors``, ``tune_log.json``, ``ab_base.mp4``
and ``ab_tuned.mp4`` into the run folder; records an ``i2v_tune`` run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..config import Limits
from ..settings import check
from ..pipelines.i2v.tune import I2VTuneConfig
from .. import validate as v
from .i2v_ab import BACKBONES, check_model, check_step_cache, figures, open_backbone


@dataclass
class I2VTuneJobConfig:
    model: str = ""
    images: list[str] = field(default_factory=list)  # conditioning image files
    prompts: list[str] = field(default_factory=list)  # one per image or one for all
    backbone: str = "auto"
    tune: I2VTuneConfig = field(default_factory=I2VTuneConfig)
    fps: float = 7.0
    # "paper": the backbone's setting in the VCD paper (Wan: 25 frames at 368x272, 30 steps,
    # gradients through the last step, AdamW 2e-4); "" = the fields as given
    preset: str = ""
    step_cache: Optional[float] = None  # Wan: the step cache's threshold (None = off)


@dataclass
class I2VTuneOutcome:
    run_id: str
    out: Path
    lora: Path
    log: object  # pipelines.i2v.tune.TuneLog
    base: object  # uint8 frames
    tuned: object
    base_video: Path
    tuned_video: Path
    scores: tuple  # (VCDResult base, VCDResult tuned)
    note: str = ""  # what was done to the first image (aspect_note), "" if nothing


def validate(cfg: I2VTuneJobConfig, limits: Limits) -> None:
    from ..errors import InputError

    check_model(cfg.model)
    if not cfg.images:
        raise InputError("images (--images) is empty: give at least one conditioning image.")
    v.choice("backbone (--backbone)", cfg.backbone, BACKBONES)
    t = cfg.tune
    v.whole("tune.steps (--steps)", t.steps, 1, limits.max_steps)
    v.whole("tune.lora_rank (--lora-rank)", t.lora_rank, 1, 512)
    v.number("tune.lr (--lr)", t.lr, 0, 1, open_lo=True, open_hi=True)
    check(t, "inference_steps", limits, "tune.")
    v.whole("tune.grad_steps (--grad-steps)", t.grad_steps, 1, t.inference_steps,
            " (at most the inference steps)")
    v.whole("tune.decode_frames (--decode-frames)", t.decode_frames, 1, None)
    v.whole("tune.eval_every (--eval-every)", t.eval_every, 0, None)
    v.whole("tune.vcd_size (--vcd-size)", t.vcd_size, 32, 1024)
    v.whole("tune.vcd_num_proj (--vcd-num-proj)", t.vcd_num_proj, 1, 4096)
    for name in ("num_frames", "height", "width"):
        val = getattr(t, name)
        if val is not None:
            hi = limits.max_frames if name == "num_frames" else limits.max_side
            v.whole(f"tune.{name}", val, 1, hi)
    v.seed("tune.seed (--seed)", t.seed)
    v.choice("preset (--preset)", cfg.preset, PRESETS)
    check_step_cache(cfg.step_cache)


PRESETS = ("", "paper")


def with_preset(cfg: I2VTuneJobConfig, bb) -> I2VTuneJobConfig:
    """The config with the backbone's paper setting applied (``preset="paper"``)."""
    import dataclasses

    from ..errors import InputError

    if cfg.preset != "paper":
        return cfg
    paper = getattr(bb, "paper", None)
    if not paper:
        raise InputError(f"The VCD paper tuned Open-Sora and Wan2.1 only; there is no paper "
                         f"preset for {bb.name}. Drop --preset or use a Wan2.1 I2V model.")
    return dataclasses.replace(cfg, tune=dataclasses.replace(cfg.tune, **paper))


def paper_tune(cfg: I2VTuneJobConfig):
    """The tune settings in effect: the paper's Wan setting under ``preset="paper"``."""
    t = cfg.tune
    if cfg.preset == "paper":
        from ..pipelines.i2v.backbones import backbone_kind

        if backbone_kind(cfg.model, cfg.backbone) == "wan":
            import dataclasses

            from ..pipelines.i2v.wan import PAPER

            t = dataclasses.replace(t, **PAPER)
    return t


def estimate(cfg: I2VTuneJobConfig, device="cpu", calibration_dir=None, probe=None,
             rate: Optional[float] = None) -> dict:
    """Seconds of a VCD reward tune: ``steps`` reward steps (``inference_steps`` denoising
    steps each, the last ``grad_steps`` with gradients, a decode of ``decode_frames`` frames
    and VCD, measured per reward step by an earlier reward tune of this model on this device),
    the probe samples (every ``eval_every`` steps and at the start and end: ``inference_steps``
    denoising steps each) and the A/B (two videos + their VCD), from the per-step speeds of
    jobs/i2v_ab.py, scaled by the machine's load now (``rate``). Before a first run measured
    the model: the backbone's own figures (i2v_ab.figures: Wan's FLOPs and counted
    activations; labelled uncalibrated). Returns {"seconds", "low", "high", "how", "load",
    "parts", "step_seconds", "peak_gib", "frames", "height", "width"}."""
    from .. import calibration as cal
    from .estimates import finish, rate_now, worst
    from .i2v_ab import step_unit

    rate = rate_now(device, rate)
    t = paper_tune(cfg)
    f = figures(cfg.model, cfg.backbone, t.num_frames, t.height, t.width, t.inference_steps,
                device, tune=t)
    extra = {"peak_gib": round(max(f["step_gib"], f["sample_gib"]), 1), "frames": f["frames"],
             "height": f["height"], "width": f["width"]}
    shape = (t.num_frames or 0, t.width or 0, t.height or 0)
    reward, how_r, load = cal.lookup_unit(calibration_dir, device,
                                          f"i2v-reward:{cfg.backbone}:{cfg.model}", shape, rate)
    step, how_s, _ = cal.lookup_unit(calibration_dir, device,
                                     step_unit(cfg.model, cfg.backbone), shape, rate)
    probes = (t.steps // t.eval_every if t.eval_every else 0) + 2
    if reward is None:  # nothing measured yet: the backbone's figures
        parts = {"reward_s": t.steps * f["step_s"], "probes_s": probes * f["sample_s"],
                 "ab_s": 2 * f["sample_s"]}
        return finish(parts, f["how"], 1.0, step_seconds=round(f["step_s"], 2), **extra)
    sample = t.inference_steps * (step or reward / max(1, t.inference_steps))
    parts = {"reward_s": t.steps * reward, "probes_s": probes * sample, "ab_s": 2 * sample}
    return finish(parts, worst([how_r, how_s if step is not None else how_r]), load,
                  step_seconds=round(reward, 2), **extra)


def estimate_line(est: dict, device="cpu") -> str:
    from .estimates import line

    return line(est, device, ["reward steps", "probe samples", "A/B"])


def run(cfg: I2VTuneJobConfig, ctx) -> I2VTuneOutcome:
    import dataclasses

    import torch

    from ..io import read_image, write_mp4
    from ..methods.vcd import VCD
    from ..pipelines.i2v.backbones import check_i2v_memory
    from ..pipelines.i2v.base import aspect_note
    from ..pipelines.i2v.tune import ab_sample, tune_i2v
    from ..run_context import RunContext
    from .eval import vcd_encoder

    from .estimates import announce

    announce(ctx, estimate, estimate_line, cfg)
    device = torch.device(ctx.device)
    bb = open_backbone(cfg, ctx)
    cfg = with_preset(cfg, bb)
    t = cfg.tune
    # before a run is recorded: a refusal leaves nothing
    n, h, w = bb.check(t.num_frames, t.height, t.width)
    images = [read_image(p) for p in cfg.images]
    note = aspect_note(images[0].shape[:2], h, w)
    check_i2v_memory(bb, t.num_frames, t.height, t.width, tune=True)
    out = ctx.run_folder("i2v-tune")
    out.mkdir(parents=True, exist_ok=True)
    enc_name, enc = vcd_encoder(t.encoder, ctx.cache, device)
    t = dataclasses.replace(t, encoder=enc_name)
    run_id = ctx.open_run("i2v_tune", out, dataclasses.replace(cfg, tune=t), seed=t.seed)
    vcd_fn = VCD(enc, size=t.vcd_size, num_proj=t.vcd_num_proj)
    log = tune_i2v(bb, images, t, prompts=cfg.prompts or None, vcd_fn=vcd_fn,
                   run=RunContext.of(ctx), out=out)
    _record_reward(ctx, cfg, log)
    prompt: Optional[str] = cfg.prompts[0] if cfg.prompts else None
    base, tuned = ab_sample(bb, images[0], seed=t.seed, steps=t.inference_steps,
                            num_frames=t.num_frames, height=t.height, width=t.width,
                            prompt=prompt)
    with torch.no_grad():
        scores = vcd_fn(base, images[0]), vcd_fn(tuned, images[0])
    vb = write_mp4(base, out / "ab_base.mp4", cfg.fps)
    vt = write_mp4(tuned, out / "ab_tuned.mp4", cfg.fps)
    for kind, name in (("delta", "lora.safetensors"), ("json", "tune_log.json")):
        ctx.add_artifact(run_id, kind, out / name)
    ctx.add_artifact(run_id, "mp4", vb)
    ctx.add_artifact(run_id, "mp4", vt)
    ctx.add_metrics(run_id, video={"vcd_base": float(scores[0].mean),
                                   "vcd_tuned": float(scores[1].mean)})
    ctx.finish_run(run_id)
    return I2VTuneOutcome(run_id, out, out / "lora.safetensors", log, base, tuned, vb, vt,
                          scores, note)


def _record_reward(ctx, cfg: I2VTuneJobConfig, log) -> None:
    """Seconds per reward step of this tune (its probe samples shared out), for the estimate."""
    from .. import calibration as cal
    from .. import loadfactor
    from .estimates import calibration_dir

    t = cfg.tune
    if not log.step or not log.seconds:
        return
    try:
        cal.record_unit(calibration_dir(ctx), ctx.device, f"i2v-reward:{cfg.backbone}:{cfg.model}",
                        (t.num_frames or 0, t.width or 0, t.height or 0),
                        log.seconds / len(log.step),
                        loadfactor.rate(ctx.device, busy_s=log.seconds))
    except OSError:
        pass
