"""Metric throughput on a synthetic clip (random-weight models are fine for speed)."""
from __future__ import annotations

import time
from typing import Optional

import numpy as np

from ..models.cache import ModelCache

BENCH_DEFAULT = ("clip_text", "consistency_adjacent", "consistency_all_pairs",
                 "subject_consistency", "background_consistency", "flicker", "flow",
                 "warp_error", "fci", "dynamic_degree", "psnr", "ssim")


def bench_metrics(n_frames: int = 24, size: int = 512, metrics: Optional[str] = None,
                  clip: str = "ViT-B-32/random", dino: str = "random", device=None,
                  flow_method: str = "dis", repeat: int = 1) -> dict:
    """Seconds per metric, each on a fresh context (so each pays for its own features, models
    already loaded), and the whole set on one shared context."""
    import torch

    from ..device import pick_device
    from ..io.synthetic import moving_shape_clip
    from .context import VideoContext
    from .registry import resolve_names, run_metric

    device = pick_device(device)
    frames = moving_shape_clip(n_frames, size, dx=4.0, dy=1.0, seed=0)
    source = np.clip(frames.astype(np.int16) + 5, 0, 255).astype(np.uint8)
    image = frames[0]
    names = resolve_names(metrics) or list(BENCH_DEFAULT)
    cache = ModelCache()

    def ctx():
        return VideoContext(frames, prompt="a red disc moving over a striped background",
                            source=source, image=image, clip=clip, dino=dino,
                            flow_method=flow_method, device=device, cache=cache)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    warm = ctx()  # load models (and warm up kernels) outside the timings
    for n in names:
        run_metric(warm, n)
    seconds = {}
    for n in names:
        best = float("inf")
        for _ in range(max(1, repeat)):
            c = ctx()
            sync()
            t0 = time.perf_counter()
            r = run_metric(c, n)
            sync()
            best = min(best, time.perf_counter() - t0)
        seconds[n] = best if not r.skipped else float("nan")
    c = ctx()
    sync()
    t0 = time.perf_counter()
    for n in names:
        run_metric(c, n)
    sync()
    shared = time.perf_counter() - t0
    return {"seconds": seconds, "shared_total": shared, "device": str(device),
            "clip": _model_name(warm.clip_encoder), "dino": _model_name(warm.dino_encoder)}


def _model_name(get) -> str:
    from ..errors import ModelNotFoundError

    try:
        return get().name
    except ModelNotFoundError as e:  # reported, not fatal: its metrics show as skipped
        return f"unavailable ({e})"
