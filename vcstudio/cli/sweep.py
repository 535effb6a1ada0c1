"""``vcstudio sweep grid.yaml [--address auto|ray://HOST:10001] [--yes]``: a grid of tunes
(+ edits) as Ray tasks (the sweep job; jobs/sweep.py has the grid format). Without --address a
local Ray starts here and shuts down after. Prints the cells, then the summary table, and on
its last line the sweep folder (``cells.csv`` inside); exits 1 naming the failed or cancelled
cells."""
from __future__ import annotations

import sys
from pathlib import Path

from .common import add_json_arg, text_out, write_json


def add(sub) -> None:
    p = sub.add_parser("sweep", help="a grid of tunes (+ edits) on Ray")
    p.add_argument("grid", help="grid.yaml: tune: (TuneConfig fields, lists = axes), edit: ...")
    p.add_argument("--address", default="", help="auto | ray://HOST:10001 | HOST:6379 (default: "
                   "a local Ray on this machine)")
    p.add_argument("--yes", action="store_true", help="run a grid of more than 64 cells")
    p.add_argument("--inline", action="store_true",
                   help="run the cells one after another in this process, without Ray")
    p.add_argument("--num-cpus", type=int, default=0, help="a local Ray's CPUs (default all)")
    p.add_argument("--metrics", default=None, help="comma-separated metrics the cells' edits "
                   "are scored with (default: the Compare tab's)")
    p.add_argument("--out", default=None, help="sweep folder (default: DATA/sweeps/<grid>-<hash>;"
                   " on a cluster, storage every node sees)")
    p.add_argument("--data", default=None, help="data folder (default: $VCSTUDIO_DATA)")
    add_json_arg(p, "the cells (index, fields, status, run_dir, metrics)")
    p.add_argument("--device")


def run(a) -> int:
    from ..config import Limits
    from ..jobs import REGISTRY
    from ..jobs.sweep import SweepConfig, expand, load_grid, summary_table
    from .common import make_studio, run_job

    out = text_out(a)
    cfg = SweepConfig(grid=load_grid(a.grid), name=Path(a.grid).stem, address=a.address,
                      executor="inline" if a.inline else "ray", yes=a.yes,
                      num_cpus=a.num_cpus)
    if a.metrics:
        cfg.metrics = [m.strip() for m in a.metrics.split(",") if m.strip()]
    REGISTRY["sweep"].validate(cfg, Limits())  # bad grids stop here: nothing starts
    cells = expand(cfg.grid)
    print(f"{len(cells)} cells:", file=out)
    for c in cells:
        print(f"  {c.index:3d}  {c.label}", file=out)
    studio = make_studio(a)
    try:
        res = run_job("sweep", cfg, a, out=a.out, studio=studio)
    finally:
        studio.close()
    print(summary_table(res), file=out)
    counts = ", ".join(f"{n} {s}" for s, n in res.counts.items() if n)
    print(f"{counts} in {res.seconds:.1f} s", file=out)
    for r in res.failed:
        print(f"cell {r.cell.index} ({r.cell.label}) {r.status}: {r.message}", file=sys.stderr)
    write_json(a.json, [{"index": r.cell.index, "fields": r.cell.fields, "status": r.status,
                         "run_dir": str(r.run_dir), "run_id": r.run_id, "metrics": r.metrics,
                         "message": r.message} for r in res.results])
    print(res.out_dir, file=out)
    return 1 if res.failed else 0
