"""The tune job: one-shot tuning of an inflated text-to-image model on one clip (Tune-A-Video,
DCT, APLA, their combination, combined fg/bg tuning), written to a run folder.

Config: :class:`~vcstudio.config.TuneConfig` itself (what ``vcstudio tune --config`` reads). The
run folder is the ``out`` it was submitted with, else a new one in the session's outputs or the
data folder. Recorded: the run with its full config, every checkpoint as it is written (so
``vcstudio resume`` and a restarted app continue from the last one), the delta and losses, the
final loss. Stop ends it cleanly: "Stopped at step k of N", the checkpoint of step k kept as a
usable delta (edit from it, resume it), status ``stopped``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Limits, TuneConfig
from ..errors import InputError
from . import validate as v

# Rough constants for a Stable-Diffusion-1.x-size U-Net (860 M parameters), per 512x512 frame,
# measured on nothing yet: replace with `vcstudio bench` numbers. A training step is forward +
# backward with gradient checkpointing; a sampling/inversion step is forward only (x2 for CFG).
# What a method adds on top (its modules, feature nets, decode graph, time) is the method's own
# (methods: ``cost``).
_SEC_PER_FRAME_STEP = {"cuda": 0.15, "mps": 1.5, "cpu": 25.0}  # Tune-A-Video: ~10 min/500 st.
_SAMPLE_STEP_SHARE = 0.35  # one DDIM inversion step, in training steps
_BASE_GIB = 3.3  # frozen SD parts in bf16 (~2.1) + trainable q/temporal params with AdamW (~1.2)
_ACT_GIB_PER_FRAME = {True: 0.9, False: 3.2}  # activations per 512^2 frame, by checkpointing


@dataclass
class TuneOutcome:
    """What a tune job returns (the UI shows it, the CLI prints it)."""

    run_id: str
    run_dir: Path
    steps: int  # steps done
    total: int  # steps asked for
    seconds: float
    losses: list[dict] = field(default_factory=list)
    stopped: bool = False
    message: str = ""


def validate(cfg: TuneConfig, limits: Limits) -> None:
    """One-line errors naming the setting and its range (every surface; nothing starts)."""
    from ..config import check_prompt
    from ..methods.registry import check_name

    d = cfg.data
    v.text("data.video_path (--video)", d.video_path, "give the clip to tune on")
    check_prompt(d.prompt, "source prompt", hint="describe the clip, e.g. 'a man is skiing'")
    v.whole("data.n_frames (--frames)", d.n_frames, 1, limits.max_frames)
    v.whole("data.stride (--stride)", d.stride, 1, limits.max_source_frames)
    v.whole("data.start (--start)", d.start, 0, limits.max_source_frames - 1)
    v.side("data.width (--width/--size)", d.width, limits, "the model's native size")
    v.side("data.height (--height/--size)", d.height, limits, "the model's native size")
    v.whole("steps (--steps)", cfg.steps, 1, limits.max_steps)
    v.number("lr (--lr)", cfg.lr, 0, 1, open_lo=True, open_hi=True)
    v.seed("seed (--seed)", cfg.seed)
    v.whole("batch_size", cfg.batch_size, 1, 64)
    v.whole("checkpoint_every (--checkpoint-every)", cfg.checkpoint_every, 0, None,
            " (0 = no checkpoints)")
    v.whole("preview_every", cfg.preview_every, 0, None, " (0 = no previews)")
    v.whole("preview_steps", cfg.preview_steps, 1, 1000)
    v.whole("inversion_steps", cfg.inversion_steps, 1, 1000)
    v.number("max_grad_norm", cfg.max_grad_norm, 0, math.inf, open_lo=True)
    check_name(cfg.method)
    val = cfg.validation
    for i, prompt in enumerate(val.prompts):
        check_prompt(prompt, f"validation prompt {i + 1}", hint="give the edit to sample")
    v.whole("validation.every (validation_steps)", val.every, 0, None, " (0 = at the end only)")
    v.whole("validation.steps (num_inference_steps)", val.steps, 1, 1000)
    v.number("validation.guidance (guidance_scale)", val.guidance, 0, 50)
    from ..config import GROUPNORM_MODES

    if cfg.groupnorm not in GROUPNORM_MODES:
        raise InputError(f"groupnorm must be one of {', '.join(GROUPNORM_MODES)} (clip = "
                         f"statistics over the clip's frames, as Tune-A-Video), got "
                         f"{cfg.groupnorm!r}.")


def estimate(cfg: TuneConfig, device: Any = "cpu", model_scale: float = 1.0) -> dict:
    """A rough memory/time estimate of one-shot tuning + inversion, from
    frames x latent pixels x steps with per-device constants, plus what the config's method
    parts cost (methods: ``cost``; apla+dct costs both, combined tuning its base method's).
    An estimate, not a promise: attention grows faster than linearly at large sizes, and the
    constants are not yet calibrated by ``vcstudio bench``. ``model_scale`` scales weights and
    compute for a model smaller or larger than SD 1.x (e.g. ~0.01 for the embedded model).

    Returns ``{"gib", "seconds", "device_gib", "fits"}``; the last two are ``None`` where the
    device memory is unknown (CPU)."""
    from ..methods.registry import cost

    dtype = str(device).split(":")[0]
    d = cfg.data
    units = d.n_frames * (d.width * d.height) / (512 * 512)  # 512^2-frame equivalents
    c = cost(cfg)
    gib = model_scale * (_BASE_GIB + c.gib
                         + units * _ACT_GIB_PER_FRAME[bool(cfg.gradient_checkpointing)])
    spf = _SEC_PER_FRAME_STEP.get(dtype, _SEC_PER_FRAME_STEP["cpu"]) * model_scale
    seconds = units * spf * (cfg.steps * c.time_factor
                             + cfg.inversion_steps * _SAMPLE_STEP_SHARE)
    device_gib = fits = None
    if dtype == "cuda":
        import torch

        if torch.cuda.is_available():
            idx = torch.device(str(device)).index or 0
            device_gib = torch.cuda.get_device_properties(idx).total_memory / 2**30
            fits = gib <= 0.92 * device_gib  # leave room for the CUDA context and fragmentation
    return {"gib": round(gib, 2), "seconds": round(seconds, 1), "device_gib": device_gib,
            "fits": fits}


def run_tune(cfg: TuneConfig, ctx, run_dir: Path | None = None, parent: str | None = None,
             label: str = "") -> TuneOutcome:
    """Tune into ``run_dir`` (default ``ctx.run_folder``), recording the run and its
    checkpoints through ``ctx``. Other jobs (compare, a sweep cell) call this too."""
    import torch

    from ..pipelines.tune import tune

    run_dir = Path(run_dir) if run_dir is not None else ctx.run_folder("tune")
    run_id = ctx.open_run("tune", run_dir, cfg, seed=cfg.seed, parent=parent, label=label)
    res = tune(cfg, run_dir, progress=ctx, cancel=ctx.cancel, cache=ctx.cache,
               device=torch.device(ctx.device),
               on_checkpoint=lambda path, step: ctx.set_checkpoint(path, step))
    ctx.add_artifact(run_id, "delta", res.run_dir / "delta.safetensors")
    if (res.run_dir / "source.mp4").is_file():
        ctx.add_artifact(run_id, "mp4", res.run_dir / "source.mp4")
    if (res.run_dir / "losses.json").is_file():
        ctx.add_artifact(run_id, "json", res.run_dir / "losses.json")
    from ..pipelines.validation import sample_paths

    for gif in sample_paths(res.run_dir):  # Tune-A-Video's samples/sample-<step>/<prompt>.gif
        ctx.add_artifact(run_id, "gif", gif)
    last = res.losses[-1] if res.losses else {}
    if "loss" in last:
        ctx.add_metrics(run_id, video={"final_loss": float(last["loss"])})
    if res.stopped:
        msg = (f"Stopped at step {res.steps} of {res.total}; its checkpoint is saved as a usable "
               "delta: edit from it, or resume it.")
    else:
        ctx.finish_run(run_id)
        msg = f"Tuned {res.steps} steps in {res.seconds:.0f} s."
    return TuneOutcome(run_id, res.run_dir, res.steps, res.total or cfg.steps, res.seconds,
                       res.losses, res.stopped, msg)


def run(cfg: TuneConfig, ctx) -> TuneOutcome:
    return run_tune(cfg, ctx)
