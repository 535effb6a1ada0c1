"""Long Video on a flow-matching video DiT (Wan2.1 T2V): temporal co-denoising of overlapping
windows (consistency-tuning paper, eqs. 18-19; Gen-L-Video) on the base model or a tuned run's
LoRA, one prompt per window from the timeline.

    timeline (prompts | story | segments, video frames)  ->  latent grid (windows.latent_grid)
    prompts: every segment's (and the negative) UMT5 states, once; the encoder freed
    noise of the latent video (seeded, CPU generator)  ->  Euler over the scheduler's sigmas,
    every step each window's CFG velocity, fused per latent frame (eq. 19: long/codenoise.py)
    decode once (the causal VAE)  ->  cut back to the asked frames  ->  mp4 (atomic)

Windows in LATENT frames: the Wan VAE packs 4 frames per latent frame after the first, so a
window of K video frames is (K - 1) / 4 + 1 latent frames; the user still counts in video
frames and the job says in one line what it rounded (windows.latent_grid). A window that starts
inside the video puts an ordinary latent frame where the model was trained to see the causal
VAE's lone first frame; no peer documents a fix and the fused overlaps keep those windows in
step with their neighbours, so vcstudio lays windows out as Gen-L-Video does and says so here.

Why fusing velocities is eq. 19: the windows see the same x_s on the frames they share and an
Euler step x + (s' - s) v is affine in v, so with weights summing to 1 per frame stepping the
fused velocity equals fusing the windows' steps (the minimiser of eq. 19), as for DDIM.

Stable Diffusion-only parts of a long video (the mask stage, progressive refinement, structure
control, DDIM's eta) are refused in one line each.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Optional

import torch

from ...config import LongConfig, to_dict
from ...errors import InputError, OutOfMemoryError
from ...progress import Event, ProgressFn
from ...run_context import RunContext
from ..long.codenoise import CoDenoiser
from ..long.video import LongResult, auto_batch, check_sampling, long_segments, output_path
from ..long.windows import (LatentGrid, WindowLayout, grid_table, latent_grid, latent_segments,
                           layout_table, make_layout, mix_embeddings, window_prompts)

# the frame a base model generates without a clip: Wan2.1-T2V-1.3B's 480p (height, width);
# --size sets its long side, as the Wan tune's --size does
NATIVE_FRAME = (480, 832)


def flow_grid(cfg: LongConfig, temporal: int) -> tuple[LatentGrid, WindowLayout]:
    """The latent grid of ``cfg`` and its window layout in latent frames (a Gaussian fusion's
    sigma, given in video frames, in latent frames too)."""
    grid = latent_grid(cfg.frames, cfg.window, cfg.stride, temporal)
    sigma = None if cfg.fusion_sigma is None else max(1e-3, cfg.fusion_sigma / temporal)
    return grid, make_layout(grid.latent_frames, grid.latent_window, grid.latent_stride,
                             cfg.fusion, sigma)


def validate_flow_long(cfg: LongConfig, label: str = "Wan2.1") -> None:
    """What a flow model's long video cannot do (one line each), and the sampling ranges."""
    check_sampling(cfg)
    sd_only = [("--masks (SAM masks, average fusion and combined tuning)", cfg.masks),
               ("--refine (progressive refinement)", bool(cfg.refine)),
               ("--control (structure conditions)", bool(cfg.control))]
    for what, on in sd_only:
        if on:
            raise InputError(f"{what} runs on Stable Diffusion runs only; drop it for this "
                             f"{label} long video.")
    if cfg.eta:
        raise InputError(f"eta (DDIM's noise) has no meaning on {label}'s flow ODE; leave it at "
                         "0.")


def long_size(cfg: LongConfig, clip_hw: Optional[tuple[int, int]], rules
              ) -> tuple[tuple[int, int], str]:
    """((height, width), note): the tuned clip's size ``clip_hw`` (None, a base model: its
    native frame), or ``--size`` as the long side with that aspect kept, on the family's
    multiple as the Wan tune rounds it (pipelines/flow/clip.py); the note says when ``--size``
    was rounded."""
    from .clip import flow_size

    if not cfg.size and clip_hw:
        return clip_hw, ""
    w, h = flow_size(0, 0, cfg.size, clip_hw or NATIVE_FRAME, rules)
    note = ""
    if cfg.size and max(w, h) != cfg.size:
        note = (f"--size {cfg.size} is rounded to {max(w, h)} ({rules.label} takes sides in "
                f"multiples of {rules.multiple}): {w}x{h}")
    return (h, w), note


def _previews(backbone, steps: int, progress: ProgressFn, stage: str, n_previews: int = 6):
    """``on_x0`` for flow.sample: every few steps an Event whose preview is a strip of the
    predicted x0 over the whole long video (a few latent frames, each decoded on its own)."""
    from ..i2v.base import to_uint8

    every = max(1, int(steps) // n_previews)

    def on_x0(k: int, x0: torch.Tensor) -> None:
        if (k + 1) % every == 0 and k + 1 < steps:
            progress(Event(k + 1, steps, f"preview at step {k + 1}/{steps}",
                           preview=to_uint8(backbone.glimpse(x0)), stage=stage))
    return on_x0


def flow_long_video(cfg: LongConfig, run_dir: str | Path | None = None,
                    model: Optional[str] = None, out_root: str | Path | None = None, *,
                    run: RunContext = RunContext()) -> LongResult:
    """The long video of ``cfg`` on a tuned flow run's LoRA (``run_dir``; ``model`` overrides
    its base) or on a flow base model (``model``, no run), written as mp4 (``cfg.out``, else
    under the run folder or ``out_root``) with a JSON beside it. ``run``: progress, cancel
    token, the model cache the parts load through and the device (None: CUDA where present).
    Returns a longvideo.LongResult."""
    from ...io import write_mp4
    from ...models.family import backbone_family, load_flow_backbone, rules
    from .ode import sample
    from .edit import decode_clip
    from ...io.atomic import write_json

    t0, progress, cancel = time.time(), run.progress, run.cancel
    if run_dir is None and not model:
        raise InputError("A long video needs a tuned run (--run) or a base model (--model).")
    notes: list[str] = []
    segments = long_segments(cfg)
    progress(Event(0, 1, "loading the model", stage="load"))
    if run_dir is not None:
        from .run import load_flow_run

        fr = load_flow_run(run_dir, run.device, model, run.cache)
        bb, meta = fr.backbone, fr.meta
        r = rules(str(meta.get("backbone") or "wan"))
        clip_hw = (int(meta.get("height", fr.cfg.data.height)),
                   int(meta.get("width", fr.cfg.data.width)))
        root = fr.run.path
    else:
        r = rules(backbone_family(model))
        bb = load_flow_backbone(model, run.device, cache=run.cache)
        clip_hw, root = None, Path(out_root or ".")
    validate_flow_long(cfg, r.label)
    grid, layout = flow_grid(cfg, bb.r_t)
    (h, w), size_note = long_size(cfg, clip_hw, r)
    notes += [n for n in (grid.note, size_note) if n]
    for n in notes:
        progress(Event(0, 1, n, stage="load"))
    lat_segs = latent_segments(segments, grid)
    assign = window_prompts(layout, lat_segs, cfg.prompt_mode)
    table = grid_table(layout_table(layout, lat_segs, cfg.prompt_mode), grid)
    mp4 = output_path(cfg, root, segments)

    progress(Event(0, 1, f"encoding {len(segments)} segment prompts", stage="load"))
    emb = bb.encode_prompts([s.prompt for s in segments] + [cfg.negative or ""])
    bb.free_text_encoder()  # every prompt is encoded: UMT5 (~11 GB) is not needed again
    seg_emb, uncond = emb[:-1], emb[-1:]
    window_cond = mix_embeddings(seg_emb, assign)
    codenoiser = CoDenoiser(bb.predict, layout, window_cond, uncond, cfg.guidance,
                            cfg.batch_windows or auto_batch(layout.n_windows, bb.device))
    z_dim = bb.parts.vae.config.z_dim
    g = torch.Generator().manual_seed(int(cfg.seed))  # CPU: the same noise on every device
    noise = torch.randn((1, z_dim, grid.latent_frames, h // bb.r_s, w // bb.r_s),
                        generator=g).to(bb.device)
    stage = f"co-denoise {w}x{h}"

    def staged(e: Event) -> None:  # flow.sample's step events, under the long video's stage
        progress(dataclasses.replace(e, stage=stage) if e.stage == "sample" else e)

    try:
        lat = sample(bb, noise, window_cond[:1], cfg.steps, uncond=uncond,
                     guidance=cfg.guidance, progress=staged, cancel=cancel,
                     predict=codenoiser, on_x0=_previews(bb, cfg.steps, progress, stage))
        frames = decode_clip(bb, lat, progress)[:cfg.frames]
    except torch.OutOfMemoryError:
        raise OutOfMemoryError(
            f"Out of device memory generating {cfg.frames} frames at {w}x{h}; set fewer windows "
            "per call (--window-batch 1), a shorter --window or a smaller --size.") from None
    res = LongResult(mp4, frames, segments, table, layout, notes=notes, latents=lat)
    res.stages.append({"size": [h, w], "steps": cfg.steps, "strength": 1.0})
    res.mp4 = write_mp4(frames, mp4, cfg.fps)
    res.seconds = time.time() - t0
    write_json(mp4.with_suffix(".json"), {
        "config": to_dict(cfg), "run": str(run_dir) if run_dir is not None else None,
        "model": str(getattr(bb.parts, "source", model)), "backbone": r.name,
        "latent": {"frames": grid.latent_frames, "window": grid.latent_window,
                   "stride": grid.latent_stride, "made_frames": grid.made},
        "segments": [s.to_dict() for s in segments], "windows": table, "stages": res.stages,
        "notes": notes, "seconds": res.seconds})
    progress(Event(1, 1, f"wrote {res.mp4}", stage="write"))
    return res


__all__ = ["NATIVE_FRAME", "flow_grid", "flow_long_video", "long_size", "validate_flow_long"]
