"""Long Video: a video much longer than the tuned clip, one prompt per segment (seeds 001, 004).

    timeline (prompts | story -> scene parser | segments)  ->  window layout (eq. 18, tail incl.)
    [masks: n candidates to step k -> SAM/GrabCut -> eq. 11 -> eq. 12 -> combined tuning eq. 20]
    noise of ``frames`` frames (seeded)  ->  co-denoising, every step fusing windows (eq. 19)
    [progressive refinement: upsample -> re-noise -> partial co-denoise, per higher scale (PVR)]
    decode in chunks  ->  mp4 (atomic)

Memory grows with the video only through its latents (and the uint8 frames at the end): windows
are denoised a batch at a time and accumulated in place (pipelines/long/codenoise.py).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ...config import LongConfig, to_dict
from ...errors import InputError, OutOfMemoryError
from ...io import resize_frames, write_mp4
from ...progress import Event, ProgressFn
from ...run_context import RunContext
from ...settings import check
from ...scene.segments import Segment, timeline
from .codenoise import CoDenoiser
from ...models.encode import decode_to_frames, encode_prompts, encode_video
from .refine import parse_scales, partial_timesteps, renoise, upsample_latents
from ...io.atomic import write_json
from ..edit.sample import ddim_scheduler, denoise
from ..edit.structure import controlled
from .windows import WindowLayout, layout_table, make_layout, mix_embeddings, window_prompts


@dataclass
class LongResult:
    mp4: Path
    frames: np.ndarray  # uint8 (frames, H, W, 3)
    segments: list[Segment]
    table: list[dict]  # one row per window: frames, prompt(s), fusion weights
    layout: WindowLayout = field(repr=False)
    seconds: float = 0.0
    stages: list[dict] = field(default_factory=list)  # one per scale: size, steps, strength
    masks: Optional[np.ndarray] = None  # bool (K, H, W): foreground of the fused clip
    mask_method: str = ""  # "sam-box", ..., or the GrabCut fallback's label
    fused: Optional[np.ndarray] = None  # uint8 (K, H, W, 3): the fused clip r' (eq. 12)
    candidates: Optional[np.ndarray] = None  # uint8 (n, K, H, W, 3): x0 at step k
    candidate_masks: Optional[np.ndarray] = None  # bool (n, K, H, W)
    combined_run: Optional[Path] = None  # D' when combined tuning ran
    notes: list[str] = field(default_factory=list)  # what the job rounded (a Wan long video)
    latents: Optional[torch.Tensor] = field(default=None, repr=False)  # the final latent video


# ----------------------------------------------------------------------------- inputs

def long_segments(cfg: LongConfig) -> list[Segment]:
    """The timeline: explicit ``segments``, else the ``story`` (scene parser), else ``prompts``
    (scene/segments.timeline)."""
    return timeline(cfg.frames, cfg.segments, cfg.story, cfg.prompts)


def check_sampling(cfg: LongConfig) -> None:
    """The sampler's ranges, whatever the backbone (as LongConfig declares them)."""
    for name in ("steps", "guidance"):
        check(cfg, name)


def validate_long(cfg: LongConfig) -> None:
    check_sampling(cfg)
    check(cfg, "refine_mode")
    if cfg.refine:
        parse_scales(list(cfg.refine))
        partial_timesteps(list(range(cfg.steps)), cfg.refine_strength)
    if cfg.size and (cfg.size < 64 or cfg.size % 64):
        raise InputError(f"The size must be a multiple of 64 (got {cfg.size}).")
    make_layout(cfg.frames, cfg.window, cfg.stride, cfg.fusion, cfg.fusion_sigma)
    if cfg.control:
        from ...control import validate_controls

        validate_controls(cfg.control, "control")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "long"


def output_path(cfg: LongConfig, run_path: Path, segments: list[Segment]) -> Path:
    if cfg.out:
        p = Path(cfg.out)
        return p if p.suffix == ".mp4" else p.with_suffix(".mp4")
    return run_path / "long" / f"{_slug(segments[0].prompt)}-s{cfg.seed}-{cfg.frames}f.mp4"


def _sizes(cfg: LongConfig, tuned) -> list[tuple[int, int]]:
    """(H, W) per stage: the refinement scales, else one stage at --size or the clip's size."""
    if cfg.refine:
        return [(s, s) for s in parse_scales(list(cfg.refine))]
    if cfg.size:
        return [(cfg.size, cfg.size)]
    meta, d = tuned.run.meta() if tuned.run else {}, tuned.cfg.data
    return [(int(meta.get("height", d.height)), int(meta.get("width", d.width)))]


def auto_batch(n_windows: int, device: torch.device) -> int:
    """Windows per U-Net call when not given: all of them on CUDA (the co-denoiser halves the
    batch on out-of-memory and keeps the size that fits), 2 on the CPU."""
    return n_windows if device.type == "cuda" else min(2, n_windows)


# ----------------------------------------------------------------------------- the job

def check_long_memory(cfg: LongConfig, tuned, sizes, n_windows: int) -> None:
    """Refuse a long video whose estimated peak exceeds the free memory, before denoising:
    the co-denoiser's latents (latents, fused sum, weight sum, prediction: 4 fp32 copies),
    a batch of windows through the U-Net with CFG, the chunked decode, and the decoded uint8
    frames with the mp4 writer's copy."""
    from ... import memory

    base = tuned.base
    h, w = sizes[-1]
    f = cfg.frames
    lat_gib = 4 * 4 * f * (h // base.vae_scale) * (w // base.vae_scale) * 4 / memory.GIB
    batch = cfg.batch_windows or auto_batch(n_windows, base.device)
    scale = memory.model_scale(base.unet)
    dev = lat_gib + max(memory.sample_gib(batch * cfg.window, h, w, scale),
                        memory.sample_gib(min(f, cfg.decode_chunk), h, w, scale, cfg_batch=4))
    memory.check(memory.Need(memory.frames_gib(f, h, w, 2), dev,
                             f"a long video of {f} frames at {w}x{h}",
                             "long.frames (--frames), long.size (--size) or windows per call "
                             "(--window-batch)"), base.device)


def long_video(run_dir: str | Path, cfg: LongConfig, *, run: RunContext = RunContext(),
               sam_builder=None, model: Optional[str] = None) -> LongResult:
    """Generate the long video of ``cfg`` from the tuned run ``run_dir`` and write it as mp4.

    ``run`` carries the progress callback (load, masks, co-denoising and decode events), the
    cancel token checked between steps, the model cache the run (and SAM, structure
    conditions) load through and the device (None: CUDA where present).
    ``sam_builder`` replaces SAM's registry architecture (tests build a tiny SAM with it);
    ``model`` the base to load the run onto (None: the one it was tuned on).
    """
    from ..edit.tuned import load_tuned

    progress, cancel, cache = run.progress, run.cancel, run.cache

    t0 = time.time()
    validate_long(cfg)
    segments = long_segments(cfg)
    layout = make_layout(cfg.frames, cfg.window, cfg.stride, cfg.fusion, cfg.fusion_sigma)
    table = layout_table(layout, segments, cfg.prompt_mode)
    if cfg.masks:
        from .maskfusion import check_mask_source

        check_mask_source(cfg.mask)  # fail before loading anything
    progress(Event(0, 1, "loading the tuned model", stage="load"))
    tuned = load_tuned(run_dir, cache, run.torch_device(), model=model)
    base = tuned.base
    sizes = _sizes(cfg, tuned)
    check_long_memory(cfg, tuned, sizes, layout.n_windows)
    mp4 = output_path(cfg, tuned.run.path, segments)
    res = LongResult(mp4, np.zeros((0,), np.uint8), segments, table, layout)
    uncond = encode_prompts(base, [cfg.negative or ""])

    try:
        if cfg.masks:
            tuned = _masks_and_combined(tuned, cfg, segments, sizes[0], uncond, res, mp4, run,
                                        sam_builder)
        if cancel is not None:
            cancel.check()
        seg_emb = encode_prompts(base, [s.prompt for s in segments])
        window_cond = mix_embeddings(seg_emb, window_prompts(layout, segments, cfg.prompt_mode))
        codenoiser = CoDenoiser(tuned.model, layout, window_cond, uncond, cfg.guidance,
                                cfg.batch_windows or auto_batch(layout.n_windows, base.device))
        g = torch.Generator(base.device).manual_seed(cfg.seed)
        h, w = (s // base.vae_scale for s in sizes[0])
        latents = torch.randn((1, 4, cfg.frames, h, w), generator=g, device=base.device)
        ac = tuned.precision.autocast
        stage = f"co-denoise {sizes[0][1]}x{sizes[0][0]}"
        control = _long_control(tuned, cfg, sizes[0], codenoiser, run)
        with controlled(tuned.model, control):
            lat = denoise(tuned.model, base.scheduler_config, latents, window_cond[:1], uncond,
                          cfg.guidance, cfg.steps, eta=cfg.eta, generator=g, progress=progress,
                          cancel=cancel, autocast=ac(), predict=codenoiser, stage=stage,
                          on_x0=_x0_previews(base, cfg.steps, progress, stage))
        res.stages.append({"size": list(sizes[0]), "steps": cfg.steps, "strength": 1.0})
        for size in sizes[1:]:  # progressive refinement (MOV AI paper, PVR)
            if cancel is not None:
                cancel.check()
            lat = _upscale(base, lat, size, cfg, cancel)
            sched = ddim_scheduler(base.scheduler_config, cfg.steps, base.device)
            run_ts, start = partial_timesteps(sched.timesteps, cfg.refine_strength)
            lat = renoise(sched, lat, run_ts[0], g)
            control = _long_control(tuned, cfg, size, codenoiser, run)
            with controlled(tuned.model, control):
                lat = denoise(tuned.model, base.scheduler_config, lat, window_cond[:1], uncond,
                              cfg.guidance, cfg.steps, eta=cfg.eta, generator=g,
                              progress=progress, cancel=cancel, autocast=ac(),
                              predict=codenoiser, start_index=start,
                              stage=f"refine {size[1]}x{size[0]}",
                              on_x0=_x0_previews(base, len(run_ts), progress,
                                                 f"refine {size[1]}x{size[0]}"))
            res.stages.append({"size": list(size), "steps": len(run_ts),
                               "strength": cfg.refine_strength})
        n = cfg.frames
        progress(Event(0, n, f"decoding {n} frames", stage="decode"))
        frames = decode_to_frames(  # each chunk shown as it decodes (the last 8 frames of it)
            base, lat, cfg.decode_chunk, cancel,
            on_chunk=lambda done: progress(Event(len(done), n, f"decoded {len(done)}/{n} frames",
                                                 preview=done[-8:], stage="decode")))
    except torch.OutOfMemoryError:
        raise OutOfMemoryError(
            f"Out of device memory generating {cfg.frames} frames at {sizes[-1][1]}x"
            f"{sizes[-1][0]}; set fewer windows per call (--window-batch 1), a shorter --window "
            "or a smaller size.") from None
    res.frames = frames
    res.mp4 = write_mp4(frames, mp4, cfg.fps)
    res.seconds = time.time() - t0
    write_json(mp4.with_suffix(".json"), {
        "config": to_dict(cfg), "run": str(tuned.run.path if tuned.run else run_dir),
        "segments": [s.to_dict() for s in segments], "windows": table, "stages": res.stages,
        "mask_method": res.mask_method, "seconds": res.seconds,
        "combined_run": str(res.combined_run) if res.combined_run else None})
    progress(Event(1, 1, f"wrote {res.mp4}", stage="write"))
    return res


def _x0_previews(base, steps: int, progress: ProgressFn, stage: str, n_previews: int = 6):
    """``on_x0`` for :func:`~vcstudio.pipelines.edit.sample.denoise`: every few steps an Event whose
    preview is a low-resolution strip of the predicted x0 of the whole long video (a few
    evenly picked frames, downscaled latents: a small fraction of one decode)."""
    from ...models.encode import preview_strip

    every = max(1, int(steps) // n_previews)

    def on_x0(i: int, x0: torch.Tensor) -> None:
        if (i + 1) % every == 0 and i + 1 < steps:
            progress(Event(i + 1, steps, f"preview at step {i + 1}/{steps}",
                           preview=preview_strip(base, x0), stage=stage))
    return on_x0


def _long_control(tuned, cfg: LongConfig, size: tuple[int, int], codenoiser: CoDenoiser,
                  run: RunContext):
    """The structure control of a long video at one stage's size (None without conditions):
    conditions over all ``cfg.frames`` frames (each condition's own video, resampled to the
    length, or the tuned clip when the video is as long as it); the co-denoiser hands each
    window its frames' conditions."""
    if not cfg.control:
        codenoiser.control = None
        return None
    from ..edit.structure import build_control

    run.progress(Event(0, 1, f"structure conditions at {size[1]}x{size[0]}", stage="control"))
    timesteps = ddim_scheduler(tuned.base.scheduler_config, cfg.steps, tuned.base.device).timesteps
    control = build_control(tuned, cfg.control, cfg.frames, size[1], size[0],
                            timesteps=timesteps, cache=run.cache)
    codenoiser.control = control
    return control


def _upscale(base, lat: torch.Tensor, size: tuple[int, int], cfg: LongConfig,
             cancel) -> torch.Tensor:
    """Latents to the next scale: bilinear in latent space, or decode -> resize -> encode."""
    hw = (size[0] // base.vae_scale, size[1] // base.vae_scale)
    if cfg.refine_mode == "latent":
        return upsample_latents(lat, size=hw)
    frames = decode_to_frames(base, lat, cfg.decode_chunk, cancel)
    return encode_video(base, resize_frames(frames, size[1], size[0], "crop"), cfg.decode_chunk)


def _fusion_clip(tuned, cfg: LongConfig, prompt: str, size, uncond, run: RunContext,
                 sam_builder):
    """Secs. 3.1-3.2 on a window-length clip of ``prompt``: candidates, masks, eq. 11, eq. 12."""
    from .maskfusion import average_fusion_clip

    cond = encode_prompts(tuned.base, [prompt])
    return average_fusion_clip(tuned, cond, uncond, cfg.mask, cfg.window, size, cfg.steps,
                               cfg.guidance, cfg.seed, cfg.eta, cfg.decode_chunk, run,
                               sam_builder)


def mask_preview(run_dir: str | Path, cfg: LongConfig, *, run: RunContext = RunContext(),
                 sam_builder=None, model: Optional[str] = None):
    """Only the mask stage (secs. 3.1-3.2) of ``long_video`` with the same settings (and the
    same ``run`` context: progress, cancel token, cache, device): the candidates, their masks
    and the fused clip, to check them before the expensive steps (combined tuning and the long
    video). Returns a maskfusion.FusionResult."""
    from .maskfusion import check_mask_source
    from ..edit.tuned import load_tuned

    validate_long(cfg)
    check_mask_source(cfg.mask)
    segments = long_segments(cfg)
    run.progress(Event(0, 1, "loading the tuned model", stage="load"))
    tuned = load_tuned(run_dir, run.cache, run.torch_device(), model=model)
    uncond = encode_prompts(tuned.base, [cfg.negative or ""])
    return _fusion_clip(tuned, cfg, segments[0].prompt, _sizes(cfg, tuned)[0], uncond, run,
                        sam_builder)


def _masks_and_combined(tuned, cfg: LongConfig, segments, size, uncond, res: LongResult,
                        mp4: Path, run: RunContext, sam_builder):
    """Secs. 3.1-3.3 on a window-length clip of the first segment's prompt; returns D' (or D when
    combined tuning is off)."""
    from ...io import write_gif
    from .combined import combined_tune
    from .maskfusion import dim_background
    from ..edit.tuned import load_tuned

    base = tuned.base
    prompt = segments[0].prompt
    fr = _fusion_clip(tuned, cfg, prompt, size, uncond, run, sam_builder)
    res.masks, res.mask_method, res.fused = fr.masks, fr.method, fr.frames
    res.candidates, res.candidate_masks = fr.candidates, fr.candidate_masks
    side = mp4.parent / f"{mp4.stem}-masks"
    side.mkdir(parents=True, exist_ok=True)
    write_gif(fr.frames, side / "fused.gif", cfg.fps)
    write_gif(dim_background(fr.frames, fr.masks), side / "fused-masks.gif", cfg.fps)
    if cfg.mask.tune_steps <= 0:
        return tuned
    if run.cancel is not None:
        run.cancel.check()
    run_dir = combined_tune(tuned, fr.frames, fr.masks, prompt, cfg.mask, side, run)
    res.combined_run = run_dir
    return load_tuned(run_dir, run.cache, base.device, model=base.model_id)

