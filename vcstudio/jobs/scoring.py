"""Scoring a job's output video and recording the scores: one helper for the edit, compare and
sweep jobs (per-frame and per-video values into the store, the full results as JSON)."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np


def score(frames: np.ndarray, ctx, run_id: Optional[str], metrics: Sequence[str],
          prompt: Optional[str] = None, source: Optional[np.ndarray] = None,
          stream: bool = True) -> dict:
    """name -> MetricResult for ``metrics`` (skipped ones say why), recorded on ``run_id``.

    ``stream``: the frames are scored one at a time (metrics.MetricStream: only the new frame's
    features and pairs are computed each time, and a finished stream equals the batch
    evaluation), and each frame's values go out at once as an Event (stage "frame-metrics",
    ``frame`` = its index, ``metrics`` = {name: value}), so a page plots them as they come.
    """
    if not metrics:
        return {}
    if stream:
        results = _stream_scores(frames, ctx, list(metrics), prompt, source)
    else:
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


def _stream_scores(frames: np.ndarray, ctx, metrics: list[str], prompt, source) -> dict:
    from ..metrics import MetricStream
    from ..progress import Event

    ms = MetricStream(metrics, prompt=prompt, source=source, cache=ctx.cache)
    n = len(frames)
    for i in range(n):
        ctx.cancel.check()
        per = ms.add(frames[i])
        vals = {k: float(v[i]) for k, v in per.items()
                if len(v) > i and v[i] is not None and math.isfinite(float(v[i]))}
        ctx(Event(i + 1, n, f"scored frame {i + 1}/{n}", metrics=vals, stage="frame-metrics",
                  frame=i))
    return ms.results()
