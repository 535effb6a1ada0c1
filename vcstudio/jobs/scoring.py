"""Scoring a job's output video and recording the scores: one helper for the edit, compare and
sweep jobs (per-frame and per-video values into the store, the full results as JSON)."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np


def score(frames: np.ndarray, ctx, run_id: Optional[str], metrics: Sequence[str],
          prompt: Optional[str] = None, source: Optional[np.ndarray] = None) -> dict:
    """name -> MetricResult for ``metrics`` (skipped ones say why), recorded on ``run_id``."""
    if not metrics:
        return {}
    from ..metrics import evaluate

    results = evaluate(frames, prompt=prompt, source=source, metrics=list(metrics),
                       cache=ctx.cache, progress=ctx, cancel=ctx.cancel)
    if run_id is not None:
        ok = {k: r for k, r in results.items() if not r.skipped}
        ctx.add_metrics(run_id, video={k: float(r.value) for k, r in ok.items()
                                       if math.isfinite(float(r.value))},
                        frames={k: list(r.per_frame) for k, r in ok.items()})
    return results


def scores_json(results: dict, **meta) -> dict:
    from ..metrics.registry import results_to_json

    return results_to_json(results, **meta)
