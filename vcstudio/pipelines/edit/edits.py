"""Edit a tuned clip: sample new prompts from the DDIM-inverted source latents (Tune-A-Video),
through the diffusers pipeline (pipelines/edit/video_pipeline.py): one sampling path."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ...config import check_prompt, EditConfig
from ...errors import OutOfMemoryError
from ...io import write_gif, write_mp4
from ...progress import Event
from ...run_context import RunContext
from ...settings import check
from ...models.encode import decode_to_frames, preview_strip
from .tuned import TunedModel, inversion_latents, load_tuned


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

    from ...config import to_dict

    d = to_dict(cfg)
    if not d.get("control"):  # uncontrolled edits keep the names they always had
        d.pop("control", None)
    key = json.dumps(d, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{_slug(cfg.prompt)[:40]}-s{cfg.seed}-{digest}"


def validate_edit(cfg: EditConfig, prefix: str = "") -> None:
    """An edit's settings, each against its declared range (the edit job's validate step and
    the pipeline's own check before loading anything): one-line errors naming the setting."""
    check_prompt(cfg.prompt, "edit prompt")  # empty, not UTF-8, too long: one line each
    check_prompt(cfg.negative, "negative prompt", required=False)
    for name in ("steps", "guidance", "seed", "eta"):
        check(cfg, name, prefix=prefix)
    if cfg.control:
        from ...control import validate_controls

        validate_controls(cfg.control, f"{prefix}control (--control)")
    if cfg.inversion_prompt is not None:
        from ... import validate as v

        v.check_inversion_prompt(cfg.inversion_prompt)


def x0_preview_every(steps: int, n_previews: int = 6) -> int:
    """Denoising steps between streamed x0 previews: about ``n_previews`` per edit."""
    return max(1, int(steps) // max(1, n_previews))


def check_edit_memory(tuned: TunedModel, meta: dict, decode_chunk: int) -> None:
    """Refuse an edit whose estimated peak exceeds the free memory (before sampling): the
    sampler's CFG batch, the chunked decode and the frames + their mp4/gif copies."""
    from ... import memory

    d = tuned.cfg.data
    f = int(meta.get("n_frames", d.n_frames))
    h, w = int(meta.get("height", d.height)), int(meta.get("width", d.width))
    scale = memory.model_scale(tuned.base.unet)
    dev = max(memory.sample_gib(f, h, w, scale),
              memory.sample_gib(min(f, decode_chunk), h, w, scale, cfg_batch=4))  # VAE decode
    memory.check(memory.Need(memory.frames_gib(f, h, w, 3), dev,
                             f"an edit of {f} frames at {w}x{h}",
                             "the tune's frames or width/height (tune again smaller)"),
                 tuned.base.device)


def edit_frames(tuned: TunedModel, cfg: EditConfig, *, run: RunContext = RunContext(),
                conditions: Optional[list] = None,
                latents: Optional[torch.Tensor] = None, preview_every: Optional[int] = None,
                decode_chunk: int = 4) -> np.ndarray:
    """-> uint8 frames of the same count and size as the tuned clip, sampled through
    :class:`~vcstudio.pipelines.edit.video_pipeline.VideoEditPipeline` (DDIM, Tune-A-Video's).
    ``latents``: start from these (validation samples pass an inversion made at another step
    count than the sampling's). ``run``: its progress gets the sampling and decoding events,
    its cancel token is checked every step, its cache serves the structure conditions (the
    device is the tuned model's).

    Streams what it makes: every ``preview_every`` denoising steps (default ~6 per edit; 0 =
    none) an Event (stage "sample") whose ``preview`` is a low-resolution strip of the
    scheduler's predicted x0 (:func:`~vcstudio.models.encode.preview_strip`: a few frames,
    downscaled latents, ~1-2% of a full decode), then the frames as each chunk of
    ``decode_chunk`` frames decodes (stage "decode"; the chunking also bounds the decoder's
    memory).

    ``cfg.control``: structure conditions of the tuned clip (or their own videos) steer every
    frame through ControlNets / T2I-Adapters (pipelines/edit/structure.py); ``conditions`` (uint8
    frames per condition) replaces their extraction."""
    from .video_pipeline import VideoEditPipeline

    validate_edit(cfg)
    progress, cancel = run.progress, run.cancel
    base, meta = tuned.base, tuned.run.meta() if tuned.run else {}
    device = base.device
    check_edit_memory(tuned, meta, decode_chunk)
    control = None
    if cfg.control:
        from .structure import build_control

        d = tuned.cfg.data
        progress(Event(0, 1, "structure conditions", stage="control"))
        control = build_control(tuned, cfg.control, int(meta.get("n_frames", d.n_frames)),
                                int(meta.get("width", d.width)), int(meta.get("height", d.height)),
                                cache=run.cache, conditions=conditions)
    if latents is not None:
        pass
    elif cfg.use_inversion:
        latents = inversion_latents(tuned, cfg.steps, progress, cancel,
                                    prompt=cfg.inversion_prompt, target=cfg.prompt)
    else:
        d = tuned.cfg.data
        f = meta.get("n_frames", d.n_frames)
        h, w = meta.get("height", d.height), meta.get("width", d.width)
        g = torch.Generator(device).manual_seed(cfg.seed)
        latents = torch.randn((1, 4, f, h // base.vae_scale, w // base.vae_scale), generator=g,
                              device=device)

    every = x0_preview_every(cfg.steps) if preview_every is None else int(preview_every)
    from ...progress import StepTimer

    timer = StepTimer(cfg.steps)

    def on_step(pipe, i, t, tensors):
        if cancel is not None:
            cancel.check()
        n = pipe.num_timesteps
        x0 = tensors.get("pred_original_sample")
        strip = None
        if every and x0 is not None and (i + 1) % every == 0 and i + 1 < n:
            strip = preview_strip(base, x0)
        progress(Event(i + 1, n, f"denoising step {i + 1}/{n}", preview=strip, stage="sample",
                       eta=timer.tick()))
        return {}

    if cancel is not None:
        cancel.check()
    pipe = VideoEditPipeline.from_tuned(tuned)
    g = torch.Generator(device).manual_seed(cfg.seed)
    try:
        lat = pipe(prompt=cfg.prompt, negative_prompt=cfg.negative or "", latents=latents,
                   num_inference_steps=cfg.steps, guidance_scale=cfg.guidance, eta=cfg.eta,
                   generator=g, output_type="latent", callback_on_step_end=on_step,
                   callback_on_step_end_tensor_inputs=["pred_original_sample"],
                   control=control).frames
        n = lat.shape[2]
        progress(Event(0, n, "decoding frames", stage="decode"))
        frames = decode_to_frames(
            base, lat, decode_chunk, cancel,
            on_chunk=lambda done: progress(Event(len(done), n, f"decoded {len(done)}/{n} frames",
                                                 preview=done, stage="decode")))
    except torch.OutOfMemoryError:
        raise OutOfMemoryError("Out of device memory while sampling; use fewer frames or a "
                               "smaller size when tuning.") from None
    return frames


def edit(run_dir: str | Path, cfg: EditConfig, *, run: RunContext = RunContext(),
         out_dir: str | Path | None = None, fps: float = 8.0,
         model: Optional[str] = None) -> EditResult:
    """Sample an edit and write it as mp4 + gif into ``out_dir`` (default: RUN/edits).
    ``model`` loads the run onto that base instead of the one its config names (its
    fingerprint must still match). ``run``: progress, cancel token, the model cache the run
    loads through and the device it loads onto (None: CUDA where present)."""
    validate_edit(cfg)  # before loading anything: fail fast
    tuned = load_tuned(run_dir, run.cache, run.torch_device(), model=model)
    frames = edit_frames(tuned, cfg, run=run)
    out = Path(out_dir) if out_dir else tuned.run.edits
    out.mkdir(parents=True, exist_ok=True)
    stem = edit_stem(cfg)
    gif = write_gif(frames, out / f"{stem}.gif", fps)
    mp4 = write_mp4(frames, out / f"{stem}.mp4", fps)
    return EditResult(frames, mp4, gif, cfg.prompt, cfg.seed)
