"""``vcstudio runs``: the runs of every surface (CLI, app, API, sweeps) from the run store;
``--resumable`` the interrupted or stopped tunes ``vcstudio resume`` continues."""
from __future__ import annotations

import sys
import time

from .common import add_json_arg, text_out, write_json


def add(sub) -> None:
    from ..store import JOB_KINDS

    p = sub.add_parser("runs", help="list past runs, export metrics, resumable tunes")
    p.add_argument("--data", default=None,
                   help="data folder (default: $VCSTUDIO_DATA or the user data dir)")
    p.add_argument("--kind", choices=JOB_KINDS, default=None)
    p.add_argument("--method", default=None, help="baseline | dct | apla | ...")
    p.add_argument("--clip", default=None, help="clip hash")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--search", default=None, help="text in the label or config")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--ids", nargs="*", default=None,
                   help="export these runs (default: the listed ones)")
    p.add_argument("--csv", default=None, metavar="PATH", help="write the metrics table here")
    p.add_argument("--per-frame", action="store_true", help="CSV of per-frame metrics")
    add_json_arg(p, "the runs (a list: id, kind, method, status, run_dir, config, ...)")
    p.add_argument("--resumable", action="store_true",
                   help="list the interrupted or stopped tunes `vcstudio resume` continues")


def run(args, out=None) -> int:
    from ..store import Store

    out = out or text_out(args)
    with Store(args.data) as st:
        if args.resumable:
            jobs = st.resumable_jobs(kinds=("tune",))
            rows = []
            for j in jobs:
                run_dir = str(st.run_dir(j.run_id)) if j.run_id else (j.params or {}).get("out")
                ckpt = str(st.abspath(j.checkpoint)) if j.checkpoint else "-"
                rows.append({"id": j.id, "kind": j.kind, "status": j.status, "step": j.step,
                             "total": j.total, "run_id": j.run_id, "run_dir": run_dir,
                             "checkpoint": None if ckpt == "-" else ckpt,
                             "session": j.session_id, "config": (j.params or {}).get("config")})
                print(f"{j.id}  {j.kind:5s} {j.status:11s} step {j.step}/{j.total}  "
                      f"checkpoint {ckpt}  run {run_dir or '-'}", file=out)
            write_json(args.json, rows)
            return 0
        runs = st.list_runs(kind=args.kind, method=args.method, clip_hash=args.clip,
                            seed=args.seed, text=args.search, limit=args.limit)
        if args.ids:
            runs = [st.run(i) for i in args.ids]
            for r in runs:
                r.status = st.run_status(r)
                r.metrics = st.video_metrics([r.id]).get(r.id, {})
        for r in runs:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created))
            metrics = " ".join(f"{k}={v:.4g}" for k, v in sorted(r.metrics.items()))
            print(f"{r.id}  {when}  {r.kind:7s} {r.method or '-':8s} seed={r.seed} {r.status}"
                  f"  {st.abspath(r.run_dir)}  {r.label}  {metrics}", file=out)
        if args.csv:
            st.export_csv([r.id for r in runs], args.csv, per_frame=args.per_frame)
            print(f"wrote {args.csv}", file=sys.stderr)
        write_json(args.json, st.runs_json(runs))
    return 0
