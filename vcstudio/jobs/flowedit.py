"""The FlowEdit job: a training-free edit of a clip on a flow-matching video DiT (Wan2.1 T2V):
Kulikov et al. 2024, "FlowEdit: Inversion-Free Text-Based Editing Using Pre-Trained Flow
Models" (pipelines/flow/ode.py ``flow_edit``, pipelines/flow/edit.py ``flowedit_clip``).

Config: :class:`~vcstudio.config.FlowEditConfig` (``data.prompt`` the source prompt, ``prompt``
the target, frames and size from the clip as a tune takes them). Writes the edit as mp4 + gif and
the clip as edited (``source.mp4``) into the ``out`` it was submitted with (else a new folder),
and records an ``edit`` run with its scores (``metrics``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import FlowEditConfig, Limits
from ..settings import check
from .. import validate as v
from .edit import EditOutcome

__all__ = ["FlowEditConfig", "FlowEditOutcome", "estimate", "run", "run_flowedit", "validate"]


@dataclass
class FlowEditOutcome(EditOutcome):
    """An edit's outcome (jobs/edit.py) with FlowEdit's notes and the clip it edited."""

    notes: list = field(default_factory=list)
    source: Path = Path()


def validate(cfg: FlowEditConfig, limits: Limits) -> None:
    from ..methods.registry import check_backbone
    from ..models.family import backbone_family, rules
    from ..pipelines.flow.clip import flow_size
    from ..pipelines.flow.edit import validate_flowedit

    d = cfg.data
    v.text("data.video_path (--video)", d.video_path, "give the clip to edit")
    validate_flowedit(cfg)
    for name in ("n_frames", "stride", "start"):
        check(d, name, limits, "data.")
    v.side("data.size (--size)", d.size, limits, "the model's native size")
    check(cfg, "seed", limits)
    check(cfg, "fps", limits)
    family = backbone_family(cfg.model)
    check_backbone("flowedit", family)
    if d.width > 0 or d.height > 0:
        flow_size(d.width, d.height, d.size, (max(d.height, 1), max(d.width, 1)), rules(family))


def estimate(cfg: FlowEditConfig, device="cpu", calibration_dir=None, rate=None, **_) -> dict:
    from .flow_estimates import flowedit_estimate

    return flowedit_estimate(cfg, device, calibration_dir, rate)


def estimate_line(est: dict, device="cpu") -> str:
    from .flow_estimates import line

    return line(est, device, ["FlowEdit steps", "decode"])


def run_flowedit(cfg: FlowEditConfig, ctx, out_dir: Path | None = None,
                 parent: str | None = None, label: str = "") -> FlowEditOutcome:
    """FlowEdit into ``out_dir`` (default ``ctx.run_folder``), record, score. Compare calls
    this too."""
    from ..models.catalog import fetch
    from ..pipelines.flow.edit import flowedit_clip
    from ..progress import Event

    fetch(cfg.model, ctx, cancel=getattr(ctx, "cancel", None))  # downloaded first if missing
    out = Path(out_dir) if out_dir is not None else ctx.run_folder("flowedit")
    out.mkdir(parents=True, exist_ok=True)
    run_id = ctx.open_run("edit", out, cfg, seed=cfg.seed, parent=parent,
                          label=label or cfg.prompt[:80], reuse=False)
    from .estimates import calibration_dir

    from ..run_context import RunContext

    res = flowedit_clip(cfg, run=RunContext.of(ctx), out_dir=out, limits=ctx.limits,
                        calibration_dir=calibration_dir(ctx))
    ctx.add_artifact(run_id, "mp4", res.mp4)
    ctx.add_artifact(run_id, "gif", res.gif)
    ctx(Event(1, 1, "edit written", stage="write",
              outputs={"mp4": str(res.mp4), "gif": str(res.gif)}))
    results = {}
    if cfg.metrics:
        from ..io.atomic import write_json
        from .scoring import score, scores_json

        results = score(res.frames, ctx, run_id, cfg.metrics, prompt=cfg.prompt,
                        source=res.source)
        path = write_json(res.mp4.with_suffix(".scores.json"),
                          scores_json(results, prompt=cfg.prompt))
        ctx.add_artifact(run_id, "json", path)
    ctx.finish_run(run_id)
    return FlowEditOutcome(run_id, res.mp4, res.gif, res.frames, cfg.prompt, cfg.seed, results,
                           res.notes, out / "source.mp4")


def run(cfg: FlowEditConfig, ctx) -> FlowEditOutcome:
    from .estimates import announce

    announce(ctx, estimate, estimate_line, cfg)
    return run_flowedit(cfg, ctx, Path(ctx.out) if ctx.out else None)
