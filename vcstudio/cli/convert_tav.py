"""``vcstudio convert-tav TAV_OUTPUT_DIR --out RUN_DIR``: a Tune-A-Video output folder as a
vcstudio run (the convert-tav job), so it edits, pushes and compares like any run; prints the
run folder last."""
from __future__ import annotations

import sys


def add(sub) -> None:
    p = sub.add_parser("convert-tav", help="write a Tune-A-Video output folder as a vcstudio run")
    p.add_argument("folder", help="the Tune-A-Video output folder (its output_dir)")
    p.add_argument("--out", help="run folder to write (default: a new one under the data folder)")
    p.add_argument("--model", default="", help="the base it was tuned from (default: the "
                   "folder's own components)")
    p.add_argument("--device")


def run(a) -> int:
    from ..jobs.convert_tav import ConvertTavConfig
    from .common import run_job

    res = run_job("convert_tav", ConvertTavConfig(folder=a.folder, model=a.model), a, out=a.out)
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    print(res.run_dir)
    return 0
