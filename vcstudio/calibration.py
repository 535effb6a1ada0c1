"""Measured speeds, kept in the data folder, that estimates are made from.

A tune measures itself as it runs (seconds per training step, per preview, per inversion step,
and the fixed cost of loading and encoding) and records them here, keyed by device kind, base
model and method, per frame size. ``jobs.tune.estimate`` and the edit / long estimates read them
without touching the device (an estimate never waits for the device lock). Where nothing was
measured yet the estimates fall back to per-device constants and say "uncalibrated".

Times of one step scale with frames x pixels (the U-Net's work is linear in tokens at the sizes a
one-shot tune runs; attention's quadratic part is small there), so a measurement at another frame
count or size is scaled by that ratio and labelled "scaled".

Stdlib only: the UI reads it without importing torch.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

FILE_NAME = "calibration.json"
_LOCK = threading.Lock()


@dataclass
class Speed:
    """What one tune measured, for ``frames`` frames at ``width`` x ``height``."""

    frames: int
    width: int
    height: int
    train_step_s: float  # one optimisation step (forward + backward + optimizer)
    sample_step_s: float = 0.0  # one DDIM inversion step (forward only, no CFG)
    preview_s: float = 0.0  # one tuning preview (``preview_steps`` CFG steps + decode)
    preview_steps: int = 0
    overhead_s: float = 0.0  # model load + clip encode + setup before the first step
    samples: int = 1  # tunes averaged into this entry

    @property
    def units(self) -> float:
        return self.frames * self.width * self.height

    def scaled(self, frames: int, width: int, height: int) -> "Speed":
        """This speed at another frame count / size (per-step times linear in frames x
        pixels; the overhead is mostly the model load, kept as is)."""
        r = (frames * width * height) / max(1.0, self.units)
        return Speed(frames, width, height, self.train_step_s * r, self.sample_step_s * r,
                     self.preview_s * r, self.preview_steps, self.overhead_s, self.samples)


def device_kind(device) -> str:
    return str(device).split(":")[0] or "cpu"


def key(device, model: str, method: str) -> str:
    return f"{device_kind(device)}|{model or 'default'}|{method or 'baseline'}"


def path_in(folder: Optional[str | os.PathLike] = None) -> Path:
    if folder is None:
        from .paths import data_dir

        folder = data_dir()
    return Path(folder) / FILE_NAME


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):  # missing or damaged: estimates are uncalibrated, never fail
        return {}


def record(folder, device, model: str, method: str, speed: Speed) -> None:
    """Merge ``speed`` into the calibration (a running mean with earlier tunes at that size)."""
    path = path_in(folder)
    size = f"{speed.width}x{speed.height}"
    with _LOCK:
        data = _read(path)
        entry = data.setdefault(key(device, model, method), {})
        old = entry.get(size)
        if old and old.get("frames") == speed.frames:
            n = int(old.get("samples", 1))
            w = 1.0 / (n + 1)
            mixed = {}
            for k, v in asdict(speed).items():
                if k in ("frames", "width", "height", "preview_steps", "samples"):
                    continue
                ov = float(old.get(k, 0.0) or 0.0)
                mixed[k] = v if not ov else (ov * (1 - w) + v * w) if v else ov
            speed = Speed(speed.frames, speed.width, speed.height, samples=n + 1,
                          preview_steps=speed.preview_steps or int(old.get("preview_steps", 0)),
                          **mixed)
        entry[size] = asdict(speed)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)


@dataclass
class Lookup:
    speed: Optional[Speed]  # at the asked frames and size
    how: str = "uncalibrated"  # "calibrated" | "scaled from FxWxH" | "uncalibrated"
    extra: dict = field(default_factory=dict)


def lookup(folder, device, model: str, method: str, frames: int, width: int,
           height: int) -> Lookup:
    """The measured speed for this device/model/method at this size (scaled from the nearest
    measured size when this one was not measured), or ``Lookup(None)``."""
    entry = _read(path_in(folder)).get(key(device, model, method)) or {}
    speeds = []
    for v in entry.values():
        try:
            speeds.append(Speed(**v))
        except TypeError:
            continue
    if not speeds:
        return Lookup(None)
    want = frames * width * height
    best = min(speeds, key=lambda s: (abs(s.width * s.height - width * height),
                                      abs(s.units - want)))
    if (best.frames, best.width, best.height) == (frames, width, height):
        return Lookup(best, "calibrated")
    return Lookup(best.scaled(frames, width, height),
                  f"scaled from {best.frames}x{best.width}x{best.height}")


def preview_cadence(asked: int, preview_s: float, step_s: float, budget: float = 0.1) -> int:
    """Steps between tuning previews: at least ``asked`` (the config's ``preview_every``), and
    far enough apart that previews cost at most ``budget`` of the tuning time
    (preview_s / (k * step_s) <= budget). 0 = no previews (asked 0)."""
    import math

    if asked <= 0:
        return 0
    if preview_s <= 0 or step_s <= 0:
        return asked
    return max(asked, math.ceil(preview_s / (budget * step_s) - 1e-9))


# A preview before any is measured: ``preview_steps`` CFG sampling steps (two forward passes
# each, ~0.35 of a training step per pass, jobs/tune.py) + a decode of every frame (~1 step).
PRIOR_SAMPLE_STEP_SHARE = 0.35


def prior_preview_s(preview_steps: int, step_s: float) -> float:
    return step_s * (2 * PRIOR_SAMPLE_STEP_SHARE * preview_steps + 1.0)


def first_preview(start: int, every: int, steps: int) -> int | None:
    """The step of a tune's first preview: the first multiple of ``every`` after ``start``
    (a resumed tune's checkpoint step), whatever previews cost -- a short tune shows one
    within its first fifth at the tab's every = steps // 5 --; None when there is none
    before the last step (whose preview is always made) or none are asked for (every 0)."""
    if every <= 0:
        return None
    k = (start // every + 1) * every
    return k if k < steps else None


def next_preview(after: int, every: int, cadence: int, steps: int) -> int | None:
    """The preview after the one at step ``after``: ``cadence`` steps on (preview_cadence:
    at most ~10% of the tuning time on previews), rounded up to the ``every`` grid; None
    unless it leaves ``cadence`` steps before the last step's own preview, so the previews
    after the first stay within the budget."""
    if every <= 0 or cadence <= 0:
        return None
    k = -(-(after + cadence) // every) * every
    return k if k + cadence <= steps else None


def previews_left(step: int, next_at: int | None, every: int, cadence: int,
                  steps: int) -> int:
    """How many previews a tune at ``step`` still makes: from ``next_at`` on at ``cadence``
    (:func:`next_preview`), plus the last step's."""
    n, k = 0, next_at
    while k is not None and k < steps:
        n += 1
        k = next_preview(k, every, cadence, steps)
    return n + (1 if step < steps and every > 0 else 0)


def previews_in(steps: int, start: int, cadence: int) -> int:
    """How many previews a tune from ``start`` to ``steps`` makes at ``cadence``."""
    if cadence <= 0:
        return 0
    return max(0, (steps - start) // cadence)


def format_seconds(s: float) -> str:
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def sample_speed(folder, device, run_cfg, frames: int, width: int, height: int):
    """(seconds of one forward pass without CFG over ``frames`` frames at this size, how) from
    the run's tune calibration (its inversion steps are such passes), else (None, "uncalibrated").
    ``run_cfg`` is the tuned run's TuneConfig (its model and method key the calibration)."""
    found = lookup(folder, device, run_cfg.model, run_cfg.method, frames, width, height)
    if found.speed is None:
        return None, "uncalibrated"
    sp = found.speed
    return (sp.sample_step_s or PRIOR_SAMPLE_STEP_SHARE * sp.train_step_s), found.how
