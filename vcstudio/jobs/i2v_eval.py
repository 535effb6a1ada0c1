"""The I2V evaluation job: base vs VCD-tuned on the same images and seeds, every video scored
(VBench-I2V / VBench columns, VCD, CLIP text alignment), mean and 95% interval over the seeds,
as the VCD paper's Table 2 reports its five runs (pipelines/i2v/eval.py).

Config: :class:`I2VEvalConfig`. Writes ``videos.csv`` (a row per video), ``summary.csv`` (a row
per image x arm and per arm over all images: mean and interval per column), ``eval.json``
(both, the plot's rows and the metric definitions) and, per image, the first seed's base and
tuned mp4s; records an ``i2v_eval`` run with the per-arm means.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..config import Limits, sampling_steps
from ..settings import check
from .. import validate as v
from .i2v_ab import (BACKBONES, check_model, check_step_cache, figures, load_image_for,
                     open_backbone)


@dataclass
class I2VEvalConfig:
    model: str = ""
    lora: str = ""  # the tuned LoRA (.safetensors), required: base = LoRA off, tuned = on
    images: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)  # one per image or one for all
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])  # the paper: five runs
    backbone: str = "auto"
    frames: int = 0  # 0 = the model's own (Wan: the paper's 25)
    height: int = 0
    width: int = 0
    steps: int = sampling_steps(30, flag="--steps")  # the paper's denoising steps
    encoder: str = "auto"  # VCD encoder
    vcd_size: int = 224  # VCD's frame size (the paper's); scores compare only at one size
    vcd_num_proj: int = 256  # VCD's sliced-Wasserstein projections (FDL's)
    clip: str = ""  # CLIP for background / I2V background / text alignment ("" = default)
    dino: str = ""  # DINO for subject / I2V subject ("" = facebook/dino-vitb16)
    step_cache: Optional[float] = None
    fps: float = 8.0


@dataclass
class I2VEvalOutcome:
    run_id: str
    out: Path
    videos: list  # pipelines.i2v.eval.VideoScore
    summary: list[dict]
    table: dict  # {"headers", "data"}
    plot: list[dict]  # consistency vs dynamic degree rows
    files: list[Path]
    note: str = ""


def validate(cfg: I2VEvalConfig, limits: Limits) -> None:
    from ..errors import InputError

    check_model(cfg.model)
    v.text("lora (--lora)", cfg.lora, "give the tuned LoRA to compare with the base model")
    if not cfg.images:
        raise InputError("images (--images) is empty: give at least one conditioning image.")
    if len(cfg.prompts) not in (0, 1, len(cfg.images)):
        raise InputError(f"Give one prompt per image ({len(cfg.images)}) or one for all, not "
                         f"{len(cfg.prompts)}.")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise InputError("seeds (--seeds) must be one or more distinct seeds (the paper: 5).")
    for s in cfg.seeds:
        v.seed("seeds (--seeds)", s)
    v.choice("backbone (--backbone)", cfg.backbone, BACKBONES)
    v.whole("frames (--frames)", cfg.frames, 0, limits.max_frames, " (0 = the model's own)")
    for name in ("height", "width"):
        v.whole(f"{name} (--{name})", getattr(cfg, name), 0, limits.max_side,
                " (0 = the model's own)")
    check(cfg, "steps", limits)
    v.whole("vcd_size (--vcd-size)", cfg.vcd_size, 32, 1024)
    v.whole("vcd_num_proj (--vcd-num-proj)", cfg.vcd_num_proj, 1, 4096)
    check_step_cache(cfg.step_cache)


def estimate(cfg: I2VEvalConfig, device="cpu") -> dict:
    """Seconds: images x seeds x 2 samples at the backbone's figures (i2v_ab.figures),
    scoring not counted."""
    f = figures(cfg.model, cfg.backbone, cfg.frames or None, cfg.height or None,
                cfg.width or None, cfg.steps, device)
    n = len(cfg.images) * len(cfg.seeds) * 2
    return {"seconds": round(f["sample_s"] * n, 1), "how": f["how"],
            "peak_gib": round(f["sample_gib"], 1)}


def run(cfg: I2VEvalConfig, ctx) -> I2VEvalOutcome:
    import csv

    import torch

    from ..io import write_mp4
    from ..methods.vcd import VCD
    from ..models.lora import load_lora
    from ..pipelines.i2v import eval as E
    from ..run_context import RunContext
    from ..pipelines.i2v.backbones import check_i2v_memory
    from ..io.atomic import write_json
    from .eval import vcd_encoder

    device = torch.device(ctx.device)
    bb = open_backbone(cfg, ctx)
    n, h, w = cfg.frames or None, cfg.height or None, cfg.width or None
    bb.check(n, h, w)  # before a run is recorded: a refusal leaves nothing
    load_lora(cfg.lora, bb.denoiser, backbone=bb.name)
    check_i2v_memory(bb, n, h, w)
    loaded = [load_image_for(bb, p, n, h, w) for p in cfg.images]
    images = [(Path(p).stem, img) for p, (img, _) in zip(cfg.images, loaded)]
    if len({name for name, _ in images}) != len(images):  # two a.png in different folders
        images = [(f"{i}-{name}", img) for i, (name, img) in enumerate(images)]
    note = next((nt for _, nt in loaded if nt), "")
    prompts = [(cfg.prompts[i % len(cfg.prompts)] if cfg.prompts else None)
               for i in range(len(images))]
    out = ctx.run_folder("i2v-eval")
    out.mkdir(parents=True, exist_ok=True)
    run_id = ctx.open_run("i2v_eval", out, cfg, seed=cfg.seeds[0],
                          label=f"{len(images)} images x {len(cfg.seeds)} seeds")
    enc_name, enc = vcd_encoder(cfg.encoder, ctx.cache, device)
    vcd_fn = VCD(enc, size=cfg.vcd_size, num_proj=cfg.vcd_num_proj)
    metric_kw = dict(cache=ctx.cache, clip=cfg.clip or None, dino=cfg.dino or None, device=device)
    files: list[Path] = []

    def on_video(name, seed, base, tuned):
        if seed == cfg.seeds[0]:
            for arm, frames in (("base", base), ("tuned", tuned)):
                files.append(write_mp4(frames, out / f"{name}_{arm}.mp4", cfg.fps))
                ctx.add_artifact(run_id, "mp4", files[-1])

    videos = E.evaluate_ab(bb, images, prompts, cfg.seeds,
                           lambda f, img, p: E.score_video(f, img, p, vcd_fn, **metric_kw),
                           cfg.steps, n, h, w, run=RunContext.of(ctx), on_video=on_video)
    summary = E.summarize(videos)
    tab, plot = E.table(summary), E.plot_rows(summary)
    with open(out / "videos.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["image", "seed", "arm", *E.KEYS])
        for vs in videos:
            wr.writerow([vs.image, vs.seed, vs.arm, *(vs.scores.get(k) for k in E.KEYS)])
    with open(out / "summary.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["image", "arm", "n", *(c for k in E.KEYS for c in (k, f"{k}_ci95"))])
        for r in summary:
            wr.writerow([r["image"], r["arm"], r["n"],
                         *(c for k in E.KEYS for c in (r[k], r[f"{k}_ci"]))])
    skipped = {k: why for vs in videos for k, why in vs.skipped.items()}
    write_json(out / "eval.json", _finite({
        "model": cfg.model, "lora": cfg.lora, "backbone": bb.name, "seeds": list(cfg.seeds),
        "steps": cfg.steps, "vcd_encoder": enc_name, "vcd": vcd_fn.params,
        "interval": "95% Student-t over videos",
        "columns": [{"key": k, "label": lab, "higher_is_better": up} for k, lab, up in E.COLUMNS],
        "skipped": skipped, "summary": summary, "plot": plot,
        "videos": [{"image": vs.image, "seed": vs.seed, "arm": vs.arm, **vs.scores}
                   for vs in videos]}))
    files = [out / "summary.csv", out / "videos.csv", out / "eval.json"] + files
    for p in files[:3]:
        ctx.add_artifact(run_id, "csv" if p.suffix == ".csv" else "json", p)
    overall = {f"{k}_{r['arm']}": r[k] for r in summary if r["image"] == "all" for k in E.KEYS}
    ctx.add_metrics(run_id, video={k: val for k, val in overall.items() if val == val})
    ctx.finish_run(run_id)
    return I2VEvalOutcome(run_id, out, videos, summary, tab, plot, files, note)


def _finite(obj):
    """JSON-safe: non-finite floats (a metric that could not run, one seed's interval) -> None."""
    if isinstance(obj, dict):
        return {k: _finite(x) for k, x in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(x) for x in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
