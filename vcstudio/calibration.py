"""Measured speeds, kept in the data folder, that estimates are made from.

A tune measures itself as it runs (seconds per training step, per preview, per inversion step,
and the fixed cost of loading and encoding) and records them here, keyed by device kind, base
model and method, per frame size. Where nothing was measured at a job's shape yet, a short
**probe** (vcstudio/pipelines/tune/probe.py: a couple of real training steps, forward passes and a
decode of that model and method at that shape, seconds long) measures it first and is recorded
the same way (``source`` "probe"). ``jobs.tune.estimate`` and the edit / long / compare
estimates read them without touching the device (an estimate never waits for the device lock).

Every speed is recorded with the machine's **rate** at the time (vcstudio/loadfactor.py) and read
back scaled by ``rate then / rate now``, so a speed measured on an idle CPU is not promised on a
busy one (:meth:`Speed.at_rate`).

Times of one step scale with frames x pixels (the U-Net's work is linear in tokens at the sizes a
one-shot tune runs; attention's quadratic part is small there), so a measurement at another frame
count or size is scaled by that ratio and labelled "scaled" (the estimate then gives a range).

Smaller stages (scoring a frame, a VCD frame, an image-to-video denoising step, the montage) are
recorded as **units**: seconds of one unit at a shape (:func:`record_unit`, :func:`lookup_unit`).

Stdlib only: the UI reads it without importing torch.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional

FILE_NAME = "calibration.json"
_LOCK = threading.Lock()


@dataclass
class Speed:
    """What one tune (or probe) measured, for ``frames`` frames at ``width`` x ``height``."""

    frames: int
    width: int
    height: int
    train_step_s: float  # one optimisation step (forward + backward + optimizer)
    sample_step_s: float = 0.0  # one DDIM inversion step (forward only, no CFG)
    preview_s: float = 0.0  # one tuning preview (``preview_steps`` CFG steps + decode)
    preview_steps: int = 0
    overhead_s: float = 0.0  # model load + clip encode + setup before the first step
    samples: int = 1  # tunes averaged into this entry
    decode_s: float = 0.0  # one VAE decode of all ``frames`` frames
    rate: float = 0.0  # the machine's rate when measured (vcstudio/loadfactor.py; 0 = unknown)
    source: str = "tune"  # "tune" (measured by a tune) | "probe" (a short probe)

    @property
    def units(self) -> float:
        return self.frames * self.width * self.height

    def scaled(self, frames: int, width: int, height: int) -> "Speed":
        """This speed at another frame count / size (per-step times linear in frames x
        pixels; the overhead is mostly the model load, kept as is)."""
        r = (frames * width * height) / max(1.0, self.units)
        return replace(self, frames=frames, width=width, height=height,
                       train_step_s=self.train_step_s * r, sample_step_s=self.sample_step_s * r,
                       preview_s=self.preview_s * r, decode_s=self.decode_s * r)

    def at_rate(self, rate_now: float) -> "Speed":
        """These times at the machine's rate now: x ``rate / rate_now`` (:func:`load_factor`;
        unchanged where either rate is unknown or they differ by less than LOAD_NOISE)."""
        f = load_factor(self.rate, rate_now, LOAD_NOISE)
        if f == 1.0:
            return self
        return replace(self, train_step_s=self.train_step_s * f,
                       sample_step_s=self.sample_step_s * f, preview_s=self.preview_s * f,
                       overhead_s=self.overhead_s * f, decode_s=self.decode_s * f,
                       rate=rate_now)

    def pass_s(self) -> float:
        """One forward pass without CFG (an inversion step): measured, else the prior share
        of a training step."""
        return self.sample_step_s or PRIOR_SAMPLE_STEP_SHARE * self.train_step_s

    def decode_or_prior(self) -> float:
        """One VAE decode of the frames: measured, else ~one forward pass."""
        return self.decode_s or self.pass_s()


# the load model (vcstudio/loadfactor.py) is good to about +-30% (the load average lags a
# minute, and priorities are not seen): an estimate takes a change within that as no change
LOAD_NOISE = 1.3


def load_factor(then: float, now: float, noise: float = 1.0) -> float:
    """How many times longer work measured at rate ``then`` takes at rate ``now`` (1.0 where
    either is unknown): the formula of vcstudio/loadfactor.py, here without torch. With
    ``noise`` (> 1) a factor within 1/noise .. noise is taken as 1 (a reading's noise, not a
    change of load)."""
    if not then or not now or then <= 0 or now <= 0:
        return 1.0
    f = then / now
    return 1.0 if 1 / noise < f < noise else f


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


def _write(path: Path, data: dict) -> None:
    from .io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))


_COUNTS = ("frames", "width", "height", "preview_steps", "samples", "rate", "source")


def record(folder, device, model: str, method: str, speed: Speed) -> None:
    """Merge ``speed`` into the calibration: a running mean with earlier measurements at that
    shape (the older times first brought to the new one's machine rate); a tune's measurement
    replaces a probe's (a probe keeps only what the tune did not measure, e.g. the decode)."""
    path = path_in(folder)
    size = f"{speed.width}x{speed.height}"
    with _LOCK:
        data = _read(path)
        entry = data.setdefault(key(device, model, method), {})
        old = entry.get(size)
        if old and old.get("frames") == speed.frames:
            n = int(old.get("samples", 1))
            replaces = old.get("source", "tune") == "probe" and speed.source == "tune"
            w = 1.0 if replaces else 1.0 / (n + 1)
            f = load_factor(float(old.get("rate", 0.0) or 0.0), speed.rate)
            mixed = {}
            for k, v in asdict(speed).items():
                if k in _COUNTS:
                    continue
                ov = float(old.get(k, 0.0) or 0.0) * f
                mixed[k] = v if not ov else (ov * (1 - w) + v * w) if v else ov
            speed = Speed(speed.frames, speed.width, speed.height,
                          samples=1 if replaces else n + 1,
                          preview_steps=speed.preview_steps or int(old.get("preview_steps", 0)),
                          rate=speed.rate, source=speed.source, **mixed)
        entry[size] = asdict(speed)
        _write(path, data)


@dataclass
class Lookup:
    speed: Optional[Speed]  # at the asked frames and size (and at the rate asked for)
    how: str = "uncalibrated"  # "calibrated" | "probed" | "scaled from FxWxH" | "uncalibrated"
    extra: dict = field(default_factory=dict)
    load: float = 1.0  # the load factor applied (rate then / rate now)

    @property
    def exact(self) -> bool:
        """Measured at this very shape (by a tune or a probe)."""
        return self.how in ("calibrated", "probed")


def lookup(folder, device, model: str, method: str, frames: int, width: int,
           height: int, rate: float = 0.0) -> Lookup:
    """The measured speed for this device/model/method at this size (scaled from the nearest
    measured size when this one was not measured), or ``Lookup(None)``. With ``rate`` (the
    machine's rate now, vcstudio/loadfactor.py) its times are brought to the load of now."""
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
    best = min(speeds, key=lambda s: ((s.frames, s.width, s.height) != (frames, width, height),
                                      abs(s.width * s.height - width * height),
                                      abs(s.units - want)))
    f = load_factor(best.rate, rate, LOAD_NOISE)
    if (best.frames, best.width, best.height) == (frames, width, height):
        how = "probed" if best.source == "probe" else "calibrated"
        return Lookup(best.at_rate(rate), how, load=f)
    return Lookup(best.scaled(frames, width, height).at_rate(rate),
                  f"scaled from {best.frames}x{best.width}x{best.height}", load=f)


def _unit_key(device, name: str) -> str:
    return f"unit|{device_kind(device)}|{name}"


def record_unit(folder, device, name: str, shape: tuple[int, ...], seconds: float,
                rate: float = 0.0) -> None:
    """Record ``seconds`` of one unit of ``name`` (one scored frame, one VCD frame, one
    image-to-video denoising step) at ``shape`` (ints: frames, width, height or a part of
    them), measured at machine rate ``rate``; a running mean with earlier ones."""
    if not seconds or seconds <= 0:
        return
    path = path_in(folder)
    k = "x".join(str(int(v)) for v in shape)
    with _LOCK:
        data = _read(path)
        entry = data.setdefault(_unit_key(device, name), {})
        old = entry.get(k)
        if old:
            n = int(old.get("samples", 1))
            ov = float(old.get("seconds", 0.0)) * load_factor(float(old.get("rate", 0.0)), rate)
            seconds = (ov * n + seconds) / (n + 1) if ov else seconds
            entry[k] = {"seconds": seconds, "rate": rate, "samples": n + 1}
        else:
            entry[k] = {"seconds": seconds, "rate": rate, "samples": 1}
        _write(path, data)


def lookup_unit(folder, device, name: str, shape: tuple[int, ...],
                rate: float = 0.0) -> tuple[Optional[float], str, float]:
    """(seconds of one unit of ``name`` at ``shape`` at the rate now, how, load factor): the
    measurement at this shape, else the nearest one scaled by the product of the shape
    ("scaled from ..."), else (None, "uncalibrated", 1.0)."""
    entry = _read(path_in(folder)).get(_unit_key(device, name)) or {}
    want = 1
    for v in shape:
        want *= max(1, int(v))
    best, best_size = None, 0
    for k, v in entry.items():
        try:
            size = 1
            for part in k.split("x"):
                size *= max(1, int(part))
            secs = float(v["seconds"])
        except (ValueError, KeyError, TypeError):
            continue
        if best is None or abs(size - want) < abs(best_size - want):
            best, best_size, best_key = v, size, k
    if best is None:
        return None, "uncalibrated", 1.0
    f = load_factor(float(best.get("rate", 0.0) or 0.0), rate, LOAD_NOISE)
    secs = float(best["seconds"]) * f
    if best_size == want:
        return secs, "calibrated", f
    return secs * want / best_size, f"scaled from {best_key}", f


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


def preview_seconds(speed: Speed, preview_steps: int) -> float:
    """One tuning preview at ``speed``: measured when a tune made previews of this many steps,
    else ``preview_steps`` CFG steps (two forward passes each) + a decode, from the measured
    pass and decode (the prior share of a training step where those were not measured)."""
    if speed.preview_s and speed.preview_steps == preview_steps:
        return speed.preview_s
    if speed.sample_step_s:
        return 2 * preview_steps * speed.sample_step_s + speed.decode_or_prior()
    return prior_preview_s(preview_steps, speed.train_step_s)


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


def sample_speed(folder, device, run_cfg, frames: int, width: int, height: int,
                 rate: float = 0.0):
    """(seconds of one forward pass without CFG over ``frames`` frames at this size, how) from
    the run's tune calibration (its inversion steps are such passes), at the machine's rate
    ``rate`` now, else (None, "uncalibrated"). ``run_cfg`` is the tuned run's TuneConfig (its
    model and method key the calibration)."""
    found = lookup(folder, device, run_cfg.model, run_cfg.method, frames, width, height, rate)
    if found.speed is None:
        return None, "uncalibrated"
    return found.speed.pass_s(), found.how


# A flow DiT's (Wan2.1's) measured stages beside its tunes' speeds: one forward pass of the
# transformer without gradients (a sampling, inversion or FlowEdit pass; CFG counts two) and
# one VAE decode of the clip, per model, recorded as units at (frames, width, height) by every
# tune preview, edit and FlowEdit (pipelines/flow/run.py, flow/edit.py) and read by the Wan
# estimates (jobs/flow_estimates.py).
FLOW_PASS, FLOW_DECODE = "flow-pass", "flow-decode"


def flow_unit(kind: str, model: str) -> str:
    """The unit name of ``kind`` (FLOW_PASS | FLOW_DECODE) for ``model``."""
    return f"{kind}:{model or 'default'}"


def record_flow(folder, device, model: str, shape: tuple[int, int, int], pass_s: float = 0.0,
                decode_s: float = 0.0, rate: float = 0.0) -> None:
    """Record a flow model's measured pass and decode at ``shape`` (frames, width, height);
    a zero is not a measurement. A read-only data folder leaves estimates uncalibrated."""
    try:
        if pass_s > 0:
            record_unit(folder, device, flow_unit(FLOW_PASS, model), shape, pass_s, rate)
        if decode_s > 0:
            record_unit(folder, device, flow_unit(FLOW_DECODE, model), shape, decode_s, rate)
    except OSError:
        pass
