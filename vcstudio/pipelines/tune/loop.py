"""One-shot tuning of the inflated model on one clip (Tune-A-Video Sec. 4.1, + DCT / APLA hooks).

The clip latents and the prompt embedding are computed ONCE and cached; each step draws DDPM
noise and a random timestep and minimises the epsilon (or v) MSE plus whatever the method adds.
AdamW (fused on CUDA), bf16 autocast on CUDA, gradient checkpointing, SDPA attention, gradient
clipping, resumable checkpoints, previews and cancellation between steps.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ...config import TuneConfig, check_prompt
from ...device import pick_device, precision_for
from ...errors import CancelledError, DiskFullError, InputError, OutOfMemoryError
from ...io.atomic import is_disk_full
from ...io import clip_hash, write_mp4
from ...methods.base import StepState, TuneMethod
from ...models.delta import load_tensors, save_tensors
from ...models.diffusion_math import add_noise, alphas_cumprod, training_target
from ...models.family import backbone_family
from ...models.inflate import VideoDenoiser
from ...models.loading import BaseModel, load_base
from ...calibration import format_seconds
from ...progress import Event
from ...run_context import RunContext
from ...models.encode import (decode_latents, encode_prompts, encode_video, frames_to_unit,
                             tensor_to_frames)
from ...runs.folder import RunFolder, new_run_dir, versions
from ...io.atomic import write_json
from ..edit.sample import denoise
from .validation import validation_due, write_validation_samples
from ...config import inverts_after_tuning
from ..edit.tuned import (TunedModel, apply_delta, init_from_run, inversion_latents, inversion_text,
                         load_tuned, read_delta, save_delta, tuned_on_base)
from ..edit.video_model import TEMPORAL_ROUTES, build_video_model  # noqa: F401 (re-exported)




@dataclass
class TuneResult:
    run_dir: Path
    losses: list[dict]
    seconds: float
    steps: int  # steps done
    frames: np.ndarray
    total: int = 0  # steps asked for
    stopped: bool = False  # cancelled: the delta of step ``steps`` is saved, and a checkpoint
    paused: bool = False  # ``step_budget`` used up: only the checkpoint of ``steps`` is saved


def resolve_size(cfg: TuneConfig, native_size: int, clip_hw: tuple[int, int]) -> TuneConfig:
    """Width and height given: as they are. Otherwise the clip's aspect decides (the app's
    rule, the CLI's --size): the long side is ``data.size`` (0: the model's native size), the
    other the nearest multiple of 8 keeping the aspect; one side given: the other follows it."""
    from ...io import default_size

    d = cfg.data
    if d.width > 0 and d.height > 0:
        return cfg
    h, w = clip_hw
    if d.width > 0:  # the height follows the given width
        size = d.width if w >= h else int(round(d.width * h / w))
    elif d.height > 0:
        size = d.height if h >= w else int(round(d.height * w / h))
    else:
        size = d.size or native_size
    width, height = default_size((h, w), size)
    d = dataclasses.replace(d, width=d.width or width, height=d.height or height)
    return dataclasses.replace(cfg, data=d)


def fit_note(clip_hw: tuple[int, int], d) -> Optional[str]:
    """What fitting the clip to width x height does to it, when it is not a plain resize (the
    aspects differ by over 2%): cropped or padded, and where."""
    h, w = clip_hw
    if abs((w / h) / (d.width / d.height) - 1) <= 0.02:
        return None
    how = "cropped" if d.resize == "crop" else "padded"
    return (f"the clip ({w}x{h}) is {how} to {d.width}x{d.height} ({d.crop}); give --size "
            "alone to keep its aspect")


def load_clip_frames(raw: np.ndarray, width: int, height: int, resize: str,
                     crop: str = "center") -> np.ndarray:
    from ...io import fit_frames  # the frame preview's path too: it shows what is tuned on

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
    step = int(meta["step"])
    return step, [r for r in rf.losses() if r.get("step", 0) <= step]


def check_tune_memory(cfg: TuneConfig, base: BaseModel, device) -> None:
    """Refuse a tune whose estimated peak (vcstudio/memory.py, at this model's size) exceeds
    the free memory, naming the settings that lower it; before anything is allocated."""
    from ... import memory
    from ...methods.registry import cost

    d = cfg.data
    gib = memory.tune_gib(d.n_frames, d.height, d.width, cost(cfg).gib,
                          cfg.gradient_checkpointing, memory.model_scale(base.unet))
    memory.check(memory.Need(memory.frames_gib(d.n_frames, d.height, d.width, 3), gib,
                             f"tuning {d.n_frames} frames at {d.width}x{d.height}",
                             "data.n_frames (--frames) or data.width/height (--width/--height)"),
                 device)


def train_step(model: VideoDenoiser, method: TuneMethod, base: BaseModel, cfg: TuneConfig,
               prec, opt, scaler, params, latents0: torch.Tensor, text_emb: torch.Tensor,
               real: torch.Tensor, ac: torch.Tensor, gen: torch.Generator, step: int) -> dict:
    """One optimisation step of the one-shot tune (Tune-A-Video Sec. 4.1 + the method's
    losses): DDPM noise at a random timestep, the denoising loss plus what the method adds,
    backward, clipping, the optimizer step. Returns the step's logs (the tune loop's, and the
    probe's timed steps: vcstudio/pipelines/tune/probe.py)."""
    device = latents0.device
    b = cfg.batch_size
    x0 = latents0.expand(b, -1, -1, -1, -1)
    noise = torch.randn(x0.shape, generator=gen, device=device)
    t = torch.randint(0, ac.shape[0], (b,), generator=gen, device=device)
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
    return logs


def tune(cfg: TuneConfig, run_dir: str | Path | None = None, *, run: RunContext = RunContext(),
         frames: Optional[np.ndarray] = None, invert: bool = True,
         base: Optional[BaseModel] = None,
         save_source: bool = True,
         on_checkpoint: Optional[Callable[[Path, int], None]] = None,
         calibration_dir: Optional[str | Path] = None,
         step_budget: Optional[int] = None) -> TuneResult:
    """Tune, save the delta and the DDIM inversion into a run folder, return its path.

    ``run`` carries the progress callback (load, tune and inversion events), the cancel token
    polled between steps, the model cache the base loads through and the device (None: CUDA
    where present).

    ``frames`` (uint8 F,H,W,3) replaces reading ``cfg.data.video_path``. Re-running on a folder
    with ``checkpoint.safetensors`` resumes from it. ``base`` skips loading (benchmarks).
    ``on_checkpoint(path, step)`` is told of every checkpoint written (the job records it).
    ``step_budget`` ends the call after at most that many steps from where it started (a
    ZeroGPU call is time-limited), never finishing (delta, inversion) even at the last step:
    the checkpoint is saved and the result says ``paused``; calling again on the same folder
    continues exactly where it paused (same optimizer, RNG and method state), and a call
    without a budget finishes.

    Timing: each step, preview and inversion step is measured; progress events carry the ETA
    (``Event.eta``), previews are spaced so they cost at most ~10% of the tuning time
    (:func:`~vcstudio.calibration.preview_cadence`, from the measured preview and step times), and
    the speeds are recorded in ``calibration_dir`` (default: the data folder) for the estimates.

    Cancelling stops cleanly: the state of the last finished step k is saved as a checkpoint
    (resume continues from it) AND as a usable delta with the clip latents (edit from it; the
    inversion is made on the first edit), meta.json says ``stopped``, and the result has
    ``stopped=True, steps=k``.
    """
    _validate(cfg)
    run = run.with_(device=run.torch_device() or pick_device())
    t0 = time.time()
    cfg, frames, base, notes = _clip_and_base(cfg, frames, base, run)
    tuning = _Tuning(cfg, frames, base, notes, run_dir, run, save_source, on_checkpoint,
                     calibration_dir, t0)
    try:
        for step in range(tuning.start, cfg.steps):
            if run.cancel is not None and run.cancel.cancelled:
                return tuning.stop(step)
            if step_budget is not None and step - tuning.start >= step_budget:
                return tuning.pause(step)
            if tuning.step(step):  # stopped during a validation sample
                return tuning.stop(step + 1)
    except torch.OutOfMemoryError:
        raise OutOfMemoryError(
            f"Out of device memory tuning {frames.shape[0]} frames at {frames.shape[2]}x"
            f"{frames.shape[1]}. Use fewer frames (--frames) or a smaller --size.") from None
    finally:
        tuning.model.control = None
    if step_budget is not None:  # a budgeted call never finishes: the next call (none) does
        return tuning.pause(cfg.steps)
    return tuning.finish(invert)


def _clip_and_base(cfg: TuneConfig, frames: Optional[np.ndarray], base: Optional[BaseModel],
                   run: RunContext):
    """The tune's set-up before its run folder: the clip read and checked before the (slow)
    model load (fail fast), the base loaded, the sides resolved from the clip's aspect, memory
    checked, the clip fitted -> (cfg, frames, base, notes). ``run.device`` is resolved."""
    progress, device = run.progress, run.device
    prec = precision_for(device, cfg.mixed_precision)
    d = cfg.data
    if frames is None:
        if not d.video_path:
            raise InputError("No video given: pass --video PATH.")
        from ...io import read_video

        raw = read_video(d.video_path, d.start, d.stride, d.n_frames)
    progress(Event(0, 1, "loading the model", stage="load"))
    if base is None:
        base = load_base(cfg.model or None, device, prec.frozen_dtype, run.cache)
    notes = []
    if frames is None:
        cfg = resolve_size(cfg, base.native_size, raw.shape[1:3])
        note = fit_note(raw.shape[1:3], cfg.data)
        if note:
            notes.append(note)
            progress(Event(0, 1, note, stage="load"))
    else:
        cfg = resolve_size(cfg, base.native_size, frames.shape[1:3])
    check_tune_memory(cfg, base, device)
    if frames is None:
        d = cfg.data
        frames = load_clip_frames(raw, d.width, d.height, d.resize, d.crop)
    return cfg, frames, base, notes


class _Tuning:
    """One tune's state between its set-up (the run folder, the model with the method's
    parts, the optimizer, the cached clip latents and prompt, a checkpoint resumed), its steps
    (:meth:`step`) and its end (:meth:`finish`, or :meth:`stop` / :meth:`pause`)."""

    def __init__(self, cfg: TuneConfig, frames: np.ndarray, base: BaseModel, notes: list,
                 run_dir, run: RunContext, save_source: bool,
                 on_checkpoint: Optional[Callable[[Path, int], None]], calibration_dir,
                 t0: float) -> None:
        # ``run.device`` is resolved (tune picked it)
        progress, device = run.progress, run.device
        self.frames, self.base, self.run = frames, base, run
        self.progress, self.cancel = run.progress, run.cancel
        self.on_checkpoint, self.t0 = on_checkpoint, t0
        self.prec = prec = precision_for(device, cfg.mixed_precision)
        self.rf = rf = RunFolder(Path(run_dir) if run_dir else new_run_dir())
        rf.path.mkdir(parents=True, exist_ok=True)
        resume = rf.checkpoint_path.is_file()
        if resume and rf.meta().get("clip_hash") not in (None, clip_hash(frames)):
            raise InputError(f"{rf.path} holds a checkpoint for a different clip; use a new "
                             "--out.")
        if resume and rf.config_path.is_file():
            # a checkpoint continues with the architecture it was tuned with (a run from before
            # these options has per-frame GroupNorm and frame positions)
            was = rf.config()
            cfg = dataclasses.replace(cfg, groupnorm=was.groupnorm,
                                      frame_positions=was.frame_positions)
        self.cfg = cfg
        rf.save_config(cfg)
        if save_source:  # a viewable copy; the exact clip is kept as latents
            write_mp4(frames, rf.source_path)
        rf.update_meta(clip_hash=clip_hash(frames), base_model=base.model_id,
                       base_fingerprint=base.fingerprint, embedded_model=base.is_embedded,
                       versions=versions(), device=str(device), seed=cfg.seed, status="running",
                       n_frames=int(frames.shape[0]), height=int(frames.shape[1]),
                       width=int(frames.shape[2]), method=cfg.method,
                       backbone=backbone_family(base.model_id))
        rf.update_meta(inversion_prompt=cfg.inversion_prompt,  # "" = empty (TAV), "source", text
                       notes=notes)  # e.g. the clip was cropped to another aspect

        torch.manual_seed(cfg.seed)
        self.model, self.method, names = model, method, _ = build_video_model(base, cfg, prec)
        if cfg.init_from and not resume:
            init_from_run(model, cfg.init_from, base)
        if cfg.gradient_checkpointing:
            model.unet.enable_gradient_checkpointing()
        model.train()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = _optimizer(self.params, cfg, device)
        self.scaler = torch.amp.GradScaler("cuda") if prec.use_grad_scaler else None
        # cached once: the clip latents, the prompt embedding and the real frames in [0, 1]
        self.latents0 = encode_video(base, frames)
        self.text_emb = encode_prompts(base, [cfg.data.prompt])
        self.real = frames_to_unit(frames, device)
        self.ac = alphas_cumprod(base.scheduler_config).to(device)
        self.gen = torch.Generator(device).manual_seed(cfg.seed)
        if cfg.control:  # frozen conditions of the tuned clip while tuning (seed 001: T2I-Adapter)
            from ..edit.structure import build_control

            progress(Event(0, 1, "structure conditions", stage="control"))
            model.control = build_control(TunedModel(base, model, method, cfg, prec, rf),
                                          cfg.control, int(frames.shape[0]),
                                          int(frames.shape[2]), int(frames.shape[1]),
                                          clip=frames, cache=run.cache)
            # removed (tune's finally) before the model is saved or handed on
        self.start, self.losses = 0, []
        if resume:
            self.start, self.losses = _load_checkpoint(rf, model, self.opt, method, self.gen)
        self.kept = self.start if resume else None  # the newest checkpoint on disk
        self.clock = _TuneClock(cfg, calibration_dir, device, self.start, frames.shape,
                                time.time() - t0)
        info = method.summary()
        if info:
            rf.update_meta(method_summary=info)
        n_params = sum(p.numel() for p in self.params)
        progress(Event(self.start, cfg.steps,
                       f"tuning {len(names)} tensors ({n_params / 1e6:.2f}M values)"
                       + "".join(f"; {k} {v}" for k, v in info.items()
                                 if k.endswith("_params")), stage="tune"))

    def tuned(self) -> "TunedModel":
        return TunedModel(self.base, self.model, self.method, self.cfg, self.prec, self.rf)

    def step(self, step: int) -> bool:
        """Training step ``step`` (its preview, event, validation samples and checkpoint when
        due); True when it was stopped during its validation samples."""
        cfg, clock = self.cfg, self.clock
        t_step = time.perf_counter()
        logs = train_step(self.model, self.method, self.base, cfg, self.prec, self.opt,
                          self.scaler, self.params, self.latents0, self.text_emb, self.real,
                          self.ac, self.gen, step)
        self.losses.append({"step": step + 1, **logs})
        clock.step_done(time.perf_counter() - t_step)
        preview = None
        if clock.preview_due(step + 1):
            t_prev = time.perf_counter()
            preview = _preview(self.model, self.base, cfg, self.text_emb, self.prec)
            self.model.train()
            clock.preview_done(step + 1, time.perf_counter() - t_prev)
        eta = clock.eta(step + 1)
        self.progress(Event(step + 1, cfg.steps,
                            f"step {step + 1}/{cfg.steps}, ETA {format_seconds(eta)}",
                            preview=preview, eta=eta,
                            metrics={"loss": logs["loss"], **{k: v for k, v in logs.items()
                                                              if k not in ("step", "t")}},
                            stage="tune"))
        if step + 1 < cfg.steps and validation_due(cfg, step + 1):
            try:  # Tune-A-Video's validation_steps: samples with the current weights
                with torch.no_grad():
                    write_validation_samples(self.tuned(), step + 1, self.run, self.latents0)
            except CancelledError:
                return True
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 \
                and step + 1 < cfg.steps:
            self.checkpoint(step + 1)
        return False

    def checkpoint(self, k: int) -> None:
        _save_checkpoint(self.rf, self.model, self.opt, self.method, k, self.gen, self.losses)
        self.kept = k
        if self.on_checkpoint is not None:
            self.on_checkpoint(self.rf.checkpoint_path, k)

    def finish_files(self, k: int, status: Optional[str]) -> None:
        """The run's files for step ``k``: a checkpoint first, so that a disk that fills up
        while the delta is written costs only a resume; then the delta and the clip latents
        (each written atomically: nothing half-written stays)."""
        rf = self.rf
        try:
            self.checkpoint(k)
            self.model.eval()
            rf.update_meta(method_summary=self.method.summary())
            save_delta(rf, self.model, self.cfg, self.base, self.frames)
            save_tensors(rf.path / "clip-latents.safetensors", {"latents": self.latents0})
            write_json(rf.path / "losses.json", self.losses)
            if status is not None:
                rf.update_meta(status=status, steps_done=k, seconds=time.time() - self.t0)
        except Exception as e:
            if not is_disk_full(e):
                raise
            raise _disk_full(rf, self.model, self.latents0, self.kept) from None

    def result(self, k: int, **kw) -> TuneResult:
        return TuneResult(self.rf.path, self.losses, time.time() - self.t0, k, self.frames,
                          self.cfg.steps, **kw)

    def stop(self, k: int) -> TuneResult:
        self.clock.record()
        self.finish_files(k, "stopped")
        return self.result(k, stopped=True)

    def pause(self, k: int) -> TuneResult:
        self.checkpoint(k)
        return self.result(k, paused=True)

    def _stopped_after_tuning(self) -> TuneResult:
        """Tuned in full, stopped in the inversion or the final samples (the first edit makes
        the inversion)."""
        self.rf.update_meta(status="stopped", steps_done=self.cfg.steps,
                            seconds=time.time() - self.t0)
        return self.result(self.cfg.steps, stopped=True)

    def finish(self, invert: bool) -> TuneResult:
        """The delta and the clip latents, the method's end, the inversion and the final
        validation samples; meta.json says done."""
        cfg, rf = self.cfg, self.rf
        self.finish_files(cfg.steps, None)  # method_summary now with what loaded in training
        self.method.finish(rf.path, self.losses)
        if rf.checkpoint_path.is_file():
            rf.checkpoint_path.unlink()
        tuned = self.tuned()
        if invert and inverts_after_tuning(cfg):
            try:
                t_inv = time.perf_counter()
                inversion_latents(tuned, cfg.inversion_steps, self.progress, self.cancel,
                                  latents0=self.latents0)
                self.clock.inversion_done(time.perf_counter() - t_inv, cfg.inversion_steps)
            except CancelledError:
                self.clock.record()
                return self._stopped_after_tuning()
        self.clock.record()
        if validation_due(cfg, cfg.steps):
            try:
                with torch.no_grad():
                    write_validation_samples(tuned, cfg.steps, self.run, self.latents0,
                                             final=True)
            except CancelledError:
                return self._stopped_after_tuning()
        rf.update_meta(status="done", steps_done=cfg.steps, seconds=time.time() - self.t0,
                       timing=self.clock.summary())
        return self.result(cfg.steps)


def _disk_full(rf: RunFolder, model: VideoDenoiser, latents0: torch.Tensor,
               kept: Optional[int]) -> DiskFullError:
    """The one-line message of a tune whose run files did not fit on the disk: how much they
    need (checkpoint: the trained tensors and AdamW's two moments; the delta; the latents),
    how much is free, and what was kept to resume from."""
    from ...io.atomic import free_bytes

    trained = sum(t.numel() * t.element_size() for t in model.trainable_state().values())
    need = 4 * trained + 2 * latents0.numel() * latents0.element_size()
    free = free_bytes(rf.path)
    where = f"{need / 2**20:.0f} MB" + (f", {free / 2**20:.0f} MB free there" if free >= 0
                                       else "")
    if kept is not None:
        todo = (f"Tuning step {kept} is kept as a checkpoint: free some space, then resume this "
                "tune (Resume in the app, or `vcstudio resume JOB`).")
    else:
        todo = "No checkpoint could be kept: free some space and tune again."
    return DiskFullError(f"Out of disk space writing the run to {rf.path} (it needs about "
                         f"{where}). {todo}")


class _TuneClock:
    """Measures a tune as it runs: the ETA of every progress event, the preview cadence (at
    most ~10% of the tuning time on previews) and, at the end, the calibration record (with the
    machine's mean rate while it ran: vcstudio/loadfactor.py)."""

    def __init__(self, cfg: TuneConfig, folder, device, start: int, shape, overhead_s: float):
        from ... import calibration as cal
        from ... import loadfactor

        self.cal, self.cfg, self.folder, self.device = cal, cfg, folder, device
        self.lf = loadfactor
        self.frames, self.height, self.width = int(shape[0]), int(shape[1]), int(shape[2])
        self.overhead_s = overhead_s
        self.start = start
        self.step_times: list[float] = []
        self.preview_times: list[float] = []
        self.inv_step_s = 0.0
        self.window = loadfactor.Window(device)  # the machine's load while this tune runs
        known = cal.lookup(folder, device, cfg.model, cfg.method, self.frames, self.width,
                           self.height, loadfactor.rate(device, busy_s=overhead_s)).speed
        self.known = known
        # the first preview: the first multiple of preview_every after ``start`` (a resumed
        # tune too), never pushed out by the cost rule; the last step always has one
        self.cadence = cfg.preview_every
        self.next_preview = cal.first_preview(start, cfg.preview_every, cfg.steps)

    @property
    def rate(self) -> float:
        """The machine's mean rate while this tune ran (0 = does not apply: a GPU)."""
        return self.window.rate()

    @property
    def step_s(self) -> float:
        if self.step_times:  # the first step also warms up kernels/allocator: skip it after 3
            ts = self.step_times[1:] if len(self.step_times) > 3 else self.step_times
            return sum(ts) / len(ts)
        return self.known.train_step_s if self.known else 0.0

    @property
    def preview_s(self) -> float:
        if self.preview_times:
            return sum(self.preview_times) / len(self.preview_times)
        if self.known:
            return self.cal.preview_seconds(self.known, self.cfg.preview_steps)
        return self.cal.prior_preview_s(self.cfg.preview_steps, self.step_s)

    def _replan(self, after: int) -> None:
        """After a preview at ``after``: the next one far enough on that the previews after
        the first cost at most ~10% of the tuning time (measured preview and step times),
        on the preview_every grid, and only where it leaves that many steps before the last
        step's own preview (which is always made)."""
        self.cadence = self.cal.preview_cadence(self.cfg.preview_every, self.preview_s,
                                                self.step_s)
        self.next_preview = self.cal.next_preview(after, self.cfg.preview_every, self.cadence,
                                                  self.cfg.steps)

    def step_done(self, seconds: float) -> None:
        self.step_times.append(seconds)

    def preview_due(self, step: int) -> bool:
        """A preview after ``step``: the first one (at preview_every), the budgeted ones
        between, and the last step's, whenever previews are asked for."""
        if not self.cfg.preview_every:
            return False
        return step >= self.cfg.steps or (self.next_preview is not None
                                          and step >= self.next_preview)

    def preview_done(self, step: int, seconds: float) -> None:
        self.preview_times.append(seconds)
        self._replan(step)

    def inversion_done(self, seconds: float, steps: int) -> None:
        if steps > 0 and seconds > 0:
            self.inv_step_s = seconds / steps

    def eta(self, step: int) -> float:
        left = self.cfg.steps - step
        n_prev = 0
        if self.cfg.preview_every and step < self.cfg.steps:
            n_prev = self.cal.previews_left(step, self.next_preview, self.cfg.preview_every,
                                            self.cadence, self.cfg.steps)
        inv = self.inv_step_s or (self.known.sample_step_s if self.known and
                                  self.known.sample_step_s else
                                  self.cal.PRIOR_SAMPLE_STEP_SHARE * self.step_s)
        return left * self.step_s + n_prev * self.preview_s + self.cfg.inversion_steps * inv

    def summary(self) -> dict:
        return {"train_step_s": round(self.step_s, 6), "overhead_s": round(self.overhead_s, 3),
                "previews": len(self.preview_times),
                "preview_s": round(self.preview_s, 6) if self.preview_times else None,
                "preview_every": self.cadence, "inversion_step_s": round(self.inv_step_s, 6),
                "rate": round(self.rate, 2)}

    def record(self) -> None:
        if not self.step_times:
            return
        try:
            self.cal.record(self.folder, self.device, self.cfg.model, self.cfg.method,
                            self.cal.Speed(
                                self.frames, self.width, self.height, self.step_s,
                                self.inv_step_s, (sum(self.preview_times) / len(
                                    self.preview_times)) if self.preview_times else 0.0,
                                self.cfg.preview_steps if self.preview_times else 0,
                                self.overhead_s, rate=self.rate))
        except OSError:  # a read-only data folder: estimates stay uncalibrated
            pass


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
