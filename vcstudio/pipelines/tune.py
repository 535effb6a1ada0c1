"""One-shot tuning of the inflated model on one clip (Tune-A-Video Sec. 4.1, + DCT / APLA hooks).

The clip latents and the prompt embedding are computed ONCE and cached; each step draws DDPM
noise and a random timestep and minimises the epsilon (or v) MSE plus whatever the method adds.
AdamW (fused on CUDA), bf16 autocast on CUDA, gradient checkpointing, SDPA attention, gradient
clipping, resumable checkpoints, previews and cancellation between steps.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..config import TuneConfig, check_prompt, to_dict
from ..device import Precision, pick_device, precision_for
from ..errors import CancelledError, InputError, OutOfMemoryError
from ..io import clip_hash, write_mp4
from ..methods.base import StepState, TuneMethod
from ..methods.registry import get_method
from ..models.cache import ModelCache, default_cache
from ..models.delta import load_tensors, save_tensors
from ..models.diffusion_math import add_noise, alphas_cumprod, training_target
from ..models.inflate import VideoDenoiser
from ..models.loading import BaseModel, load_base
from ..progress import CancelToken, Event, ProgressFn, null_progress
from .encode import decode_latents, encode_prompts, encode_video, tensor_to_frames
from .invert import ddim_invert
from .runs import RunFolder, new_run_dir, versions, write_json
from .sample import denoise
from .validation import validation_due, write_validation_samples


TEMPORAL_ROUTES = ("vcstudio", "animatediff")  # TuneConfig.temporal (models/inflate.py)


@dataclass
class TunedModel:
    """A base model + its inflated, tuned video denoiser, ready to sample."""

    base: BaseModel
    model: VideoDenoiser
    method: TuneMethod
    cfg: TuneConfig
    precision: Precision
    run: Optional[RunFolder] = None


@dataclass
class TuneResult:
    run_dir: Path
    losses: list[dict]
    seconds: float
    steps: int  # steps done
    frames: np.ndarray
    total: int = 0  # steps asked for
    stopped: bool = False  # cancelled: the delta of step ``steps`` is saved, and a checkpoint


def build_video_model(base: BaseModel, cfg: TuneConfig, precision: Precision,
                      ) -> tuple[VideoDenoiser, TuneMethod, list[str]]:
    """Inflate a copy of the base U-Net (the config's temporal route: vcstudio's temporal
    attention, or AnimateDiff's motion modules through diffusers' UNetMotionModel), let the
    method install its modules, pick trainables."""
    if cfg.temporal not in TEMPORAL_ROUTES:
        raise InputError(f"Unknown temporal layer type {cfg.temporal!r}; use one of "
                         f"{', '.join(TEMPORAL_ROUTES)}.")
    adapter = None
    if cfg.temporal == "animatediff":
        from ..models.motion import load_motion_adapter

        adapter = load_motion_adapter(cfg.motion_adapter, base.unet)
    elif cfg.motion_adapter:
        raise InputError("A motion adapter needs the AnimateDiff route: add --temporal animatediff.")
    model = VideoDenoiser(base.unet, copy_unet=True, motion_adapter=adapter,
                          groupnorm=cfg.groupnorm, frame_positions=bool(cfg.frame_positions))
    method = get_method(cfg)
    method.setup(model, base, precision.device)
    model.to(precision.device)
    names = model.mark_trainable(tuple(cfg.trainable) + method.trainable_patterns())
    if not names:
        raise InputError(f"No parameter matches the trainable patterns {list(cfg.trainable)}.")
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    if precision.autocast_dtype is not None:
        model.cast_frozen(precision.frozen_dtype)
    c = {True: "yes", False: "no"}.get(cfg.compile, cfg.compile)  # YAML reads yes/no as bools
    if c == "yes" or (c == "auto" and precision.device.type == "cuda"):
        model.compile_unet()
    return model, method, names


def _resolve_size(cfg: TuneConfig, base: BaseModel) -> TuneConfig:
    d = cfg.data
    if d.width <= 0 or d.height <= 0:
        n = base.native_size
        d = dataclasses.replace(d, width=d.width if d.width > 0 else n,
                                height=d.height if d.height > 0 else n)
    return dataclasses.replace(cfg, data=d)


def load_clip_frames(raw: np.ndarray, width: int, height: int, resize: str,
                     crop: str = "center") -> np.ndarray:
    from ..io import fit_frames  # the frame preview's path too: it shows what is tuned on

    return fit_frames(raw, width, height, resize, crop)


def _validate(cfg: TuneConfig) -> None:
    check_prompt(cfg.data.prompt, "source prompt", hint="describe the clip, e.g. 'a man is skiing'")
    if cfg.steps < 1:
        raise InputError(f"Steps must be >= 1, got {cfg.steps}.")
    if not 0 < cfg.lr < 1:
        raise InputError(f"Learning rate {cfg.lr} is out of range (0, 1).")


def _optimizer(params, cfg: TuneConfig, device: torch.device):
    kw = dict(lr=cfg.lr, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay, eps=1e-8)
    if device.type == "cuda":
        kw["fused"] = True
    return torch.optim.AdamW(params, **kw)


def _save_checkpoint(rf: RunFolder, model: VideoDenoiser, opt, method: TuneMethod, step: int,
                     gen: torch.Generator, losses: list) -> None:
    tensors = {f"model/{k}": v for k, v in model.trainable_state().items()}
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    for i, p in enumerate(params):
        st = opt.state.get(p, {})
        for k in ("exp_avg", "exp_avg_sq", "step"):
            if k in st:
                tensors[f"opt/{names[i]}/{k}"] = torch.as_tensor(st[k]).float()
    tensors.update({f"method/{k}": v for k, v in method.state_dict().items()})
    tensors["rng"] = gen.get_state()
    save_tensors(rf.checkpoint_path, tensors, {"step": step})
    write_json(rf.path / "losses.json", losses)


def _load_checkpoint(rf: RunFolder, model: VideoDenoiser, opt, method: TuneMethod,
                     gen: torch.Generator) -> tuple[int, list]:
    tensors, meta = load_tensors(rf.checkpoint_path)
    named = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in tensors.items():
            if k.startswith("model/"):
                named[k[6:]].copy_(v)
    for name, p in named.items():
        if not p.requires_grad:
            continue
        st = {}
        for k in ("exp_avg", "exp_avg_sq", "step"):
            key = f"opt/{name}/{k}"
            if key in tensors:
                st[k] = tensors[key].to(p.device)
        if st:
            st["step"] = st["step"].cpu() if "step" in st else torch.tensor(0.0)
            opt.state[p] = st
    method.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("method/")})
    gen.set_state(tensors["rng"])
    losses = []
    lp = rf.path / "losses.json"
    if lp.is_file():
        losses = json.loads(lp.read_text())
    return int(meta["step"]), losses


def tune(cfg: TuneConfig, run_dir: str | Path | None = None, progress: ProgressFn = null_progress,
         cancel: Optional[CancelToken] = None, cache: ModelCache = default_cache,
         device: Optional[torch.device] = None, frames: Optional[np.ndarray] = None,
         invert: bool = True, base: Optional[BaseModel] = None,
         save_source: bool = True,
         on_checkpoint: Optional[Callable[[Path, int], None]] = None) -> TuneResult:
    """Tune, save the delta and the DDIM inversion into a run folder, return its path.

    ``frames`` (uint8 F,H,W,3) replaces reading ``cfg.data.video_path``. Re-running on a folder
    with ``checkpoint.safetensors`` resumes from it. ``base`` skips loading (benchmarks).
    ``on_checkpoint(path, step)`` is told of every checkpoint written (the job records it).

    Cancelling stops cleanly: the state of the last finished step k is saved as a checkpoint
    (resume continues from it) AND as a usable delta with the clip latents (edit from it; the
    inversion is made on the first edit), meta.json says ``stopped``, and the result has
    ``stopped=True, steps=k``.
    """
    _validate(cfg)
    device = device or pick_device()
    prec = precision_for(device, cfg.mixed_precision)
    t0 = time.time()
    d = cfg.data
    if frames is None:  # read + validate the clip before the (slow) model load: fail fast
        if not d.video_path:
            raise InputError("No video given: pass --video PATH.")
        from ..io import read_video

        raw = read_video(d.video_path, d.start, d.stride, d.n_frames)
    progress(Event(0, 1, "loading the model", stage="load"))
    if base is None:
        base = load_base(cfg.model or None, device, prec.frozen_dtype, cache)
    cfg = _resolve_size(cfg, base)
    if frames is None:
        d = cfg.data
        frames = load_clip_frames(raw, d.width, d.height, d.resize, d.crop)
    rf = RunFolder(Path(run_dir) if run_dir else new_run_dir())
    rf.path.mkdir(parents=True, exist_ok=True)
    resume = rf.checkpoint_path.is_file()
    if resume and rf.meta().get("clip_hash") not in (None, clip_hash(frames)):
        raise InputError(f"{rf.path} holds a checkpoint for a different clip; use a new --out.")
    if resume and rf.config_path.is_file():
        # a checkpoint continues with the architecture it was tuned with (a run from before
        # these options has per-frame GroupNorm and frame positions)
        was = rf.config()
        cfg = dataclasses.replace(cfg, groupnorm=was.groupnorm, frame_positions=was.frame_positions)
    rf.save_config(cfg)
    if save_source:  # a viewable copy; the exact clip is kept as latents
        write_mp4(frames, rf.source_path)
    rf.update_meta(clip_hash=clip_hash(frames), base_model=base.model_id,
                   base_fingerprint=base.fingerprint, embedded_model=base.is_embedded,
                   versions=versions(), device=str(device), seed=cfg.seed, status="running",
                   n_frames=int(frames.shape[0]), height=int(frames.shape[1]),
                   width=int(frames.shape[2]), method=cfg.method)

    torch.manual_seed(cfg.seed)
    model, method, names = build_video_model(base, cfg, prec)
    if cfg.init_from and not resume:
        init_from_run(model, cfg.init_from, base)
    if cfg.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(params, cfg, device)
    scaler = torch.amp.GradScaler("cuda") if prec.use_grad_scaler else None

    # cached once: the clip latents, the prompt embedding and the real frames in [0, 1]
    latents0 = encode_video(base, frames)
    text_emb = encode_prompts(base, [cfg.data.prompt])
    real = torch.from_numpy(frames).to(device).permute(0, 3, 1, 2).float() / 255.0
    ac = alphas_cumprod(base.scheduler_config).to(device)
    n_train = ac.shape[0]
    gen = torch.Generator(device).manual_seed(cfg.seed)

    start, losses = 0, []
    if resume:
        start, losses = _load_checkpoint(rf, model, opt, method, gen)
    info = method.summary()
    if info:
        rf.update_meta(method_summary=info)
    n_params = sum(p.numel() for p in params)
    progress(Event(start, cfg.steps, f"tuning {len(names)} tensors ({n_params / 1e6:.2f}M values)"
                   + "".join(f"; {k} {v}" for k, v in info.items() if k.endswith("_params")),
                   stage="tune"))
    step = start

    def stop(k: int) -> TuneResult:
        _save_checkpoint(rf, model, opt, method, k, gen, losses)
        if on_checkpoint is not None:
            on_checkpoint(rf.checkpoint_path, k)
        model.eval()
        save_delta(rf, model, cfg, base, frames)
        save_tensors(rf.path / "clip-latents.safetensors", {"latents": latents0})
        rf.update_meta(status="stopped", steps_done=k, seconds=time.time() - t0)
        return TuneResult(rf.path, losses, time.time() - t0, k, frames, cfg.steps, True)

    try:
        for step in range(start, cfg.steps):
            if cancel is not None and cancel.cancelled:
                return stop(step)
            b = cfg.batch_size
            x0 = latents0.expand(b, -1, -1, -1, -1)
            noise = torch.randn(x0.shape, generator=gen, device=device)
            t = torch.randint(0, n_train, (b,), generator=gen, device=device)
            a = ac[t]
            noisy = add_noise(x0, noise, a)
            with prec.autocast():
                pred = model(noisy, t, text_emb.expand(b, -1, -1))
            s = StepState(step=step, total=cfg.steps, model=model, base=base, latents=x0,
                          noise=noise, noisy=noisy, timesteps=t, alpha_bar=a, text_emb=text_emb,
                          pred=pred, target=training_target(base.prediction_type, x0, noise, a),
                          frames=real, prediction_type=base.prediction_type, generator=gen)
            loss = method.denoise_loss(s)
            logs = {"loss": float(loss.detach())}
            total = loss
            for k, v in method.extra_losses(s).items():
                total = total + v
                logs[k] = float(v.detach())
            if scaler is not None:
                scaler.scale(total).backward()
                scaler.unscale_(opt)
            else:
                total.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            opt.zero_grad(set_to_none=True)
            logs.update(method.after_step(s))
            logs["total"] = float(total.detach())
            logs["grad_norm"] = float(gnorm)
            logs["t"] = int(t[0])
            losses.append({"step": step + 1, **logs})
            preview = None
            if cfg.preview_every and (step + 1) % cfg.preview_every == 0:
                preview = _preview(model, base, cfg, text_emb, prec)
                model.train()
            progress(Event(step + 1, cfg.steps, f"step {step + 1}/{cfg.steps}", preview=preview,
                           metrics={"loss": logs["loss"], **{k: v for k, v in logs.items()
                                                             if k not in ("step", "t")}},
                           stage="tune"))
            if step + 1 < cfg.steps and validation_due(cfg, step + 1):
                try:  # Tune-A-Video's validation_steps: samples with the current weights
                    with torch.no_grad():
                        write_validation_samples(TunedModel(base, model, method, cfg, prec, rf),
                                                 step + 1, progress, cancel, latents0)
                except CancelledError:
                    return stop(step + 1)
            if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 \
                    and step + 1 < cfg.steps:
                _save_checkpoint(rf, model, opt, method, step + 1, gen, losses)
                if on_checkpoint is not None:
                    on_checkpoint(rf.checkpoint_path, step + 1)
    except torch.OutOfMemoryError:
        raise OutOfMemoryError(
            f"Out of device memory tuning {frames.shape[0]} frames at {frames.shape[2]}x"
            f"{frames.shape[1]}. Use fewer frames (--frames) or a smaller --size.") from None

    model.eval()
    rf.update_meta(method_summary=method.summary())  # now with what loaded during training
    save_delta(rf, model, cfg, base, frames)
    save_tensors(rf.path / "clip-latents.safetensors", {"latents": latents0})
    write_json(rf.path / "losses.json", losses)
    method.finish(rf.path, losses)
    if rf.checkpoint_path.is_file():
        rf.checkpoint_path.unlink()
    tuned = TunedModel(base, model, method, cfg, prec, rf)
    if invert:
        try:
            inversion_latents(tuned, cfg.inversion_steps, progress, cancel, latents0=latents0)
        except CancelledError:  # tuned in full; the first edit makes the inversion
            rf.update_meta(status="stopped", steps_done=cfg.steps, seconds=time.time() - t0)
            return TuneResult(rf.path, losses, time.time() - t0, cfg.steps, frames, cfg.steps,
                              True)
    if validation_due(cfg, cfg.steps):
        try:
            with torch.no_grad():
                write_validation_samples(tuned, cfg.steps, progress, cancel, latents0, final=True)
        except CancelledError:  # tuned in full: the samples are what is missing
            rf.update_meta(status="stopped", steps_done=cfg.steps, seconds=time.time() - t0)
            return TuneResult(rf.path, losses, time.time() - t0, cfg.steps, frames, cfg.steps,
                              True)
    rf.update_meta(status="done", steps_done=cfg.steps, seconds=time.time() - t0)
    return TuneResult(rf.path, losses, time.time() - t0, cfg.steps, frames, cfg.steps)


@torch.no_grad()
def _preview(model, base, cfg: TuneConfig, text_emb, prec) -> np.ndarray:
    model.eval()
    d = cfg.data
    g = torch.Generator(base.device).manual_seed(cfg.seed)
    shape = (1, 4, d.n_frames, d.height // base.vae_scale, d.width // base.vae_scale)
    lat = torch.randn(shape, generator=g, device=base.device)
    uncond = encode_prompts(base, [""])
    lat = denoise(model, base.scheduler_config, lat, text_emb, uncond, 7.5, cfg.preview_steps,
                  autocast=prec.autocast())
    return tensor_to_frames(decode_latents(base, lat))


def read_delta(rf: RunFolder, base: BaseModel) -> dict[str, torch.Tensor]:
    """A run's tuned tensors, refused unless they were tuned on this very base model."""
    tensors, meta = load_tensors(rf.delta_path, base.device)
    if meta.get("base_fingerprint") != base.fingerprint:
        raise InputError(
            f"The run {rf.path} was tuned on a different base model ({meta.get('base_model')}, "
            f"fingerprint {meta.get('base_fingerprint')}) than {base.model_id} "
            f"({base.fingerprint}). Use it with --model pointing at that model.")
    return tensors


def apply_delta(model: VideoDenoiser, tensors: dict[str, torch.Tensor], rf: RunFolder) -> None:
    """Copy tuned tensors into ``model``; names or shapes it lacks (another method, VGT size or
    adapter ratio) are a clear error, not a traceback."""
    named = dict(model.named_parameters())
    bad = sorted(k for k, v in tensors.items() if k not in named or named[k].shape != v.shape)
    if bad:
        raise InputError(f"The run {rf.path} holds {len(bad)} tensors this model has not got in "
                         f"that shape (e.g. {bad[0]}); use the method and settings it was tuned "
                         "with.")
    with torch.no_grad():
        for k, v in tensors.items():
            named[k].copy_(v)


def init_from_run(model: VideoDenoiser, run_dir: str | Path, base: BaseModel) -> list[str]:
    """Start from another run's tuned tensors (combined tuning fine-tunes the separately tuned
    model D into D', seed 001 eq. 13). Its base fingerprint must match; returns the names set."""
    from .runs import open_run

    rf = open_run(run_dir)
    tensors = read_delta(rf, base)
    apply_delta(model, tensors, rf)
    return sorted(tensors)


def save_delta(rf: RunFolder, model: VideoDenoiser, cfg: TuneConfig, base: BaseModel,
               frames: np.ndarray) -> Path:
    """Only the trained tensors + what identifies base and clip (DESIGN: deltas)."""
    return save_tensors(rf.delta_path, model.trainable_state(),
                        {"base_fingerprint": base.fingerprint, "base_model": base.model_id,
                         "clip_hash": clip_hash(frames), "config": to_dict(cfg),
                         "format": "vcstudio-delta-1"})


def tuned_on_base(rf: RunFolder, base: BaseModel, precision: Precision) -> TunedModel:
    """The run's video model on an already loaded ``base`` (its fingerprint must match the one
    the delta was tuned on): build the model as the run's config says, copy the delta in."""
    cfg = rf.config()
    tensors = read_delta(rf, base)
    torch.manual_seed(cfg.seed)
    vm, method, names = build_video_model(base, cfg, precision)
    missing = set(names) - set(tensors)
    if missing:
        raise InputError(f"The delta in {rf.path} lacks {len(missing)} tensors the method "
                         f"needs (e.g. {sorted(missing)[0]}); it was saved by another version.")
    apply_delta(vm, tensors, rf)
    vm.eval()
    return TunedModel(base, vm, method, cfg, precision, rf)


def load_tuned(run_dir: str | Path, cache: ModelCache = default_cache,
               device: Optional[torch.device] = None, model: Optional[str] = None) -> TunedModel:
    """Base model + delta -> TunedModel (cached per run and device).

    The base weights' fingerprint must match the one the delta was tuned on.
    """
    from .runs import open_run

    rf = open_run(run_dir)
    cfg = rf.config()
    device = device or pick_device()
    prec = precision_for(device, cfg.mixed_precision)
    key = ("tuned", str(rf.path.resolve()), rf.delta_path.stat().st_mtime_ns, str(device))

    def factory() -> TunedModel:
        base = load_base(model or cfg.model or None, device, prec.frozen_dtype, cache)
        return tuned_on_base(rf, base, prec)

    return cache.get(key, factory)


def inversion_latents(tuned: TunedModel, steps: int, progress: ProgressFn = null_progress,
                      cancel: Optional[CancelToken] = None,
                      latents0: Optional[torch.Tensor] = None) -> torch.Tensor:
    """DDIM-inverted clip latents under the source prompt, cached in the run folder."""
    rf = tuned.run
    if rf is not None and rf.inversion_path(steps).is_file():
        return load_tensors(rf.inversion_path(steps), tuned.base.device)[0]["latents"]
    base = tuned.base
    if latents0 is None:
        # the exact clip latents saved at tuning time (the mp4 beside them is lossy)
        latents0 = load_tensors(rf.path / "clip-latents.safetensors", base.device)[0]["latents"]
    cond = encode_prompts(base, [tuned.cfg.data.prompt])
    inv = ddim_invert(tuned.model, base.scheduler_config, latents0, cond, steps, progress, cancel,
                      autocast=tuned.precision.autocast(),
                      fixed_point_iters=tuned.cfg.inversion_fixed_point)
    if rf is not None:
        save_tensors(rf.inversion_path(steps), {"latents": inv}, {"steps": steps})
    return inv
