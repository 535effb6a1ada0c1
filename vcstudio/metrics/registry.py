"""Metric names (the JSON keys) -> functions over a :class:`VideoContext`, and ``evaluate``.

A metric whose inputs or weights are missing is skipped with the reason; it never fails the
evaluation. The frame-level functions in the family modules stay the reference; these wrappers
only feed them the shared, incrementally computed features.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import numpy as np

from ..errors import CancelledError, VcsError
from ..models.cache import ModelCache, default_cache
from ..progress import CancelToken, Event, ProgressFn, null_progress
from . import clip_scores, fci as fci_mod, recon, vbench, warp as warp_mod
from .context import VideoContext
from .flow import flow_magnitude
from .result import MetricResult, pad_front


@dataclass(frozen=True)
class MetricSpec:
    name: str
    fn: Callable[[VideoContext], MetricResult]
    needs: tuple[str, ...] = ()  # "prompt", "source", "image"
    default: bool = True
    description: str = ""
    axis: str = ""  # what a per-frame value is, with its unit: a plot's axis label


REGISTRY: dict[str, MetricSpec] = {}
ALIASES = {"consistency": ("consistency_adjacent", "consistency_all_pairs"),
           "i2v": ("i2v_subject", "i2v_background"),
           "vbench": ("subject_consistency", "background_consistency", "flicker",
                      "dynamic_degree")}
_NEED_FLAG = {"prompt": "--prompt", "source": "--source", "image": "--image"}


def register(name: str, needs: Iterable[str] = (), default: bool = True, description: str = "",
             axis: str = ""):
    def deco(fn):
        REGISTRY[name] = MetricSpec(name, fn, tuple(needs), default, description, axis)
        return fn
    return deco


def axis_label(name: str) -> str:
    """The axis a metric's per-frame values are read on: what it measures and its unit
    ("warp error (MSE of RGB in 0-1)"); the name itself for a metric that declares none."""
    spec = REGISTRY.get(name)
    return spec.axis if spec is not None and spec.axis else name


# --- CLIP --------------------------------------------------------------------------------------

@register("clip_text", needs=("prompt",), description=clip_scores.ALIGN_DEF,
          axis="CLIP text alignment (100 x cos)")
def _clip_text(ctx: VideoContext) -> MetricResult:
    vals = clip_scores.text_alignment_from_embeddings(ctx.embeddings("clip"), ctx.text_embedding())
    return MetricResult("clip_text", float(vals.mean()), list(vals), ctx.clip_encoder().name,
                        clip_scores.ALIGN_DEF, True)


@register("consistency_adjacent", description=clip_scores.ADJ_DEF,
          axis="CLIP consistency with the previous frame (100 x cos)")
def _cons_adj(ctx: VideoContext) -> MetricResult:
    return clip_scores.frame_consistency(None, "adjacent", ctx.clip_encoder(),
                                         ctx.embeddings("clip"))


@register("consistency_all_pairs", description=clip_scores.ALL_DEF,
          axis="CLIP consistency, all pairs (100 x cos)")
def _cons_all(ctx: VideoContext) -> MetricResult:
    return clip_scores.frame_consistency(None, "all_pairs", ctx.clip_encoder(),
                                         ctx.embeddings("clip"))


# --- VBench ------------------------------------------------------------------------------------

@register("subject_consistency", description=vbench.SUBJ_DEF,
          axis="subject consistency (DINO, 0-1)")
def _subject(ctx: VideoContext) -> MetricResult:
    return vbench.subject_consistency(None, ctx.dino_encoder(), ctx.embeddings("dino"))


@register("background_consistency", description=vbench.BG_DEF,
          axis="background consistency (CLIP, 0-1)")
def _background(ctx: VideoContext) -> MetricResult:
    return vbench.background_consistency(None, ctx.clip_encoder(), ctx.embeddings("clip"))


@register("i2v_subject", needs=("image",), description="VBench-I2V i2v_subject (DINO)",
          axis="i2v subject (DINO cos to the image, 0-1)")
def _i2v_subject(ctx: VideoContext) -> MetricResult:
    return vbench.i2v_consistency("i2v_subject", ctx.embeddings("dino"),
                                  ctx.image_embedding("dino"), ctx.dino_encoder().name)


@register("i2v_background", needs=("image",),
          description="VBench-I2V i2v_background with CLIP standing in for DreamSim",
          axis="i2v background (CLIP cos to the image, 0-1)")
def _i2v_background(ctx: VideoContext) -> MetricResult:
    return vbench.i2v_consistency("i2v_background", ctx.embeddings("clip"),
                                  ctx.image_embedding("clip"), ctx.clip_encoder().name)


def _pairs_needed(ctx: VideoContext, name: str, definition: str, k: int = 2):
    if ctx.n < k:
        return MetricResult.too_few(name, k, definition)
    return None


@register("flicker", description=vbench.FLICKER_DEF, axis="flicker score (1 = no change, 0-1)")
def _flicker(ctx: VideoContext) -> MetricResult:
    if (r := _pairs_needed(ctx, "flicker", vbench.FLICKER_DEF)):
        return r
    f = ctx.frames
    d = ctx.memo_each("flicker", ctx.n - 1, lambda t: vbench.flicker_pairs(f[t:t + 2])[0])
    return MetricResult("flicker", vbench.flicker_from_pair_diffs(d),
                        pad_front((255.0 - np.asarray(d)) / 255.0, ctx.n), "pixels",
                        vbench.FLICKER_DEF, True)


@register("dynamic_degree", description=vbench.DYN_DEF, axis="top-5% flow magnitude (px / frame)")
def _dynamic(ctx: VideoContext) -> MetricResult:
    if (r := _pairs_needed(ctx, "dynamic_degree", vbench.DYN_DEF)):
        return r
    fl = ctx.flows()
    mags = ctx.memo_each("top5", ctx.n - 1, lambda t: vbench.top5_flow_magnitude(fl.forward(t)))
    h, w = ctx.frames.shape[1:3]
    return MetricResult("dynamic_degree", vbench.dynamic_degree_from_pairs(mags, h, w),
                        pad_front(mags, ctx.n), fl.model, vbench.DYN_DEF, None,
                        label=vbench.DYN_LABEL, extra={"threshold_px": 6.0 * min(h, w) / 256.0})


@register("motion_smoothness", default=False, description=vbench.SMOOTH_DEF)
def _smoothness(ctx: VideoContext) -> MetricResult:
    return vbench.motion_smoothness(ctx.frames, ctx.flow_method)


# --- flow --------------------------------------------------------------------------------------

FLOW_DEF = "mean forward optical-flow magnitude per pair, pixels/frame (how much motion)"


@register("flow", description=FLOW_DEF, axis="optical flow magnitude (px / frame)")
def _flow(ctx: VideoContext) -> MetricResult:
    if (r := _pairs_needed(ctx, "flow", FLOW_DEF)):
        return r
    fl = ctx.flows()
    fl.compute_all(backward=False)
    vals = ctx.memo_each("flowmag", ctx.n - 1, lambda t: flow_magnitude(fl.forward(t)).mean())
    return MetricResult("flow", float(np.mean(vals)), pad_front(vals, ctx.n), fl.model,
                        FLOW_DEF, None)


@register("warp_error", description=warp_mod.DEFINITION, axis="warp error (MSE of RGB in 0-1)")
def _warp(ctx: VideoContext) -> MetricResult:
    if (r := _pairs_needed(ctx, "warp_error", warp_mod.DEFINITION)):
        return r
    which = ctx.warp_flow
    if which == "source" and ctx.source is None:
        return MetricResult.skip("warp_error", "flow from the source asked for but no --source "
                                 "given", warp_mod.DEFINITION)
    fl = ctx.flows(which)
    fl.compute_all()
    f = ctx.frames
    vals = ctx.memo_each(f"warp_{which}", ctx.n - 1, lambda t: warp_mod.warp_error_pair(
        f[t], f[t + 1], fl.forward(t), fl.backward(t)))
    return MetricResult("warp_error", float(np.mean(vals)), pad_front(vals, ctx.n), fl.model,
                        warp_mod.DEFINITION + f"; flow from the {which} video", False,
                        extra={"flow_from": which})


@register("fci", description=fci_mod.DEFINITION, axis="flow change (px)")
def _fci(ctx: VideoContext) -> MetricResult:
    if (r := _pairs_needed(ctx, "fci", fci_mod.DEFINITION, 3)):
        return r
    fl = ctx.flows()
    fl.compute_all(backward=False)
    vals = ctx.memo_each("fci", ctx.n - 2, lambda t: fci_mod.flow_change(fl.forward(t),
                                                                         fl.forward(t + 1)))
    return MetricResult("fci", float(np.mean(vals)), pad_front(vals, ctx.n), fl.model,
                        fci_mod.DEFINITION, False, label=fci_mod.LABEL)


# --- reconstruction ----------------------------------------------------------------------------

@register("psnr", needs=("source",), description=recon.PSNR_DEF, axis="PSNR to the source (dB)")
def _psnr(ctx: VideoContext) -> MetricResult:
    f, s = ctx.frames, ctx.matched_source()
    vals = ctx.memo_each("psnr", ctx.n, lambda t: recon.psnr_frames(f[t:t + 1], s[t:t + 1])[0])
    return MetricResult("psnr", float(np.mean(vals)), vals, "pixels", recon.PSNR_DEF, True)


@register("ssim", needs=("source",), description=recon.SSIM_DEF, axis="SSIM to the source (0-1)")
def _ssim(ctx: VideoContext) -> MetricResult:
    f, s = ctx.frames, ctx.matched_source()
    vals = ctx.memo_each("ssim", ctx.n, lambda t: recon.ssim_frames(f[t:t + 1], s[t:t + 1],
                                                                    device=ctx.device)[0])
    return MetricResult("ssim", float(np.mean(vals)), vals, "pixels", recon.SSIM_DEF, True)


@register("lpips", needs=("source",), description=recon.LPIPS_DEF,
          axis="LPIPS to the source (AlexNet)")
def _lpips(ctx: VideoContext) -> MetricResult:
    model = ctx.cache.get(("lpips", str(ctx.lpips_weights), str(ctx.lpips_alexnet)),
                          lambda: recon.build_lpips(ctx.lpips_weights, ctx.lpips_alexnet))
    f, s = ctx.frames, ctx.matched_source()
    vals = ctx.memo_each("lpips", ctx.n, lambda t: recon.lpips_frames(
        model, f[t:t + 1], s[t:t + 1], ctx.device)[0])
    return MetricResult("lpips", float(np.mean(vals)), vals, "LPIPS v0.1 AlexNet",
                        recon.LPIPS_DEF, False)


# --- VCD (vcstudio.methods.vcd, written elsewhere) ----------------------------------------------

VCD_DEF = ("VCD (Video Consistency Distance): SWD of DFT amplitude/phase of VGG19 features "
           "between the conditioning image and frames 2..N, weights (N-i+1)/N; lower is better")


@register("vcd", needs=("image",), description=VCD_DEF, axis="VCD to the image (SWD)")
def _vcd(ctx: VideoContext) -> MetricResult:
    try:
        from ..methods.vcd import vcd  # lazily: the I2V work provides it
    except ImportError:
        return MetricResult.skip("vcd", "vcstudio.methods.vcd is not installed in this build",
                                 VCD_DEF)
    out = vcd(ctx.frames, image=ctx.image)
    if isinstance(out, MetricResult):
        return out
    value = getattr(out, "value", out)
    per = list(getattr(out, "per_frame", []) or [])
    return MetricResult("vcd", float(value), [float(v) for v in per],
                        getattr(out, "model", "VGG19"), VCD_DEF, False)


# --- selection and evaluation ------------------------------------------------------------------

def resolve_names(metrics: Optional[Iterable[str] | str]) -> Optional[list[str]]:
    """"a,b,c" or a list, aliases expanded; None = the default set. Unknown names raise."""
    if metrics is None:
        return None
    if isinstance(metrics, str):
        metrics = [m for m in (s.strip() for s in metrics.split(",")) if m]
    out: list[str] = []
    for m in metrics:
        for name in ALIASES.get(m, (m,)):
            if name not in REGISTRY:
                from ..errors import InputError

                raise InputError(f"Unknown metric {name!r}; known: "
                                 f"{', '.join(sorted(REGISTRY) + sorted(ALIASES))}.")
            if name not in out:
                out.append(name)
    return out


def available(ctx: VideoContext, name: str) -> Optional[str]:
    """None when ``name`` can run on ``ctx``'s inputs, else the reason it cannot."""
    for need in REGISTRY[name].needs:
        if getattr(ctx, need) is None:
            return f"needs {_NEED_FLAG[need]}"
    return None


def select(ctx: VideoContext, names: Optional[list[str]]) -> list[str]:
    if names is not None:
        return names
    return [n for n, s in REGISTRY.items() if s.default and available(ctx, n) is None]


def run_metric(ctx: VideoContext, name: str) -> MetricResult:
    """One metric on ``ctx``; missing inputs / weights / frames -> a skipped result."""
    reason = available(ctx, name)
    if reason:
        return MetricResult.skip(name, reason, REGISTRY[name].description)
    try:
        return REGISTRY[name].fn(ctx)
    except CancelledError:
        raise
    except VcsError as e:
        return MetricResult.skip(name, str(e), REGISTRY[name].description)


def evaluate(frames: np.ndarray, prompt: Optional[str] = None, source: Optional[np.ndarray] = None,
             image: Optional[np.ndarray] = None, metrics: Optional[Iterable[str] | str] = None,
             cache: ModelCache = default_cache, clip=None, dino=None, device=None,
             flow_method: str = "dis", warp_flow: str = "generated", lpips_weights=None,
             lpips_alexnet=None, progress: ProgressFn = null_progress,
             cancel: Optional[CancelToken] = None,
             timings: Optional[dict] = None) -> dict[str, MetricResult]:
    """Run ``metrics`` (default: every default metric the inputs allow) on uint8 ``frames``.

    Returns name -> :class:`MetricResult`; unavailable metrics come back with ``skipped`` set.
    ``timings``, when a dict, receives seconds per metric (features computed by the first
    metric that needs them are counted there).
    """
    ctx = VideoContext(frames, prompt=prompt, source=source, image=image, clip=clip, dino=dino,
                       flow_method=flow_method, warp_flow=warp_flow, device=device, cache=cache,
                       lpips_weights=lpips_weights, lpips_alexnet=lpips_alexnet)
    return evaluate_context(ctx, metrics, progress, cancel, timings)


def evaluate_context(ctx: VideoContext, metrics=None, progress: ProgressFn = null_progress,
                     cancel: Optional[CancelToken] = None,
                     timings: Optional[dict] = None) -> dict[str, MetricResult]:
    names = select(ctx, resolve_names(metrics))
    out: dict[str, MetricResult] = {}
    for i, name in enumerate(names):
        if cancel is not None:
            cancel.check()
        t0 = time.perf_counter()
        out[name] = run_metric(ctx, name)
        if timings is not None:
            timings[name] = time.perf_counter() - t0
        v = out[name].value
        progress(Event(i + 1, len(names), name, stage="metrics",
                       metrics={name: v} if not out[name].skipped and math.isfinite(v) else {}))
    return out


def results_to_json(results: dict[str, MetricResult], **meta) -> dict:
    return {**meta, "metrics": {k: r.to_dict() for k, r in results.items()}}
