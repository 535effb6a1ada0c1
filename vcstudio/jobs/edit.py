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

from ..config import EditConfig, Limits
from . import validate as v

# what the Edit tab scores each edit with (per frame, streamed in the plot)
STREAM_METRICS = ("clip_text", "consistency_adjacent", "warp_error")


@dataclass
class EditJobConfig:
    run: str = ""  # the tuned run folder
    edit: EditConfig = field(default_factory=EditConfig)
    fps: float = 8.0
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


def validate_edit(e: EditConfig, prefix: str = "") -> None:
    from ..config import check_prompt

    check_prompt(e.prompt, "edit prompt")  # empty, not UTF-8, too long: one line each
    check_prompt(e.negative, "negative prompt", required=False)
    v.whole(f"{prefix}steps (--steps)", e.steps, 1, 1000)
    v.number(f"{prefix}guidance (--guidance)", e.guidance, 0, 50)
    v.seed(f"{prefix}seed (--seed)", e.seed)
    v.number(f"{prefix}eta", e.eta, 0, 1)


def validate(cfg: EditJobConfig, limits: Limits) -> None:
    v.text("run (--run)", cfg.run, "give the run folder `vcstudio tune` printed")
    validate_edit(cfg.edit, "edit.")
    v.number("fps (--fps)", cfg.fps, 0, 240, open_lo=True)


def run_edit(cfg: EditJobConfig, ctx, parent: Optional[str] = None,
             out_dir: Optional[Path] = None) -> EditOutcome:
    """Edit, write (into ``out_dir``, default ``RUN/edits``), record, score. Other jobs
    (compare, a sweep cell) call this too."""
    import torch

    from ..pipelines.edit import edit
    from ..pipelines.runs import open_run
    from ..progress import Event

    rf = open_run(cfg.run, device=ctx.device)
    if parent is None:
        parent = ctx.find_run(rf.path, "tune")
    out = Path(out_dir) if out_dir is not None else rf.edits
    run_id = ctx.open_run("edit", out, cfg, seed=cfg.edit.seed, parent=parent,
                          label=cfg.edit.prompt[:80], reuse=False)
    res = edit(rf.path, cfg.edit, progress=ctx, cancel=ctx.cancel, cache=ctx.cache,
               device=torch.device(ctx.device), out_dir=out, fps=cfg.fps)
    ctx.add_artifact(run_id, "mp4", res.mp4)
    ctx.add_artifact(run_id, "gif", res.gif)
    ctx(Event(1, 1, "edit written", stage="write",
              outputs={"mp4": str(res.mp4), "gif": str(res.gif)}))
    results = {}
    if cfg.metrics:
        from ..io import read_video

        source = read_video(rf.source_path) if rf.source_path.is_file() else None
        from ..pipelines.runs import write_json
        from .scoring import score, scores_json

        results = score(res.frames, ctx, run_id, cfg.metrics, prompt=cfg.edit.prompt,
                        source=source)
        path = write_json(res.mp4.with_suffix(".scores.json"),
                          scores_json(results, prompt=cfg.edit.prompt))
        ctx.add_artifact(run_id, "json", path)
    ctx.finish_run(run_id)
    return EditOutcome(run_id, res.mp4, res.gif, res.frames, cfg.edit.prompt, cfg.edit.seed,
                       results)


def run(cfg: EditJobConfig, ctx) -> EditOutcome:
    return run_edit(cfg, ctx, out_dir=Path(ctx.out) if ctx.out else None)
