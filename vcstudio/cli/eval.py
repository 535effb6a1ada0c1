"""``vcstudio eval VIDEO``: score a video with the metrics registry (the eval job, recorded in
the run store); prints the table, ``--json [PATH]`` / ``--csv PATH`` export."""
from __future__ import annotations


def add(sub) -> None:
    from .metrics import add_eval_args

    add_eval_args(sub.add_parser("eval", help="score a video: consistency, alignment, flow, ..."))


def run(a) -> int:
    from ..jobs.eval import EvalConfig
    from .metrics import format_table, run_eval, write_csv
    from ..metrics.registry import results_to_json
    from .common import run_job, text_out, write_json

    if a.list_metrics:
        return run_eval(a)
    cfg = EvalConfig(video=str(a.video), prompt=a.prompt or "", source=a.source or "",
                     image=a.image or "",
                     metrics=[m for m in (a.metrics or "").split(",") if m.strip()],
                     clip=a.clip or "", dino=a.dino or "", flow_method=a.flow_method,
                     warp_flow=a.warp_flow, lpips_weights=a.lpips_weights or "",
                     lpips_alexnet=a.lpips_alexnet or "")
    res = run_job("eval", cfg, a)
    n, h, w = res.frames_shape[:3]
    out = text_out(a)
    print(f"{a.video}: {n} frames, {w}x{h}", file=out)
    print(format_table(res.results), file=out)
    write_json(a.json, results_to_json(res.results, video=str(a.video), n_frames=int(n),
                                       width=int(w), height=int(h), prompt=a.prompt,
                                       source=a.source, image=a.image))
    if a.csv:
        write_csv(res.results, a.csv, n)
    return 0
