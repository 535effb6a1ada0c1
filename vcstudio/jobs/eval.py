"""The eval job: score a video, with the metrics registry (``vcstudio eval``) or with VCD
against a conditioning image (``vcstudio eval-vcd``, the I2V tab's Score VCD).

Config: :class:`EvalConfig`. Records an ``eval`` run whose folder holds ``scores.json``, with
the per-frame and per-video values in the store.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..config import Limits
from .. import validate as v


@dataclass
class EvalConfig:
    video: str = ""
    what: str = "metrics"  # metrics (the registry) | vcd (the VCD paper's Video Consistency
    # Distance)
    prompt: str = ""  # enables clip_text
    source: str = ""  # the edit's source video: enables psnr, ssim, lpips
    image: str = ""  # conditioning image: i2v_*, vcd (default for VCD: the first frame)
    metrics: list[str] = field(default_factory=list)  # [] = every metric the inputs allow
    clip: str = ""
    dino: str = ""
    flow_method: str = "dis"
    warp_flow: str = "generated"
    lpips_weights: str = ""
    lpips_alexnet: str = ""
    encoder: str = "auto"  # VCD: vgg19 | efficientnet-lite0 | auto (VGG19 if its weights exist)
    size: int = 224  # VCD: frames brought to size x size, keeping the aspect (fit)
    fit: str = "crop"  # VCD: crop (short side to size, centre crop) | pad | stretch
    batch: int = 8  # VCD: frames decoded, resized and encoded at a time (bounds memory)


@dataclass
class EvalOutcome:
    run_id: str
    frames_shape: tuple
    results: dict = field(default_factory=dict)  # name -> MetricResult (what = metrics)
    vcd: Optional[object] = None  # VCDResult (what = vcd)
    encoder: str = ""


def validate(cfg: EvalConfig, limits: Limits) -> None:
    v.text("video", cfg.video, "give the video file or folder of frames to score")
    v.choice("what", cfg.what, ("metrics", "vcd"))
    v.whole("size (--size)", cfg.size, 16, 1024)
    v.choice("fit (--fit)", cfg.fit, ("crop", "pad", "stretch"))
    v.whole("batch", cfg.batch, 1, 256)
    v.choice("flow_method (--flow)", cfg.flow_method, ("dis", "farneback"))


def vcd_encoder(name: str = "auto", cache=None, device="cpu"):
    """(name, encoder) for VCD: VGG19 as the paper, else (auto, offline) the pretrained
    EfficientNet-Lite0 shipped in its wheel, said so on stderr."""
    from ..errors import ModelNotFoundError
    from ..models.cache import default_cache
    from ..models.vgg import load_encoder

    cache = cache if cache is not None else default_cache
    if name != "auto":
        return name, load_encoder(name, device=device, cache=cache)
    try:
        return "vgg19", load_encoder("vgg19", device=device, cache=cache)
    except ModelNotFoundError:
        print("note: VGG19 weights not found; VCD uses the offline stand-in encoder "
              "efficientnet-lite0 (scores are labelled so).", file=sys.stderr)
        return "efficientnet-lite0", load_encoder("efficientnet-lite0", device=device,
                                                  cache=cache)


# seconds of one VCD frame (decode, resize, encoder, DFT + SWD) at 224 px on the CPU before one
# was measured here (a guess, "uncalibrated"; a GPU ~20x faster); the job probes the encoder on
# two frames when it starts and records every scoring's real figure
PRIOR_VCD_FRAME_S = {"vgg19": 0.5, "efficientnet-lite0": 0.1, "auto": 0.5}


def vcd_unit(encoder: str) -> str:
    return f"vcd:{encoder}"


def estimate(cfg: EvalConfig, device="cpu", calibration_dir=None, probe=None,
             rate: Optional[float] = None) -> dict:
    """Seconds of scoring ``cfg.video`` (its frame count from the container, io.frame_count):
    VCD = every frame through the feature net at ``size`` (seconds per frame measured on this
    device with this encoder, vcstudio/calibration.py units, scaled by the machine's load now:
    ``rate``; a guess before the first), metrics = jobs/scoring.py's estimate. ``probe`` (a
    tune's) does not apply: the VCD job measures its encoder itself when it starts. Returns
    {"seconds", "low", "high", "how", "load", "parts", "frames"}; ``seconds`` None where the
    clip's length cannot be told."""
    from .. import calibration as cal
    from ..io.video import frame_count
    from . import scoring
    from .estimates import finish, rate_now

    rate = rate_now(device, rate)
    n = frame_count(cfg.video)
    if not n:
        return {"seconds": None, "how": "uncalibrated", "load": 1.0, "parts": {}, "frames": None}
    if cfg.what == "vcd":
        per, how, load = cal.lookup_unit(calibration_dir, device, vcd_unit(cfg.encoder),
                                         (cfg.size,), rate)
        if per is None:
            gpu = 1.0 if cal.device_kind(device) == "cpu" else 0.05
            per = PRIOR_VCD_FRAME_S.get(cfg.encoder, 0.5) * gpu * (cfg.size / 224) ** 2
        return finish({"vcd_s": per * n}, how, load, frames=n)
    from ..io import read_video

    try:
        h, w = read_video(cfg.video, 0, 1, 1).shape[1:3]
    except Exception:  # noqa: BLE001 - the job itself says what is wrong with the file
        return {"seconds": None, "how": "uncalibrated", "load": 1.0, "parts": {}, "frames": n}
    secs, how, load = scoring.estimate(cfg.metrics or ["default"], n, w, h, device,
                                       calibration_dir, rate)
    return finish({"metrics_s": secs}, how, load, frames=n)


def estimate_line(est: dict, device="cpu") -> str:
    """The scoring's ``Estimate: ...`` line (jobs/estimates.py ``line``)."""
    from .estimates import line

    n = est.get("frames")
    what = "VCD" if "vcd_s" in est.get("parts", {}) else "metrics"
    return line(est, device, [f"{what} of {n} frames" if n else f"{what}"])


def _probe_vcd(m, cfg: EvalConfig, ctx) -> None:
    """Two frames through the VCD scorer when no speed was measured for this encoder and size
    (a few seconds: the encoder is loaded already), recorded for the estimate."""
    import time

    from .. import calibration as cal
    from .. import loadfactor
    from .estimates import calibration_dir

    rate = loadfactor.rate(ctx.device)
    if cal.lookup_unit(calibration_dir(ctx), ctx.device, vcd_unit(cfg.encoder), (cfg.size,),
                       rate)[1] == "calibrated":
        return
    frames = np.random.default_rng(0).integers(0, 256, (3, cfg.size, cfg.size, 3), np.uint8)
    import torch

    with torch.no_grad():
        m.score_stream(iter([frames[:2]]), image=None)  # warm-up (allocations)
        t = time.perf_counter()
        m.score_stream(iter([frames]), image=None)
    _record_vcd(ctx, cfg, (time.perf_counter() - t) / len(frames), rate)


def _record_vcd(ctx, cfg: EvalConfig, per_frame: float, rate: float) -> None:
    from .. import calibration as cal
    from .estimates import calibration_dir

    try:
        cal.record_unit(calibration_dir(ctx), ctx.device, vcd_unit(cfg.encoder), (cfg.size,),
                        per_frame, rate)
    except OSError:
        pass


def run(cfg: EvalConfig, ctx) -> EvalOutcome:
    import torch

    from ..io import read_image, read_video
    from ..io.atomic import write_json

    image = read_image(cfg.image) if cfg.image else None
    if cfg.what == "vcd":
        from ..io import iter_video
        from ..methods.vcd import build_vcd

        chunks = iter_video(cfg.video, cfg.batch)  # opens and checks the file first
        first = next(chunks)
        folder = ctx.run_folder("eval")
        run_id = ctx.open_run("eval", folder, cfg, label=str(cfg.video)[-80:])
        out = EvalOutcome(run_id, ())
        out.encoder, enc = vcd_encoder(cfg.encoder, ctx.cache, torch.device(ctx.device))
        m = build_vcd(enc, size=cfg.size, device=torch.device(ctx.device), fit=cfg.fit,
                      batch=cfg.batch)
        from .. import loadfactor
        from .estimates import announce

        try:
            _probe_vcd(m, cfg, ctx)
        except Exception:  # noqa: BLE001 - a probe never fails the job
            pass
        announce(ctx, estimate, estimate_line, cfg)
        t_vcd = time.perf_counter()

        def stream():  # frames are decoded, resized and encoded cfg.batch at a time
            yield first
            for c in chunks:
                if ctx.cancel is not None:
                    ctx.cancel.check()
                yield c

        with torch.no_grad():
            res = m.score_stream(stream(), image=image, progress=ctx)
        t_vcd = time.perf_counter() - t_vcd
        _record_vcd(ctx, cfg, t_vcd / max(1, res.n_frames),
                    loadfactor.rate(ctx.device, busy_s=t_vcd))
        out.frames_shape = (res.n_frames, *first.shape[1:])
        out.vcd = res
        d = res.to_dict()
        ctx.add_metrics(run_id, video={"vcd": float(d["vcd_mean"])},
                        frames={"vcd": [float("nan")] + [float(x) for x in d["vcd_per_frame"]]})
        write_json(folder / "scores.json", {"video": cfg.video, "image": cfg.image, **d})
    else:
        from ..metrics import evaluate
        from ..metrics.registry import results_to_json
        from .estimates import announce

        announce(ctx, estimate, estimate_line, cfg)
        frames = read_video(cfg.video)
        folder = ctx.run_folder("eval")
        run_id = ctx.open_run("eval", folder, cfg, label=str(cfg.video)[-80:])
        out = EvalOutcome(run_id, tuple(frames.shape))
        source = read_video(cfg.source) if cfg.source else None
        t_eval = time.perf_counter()
        out.results = evaluate(
            frames, prompt=cfg.prompt or None, source=source, image=image,
            metrics=cfg.metrics or None, cache=ctx.cache, clip=cfg.clip or None,
            dino=cfg.dino or None, device=ctx.device, flow_method=cfg.flow_method,
            warp_flow=cfg.warp_flow, lpips_weights=cfg.lpips_weights or None,
            lpips_alexnet=cfg.lpips_alexnet or None, progress=ctx, cancel=ctx.cancel)
        from .scoring import record_speed

        record_speed(ctx, cfg.metrics or ["default"], frames, time.perf_counter() - t_eval)
        ok = {k: r for k, r in out.results.items() if not r.skipped}
        ctx.add_metrics(run_id, video={k: r.value for k, r in ok.items()},
                        frames={k: r.per_frame for k, r in ok.items()})
        write_json(folder / "scores.json", results_to_json(
            out.results, video=str(cfg.video), n_frames=int(len(frames)),
            width=int(frames.shape[2]), height=int(frames.shape[1]), prompt=cfg.prompt or None,
            source=cfg.source or None, image=cfg.image or None))
    ctx.add_artifact(run_id, "json", folder / "scores.json")
    ctx.finish_run(run_id)
    return out
