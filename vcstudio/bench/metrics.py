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
    from ..metrics.context import VideoContext
    from ..metrics.registry import resolve_names, run_metric

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


def bench_vcd(n_frames: int = 150, size: int = 718, batch: int = 8, encoder: str = "vgg19",
              vcd_size: int = 224, device: str = "cpu") -> dict:
    """VCD scoring of a synthetic ``n_frames`` x ``size`` x ``size`` mp4 the way the eval job
    (Score VCD, ``vcstudio eval-vcd``) runs it: decoded, resized and encoded ``batch`` frames at
    a time. Runs in a fresh process so its peak RSS is the scoring's own (imports included).
    VGG19 without its ImageNet weights runs with random ones (same time and memory)."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from ..io import write_mp4
    from ..io.synthetic import moving_shape_clip

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "clip.mp4"
        write_mp4(moving_shape_clip(n_frames, size, dx=4.0, dy=1.0, seed=0), path)
        args = json.dumps([str(path), batch, encoder, vcd_size, str(device)])
        code = f"from vcstudio.bench.metrics import _vcd_child; _vcd_child(*{args})"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"VCD bench failed: {r.stderr.strip().splitlines()[-1:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return {"frames": n_frames, "size": size, "batch": batch, **out}


def _vcd_child(path: str, batch: int, encoder: str, vcd_size: int, device: str) -> None:
    import json
    import resource

    import torch

    from ..errors import ModelNotFoundError
    from ..io import iter_video
    from ..methods.vcd import VCD
    from ..models.vgg import load_encoder

    dev = torch.device(device)
    try:
        enc = load_encoder(encoder, device=dev, cache=None)
    except ModelNotFoundError:
        enc = load_encoder(encoder, device=dev, cache=None, random_weights=True)
    m = VCD(enc, size=vcd_size, batch=batch)
    t0 = time.perf_counter()
    with torch.no_grad():
        res = m.score_stream(iter_video(path, batch))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak, "encoder": enc.name,
                      "scored": len(res.positions), "device": str(dev)}))
