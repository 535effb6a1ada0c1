"""Seconds and peak memory of the Wan2.1 T2V jobs (tune, edit, FlowEdit), before the device:
the architecture's figures (models/wan/estimate.py: FLOPs of the transformer at the clip's
token count over an assumed throughput per device), labelled "uncalibrated" since no Wan run
measures its speed into the calibration store yet.

The clip's frames and size are the ones the job will use (pipelines/flow_clip.py: resampled to
4k + 1, the long side on multiples of 16), read from the clip's first frame where it can be read
(a square of the size otherwise). The UMT5 text encoder runs once per prompt and is freed (or
offloaded) before the denoising steps: not counted in the peak.
"""
from __future__ import annotations

from typing import Any

UNCALIBRATED = "uncalibrated"


def clip_shape(data, model: str) -> tuple[int, int, int]:
    """(frames, height, width) a flow job will run ``data``'s clip at."""
    from ..models.family import backbone_family, rules
    from ..pipelines.flow_clip import flow_size

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


def _finish(parts: dict, how: str, gib: float, **extra) -> dict:
    from .estimates import finish

    est = finish(parts, UNCALIBRATED, 1.0, gib=round(gib, 2), basis=how, **extra)
    est["seconds"] = round(est["seconds"], 1)
    return est


def line(est: dict, device: Any = "cpu", counts=()) -> str:
    """The ``Estimate: ...`` line of a Wan job: memory, time range, what it counts and the
    basis (the architecture's FLOPs at an assumed throughput: uncalibrated)."""
    from ..calibration import format_seconds

    dev = str(device).split(":")[0]
    what = ", ".join(counts)
    return (f"Estimate: ~{est['gib']:.1f} GiB, ~{format_seconds(est['seconds'])} "
            f"({format_seconds(est['low'])}–{format_seconds(est['high'])}) on {dev} "
            f"({what + '; ' if what else ''}{est.get('basis', UNCALIBRATED)}, from the "
            "architecture's FLOPs).")


def tune_line(est: dict, device: Any = "cpu") -> str:
    p = est.get("parts", {})
    return line(est, device, [f"{p.get('frames')} frames at {p.get('width')}x{p.get('height')}",
                              "LoRA tuning"])


def tune_estimate(cfg, device: Any = "cpu") -> dict:
    """A Wan LoRA tune: ``steps`` training steps (forward + backward, + the recomputed forward
    with gradient checkpointing) at the clip's shape."""
    from ..models.wan import estimate as est

    f, h, w = clip_shape(cfg.data, cfg.model)
    tc = est.transformer_config(_resolved(cfg.model))
    step = est.train_step(tc, f, h, w, str(device), cfg.gradient_checkpointing)
    parts = {"tune_s": cfg.steps * step.seconds, "frames": f, "height": h, "width": w}
    return _finish(parts, step.how, step.peak_gib, seconds_per_step=step.seconds,
                   seconds_inversion=0.0)


def sample_estimate(model: str, frames: int, height: int, width: int, steps: int,
                    guidance: float, device: Any = "cpu", inversion_steps: int = 0) -> dict:
    """A Wan edit: ``steps`` sampling steps (two passes under CFG) + the decode, and an
    inversion of ``inversion_steps`` single passes where one is made."""
    from ..config import guided_passes
    from ..models.wan import estimate as est

    tc = est.transformer_config(_resolved(model))
    s = est.sample(tc, frames, height, width, steps, str(device), guided_passes(guidance))
    inv = est.sample(tc, frames, height, width, inversion_steps, str(device), 1) \
        if inversion_steps else None
    parts = {"sample_s": s.parts["denoise_s"], "decode_s": s.parts["decode_s"],
             "inversion_s": inv.parts["denoise_s"] if inv else 0.0}
    return _finish(parts, s.how, s.peak_gib, inversion=bool(inversion_steps))


def flowedit_estimate(cfg, device: Any = "cpu") -> dict:
    """FlowEdit: per step taken, n_avg x (a target and a source velocity, each two passes under
    CFG), + the decode."""
    from ..models.wan import estimate as est
    from ..pipelines.flow_editing import n_max_of

    f, h, w = clip_shape(cfg.data, cfg.model)
    tc = est.transformer_config(_resolved(cfg.model))
    from ..config import guided_passes

    passes = guided_passes(cfg.source_guidance) + guided_passes(cfg.target_guidance)
    s = est.sample(tc, f, h, w, n_max_of(cfg) * cfg.n_avg, str(device), passes)
    return _finish({"flowedit_s": s.parts["denoise_s"], "decode_s": s.parts["decode_s"]},
                   s.how, s.peak_gib)


def long_estimate(model: str, long, clip_hw, device: Any = "cpu") -> dict:
    """A Wan long video (pipelines/flow_long.py): every one of ``steps`` steps runs each window
    of the latent grid through the transformer (the Wan sampling estimate's per-step cost at the
    window's frames and size, two passes under CFG), + one decode of every frame made. The peak
    is one call's: ``batch_windows`` windows (all of them on a GPU, 2 on a CPU, as the
    co-denoiser starts) x the CFG passes. ``clip_hw``: the tuned clip's (height, width), None for
    a base model (its native frame)."""
    from ..config import guided_passes
    from ..models.family import backbone_family, rules
    from ..models.wan import estimate as est
    from ..pipelines.flow_long import flow_grid, long_size

    r = rules(backbone_family(model))
    grid, layout = flow_grid(long, r.temporal)
    (h, w), _ = long_size(long, clip_hw, r)
    tc = est.transformer_config(_resolved(model))
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
    parts = {"co_denoise_s": n * per_window.parts["denoise_s"],
             "decode_s": decode.parts["decode_s"], "frames": grid.made, "height": h,
             "width": w, "windows": n, "window_frames": grid.window_frames}
    return _finish(parts, per_window.how, max(call.peak_gib, decode.peak_gib),
                   seconds_per_window_step=per_window.parts["denoise_s"] / max(1, long.steps))


def long_line(est: dict, device: Any = "cpu") -> str:
    p = est.get("parts", {})
    return line(est, device, [f"{p.get('windows')} windows of {p.get('window_frames')} frames "
                              f"at {p.get('width')}x{p.get('height')}", "co-denoising",
                              "decode"])


__all__ = ["clip_shape", "flowedit_estimate", "long_estimate", "long_line", "line", "sample_estimate", "tune_estimate",
           "tune_line"]
