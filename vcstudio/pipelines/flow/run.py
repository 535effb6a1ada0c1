"""One-shot LoRA tuning of a flow-matching video DiT (Wan2.1 T2V) on a clip, written to a run
folder as the SD tune writes one (runs/folder.py), and that run opened again for an edit.

The run folder: ``config.yaml`` (the TuneConfig, with the frames and size actually used),
``meta.json`` (``backbone: wan``, the base model and its fingerprint, the clip hash, versions,
device, seed, status, notes), ``source.mp4``, ``clip-latents.safetensors`` (the clip's
normalised VAE latents), ``losses.json`` and ``delta.safetensors``: the LoRA alone in diffusers'
LoRA layout (``transformer.`` keys + ``lora_adapter_metadata``), so
``WanPipeline.load_lora_weights(RUN/delta.safetensors)`` loads it. The loss, the sigma sampling
and the optimizer are pipelines/flow/tune.py's (rectified flow: || v(x_s, s) - (eps - x0) ||^2).
``cfg.method`` adds its DiT terms (methods/dit.py: DCT's consistency losses, APLA's VGT,
hyper-loss and discriminator); a method with modules of its own (APLA) saves them as
``method.safetensors`` beside the delta, and :func:`load_flow_run` installs them again, so the
VGT perturbs every sampling step of an edit as it did in tuning.

The tune measures itself (vcstudio/calibration.py): seconds per training step, the fixed cost
before the first, and from its previews one transformer pass and one decode, keyed by device,
model and method, so the next estimate of this model is calibrated (jobs/flow_estimates.py).

Checkpoints: every ``checkpoint_every`` steps ``checkpoint.safetensors`` (the LoRA, AdamW's
moments, the noise generator: pipelines/flow/tune.py ``training_state``) and the delta of that
step (a usable delta: an edit can start from it). Stop (cancel) ends after the current step with
both written, status ``stopped``. Tuning again into a folder that holds a checkpoint resumes from
it (``vcstudio resume JOB``, a restarted app, the next call of a time-limited GPU:
``step_budget``), the same steps as an uninterrupted tune; a finished tune removes it.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ...config import TuneConfig, check_prompt, to_dict
from ...errors import InputError
from ...progress import Event
from ...run_context import RunContext
from ...runs.folder import RunFolder, new_run_dir, versions
from ...io.atomic import write_json
from ...settings import check

CLIP_LATENTS = "clip-latents.safetensors"
METHOD_MODULES = "method.safetensors"  # a method's own trained modules (APLA's VGT): runs.py


def _delta_config(cfg: TuneConfig, fingerprint: str) -> dict:
    """The run config the delta carries (RunFolder checks config.yaml against it)."""
    return {**to_dict(cfg), "base_fingerprint": fingerprint}


def _open_flow_run(run_dir, cfg: TuneConfig, frames: np.ndarray, fingerprint: str, r, bb,
                   notes: list, method):
    """The tune's run folder -> (RunFolder, the resume state or None): a checkpoint of the same
    clip resumes, a finished run is refused; the config, the source clip and meta.json are
    written before the first step."""
    from ...io import clip_hash, write_mp4
    from ...models.delta import load_tensors
    from ...models.family import resolved

    rf = RunFolder(Path(run_dir) if run_dir else new_run_dir())
    rf.path.mkdir(parents=True, exist_ok=True)
    resume = None
    if rf.checkpoint_path.is_file():
        if rf.meta().get("clip_hash") not in (None, clip_hash(frames)):
            raise InputError(f"{rf.path} holds a checkpoint for a different clip; use a new "
                             "--out.")
        resume = load_tensors(rf.checkpoint_path)[0]
    elif rf.delta_path.is_file():
        raise InputError(f"{rf.path} already holds a tuned run; tune into a new --out.")
    rf.save_config(cfg)
    write_mp4(frames, rf.source_path)
    rf.update_meta(clip_hash=clip_hash(frames), base_model=resolved(cfg.model),
                   base_fingerprint=fingerprint,
                   embedded_model=False, backbone=r.name, backbone_name=bb.name,
                   versions=versions(), device=str(bb.device), seed=cfg.seed, status="running",
                   n_frames=int(frames.shape[0]), height=int(frames.shape[1]),
                   width=int(frames.shape[2]), method=cfg.method,
                   inversion_prompt=cfg.inversion_prompt, notes=notes,
                   method_summary=method.summary())
    return rf, resume


def tune_flow(cfg: TuneConfig, run_dir: str | Path | None = None, *,
              run: RunContext = RunContext(), frames: Optional[np.ndarray] = None,
              on_checkpoint: Optional[Callable[[Path, int], None]] = None, limits=None,
              step_budget: Optional[int] = None, calibration_dir=None):
    """LoRA-tune ``cfg.model`` (a Wan2.1 T2V folder or hub id) on ``cfg.data``'s clip into a run
    folder -> pipelines.tune.loop.TuneResult. ``run``: progress, the cancel token polled between
    steps, the model cache the frozen parts load through and the device (None: CUDA where
    present). ``frames`` (uint8 F, H, W, 3, already 4k + 1 and of a valid size) replaces
    reading the clip. The measured speeds go to ``calibration_dir`` (default: the data
    folder)."""
    from ... import loadfactor
    from ...methods.registry import get_flow_method
    from ...methods.dit import module_tensors
    from ...models.delta import save_tensors
    from ...models.family import backbone_family, flow_fingerprint, load_flow_backbone, rules
    from .clip import prepare_clip, read_flow_clip
    from .tune import FlowTuneConfig, tune_lora
    from ..tune.loop import TuneResult

    check_prompt(cfg.data.prompt, "source prompt", hint="describe the clip, e.g. 'a man is skiing'")
    check(cfg, "steps", limits)
    check(cfg, "lr", limits)
    t0, progress, cancel = time.time(), run.progress, run.cancel
    r = rules(backbone_family(cfg.model))
    if frames is None:  # read and fit the clip before the (slow) model load: fail fast
        frames, data, notes = read_flow_clip(cfg.data, r, limits)
    else:
        frames, data, notes = prepare_clip(np.asarray(frames), cfg.data, r)
    cfg = dataclasses.replace(cfg, data=data)
    method = get_flow_method(cfg)  # its settings checked before the (slow) model load
    notes = list(notes) + method.notes()
    for n in notes:
        progress(Event(0, 1, n, stage="load"))
    progress(Event(0, 1, "loading the model", stage="load"))
    bb = load_flow_backbone(cfg.model, run.device, cfg.mixed_precision, run.cache)
    window = loadfactor.Window(bb.device)  # the machine's load while this tune runs
    fingerprint = flow_fingerprint(bb)
    rf, resume = _open_flow_run(run_dir, cfg, frames, fingerprint, r, bb, notes, method)
    fcfg = FlowTuneConfig(steps=cfg.steps, lr=cfg.lr, lora_rank=cfg.lora_rank,
                          weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
                          gradient_checkpointing=cfg.gradient_checkpointing, seed=cfg.seed)
    progress(Event(0, 1, "encoding the clip and the prompt", stage="load"))
    latents = bb.encode_clip(frames)
    save_tensors(rf.path / CLIP_LATENTS, {"latents": latents})
    meta_cfg = _delta_config(cfg, fingerprint)

    def save_delta() -> None:
        """The LoRA (diffusers' layout) and the method's own modules beside it."""
        bb.save_lora(rf.delta_path, meta_cfg)
        mods = module_tensors(method)
        if mods:
            save_tensors(rf.path / METHOD_MODULES, mods, {"method": cfg.method})

    def checkpoint(res, step: int, delta: bool = True) -> None:
        """The resume state of ``step`` first, then its delta and the losses."""
        save_tensors(rf.checkpoint_path, res.state(), {"step": step})
        if delta:
            save_delta()
        write_json(rf.path / "losses.json", res.losses)
        rf.update_meta(steps_done=step)
        if on_checkpoint is not None:
            on_checkpoint(rf.checkpoint_path, step)

    # the preview's prompts, encoded before the tune frees the text encoder (then cached)
    cond, uncond = bb.encode_prompts([cfg.data.prompt, ""]).split(1)
    preview_noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(
        int(cfg.seed))).to(latents)

    timed: dict[str, list[float]] = {"pass": [], "decode": []}

    def after_step(step: int, res) -> None:
        if cfg.preview_every and (step % cfg.preview_every == 0 or step == cfg.steps):
            progress(Event(step, cfg.steps, f"preview at step {step}", stage="tune",
                           preview=preview(bb, preview_noise, cond, uncond, cfg.preview_steps,
                                           r.guidance, timed)))
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps:
            checkpoint(res, step)

    start = int(resume["step"]) if resume is not None else 0
    if resume is not None:
        progress(Event(start, cfg.steps, f"resuming from step {start}", stage="tune"))
    overhead_s = time.time() - t0
    try:
        res = tune_lora(bb, frames, cfg.data.prompt, fcfg, progress, cancel, latents=latents,
                        after_step=after_step, resume=resume, losses=rf.losses(),
                        step_budget=step_budget, method=method)
    except torch.OutOfMemoryError:
        from ...errors import OutOfMemoryError

        raise OutOfMemoryError(
            f"Out of device memory tuning {frames.shape[0]} frames at {frames.shape[2]}x"
            f"{frames.shape[1]}. Use fewer frames (--frames) or a smaller --size.") from None
    done = res.losses[-1]["step"] if res.losses else 0
    _record_speeds(calibration_dir, bb.device, cfg, frames.shape, res.step_times, overhead_s,
                   timed, window.rate())
    if res.paused:  # a time-limited call ended: the next call resumes from the checkpoint
        checkpoint(res, done, delta=False)
        return TuneResult(rf.path, res.losses, time.time() - t0, done, frames, cfg.steps,
                          paused=True)
    stopped = done < cfg.steps
    if stopped and done > start:  # the stop's state: resumable, and its delta editable
        checkpoint(res, done)
    elif not stopped:
        save_delta()
        rf.checkpoint_path.unlink(missing_ok=True)
    write_json(rf.path / "losses.json", res.losses)
    method.finish(rf.path, res.losses)  # e.g. DCT's clws_alpha.png
    rf.update_meta(status="stopped" if stopped else "done", steps_done=done,
                   seconds=time.time() - t0, method_summary=method.summary())
    return TuneResult(rf.path, res.losses, time.time() - t0, done, frames, cfg.steps, stopped)


@torch.no_grad()
def preview(backbone, noise: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
            steps: int, guidance: float, timed: Optional[dict] = None) -> np.ndarray:
    """What the LoRA makes of the tuning prompt so far: ``steps`` Euler steps from fixed noise
    with classifier-free guidance (pipelines/flow/ode.py ``sample``), every frame decoded -> uint8
    (F, H, W, 3). ``timed`` collects the seconds of one transformer pass ("pass") and of the
    decode ("decode")."""
    from ...config import guided_passes
    from ...device import synchronize
    from .ode import sample
    from ..i2v.base import to_uint8

    steps = max(1, int(steps))
    t = time.perf_counter()
    z = sample(backbone, noise, cond, steps, uncond=uncond, guidance=guidance)
    synchronize(backbone.device)
    t_sample = time.perf_counter() - t
    frames = to_uint8(backbone.decode(z))
    synchronize(backbone.device)
    if timed is not None:
        timed["pass"].append(t_sample / (steps * guided_passes(guidance)))
        timed["decode"].append(time.perf_counter() - t - t_sample)
    return frames


def _record_speeds(folder, device, cfg: TuneConfig, shape, step_times: list[float],
                   overhead_s: float, timed: dict, rate: float) -> None:
    """A tune's speeds into the calibration (vcstudio/calibration.py): the training step
    (the first one, which warms kernels up, left out after three), the overhead before it, one
    pass and one decode from the previews, keyed by device, model and method at the clip's
    frames and size."""
    from ... import calibration as cal

    if not step_times:
        return
    ts = step_times[1:] if len(step_times) > 3 else step_times
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    f, h, w = int(shape[0]), int(shape[1]), int(shape[2])
    pass_s, decode_s = mean(timed["pass"]), mean(timed["decode"])
    try:
        cal.record(folder, device, cfg.model, cfg.method, cal.Speed(
            f, w, h, mean(ts), sample_step_s=pass_s, overhead_s=overhead_s, decode_s=decode_s,
            rate=rate))
    except OSError:  # a read-only data folder: estimates stay uncalibrated
        return
    from ...models.family import resolved

    cal.record_flow(folder, device, resolved(cfg.model), (f, w, h), pass_s, decode_s, rate)


@dataclasses.dataclass
class FlowRun:
    """A tuned flow run opened for editing: the backbone with the run's LoRA, its config,
    meta and clip latents."""

    run: RunFolder
    cfg: TuneConfig
    meta: dict
    backbone: object
    latents: torch.Tensor


def load_flow_run(run_dir: str | Path, device=None, model: Optional[str] = None,
                  cache=None) -> FlowRun:
    """Open a tuned flow run: its base (``model`` overrides the recorded one; the weights'
    fingerprint must match), the LoRA delta loaded, the clip latents."""
    from ...models.delta import load_tensors
    from ...models.family import flow_fingerprint, load_flow_backbone

    rf = RunFolder(Path(run_dir))
    cfg, meta = rf.config(), rf.meta()
    if not rf.delta_path.is_file():
        raise InputError(f"The run {rf.path} has no delta.safetensors (stopped before its first "
                         "step?); tune again.")
    base = model or meta.get("base_model") or cfg.model
    bb = load_flow_backbone(base, device, cfg.mixed_precision, cache)
    was = meta.get("base_fingerprint")
    if was and flow_fingerprint(bb) != was:
        raise InputError(f"The run {rf.path.name} was tuned on other weights than {base} "
                         "(fingerprints differ); edit it on the base it was tuned on "
                         f"({meta.get('base_model')}).")
    bb.load_lora(rf.delta_path)
    if (rf.path / METHOD_MODULES).is_file():  # APLA's VGT: it perturbs every sampling step
        from ...methods.dit import load_module_tensors
        from ...methods.registry import get_flow_method

        method = get_flow_method(cfg)
        with torch.random.fork_rng(devices=[]):  # its init is overwritten: keep the RNG
            method.setup(bb, None, bb.device)
        load_module_tensors(method, load_tensors(rf.path / METHOD_MODULES, bb.device)[0])
    latents = load_tensors(rf.path / CLIP_LATENTS, bb.device)[0]["latents"]
    return FlowRun(rf, cfg, meta, bb, latents)


__all__ = ["CLIP_LATENTS", "FlowRun", "load_flow_run", "tune_flow"]
