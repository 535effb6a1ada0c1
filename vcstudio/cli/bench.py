"""``vcstudio bench tune|sample|all|metrics|long|i2v|serve``: full-size architectures with random
weights (speed does not depend on values); prints a table. ``vcstudio bench toy-edit``: methods
scored against the toy world's ground truth (vcstudio/bench/toy_edit.py; its flags and output
here). Benchmarks are commands, not jobs: nothing is recorded in the run store."""
from __future__ import annotations

import dataclasses
import sys

from .common import add_setting_flag, add_temporal_args, temporal_overrides


def _bench_common(p) -> None:
    p.add_argument("--backbone", choices=["sd", "wan"], default="sd",
                   help="sd: the inflated SD-1.5 U-Net (--arch); wan: Wan2.1-T2V-1.3B's "
                   "transformer (random weights, GPU; --tiny on a CPU)")
    p.add_argument("--tiny", action="store_true",
                   help="--backbone wan: the tiny test architecture (a CPU smoke test)")
    p.add_argument("--frames", type=int, default=None,
                   help="default 24 (sd), 49 (wan)")
    p.add_argument("--size", type=int, default=None,
                   help="default 512 (sd, square); wan: the long side, 832 (480x832)")
    p.add_argument("--steps", type=int, default=None, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation happens here)")
    p.add_argument("--method", default="baseline",
                   help="baseline, dct, apla, apla+dct (comma-separated)")
    p.add_argument("--arch", default="sd15", choices=["sd15", "tiny"])
    p.add_argument("--no-checkpointing", action="store_true")
    p.add_argument("--compile", default="auto", choices=["auto", "yes", "no"])
    from ..methods.apla import APLAConfig

    add_setting_flag(p, APLAConfig, "vgt", help="APLA's VGT variant")
    add_setting_flag(p, APLAConfig, "vgt_preset", help="APLA's VGT size")
    p.add_argument("--dct-frames", type=int, default=None,
                   help="DCT: frames decoded per step (default: the config's)")
    p.add_argument("--dct-size", type=int, default=None,
                   help="DCT: short side the predicted frames are decoded at (0 = full)")
    p.add_argument("--dct-stepwise", action="store_true",
                   help="DCT: keep the warm-up / t < t_max schedule (default: the consistency "
                        "terms run on every step, the worst case)")
    add_temporal_args(p)
    p.add_argument("--device")


def _bench_overrides(a) -> dict:
    from ..methods.apla import APLAConfig

    over = {"compile": a.compile, **temporal_overrides(a)}
    if a.vgt or a.vgt_preset:
        d = APLAConfig()
        over["apla"] = dataclasses.replace(d, vgt=a.vgt or d.vgt,
                                           vgt_preset=a.vgt_preset or d.vgt_preset)
    return over


def add(sub) -> None:
    from .metrics import add_bench_metrics_args

    p = sub.add_parser("bench", help="benchmarks on full-size architectures (random weights)")
    bs = p.add_subparsers(dest="what", required=True)
    for name, helptext in (("tune", "seconds per tuning step and peak memory"),
                           ("sample", "50-step CFG sampling incl. VAE decode"),
                           ("all", "tune and sample")):
        bp = bs.add_parser(name, help=helptext)
        _bench_common(bp)
        if name != "tune":
            bp.add_argument("--control", choices=["canny"], default="",
                            help="sample also with a ControlNet (random weights) on canny "
                            "conditions and print the cost it adds")
    add_bench_metrics_args(bs.add_parser("metrics", help="frames/s per metric"))
    for name, (adder, _runner) in BENCH_EXTRA.items():
        adder(bs.add_parser(name))


def _bench_i2v_add(p) -> None:
    from .i2v import add_bench_i2v_args

    add_bench_i2v_args(p)


def _bench_i2v_run(a) -> int:
    from .i2v import run_bench_i2v

    return run_bench_i2v(a)


def _bench_long_add(p) -> None:
    from .long import add_bench_long_args

    add_bench_long_args(p)


def _bench_long_run(a) -> int:
    from .long import run_bench_long

    return run_bench_long(a)


def _bench_serve_add(p) -> None:
    from ..bench.serve import add_bench_serve_args

    add_bench_serve_args(p)


def _bench_serve_run(a) -> int:
    from ..bench.serve import run_bench_serve_cli

    return run_bench_serve_cli(a)


def _toy_edit_add(p) -> None:
    from ..bench.toy_edit import CASE_SETS, TIERS
    from .common import add_json_arg

    p.add_argument("--methods", default="baseline",
                   help="comma-separated method names or presets, as compare takes them "
                   "(default baseline; e.g. baseline,dct,apla)")
    p.add_argument("--n", type=int, default=20, help="edit cases (default 20)")
    p.add_argument("--cases", choices=CASE_SETS, default="heldout",
                   help="heldout: N seeded held-out clips, one attribute changed each; "
                   "examples: the app's bundled examples with their suggested edits (shape and "
                   "colour changed at once; up to 10)")
    p.add_argument("--seed", type=int, default=None,
                   help="picks the cases and seeds each tune and edit (default: the tier's, 33)")
    p.add_argument("--model", default="",
                   help="hub id, diffusers folder or .safetensors (default: the embedded demo "
                   "model, assets/toy-sd)")
    p.add_argument("--tier", choices=TIERS, default="demo",
                   help="whose defaults each method tunes and edits with: demo (the Edit tab's "
                   "with the demo model: 8 frames, 64 px, 100 steps, guidance 5) or full")
    p.add_argument("--steps", type=int, default=0, help="tuning steps (default: the tier's)")
    p.add_argument("--edit-steps", type=int, default=0,
                   help="sampling and inversion steps (default: the tier's)")
    p.add_argument("--inversion-prompt", metavar="TEXT", default=None,
                   help='what each clip is inverted under: "" = the empty prompt (default, as '
                   'the Edit tab), "target" = the edit prompt, "source" = the tuning prompt, '
                   "or text")
    p.add_argument("--out", default=None,
                   help="output folder (default: a new one under the data folder's bench/)")
    p.add_argument("--report", action="store_true",
                   help="end with a line checking issue 29's targets for the demo model "
                   "(baseline, demo tier, N >= 20): pass/FAIL each")
    p.add_argument("--device")
    add_json_arg(p, "the rows")


def _toy_edit_run(a) -> int:
    """A progress bar on stderr; the table (and the report line), the files, the output folder
    LAST on stdout. Exit 1 when a method failed on a case."""
    import time
    from pathlib import Path

    from ..bench.toy_edit import ToyEditConfig, report_line, run_toy_edit, validate
    from ..jobs.compare import format_table
    from ..paths import data_dir
    from ..progress import TqdmProgress
    from .common import text_out, write_json

    cfg = ToyEditConfig(methods=[m.strip() for m in a.methods.split(",") if m.strip()],
                        n=a.n, seed=a.seed, model=a.model or "", tier=a.tier, steps=a.steps,
                        edit_steps=a.edit_steps, device=a.device or "", cases=a.cases,
                        inversion_prompt=a.inversion_prompt)
    validate(cfg)
    out = (Path(a.out) if a.out else
           data_dir() / "bench" / time.strftime("toy-edit-%Y%m%d-%H%M%S"))
    bar = TqdmProgress(stream=sys.stderr)
    try:
        res = run_toy_edit(cfg, out, progress=bar)
    finally:
        bar.close()
    txt = text_out(a)
    print(format_table(res.table), file=txt)
    for f in res.failed:
        print(f"failed: {f['method']} on case {f['case']}: {f['message']}", file=sys.stderr)
    if a.report:
        print(report_line(res.rows, res.settings), file=txt)
    write_json(a.json, {"rows": res.rows})
    print(f"wrote {res.csv.name}, cases.csv, {res.json.name}", file=sys.stderr)
    print(res.out_dir, file=txt)
    return 1 if res.failed else 0


def _run_wan(a, device) -> int:
    """``--backbone wan``: the 1.3B's LoRA tune per method (+ DCT's share of a step) and/or an
    edit's 50 CFG steps and FlowEdit (vcstudio/bench/wan.py); one table, then the targets."""
    from ..bench.pipelines import print_table
    from ..bench.wan import bench_sample, bench_tune, dct_share_row, targets_line

    rows = []
    if a.what in ("tune", "all"):
        for m in a.method.split(","):
            rows.append(bench_tune(m.strip(), a.tiny, a.frames, a.size, a.steps or 3,
                                   a.warmup, not a.no_checkpointing, device,
                                   dct=dict(frames_per_step=a.dct_frames,
                                            decode_size=a.dct_size,
                                            every_step=not a.dct_stepwise),
                                   cfg_overrides=_bench_overrides(a)))
        share = dct_share_row(rows)
        if share is not None:
            rows.append(share)
    if a.what in ("sample", "all"):
        rows += bench_sample(a.tiny, a.frames, a.size, a.steps or 50, device=device)
    print(print_table(rows))
    print(targets_line())
    return 0


# other layers' benchmarks: name -> (add_args, run); serve is the load and fault test of the
# running app (bench/serve.py); toy-edit scores methods against the toy world's answers
BENCH_EXTRA: dict = {"i2v": (_bench_i2v_add, _bench_i2v_run),
                     "long": (_bench_long_add, _bench_long_run),
                     "serve": (_bench_serve_add, _bench_serve_run),
                     "toy-edit": (_toy_edit_add, _toy_edit_run)}


def run(a) -> int:
    import torch

    from ..bench.pipelines import ANCHOR, bench_sample, bench_tune, print_table

    if a.what == "metrics":
        from .metrics import run_bench_metrics

        return run_bench_metrics(a)
    if a.what in BENCH_EXTRA:
        return BENCH_EXTRA[a.what][1](a)
    device = torch.device(a.device) if a.device else None
    if a.backbone == "wan":
        return _run_wan(a, device)
    a.frames, a.size = a.frames or 24, a.size or 512
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
            plain = bench_sample(a.frames, a.size, a.steps or 50, arch=a.arch, device=device,
                                 method=m, compile=a.compile, cfg_overrides=_bench_overrides(a))
            rows.append(plain)
            if getattr(a, "control", ""):
                from ..bench.pipelines import control_row

                ctl = bench_sample(a.frames, a.size, a.steps or 50, arch=a.arch, device=device,
                                   method=m, compile=a.compile,
                                   cfg_overrides=_bench_overrides(a), control=a.control)
                rows += [ctl, control_row(plain, ctl)]
    print(print_table(rows))
    print(f"anchor (Tune-A-Video, H100, 24x512x512): {ANCHOR['tune_s_per_step']} s/train step, "
          f"peak {ANCHOR['tune_peak_gib']} GiB; {ANCHOR['sample_s_per_call']} s/CFG call, "
          f"{ANCHOR['sample_50_s']} s for 50 steps")
    return 0
