"""The long-video job: longer than the tuned clip, a prompt per segment (temporal co-denoising of
overlapping windows, optional masks + average fusion + combined tuning, progressive refinement).

Config: :class:`LongJobConfig` = the tuned run + :class:`~vcstudio.config.LongConfig`;
``masks_only`` runs only the mask stage (the Long Video tab's preview). Records a ``long`` run
(parent: the tuned run). On Wan2.1 (a tuned run's LoRA, or the base model alone: ``model``)
the windows are laid out in latent frames and denoised by the flow sampler
(pipelines/flow/long.py); the SD-only stages (masks, refinement, control) are refused.
:func:`plan` is the instant, model-free timeline + window layout the
tab and ``--show-timeline`` show before generating.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..config import Limits, LongConfig, TRAIN_TIMESTEPS
from ..errors import InputError
from ..settings import check
from .. import validate as v


@dataclass
class LongJobConfig:
    run: str = ""  # the tuned run folder
    long: LongConfig = field(default_factory=LongConfig)
    masks_only: bool = False  # only the mask stage (candidates, masks, fused clip)
    # the base model: with a run, the one to load it onto (default: the one it was tuned on);
    # without a run, a flow model (Wan2.1) generates untuned (Stable Diffusion needs a run)
    model: str = ""


def family(cfg: LongJobConfig) -> str:
    """The backbone family the job runs on, without loading anything: a local run's meta.json
    (a Hub run not fetched yet: Stable Diffusion's counting, the job checks again), else the
    base model's model_index.json."""
    from ..models.family import SD, backbone_family, run_family

    if (cfg.run or "").strip():
        meta = Path(cfg.run).expanduser() / "meta.json"
        if meta.is_file():
            from ..runs.folder import RunFolder

            return run_family(RunFolder(meta.parent).meta())
        return SD
    return backbone_family(cfg.model)


def validate(cfg: LongJobConfig, limits: Limits) -> None:
    c = cfg.long
    if not (cfg.model or "").strip():
        v.text("run (--run)", cfg.run, "tune a clip first and give its run folder (a Wan2.1 "
               "base model, --model, generates without one)")
    from ..models.family import rules

    r = rules(family(cfg))
    if not (cfg.run or "").strip() and r.parameterization != "flow":
        raise InputError(f"Long Video on {r.label} generates from a tuned run: tune a clip "
                         "first and give its run folder (--run); a Wan2.1 base model (--model) "
                         "generates without one.")
    for name in ("frames", "window", "stride"):
        check(c, name, limits, "long.")
    from ..pipelines.long.windows import latent_grid, window_count

    if r.parameterization == "flow":  # its SD-only parts refused before anything loads
        from ..pipelines.flow.long import validate_flow_long

        if cfg.masks_only:
            raise InputError(f"The mask stage runs on Stable Diffusion runs only; {r.label} "
                             "long videos have none.")
        validate_flow_long(c, r.label)
    # windows are counted where they are laid out: in latent frames on Wan2.1 (4k + 1)
    g = latent_grid(c.frames, c.window, c.stride, r.temporal)
    n = window_count(g.latent_frames, g.latent_window, g.latent_stride)
    if n > limits.max_windows:
        raise InputError(f"{c.frames} frames in windows of {c.window} every {c.stride} make {n} "
                         f"windows; this studio denoises at most {limits.max_windows} per video: "
                         "raise --stride or --window, or lower --frames.")
    for name in ("steps", "guidance", "seed", "batch_windows", "decode_chunk", "fps", "size"):
        check(c, name, limits, "long.")
    for s in c.refine:
        v.whole("long.refine (--refine)", s, 64, limits.max_side)
    if c.control:
        from ..control import validate_controls

        validate_controls(c.control, "long.control (--control)")
    if c.masks or cfg.masks_only:
        check(c.mask, "n_candidates", limits, "long.mask.")
        check(c.mask, "tune_steps", limits, "long.mask.")


def plan(story: str, prompts: list[str], frames: int, window: int, stride: int, fusion: str,
         prompt_mode: str = "majority", temporal: int = 1) -> dict:
    """The timeline and window layout of a long video, without a model: ``graph`` (the scene
    graph, however the prompts came: a story's parse, or the prompts given one per segment,
    each read as one main event; with its ``timeline``: each segment's prompt and frames),
    ``segments`` (video frames) and ``latent_segments`` (the layout's units), ``layout``
    (WindowLayout, in latent frames where the VAE packs ``temporal``
    frames per latent: Wan2.1's 4), ``grid`` (windows.LatentGrid: what was rounded, its
    ``note``), ``prompts`` (per window its (segment, weight) pairs), ``table`` (one row per
    window, in video frames)."""
    from ..pipelines.long.windows import (grid_table, latent_grid, latent_segments, layout_table,
                                          make_layout, window_prompts)
    from ..scene import parse_prompts, parse_story
    from ..scene.segments import timeline

    frames, window, stride = int(frames), int(window), int(stride)
    if window > frames:
        raise InputError(f"The window ({window}) is longer than the video ({frames}).")
    if stride > window:
        raise InputError(f"The stride ({stride}) must not exceed the window ({window}).")
    lines = [p.strip() for p in prompts if p and p.strip()]
    if story and story.strip():
        g, source, lines = parse_story(story), "story", []
    elif lines:
        g, source = parse_prompts(lines), "prompts (one per segment)"
    else:
        raise InputError("Write a story, or one prompt per line.")
    segs = timeline(frames, story=story if source == "story" else "", prompts=lines)
    graph = {"source": source,
             "timeline": [{"segment": i, "prompt": s.prompt, "first_frame": s.start,
                           "last_frame": s.end - 1} for i, s in enumerate(segs)],
             **g.to_dict()}
    grid = latent_grid(frames, window, stride, temporal)
    layout = make_layout(grid.latent_frames, grid.latent_window, grid.latent_stride, fusion)
    lat = latent_segments(segs, grid)
    return {"graph": graph, "segments": segs, "latent_segments": lat, "layout": layout,
            "grid": grid, "prompts": window_prompts(layout, lat, prompt_mode),
            "table": grid_table(layout_table(layout, lat, prompt_mode), grid)}


# seconds to mask one 512x512 frame on the CPU (scaled by pixels; a GPU ~20x faster): GrabCut
# (OpenCV) and SAM ViT-H; constants, not measured (the mask stage is a small part of a long video
# except with SAM on a CPU)
MASK_FRAME_S = {"grabcut": 0.5, "sam": 8.0}


def _fusion_index(steps: int, k: int, train_steps: int = TRAIN_TIMESTEPS, offset: int = 1) -> int:
    """The step index of the mask stage's step k (maskfusion.fusion_index) on DDIM's "leading"
    schedule (timesteps (steps-1-i) x T // steps + 1, T = the training timesteps), without building a scheduler."""
    ratio = train_steps // max(1, steps)
    for i in range(steps):
        if (steps - 1 - i) * ratio + offset <= k:
            return i
    return steps - 1


def estimate(cfg: LongJobConfig, device="cpu", calibration_dir=None, probe=None,
             rate: Optional[float] = None) -> dict:
    """Seconds of this long video, without the device: every denoising step runs each window
    through the U-Net (``window`` frames; two passes under CFG: config.guided_passes), per
    refinement stage too (its steps x the refinement strength); with ``masks`` the mask stage
    (n candidates sampled to step k, each decoded and masked, the fused clip denoised to the
    end, decoded and masked, and ``tune_steps`` of combined tuning at the window's shape); a
    decode of every frame; structure conditions as a share of a U-Net pass. From the speeds
    measured at the window's shape on this device (a probe first where there are none:
    ``probe``; vcstudio/calibration.py), scaled by the machine's load now (``rate``). Returns
    {"seconds", "low", "high", "how", "load", "parts"}."""
    from ..config import guided_passes
    from ..control import control_cost
    from ..runs.open import open_run
    from ..pipelines.long.windows import make_layout
    from .edit import run_speed
    from .estimates import finish, rate_now, worst

    c = cfg.long
    from ..models.family import rules

    if rules(family(cfg)).parameterization == "flow":  # a video DiT: its architecture's figures
        from .flow_estimates import long_estimate

        if not (cfg.run or "").strip():
            return long_estimate(cfg.model, c, None, device, calibration_dir, rate)
        rf = open_run(cfg.run)
        meta, run_cfg = rf.meta(), rf.config()
        return long_estimate(cfg.model or meta.get("base_model") or run_cfg.model, c,
                             (int(meta.get("height", run_cfg.data.height)),
                              int(meta.get("width", run_cfg.data.width))), device,
                             calibration_dir, rate)
    rf = open_run(cfg.run)
    run_cfg, meta = rf.config(), rf.meta()
    sizes = ([(s, s) for s in c.refine] if c.refine else [(c.size, c.size)] if c.size else
             [(int(meta.get("height", run_cfg.data.height)),
               int(meta.get("width", run_cfg.data.width)))])
    n_win = make_layout(c.frames, c.window, c.stride, c.fusion).n_windows
    rate = rate_now(device, rate)
    passes = guided_passes(c.guidance)
    ctl = 1.0 + control_cost(c.control)["unet_share"]
    parts, hows, loads = {}, [], []
    speed = None
    for i, (h, w) in enumerate(sizes):
        sp, how, load = run_speed(calibration_dir, device, run_cfg, c.window, w, h,
                                  probe if i == 0 else None, rate)
        hows.append(how)
        loads.append(load)
        speed = speed or sp
        steps = c.steps if i == 0 else max(1, round(c.steps * c.refine_strength))
        parts[f"{w}x{h}_s"] = steps * n_win * passes * sp.pass_s() * ctl
    (h, w), sp = sizes[0], speed
    if c.masks:
        n, j = c.mask.n_candidates, _fusion_index(c.steps, c.mask.k_step)
        step_s = passes * sp.pass_s()
        mask_s = MASK_FRAME_S.get(c.mask.method, MASK_FRAME_S["sam"]) * h * w / (512 * 512) \
            * (1.0 if str(device).split(":")[0] == "cpu" else 0.05) * c.window
        parts["masks_s"] = (n * (j * step_s + step_s + sp.decode_or_prior() + mask_s)
                            + (c.steps - j) * step_s + sp.decode_or_prior() + mask_s)
        if c.mask.tune_steps > 0:
            parts["combined_tune_s"] = c.mask.tune_steps * sp.train_step_s
    parts["decode_s"] = sp.decode_or_prior() * c.frames / max(1, c.window)
    load = max(loads or [1.0], key=lambda f: abs(f - 1.0))
    return finish(parts, worst(hows), load)


def estimate_line(est: dict, device="cpu") -> str:
    """The Long Video tab's ``Estimate: ...`` line (jobs/estimates.py ``line``)."""
    from .estimates import line

    if est.get("basis"):  # a video DiT's figures (jobs/flow_estimates.py)
        from .flow_estimates import long_line

        return long_line(est, device)
    p = est.get("parts", {})
    counts = [k[:-2].replace("x", "×") + " co-denoising" for k in p
              if k[0].isdigit() and k.endswith("_s")]
    if p.get("masks_s"):
        counts.append("mask stage")
    if p.get("combined_tune_s"):
        counts.append("combined tuning")
    counts.append("decode")
    return line(est, device, counts)


def dim_background(frames, masks):
    """Frames with the background dimmed by ``masks`` (the mask gallery's pictures)."""
    from ..pipelines.long.maskfusion import dim_background as dim

    return dim(frames, masks)


def run(cfg: LongJobConfig, ctx):
    """-> pipelines.long.video.LongResult (or a maskfusion.FusionResult with ``masks_only``).
    A Wan2.1 run or base model: pipelines/flow/long.py."""
    import torch

    from ..pipelines.long.video import long_segments, long_video, mask_preview, output_path
    from ..run_context import RunContext
    from ..runs.convert import prepare_run
    from .estimates import announce

    from ..models.catalog import fetch
    from ..models.family import rules, run_family

    rf = prepare_run(cfg.run, device=ctx.device) if (cfg.run or "").strip() else None
    if rf is None or rules(run_family(rf.meta())).parameterization == "flow":
        return _run_flow(cfg, ctx, rf)
    device = torch.device(ctx.device)
    model = cfg.model or None
    if model:  # another base than the run's own: downloaded first where it is missing
        fetch(model, ctx, cancel=getattr(ctx, "cancel", None))
    if not cfg.masks_only and getattr(ctx, "store", None) is not None:
        try:  # loaded before its estimate (the job finds it in the cache)
            from ..pipelines.edit.tuned import load_tuned

            load_tuned(rf.path, ctx.cache, device, model=model)
        except Exception:  # noqa: BLE001 - the job itself reports it
            pass
        announce(ctx, estimate, estimate_line, cfg)
    if cfg.masks_only:
        return mask_preview(rf.path, cfg.long, run=RunContext.of(ctx), model=model)
    segments = long_segments(cfg.long)
    mp4 = output_path(cfg.long, rf.path, segments)
    run_id = ctx.open_run("long", mp4.parent, cfg, seed=cfg.long.seed,
                          parent=ctx.find_run(rf.path, "tune"), reuse=False,
                          label=segments[0].prompt[:80])
    res = long_video(rf.path, cfg.long, run=RunContext.of(ctx), model=model)
    return _record(ctx, run_id, res)


def _run_flow(cfg: LongJobConfig, ctx, rf):
    """A long video on a flow model: a tuned Wan run's LoRA (``rf``) or the base (``cfg.model``)."""
    from ..pipelines.flow.long import flow_long_video
    from ..pipelines.long.video import long_segments, output_path
    from ..run_context import RunContext
    from .estimates import announce

    if rf is not None:  # a Hub run fetched just now: its counting checked again
        validate(dataclasses.replace(cfg, run=str(rf.path)), ctx.limits)
    if cfg.model:  # a base not cached yet: downloaded first, with bytes and ETA
        from ..models.catalog import fetch

        fetch(cfg.model, ctx, cancel=getattr(ctx, "cancel", None))
    if getattr(ctx, "store", None) is not None:
        announce(ctx, estimate, estimate_line, cfg)
    segments = long_segments(cfg.long)
    root = rf.path if rf is not None else (Path(cfg.long.out).parent if cfg.long.out
                                           else ctx.run_folder("long"))
    mp4 = output_path(cfg.long, root, segments)
    run_id = ctx.open_run("long", mp4.parent, cfg, seed=cfg.long.seed,
                          parent=ctx.find_run(rf.path, "tune") if rf is not None else None,
                          reuse=False, label=segments[0].prompt[:80])
    res = flow_long_video(cfg.long, rf.path if rf is not None else None, cfg.model or None,
                          root, run=RunContext.of(ctx))
    return _record(ctx, run_id, res)


def _record(ctx, run_id, res):
    ctx.add_artifact(run_id, "mp4", res.mp4)
    if Path(res.mp4).with_suffix(".json").is_file():
        ctx.add_artifact(run_id, "json", Path(res.mp4).with_suffix(".json"))
    ctx.finish_run(run_id)
    res.run_id = run_id
    return res
