"""The edit job: sample a new prompt from a tuned run (from the DDIM-inverted clip by default).

Config: :class:`EditJobConfig` = the tuned run + :class:`~vcstudio.config.EditConfig` + fps +
the metrics to score the result with. Writes mp4 + gif under ``RUN/edits/`` (or the ``out`` it
was submitted with), their names carrying a short hash of the whole edit config so edits never
overwrite each other, and records an ``edit`` run (parent: the tuned run) with its scores.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import EditConfig, Limits, fps_setting
from ..settings import check
from .. import validate as v

# what the Edit tab scores each edit with (per frame, streamed in the plot)
STREAM_METRICS = ("clip_text", "consistency_adjacent", "warp_error")


@dataclass
class EditJobConfig:
    run: str = ""  # the tuned run folder, or hf://user/name (a pushed run)
    edit: EditConfig = field(default_factory=EditConfig)
    model: str = ""  # the base model to load the run onto ("" = the one it was tuned on)
    fps: float = fps_setting(8.0, flag="--fps")
    metrics: tuple[str, ...] = ()  # scored after writing (e.g. STREAM_METRICS); () = none


@dataclass
class EditOutcome:
    run_id: str
    mp4: Path
    gif: Path
    frames: np.ndarray
    prompt: str
    seed: int
    scores: dict = field(default_factory=dict)  # name -> MetricResult


def run_base(run: str | Path) -> str:
    """The base model a tuned run records (meta.json ``base_model``, else its config's
    ``model``): what its edits load it onto unless told otherwise. Reads files only."""
    from ..runs.open import open_run

    rf = open_run(run, must_be_finished=False)
    return str(rf.meta().get("base_model") or rf.config().model or "")


def validate(cfg: EditJobConfig, limits: Limits) -> None:
    from ..pipelines.edit.edits import validate_edit

    v.text("run (--run)", cfg.run, "give the run folder `vcstudio tune` printed")
    validate_edit(cfg.edit, "edit.")
    check(cfg, "fps", limits)


def inversion_cached(rf, e: EditConfig) -> bool:
    """Whether the run folder already holds the inversion this edit starts from (the tune
    makes the one at its inversion_steps; each other step count is made once, then cached),
    under the inversion prompt this edit uses (the run's own unless the edit names one)."""
    from ..pipelines.tune.loop import inversion_text

    return rf.inversion_path(e.steps, inversion_text(rf.config(), e.inversion_prompt,
                                                     e.prompt)).is_file()


def run_speed(calibration_dir, device, run_cfg, frames: int, width: int, height: int,
              probe=None, rate: float = 0.0, model_scale: float = 1.0):
    """(Speed, how, load factor) of ``run_cfg``'s model and method over ``frames`` frames at
    this size, at the machine's load now: what a tune or probe measured on this device
    (vcstudio/calibration.py), measured first by ``probe`` where this shape was not
    (vcstudio/pipelines/tune/probe.py), else scaled from the nearest shape, else the tune
    estimate's per-device constants at ``model_scale`` ("uncalibrated")."""
    import dataclasses

    from .. import calibration as cal
    from .tune import uncalibrated_pass_s

    found = cal.lookup(calibration_dir, device, run_cfg.model, run_cfg.method, frames, width,
                       height, rate)
    if not found.exact and probe is not None:
        probe(dataclasses.replace(run_cfg, data=dataclasses.replace(
            run_cfg.data, n_frames=frames, width=width, height=height)))
        found = cal.lookup(calibration_dir, device, run_cfg.model, run_cfg.method, frames,
                           width, height, rate)
    if found.speed is not None:
        return found.speed, found.how, found.load
    pass_s = uncalibrated_pass_s(frames, width, height, device, model_scale)
    return (cal.Speed(frames, width, height, pass_s / cal.PRIOR_SAMPLE_STEP_SHARE, pass_s),
            "uncalibrated", 1.0)


def pass_seconds(calibration_dir, device, run_cfg, frames: int, width: int, height: int,
                 model_scale: float = 1.0) -> tuple[float, str]:
    """(seconds of one U-Net forward pass without CFG over ``frames`` frames at this size,
    how): :func:`run_speed`'s pass."""
    sp, how, _ = run_speed(calibration_dir, device, run_cfg, frames, width, height,
                           model_scale=model_scale)
    return sp.pass_s(), how


def edit_parts(edit: EditConfig, speed, inverts: bool) -> dict:
    """Seconds of an edit's stages at ``speed`` (a calibration.Speed, or the seconds of one
    forward pass): sampling (``steps`` x one pass, two under classifier-free guidance:
    config.guided_passes), its structure conditions (a ControlNet ~ a share of a U-Net pass
    per call), the inversion when one is made (``steps`` x one pass) and the decode."""
    from ..config import guided_passes
    from ..control import control_cost

    if isinstance(speed, (int, float)):
        pass_s, decode_s = float(speed), float(speed)
    else:
        pass_s, decode_s = speed.pass_s(), speed.decode_or_prior()
    sample = edit.steps * guided_passes(edit.guidance) * pass_s
    return {"sample_s": sample, "control_s": sample * control_cost(edit.control)["unet_share"],
            "inversion_s": edit.steps * pass_s if inverts else 0.0, "decode_s": decode_s}


def estimate(cfg: EditJobConfig, device="cpu", calibration_dir=None, probe=None,
             rate: Optional[float] = None) -> dict:
    """Seconds of this edit, without the device, its models loaded (the job loads them before
    it says its estimate: :func:`prepare`): sampling (steps x one forward pass, two under
    CFG), the inversion when the run has none at this step count (steps x 1 pass), a decode
    and the scoring of every frame with
    ``cfg.metrics`` (jobs/scoring.py), from the speeds measured at the run's frames and size
    on this device (a probe first where there are none: ``probe``; vcstudio/calibration.py),
    scaled by the machine's load now (``rate``, vcstudio/loadfactor.py). ``how`` says
    "uncalibrated" when nothing was measured (then the per-device constants' figure for a
    SD-1.x-size model). With a new inversion, ``stages`` splits the seconds into invert +
    sample (a time-limited GPU, ZeroGPU, runs them as two calls; the inversion is cached in
    the run folder between them).
    Returns {"seconds", "low", "high", "how", "load", "inversion", "parts"[, "stages"]}."""
    from ..runs.open import open_run
    from . import scoring
    from .estimates import finish, rate_now, worst

    from ..models.family import run_family

    rf = open_run(cfg.run)
    run_cfg, meta = rf.config(), rf.meta()
    f = int(meta.get("n_frames", run_cfg.data.n_frames))
    h, w = int(meta.get("height", run_cfg.data.height)), int(meta.get("width", run_cfg.data.width))
    inv = cfg.edit.use_inversion and not inversion_cached(rf, cfg.edit)
    if run_family(meta) == "wan":  # a video DiT: its architecture's figures
        from .flow_estimates import sample_estimate

        return sample_estimate(meta.get("base_model") or run_cfg.model, f, h, w, cfg.edit.steps,
                               cfg.edit.guidance, device, cfg.edit.steps if inv else 0,
                               calibration_dir, rate)
    rate = rate_now(device, rate)
    speed, how, load = run_speed(calibration_dir, device, run_cfg, f, w, h, probe, rate)
    parts = edit_parts(cfg.edit, speed, inv)
    hows = [how]
    if cfg.metrics:
        parts["score_s"], score_how, _ = scoring.estimate(cfg.metrics, f, w, h, device,
                                                          calibration_dir, rate)
        if parts["score_s"] > 0.2 * sum(parts.values()):  # a guess that matters
            hows.append(score_how)
    est = finish(parts, worst(hows), load, inversion=inv)
    if inv:
        est["stages"] = {"invert": round(parts["inversion_s"], 1),
                         "sample": round(est["seconds"] - parts["inversion_s"], 1)}
    return est


def estimate_line(est: dict, device="cpu") -> str:
    """The edit's ``Estimate: ...`` line (jobs/estimates.py ``line``)."""
    from .estimates import line

    counts = ["a new inversion at this step count" if est.get("inversion")
              else "inversion cached", "sampling", "decode"]
    if est.get("parts", {}).get("score_s"):
        counts.append("scoring")
    if est.get("basis"):  # a video DiT's figures (jobs/flow_estimates.py)
        from .flow_estimates import line as flow_line

        return flow_line(est, device, counts)
    return line(est, device, counts)


def run_edit(cfg: EditJobConfig, ctx, parent: Optional[str] = None,
             out_dir: Optional[Path] = None) -> EditOutcome:
    """Edit, write (into ``out_dir``, default ``RUN/edits``), record, score. Other jobs
    (compare, a sweep cell) call this too."""
    import torch

    from ..pipelines.edit.edits import edit
    from ..runs.convert import prepare_run
    from ..progress import Event
    from ..run_context import RunContext

    from ..runs.source import working_copy

    from ..models.family import run_family

    rf = prepare_run(working_copy(cfg.run, Path(ctx.data_dir) / "hub",
                                  max_mb=ctx.limits.max_hub_run_mb), device=ctx.device)
    flow = run_family(rf.meta()) == "wan"  # a video DiT's run: flow inversion + sampling
    if getattr(ctx, "stage", None) == "invert" and flow:
        from ..pipelines.flow.run import load_flow_run
        from ..pipelines.flow.edit import flow_inversion

        flow_inversion(load_flow_run(rf.path, torch.device(ctx.device), cfg.model or None,
                                     ctx.cache),
                       cfg.edit.steps, cfg.edit.inversion_prompt, run=RunContext.of(ctx),
                       target=cfg.edit.prompt)
        return None
    if getattr(ctx, "stage", None) == "invert":  # a GPU call of its own (ZeroGPU): cache it
        from ..pipelines.tune.loop import inversion_latents, load_tuned

        tuned = load_tuned(rf.path, ctx.cache, torch.device(ctx.device), model=cfg.model or None)
        inversion_latents(tuned, cfg.edit.steps, ctx, ctx.cancel,
                          prompt=cfg.edit.inversion_prompt, target=cfg.edit.prompt)
        return None
    if parent is None:
        parent = ctx.find_run(rf.path, "tune")
    out = Path(out_dir) if out_dir is not None else rf.edits
    run_id = ctx.open_run("edit", out, cfg, seed=cfg.edit.seed, parent=parent,
                          label=cfg.edit.prompt[:80], reuse=False)
    if flow:
        from ..pipelines.flow.edit import edit_flow_run

        from .estimates import calibration_dir

        res = edit_flow_run(rf.path, cfg.edit, run=RunContext.of(ctx), out_dir=out, fps=cfg.fps,
                            model=cfg.model or None, calibration_dir=calibration_dir(ctx))
    else:
        res = edit(rf.path, cfg.edit, run=RunContext.of(ctx), out_dir=out, fps=cfg.fps,
                   model=cfg.model or None)
    ctx.add_artifact(run_id, "mp4", res.mp4)
    ctx.add_artifact(run_id, "gif", res.gif)
    ctx(Event(1, 1, "edit written", stage="write",
              outputs={"mp4": str(res.mp4), "gif": str(res.gif)}))
    results = {}
    if cfg.metrics:
        from ..io import read_video

        source = read_video(rf.source_path) if rf.source_path.is_file() else None
        from ..io.atomic import write_json
        from .scoring import score, scores_json

        results = score(res.frames, ctx, run_id, cfg.metrics, prompt=cfg.edit.prompt,
                        source=source)
        path = write_json(res.mp4.with_suffix(".scores.json"),
                          scores_json(results, prompt=cfg.edit.prompt))
        ctx.add_artifact(run_id, "json", path)
    ctx.finish_run(run_id)
    return EditOutcome(run_id, res.mp4, res.gif, res.frames, cfg.edit.prompt, cfg.edit.seed,
                       results)


def prepare(cfg: EditJobConfig, ctx) -> None:
    """Before the edit's estimate: the tuned model and the scoring models loaded through the
    job's cache (the edit then finds them; the estimate counts the work from there on).
    Never raises: the edit itself reports what it cannot load."""
    import torch

    from ..runs.convert import prepare_run
    from ..pipelines.edit.tuned import load_tuned
    from .scoring import warm_up

    from ..models.family import run_family

    try:
        rf = prepare_run(cfg.run, device=ctx.device)  # a Tune-A-Video folder: converted
        if run_family(rf.meta()) != "wan":  # a Wan edit's estimate is the architecture's
            load_tuned(rf.path, ctx.cache, torch.device(ctx.device), model=cfg.model or None)
        meta, d = rf.meta(), rf.config().data
        warm_up(cfg.metrics, int(meta.get("width", d.width)), int(meta.get("height", d.height)),
                ctx, cfg.edit.prompt, with_source=rf.source_path.is_file())
    except Exception:  # noqa: BLE001
        pass


def run(cfg: EditJobConfig, ctx) -> EditOutcome:
    from ..models.catalog import fetch
    from .estimates import announce

    if cfg.model:  # another base than the run's own: downloaded first where it is missing
        fetch(cfg.model, ctx, cancel=getattr(ctx, "cancel", None))

    if getattr(ctx, "stage", None) != "invert" and getattr(ctx, "store", None) is not None:
        prepare(cfg, ctx)
        announce(ctx, estimate, estimate_line, cfg)
    return run_edit(cfg, ctx, out_dir=Path(ctx.out) if ctx.out else None)
