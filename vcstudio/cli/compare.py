"""``vcstudio compare``: what the Compare tab does, headless (the compare job): tune each
variant, edit with the same seed, score; one side-by-side video, the metrics table (best per
column starred), ``compare.csv`` (one row per variant) and ``compare.json``; the output folder
is printed last."""
from __future__ import annotations

import sys


def _list(text: str | None, cast=str) -> list:
    from ..errors import InputError

    if text is None:
        return []
    try:
        return [cast(t.strip()) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise InputError(f"Expected a comma-separated list, got {text!r}.") from None


def add(sub) -> None:
    from ..methods.registry import presets

    p = sub.add_parser("compare", help="methods / presets / CLWS / seeds side by side")
    p.add_argument("--video", default="", help="the clip (for the methods tuned here)")
    p.add_argument("--prompt", default="", help="what the clip shows")
    p.add_argument("--edit-prompt", required=True, help="what every variant's edit shows")
    p.add_argument("--methods", default=None,
                   help="comma-separated method names or presets (default baseline,dct; none "
                   "with --runs), each optionally @MODEL (a hub id, folder or alias: "
                   "sd15, sd21, wan-1.3b; without @ the --model), e.g. "
                   "dct@sd15,baseline@wan-1.3b,flowedit@wan-1.3b; flowedit edits without "
                   "tuning: " + ", ".join(presets()))
    p.add_argument("--runs", default=None, help="comma-separated runs tuned before (vcstudio "
                   "run folders or Tune-A-Video output folders) to edit and score beside them")
    p.add_argument("--model", default="", help="hub id, folder or .safetensors (default: "
                   "embedded)")
    p.add_argument("--clws", default=None, help="CLWS weightings for the DCT variants, "
                   "comma-separated (mul-fourier,gaussian,...)")
    p.add_argument("--seeds", default="33", help="comma-separated seeds (each variant x each)")
    p.add_argument("--frames", type=int, default=None, help="tuning frames (default 8)")
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--size", type=int, default=0, help="the long side; the other follows the clip's aspect "
                   "(0 = the model's native size)")
    p.add_argument("--steps", type=int, default=300, help="tuning steps")
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--edit-steps", type=int, default=50, help="sampling steps")
    p.add_argument("--guidance", type=float, default=None,
                   help="every variant's edit guidance (default: each variant's base model's "
                   "own: 12.5 on Stable Diffusion, 5 on the embedded demo model and on Wan2.1)")
    p.add_argument("--metrics", default=None, help="comma-separated (default: the Compare "
                   "tab's)")
    p.add_argument("--out", default=None, help="output folder (default: under the data folder)")
    p.add_argument("--device")
    from .common import add_control_args

    add_control_args(p.add_argument_group("structure control (each variant is then edited "
                                          "without and with these conditions)"),
                     "the controlled variants")


def run(a) -> int:
    from ..jobs.compare import COMPARE_METRICS, CompareConfig, format_table
    from ..jobs.tune import real_footage_notice
    from .common import control_from_args, is_embedded, notice_if_embedded, run_job

    notice_if_embedded(a.model or None)
    small = is_embedded(a.model or None)
    note = real_footage_notice(a.video, small)
    if note:
        print(f"note: {note}", file=sys.stderr)
    cfg = CompareConfig(
        video=a.video, prompt=a.prompt, edit_prompt=a.edit_prompt,
        variants=_list(a.methods) if a.methods is not None or a.runs else ["baseline", "dct"],
        runs=_list(a.runs),
        clws=_list(a.clws), seeds=_list(a.seeds, int), model=a.model,
        frames=a.frames if a.frames is not None else 8, stride=a.stride, size=a.size,
        steps=a.steps, lr=a.lr, edit_steps=a.edit_steps,
        guidance=a.guidance,  # None: each variant's base model's own (jobs/compare.py)
        metrics=_list(a.metrics) or list(COMPARE_METRICS))
    control = control_from_args(a)
    if control:  # the comparison a creator asks for: the same edit without and with structure
        cfg.control = [[], control]
    res = run_job("compare", cfg, a, out=a.out)
    print(format_table(res.table))
    for name, msg in res.failed:
        print(f"failed: {name}: {msg}", file=sys.stderr)
    print(f"wrote {res.montage.name}, {res.csv.name}, {res.json.name}", file=sys.stderr)
    print(res.out_dir)
    return 1 if res.failed else 0
