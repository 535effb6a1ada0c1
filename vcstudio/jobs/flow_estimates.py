"""Seconds and peak memory of the Wan2.1 T2V jobs (tune, edit, FlowEdit), before the device,
calibrated as the Stable Diffusion estimates are (vcstudio/calibration.py: the speeds earlier
runs measured on this device and model, at the machine's load now):

* a tune: the training step a tune of this model and method measured at this shape
  ("calibrated"), else at the nearest shape ("scaled from FxWxH"); a method not yet measured
  takes the baseline's step of this model times its share from the architecture ("scaled from
  the baseline"); previews and the overhead before the first step as measured;
* an edit / FlowEdit: one transformer pass and one decode of this model at this shape, which
  every tune preview, edit and FlowEdit of it measures (``calibration.record_flow``);
* where nothing was measured: the architecture's figures (models/wan/estimate.py: FLOPs of the
  transformer at the clip's token count over an assumed throughput per device), labelled
  "uncalibrated" with that assumption as ``basis``.

A method's share of a tune (DCT's decodes and feature nets, APLA's VGT: methods/dit.py
``flow_cost``) is added in FLOPs and GiB to the baseline's figures.

The clip's frames and size are the ones the job will use (pipelines/flow/clip.py: resampled to
4k + 1, the long side on multiples of 16), read from the clip's first frame where it can be read
(a square of the size otherwise). The UMT5 text encoder runs once per prompt and is freed (or
offloaded) before the denoising steps: not counted in the peak.
"""
from __future__ import annotations

from typing import Any, Optional

UNCALIBRATED = "uncalibrated"


def clip_shape(data, model: str) -> tuple[int, int, int]:
    """(frames, height, width) a flow job will run ``data``'s clip at."""
    from ..models.family import backbone_family, rules
    from ..pipelines.flow.clip import flow_size

    r = rules(backbone_family(model))
    k = max(1, (int(data.n_frames) - 1) // r.temporal)
    frames = r.temporal * k + 1
    hw = (max(data.height, 1), max(data.width, 1)) if data.width and data.height else None
    if hw is None and data.video_path:
        try:
            from ..io import read_video

            hw = read_video(data.video_path, 0, 1, 1).shape[1:3]
        except Exception:  # noqa: BLE001 - unreadable here: the job itself says so
            hw = None
    w, h = flow_size(data.width, data.height, data.size, tuple(hw or (1, 1)), r)
    return frames, h, w


def _resolved(model: str) -> str:
    from ..models.family import resolved

    return resolved(model)


def _finish(parts: dict, how: str, gib: float, basis: str, load: float = 1.0,
            **extra) -> dict:
    from .estimates import finish

    est = finish(parts, how, load, gib=round(gib, 2), basis=basis, **extra)
    est["seconds"] = round(est["seconds"], 1)
    return est


def line(est: dict, device: Any = "cpu", counts=()) -> str:
    """The ``Estimate: ...`` line of a Wan job: memory, time range, what it counts and how it
    was measured: calibrated as every job's line says it (jobs/estimates.py ``line``), or the
    architecture's FLOPs at an assumed throughput (uncalibrated)."""
    from ..calibration import format_seconds
    from .estimates import kind_of
    from .estimates import line as measured_line

    if kind_of(est.get("how", UNCALIBRATED)) != UNCALIBRATED:
        return measured_line(est, device, counts)
    dev = str(device).split(":")[0]
    what = ", ".join(counts)
    return (f"Estimate: ~{est['gib']:.1f} GiB, ~{format_seconds(est['seconds'])} "
            f"({format_seconds(est['low'])}–{format_seconds(est['high'])}) on {dev} "
            f"({what + '; ' if what else ''}{est.get('basis', UNCALIBRATED)}, from the "
            "architecture's FLOPs).")


def _units(folder, device, model: str, frames: int, height: int, width: int, rate: float):
    """(pass_s, decode_s, how, load) measured for ``model`` (calibration.record_flow), or
    (None, None, "uncalibrated", 1.0)."""
    from .. import calibration as cal

    shape = (frames, width, height)
    p, how, load = cal.lookup_unit(folder, device, cal.flow_unit(cal.FLOW_PASS, model), shape,
                                   rate)
    if p is None:
        return None, None, UNCALIBRATED, 1.0
    d, _, _ = cal.lookup_unit(folder, device, cal.flow_unit(cal.FLOW_DECODE, model), shape, rate)
    return p, d, how, load


def tune_line(est: dict, device: Any = "cpu") -> str:
    p = est.get("parts", {})
    return line(est, device, [f"{p.get('frames')} frames at {p.get('width')}x{p.get('height')}",
                              "LoRA tuning"])


def tune_estimate(cfg, device: Any = "cpu", calibration_dir=None, rate: Optional[float] = None,
                  **_) -> dict:
    """A Wan LoRA tune: the overhead before the first step, ``steps`` training steps (forward +
    backward, + the recomputed forward with gradient checkpointing, + the method's terms) and
    its previews (every ``preview_every`` steps and the last: ``preview_steps`` CFG steps and
    a decode) at the clip's shape, calibrated where measured (module docstring)."""
    from .. import calibration as cal
    from ..config import guided_passes
    from ..methods.registry import flow_cost
    from ..models.family import backbone_family, rules
    from ..models.wan import estimate as est
    from .estimates import rate_now, worst

    f, h, w = clip_shape(cfg.data, cfg.model)
    model = _resolved(cfg.model)
    tc = est.transformer_config(model)
    arch = est.train_step(tc, f, h, w, str(device), cfg.gradient_checkpointing)
    tflops, _ = est.device_tflops(str(device))
    extra_flops, extra_gib = flow_cost(cfg, f, h, w)
    share = 1.0 + extra_flops / (arch.seconds * tflops * 1e12)  # the method's, architecture
    rate = rate_now(device, rate)
    found = cal.lookup(calibration_dir, device, cfg.model, cfg.method, f, w, h, rate)
    overhead, how, load = 0.0, UNCALIBRATED, 1.0
    if found.speed is not None:
        step_s, overhead, how, load = (found.speed.train_step_s, found.speed.overhead_s,
                                       found.how, found.load)
    else:
        base = (cal.lookup(calibration_dir, device, cfg.model, "baseline", f, w, h, rate)
                if share > 1.0 or cfg.method != "baseline" else cal.Lookup(None))
        if base.speed is not None:
            step_s, overhead, load = (base.speed.train_step_s * share, base.speed.overhead_s,
                                      base.load)
            how = f"scaled from the baseline's speed{'' if base.exact else ' ' + base.how}"
        else:
            step_s = arch.seconds * share
    # previews: a pass and a decode as measured for this model, else the architecture's
    n_prev = (cfg.steps // cfg.preview_every + (1 if cfg.steps % cfg.preview_every else 0)
              if cfg.preview_every else 0)
    guide = rules(backbone_family(cfg.model)).guidance  # as the tune's previews sample
    pass_s, decode_s, p_how, _ = _units(calibration_dir, device, model, f, h, w, rate)
    if pass_s is None:
        smp = est.sample(tc, f, h, w, max(1, cfg.preview_steps), str(device),
                         guided_passes(guide))
        preview_s = smp.seconds
    else:
        preview_s = max(1, cfg.preview_steps) * guided_passes(guide) * pass_s + (decode_s or 0)
    hows = [how] + ([p_how] if n_prev else [])
    parts = {"overhead_s": overhead, "tune_s": cfg.steps * step_s, "previews": n_prev,
             "previews_s": n_prev * preview_s, "frames": f, "height": h, "width": w}
    per_step = step_s + (parts["previews_s"] / cfg.steps if cfg.steps else 0.0)
    return _finish(parts, worst(hows) if how != UNCALIBRATED else UNCALIBRATED,
                   arch.peak_gib + extra_gib, arch.how, load, seconds_per_step=per_step,
                   seconds_inversion=overhead, method_share=round(share, 3))


def sample_estimate(model: str, frames: int, height: int, width: int, steps: int,
                    guidance: float, device: Any = "cpu", inversion_steps: int = 0,
                    calibration_dir=None, rate: Optional[float] = None) -> dict:
    """A Wan edit: ``steps`` sampling steps (two passes under CFG) + the decode, and an
    inversion of ``inversion_steps`` single passes where one is made; from this model's
    measured pass and decode at this shape where there are (module docstring)."""
    from ..config import guided_passes
    from ..models.wan import estimate as est
    from .estimates import rate_now

    model = _resolved(model)
    tc = est.transformer_config(model)
    s = est.sample(tc, frames, height, width, steps, str(device), guided_passes(guidance))
    pass_s, decode_s, how, load = _units(calibration_dir, device, model, frames, height, width,
                                         rate_now(device, rate))
    if pass_s is not None:
        parts = {"sample_s": steps * guided_passes(guidance) * pass_s,
                 "decode_s": decode_s if decode_s is not None else s.parts["decode_s"],
                 "inversion_s": inversion_steps * pass_s}
    else:
        inv = est.sample(tc, frames, height, width, inversion_steps, str(device), 1) \
            if inversion_steps else None
        parts = {"sample_s": s.parts["denoise_s"], "decode_s": s.parts["decode_s"],
                 "inversion_s": inv.parts["denoise_s"] if inv else 0.0}
    return _finish(parts, how, s.peak_gib, s.how, load, inversion=bool(inversion_steps))


def flowedit_estimate(cfg, device: Any = "cpu", calibration_dir=None,
                      rate: Optional[float] = None) -> dict:
    """FlowEdit: its transformer passes (pipelines/flow/edit.py ``flowedit_passes``: per
    edit step n_avg x a target and a source velocity, each two passes under CFG) + the decode,
    from this model's measured pass and decode where there are."""
    from ..models.wan import estimate as est
    from ..pipelines.flow.edit import flowedit_passes
    from .estimates import rate_now

    f, h, w = clip_shape(cfg.data, cfg.model)
    model = _resolved(cfg.model)
    tc = est.transformer_config(model)
    n = flowedit_passes(cfg)
    s = est.sample(tc, f, h, w, n, str(device), 1)
    pass_s, decode_s, how, load = _units(calibration_dir, device, model, f, h, w,
                                         rate_now(device, rate))
    if pass_s is not None:
        parts = {"flowedit_s": n * pass_s,
                 "decode_s": decode_s if decode_s is not None else s.parts["decode_s"]}
    else:
        parts = {"flowedit_s": s.parts["denoise_s"], "decode_s": s.parts["decode_s"]}
    return _finish(parts, how, s.peak_gib, s.how, load)


def long_estimate(model: str, long, clip_hw, device: Any = "cpu", calibration_dir=None,
                  rate: Optional[float] = None) -> dict:
    """A Wan long video (pipelines/flow/long.py): every one of ``steps`` steps runs each window
    of the latent grid through the transformer (two passes under CFG), + one decode of every
    frame made; from this model's measured pass at the window's shape and decode at the video's
    where there are (module docstring), else the architecture's FLOPs (the Wan sampling
    estimate's per-step cost). The peak is one call's: ``batch_windows`` windows (all of them on
    a GPU, 2 on a CPU, as the co-denoiser starts) x the CFG passes. ``clip_hw``: the tuned
    clip's (height, width), None for a base model (its native frame)."""
    from ..config import guided_passes
    from ..models.family import backbone_family, rules
    from ..models.wan import estimate as est
    from ..pipelines.flow.long import flow_grid, long_size
    from .estimates import rate_now

    r = rules(backbone_family(model))
    grid, layout = flow_grid(long, r.temporal)
    (h, w), _ = long_size(long, clip_hw, r)
    model = _resolved(model)
    tc = est.transformer_config(model)
    passes = guided_passes(long.guidance)
    dev = str(device)
    per_window = est.sample(tc, grid.window_frames, h, w, long.steps, dev, passes)
    decode = est.sample(tc, grid.made, h, w, 0, dev, 1)
    n = layout.n_windows
    batch = long.batch_windows or (n if dev.startswith("cuda") else min(2, n))
    # the peak's activations grow with the tokens of one call: batch x passes windows of
    # latent_window frames (est.sample counts a clip's tokens from its pixel frames)
    lat = min(n, batch) * passes * grid.latent_window
    call = est.sample(tc, r.temporal * (lat - 1) + 1, h, w, 1, dev, 1)
    now = rate_now(device, rate)
    pass_s, _, how, load = _units(calibration_dir, device, model, grid.window_frames, h, w, now)
    _, decode_s, _, _ = _units(calibration_dir, device, model, grid.made, h, w, now)
    window_step_s = (passes * pass_s if pass_s is not None
                     else per_window.parts["denoise_s"] / max(1, long.steps))
    parts = {"co_denoise_s": n * long.steps * window_step_s,
             "decode_s": decode_s if decode_s is not None else decode.parts["decode_s"],
             "frames": grid.made, "height": h, "width": w, "windows": n,
             "window_frames": grid.window_frames}
    return _finish(parts, how, max(call.peak_gib, decode.peak_gib), per_window.how, load,
                   seconds_per_window_step=window_step_s)


def long_line(est: dict, device: Any = "cpu") -> str:
    p = est.get("parts", {})
    return line(est, device, [f"{p.get('windows')} windows of {p.get('window_frames')} frames "
                              f"at {p.get('width')}x{p.get('height')}", "co-denoising",
                              "decode"])


__all__ = ["clip_shape", "flowedit_estimate", "long_estimate", "long_line", "line", "sample_estimate", "tune_estimate",
           "tune_line"]
