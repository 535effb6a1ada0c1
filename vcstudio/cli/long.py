"""Arguments of ``vcstudio long`` and the prompt timeline they describe.

``vcstudio long (--run RUN | --model WAN) (--prompts p1 p2 ... | --story "..." | --timeline file.yaml)
  --frames 120 --window 16 --stride 8 [--fusion uniform|pyramid|gaussian] [--masks]
  [--refine 256,512] [--steps 50 --guidance 12.5 --seed 33]``

Timeline YAML (any one of these shapes):

    frames: 120                 # optional; --frames wins when given
    segments:                   # start/end frame ranges (end exclusive) ...
      - {prompt: "a corgi runs on the beach", start: 0, end: 60}
      - {prompt: "a corgi jumps into the sea", start: 60, end: 120}
    # ... or durations laid end to end: - {prompt: "...", frames: 40}
    # ... or plain strings, split evenly: - "a corgi runs on the beach"
    # ... or story: "a corgi runs on the beach, then jumps into the sea"

A bare list at the top level is read as ``segments``.
"""
from __future__ import annotations

import argparse


from ..config import FUSIONS, LongConfig, MaskConfig
from ..errors import InputError
from ..pipelines.long.windows import (format_table, grid_table, latent_grid, latent_segments,
                                      layout_table, make_layout)
from ..scene.segments import Segment, check_segments, segments_from, timeline
from .common import add_setting_flag, add_setting_flags

DEFAULT_FRAMES = 120


class _Unset(float):
    """A default that knows it was not given (it compares as its number): --guidance left out
    takes the model's own scale where it has one (Wan2.1's 5), else this one."""


DEFAULT_GUIDANCE = _Unset(LongConfig.guidance)


def add(sub) -> None:
    add_long_args(sub.add_parser(
        "long", help="long video from a tuned run: a prompt per segment, temporal co-denoising"))


def add_long_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``vcstudio long`` options to ``parser`` (a subcommand parser)."""
    parser.add_argument("--run", default="", help="tuned run (folder or hf://user/name) to "
                        "generate from")
    parser.add_argument("--model", default="", help="a Wan2.1 base model (folder or hub id) to "
                        "generate from without a run; with --run, the base to load it onto")
    src = parser.add_argument_group("prompts (give one)")
    src.add_argument("--prompts", nargs="+", metavar="PROMPT",
                     help="segment prompts, split evenly over the frames in order")
    src.add_argument("--story", help="one story prompt; the scene parser turns it into segments "
                     "(connectives: then, after, before, while, finally, meanwhile, ...)")
    src.add_argument("--timeline", metavar="FILE.yaml",
                     help="YAML timeline with per-segment prompts and frame ranges")
    parser.add_argument("--frames", type=int, default=None,
                        help=f"length of the video in frames (default {DEFAULT_FRAMES}, or the "
                        f"timeline file's)")
    win = parser.add_argument_group("temporal co-denoising")
    add_setting_flag(win, LongConfig, "window", default=LongConfig.window,
                     help="window length K in frames (Wan2.1: rounded up to 4k + 1, laid out in "
                     "latent frames)")
    add_setting_flag(win, LongConfig, "stride", default=LongConfig.stride,
                     help="stride S between windows (<= K; Wan2.1: a multiple of 4)")
    add_setting_flags(win, LongConfig, "fusion")
    win.add_argument("--fusion-sigma", type=float, default=None,
                     help="sigma of gaussian fusion in frames (default window/4)")
    add_setting_flags(win, LongConfig, "prompt_mode", "batch_windows")
    msk = parser.add_argument_group("masks, average fusion and combined tuning")
    msk.add_argument("--masks", action="store_true",
                     help="SAM foreground/background masks + average fusion at step k + "
                     "combined fg/bg tuning before generating")
    add_setting_flags(msk, MaskConfig, "method")
    msk.add_argument("--sam-model", choices=("vit_b", "vit_l", "vit_h"), default="vit_b")
    msk.add_argument("--sam-checkpoint", default=None, help="path to the SAM checkpoint file")
    msk.add_argument("--sam-fallback", action="store_true",
                     help="fall back to GrabCut (labelled) when no SAM checkpoint is found")
    msk.add_argument("--mask-point", default=None, metavar="X,Y",
                     help="pixel on the foreground object (default: automatic, largest salient)")
    msk.add_argument("--mask-box", default=None, metavar="X0,Y0,X1,Y1",
                     help="box around the foreground object")
    add_setting_flags(msk, MaskConfig, "n_candidates")
    msk.add_argument("--fusion-step", type=int, default=995, help="timestep k of the fusion")
    msk.add_argument("--fusion-mode", choices=("paper", "normalised", "literal"), default="paper",
                     help="eq. 11's region rule; paper and normalised keep the step-k latent's "
                     "unit variance, literal is the formula as printed (shrinks the noise)")
    msk.add_argument("--fusion-space", choices=("latent", "x0"), default="latent",
                     help="fuse the step-k latents, or the predicted x0 re-noised to step k")
    add_setting_flags(msk, MaskConfig, "tune_steps")
    msk.add_argument("--tune-lr", type=float, default=2e-6, help="combined tuning learning rate")
    msk.add_argument("--lambdas", default="1,1,0.5", metavar="L1,L2,L3",
                     help="weights of L, L_fg, L_bg (eq. 20)")
    ref = parser.add_argument_group("progressive refinement")
    ref.add_argument("--refine", default=None, metavar="256,512",
                     help="sizes to generate at, low to high; later ones partially re-denoise")
    ref.add_argument("--refine-strength", type=float, default=0.5,
                     help="share of the schedule re-run at each higher size (0-1]")
    add_setting_flags(ref, LongConfig, "refine_mode")
    smp = parser.add_argument_group("sampling")
    add_setting_flags(smp, LongConfig, "steps", "seed")
    smp.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE,
                     help="CFG scale (default: the model's: 12.5 on Stable Diffusion, 5 on Wan2.1)")
    smp.add_argument("--negative", default="", help="negative prompt")
    add_setting_flags(smp, LongConfig, "fps")
    add_setting_flag(smp, LongConfig, "size", default=LongConfig.size,
                     help="square size to generate at (default: the tuned clip's; --refine "
                     "wins); Wan2.1: the long side, the tuned clip's aspect kept (832x480 "
                     "without a run), on multiples of 16")
    smp.add_argument("--out", default=None, help="output mp4 path (default: inside the run folder)")
    smp.add_argument("--device", default=None)
    smp.add_argument("--show-timeline", action="store_true",
                     help="print the window/prompt table and stop")
    from .common import add_control_args

    add_control_args(parser.add_argument_group("structure control (each window takes its "
                                               "frames' conditions)"), "every window")
    return parser


def parse_pair_list(text: str | None, n: int, what: str) -> tuple[float, ...] | None:
    """"12,34" -> (12.0, 34.0), checking there are ``n`` numbers."""
    if text is None:
        return None
    try:
        vals = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        vals = ()
    if len(vals) != n:
        raise InputError(f"{what} takes {n} comma-separated numbers (got '{text}').")
    return vals


def _segments_from_yaml(path: str, n_frames: int | None) -> tuple[list[Segment], int]:
    from ..config import read_yaml

    data = read_yaml(path, "timeline file", "'segments:' (a list) or 'story:'", lists=True)
    if isinstance(data, list):
        data = {"segments": data}
    if n_frames is None and data.get("frames") is not None:
        n_frames = int(data["frames"])
    if data.get("story"):
        n = n_frames or DEFAULT_FRAMES
        return timeline(n, story=str(data["story"])), n
    items = data.get("segments")
    if not isinstance(items, list) or not items:
        raise InputError(f"Timeline file {path} has no segments; list them under 'segments:'.")
    if all(isinstance(it, str) for it in items):
        n = n_frames or DEFAULT_FRAMES
        return timeline(n, prompts=items), n
    segs = segments_from(items, str(path))
    n = n_frames or max(s.end for s in segs)
    return segs, n


def parse_timeline(args: argparse.Namespace) -> list[Segment]:
    """The segments of ``--prompts`` (evenly split), ``--story`` (scene parser) or ``--timeline``
    (YAML). Sets ``args.frames`` when it was not given. Raises InputError with what to fix."""
    given = [name for name in ("prompts", "story", "timeline") if getattr(args, name, None)]
    if len(given) != 1:
        raise InputError("Give exactly one of --prompts, --story or --timeline"
                         + (f" (got {', '.join('--' + g for g in given)})." if given else "."))
    frames = getattr(args, "frames", None)
    if frames is not None and frames < 1:
        raise InputError(f"--frames must be at least 1 (got {frames}).")
    if args.prompts or args.story:
        n = frames or DEFAULT_FRAMES
        segs = timeline(n, story=args.story or "", prompts=args.prompts or ())
    else:
        segs, n = _segments_from_yaml(args.timeline, frames)
        segs = check_segments(segs, n)
    args.frames = n
    return segs


def describe_timeline(args: argparse.Namespace, segments: list[Segment],
                      temporal: int = 1) -> str:
    """The window -> prompt table for ``args`` (what --show-timeline prints); on a VAE that
    packs ``temporal`` frames per latent (Wan2.1: 4) the windows are laid out in latent frames
    and the table says them in video frames, after a line on what was rounded."""
    grid = latent_grid(args.frames, args.window, args.stride, temporal)
    sigma = None if args.fusion_sigma is None else args.fusion_sigma / temporal
    layout = make_layout(grid.latent_frames, grid.latent_window, grid.latent_stride, args.fusion,
                         sigma)
    lat = latent_segments(segments, grid)
    unit = "" if temporal == 1 else (f" ({grid.latent_window} latent frames every "
                                     f"{grid.latent_stride} of {grid.latent_frames})")
    head = [f"{len(segments)} segments over {args.frames} frames; {layout.n_windows} windows of "
            f"{grid.window_frames} (stride {grid.stride_frames}, {args.fusion} fusion){unit}:"]
    head += [f"  [{s.start:>4}-{s.end - 1:>4}] {s.prompt}" for s in segments]
    if grid.note:
        head.insert(0, f"note: {grid.note}")
    rows = grid_table(layout_table(layout, lat, args.prompt_mode), grid)
    return "\n".join(head) + "\n" + format_table(rows)


def long_config_from_args(args: argparse.Namespace, segments: list[Segment]):
    """The LongConfig of parsed ``vcstudio long`` arguments (timeline already parsed)."""
    from ..config import LongConfig, MaskConfig
    from ..pipelines.long.refine import parse_scales
    from .common import control_from_args

    lambdas = parse_pair_list(args.lambdas, 3, "--lambdas")
    mask = MaskConfig(method=args.mask_method, fallback=args.sam_fallback,
                      sam_model=args.sam_model, sam_checkpoint=args.sam_checkpoint or "",
                      point=parse_pair_list(args.mask_point, 2, "--mask-point"),
                      box=parse_pair_list(args.mask_box, 4, "--mask-box"),
                      n_candidates=args.candidates, k_step=args.fusion_step,
                      fusion_mode=args.fusion_mode, fusion_space=args.fusion_space,
                      tune_steps=args.tune_steps, tune_lr=args.tune_lr, lambdas=lambdas)
    return LongConfig(
        segments=[s.to_dict() for s in segments], frames=args.frames, window=args.window,
        stride=args.stride, fusion=args.fusion, fusion_sigma=args.fusion_sigma,
        prompt_mode=args.prompt_mode, steps=args.steps,
        guidance=float(args.guidance), seed=args.seed,
        negative=args.negative, batch_windows=args.window_batch, size=args.size,
        masks=args.masks, mask=mask,
        refine=tuple(parse_scales(args.refine)) if args.refine else (),
        refine_strength=args.refine_strength, refine_mode=args.refine_mode, fps=args.fps,
        out=args.out or "", control=control_from_args(args))


def run(args: argparse.Namespace) -> int:
    """``vcstudio long``: print the timeline and window table, generate (the long job), print
    the mp4 path LAST (progress bars and the summary go to stderr)."""
    import sys

    from ..config import Limits
    from ..jobs import REGISTRY
    from ..jobs.long import LongJobConfig
    from .common import run_job

    from .. import validate as v

    if args.frames is not None:  # before the timeline is laid out frame by frame
        v.whole("long.frames (--frames)", args.frames, 1, Limits().max_long_frames)
    segments = parse_timeline(args)
    cfg = LongJobConfig(run=args.run, long=long_config_from_args(args, segments),
                        model=args.model or "")
    from ..jobs.long import family
    from ..models.family import rules

    r = rules(family(cfg))
    if isinstance(args.guidance, _Unset) and r.guidance is not None:  # the model's own scale
        cfg.long.guidance = r.guidance
    REGISTRY["long"].validate(cfg, Limits())  # before the table: --frames 100000000 is an error
    if cfg.run:
        from ..runs.source import check_run_ref

        check_run_ref(cfg.run)  # ... and so is a run that is not there
    table = describe_timeline(args, segments, r.temporal)
    print(table, flush=True)
    if args.show_timeline:
        return 0
    res = run_job("long", cfg, args)
    f, h, w = res.frames.shape[:3]
    for note in getattr(res, "notes", []):  # what the job rounded, unless the table said it
        if note not in table:
            print(f"note: {note}", file=sys.stderr)
    if cfg.long.masks:
        print(f"masks: {res.mask_method}; fused clip and masks in {res.mp4.stem}-masks/"
              + (f"; combined-tuned run {res.combined_run}" if res.combined_run else ""),
              file=sys.stderr)
    print(f"{f} frames at {w}x{h} in {res.seconds:.1f} s ({f / max(res.seconds, 1e-9):.2f} "
          f"frames/s)", file=sys.stderr)
    print(res.mp4)
    return 0


# ----------------------------------------------------------------------------- bench long

def add_bench_long_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--frames", default="120",
                   help="video length(s), comma-separated (e.g. 60,120 shows how peak memory "
                   "grows with length)")
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--stride", type=int, default=8)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--guidance", type=float, default=12.5)
    p.add_argument("--fusion", choices=FUSIONS, default="uniform")
    p.add_argument("--window-batch", type=int, default=0,
                   help="windows per U-Net call (0 = all, halved on out-of-memory)")
    p.add_argument("--arch", default="sd15", choices=["sd15", "tiny"])
    p.add_argument("--compile", default="no", choices=["auto", "yes", "no"])
    p.add_argument("--device")
    return p


def run_bench_long(args: argparse.Namespace) -> int:
    import torch

    from ..bench.pipelines import bench_long, print_table

    try:
        lengths = [int(v) for v in str(args.frames).split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--frames takes lengths like 60,120 (got '{args.frames}').") from None
    device = torch.device(args.device) if args.device else None
    rows = [bench_long(n, args.window, args.stride, args.steps, args.size, args.guidance,
                       args.arch, device, args.window_batch, args.fusion, args.compile)
            for n in lengths]
    print(print_table(rows))
    return 0
