"""The convert-tav job: a Tune-A-Video output folder written as a vcstudio run (the delta of its
trainable set and temporal layers, its inversion, clip latents, config and meta with the base
fingerprint: runs/convert.py), recorded as a ``tune`` run so it edits, pushes and
compares like one. ``vcstudio convert-tav`` and the Edit tab's "Open a Tune-A-Video folder"
submit it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Limits
from .. import validate as v


@dataclass
class ConvertTavConfig:
    folder: str = ""  # the Tune-A-Video output_dir
    model: str = ""  # "" = the folder's own components; else the base it was tuned from


@dataclass
class ConvertTavOutcome:
    run_id: str
    run_dir: Path
    notes: list


def validate(cfg: ConvertTavConfig, limits: Limits) -> None:
    v.text("folder", cfg.folder, "give the Tune-A-Video output folder (its output_dir)")


def run(cfg: ConvertTavConfig, ctx) -> ConvertTavOutcome:
    import torch

    from ..runs.folder import RunFolder
    from ..runs.convert import convert_tav
    from ..progress import Event

    out = ctx.run_folder("tav")
    ctx(Event(0, 1, f"converting {Path(cfg.folder).name}", stage="load"))
    run_dir = convert_tav(cfg.folder, out, model=cfg.model or None,
                          device=torch.device(ctx.device), cache=ctx.cache)
    rf = RunFolder(run_dir)
    tcfg, meta = rf.config(), rf.meta()
    run_id = ctx.open_run("tune", run_dir, tcfg, seed=tcfg.seed,
                          label=f"Tune-A-Video {Path(cfg.folder).name}"[:80])
    ctx.add_artifact(run_id, "delta", rf.delta_path)
    ctx.finish_run(run_id)
    ctx(Event(1, 1, "converted", stage="write", outputs={"run": str(run_dir)}))
    return ConvertTavOutcome(run_id, run_dir, list(meta.get("notes") or []))
