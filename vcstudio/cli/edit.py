"""``vcstudio edit``: an edit of a tuned run (the edit job); prints the gif, then the mp4 last.
Edits land in ``RUN/edits/`` named for their whole config, so they never overwrite each other."""
from __future__ import annotations


def add(sub) -> None:
    p = sub.add_parser("edit", help="generate an edit from a tuned run")
    p.add_argument("--run", required=True, help="the run folder `vcstudio tune` printed, a "
                   "folder `vcstudio push --to-folder` wrote, or hf://user/name (a pushed run)")
    p.add_argument("--model", default="", help="the base model to load the run onto (default: "
                   "the one it was tuned on; its fingerprint must match)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative", default="")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=12.5)
    p.add_argument("--seed", type=int, default=33)
    p.add_argument("--no-inversion", action="store_true", help="start from noise, not the clip")
    p.add_argument("--inversion-prompt", metavar="TEXT",
                   help='invert the clip under this prompt: "" = the empty prompt (Tune-A-Video), '
                   '"source" = the tuning prompt, other text = that text (default: the run\'s '
                   "setting; an inversion is cached per step count and prompt)")
    p.add_argument("--metrics", default="", help="comma-separated metrics to score the edit "
                   "with (e.g. clip_text,warp_error); recorded in the run store")
    p.add_argument("--out", help="output folder (default RUN/edits)")
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--device")
    from .common import add_control_args

    add_control_args(p)


def run(a) -> int:
    from ..config import EditConfig
    from ..jobs.edit import EditJobConfig
    from .common import control_from_args, run_job

    cfg = EditJobConfig(run=a.run, fps=a.fps, model=a.model or "",
                        metrics=tuple(m for m in a.metrics.split(",") if m.strip()),
                        edit=EditConfig(prompt=a.prompt, negative=a.negative, steps=a.steps,
                                        guidance=a.guidance, seed=a.seed,
                                        use_inversion=not a.no_inversion,
                                        control=control_from_args(a),
                                        inversion_prompt=a.inversion_prompt))
    res = run_job("edit", cfg, a, out=a.out)
    for name, r in res.scores.items():
        if not r.skipped:
            import sys

            print(f"{name}: {r.value:.4g}", file=sys.stderr)
    print(res.gif)
    print(res.mp4)
    return 0
