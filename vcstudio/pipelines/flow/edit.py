"""Edits on a flow-matching video DiT (Wan2.1 T2V), written as mp4 + gif like the SD edit:

* :func:`edit_flow_run` -- a tuned run's edit: the clip's latents integrated backwards along
  the probability-flow ODE of rectified flow (pipelines/flow/ode.py ``invert``, with the tuned
  LoRA, under the run's inversion prompt: the empty prompt by default, as Tune-A-Video inverts),
  cached in the run folder per step count and prompt, then sampled under the edit prompt with
  classifier-free guidance (``sample``). With ``use_inversion`` off it samples from noise.
* :func:`flowedit_clip` -- FlowEdit (Kulikov et al. 2024, "FlowEdit: Inversion-Free Text-Based
  Editing Using Pre-Trained Flow Models", Alg. 1; ``flow.flow_edit``) of a clip on the base
  model: no inversion, no tuning; frames and size taken from the clip as a tune takes them
  (pipelines/flow/clip.py).

Both stream previews (stage "sample" / "flowedit": the predicted x0's first frame) and decode
with the causal Wan VAE once at the end.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ...config import EditConfig, FlowEditConfig, check_prompt, guided_passes
from ...errors import InputError, OutOfMemoryError
from ...progress import Event, ProgressFn
from ...run_context import RunContext
from ...settings import check


@dataclass
class FlowEditResult:
    frames: np.ndarray  # uint8 (F, H, W, 3)
    mp4: Path
    gif: Path
    source: np.ndarray  # the clip's frames as edited (uint8)
    notes: list


def decode_clip(backbone, latents: torch.Tensor, progress: ProgressFn) -> np.ndarray:
    """Every frame of normalised latents, decoded once by the causal VAE -> uint8 (F, H, W, 3),
    shown as it ends (stage "decode")."""
    from ..i2v.base import to_uint8

    progress(Event(0, 1, "decoding frames", stage="decode"))
    with torch.no_grad():
        frames = to_uint8(backbone.decode(latents))
    progress(Event(1, 1, f"decoded {len(frames)} frames", preview=frames, stage="decode"))
    return frames


class _Timer:
    """Measures an edit's transformer passes and decode for the calibration (one pass and one
    decode per model at the clip's shape: vcstudio/calibration.py ``record_flow``), with the
    machine's mean load over the work (vcstudio/loadfactor.py)."""

    def __init__(self, device) -> None:
        from ... import loadfactor

        self.device = device
        self.window = loadfactor.Window(device)
        self.t = time.perf_counter()
        self.pass_s = self.decode_s = 0.0

    def lap(self) -> float:
        from ...device import synchronize

        synchronize(self.device)
        now = time.perf_counter()
        dt, self.t = now - self.t, now
        return dt

    def passes(self, n: int) -> None:
        """The work since the last lap was ``n`` transformer passes."""
        dt = self.lap()
        if n > 0:
            self.pass_s = dt / n

    def decoded(self) -> None:
        self.decode_s = self.lap()

    def record(self, folder, model: str, shape) -> None:
        from ... import calibration as cal

        f, h, w = int(shape[0]), int(shape[1]), int(shape[2])
        cal.record_flow(folder, self.device, model, (f, w, h), self.pass_s, self.decode_s,
                        self.window.rate())


def _write(frames: np.ndarray, out: Path, stem: str, fps: float) -> tuple[Path, Path]:
    from ...io import write_gif, write_mp4

    out.mkdir(parents=True, exist_ok=True)
    return write_mp4(frames, out / f"{stem}.mp4", fps), write_gif(frames, out / f"{stem}.gif", fps)


def flow_inversion(tuned, steps: int, prompt: Optional[str], *,
                   run: RunContext = RunContext(), target: Optional[str] = None) -> torch.Tensor:
    """The clip latents of ``tuned`` (a flow_run.FlowRun) inverted to noise (s ~ 1) in
    ``steps`` steps under the inversion ``prompt`` setting (None = the run's; "" empty,
    "source" the tuning prompt, "target" ``target``, the edit's), cached in the run folder
    (runs/folder.py ``inversion_path``).
    ``run``: the progress and cancel token of the inversion's steps."""
    from ...models.delta import load_tensors, save_tensors
    from .ode import invert
    from ..edit.tuned import inversion_text

    text = inversion_text(tuned.cfg, prompt, target)
    path = tuned.run.inversion_path(steps, text)
    if path.is_file():
        return load_tensors(path, tuned.backbone.device)[0]["latents"]
    emb = tuned.backbone.encode_prompts([tuned.cfg.data.prompt if text is None else text])
    x = invert(tuned.backbone, tuned.latents, emb, steps, run.progress, run.cancel)
    save_tensors(path, {"latents": x}, {"steps": steps, "prompt": text})
    return x


def edit_flow_run(run_dir: str | Path, cfg: EditConfig, *, run: RunContext = RunContext(),
                  out_dir: str | Path | None = None, fps: float = 8.0,
                  model: Optional[str] = None, preview_every: Optional[int] = None,
                  calibration_dir=None):
    """Sample an edit of a tuned flow run (module docstring) and write it -> pipelines.edit.edits's
    EditResult. ``run``: progress, cancel token, the model cache the run loads through and the
    device (None: CUDA where present). Its measured pass and decode go to
    ``calibration_dir`` (default: the data folder)."""
    from ..edit.edits import EditResult, edit_stem, validate_edit, x0_preview_every
    from .ode import sample
    from .run import load_flow_run

    validate_edit(cfg)
    if cfg.control:
        raise InputError("Structure conditions (--control) run on Stable Diffusion only; edit "
                         "this Wan run without them.")
    progress, cancel = run.progress, run.cancel
    progress(Event(0, 1, "loading the tuned model", stage="load"))
    tuned = load_flow_run(run_dir, run.device, model, run.cache)
    bb = tuned.backbone
    cond, uncond = bb.encode_prompts([cfg.prompt, cfg.negative or ""]).split(1)
    try:
        if cfg.use_inversion:
            x = flow_inversion(tuned, cfg.steps, cfg.inversion_prompt, run=run,
                               target=cfg.prompt)
        else:
            g = torch.Generator().manual_seed(int(cfg.seed))
            x = torch.randn(tuned.latents.shape, generator=g).to(tuned.latents)
        every = x0_preview_every(cfg.steps) if preview_every is None else int(preview_every)
        timer = _Timer(bb.device)
        lat = sample(bb, x, cond, cfg.steps, uncond=uncond, guidance=cfg.guidance,
                     progress=progress, cancel=cancel, preview_every=every)
        done = cancel is None or not cancel.cancelled
        timer.passes(cfg.steps * guided_passes(cfg.guidance) if done else 0)
        frames = decode_clip(bb, lat, progress)
        timer.decoded()
    except torch.OutOfMemoryError:
        raise OutOfMemoryError("Out of device memory while sampling; tune on fewer frames or a "
                               "smaller size.") from None
    timer.record(calibration_dir, tuned.meta.get("base_model") or tuned.cfg.model, frames.shape)
    mp4, gif = _write(frames, Path(out_dir) if out_dir else tuned.run.edits, edit_stem(cfg), fps)
    return EditResult(frames, mp4, gif, cfg.prompt, cfg.seed)


def n_max_of(cfg: FlowEditConfig) -> int:
    """The steps FlowEdit takes: ``n_max``, or 2/3 of ``steps`` (the paper's 33 of 50)."""
    return int(cfg.n_max) if cfg.n_max else max(1, round(cfg.steps * 33 / 50))


def flowedit_passes(cfg: FlowEditConfig) -> int:
    """Transformer passes of a FlowEdit: n_max - n_min edit steps, each n_avg x (a source and
    a target velocity, two passes each under CFG), then n_min plain steps under the target."""
    from ...config import guided_passes

    edit = (n_max_of(cfg) - cfg.n_min) * cfg.n_avg * (guided_passes(cfg.source_guidance)
                                                       + guided_passes(cfg.target_guidance))
    return edit + cfg.n_min * guided_passes(cfg.target_guidance)


def flowedit_stem(cfg: FlowEditConfig) -> str:
    """File name stem: the target prompt's slug + a hash of the whole config."""
    import hashlib
    import json

    from ...config import to_dict
    from ..edit.edits import _slug

    key = json.dumps(to_dict(cfg), sort_keys=True, ensure_ascii=False, default=str)
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"flowedit-{_slug(cfg.prompt)[:40]}-s{cfg.seed}-{digest}"


def validate_flowedit(cfg: FlowEditConfig) -> None:
    check_prompt(cfg.data.prompt, "source prompt", hint="describe what the clip shows")
    check_prompt(cfg.prompt, "edit prompt")
    check_prompt(cfg.negative, "negative prompt", required=False)
    check(cfg, "steps")
    n_max = n_max_of(cfg)
    if not 0 <= cfg.n_min <= n_max <= cfg.steps:
        raise InputError(f"FlowEdit needs 0 <= n_min <= n_max <= steps; got n_min {cfg.n_min}, "
                         f"n_max {n_max}, steps {cfg.steps}.")
    for name in ("n_avg", "source_guidance", "target_guidance"):
        check(cfg, name)


def flowedit_clip(cfg: FlowEditConfig, *, run: RunContext = RunContext(),
                  out_dir: str | Path = ".", frames: Optional[np.ndarray] = None,
                  preview_every: Optional[int] = None, limits=None,
                  calibration_dir=None) -> FlowEditResult:
    """FlowEdit of ``cfg.data``'s clip (or ``frames``) from ``cfg.data.prompt`` to
    ``cfg.prompt`` on ``cfg.model``; writes the edit (mp4 + gif) and the clip as edited
    (``source.mp4``) into ``out_dir``. ``run``: progress, cancel token, the model cache the
    base loads through and the device (None: CUDA where present). Its measured pass and
    decode go to ``calibration_dir`` (default: the data folder)."""
    from ...io import write_mp4
    from ...models.family import backbone_family, load_flow_backbone, resolved, rules
    from ..edit.edits import x0_preview_every
    from .ode import flow_edit
    from .clip import prepare_clip, read_flow_clip

    validate_flowedit(cfg)
    progress, cancel = run.progress, run.cancel
    r = rules(backbone_family(cfg.model))
    if r.parameterization != "flow":
        raise InputError(f"FlowEdit runs on a flow-matching model (Wan2.1, WanPipeline); "
                         f"{cfg.model or 'the default model'} is {r.label}. Pass --model a Wan2.1 "
                         "T2V folder or hub id, or pick a tuned method.")
    if frames is None:
        clip, data, notes = read_flow_clip(cfg.data, r, limits)
    else:
        clip, data, notes = prepare_clip(np.asarray(frames), cfg.data, r)
    for n in notes:
        progress(Event(0, 1, n, stage="load"))
    progress(Event(0, 1, "loading the model", stage="load"))
    bb = load_flow_backbone(cfg.model, run.device, cache=run.cache)
    z = bb.encode_clip(clip)
    src, tgt, neg = bb.encode_prompts([cfg.data.prompt, cfg.prompt, cfg.negative or ""]).split(1)
    bb.free_text_encoder()
    every = x0_preview_every(n_max_of(cfg)) if preview_every is None else int(preview_every)
    timer = _Timer(bb.device)
    try:
        lat = flow_edit(bb, z, src, tgt, neg, steps=cfg.steps, n_max=n_max_of(cfg),
                        n_min=cfg.n_min, n_avg=cfg.n_avg, source_guidance=cfg.source_guidance,
                        target_guidance=cfg.target_guidance,
                        generator=torch.Generator().manual_seed(int(cfg.seed)),
                        progress=progress, cancel=cancel, preview_every=every)
        done = cancel is None or not cancel.cancelled
        timer.passes(flowedit_passes(cfg) if done else 0)
        out_frames = decode_clip(bb, lat, progress)
        timer.decoded()
    except torch.OutOfMemoryError:
        raise OutOfMemoryError(f"Out of device memory in FlowEdit of {len(clip)} frames at "
                               f"{clip.shape[2]}x{clip.shape[1]}; use fewer --frames or a "
                               "smaller --size.") from None
    timer.record(calibration_dir, resolved(cfg.model), out_frames.shape)
    out = Path(out_dir)
    mp4, gif = _write(out_frames, out, flowedit_stem(cfg), cfg.fps)
    write_mp4(clip, out / "source.mp4", cfg.fps)
    return FlowEditResult(out_frames, mp4, gif, clip, notes)


__all__ = ["FlowEditResult", "decode_clip", "edit_flow_run", "flow_inversion", "flowedit_clip",
           "flowedit_passes", "flowedit_stem", "n_max_of", "validate_flowedit"]
