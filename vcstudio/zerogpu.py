"""ZeroGPU: run each GPU stretch of a job as one time-limited ``@spaces.GPU`` call.

On a ZeroGPU Space (the ``spaces`` package importable and ``SPACES_ZERO_GPU`` set) a GPU is
lent only inside a function decorated with ``spaces.GPU``, for at most the ``duration`` the
call asked for; a call that runs past it is aborted ("GPU task aborted") and a request above
the platform's cap is refused ("illegal duration"). The decorated function runs in a worker
process: its arguments and result cross the boundary pickled, and nothing it changes in memory
comes back. So a stretch here is a picklable :class:`Stretch` (the job's run function, its
config, where it writes), run with a store-less :class:`~vcstudio.session.DetachedContext`;
what it would have recorded comes back as plain records that the Studio replays into the run
store, as for a sweep cell.

Durations come from the job's own ``estimate`` (jobs/*.py), times :data:`MARGIN` (the
estimates are not yet calibrated), capped at :func:`max_call_seconds`. A tune longer than one
call runs as several calls, each with a step budget: it pauses at the end of its budget
(saving the checkpoint it already writes for ``vcstudio resume``) and the next call continues
from that checkpoint exactly (optimizer, RNG and method state included), so the delta equals a
one-call tune's. A call aborted anyway (an estimate too short) is retried from the last
checkpoint with half the steps, twice at most. A job whose estimate names ``stages`` (an edit
with an inversion not yet cached: invert, then sample) runs one call per stage, the run folder
carrying what one stage leaves for the next. Progress inside a call does not cross the
worker boundary: the job's events say which call runs ("running in N GPU calls"), and Stop
takes effect between calls (the tune then ends as stopped, its delta usable).

Off a Space, :func:`active` is false and nothing here imports ``spaces``; session.py imports
this module, never ``spaces``.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .errors import VcsError

DEFAULT_SECONDS = 60.0  # spaces.GPU's own default, for a job without an estimate
MARGIN = 1.5  # requested = estimate x MARGIN: an aborted call loses its work since a checkpoint
LOAD_SECONDS = 15.0  # loading / moving the base model inside each call
RETRIES = 2  # aborted tune calls retried from the checkpoint, each with half the steps


def max_call_seconds() -> float:
    """The longest call requested. ZeroGPU's cap depends on the visitor's tier (logged-out
    visitors get the least) and a shorter request queues first, so the default is 120 s;
    ``VCSTUDIO_ZEROGPU_MAX_S`` changes it."""
    return float(os.environ.get("VCSTUDIO_ZEROGPU_MAX_S", "120"))


def active() -> bool:
    """True on ZeroGPU hardware: ``SPACES_ZERO_GPU`` set and the ``spaces`` package present."""
    if os.environ.get("SPACES_ZERO_GPU", "").lower() not in ("1", "true", "yes"):
        return False
    return importlib.util.find_spec("spaces") is not None


@dataclass
class Stretch:
    """One GPU call's work, picklable: a module-level job function, its config, and the
    folders and step budget of the context it runs with."""

    run: Callable[[Any, Any], Any]
    cfg: Any
    out: Optional[str]
    session: Any  # vcstudio.session.Session or None
    data_dir: str
    device: str
    limits: Any
    seconds: int  # the duration this call asks for
    context: type  # vcstudio.session.DetachedContext (handed in: this module imports no session)
    step_budget: Optional[int] = None
    stage: Optional[str] = None  # one named stretch of a job (an edit's "invert"); None = all
    stoppable: bool = False
    stop: bool = False  # Stop was pressed: end the tune now (its delta stays usable)


def _duration(stretch: Stretch) -> int:
    """spaces.GPU's dynamic duration: called with the decorated function's arguments."""
    return stretch.seconds


def _run_stretch(stretch: Stretch):
    """The body of one GPU call (in ZeroGPU's worker): the job with a store-less context;
    returns (result, records)."""
    from pathlib import Path

    from .models.cache import default_cache

    ctx = stretch.context(stretch.out or stretch.data_dir, device=stretch.device,
                          cache=default_cache, limits=stretch.limits,
                          stoppable=stretch.stoppable)
    ctx.out, ctx.session, ctx.data_dir = stretch.out, stretch.session, Path(stretch.data_dir)
    ctx.step_budget, ctx.stage = stretch.step_budget, stretch.stage
    if stretch.stop:
        ctx.cancel.cancel()
    result = stretch.run(stretch.cfg, ctx)
    return result, ctx.records


_gpu_fn: Optional[Callable] = None


def register() -> Callable:
    """The ``spaces.GPU``-decorated stretch runner. ZeroGPU looks for decorated functions when
    the app starts, so app.py calls this at import time on a ZeroGPU Space."""
    global _gpu_fn
    if _gpu_fn is None:
        import spaces

        _gpu_fn = spaces.GPU(duration=_duration)(_run_stretch)
    return _gpu_fn


def plan_tune(steps: int, sec_per_step: float, sec_inversion: float,
              max_s: Optional[float] = None, done: int = 0) -> list[int]:
    """Steps per call for the ``steps - done`` steps left, the fewest calls such that each,
    with the model load, fits ``max_s`` after the margin; the last call also inverts the clip
    (DDIM inversion is not resumable), so it holds fewer steps, none when the inversion needs
    a call of its own. The other calls share the steps evenly. Neither one step nor the
    inversion fitting a call is a one-line error."""
    max_s = max_call_seconds() if max_s is None else max_s
    avail = max_s / MARGIN - LOAD_SECONDS
    per_call = math.floor(avail / sec_per_step) if sec_per_step > 0 else max(1, steps)
    if per_call < 1 or sec_inversion > avail:
        what = "One tuning step" if per_call < 1 else "The clip's inversion"
        raise VcsError(f"{what} does not fit a {max_s:.0f} s ZeroGPU call at these settings; "
                       "use fewer frames, a smaller size or fewer inversion steps.")
    left = max(0, steps - done)
    with_inv = math.floor((avail - sec_inversion) / sec_per_step) if sec_per_step > 0 else left
    if left <= with_inv:
        return [left]
    k = math.ceil((left - max(0, with_inv)) / per_call)  # calls before the last one
    last = max(left - k * per_call, min(max(0, with_inv), left // (k + 1)))
    base, extra = divmod(left - last, k)
    return [base + (1 if i < extra else 0) for i in range(k)] + [last]


def call_seconds(n_steps: int, sec_per_step: float, sec_inversion: float, last: bool,
                 max_s: Optional[float] = None) -> int:
    """The duration one tune call asks for (whole seconds, at most ``max_s``)."""
    max_s = max_call_seconds() if max_s is None else max_s
    s = (LOAD_SECONDS + n_steps * sec_per_step + (sec_inversion if last else 0.0)) * MARGIN
    return int(min(max_s, math.ceil(s)))


def _aborted(e: BaseException) -> bool:
    return "gpu task aborted" in str(e).lower()


def _illegal(e: BaseException) -> bool:
    msg = str(e).lower()
    return "illegal duration" in msg or "more than the time allowed" in msg


def _call(studio, ctx, stretch: Stretch):
    """One GPU call; its records replayed into the store; result with the store's run id."""
    try:
        result, records = register()(stretch)
    except VcsError:
        raise
    except Exception as e:
        if _illegal(e):
            raise VcsError(f"ZeroGPU refused a {stretch.seconds} s GPU call (above this "
                           "visitor's limit); log in, or set VCSTUDIO_ZEROGPU_MAX_S lower on "
                           "the Space.") from None
        raise
    ids = studio.replay(records, ctx.job_id, checkpoints=True)
    rid = getattr(result, "run_id", None)
    if isinstance(rid, str) and rid in ids and dataclasses.is_dataclass(result):
        result = dataclasses.replace(result, run_id=ids[rid])
    return result


def run_job(studio, spec, cfg, ctx, detached: type) -> Any:
    """Run ``spec`` on ZeroGPU: one call sized by its estimate, or, for a resumable job whose
    estimate has per-step seconds (a tune), as many calls as its steps need. ``detached`` is
    the store-less context class each call's body runs with (session.DetachedContext)."""
    def _stretch(spec, cfg, ctx, out, seconds, **kw) -> Stretch:
        return Stretch(spec.run, cfg, out, ctx.session, str(ctx.data_dir), str(ctx.device),
                       ctx.limits, int(seconds), detached, stoppable=spec.stoppable, **kw)

    from .progress import Event

    max_s = max_call_seconds()
    est = spec.estimate(cfg, ctx.device) if spec.estimate is not None else None
    if est and est.get("stages") and not spec.resumable:
        # stretches the job can run one per call (an edit: inversion, then sampling)
        stages = list(est["stages"].items())
        result = None
        for i, (name, s) in enumerate(stages):
            secs = min(max_s, math.ceil(s * MARGIN + LOAD_SECONDS))
            ctx(Event(i, len(stages), f"running in {len(stages)} GPU calls: {name} (up to "
                      f"{secs:.0f} s)", stage="gpu"))
            try:
                result = _call(studio, ctx, _stretch(spec, cfg, ctx, ctx.out, secs,
                                                     stage=name if i < len(stages) - 1
                                                     else None))
            except VcsError:
                raise
            except Exception as e:
                if _aborted(e):
                    raise VcsError(f"The GPU call for the {name} ran past its {secs:.0f} s "
                                   "ZeroGPU limit; try fewer steps, or tune fewer frames.") \
                        from None
                raise
        return result
    if not (spec.resumable and est and est.get("seconds_per_step")):
        secs = est["seconds"] * MARGIN + LOAD_SECONDS if est else DEFAULT_SECONDS
        secs = min(max_s, math.ceil(secs))
        ctx(Event(0, 1, f"running in 1 GPU call (up to {secs:.0f} s)", stage="gpu"))
        try:
            return _call(studio, ctx, _stretch(spec, cfg, ctx, ctx.out, secs))
        except VcsError:
            raise
        except Exception as e:
            if _aborted(e):
                raise VcsError(f"The GPU call ran past its {secs:.0f} s ZeroGPU limit; try fewer "
                               "frames, a smaller size or fewer steps.") from None
            raise
    # a tune: every call writes the same run folder, continuing from the checkpoint
    import time

    t0 = time.monotonic()
    out = ctx.out or str(ctx.run_folder(spec.store_kind))
    sps, inv = float(est["seconds_per_step"]), float(est.get("seconds_inversion", 0.0))
    steps = int(cfg.steps)
    plan = plan_tune(steps, sps, inv, max_s)
    n_calls, done, call, retries = len(plan), 0, 0, 0
    result = None
    while True:
        budget = plan[0]
        last = len(plan) == 1
        secs = call_seconds(budget, sps, inv, last, max_s)
        call += 1
        ctx(Event(done, steps, f"running in {n_calls} GPU calls (ZeroGPU lends up to "
                  f"{max_s:.0f} s each): call {call}, steps {done + 1}-{done + budget}",
                  stage="tune"))
        try:
            result = _call(studio, ctx, _stretch(spec, cfg, ctx, out, secs,
                                                 step_budget=None if last else budget,
                                                 stop=ctx.cancel.cancelled))
        except Exception as e:
            if not _aborted(e) or isinstance(e, VcsError):
                raise
            retries += 1
            if retries > RETRIES:
                raise VcsError(f"ZeroGPU aborted the tune's GPU calls {retries} times (the time "
                               "estimate is too short for this GPU); its checkpoint is kept: "
                               "press Resume to continue it, or tune fewer frames.") from None
            # half the steps per call from here, from where the checkpoint says we are
            done = _checkpoint_step(out, done)
            n, left = max(1, budget // 2), steps - done
            plan = [n] * (left // n) + ([left % n] if left % n else []) or [0]
            n_calls = call + len(plan)
            continue
        if not getattr(result, "paused", False):
            break
        done = int(result.steps)
        plan = plan[1:] or plan_tune(steps, sps, inv, max_s, done=done)
    if dataclasses.is_dataclass(result) and call > 1:
        # the whole tune's time and calls, not the last call's
        secs = time.monotonic() - t0
        msg = getattr(result, "message", "") or ""
        if msg.startswith("Tuned "):
            msg = f"Tuned {result.steps} steps in {secs:.0f} s"
        result = dataclasses.replace(result, seconds=secs,
                                     message=f"{msg.rstrip('.')} in {call} GPU calls.")
    return result


def _checkpoint_step(run_dir: str, fallback: int) -> int:
    """The step of the checkpoint in ``run_dir`` (its safetensors header), else ``fallback``."""
    import json
    from pathlib import Path

    path = Path(run_dir) / "checkpoint.safetensors"
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return int(json.loads((f.metadata() or {}).get("step", str(fallback))))
    except Exception:
        return fallback
