"""CLI entries of the I2V Consistency job: ``i2v``, ``i2v-tune``, ``eval-vcd``, ``bench-i2v``.

Each is ``add_X_args(parser)`` + ``run_X(args) -> int`` so ``vcstudio/cli.py`` wires it in two
lines. User errors surface as :class:`~vcstudio.errors.VcsError` for cli.py to print.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .errors import InputError

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
    from .io import read_image, write_mp4
    from .models.lora import load_lora
    from .pipelines.i2v import build_backbone, sample_i2v
    from .pipelines.i2v_tune import ab_sample
    from .progress import TqdmProgress

    image = read_image(args.image)
    bb = build_backbone(args.model, device=args.device, backbone=args.backbone)
    kw = dict(num_frames=args.frames, height=args.height, width=args.width, steps=args.steps,
              prompt=args.prompt)
    out = Path(args.out)
    if args.prompt and bb.name == "stable-video-diffusion":
        print("note: Stable Video Diffusion is conditioned on the image only; the prompt is "
              "recorded but not used.", file=sys.stderr)
    if args.lora:
        load_lora(args.lora, bb.denoiser)
        if args.ab:
            base, tuned = ab_sample(bb, image, seed=args.seed, **kw)
            write_mp4(base, out.with_name(out.stem + "_base" + out.suffix), fps=args.fps)
            write_mp4(tuned, out, fps=args.fps)
            print(f"wrote {out} (tuned) and {out.stem}_base{out.suffix} (base), seed {args.seed}")
            return 0
    frames = sample_i2v(bb, image, seed=args.seed, progress=TqdmProgress(), **kw)
    write_mp4(frames, out, fps=args.fps)
    print(f"wrote {out} ({frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]}, "
          f"seed {args.seed})")
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


def _encoder_name(name: str) -> str:
    if name != "auto":
        return name
    from .errors import ModelNotFoundError
    from .models.vgg import find_vgg19_weights

    try:
        find_vgg19_weights()
        return "vgg19"
    except ModelNotFoundError:
        print("note: VGG19 weights not found; VCD uses the offline stand-in encoder "
              "efficientnet-lite0 (scores are labelled so).", file=sys.stderr)
        return "efficientnet-lite0"


def run_i2v_tune(args) -> int:
    from .io import read_image, write_mp4
    from .pipelines.i2v import build_backbone
    from .pipelines.i2v_tune import I2VTuneConfig, ab_sample, tune_i2v
    from .progress import TqdmProgress

    images = [read_image(f) for f in _collect_images(args.images)]
    bb = build_backbone(args.model, device=args.device, backbone=args.backbone)
    cfg = I2VTuneConfig(steps=args.steps, lora_rank=args.lora_rank, lr=args.lr,
                        num_frames=args.frames, height=args.height, width=args.width,
                        inference_steps=args.inference_steps, grad_steps=args.grad_steps,
                        decode_frames=args.decode_frames, encoder=_encoder_name(args.encoder),
                        eval_every=args.eval_every, seed=args.seed)
    out = Path(args.out)
    tlog = tune_i2v(bb, images, cfg, prompts=args.prompts, progress=TqdmProgress(), out=out)
    base, tuned = ab_sample(bb, images[0], seed=args.seed, steps=cfg.inference_steps,
                            num_frames=cfg.num_frames, height=cfg.height, width=cfg.width,
                            prompt=args.prompts[0] if args.prompts else None)
    write_mp4(base, out / "ab_base.mp4")
    write_mp4(tuned, out / "ab_tuned.mp4")
    first, last = tlog.probe[0], tlog.probe[-1]
    print(f"VCD probe {first['vcd']:.4g} -> {last['vcd']:.4g}, fidelity {first['fidelity']:.3f} -> "
          f"{last['fidelity']:.3f}, motion {first['motion']:.3f} -> {last['motion']:.3f} px/frame")
    for w in tlog.warnings:
        print("warning:", w, file=sys.stderr)
    print(f"wrote {out}/lora.safetensors, tune_log.json, ab_base.mp4, ab_tuned.mp4")
    return 0


# ---------------------------------------------------------------- eval-vcd

def add_eval_vcd_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--video", required=True, help="video file or folder of frames")
    p.add_argument("--image", default=None, help="conditioning image (default: the first frame)")
    p.add_argument("--encoder", default="auto", help="vgg19 | efficientnet-lite0 | auto")
    p.add_argument("--size", type=int, default=224, help="frames are resized to size x size")
    p.add_argument("--device", default=None)
    p.add_argument("--json", default=None, help="write per-frame values and the mean here")


def run_eval_vcd(args) -> int:
    import torch

    from .device import pick_device
    from .io import read_image, read_video
    from .methods.vcd import build_vcd

    frames = read_video(args.video)
    image = read_image(args.image) if args.image else None
    m = build_vcd(_encoder_name(args.encoder), size=args.size, device=pick_device(args.device))
    with torch.no_grad():
        res = m(frames, image=image)
    d = {"video": str(args.video), "image": args.image, **res.to_dict()}
    print(f"VCD ({res.encoder}) mean {d['vcd_mean']:.4f} over frames 2..{res.n_frames}")
    for i, v in zip(res.positions, d["vcd_per_frame"]):
        print(f"  frame {i:3d}: {v:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(d, indent=1))
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
    p.add_argument("--json", default=None)


def run_bench_i2v(args) -> int:
    """Seconds per VCD reward step + peak memory on a full-size architecture (random weights)."""
    import torch

    from .device import peak_memory_gib, pick_device, precision_for, reset_peak
    from .methods.vcd import VCD
    from .models.lora import add_lora, lora_targets_for
    from .models.vgg import VGG19Features

    dev = pick_device(args.device)
    prec = precision_for(dev)
    d_frames, d_height, d_width = BENCH_DEFAULTS[args.backbone]
    args.frames, args.height, args.width = (args.frames or d_frames, args.height or d_height,
                                            args.width or d_width)
    if args.backbone == "ltx":
        from .models.ltx import full_size_ltx
        from .pipelines.i2v_ltx import LTXBackbone

        bb = LTXBackbone(full_size_ltx(device=dev, dtype=prec.frozen_dtype), precision=prec)
    else:
        from .models.svd import full_size_svd
        from .pipelines.i2v import SVDBackbone

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
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


def main(argv=None) -> int:  # stand-alone use until cli.py wires these in
    ap = argparse.ArgumentParser(prog="vcstudio-i2v")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, add, run in (("i2v", add_i2v_args, run_i2v), ("i2v-tune", add_i2v_tune_args, run_i2v_tune),
                           ("eval-vcd", add_eval_vcd_args, run_eval_vcd),
                           ("bench-i2v", add_bench_i2v_args, run_bench_i2v)):
        sp = sub.add_parser(name)
        add(sp)
        sp.set_defaults(run=run)
    args = ap.parse_args(argv)
    from .errors import VcsError

    try:
        return args.run(args)
    except VcsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
