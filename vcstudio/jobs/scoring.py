"""Scoring a job's output video and recording the scores: one helper for the edit, compare and
sweep jobs (per-frame and per-video values into the store, the full results as JSON)."""
from __future__ import annotations

import math
import time
from typing import Optional, Sequence

import numpy as np


def score(frames: np.ndarray, ctx, run_id: Optional[str], metrics: Sequence[str],
          prompt: Optional[str] = None, source: Optional[np.ndarray] = None,
          stream: bool = True, record: bool = True) -> dict:
    """name -> MetricResult for ``metrics`` (skipped ones say why), recorded on ``run_id``.

    ``stream``: the frames are scored one at a time (metrics.MetricStream: only the new frame's
    features and pairs are computed each time, and a finished stream equals the batch
    evaluation), and each frame's values go out at once as an Event (stage "frame-metrics",
    ``frame`` = its index, ``metrics`` = {name: value}), so a page plots them as they come.
    ``record``: the seconds per frame are recorded for the estimates (:func:`estimate`).
    """
    if not metrics:
        return {}
    check_scoring_memory(frames, metrics, source, ctx.device)
    t0 = time.perf_counter()
    if stream:
        from ..metrics import resolve_names

        names = resolve_names(list(metrics))
        # a metric that scores the whole video at once (VCD) would be recomputed per frame in
        # a stream: it runs once at the end instead
        streamed = [m for m in names if m not in WHOLE_VIDEO_METRICS]
        results = _stream_scores(frames, ctx, streamed, prompt, source) if streamed else {}
        rest = [m for m in names if m in WHOLE_VIDEO_METRICS]
        if rest:
            from ..metrics import evaluate

            results.update(evaluate(frames, prompt=prompt, source=source, metrics=rest,
                                    cache=ctx.cache, progress=ctx, cancel=ctx.cancel))
    else:
        from ..metrics import evaluate

        results = evaluate(frames, prompt=prompt, source=source, metrics=list(metrics),
                           cache=ctx.cache, progress=ctx, cancel=ctx.cancel)
    if record:
        record_speed(ctx, metrics, frames, time.perf_counter() - t0)
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


# metrics computed over the whole video in one pass (not per new frame)
WHOLE_VIDEO_METRICS = frozenset({"vcd"})
# metrics that keep the optical flow of every adjacent pair (forward + backward) while scoring
FLOW_METRICS = frozenset({"warp_error", "fci", "flow", "dynamic_degree"})


def check_scoring_memory(frames: np.ndarray, metrics: Sequence[str], source, device) -> None:
    """Refuse scoring whose estimated peak exceeds the free memory (vcstudio/memory.py): the
    frames (and the source clip), the flows of every pair when a flow metric is asked (2 x 2
    float32 channels per pixel and pair), and per-frame features (small)."""
    from .. import memory

    n, h, w = frames.shape[:3]
    gib = memory.frames_gib(n, h, w, 2 if source is not None else 1)
    if FLOW_METRICS & set(metrics):
        gib += max(0, n - 1) * h * w * 2 * 2 * 4 / memory.GIB
    memory.check(memory.Need(gib, 0.0, f"scoring {n} frames at {w}x{h}",
                             "the frames or the width/height, or leave out the flow metrics "
                             f"({', '.join(sorted(FLOW_METRICS & set(metrics)))})"
                             if FLOW_METRICS & set(metrics) else "the frames or the size"),
                 "cpu")


# seconds to score one frame before anything was measured (CPU, 512x512; scaled by pixels):
# a guess, labelled "uncalibrated"; the first scoring on the device records the real figure
PRIOR_FRAME_S = {"cpu": 1.0, "cuda": 0.05, "mps": 0.3}


def unit_name(metrics: Sequence[str]) -> str:
    """The calibration unit of scoring one frame with this set of metrics."""
    return "score:" + ",".join(sorted(set(metrics)))


def record_speed(ctx, metrics, frames: np.ndarray, seconds: float) -> None:
    """Record (after scoring ``frames`` in ``seconds``) the seconds per scored frame (model
    loads included: a new process loads them again) with the machine's rate, for the
    estimates (vcstudio/calibration.py units)."""
    from .. import calibration as cal
    from .. import loadfactor

    from .estimates import calibration_dir

    n, h, w = frames.shape[:3]
    if n <= 0:
        return
    try:
        cal.record_unit(calibration_dir(ctx), ctx.device, unit_name(metrics), (w, h), seconds / n,
                        loadfactor.rate(ctx.device, busy_s=seconds))
    except OSError:  # a read-only data folder: the estimate stays a guess
        pass


def estimate(metrics: Sequence[str], n_frames: int, width: int, height: int, device="cpu",
             calibration_dir=None, rate: float = 0.0) -> tuple[float, str, float]:
    """(seconds, how, load factor) of scoring ``n_frames`` frames at this size with
    ``metrics``: the seconds per frame an earlier scoring with the same metrics measured on
    this device (scaled by pixels from the nearest size, and by the load factor), else a
    per-device guess (:data:`PRIOR_FRAME_S`, "uncalibrated")."""
    from .. import calibration as cal

    if not metrics or n_frames <= 0:
        return 0.0, "calibrated", 1.0
    per, how, load = cal.lookup_unit(calibration_dir, device, unit_name(metrics),
                                     (width, height), rate)
    if per is None:
        kind = cal.device_kind(device)
        per = PRIOR_FRAME_S.get(kind, PRIOR_FRAME_S["cpu"]) * width * height / (512 * 512)
    return per * n_frames, how, load


class _Quiet:
    """The job's context for a warm-up: its models, device and cancel token, no events."""

    def __init__(self, ctx) -> None:
        self.cache, self.device, self.cancel = ctx.cache, ctx.device, ctx.cancel

    def __call__(self, ev) -> None:
        pass


def warm_up(metrics: Sequence[str], width: int, height: int, ctx, prompt: Optional[str] = None,
            with_source: bool = True) -> None:
    """Before a job's estimate: load the scoring models of ``metrics`` through the job's cache
    (the job's scoring then finds them), and where no speed was measured for this metric set
    and size, time three synthetic frames and record the seconds per frame. Never raises."""
    from .. import calibration as cal
    from .. import loadfactor
    from .estimates import calibration_dir

    if not metrics:
        return
    try:
        rate = loadfactor.rate(ctx.device)
        folder = calibration_dir(ctx)
        known = cal.lookup_unit(folder, ctx.device, unit_name(metrics), (width, height),
                                rate)[1] == "calibrated"
        frames = np.random.default_rng(0).integers(0, 256, (3, height, width, 3), np.uint8)
        quiet, src = _Quiet(ctx), (frames if with_source else None)
        score(frames[:2], quiet, None, metrics, prompt=prompt or "a video", source=src[:2]
              if src is not None else None, record=False)  # loads the models
        if known:
            return
        t = time.perf_counter()
        score(frames, quiet, None, metrics, prompt=prompt or "a video", source=src,
              record=False)
        cal.record_unit(folder, ctx.device, unit_name(metrics), (width, height),
                        (time.perf_counter() - t) / len(frames), rate)
    except Exception:  # noqa: BLE001 - a warm-up never fails the job
        pass
