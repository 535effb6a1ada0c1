"""CLI entries of the I2V Consistency jobs: ``i2v`` (the i2v_ab job), ``i2v-tune`` (the
i2v_tune job), ``i2v-eval`` (the i2v_eval job), ``eval-vcd`` (the eval job's VCD) and
``bench i2v``.

Each is ``add_X_args(parser)`` + ``run_X(args) -> int``, wired in ``vcstudio/cli/__init__.py``.
User errors surface as :class:`~vcstudio.errors.VcsError` for the CLI to print.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import InputError

SVD_ID = "stabilityai/stable-video-diffusion-img2vid"
DEFAULT_STEP_CACHE = 0.1
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=SVD_ID, help="I2V model: hub id or local diffusers folder")
    p.add_argument("--backbone", default="auto", choices=("auto", "svd", "ltx", "wan"),
                   help="auto: from the folder's model_index.json (StableVideoDiffusionPipeline -> "
                        "svd, LTXImageToVideoPipeline -> ltx, WanImageToVideoPipeline -> wan) or "
                        "the hub id's name")
    p.add_argument("--frames", type=int, default=None,
                   help="frames (default: the model's, SVD 14, LTX-Video 121, Wan 25; LTX needs "
                        "8k + 1, Wan 4k + 1)")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step-cache", type=float, nargs="?", const=DEFAULT_STEP_CACHE,
                   default=None, metavar="THRESHOLD",
                   help="Wan: skip the transformer's blocks on no-grad steps whose input barely "
                        f"changed (TeaCache-style; default threshold {DEFAULT_STEP_CACHE}, 0 = "
                        "on but never skipping)")


def _note(res) -> None:
    if getattr(res, "note", ""):
        print("note:", res.note, file=sys.stderr)


# ---------------------------------------------------------------- i2v

def add_i2v_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", required=True, help="conditioning image")
    p.add_argument("--prompt", default="", help="text prompt (LTX-Video, Wan); recorded only for "
                                                "SVD, which is image-only")
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
                      seed=args.seed, fps=args.fps, name=out.name, step_cache=args.step_cache)
    res = run_job("i2v_ab", cfg, args, out=out.parent.resolve())  # the folder of --out
    _note(res)
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
                   help="one per image or one for all: conditions LTX-Video and Wan; recorded "
                        "for SVD")
    _add_model_args(p)
    p.add_argument("--preset", choices=("paper",), default=None,
                   help="paper: the VCD paper's setting for this backbone (Wan: 25 frames at "
                        "368x272, 30 steps, gradients through the last, AdamW 2e-4); it sets "
                        "those flags")
    p.add_argument("--steps", type=int, default=100, help="reward (optimizer) steps")
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--inference-steps", type=int, default=25)
    p.add_argument("--grad-steps", type=int, default=1,
                   help="denoising steps that keep the graph (truncated backprop)")
    p.add_argument("--decode-frames", type=int, default=2, help="random frames decoded per step")
    p.add_argument("--encoder", default="auto", help="VCD encoder: vgg19 | efficientnet-lite0 | auto")
    p.add_argument("--vcd-size", type=int, default=224,
                   help="frames are brought to this square size for VCD (the paper's 224)")
    p.add_argument("--vcd-num-proj", type=int, default=256,
                   help="sliced-Wasserstein projections per VCD call (FDL's 256)")
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--fixed-noise", action="store_true",
                   help="the same initial noise every step per image (a deterministic objective; "
                        "default: a fresh sample per step, eq. 3's expectation)")
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
    from ..pipelines.i2v.tune import I2VTuneConfig
    from .common import run_job

    cfg = I2VTuneJobConfig(
        model=args.model, images=[str(f) for f in _collect_images(args.images)],
        prompts=list(args.prompts), backbone=args.backbone,
        tune=I2VTuneConfig(steps=args.steps, lora_rank=args.lora_rank, lr=args.lr,
                           num_frames=args.frames, height=args.height, width=args.width,
                           inference_steps=args.inference_steps, grad_steps=args.grad_steps,
                           decode_frames=args.decode_frames, encoder=args.encoder,
                           eval_every=args.eval_every, seed=args.seed,
                           vcd_projections=args.vcd_projections, vcd_size=args.vcd_size,
                           vcd_num_proj=args.vcd_num_proj,
                           resample_noise=not args.fixed_noise),
        preset=args.preset or "", step_cache=args.step_cache)
    res = run_job("i2v_tune", cfg, args, out=Path(args.out).resolve())
    _note(res)
    tlog = res.log
    first, last = tlog.probe[0], tlog.probe[-1]
    print(f"VCD probe {first['vcd']:.4g} -> {last['vcd']:.4g}, fidelity {first['fidelity']:.3f} -> "
          f"{last['fidelity']:.3f}, motion {first['motion']:.3f} -> {last['motion']:.3f} px/frame")
    for w in tlog.warnings:
        print("warning:", w, file=sys.stderr)
    print(f"wrote {res.out}/lora.safetensors, tune_log.json, ab_base.mp4, ab_tuned.mp4")
    return 0


# ---------------------------------------------------------------- i2v-eval

def add_i2v_eval_args(p: argparse.ArgumentParser) -> None:
    from .common import add_json_arg

    p.add_argument("--images", nargs="+", required=True, help="image files or folders of images")
    p.add_argument("--prompts", nargs="*", default=[],
                   help="one per image or one for all (LTX-Video, Wan read them; CLIP text "
                        "alignment scores against them)")
    p.add_argument("--lora", required=True, help="the tuned LoRA (base = without it)")
    _add_model_args(p)
    p.add_argument("--seeds", default="0,1,2,3,4",
                   help="comma-separated seeds, the same for base and tuned (the paper: 5 runs)")
    p.add_argument("--steps", type=int, default=30, help="denoising steps (the paper: 30)")
    p.add_argument("--encoder", default="auto", help="VCD encoder: vgg19 | efficientnet-lite0 | auto")
    p.add_argument("--vcd-size", type=int, default=224,
                   help="VCD's frame size (the paper's 224; scores compare at one size only)")
    p.add_argument("--vcd-num-proj", type=int, default=256, help="VCD's projections (256)")
    p.add_argument("--clip", default="", help="CLIP for background / text scores (default: "
                                              "ViT-B-32, offline the embedded toy CLIP)")
    p.add_argument("--dino", default="", help="DINO for subject scores (default "
                                              "facebook/dino-vitb16; a local ViTModel folder)")
    p.add_argument("--out", default="i2v_eval_out")
    add_json_arg(p, "the summary (mean and 95%% interval per column) and the plot's rows")


def run_i2v_eval(args) -> int:
    from ..jobs.i2v_eval import I2VEvalConfig
    from .common import run_job, text_out, write_json

    try:
        seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--seeds takes comma-separated whole numbers, got {args.seeds!r}.") \
            from None
    cfg = I2VEvalConfig(model=args.model, lora=args.lora,
                        images=[str(f) for f in _collect_images(args.images)],
                        prompts=list(args.prompts), seeds=seeds, backbone=args.backbone,
                        frames=args.frames or 0, height=args.height or 0, width=args.width or 0,
                        steps=args.steps, encoder=args.encoder, clip=args.clip, dino=args.dino,
                        step_cache=args.step_cache, vcd_size=args.vcd_size,
                        vcd_num_proj=args.vcd_num_proj)
    res = run_job("i2v_eval", cfg, args, out=Path(args.out).resolve())
    _note(res)
    out = text_out(args)
    print(format_table(res.table), file=out)
    print(f"mean ± 95% interval over {len(seeds)} seeds per image (Student t); ↑ higher / "
          "↓ lower is better", file=out)
    write_json(args.json, {"summary": res.summary, "plot": res.plot, "table": res.table})
    print(f"wrote {', '.join(p.name for p in res.files[:3])} in", file=out)
    print(res.out)
    return 0


def format_table(table: dict) -> str:
    """A {"headers", "data"} table as aligned text columns."""
    rows = [list(map(str, table["headers"]))] + [list(map(str, r)) for r in table["data"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


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

def add_bench_i2v_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", default="svd", choices=("svd", "ltx", "wan"),
                   help="full-size architecture to time (random weights; wan: Wan2.1-1.3B I2V, "
                        "the Fun-InP architecture)")
    p.add_argument("--tiny", action="store_true",
                   help="wan: the tiny test architecture instead (a CPU smoke test of the bench)")
    p.add_argument("--frames", type=int, default=None,
                   help="default: SVD 14, LTX-Video 121, Wan 25 (the VCD paper's)")
    p.add_argument("--height", type=int, default=None, help="default: SVD 576, LTX 512, Wan 272")
    p.add_argument("--width", type=int, default=None, help="default: SVD 1024, LTX 704, Wan 368")
    p.add_argument("--inference-steps", type=int, default=None,
                   help="default: 25 (Wan: 30, the paper's)")
    p.add_argument("--grad-steps", type=int, default=1)
    p.add_argument("--decode-frames", type=int, default=2)
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--reward-steps", type=int, default=3, help="timed steps (after 1 warm-up)")
    p.add_argument("--vcd-size", type=int, default=224,
                   help="VCD's frame size (the paper's 224; smaller for a CPU smoke test)")
    p.add_argument("--step-cache", type=float, default=DEFAULT_STEP_CACHE, metavar="THRESHOLD",
                   help="wan: also time with the step cache at this threshold (negative: only "
                        "without)")
    p.add_argument("--no-checkpointing", action="store_true")
    p.add_argument("--device", default=None)
    from .common import add_json_arg

    add_json_arg(p, "the timings")


def run_bench_i2v(args) -> int:
    """``vcstudio bench i2v``: the timings of vcstudio/bench/i2v.py as a table (or JSON)."""
    from ..bench.i2v import bench_i2v
    from .common import text_out, write_json

    res = bench_i2v(args)
    rows = res["rows"]
    if args.json != "-":
        out = text_out(args)
        print(f"{res['bench']} on {res['gpu']}: {res['architecture']}, {args.frames} frames at "
              f"{args.width}x{args.height}, {args.inference_steps} steps, backprop through "
              f"{args.grad_steps}", file=out)
        print(f"{'step cache':>12} {'s/step':>9} {'sampling s':>11} {'skipped':>8} "
              f"{'reward VCD':>11} {'peak GiB':>9}", file=out)
        for r in rows:
            thr = "off" if r["step_cache"] is None else f"{r['step_cache']:g}"
            peak = r["peak_mem_gib"]
            print(f"{thr:>12} {r['sec_per_reward_step']:9.3f} {r['sampling_s']:11.3f} "
                  f"{r['skipped_share']:8.0%} {np.mean(r['reward_vcd']):11.4g} "
                  f"{'n/a' if peak != peak else f'{peak:.2f}':>9}", file=out)
        if "step_cache_speedup" in res:
            print(f"step cache: {res['step_cache_speedup']:.2f}x per reward step, "
                  f"{res['step_cache_sampling_speedup']:.2f}x on the sampling; reward differs by "
                  f"{res['step_cache_reward_rel_diff']:.1%} (same seeds, same start)", file=out)
        if "estimate_paper_setting_h100" in res:
            e = res["estimate_paper_setting_h100"]
            print(f"estimate at the paper's setting on an H100 (not measured): "
                  f"{e['sec_per_reward_step']} s/step, {e['peak_gib']} GiB", file=out)
    write_json(args.json, res)
    return 0
