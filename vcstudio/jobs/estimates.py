"""What every job's estimate shares: its range, the one ``Estimate: ...`` line the UI and the
CLI show, the announcement a job makes when it starts, and the ETA re-estimated from the job's
own progress.

Each job module has one ``estimate(cfg, device, ..., calibration_dir, probe, rate)`` (the
seconds of each of its stages, from the speeds measured on this device: vcstudio/calibration.py,
scaled by the machine's load now: vcstudio/loadfactor.py) and one ``estimate_line`` that hands
its counts to :func:`line`. Their results share these keys: ``seconds`` (None where nothing
is known), ``low`` / ``high`` (the range), ``how`` ("calibrated", "probed", "scaled from ...",
"uncalibrated"), ``load`` (the load factor applied) and ``parts`` (seconds per stage).

The range: a speed measured at the job's very shape by a tune is given as one figure; measured by
a probe (two steps) as +-30%; scaled from another shape as 1/1.6x..1.6x; the per-device constants
used before anything was measured as 1/4x..4x. A load factor far from 1 (the machine much busier
or idler than when the speed was measured) widens it by its own uncertainty (x1.3).
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Optional

from ..calibration import format_seconds

SPREAD = {"calibrated": 1.0, "probed": 1.3, "scaled": 1.6, "uncalibrated": 4.0}
LOAD_SPREAD = 1.3  # the extra spread when the load factor is outside 1/1.5 .. 1.5


def kind_of(how: str) -> str:
    """"calibrated" | "probed" | "scaled" | "uncalibrated" of a ``how`` text."""
    return "scaled" if how.startswith("scaled") else how if how in SPREAD else "uncalibrated"


def worst(hows: Iterable[str]) -> str:
    """The least certain of several parts' ``how`` (the whole job's)."""
    order = ["calibrated", "probed", "scaled", "uncalibrated"]
    hows = list(hows)
    if not hows:
        return "uncalibrated"
    return max(hows, key=lambda h: order.index(kind_of(h)))


def spread(how: str, load: float = 1.0) -> float:
    """The factor u of the range [seconds / u, seconds x u] (module doc)."""
    u = SPREAD[kind_of(how)]
    if load > 1.5 or load < 1 / 1.5:
        u *= LOAD_SPREAD
    return u


def finish(parts: dict, how: str, load: float = 1.0, **extra) -> dict:
    """An estimate from its stages' seconds (``parts``: keys ending in ``_s`` are seconds,
    the others counts), with its range."""
    seconds = sum(v for k, v in parts.items() if k.endswith("_s") and v)
    u = spread(how, load)
    return {"seconds": round(seconds, 2), "low": round(seconds / u, 2),
            "high": round(seconds * u, 2), "how": how, "load": round(load, 3),
            "parts": {k: round(v, 3) if isinstance(v, float) else v for k, v in parts.items()},
            **extra}


def rate_now(device: Any, rate: Optional[float] = None) -> float:
    """The machine's rate an estimate scales by: ``rate`` where given (tests, a caller that
    read it), else vcstudio/loadfactor.py's reading."""
    if rate is not None:
        return float(rate)
    from .. import loadfactor

    return loadfactor.rate(device)


def _how_text(how: str) -> str:
    k = kind_of(how)
    if k == "uncalibrated":
        return "uncalibrated guess: a short probe measures it when the job starts"
    if k == "scaled":
        return f"rough: {how}"
    return how


def _load_text(est: dict, device: Any) -> str:
    if str(device).split(":")[0] != "cpu":
        return ""
    from ..loadfactor import loadavg_text

    parts = [t for t in [loadavg_text()] if t]
    load = float(est.get("load", 1.0) or 1.0)
    if abs(load - 1.0) >= 0.1:
        parts.append(f"x{load:.1f} vs when measured")
    return "; " + ", ".join(parts) if parts else ""


def line(est: dict, device: Any = "cpu", counts: Iterable[str] = ()) -> str:
    """The one ``Estimate: ...`` line (UI and CLI): memory where estimated, the time (a range
    where uncertain), the device, what it counts, how it was measured and the machine's load."""
    dev = str(device).split(":")[0]
    gib = est.get("gib")
    mem = "" if gib is None else "<0.1 GiB, " if gib < 0.05 else f"~{gib:.1f} GiB, "
    secs = est.get("seconds")
    if secs is None:
        when = "time not known yet"
    else:
        when = f"~{format_seconds(secs)}"
        low, high = est.get("low", secs), est.get("high", secs)
        if high > 1.05 * low and format_seconds(low) != format_seconds(high):
            when += f" ({format_seconds(low)}–{format_seconds(high)})"
    fits = "" if est.get("fits") in (None, True) else " — may NOT fit this GPU: lower frames/size"
    what = ", ".join(counts)
    how = (_how_text(est.get("how", "uncalibrated")) if secs is not None
           else "uncalibrated: the job's first steps measure it")
    return (f"Estimate: {mem}{when} on {dev} ({what + '; ' if what else ''}"
            f"{how}{_load_text(est, device)}){fits}.")


def calibration_dir(ctx):
    """Where a job's context keeps measured speeds: its studio's data folder; a context
    without a store (a sweep cell, a ZeroGPU call's body) the default data folder."""
    return ctx.data_dir if getattr(ctx, "store", None) is not None else None


def announce(ctx, estimate_fn, line_fn, cfg, **kw) -> Optional[dict]:
    """At a job's start: its estimate (probing the model where nothing was measured at this
    shape: vcstudio/pipelines/tune/probe.py, through the job's model cache) as an Event (stage
    "estimate", ``eta`` = its seconds) before any other work; the CLI prints it, the UI shows
    it. None (nothing said) where it cannot be made: an estimate never fails a job. A context
    without a store (a sweep cell, a ZeroGPU call's time-limited body, planned by its caller)
    announces nothing and probes nothing."""
    from ..progress import Event

    if getattr(ctx, "store", None) is None:
        return None
    try:
        from ..pipelines.tune.probe import prober
        from ..run_context import RunContext

        folder = calibration_dir(ctx)
        probe = prober(run=RunContext.of(ctx), calibration_dir=folder)
        est = estimate_fn(cfg, ctx.device, calibration_dir=folder, probe=probe, **kw)
        text = line_fn(est, ctx.device)
    except Exception:  # noqa: BLE001 - an estimate must never fail the job it describes
        return None
    ctx(Event(0, 1, text, stage="estimate", eta=est.get("seconds")))
    return est


def base_of(model: str, ctx, mixed_precision: str = "auto"):
    """The job's base model, loaded through its model cache with the precision a tune loads it
    in (so the job reuses it): its own size (what a size of 0 means) and its size relative to
    SD 1.x (the memory estimate's ``model_scale``) are read from it."""
    import torch

    from ..device import precision_for
    from ..models.loading import load_base

    dev = torch.device(ctx.device)
    return load_base(model or None, dev, precision_for(dev, mixed_precision).frozen_dtype,
                     ctx.cache)


class EtaClock:
    """The ETA of a job from its own progress: the estimate's seconds of the work still to do,
    scaled by how the work done so far compared with its estimate (``elapsed / estimated so
    far``): a job running twice as slow as estimated says so after its first stage."""

    def __init__(self, total_s: float, clock=time.monotonic) -> None:
        self.total_s = max(0.0, float(total_s or 0.0))
        self.clock = clock
        self.t0 = clock()
        self.done_s = 0.0  # estimated seconds of the work done

    def done(self, estimated_s: float) -> None:
        self.done_s += max(0.0, float(estimated_s or 0.0))

    def eta(self) -> Optional[float]:
        if self.total_s <= 0:
            return None
        left = max(0.0, self.total_s - self.done_s)
        if self.done_s <= 0:
            return left
        return left * (self.clock() - self.t0) / self.done_s
