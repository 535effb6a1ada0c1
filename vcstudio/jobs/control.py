"""The control_preview job: the condition frames a structure setting gives, before generating.

Config: :class:`ControlPreviewConfig` = a tuned run (its clip, size and crop) + the conditions
(ControlConfig; their models are not loaded: a preview shows what they would be fed) + the
frame count (0 = the run's clip; a long video's length otherwise). Returns, per condition, its
uint8 (F, H, W, 3) frames and a label. Nothing is recorded: a preview is not a run.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import ControlConfig, Limits
from .. import validate as v


@dataclass
class ControlPreviewConfig:
    run: str = ""  # the tuned run folder
    control: list[ControlConfig] = field(default_factory=list)
    frames: int = 0  # 0 = the run's clip length


@dataclass
class ControlPreview:
    conditions: list[np.ndarray]  # uint8 (F, H, W, 3) per condition
    labels: list[str]


def validate(cfg: ControlPreviewConfig, limits: Limits) -> None:
    from ..control.conditions import check_kind
    from ..errors import InputError

    v.text("run", cfg.run, "tune a clip first and give its run folder")
    if not cfg.control:
        raise InputError("Pick a condition (canny, depth, pose or an uploaded video) to preview.")
    for c in cfg.control:
        check_kind(c.kind)
    v.whole("frames", cfg.frames, 0, limits.max_long_frames, " (0 = the run's clip)")


def run(cfg: ControlPreviewConfig, ctx) -> ControlPreview:
    from ..control.conditions import LABELS
    from ..runs.convert import prepare_run
    from ..pipelines.edit.structure import clip_conditions, run_clip
    from ..progress import Event

    rf = prepare_run(cfg.run, device=ctx.device)
    data = rf.config().data
    meta = rf.meta()
    n = int(cfg.frames or meta.get("n_frames", data.n_frames))
    w, h = int(meta.get("width", data.width)), int(meta.get("height", data.height))
    clip = run_clip(rf, data) if any(not c.video for c in cfg.control) else None
    if clip is not None and len(clip) != n:
        clip = None  # a long video: each condition needs its own video (one-line error)
    ctx(Event(0, 1, "structure conditions", stage="control"))
    conds = clip_conditions(cfg.control, clip, n, w, h, data.resize, data.crop, ctx.device)
    ctx(Event(1, 1, "conditions ready", stage="control"))
    return ControlPreview(conds, [f"{LABELS[c.kind]} x{c.scale:g}" for c in cfg.control])
