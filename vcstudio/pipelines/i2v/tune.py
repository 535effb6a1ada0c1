"""VCD reward tuning of an image-to-video model (VCD paper eq. 3) and base-vs-tuned A/B.

    J(theta) = E_{X ~ p_theta(X | c)} [ R(X, c) ],   R = -VCD

Each step: sample a video from the current weights (LoRA on the denoiser's attention
projections), keeping the graph only through the last ``grad_steps`` denoising steps (truncated
backprop; the paper uses the final step only), decode a random subset of frames, loss = VCD of
those frames against the conditioning image with their true temporal weights, AdamW at a constant
learning rate (paper: 2e-4). Guardrails log VCD next to a fidelity score (CLIP image similarity
of the frames to the conditioning image) and the motion amount (mean optical-flow magnitude) of
a fixed probe sample, and warn when motion collapses toward a still image.
"""
from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ...models.encode import frames_to_unit
from ...config import sampling_steps
from ...errors import InputError
from ...methods.vcd import VCD, build_vcd, reward_projection_seed
from ...metrics.motion import motion_amount
from ...models.lora import add_lora, lora_disabled, lora_targets_for, save_lora
from ...progress import Event
from ...run_context import RunContext
from .backbones import sample_i2v
from .base import I2VBackbone, image_to_tensor, to_uint8

log = logging.getLogger(__name__)


@dataclass
class I2VTuneConfig:
    steps: int = 100  # optimizer steps
    lora_rank: int = 16
    lora_alpha: Optional[float] = None  # None = rank (scale 1)
    lora_targets: Optional[tuple[str, ...]] = None  # None = the backbone's (models/lora.py)
    lr: float = 2e-4  # paper: AdamW, constant
    weight_decay: float = 1e-2
    num_frames: Optional[int] = None  # None = the model's own (SVD: 14, LTX: 121)
    height: Optional[int] = None
    width: Optional[int] = None
    # paper: 30 for its backbones
    inference_steps: int = sampling_steps(25, flag="--inference-steps")
    grad_steps: int = 1  # truncated backprop through the last k denoising steps (paper: 1)
    decode_frames: int = 2  # random subset of frames 2..N decoded per step
    encoder: str = "vgg19"  # VCD encoder; "efficientnet-lite0" works offline
    vcd_size: int = 224
    vcd_num_proj: int = 256
    # the VCD reward's sliced-Wasserstein projections: "redraw" = a fresh set every reward step
    # (as the Frequency Distribution Loss VCD builds on draws them; a fixed set pushes on the same
    # 256 directions every step), "fixed" = the metric's fixed-seed set. Probes always score
    # with the metric's.
    vcd_projections: str = "redraw"
    gradient_checkpointing: bool = True
    resample_noise: bool = True  # a fresh sample per step (eq. 3's expectation); False = fixed
    eval_every: int = 10  # guardrail probe every k steps (0 = only at start and end)
    motion_collapse: float = 0.25  # warn when probe motion < this x the base model's motion
    max_grad_norm: float = 1.0
    seed: int = 0


@dataclass
class TuneLog:
    step: list[int] = field(default_factory=list)
    vcd: list[float] = field(default_factory=list)
    projection_seed: list[Optional[int]] = field(default_factory=list)  # None = the metric's
    probe: list[dict] = field(default_factory=list)  # {"step", "vcd", "fidelity", "motion"}
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def probe_metrics(backbone: I2VBackbone, image: np.ndarray, vcd_fn: VCD, steps: int, seed: int,
                  num_frames=None, height=None, width=None,
                  prompt: Optional[str] = None) -> tuple[dict, np.ndarray]:
    """VCD, fidelity (mean CLIP cosine of frames to the image) and motion of one fixed sample."""
    frames = sample_i2v(backbone, image, num_frames, height, width, steps=steps, seed=seed,
                        prompt=prompt)
    with torch.no_grad():
        img_t = image_to_tensor(image, frames.shape[1], frames.shape[2])
        res = vcd_fn(frames, image=img_t)
        e_img = backbone.embed_images(img_t)
        e_frm = backbone.embed_images(frames_to_unit(frames))
        fid = torch.nn.functional.cosine_similarity(e_frm, e_img.expand_as(e_frm)).mean()
    return {"vcd": float(res.mean), "fidelity": float(fid), "motion": motion_amount(frames)}, frames


def tune_i2v(backbone: I2VBackbone, images: Sequence[np.ndarray], config: I2VTuneConfig,
             prompts: Optional[Sequence[str]] = None, vcd_fn: Optional[VCD] = None,
             *, run: RunContext = RunContext(), out: Optional[str | Path] = None) -> TuneLog:
    """Reward-tune LoRA weights of ``backbone.denoiser`` with VCD (eq. 3). Returns the log.
    ``run``: the progress callback (a "VCD reward" event per step) and the cancel token
    checked before every step (the backbone is built already, on its cache and device).

    ``images``: uint8 (H, W, 3) conditioning images, cycled over steps. ``prompts`` (one per
    image, or one for all) condition text-conditioned backbones (LTX-Video) and are recorded
    (SVD is conditioned on the image alone). With ``out`` the LoRA delta is written to
    ``out/lora.safetensors`` (diffusers' LoRA layout, with both configs; models/lora.py) and the
    log to ``out/tune_log.json``.
    """
    if not images:
        raise InputError("Give at least one conditioning image.")
    if config.steps < 1:
        raise InputError("Tuning needs at least 1 step.")
    if config.vcd_projections not in ("redraw", "fixed"):
        raise InputError(f"vcd_projections must be 'redraw' or 'fixed', got "
                         f"{config.vcd_projections!r}.")
    c = config
    vcd_fn = vcd_fn or build_vcd(c.encoder, size=c.vcd_size, num_proj=c.vcd_num_proj,
                                 device=getattr(backbone, "device", "cpu"))
    unet = backbone.denoiser
    prompts = list(prompts or [])
    if len(prompts) not in (0, 1, len(images)):
        raise InputError(f"Give one prompt per image ({len(images)}) or one for all, "
                         f"not {len(prompts)}.")

    def prompt_of(k: int) -> Optional[str]:
        return prompts[k % len(prompts)] if prompts else None

    probe_kw = dict(num_frames=c.num_frames, height=c.height, width=c.width, prompt=prompt_of(0))
    tlog = TuneLog()
    t0 = time.time()

    base_probe, _ = probe_metrics(backbone, images[0], vcd_fn, c.inference_steps, c.seed, **probe_kw)
    tlog.probe.append({"step": 0, **base_probe})

    targets = c.lora_targets or lora_targets_for(getattr(backbone, "name", ""))
    params = add_lora(unet, c.lora_rank, c.lora_alpha, targets)
    if c.gradient_checkpointing and hasattr(unet, "enable_gradient_checkpointing"):
        unet.enable_gradient_checkpointing()
    opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
    rng = random.Random(c.seed)
    conds: dict[int, object] = {}

    def check_motion(step: int, m: dict) -> None:
        if base_probe["motion"] > 1e-3 and m["motion"] < c.motion_collapse * base_probe["motion"]:
            msg = (f"step {step}: motion collapsed to {m['motion']:.3f} px/frame "
                   f"(base {base_probe['motion']:.3f}); the video is turning into a still image. "
                   "Stop earlier, lower the learning rate or decode later frames.")
            tlog.warnings.append(msg)
            log.warning(msg)

    for step in range(1, c.steps + 1):
        if run.cancel is not None:
            run.cancel.check()
        k = (step - 1) % len(images)
        noise_seed = c.seed + (step if c.resample_noise else 0)
        g = torch.Generator().manual_seed(noise_seed)
        with torch.no_grad():
            if k not in conds or c.resample_noise:
                conds[k] = backbone.encode(images[k], c.num_frames, c.height, c.width, generator=g,
                                           prompt=prompt_of(k))
        cond = conds[k]
        g = torch.Generator().manual_seed(noise_seed + 10_000)
        unet.train()
        lat = backbone.denoise(cond, c.inference_steps, generator=g, grad_steps=c.grad_steps)
        n = cond.num_frames
        subset = sorted(rng.sample(range(1, n), min(c.decode_frames, n - 1)))  # 0-based, skip x_1
        frames = backbone.decode(lat, subset, generator=g)
        pseed = reward_projection_seed(c.seed, step) if c.vcd_projections == "redraw" else None
        res = vcd_fn(frames, image=cond.image.detach(), positions=[i + 1 for i in subset],
                     n_frames=n, projection_seed=pseed)
        loss = res.mean
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if c.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
        opt.step()
        unet.eval()
        tlog.step.append(step)
        tlog.vcd.append(float(loss.detach()))
        tlog.projection_seed.append(pseed)
        metrics = {"vcd": tlog.vcd[-1]}
        preview = None
        if (c.eval_every and step % c.eval_every == 0) or step == c.steps:
            m, preview = probe_metrics(backbone, images[0], vcd_fn, c.inference_steps, c.seed,
                                       **probe_kw)
            tlog.probe.append({"step": step, **m})
            metrics.update({"probe_vcd": m["vcd"], "fidelity": m["fidelity"], "motion": m["motion"]})
            check_motion(step, m)
        run.progress(Event(step, c.steps, f"VCD reward step {step}/{c.steps}", preview=preview,
                       metrics=metrics, stage="i2v-tune"))

    tlog.seconds = time.time() - t0
    if out is not None:
        out = Path(out)
        run_cfg = {"tune": {**asdict(c), "lora_targets": list(targets)}, "prompts": prompts,
                   "backbone": getattr(backbone, "name", "?"),
                   "model": getattr(getattr(backbone, "parts", None), "source", "?"),
                   "vcd_encoder": vcd_fn.encoder.name, "vcd": vcd_fn.params}
        save_lora(out / "lora.safetensors", unet, run_cfg,
                  prefix=getattr(backbone, "denoiser_name", "unet"))
        (out / "tune_log.json").write_text(json.dumps(asdict(tlog), indent=1))
    return tlog


def ab_sample(backbone: I2VBackbone, image: np.ndarray, seed: int = 0, steps: int = 25,
              num_frames=None, height=None, width=None,
              prompt: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
    """(base, tuned) videos from the same image, prompt and seed: LoRA off, then on."""
    kw = dict(steps=steps, seed=seed, prompt=prompt)
    with lora_disabled(backbone.denoiser):
        base = sample_i2v(backbone, image, num_frames, height, width, **kw)
    tuned = sample_i2v(backbone, image, num_frames, height, width, **kw)
    return base, tuned


__all__ = ["I2VTuneConfig", "TuneLog", "ab_sample", "probe_metrics", "tune_i2v", "to_uint8"]
