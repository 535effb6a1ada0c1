"""A short probe of a model's speed at a job's shape, recorded like a measured tune's.

When calibration.json holds no speed for a device / model / method at a job's shape (frames,
width, height), an estimate asks for a probe: the model is loaded (through the job's model cache,
so the job reuses it), inflated with the method's modules, and timed on synthetic frames at that
shape: training steps of the one-shot tune (forward + backward + optimizer, the tune's own
:func:`~vcstudio.pipelines.tune.loop.train_step`), forward passes without gradients (an inversion or
sampling step without CFG) and a VAE decode of every frame. The result is recorded with
``source`` "probe" (a tune at that shape later replaces it) and the machine's rate
(vcstudio/loadfactor.py).

It stays short: one step at a small seed shape (at most 2 frames at 64 px) first, extrapolated
by frames x pixels to the job's shape; when the timed steps there would exceed ``budget_s``
the probe runs at fewer frames (then a smaller size) and the estimate scales that measurement
to the job's shape, saying so (a range). Where even the seed step is over the budget, it alone
is recorded.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional

import numpy as np
import torch

from ...config import TuneConfig, ValidationConfig
from ...progress import Event
from ...run_context import RunContext

BUDGET_S = 15.0  # seconds the timed steps may take (the model load is the job's anyway)
TIMED_STEPS = 2  # training steps timed (after one warm-up step at the probe's shape)
TIMED_PASSES = 2  # forward passes without gradients timed (after one warm-up pass)
SEED_FRAMES, SEED_SIDE = 2, 64


def _shape(f: int, h: int, w: int, seed_s: float, seed_units: float, budget_s: float,
           multiple: int) -> tuple[int, int, int]:
    """The largest (frames, height, width) <= the job's whose training step, extrapolated
    linearly in frames x pixels from the seed step, lets the probe's ~4 steps fit the budget:
    fewer frames first, then both sides halved (multiples of ``multiple``)."""
    per_unit = seed_s / max(1.0, seed_units)
    step_budget = budget_s / (TIMED_STEPS + 2)
    for frames in range(f, 0, -1):
        if frames * h * w * per_unit <= step_budget:
            return frames, h, w
    while h > 2 * multiple and w > 2 * multiple and h * w * per_unit > step_budget:
        h = max(multiple, (h // 2) // multiple * multiple)
        w = max(multiple, (w // 2) // multiple * multiple)
    return 1, h, w


def probe_speed(cfg: TuneConfig, *, run: RunContext = RunContext(), calibration_dir=None,
                budget_s: float = BUDGET_S):
    """Measure ``cfg``'s model and method at ``cfg.data``'s shape (see the module doc) and
    record it in ``calibration_dir`` -> the recorded :class:`~vcstudio.calibration.Speed`.
    ``run``: the job's context: the base loads through its cache onto its device (None: CUDA
    where present), its progress hears the probe start and end, and its cancel token is
    checked before every step: a job stopped while it probes stops there."""
    from ... import calibration as cal
    from ... import loadfactor
    from ...device import pick_device, precision_for
    from ...models.diffusion_math import alphas_cumprod
    from ...models.loading import load_base
    from ...models.encode import decode_latents, encode_prompts, encode_video, frames_to_unit
    from .loop import _optimizer, resolve_size, train_step
    from ..edit.video_model import build_video_model

    device, progress, cancel = run.torch_device() or pick_device(), run.progress, run.cancel
    prec = precision_for(device, cfg.mixed_precision)
    progress(Event(0, 1, "measuring this model's speed at this shape (a short probe)",
                   stage="probe"))
    base = load_base(cfg.model or None, device, prec.frozen_dtype, run.cache)
    t0 = time.perf_counter()  # the job loads the same base through the same cache: not counted
    d = cfg.data  # the job resolves the clip's sides first; a square at the model's own size else
    cfg = resolve_size(cfg, base.native_size, (d.height or d.size or base.native_size,
                                               d.width or d.size or base.native_size))
    # what the probe times is the U-Net with the method's parts; structure conditions are
    # counted by the estimate itself, and nothing initialises from another run
    cfg = dataclasses.replace(cfg, control=[], init_from="", validation=ValidationConfig())
    torch.manual_seed(0)
    model, method, _ = build_video_model(base, cfg, prec)
    if cfg.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(params, cfg, device)
    scaler = torch.amp.GradScaler("cuda") if prec.use_grad_scaler else None
    text_emb = encode_prompts(base, [cfg.data.prompt or "a video"])
    ac = alphas_cumprod(base.scheduler_config).to(device)
    gen = torch.Generator(device).manual_seed(0)
    rng = np.random.default_rng(0)

    def inputs(f: int, h: int, w: int):
        frames = rng.integers(0, 256, (f, h, w, 3), dtype=np.uint8)
        real = frames_to_unit(frames, device)
        return encode_video(base, frames), real

    def steps(n: int, lat, real) -> float:
        t = time.perf_counter()
        for i in range(n):
            if cancel is not None:
                cancel.check()
            train_step(model, method, base, cfg, prec, opt, scaler, params, lat, text_emb, real,
                       ac, gen, i)
        _sync(device)
        return (time.perf_counter() - t) / n

    d = cfg.data
    multiple = base.vae_scale * 8
    sf, sh, sw = min(d.n_frames, SEED_FRAMES), min(d.height, SEED_SIDE), min(d.width, SEED_SIDE)
    lat, real = inputs(sf, sh, sw)
    setup_s = time.perf_counter() - t0  # inflating, the method's parts, encoding
    window = loadfactor.Window(device)  # the machine's load while the probe runs
    seed_s = steps(1, lat, real)  # also the warm-up of kernels and allocator
    f, h, w = _shape(d.n_frames, d.height, d.width, seed_s, sf * sh * sw, budget_s, multiple)
    if seed_s > budget_s / 2 or (f, h, w) == (sf, sh, sw):
        f, h, w = sf, sh, sw  # the seed shape is the probe's (over the budget: its one step)
        train_s = seed_s if seed_s > budget_s / 2 else steps(TIMED_STEPS, lat, real)
    else:
        lat, real = inputs(f, h, w)
        steps(1, lat, real)  # warm-up at this shape
        train_s = steps(TIMED_STEPS, lat, real)
    model.eval()
    text = text_emb.expand(lat.shape[0], -1, -1)
    with torch.no_grad(), prec.autocast():
        t = torch.full((lat.shape[0],), int(ac.shape[0]) // 2, device=device)
        model(lat, t, text)  # warm-up pass
        _sync(device)
        tp = time.perf_counter()
        for _ in range(TIMED_PASSES):
            model(lat, t, text)
        _sync(device)
        pass_s = (time.perf_counter() - tp) / TIMED_PASSES
    with torch.no_grad():
        td = time.perf_counter()
        decode_latents(base, lat)
        _sync(device)
        decode_s = time.perf_counter() - td
    speed = cal.Speed(f, w, h, train_s, pass_s, overhead_s=setup_s, decode_s=decode_s,
                      rate=window.rate(), source="probe")
    try:
        cal.record(calibration_dir, device, cfg.model, cfg.method, speed)
    except OSError:  # a read-only data folder: this estimate uses it, the next probes again
        pass
    progress(Event(1, 1, f"probe: {train_s:.2f} s a training step, {pass_s:.2f} s a forward "
                   f"pass at {f}x{w}x{h}", stage="probe"))
    return speed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def prober(*, run: RunContext = RunContext(), calibration_dir=None,
           budget_s: float = BUDGET_S) -> Callable[[TuneConfig], Optional[Any]]:
    """``probe(cfg)`` for the estimates (``jobs.*.estimate(..., probe=)``): measures and records
    ``cfg``'s speed in ``run`` (:func:`probe_speed`), or returns None where the model cannot
    be probed here (missing weights, a method that needs inputs the probe does not have, out
    of memory): the estimate then says what it has."""
    from ...errors import CancelledError, VcsError

    def probe(cfg: TuneConfig):
        try:
            return probe_speed(cfg, run=run, calibration_dir=calibration_dir, budget_s=budget_s)
        except CancelledError:
            raise
        except (VcsError, torch.OutOfMemoryError, OSError, ValueError, RuntimeError):
            return None
    return probe
