"""The same jobs headless: tune, edit, bench, app (+ the jobs other layers register).

Progress bars go to stderr; the path a job wrote is the LAST line of stdout, so scripts can chain
``run=$(vcstudio tune ... | tail -n1)``. User errors print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Optional, Sequence

from .errors import VcsError


def _add_tune(sub) -> None:
    p = sub.add_parser("tune", help="one-shot tune a text-to-image model on a clip")
    p.add_argument("--video", help="clip: mp4/webm/mov/avi/gif or a folder of frames")
    p.add_argument("--prompt", help="what the clip shows, e.g. 'a man is skiing'")
    p.add_argument("--model", help="hub id, diffusers folder or .safetensors (default: embedded)")
    p.add_argument("--config", help="our YAML or a Tune-A-Video YAML config")
    p.add_argument("--frames", type=int)
    p.add_argument("--stride", type=int)
    p.add_argument("--start", type=int)
    p.add_argument("--size", type=int, help="square size (default: the model's native size)")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--resize", choices=["crop", "pad"])
    p.add_argument("--steps", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--method", choices=["baseline", "dct", "apla", "apla+dct", "fgbg"],
                   help="fgbg = combined tuning (eq. 20) on --fg-masks, usually with --init-from "
                   "a tuned run; its defaults are the paper's lr 2e-6 and 250 steps")
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--no-checkpointing", action="store_true", help="no gradient checkpointing")
    _temporal_args(p)
    # DCT switches (seed 000, Table 3 / Table 2)
    p.add_argument("--no-adapter", action="store_true")
    p.add_argument("--no-semantic", action="store_true")
    p.add_argument("--no-texture", action="store_true")
    p.add_argument("--clws", choices=["mul-fourier", "fourier", "exponential", "gaussian",
                                      "linear", "constant"])
    # APLA switches (seed 003, Table 3)
    p.add_argument("--vgt", choices=["pure", "hyper", "none"])
    p.add_argument("--no-discriminator", action="store_true")
    p.add_argument("--no-hyper-loss", action="store_true")
    p.add_argument("--vgt-preset", choices=["small", "paper"],
                   help="VGT size: paper = D 768, 4+4 layers (60.5M Pure, 97.1M Hyper)")
    # combined tuning (seed 001, eq. 20)
    p.add_argument("--fg-masks", metavar="FILE|DIR",
                   help="foreground masks of the clip's frames: .npy/.npz (frames, H, W) or a "
                   "folder of one PNG per frame (method fgbg)")
    p.add_argument("--lambdas", metavar="L1,L2,L3", help="weights of L, L_fg, L_bg (eq. 20)")
    p.add_argument("--init-from", metavar="RUN", help="start from this run's tuned tensors")
    p.add_argument("--out", help="run folder (default: a new folder under the data folder)")
    p.add_argument("--device")


def _temporal_args(p) -> None:
    p.add_argument("--temporal", choices=["vcstudio", "animatediff"],
                   help="temporal layers: vcstudio's zero-init temporal attention (default) or "
                   "AnimateDiff's motion modules (diffusers' UNetMotionModel)")
    p.add_argument("--motion-adapter", metavar="ID_OR_FOLDER",
                   help="with --temporal animatediff: a diffusers MotionAdapter (hub id or "
                   "folder) to start from; default: fresh motion modules")


def _fgbg_args(cfg, a):
    """--method fgbg: masks, lambdas, the run's own method kept underneath, paper defaults."""
    from .cli_long import parse_pair_list

    fg = cfg.fgbg
    if a.fg_masks:
        fg = dataclasses.replace(fg, masks=a.fg_masks)
    lam = parse_pair_list(getattr(a, "lambdas", None), 3, "--lambdas")
    if lam:
        fg = dataclasses.replace(fg, l1=lam[0], l2=lam[1], l3=lam[2])
    upd = {"fgbg": fg}
    if getattr(a, "init_from", None):
        upd["init_from"] = a.init_from
    if cfg.method == "fgbg":
        if a.lr is None and not a.config:
            upd["lr"] = 2e-6  # seed 001, sec. 4
        if a.steps is None and not a.config:
            upd["steps"] = 250
        if upd.get("init_from") and fg.base_method == "baseline":
            from .pipelines.runs import open_run

            src = open_run(upd["init_from"]).config()
            upd["fgbg"] = dataclasses.replace(fg, base_method=src.fgbg.base_method
                                              if src.method == "fgbg" else src.method)
    return dataclasses.replace(cfg, **upd)


def tune_config_from_args(a):
    """The TuneConfig the tune flags describe (over --config when given)."""
    from .config import DataConfig, TuneConfig, load_tune_config

    cfg = load_tune_config(a.config) if a.config else TuneConfig(data=DataConfig(width=0, height=0))
    d = cfg.data
    size = a.size
    d = dataclasses.replace(
        d, video_path=a.video or d.video_path, prompt=a.prompt if a.prompt is not None else d.prompt,
        n_frames=a.frames or d.n_frames, stride=a.stride or d.stride,
        start=a.start if a.start is not None else d.start,
        width=a.width or size or d.width, height=a.height or size or d.height,
        resize=a.resize or d.resize)
    if not a.config:  # defaults: Tune-A-Video's 24 frames / stride 2; 8 / 1 for the demo model
        small = _is_embedded(a.model)
        d = dataclasses.replace(d, n_frames=a.frames or (8 if small else 24),
                                stride=a.stride or (1 if small else 2))
    upd = {k: v for k, v in dict(model=a.model, steps=a.steps, lr=a.lr, seed=a.seed,
                                 method=a.method, checkpoint_every=a.checkpoint_every,
                                 temporal=a.temporal, motion_adapter=a.motion_adapter).items()
           if v is not None}
    cfg = dataclasses.replace(cfg, data=d, **upd)
    if a.no_checkpointing:
        cfg = dataclasses.replace(cfg, gradient_checkpointing=False)
    dct = dataclasses.replace(cfg.dct, adapter=not a.no_adapter and cfg.dct.adapter,
                              semantic=not a.no_semantic and cfg.dct.semantic,
                              texture=not a.no_texture and cfg.dct.texture,
                              clws=a.clws or cfg.dct.clws)
    apla = dataclasses.replace(cfg.apla, vgt=a.vgt or cfg.apla.vgt,
                               discriminator=not a.no_discriminator and cfg.apla.discriminator,
                               hyper_loss=not a.no_hyper_loss and cfg.apla.hyper_loss,
                               vgt_preset=a.vgt_preset or cfg.apla.vgt_preset)
    return _fgbg_args(dataclasses.replace(cfg, dct=dct, apla=apla), a)


def _is_embedded(model: Optional[str]) -> bool:
    from .models.loading import resolve_model

    try:
        return resolve_model(model)[1]
    except VcsError:
        return False


def _notice_if_embedded(model: Optional[str]) -> None:
    from .models.loading import EMBEDDED_NOTICE

    if _is_embedded(model):
        print(EMBEDDED_NOTICE, file=sys.stderr)


def run_tune(a) -> int:
    import torch

    from .pipelines.tune import tune
    from .progress import TqdmProgress

    cfg = tune_config_from_args(a)
    _notice_if_embedded(cfg.model or None)
    res = tune(cfg, a.out, progress=TqdmProgress(), device=torch.device(a.device) if a.device
               else None)
    last = res.losses[-1] if res.losses else {}
    print(f"tuned {res.steps} steps in {res.seconds:.1f} s; final loss "
          f"{last.get('loss', float('nan')):.4f}", file=sys.stderr)
    _print_method_summary(res.run_dir)
    print(res.run_dir)
    return 0


def _print_method_summary(run_dir) -> None:
    """The method's module sizes (e.g. APLA's VGT parameter count) from meta.json."""
    from .pipelines.runs import RunFolder

    info = RunFolder(run_dir).meta().get("method_summary") or {}
    counts = [f"{k[:-len('_params')]} {v:,}" for k, v in info.items() if k.endswith("_params")]
    if counts:
        print("parameters: " + ", ".join(counts), file=sys.stderr)


def _add_edit(sub) -> None:
    p = sub.add_parser("edit", help="generate an edit from a tuned run")
    p.add_argument("--run", required=True, help="the run folder `vcstudio tune` printed")
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative", default="")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=12.5)
    p.add_argument("--seed", type=int, default=33)
    p.add_argument("--no-inversion", action="store_true", help="start from noise, not the clip")
    p.add_argument("--out", help="output folder (default RUN/edits)")
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--device")


def run_edit(a) -> int:
    import torch

    from .config import EditConfig
    from .pipelines.edit import edit
    from .progress import TqdmProgress

    cfg = EditConfig(prompt=a.prompt, negative=a.negative, steps=a.steps, guidance=a.guidance,
                     seed=a.seed, use_inversion=not a.no_inversion)
    res = edit(a.run, cfg, progress=TqdmProgress(), out_dir=a.out, fps=a.fps,
               device=torch.device(a.device) if a.device else None)
    print(res.gif)
    print(res.mp4)
    return 0


def _bench_common(p) -> None:
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--steps", type=int, default=None, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation happens here)")
    p.add_argument("--method", default="baseline", help="baseline, dct, apla, apla+dct (comma-separated)")
    p.add_argument("--arch", default="sd15", choices=["sd15", "tiny"])
    p.add_argument("--no-checkpointing", action="store_true")
    p.add_argument("--compile", default="auto", choices=["auto", "yes", "no"])
    p.add_argument("--vgt", choices=["pure", "hyper", "none"], help="APLA's VGT variant")
    p.add_argument("--vgt-preset", choices=["small", "paper"], help="APLA's VGT size")
    p.add_argument("--dct-frames", type=int, default=None,
                   help="DCT: frames decoded per step (default: the config's)")
    p.add_argument("--dct-size", type=int, default=None,
                   help="DCT: short side the predicted frames are decoded at (0 = full)")
    p.add_argument("--dct-stepwise", action="store_true",
                   help="DCT: keep the warm-up / t < t_max schedule (default: the consistency "
                        "terms run on every step, the worst case)")
    _temporal_args(p)
    p.add_argument("--device")


def _bench_overrides(a) -> dict:
    from .config import APLAConfig

    over = {"compile": a.compile}
    over.update({k: v for k, v in (("temporal", a.temporal), ("motion_adapter", a.motion_adapter))
                 if v is not None})
    if a.vgt or a.vgt_preset:
        d = APLAConfig()
        over["apla"] = dataclasses.replace(d, vgt=a.vgt or d.vgt,
                                           vgt_preset=a.vgt_preset or d.vgt_preset)
    return over


def _add_bench(sub) -> None:
    from .metrics.cli import add_bench_metrics_args

    p = sub.add_parser("bench", help="benchmarks on full-size architectures (random weights)")
    bs = p.add_subparsers(dest="what", required=True)
    for name, helptext in (("tune", "seconds per tuning step and peak memory"),
                           ("sample", "50-step CFG sampling incl. VAE decode"),
                           ("all", "tune and sample")):
        _bench_common(bs.add_parser(name, help=helptext))
    add_bench_metrics_args(bs.add_parser("metrics", help="frames/s per metric"))
    for name, (adder, _runner) in BENCH_EXTRA.items():
        adder(bs.add_parser(name))


def _bench_i2v_add(p) -> None:
    from .cli_i2v import add_bench_i2v_args

    add_bench_i2v_args(p)


def _bench_i2v_run(a) -> int:
    from .cli_i2v import run_bench_i2v

    return run_bench_i2v(a)


def _bench_long_add(p) -> None:
    from .cli_long import add_bench_long_args

    add_bench_long_args(p)


def _bench_long_run(a) -> int:
    from .cli_long import run_bench_long

    return run_bench_long(a)


# other layers' benchmarks: name -> (add_args, run)
BENCH_EXTRA: dict = {"i2v": (_bench_i2v_add, _bench_i2v_run),
                     "long": (_bench_long_add, _bench_long_run)}


def run_bench(a) -> int:
    import torch

    from .pipelines.bench import ANCHOR, bench_sample, bench_tune, print_table

    if a.what == "metrics":
        from .metrics.cli import run_bench_metrics

        return run_bench_metrics(a)
    if a.what in BENCH_EXTRA:
        return BENCH_EXTRA[a.what][1](a)
    device = torch.device(a.device) if a.device else None
    rows = []
    for m in a.method.split(","):
        if a.what in ("tune", "all"):
            rows.append(bench_tune(a.frames, a.size, a.steps or 5, a.warmup, m, a.arch,
                                   not a.no_checkpointing, device,
                                   cfg_overrides=_bench_overrides(a),
                                   dct=dict(frames_per_step=a.dct_frames,
                                            decode_size=a.dct_size,
                                            every_step=not a.dct_stepwise)))
        if a.what in ("sample", "all"):
            rows.append(bench_sample(a.frames, a.size, a.steps or 50, arch=a.arch, device=device,
                                     method=m, compile=a.compile,
                                     cfg_overrides=_bench_overrides(a)))
    print(print_table(rows))
    print(f"anchor (Tune-A-Video, H100, 24x512x512): {ANCHOR['tune_s_per_step']} s/train step, "
          f"peak {ANCHOR['tune_peak_gib']} GiB; {ANCHOR['sample_s_per_call']} s/CFG call, "
          f"{ANCHOR['sample_50_s']} s for 50 steps")
    return 0


def _add_long(sub) -> None:
    from .cli_long import add_long_args

    add_long_args(sub.add_parser(
        "long", help="long video from a tuned run: a prompt per segment, temporal co-denoising"))


def run_long(a) -> int:
    from .cli_long import run_long as _run

    return _run(a)


def _add_app(sub) -> None:
    p = sub.add_parser("app", help="start the Gradio studio")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true")


def run_app(a) -> int:
    from .ui import launch

    launch(host=a.host, port=a.port, share=a.share)
    return 0


def _add_eval(sub) -> None:
    from .metrics.cli import add_eval_args

    add_eval_args(sub.add_parser("eval", help="score a video: consistency, alignment, flow, ..."))


def run_eval(a) -> int:
    from .metrics.cli import run_eval as _run

    return _run(a)


def _add_runs(sub) -> None:
    from .store import add_runs_args

    add_runs_args(sub.add_parser("runs", help="list past runs, export metrics, resumable jobs"))


def run_runs(a) -> int:
    from .store import run_runs as _run

    return _run(a)


def _add_i2v(sub) -> None:
    from . import cli_i2v

    cli_i2v.add_i2v_args(sub.add_parser("i2v", help="image-to-video generation (SVD or LTX-Video)"))
    cli_i2v.add_i2v_tune_args(sub.add_parser("i2v-tune", help="VCD reward LoRA tuning"))
    cli_i2v.add_eval_vcd_args(sub.add_parser("eval-vcd", help="Video Consistency Distance"))


def _i2v_handler(name: str):
    def run(a) -> int:
        from . import cli_i2v

        return getattr(cli_i2v, name)(a)

    return run


def _add_toyworld(sub) -> None:
    from .toyworld.command import add_toyworld_args

    add_toyworld_args(sub.add_parser("toyworld", help="the embedded demo model: train, eval, "
                                                      "examples"))


def run_toyworld(a) -> int:
    from .toyworld.command import run_toyworld as _run

    return _run(a)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vcstudio", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_tune(sub)
    _add_edit(sub)
    _add_long(sub)
    _add_eval(sub)
    _add_runs(sub)
    _add_i2v(sub)
    _add_toyworld(sub)
    _add_bench(sub)
    _add_app(sub)
    return parser


HANDLERS = {"tune": run_tune, "edit": run_edit, "long": run_long, "eval": run_eval,
            "runs": run_runs,
            "i2v": _i2v_handler("run_i2v"), "i2v-tune": _i2v_handler("run_i2v_tune"),
            "eval-vcd": _i2v_handler("run_eval_vcd"), "toyworld": run_toyworld, "bench": run_bench, "app": run_app}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        return HANDLERS[a.command](a)
    except VcsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
