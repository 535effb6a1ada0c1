"""Edit a tuned clip: sample new prompts from the DDIM-inverted source latents (Tune-A-Video),
through the diffusers pipeline (pipelines/video_pipeline.py): one sampling path."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..config import EditConfig, check_prompt
from ..errors import InputError, OutOfMemoryError
from ..io import write_gif, write_mp4
from ..models.cache import ModelCache, default_cache
from ..progress import CancelToken, Event, ProgressFn, null_progress
from .encode import decode_latents, tensor_to_frames
from .tune import TunedModel, inversion_latents, load_tuned


@dataclass
class EditResult:
    frames: np.ndarray  # uint8 (F, H, W, 3)
    mp4: Optional[Path]
    gif: Optional[Path]
    prompt: str
    seed: int


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "edit"


def edit_stem(cfg: EditConfig) -> str:
    """File name stem of an edit: a readable slug of the prompt + a short hash of the WHOLE
    edit config (prompt, negative, steps, guidance, seed, inversion, eta), so two edits never
    overwrite each other (two all-emoji prompts slug to the same text)."""
    import hashlib
    import json

    from ..config import to_dict

    key = json.dumps(to_dict(cfg), sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{_slug(cfg.prompt)[:40]}-s{cfg.seed}-{digest}"


def validate_edit(cfg: EditConfig) -> None:
    check_prompt(cfg.prompt, "edit prompt")
    check_prompt(cfg.negative, "negative prompt", required=False)
    if not 1 <= cfg.steps <= 1000:
        raise InputError(f"Sampling steps must be within 1..1000, got {cfg.steps}.")
    if not 0 <= cfg.guidance <= 50:
        raise InputError(f"Guidance scale must be within 0..50, got {cfg.guidance}.")


def edit_frames(tuned: TunedModel, cfg: EditConfig, progress: ProgressFn = null_progress,
                cancel: Optional[CancelToken] = None,
                latents: Optional[torch.Tensor] = None) -> np.ndarray:
    """-> uint8 frames of the same count and size as the tuned clip, sampled through
    :class:`~vcstudio.pipelines.video_pipeline.VideoEditPipeline` (DDIM, Tune-A-Video's).
    ``latents``: start from these (validation samples pass an inversion made at another step
    count than the sampling's)."""
    from .video_pipeline import VideoEditPipeline

    validate_edit(cfg)
    base, meta = tuned.base, tuned.run.meta() if tuned.run else {}
    device = base.device
    if latents is not None:
        pass
    elif cfg.use_inversion:
        latents = inversion_latents(tuned, cfg.steps, progress, cancel)
    else:
        d = tuned.cfg.data
        f = meta.get("n_frames", d.n_frames)
        h, w = meta.get("height", d.height), meta.get("width", d.width)
        g = torch.Generator(device).manual_seed(cfg.seed)
        latents = torch.randn((1, 4, f, h // base.vae_scale, w // base.vae_scale), generator=g,
                              device=device)

    def on_step(pipe, i, t, tensors):
        if cancel is not None:
            cancel.check()
        n = pipe.num_timesteps
        progress(Event(i + 1, n, f"denoising step {i + 1}/{n}", stage="sample"))
        return tensors

    if cancel is not None:
        cancel.check()
    pipe = VideoEditPipeline.from_tuned(tuned)
    g = torch.Generator(device).manual_seed(cfg.seed)
    try:
        lat = pipe(prompt=cfg.prompt, negative_prompt=cfg.negative or "", latents=latents,
                   num_inference_steps=cfg.steps, guidance_scale=cfg.guidance, eta=cfg.eta,
                   generator=g, output_type="latent", callback_on_step_end=on_step).frames
        progress(Event(0, 1, "decoding frames", stage="decode"))
        frames = tensor_to_frames(decode_latents(base, lat))
    except torch.OutOfMemoryError:
        raise OutOfMemoryError("Out of device memory while sampling; use fewer frames or a "
                               "smaller size when tuning.") from None
    progress(Event(1, 1, "decoded", preview=frames, stage="decode"))
    return frames


def edit(run_dir: str | Path, cfg: EditConfig, progress: ProgressFn = null_progress,
         cancel: Optional[CancelToken] = None, cache: ModelCache = default_cache,
         device: Optional[torch.device] = None, out_dir: str | Path | None = None,
         fps: float = 8.0) -> EditResult:
    """Sample an edit and write it as mp4 + gif into ``out_dir`` (default: RUN/edits)."""
    validate_edit(cfg)  # before loading anything: fail fast
    tuned = load_tuned(run_dir, cache, device)
    frames = edit_frames(tuned, cfg, progress, cancel)
    out = Path(out_dir) if out_dir else tuned.run.edits
    out.mkdir(parents=True, exist_ok=True)
    stem = edit_stem(cfg)
    gif = write_gif(frames, out / f"{stem}.gif", fps)
    mp4 = write_mp4(frames, out / f"{stem}.mp4", fps)
    return EditResult(frames, mp4, gif, cfg.prompt, cfg.seed)
