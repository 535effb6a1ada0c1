"""Validation samples while tuning, in Tune-A-Video's layout.

Tune-A-Video's train script samples every ``validation_data.prompts`` prompt every
``validation_steps`` steps: it DDIM-inverts the clip with the current weights (``use_inv_latent``,
``num_inv_steps``) and samples from those latents with ``num_inference_steps`` at
``guidance_scale``, writing ``samples/sample-<step>/<prompt>.gif``. vcstudio does the same at
those steps and at the end of tuning (TuneConfig.validation), with its own inversion
(pipelines/tune/loop.py ``inversion_latents``, the run's inversion setting) and sampling path (the
edit's), and lists every sample in meta.json under ``samples``.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Optional

import torch

from ...config import EditConfig, TuneConfig
from ...progress import Event, null_progress
from ...run_context import RunContext


def validation_due(cfg: TuneConfig, step: int) -> bool:
    """Sample after ``step`` steps? Every ``validation.every`` steps and at the last one."""
    v = cfg.validation
    if not v.prompts:
        return False
    return step == cfg.steps or (v.every > 0 and step % v.every == 0)


def sample_file_name(prompt: str) -> str:
    """``<prompt>.gif`` as Tune-A-Video names it, made safe as one file name: path separators,
    control characters and leading dots go, and it is cut to 150 characters."""
    name = re.sub(r"[\x00-\x1f/\\:*?\"<>|]+", "_", prompt).strip().lstrip(".")[:150]
    return (name or "sample") + ".gif"


def write_validation_samples(tuned, step: int, run: RunContext = RunContext(),
                             latents0: Optional[torch.Tensor] = None,
                             final: bool = False) -> list[dict]:
    """Sample every validation prompt with the model as it is after ``step`` steps into
    ``RUN/samples/sample-<step>/``; returns the meta entries ({step, prompt, path}).
    ``run``: the tune's context (its progress gets one "validate" event per prompt, its cancel
    token stops the samples, its cache serves structure conditions).

    During tuning the inversion is made with the current weights and not cached (the run's
    ``inversion-<N>`` file holds the final model's); ``final`` reuses the run's own."""
    from ...io import write_gif
    from ..edit.edits import edit_frames
    from ..edit.tuned import inversion_latents

    progress, cancel = run.progress, run.cancel
    cfg, rf = tuned.cfg, tuned.run
    v = cfg.validation
    folder = rf.path / "samples" / f"sample-{step}"
    folder.mkdir(parents=True, exist_ok=True)
    model = tuned.model
    was_training = model.training
    model.eval()
    entries = []
    try:
        latents = None
        if v.use_inversion:
            progress(Event(0, 1, f"validation at step {step}: inverting the clip",
                           stage="validate"))
            src = tuned if final else dataclasses.replace(tuned, run=None)
            if latents0 is None:
                from ...models.delta import load_tensors

                latents0 = load_tensors(rf.path / "clip-latents.safetensors",
                                        tuned.base.device)[0]["latents"]
            latents = inversion_latents(src, cfg.inversion_steps, cancel=cancel,
                                        latents0=latents0)
        for i, prompt in enumerate(v.prompts):
            progress(Event(i, len(v.prompts), f"validation at step {step}: {prompt[:60]}",
                           stage="validate"))
            ec = EditConfig(prompt=prompt, steps=v.steps, guidance=v.guidance, seed=cfg.seed,
                            use_inversion=v.use_inversion)
            # the samples' own steps are not streamed: the "validate" events above stand
            frames = edit_frames(dataclasses.replace(tuned, run=rf), ec,
                                 run=run.with_(progress=null_progress), latents=latents)
            path = write_gif(frames, folder / sample_file_name(prompt), v.fps)
            entries.append({"step": step, "prompt": prompt,
                            "path": str(path.relative_to(rf.path))})
    finally:
        model.train(was_training)
    listed = [e for e in rf.meta().get("samples", []) if e.get("step") != step]
    rf.update_meta(samples=listed + entries)
    return entries


def sample_paths(run_dir: str | Path) -> list[Path]:
    """The validation gifs meta.json lists for a run (those still on disk)."""
    from ...runs.folder import RunFolder

    rf = RunFolder(Path(run_dir))
    return [rf.path / e["path"] for e in rf.meta().get("samples", [])
            if (rf.path / e["path"]).is_file()]
