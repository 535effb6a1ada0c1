"""``vcstudio eval`` and ``vcstudio bench metrics``: argparse wiring + runners.

vcstudio/cli/ wires each as ``add_X_args(subparser)`` + ``run_X(args) -> int``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from ..metrics.result import MetricResult


def _common_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clip", default=None,
                   help="CLIP model: open_clip 'ARCH/TAG' (default ViT-B-32/openai; offline the "
                        "embedded toy CLIP), 'ARCH:/path/weights.safetensors', a transformers "
                        "CLIP folder, or 'hf:HUB_ID'")
    p.add_argument("--dino", default=None,
                   help="DINO ViT for subject consistency: hub id or folder "
                        "(default facebook/dino-vitb16)")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when present)")
    p.add_argument("--flow", dest="flow_method", choices=("dis", "farneback"), default="dis",
                   help="optical flow for the flow metrics (default: DIS medium)")


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="video file or folder of frames to evaluate")
    parser.add_argument("--prompt", default=None, help="text prompt (enables clip_text)")
    parser.add_argument("--source", default=None,
                        help="source video of an edit (enables psnr, ssim, lpips)")
    parser.add_argument("--image", default=None,
                        help="conditioning image of an I2V video (enables i2v_*, vcd)")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated metric names (default: all the inputs allow); "
                             "see --list-metrics")
    parser.add_argument("--list-metrics", action="store_true", help="list metric names and exit")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="write results as JSON to PATH (stdout without one)")
    parser.add_argument("--csv", default=None, help="write per-frame values as CSV here")
    parser.add_argument("--warp-flow", choices=("generated", "source"), default="generated",
                        help="take the warp-error flow from the generated video (default) or "
                             "from --source")
    parser.add_argument("--lpips-weights", default=None, help="LPIPS v0.1 alex.pth lin weights")
    parser.add_argument("--lpips-alexnet", default=None, help="torchvision AlexNet weights file")
    _common_model_args(parser)


def format_table(results: dict[str, MetricResult]) -> str:
    from ..models.clip import TOY_CLIP_NAME

    rows = [("metric", "value", "better", "model / note")]
    for name, r in results.items():
        if r.skipped:
            rows.append((name, "skipped", "", r.skipped))
            continue
        better = {True: "higher", False: "lower", None: ""}[r.higher_is_better]
        note = r.model + (f" (flow from {r.extra['flow_from']})" if "flow_from" in r.extra else "")
        note += f" [{r.label}]" if r.label else ""
        if r.model == TOY_CLIP_NAME:
            note += " -- not comparable with CLIP scores of real models"
        rows.append((name, f"{r.value:.5g}", better, note))
    w = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{a:<{w[0]}}  {b:>{w[1]}}  {c:<{w[2]}}  {d}" for a, b, c, d in rows)


def write_csv(results: dict[str, MetricResult], path: str | Path, n_frames: int) -> None:
    """One row per frame, one column per metric that ran, and a final 'video' row."""
    names = [n for n, r in results.items() if not r.skipped]
    from ..io.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame"] + names)

        def cell(v):
            return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.6g}"

        for t in range(n_frames):
            pf = [results[n].per_frame for n in names]
            w.writerow([t] + [cell(p[t]) if t < len(p) else "" for p in pf])
        w.writerow(["video"] + [cell(results[n].value) for n in names])


def run_eval(args: argparse.Namespace) -> int:
    from ..io import read_image, read_video
    from ..metrics.registry import REGISTRY, ALIASES, evaluate, results_to_json

    if getattr(args, "list_metrics", False):
        for name, spec in REGISTRY.items():
            needs = f" [needs {', '.join(spec.needs)}]" if spec.needs else ""
            print(f"{name:24s}{needs}\n    {spec.description}")
        for a, names in ALIASES.items():
            print(f"{a:24s} = {', '.join(names)}")
        return 0
    frames = read_video(args.video)
    source = read_video(args.source) if args.source else None
    image = read_image(args.image) if args.image else None
    results = evaluate(frames, prompt=args.prompt, source=source, image=image,
                       metrics=args.metrics, clip=args.clip, dino=args.dino, device=args.device,
                       flow_method=args.flow_method, warp_flow=args.warp_flow,
                       lpips_weights=args.lpips_weights, lpips_alexnet=args.lpips_alexnet)
    out = sys.stderr if args.json == "-" else sys.stdout  # stdout stays parseable JSON
    print(f"{args.video}: {len(frames)} frames, {frames.shape[2]}x{frames.shape[1]}", file=out)
    print(format_table(results), file=out)
    if args.json == "-":
        print(json.dumps(results_to_json(results, video=str(args.video)), indent=2))
    elif args.json:
        doc = results_to_json(results, video=str(args.video), n_frames=int(len(frames)),
                              width=int(frames.shape[2]), height=int(frames.shape[1]),
                              prompt=args.prompt, source=args.source, image=args.image)
        from ..io.atomic import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(doc, indent=2))
    if args.csv:
        write_csv(results, args.csv, len(frames))
    return 0


def add_bench_metrics_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--metrics", default=None,
                        help="comma-separated names (default: every metric that runs without "
                             "a prompt/source/image, plus clip_text, psnr, ssim)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per metric (best kept)")
    parser.add_argument("--vcd-frames", type=int, default=150,
                        help="VCD row: frames of the clip scored (default 150, issue 19's case)")
    parser.add_argument("--vcd-size", type=int, default=718, help="VCD row: clip side in px")
    parser.add_argument("--vcd-batch", type=int, default=8, help="VCD row: frames per batch")
    parser.add_argument("--vcd-encoder", default="vgg19",
                        help="VCD row: vgg19 (random weights when its file is missing) or "
                             "efficientnet-lite0")
    _common_model_args(parser)
    parser.set_defaults(clip="ViT-B-32/random", dino="random")


def run_bench_metrics(args: argparse.Namespace) -> int:
    from ..bench.metrics import bench_metrics

    names = [m.strip() for m in (args.metrics or "").split(",") if m.strip()]
    want_vcd = not names or "vcd" in names  # VCD has its own row: a long clip, streamed
    rows = {"seconds": {}, "shared_total": float("nan"), "device": str(args.device or "auto"),
            "clip": "-", "dino": "-"}
    if not names or [m for m in names if m != "vcd"]:
        rows = bench_metrics(n_frames=args.frames, size=args.size,
                             metrics=",".join(m for m in names if m != "vcd") or None,
                             clip=args.clip, dino=args.dino, device=args.device,
                             flow_method=args.flow_method, repeat=args.repeat)
    print(f"metrics on {args.frames} frames at {args.size}x{args.size} "
          f"({rows['device']}; models: {rows['clip']}, {rows['dino']})")
    print(f"{'metric':24s} {'seconds':>9s} {'frames/s':>9s}")
    for name, sec in rows["seconds"].items():
        fps = args.frames / sec if sec > 0 else math.inf
        print(f"{name:24s} {sec:9.3f} {fps:9.1f}")
    if rows["seconds"]:
        tot = rows["shared_total"]
        print(f"{'all (shared features)':24s} {tot:9.3f} {args.frames / tot:9.1f}")
    if want_vcd:
        from ..bench.metrics import bench_vcd

        v = bench_vcd(args.vcd_frames, args.vcd_size, args.vcd_batch, args.vcd_encoder,
                      device=str(args.device or "cpu"))
        print(f"VCD on {v['frames']} frames at {v['size']}x{v['size']} ({v['device']}, "
              f"{v['encoder']}, {v['batch']} frames per batch, streamed from an mp4)")
        print(f"{'metric':24s} {'frames':>7s} {'size':>6s} {'seconds':>9s} {'peak RSS MiB':>13s}")
        print(f"{'vcd':24s} {v['frames']:7d} {v['size']:6d} {v['seconds']:9.1f} "
              f"{v['peak_rss_mib']:13.0f}")
    return 0
