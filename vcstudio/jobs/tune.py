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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..config import Limits, TuneConfig, inverts_after_tuning
from ..errors import InputError
from ..memory import tune_gib
from ..settings import check
from .. import validate as v

# Rough constants for a Stable-Diffusion-1.x-size U-Net (860 M parameters), per 512x512 frame,
# used only until a tune or a probe on this device measures the speed (vcstudio/calibration.py,
# vcstudio/pipelines/tune/probe.py). A training step is forward +
# backward with gradient checkpointing; a sampling/inversion step is forward only (x2 for CFG).
# What a method adds on top (its modules, feature nets, decode graph, time) is the method's own
# (methods: ``cost``).
_SEC_PER_FRAME_STEP = {"cuda": 0.15, "mps": 1.5, "cpu": 25.0}  # Tune-A-Video: ~10 min/500 st.
_SAMPLE_STEP_SHARE = 0.35  # one DDIM inversion step, in training steps
# memory: vcstudio/memory.py (the tune checks the same figure before it starts)
_SAMPLE_ACT_GIB_PER_FRAME = 0.25  # forward-only activations per 512^2 frame (no grad)
_FROZEN_GIB = 2.1  # the frozen SD parts in bf16 (sampling holds no optimizer state)


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
    paused: bool = False  # a ZeroGPU call's step budget ended it; the next call continues
    notes: list[str] = field(default_factory=list)  # e.g. "the clip ... is cropped to ..."


def validate(cfg: TuneConfig, limits: Limits) -> None:
    """One-line errors naming the setting and its range (every surface; nothing starts)."""
    from ..config import check_prompt
    from ..methods.registry import check_name

    d = cfg.data
    v.text("data.video_path (--video)", d.video_path, "give the clip to tune on")
    check_prompt(d.prompt, "source prompt", hint="describe the clip, e.g. 'a man is skiing'")
    for name in ("n_frames", "stride", "start"):
        check(d, name, limits, "data.")
    v.side("data.width (--width)", d.width, limits, "from --size and the clip's aspect")
    v.side("data.height (--height)", d.height, limits, "from --size and the clip's aspect")
    v.side("data.size (--size)", d.size, limits, "the model's native size")
    for name in ("steps", "lr", "seed", "batch_size", "checkpoint_every", "preview_every",
                 "preview_steps"):
        check(cfg, name, limits)
    check(cfg, "inversion_steps", limits, label="inversion_steps")
    v.check_inversion_prompt(cfg.inversion_prompt)
    check(cfg, "max_grad_norm", limits)
    check_name(cfg.method)
    check_family(cfg)
    from ..methods.registry import part_classes

    for cls in part_classes(cfg):  # each method's switches, as its section declares them
        for name in cls.switches if cls.config is not None else ():
            check(getattr(cfg, cls.name), name, limits, f"{cls.name}.")
    if cfg.control:
        from ..control import validate_controls

        validate_controls(cfg.control, "control (--control)")
    val = cfg.validation
    for i, prompt in enumerate(val.prompts):
        check_prompt(prompt, f"validation prompt {i + 1}", hint="give the edit to sample")
    for name in ("every", "steps", "guidance"):
        check(val, name, limits, "validation.")
    from ..settings import choices_of

    if cfg.groupnorm not in choices_of(cfg, "groupnorm"):
        raise InputError(f"groupnorm must be one of {', '.join(choices_of(cfg, 'groupnorm'))} "
                         "(clip = statistics over the clip's frames, as Tune-A-Video), got "
                         f"{cfg.groupnorm!r}.")


def check_family(cfg: TuneConfig) -> None:
    """The base model's family (models/family.py: its model_index.json) runs this method, and
    an explicit width/height is on the family's multiple (16 on Wan2.1): one-line errors."""
    from ..methods.registry import check_backbone
    from ..models.family import backbone_family, rules

    family = backbone_family(cfg.model)
    check_backbone(cfg.method, family)
    r = rules(family)
    if r.parameterization == "flow":
        from ..pipelines.flow.clip import flow_size

        d = cfg.data
        if d.width > 0 or d.height > 0:
            flow_size(d.width, d.height, d.size, (max(d.height, 1), max(d.width, 1)), r)
        if cfg.control:
            raise InputError(f"Structure conditions (--control) run on Stable Diffusion only; "
                             f"tune this {r.label} model without them.")
        check(cfg, "lora_rank")


def estimate(cfg: TuneConfig, device: Any = "cpu", model_scale: float = 1.0,
             calibration_dir: Any = None, probe: Optional[Callable] = None,
             rate: Optional[float] = None) -> dict:
    """Memory and time of tuning + its previews + the DDIM inversion + its validation
    samples, without waiting for the device (an estimate never waits for the device lock).

    Time: from the speeds measured on this device, model and method at this shape
    (:mod:`vcstudio.calibration`, in ``calibration_dir``, default the data folder): overhead +
    steps x step time + previews (at the cadence that keeps them under ~10% of tuning) x
    preview time + inversion steps x inversion step time + validation samples (steps x one
    pass, two under CFG, + a decode each). Where nothing was measured at this shape, ``probe``
    (vcstudio/pipelines/tune/probe.py's ``prober``: a few seconds of real steps) measures it first;
    without one (or where it cannot run) the nearest measured shape is scaled by frames x
    pixels ("scaled from FxWxH", a range), else per-device constants for a
    Stable-Diffusion-1.x-size U-Net (``model_scale`` scales them, e.g. ~0.02 for the embedded
    model), labelled "uncalibrated". On the CPU every measured time is scaled by the load
    factor (rate then / rate now, vcstudio/loadfactor.py; ``rate`` = the rate now, read when
    not given). Memory: frozen weights + trainables with AdamW + activations per frame, plus
    what the method's parts cost (methods: ``cost``).

    Returns ``{"gib", "seconds", "low", "high", "device_gib", "fits", "how", "load",
    "parts"}`` (jobs/estimates.py): ``how`` is "calibrated", "probed", "scaled from FxWxH" or
    "uncalibrated"; ``parts`` the seconds of each stage and the preview count; ``device_gib`` /
    ``fits`` are ``None`` where the device memory is unknown (CPU). ``seconds_per_step`` (a
    step with its share of previews) and ``seconds_inversion`` let a time-limited GPU
    (ZeroGPU) split the tune into calls."""
    from .. import calibration as cal
    from ..methods.registry import cost
    from ..models.family import backbone_family
    from .estimates import finish, rate_now

    if backbone_family(cfg.model) == "wan":  # a video DiT: calibrated, else its architecture
        from .flow_estimates import tune_estimate

        return tune_estimate(cfg, device, calibration_dir, rate)
    dtype = str(device).split(":")[0]
    d = cfg.data
    units = d.n_frames * (d.width * d.height) / (512 * 512)  # 512^2-frame equivalents
    c = cost(cfg)
    from ..control import control_cost

    # frozen conditions while tuning: a ControlNet runs forward (no grad) beside every step
    ctl = control_cost(cfg.control)
    gib = (tune_gib(d.n_frames, d.height, d.width, c.gib, cfg.gradient_checkpointing,
                    model_scale)
           + model_scale * (ctl["gib"] + units * _SAMPLE_ACT_GIB_PER_FRAME * ctl["unet_share"]))
    rate = rate_now(device, rate)
    found = cal.lookup(calibration_dir, device, cfg.model, cfg.method, d.n_frames, d.width,
                       d.height, rate)
    if not found.exact and probe is not None and d.width > 0 and d.height > 0:
        probe(cfg)  # measures and records this shape (or the nearest it can afford)
        found = cal.lookup(calibration_dir, device, cfg.model, cfg.method, d.n_frames,
                           d.width, d.height, rate)
    sp = found.speed
    decode_s = 0.0
    if sp is not None:
        step_s, inv_s, overhead = sp.train_step_s, sp.pass_s(), sp.overhead_s
        preview_s = cal.preview_seconds(sp, cfg.preview_steps)
        decode_s = sp.decode_or_prior()
    else:
        spf = _SEC_PER_FRAME_STEP.get(dtype, _SEC_PER_FRAME_STEP["cpu"]) * model_scale
        step_s = units * spf * c.time_factor
        inv_s = uncalibrated_pass_s(d.n_frames, d.width, d.height, device, model_scale)
        preview_s = cal.prior_preview_s(cfg.preview_steps, units * spf)
        overhead = 0.0
    step_s += inv_s * ctl["unet_share"]  # an inversion step ~ one U-Net forward pass
    every = cal.preview_cadence(cfg.preview_every, preview_s, step_s)
    n_prev = len(range(every, cfg.steps, every)) if every else 0  # none at the last step
    n_val, val_s = validation_cost(cfg, inv_s, decode_s)
    parts = {"overhead_s": overhead, "tune_s": cfg.steps * step_s, "previews": n_prev,
             "preview_every": every, "previews_s": n_prev * preview_s,
             "inversion_s": cfg.inversion_steps * inv_s * inverts_after_tuning(cfg),
             "validation_samples": n_val,
             "validation_s": val_s}
    device_gib = fits = None
    if dtype == "cuda":
        import torch

        if torch.cuda.is_available():
            idx = torch.device(str(device)).index or 0
            device_gib = torch.cuda.get_device_properties(idx).total_memory / 2**30
            fits = gib <= 0.92 * device_gib  # leave room for the CUDA context and fragmentation
    per_step = step_s + ((parts["previews_s"] + val_s) / cfg.steps if cfg.steps else 0.0)
    est = finish(parts, found.how if sp is not None else "uncalibrated", found.load,
                 gib=round(gib, 2), seconds_per_step=per_step,
                 seconds_inversion=parts["inversion_s"] + overhead, device_gib=device_gib,
                 fits=fits)
    est["seconds"] = round(est["seconds"], 1)
    return est


def uncalibrated_pass_s(frames: int, width: int, height: int, device: Any = "cpu",
                        model_scale: float = 1.0) -> float:
    """Seconds of one U-Net forward pass without gradients (an inversion or a sampling step
    without CFG) over ``frames`` frames at this size, from the per-device constants for an
    SD-1.x-size U-Net scaled by ``model_scale``: the figure used until a tune measures one."""
    spf = _SEC_PER_FRAME_STEP.get(str(device).split(":")[0], _SEC_PER_FRAME_STEP["cpu"])
    return frames * (width * height) / (512 * 512) * spf * model_scale * _SAMPLE_STEP_SHARE


def validation_cost(cfg: TuneConfig, sample_step_s: float,
                    decode_s: float = 0.0) -> tuple[int, float]:
    """(samples, seconds) of the tune's validation samples (Tune-A-Video's
    ``validation_steps``: every ``validation.every`` steps and at the end, one per prompt):
    each ``validation.steps`` sampling steps of one U-Net pass (two under CFG:
    config.guided_passes) and a decode (``decode_s``)."""
    from ..config import guided_passes

    v = cfg.validation
    if not v.prompts:
        return 0, 0.0
    rounds = (len(range(v.every, cfg.steps, v.every)) if v.every > 0 else 0) + 1
    n = rounds * len(v.prompts)
    return n, n * (v.steps * sample_step_s * guided_passes(v.guidance) + decode_s)


def estimate_line(est: dict, device: Any = "cpu", counts: Optional[list[str]] = None) -> str:
    """The tune's ``Estimate: ...`` line (jobs/estimates.py ``line``): memory, time, what it
    counts (``counts``; default the tune's parts), how it was measured and the load."""
    from ..calibration import format_seconds
    from .estimates import line

    if counts is None:
        p = est.get("parts", {})
        counts = [f"{format_seconds(p.get('tune_s', 0))} tuning"]
        if p.get("previews"):
            counts.append(f"{p['previews']} preview{'s' if p['previews'] > 1 else ''}")
        if p.get("inversion_s"):
            counts.append("inversion")
        if p.get("validation_samples"):
            n = p["validation_samples"]
            counts.append(f"{n} validation sample{'s' if n > 1 else ''}")
    return line(est, device, counts)


def estimate_edit(edit, n_frames: int, width: int, height: int, device: Any = "cpu",
                  model_scale: float = 1.0) -> dict:
    """Memory/time of one edit (the same constants as :func:`estimate`): its inversion (when
    used and not yet made) and ``steps`` sampling steps, two U-Net calls each under CFG, plus
    its structure conditions (a ControlNet ~ a third of a U-Net per call and its weights).
    Returns ``{"gib", "seconds", "control_seconds"}`` (the last: the conditions' share)."""
    from ..control import control_cost

    units = n_frames * (width * height) / (512 * 512)
    ctl = control_cost(edit.control)
    from ..config import guided_passes

    calls = guided_passes(edit.guidance)
    pass_s = uncalibrated_pass_s(n_frames, width, height, device, model_scale)
    sample = edit.steps * pass_s * calls
    inv = edit.steps * pass_s if edit.use_inversion else 0.0
    extra = sample * ctl["unet_share"]
    gib = model_scale * (_FROZEN_GIB + ctl["gib"] + units * calls * _SAMPLE_ACT_GIB_PER_FRAME
                         * (1 + ctl["unet_share"]))
    return {"gib": round(gib, 2), "seconds": round(sample + inv + extra, 1),
            "control_seconds": round(extra, 1)}


def real_footage_notice(video, embedded: bool, limits: Optional[Limits] = None) -> Optional[str]:
    """What to say before tuning ``video`` (:data:`~vcstudio.models.loading.REAL_FOOTAGE_NOTICE`)
    when the model is the embedded demo model (``embedded``) and the clip's first frame does not
    look like a toy scene (:func:`vcstudio.toyworld.checker.looks_like_toy_scene`); None
    otherwise, and for a clip that cannot be read (the tune itself says what is wrong)."""
    from ..errors import VcsError
    from ..io import read_video
    from ..models.loading import REAL_FOOTAGE_NOTICE
    from ..toyworld.checker import looks_like_toy_scene

    if not embedded or not video:
        return None
    try:
        first = read_video(video, 0, 1, 1, limits=limits or Limits())[0]
    except (VcsError, OSError, ValueError):
        return None
    return None if looks_like_toy_scene(first) else REAL_FOOTAGE_NOTICE


def run_tune(cfg: TuneConfig, ctx, run_dir: Path | None = None, parent: str | None = None,
             label: str = "") -> TuneOutcome:
    """Tune into ``run_dir`` (default ``ctx.run_folder``), recording the run and its
    checkpoints through ``ctx``. Other jobs (compare, a sweep cell) call this too."""
    from ..pipelines.tune.loop import tune
    from ..run_context import RunContext

    from ..models.catalog import fetch
    from ..models.family import backbone_family

    # a hub model not cached yet: downloaded now, its bytes and ETA as progress events
    fetch(cfg.model, ctx, cancel=getattr(ctx, "cancel", None))
    run_dir = Path(run_dir) if run_dir is not None else ctx.run_folder("tune")
    run_id = ctx.open_run("tune", run_dir, cfg, seed=cfg.seed, parent=parent, label=label)
    store = getattr(ctx, "store", None)  # a sweep cell's detached context has none
    run = RunContext.of(ctx)  # progress, cancel, cache and device, handed on as one
    if backbone_family(cfg.model) == "wan":  # a video DiT: LoRA with the rectified-flow loss
        from ..pipelines.flow.run import tune_flow

        res = tune_flow(cfg, run_dir, run=run, limits=ctx.limits,
                        on_checkpoint=lambda path, step: ctx.set_checkpoint(path, step),
                        step_budget=getattr(ctx, "step_budget", None),
                        calibration_dir=store.data_dir if store is not None else None)
    else:
        res = tune(cfg, run_dir, run=run,
                   on_checkpoint=lambda path, step: ctx.set_checkpoint(path, step),
                   calibration_dir=store.data_dir if store is not None else None,
                   step_budget=getattr(ctx, "step_budget", None))
    if res.paused:  # a ZeroGPU call ended; the next call resumes from the checkpoint
        return TuneOutcome(run_id, res.run_dir, res.steps, res.total or cfg.steps, res.seconds,
                           res.losses, message=f"Paused at step {res.steps} of {res.total}.",
                           paused=True)
    ctx.add_artifact(run_id, "delta", res.run_dir / "delta.safetensors")
    if (res.run_dir / "source.mp4").is_file():
        ctx.add_artifact(run_id, "mp4", res.run_dir / "source.mp4")
    if (res.run_dir / "losses.json").is_file():
        ctx.add_artifact(run_id, "json", res.run_dir / "losses.json")
    from ..pipelines.tune.validation import sample_paths

    for gif in sample_paths(res.run_dir):  # Tune-A-Video's samples/sample-<step>/<prompt>.gif
        ctx.add_artifact(run_id, "gif", gif)
    last = res.losses[-1] if res.losses else {}
    if "loss" in last:
        ctx.add_metrics(run_id, video={"final_loss": float(last["loss"])})
    if res.stopped and res.steps == 0:
        msg = (f"Stopped before the first of {res.total} steps: nothing was tuned, so there is "
               "nothing to keep yet (resume it, or tune again).")
    elif res.stopped:
        msg = (f"Stopped at step {res.steps} of {res.total}; its checkpoint is saved as a usable "
               "delta: edit from it, or resume it.")
    else:
        ctx.finish_run(run_id)
        msg = f"Tuned {res.steps} steps in {res.seconds:.0f} s."
    from ..runs.folder import RunFolder

    return TuneOutcome(run_id, res.run_dir, res.steps, res.total or cfg.steps, res.seconds,
                       res.losses, res.stopped, msg,
                       notes=list(RunFolder(res.run_dir).meta().get("notes") or []))


def run(cfg: TuneConfig, ctx) -> TuneOutcome:
    from ..memory import model_scale
    from ..models.catalog import fetch
    from ..models.family import backbone_family
    from .estimates import announce, base_of

    fetch(cfg.model, ctx, cancel=getattr(ctx, "cancel", None))  # before the estimate loads it
    if backbone_family(cfg.model) == "wan":
        from .flow_estimates import tune_estimate, tune_line

        announce(ctx, tune_estimate, tune_line, cfg)
        return run_tune(cfg, ctx)
    try:  # the model's own size where none is given, as the tune resolves it
        from ..io import read_video
        from ..pipelines.tune.loop import resolve_size

        base = base_of(cfg.model, ctx, cfg.mixed_precision)
        first = read_video(cfg.data.video_path, 0, 1, 1)  # the clip's aspect, as the tune's
        announce(ctx, estimate, estimate_line, resolve_size(cfg, base.native_size,
                                                            first.shape[1:3]),
                 model_scale=model_scale(base.unet))
    except Exception:  # noqa: BLE001 - the tune itself reports a model it cannot load
        pass
    return run_tune(cfg, ctx)
