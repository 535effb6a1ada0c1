"""CLI entries of the I2V Consistency jobs: ``i2v`` (the i2v_ab job), ``i2v-tune`` (the
i2v_tune job), ``eval-vcd`` (the eval job's VCD) and ``bench i2v``.

Each is ``add_X_args(parser)`` + ``run_X(args) -> int``, wired in ``vcstudio/cli/__init__.py``.
User errors surface as :class:`~vcstudio.errors.VcsError` for the CLI to print.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import InputError

SVD_ID = "stabilityai/stable-video-diffusion-img2vid"
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=SVD_ID, help="I2V model: hub id or local diffusers folder")
    p.add_argument("--backbone", default="auto", choices=("auto", "svd", "ltx"),
                   help="auto: from the folder's model_index.json (StableVideoDiffusionPipeline -> "
                        "svd, LTXImageToVideoPipeline -> ltx) or the hub id's name")
    p.add_argument("--frames", type=int, default=None,
                   help="frames (default: the model's, SVD 14, LTX-Video 121; LTX needs 8k + 1)")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)


# ---------------------------------------------------------------- i2v

def add_i2v_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", required=True, help="conditioning image")
    p.add_argument("--prompt", default="", help="text prompt (LTX-Video); recorded only for SVD, "
                                                "which is image-only")
    _add_model_args(p)
    p.add_argument("--steps", type=int, default=25, help="denoising steps")
    p.add_argument("--lora", default=None, help="a tuned LoRA delta (.safetensors) to apply")
    p.add_argument("--ab", action="store_true", help="with --lora: also write the base video")
    p.add_argument("--fps", type=float, default=7)
    p.add_argument("--out", default="i2v.mp4")


def run_i2v(args) -> int:
    from ..jobs.i2v_ab import I2VABConfig
    from .common import run_job

    out = Path(args.out)
    cfg = I2VABConfig(model=args.model, image=args.image, prompt=args.prompt,
                      lora=args.lora or "", ab=bool(args.lora and args.ab),
                      backbone=args.backbone, frames=args.frames or 0,
                      height=args.height or 0, width=args.width or 0, steps=args.steps,
                      seed=args.seed, fps=args.fps, name=out.name)
    res = run_job("i2v_ab", cfg, args, out=out.parent.resolve())  # the folder of --out
    if args.prompt and res.backbone == "stable-video-diffusion":
        print("note: Stable Video Diffusion is conditioned on the image only; the prompt is "
              "recorded but not used.", file=sys.stderr)
    if res.base_video is not None:
        base = res.base_video
        rb, rt = res.scores
        print(f"mean VCD base {float(rb.mean):.4g} -> tuned {float(rt.mean):.4g} "
              f"({rb.encoder})", file=sys.stderr)
        print(f"wrote {out} (tuned) and {base.name} (base), seed {args.seed}")
        return 0
    f = res.frames
    print(f"wrote {out} ({f.shape[0]} frames, {f.shape[2]}x{f.shape[1]}, seed {args.seed})")
    return 0


# ---------------------------------------------------------------- i2v-tune

def add_i2v_tune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", nargs="+", required=True, help="image files or folders of images")
    p.add_argument("--prompts", nargs="*", default=[],
                   help="one per image or one for all: conditions LTX-Video; recorded for SVD")
    _add_model_args(p)
    p.add_argument("--steps", type=int, default=100, help="reward (optimizer) steps")
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--inference-steps", type=int, default=25)
    p.add_argument("--grad-steps", type=int, default=1,
                   help="denoising steps that keep the graph (truncated backprop)")
    p.add_argument("--decode-frames", type=int, default=2, help="random frames decoded per step")
    p.add_argument("--encoder", default="auto", help="VCD encoder: vgg19 | efficientnet-lite0 | auto")
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--vcd-projections", choices=("redraw", "fixed"), default="redraw",
                   help="the VCD reward's sliced-Wasserstein projections: a fresh set every "
                   "step (default, as FDL) or the metric's fixed set")
    p.add_argument("--out", default="i2v_tune_out")


def _collect_images(items) -> list[Path]:
    files: list[Path] = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{it} is neither an image file nor a folder.")
    if not files:
        raise InputError("No images found in --images.")
    return files


def run_i2v_tune(args) -> int:
    from ..jobs.i2v_tune import I2VTuneJobConfig
    from ..pipelines.i2v_tune import I2VTuneConfig
    from .common import run_job

    cfg = I2VTuneJobConfig(
        model=args.model, images=[str(f) for f in _collect_images(args.images)],
        prompts=list(args.prompts), backbone=args.backbone,
        tune=I2VTuneConfig(steps=args.steps, lora_rank=args.lora_rank, lr=args.lr,
                           num_frames=args.frames, height=args.height, width=args.width,
                           inference_steps=args.inference_steps, grad_steps=args.grad_steps,
                           decode_frames=args.decode_frames, encoder=args.encoder,
                           eval_every=args.eval_every, seed=args.seed,
                           vcd_projections=args.vcd_projections))
    res = run_job("i2v_tune", cfg, args, out=Path(args.out).resolve())
    tlog = res.log
    first, last = tlog.probe[0], tlog.probe[-1]
    print(f"VCD probe {first['vcd']:.4g} -> {last['vcd']:.4g}, fidelity {first['fidelity']:.3f} -> "
          f"{last['fidelity']:.3f}, motion {first['motion']:.3f} -> {last['motion']:.3f} px/frame")
    for w in tlog.warnings:
        print("warning:", w, file=sys.stderr)
    print(f"wrote {res.out}/lora.safetensors, tune_log.json, ab_base.mp4, ab_tuned.mp4")
    return 0


# ---------------------------------------------------------------- eval-vcd

def add_eval_vcd_args(p: argparse.ArgumentParser) -> None:
    from .common import add_json_arg

    p.add_argument("--video", required=True, help="video file or folder of frames")
    p.add_argument("--image", default=None, help="conditioning image (default: the first frame)")
    p.add_argument("--encoder", default="auto", help="vgg19 | efficientnet-lite0 | auto")
    p.add_argument("--size", type=int, default=224,
                   help="frames are brought to size x size keeping their aspect (see --fit)")
    p.add_argument("--fit", choices=("crop", "pad", "stretch"), default="crop",
                   help="short side to --size + centre crop (default), long side + black bars, "
                   "or the old anisotropic stretch")
    p.add_argument("--device", default=None)
    add_json_arg(p, "the per-frame values and the mean")


def run_eval_vcd(args) -> int:
    from ..jobs.eval import EvalConfig
    from .common import run_job, text_out, write_json

    cfg = EvalConfig(video=str(args.video), what="vcd", image=args.image or "",
                     encoder=args.encoder, size=args.size, fit=args.fit)
    res = run_job("eval", cfg, args).vcd
    d = {"video": str(args.video), "image": args.image, **res.to_dict()}
    out = text_out(args)
    print(f"VCD ({res.encoder}) mean {d['vcd_mean']:.4f} over frames 2..{res.n_frames}",
          file=out)
    for i, v in zip(res.positions, d["vcd_per_frame"]):
        print(f"  frame {i:3d}: {v:.4f}", file=out)
    write_json(args.json, d)
    return 0


# ---------------------------------------------------------------- bench-i2v

BENCH_DEFAULTS = {"svd": (14, 576, 1024), "ltx": (121, 512, 704)}  # frames, height, width


def add_bench_i2v_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", default="svd", choices=tuple(BENCH_DEFAULTS),
                   help="full-size architecture to time (random weights)")
    p.add_argument("--frames", type=int, default=None, help="default: SVD 14, LTX-Video 121")
    p.add_argument("--height", type=int, default=None, help="default: SVD 576, LTX-Video 512")
    p.add_argument("--width", type=int, default=None, help="default: SVD 1024, LTX-Video 704")
    p.add_argument("--inference-steps", type=int, default=25)
    p.add_argument("--grad-steps", type=int, default=1)
    p.add_argument("--decode-frames", type=int, default=2)
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--reward-steps", type=int, default=3, help="timed steps (after 1 warm-up)")
    p.add_argument("--no-checkpointing", action="store_true")
    p.add_argument("--device", default=None)
    from .common import add_json_arg

    add_json_arg(p, "the timings")


def run_bench_i2v(args) -> int:
    """Seconds per VCD reward step + peak memory on a full-size architecture (random weights)."""
    import torch

    from ..device import peak_memory_gib, pick_device, precision_for, reset_peak
    from ..methods.vcd import VCD
    from ..models.lora import add_lora, lora_targets_for
    from ..models.vgg import VGG19Features

    dev = pick_device(args.device)
    prec = precision_for(dev)
    d_frames, d_height, d_width = BENCH_DEFAULTS[args.backbone]
    args.frames, args.height, args.width = (args.frames or d_frames, args.height or d_height,
                                            args.width or d_width)
    if args.backbone == "ltx":
        from ..models.ltx import full_size_ltx
        from ..pipelines.i2v_ltx import LTXBackbone

        bb = LTXBackbone(full_size_ltx(device=dev, dtype=prec.frozen_dtype), precision=prec)
    else:
        from ..models.svd import full_size_svd
        from ..pipelines.i2v import SVDBackbone

        bb = SVDBackbone(full_size_svd(args.frames, device=dev, dtype=prec.frozen_dtype),
                         precision=prec)
    params = add_lora(bb.denoiser, args.lora_rank, targets=lora_targets_for(bb.name))
    if not args.no_checkpointing:
        bb.denoiser.enable_gradient_checkpointing()
    vcd = VCD(VGG19Features(random_weights=True).to(dev, prec.frozen_dtype))
    opt = torch.optim.AdamW(params, lr=2e-4, fused=dev.type == "cuda")
    image = np.random.default_rng(0).integers(0, 255, (args.height, args.width, 3), dtype=np.uint8)
    n = args.frames
    times = []
    reset_peak(dev)
    for step in range(args.reward_steps + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.time()
        g = torch.Generator().manual_seed(step)
        with torch.no_grad():
            cond = bb.encode(image, n, args.height, args.width, generator=g, prompt="a video")
        lat = bb.denoise(cond, args.inference_steps, generator=g, grad_steps=args.grad_steps)
        subset = list(range(n - args.decode_frames, n))
        frames = bb.decode(lat, subset, generator=g)
        loss = vcd(frames, image=cond.image, positions=[i + 1 for i in subset], n_frames=n).mean
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if step:  # step 0 warms up kernels and allocator
            times.append(time.time() - t)
    res = {"bench": "i2v reward step (VCD, LoRA)", "backbone": bb.name, "device": str(dev),
           "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
           "frames": n, "height": args.height, "width": args.width,
           "inference_steps": args.inference_steps, "grad_steps": args.grad_steps,
           "decode_frames": args.decode_frames, "lora_rank": args.lora_rank,
           "checkpointing": not args.no_checkpointing, "precision": str(prec.autocast_dtype),
           "sec_per_reward_step": float(np.mean(times)) if times else float("nan"),
           "peak_mem_gib": peak_memory_gib(dev),
           "lora_params": sum(p.numel() for p in params)}
    from .common import write_json

    if args.json != "-":
        print(json.dumps(res, indent=1))
    write_json(args.json, res)
    return 0
