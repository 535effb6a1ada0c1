"""Structure control for the sampling jobs: the tuned clip's conditions -> a StructureControl.

The edit (pipelines/edit/edits.py), long video (pipelines/long/video.py) and tuning
(pipelines/tune/loop.py) all build their control here, from the frames the run was tuned on (same size, same crop), so a
condition lines up with the latents it steers.
"""
from __future__ import annotations

import contextlib
from typing import Optional, Sequence

import numpy as np
import torch

from ...control import validate_controls
from ...control.conditions import conditions_for
from ...control.models import StructureControl, build_units
from ...errors import InputError
from ...models.cache import ModelCache, default_cache


def tuned_clip(tuned) -> np.ndarray:
    """The clip a run was tuned on, at its tuned size and crop (see :func:`run_clip`)."""
    return run_clip(tuned.run, tuned.cfg.data)


def run_clip(rf, data) -> np.ndarray:
    """The clip run folder ``rf`` was tuned on with ``data`` (its DataConfig), at the tuned size
    and crop: re-read from the source video with the run's sampling and fit when that file is
    still there (exact frames), else the run's source.mp4 (its viewable copy)."""
    import dataclasses
    from pathlib import Path

    from ...io import fit_frames, preview_clip, read_video

    d = data
    meta = rf.meta() if rf is not None else {}
    f = int(meta.get("n_frames", d.n_frames))
    h, w = int(meta.get("height", d.height)), int(meta.get("width", d.width))
    if d.video_path and Path(d.video_path).exists():
        frames = preview_clip(dataclasses.replace(d, n_frames=f, width=w, height=h))
        if len(frames) == f:
            return frames
    if rf is not None and rf.source_path.is_file():
        return fit_frames(read_video(rf.source_path), w, h, d.resize, d.crop)[:f]
    raise InputError("This run keeps no copy of its clip (source.mp4), so conditions cannot be "
                     "taken from it: give each condition a video (--control-video PATH).")


def clip_conditions(controls, clip: Optional[np.ndarray], count: int, width: int, height: int,
                    resize: str = "crop", crop: str = "center", device=None) -> list[np.ndarray]:
    """uint8 (count, height, width, 3) condition frames for each ControlConfig."""
    return [conditions_for(c, clip, count, width, height, resize, crop, device)
            for c in controls]


def _loaded(cache: ModelCache, device) -> dict:
    """Loaded control models by source, kept in the session's model cache (one entry)."""
    return cache.get(("control-models", str(device)), dict)


def build_control(tuned, controls, count: int, width: int, height: int,
                  clip: Optional[np.ndarray] = None, timesteps: Optional[Sequence] = None,
                  cache: ModelCache = default_cache,
                  conditions: Optional[list[np.ndarray]] = None) -> StructureControl:
    """ControlConfigs of a job -> the StructureControl for ``tuned``'s video U-Net.

    ``clip``: frames the conditions are extracted from (default: the run's tuned clip) unless a
    condition has its own video; ``conditions`` replaces the extraction altogether."""
    validate_controls(controls)
    base = tuned.base
    d = tuned.cfg.data
    if conditions is None:
        if clip is None and any(not c.video for c in controls):
            clip = tuned_clip(tuned)
        conditions = clip_conditions(controls, clip, count, width, height, d.resize, d.crop,
                                     base.device)
    dtype = tuned.precision.frozen_dtype if tuned.precision.autocast_dtype else torch.float32
    units = build_units(controls, conditions, tuned.model.config, base.device, dtype,
                        _loaded(cache, base.device))
    return StructureControl(units, timesteps)


def controlled(model, control: Optional[StructureControl]):
    """``model.controlled(control)`` for a VideoDenoiser; a no-op context without control."""
    if control is None:
        return contextlib.nullcontext()
    return model.controlled(control)
