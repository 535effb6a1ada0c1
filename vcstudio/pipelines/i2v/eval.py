"""Base vs VCD-tuned evaluation as the VCD paper reports it (Table 2, I2V rows): the same images
and seeds through both, every video scored, mean and 95% interval over the seeds.

Columns (per video, then aggregated): VBench-I2V ``i2v_subject`` / ``i2v_background``,
VBench ``subject_consistency`` / ``background_consistency`` / ``flicker`` (temporal
flickering) / ``motion_smoothness`` / ``dynamic_degree``, VCD against the conditioning image,
and CLIP text alignment (``clip_text``). The metrics are vcstudio's (metrics/registry.py; the
stand-ins there are labelled: classical flow for RAFT, flow interpolation for AMT, CLIP for
DreamSim), VCD is the paper's eq. 2 (methods/vcd.py).

The paper's trade-off is why :func:`plot_rows` exists: reward tuning raises I2V subject /
background consistency while the dynamic degree falls (Open-Sora 26.59 -> 17.56, Wan
43.82 -> 39.27), so a tune that freezes the video would look like a win on consistency alone.
Each image's base and tuned points go on one consistency-vs-dynamic-degree plot.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ...metrics.summary import mean_ci
from ...progress import Event
from ...run_context import RunContext

# (key, label, higher is better)
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("i2v_subject", "I2V subject", True),
    ("i2v_background", "I2V background", True),
    ("subject_consistency", "subject consistency", True),
    ("background_consistency", "background consistency", True),
    ("flicker", "temporal flickering", True),
    ("motion_smoothness", "motion smoothness", True),
    ("dynamic_degree", "dynamic degree", True),
    ("vcd", "VCD", False),
    ("clip_text", "CLIP text alignment", True),
)
KEYS = tuple(k for k, _, _ in COLUMNS)
REGISTRY_METRICS = tuple(k for k in KEYS if k != "vcd")
CONSISTENCY = ("i2v_subject", "i2v_background")  # plotted against dynamic_degree
ARMS = ("base", "tuned")


@dataclass
class VideoScore:
    image: str
    seed: int
    arm: str  # "base" | "tuned"
    scores: dict  # key -> value (NaN where the metric could not run)
    skipped: dict  # key -> reason


def score_video(frames: np.ndarray, image: np.ndarray, prompt: Optional[str], vcd_fn,
                **metric_kw) -> tuple[dict, dict]:
    """(scores, skipped reasons) of one video over :data:`COLUMNS`. ``metric_kw`` go to
    :func:`vcstudio.metrics.evaluate` (cache, clip, dino, device)."""
    from ...metrics import evaluate

    res = evaluate(frames, prompt=prompt or None, image=image, metrics=list(REGISTRY_METRICS),
                   **metric_kw)
    scores = {k: (math.nan if r.skipped else float(r.value)) for k, r in res.items()}
    skipped = {k: r.skipped for k, r in res.items() if r.skipped}
    if "clip_text" not in res:
        scores["clip_text"], skipped["clip_text"] = math.nan, "needs a prompt"
    with torch.no_grad():
        scores["vcd"] = float(vcd_fn(frames, image).mean)
    return scores, skipped


def evaluate_ab(backbone, images: Sequence[tuple[str, np.ndarray]],
                prompts: Sequence[Optional[str]], seeds: Sequence[int],
                score: Callable[[np.ndarray, np.ndarray, Optional[str]], tuple[dict, dict]],
                steps: int = 30, num_frames=None, height=None, width=None,
                *, run: RunContext = RunContext(),
                on_video: Optional[Callable[[str, int, np.ndarray, np.ndarray], None]] = None
                ) -> list[VideoScore]:
    """Base (LoRA off) and tuned (LoRA on) from every (name, image) x seed, scored by
    ``score(frames, image, prompt)``. ``prompts``: one per image (None where the backbone
    reads none). ``on_video(name, seed, base, tuned)`` sees each pair (to write videos).
    ``run``: the progress callback (an event per scored pair) and the cancel token checked
    before every pair (the backbone is built already, on its cache and device)."""
    progress, cancel = run.progress, run.cancel
    from .tune import ab_sample

    out: list[VideoScore] = []
    total, done = len(images) * len(seeds), 0
    for (name, image), prompt in zip(images, prompts):
        for seed in seeds:
            if cancel is not None:
                cancel.check()
            base, tuned = ab_sample(backbone, image, int(seed), steps, num_frames, height,
                                    width, prompt=prompt)
            if on_video is not None:
                on_video(name, int(seed), base, tuned)
            for arm, frames in zip(ARMS, (base, tuned)):
                s, why = score(frames, image, prompt)
                out.append(VideoScore(name, int(seed), arm, s, why))
            done += 1
            progress(Event(done, total, f"{name}, seed {seed}: base and tuned scored",
                           stage="i2v-eval",
                           metrics={f"{k}_{r.arm}": r.scores[k] for r in out[-2:]
                                    for k in ("vcd", "dynamic_degree")}))
    return out


def summarize(videos: Sequence[VideoScore], level: float = 0.95) -> list[dict]:
    """Per (image, arm) and over all images per arm ("all"): n videos, and for every column its
    mean and the half-width of its ``level`` interval over the videos (``<key>_ci``)."""
    groups: dict[tuple[str, str], list[VideoScore]] = {}
    for v in videos:
        groups.setdefault((v.image, v.arm), []).append(v)
        groups.setdefault(("all", v.arm), []).append(v)
    rows = []
    names = list(dict.fromkeys(v.image for v in videos)) + ["all"]
    for name in names:
        for arm in ARMS:
            g = groups.get((name, arm))
            if not g:
                continue
            row = {"image": name, "arm": arm, "n": len(g)}
            for k in KEYS:
                row[k], row[f"{k}_ci"] = mean_ci([v.scores.get(k, math.nan) for v in g], level)
            rows.append(row)
    return rows


def plot_rows(summary: Sequence[dict]) -> list[dict]:
    """The consistency-vs-dynamic-degree plot, one point per image x arm x consistency metric
    (the per-image rows of :func:`summarize`): image, arm, metric, consistency, dynamic_degree."""
    return [{"image": r["image"], "arm": r["arm"], "metric": m, "consistency": r[m],
             "dynamic_degree": r["dynamic_degree"]}
            for r in summary if r["image"] != "all" for m in CONSISTENCY]


def fmt(mean: float, half: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.4f}" if not math.isfinite(half) else f"{mean:.4f} ± {half:.4f}"


def table(summary: Sequence[dict]) -> dict:
    """``{"headers": [...], "data": [[...]]}``: image, arm, n, then "mean ± 95% half-width" per
    column (the CLI prints it, the tab shows it, API clients get it as a plain table)."""
    headers = ["image", "arm", "n"] + [label + (" ↑" if up else " ↓") for _, label, up in COLUMNS]
    data = [[r["image"], r["arm"], r["n"]] + [fmt(r[k], r[f"{k}_ci"]) for k in KEYS]
            for r in summary]
    return {"headers": headers, "data": data}


__all__ = ["ARMS", "COLUMNS", "CONSISTENCY", "KEYS", "VideoScore", "evaluate_ab", "fmt",
           "plot_rows", "score_video", "summarize", "table"]
