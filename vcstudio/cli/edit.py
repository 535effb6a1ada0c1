"""``vcstudio edit``: an edit of a tuned run (the edit job), or a training-free edit of a clip
(``--video --method flowedit``: the flowedit job, FlowEdit on a Wan2.1 model); prints the gif,
then the mp4 last. Edits of a run land in ``RUN/edits/`` named for their whole config, so they
never overwrite each other."""
from __future__ import annotations

import sys


def add(sub) -> None:
    from ..config import EditConfig
    from ..jobs.edit import EditJobConfig
    from ..methods.registry import all_method_names
    from .common import add_setting_flag, add_setting_flags

    p = sub.add_parser("edit", help="generate an edit from a tuned run, or FlowEdit a clip")
    p.add_argument("--run", help="the run folder `vcstudio tune` printed, a folder `vcstudio "
                   "push --to-folder` wrote, or hf://user/name (a pushed run)")
    p.add_argument("--model", default="", help="with --run: the base model to load the run onto "
                   "(default: the one it was tuned on; its fingerprint must match); with --video: "
                   "the base model to edit on (FlowEdit: a Wan2.1 T2V folder or hub id)")
    p.add_argument("--prompt", required=True, help="what the edit should show")
    p.add_argument("--negative", default="")
    add_setting_flags(p, EditConfig, "steps")
    add_setting_flag(p, EditConfig, "guidance", help="classifier-free guidance (default: 12.5 "
                     "on Stable Diffusion, 5 on Wan2.1)")
    add_setting_flags(p, EditConfig, "seed")
    p.add_argument("--no-inversion", action="store_true", help="start from noise, not the clip")
    p.add_argument("--inversion-prompt", metavar="TEXT",
                   help='invert the clip under this prompt: "" = the empty prompt (Tune-A-Video), '
                   '"source" = the tuning prompt, "target" = this edit\'s --prompt, other text = '
                   "that text (default: the run's setting; an inversion is cached per step count "
                   "and prompt)")
    p.add_argument("--metrics", default="", help="comma-separated metrics to score the edit "
                   "with (e.g. clip_text,warp_error); recorded in the run store")
    p.add_argument("--out", help="output folder (default RUN/edits; with --video a new folder)")
    add_setting_flags(p, EditJobConfig, "fps")
    p.add_argument("--device")
    g = p.add_argument_group("training-free edit of a clip (no tuned run)")
    g.add_argument("--video", help="the clip to edit (with --method flowedit)")
    g.add_argument("--method", choices=all_method_names(),
                   help="flowedit = FlowEdit (Kulikov et al. 2024) on a Wan2.1 model: no "
                   "inversion, no tuning; a tuned method needs `vcstudio tune` first")
    g.add_argument("--source-prompt", help="what the clip shows (FlowEdit's source prompt)")
    g.add_argument("--frames", type=int, help="frames read from the clip (resampled to 4k + 1 "
                   "on Wan2.1; default 17)")
    g.add_argument("--stride", type=int, default=1)
    g.add_argument("--start", type=int, default=0)
    g.add_argument("--size", type=int, default=0, help="the long side (rounded to a multiple of "
                   "16 on Wan2.1), the other follows the clip's aspect (default: the model's)")
    g.add_argument("--width", type=int, default=0)
    g.add_argument("--height", type=int, default=0)
    g.add_argument("--n-max", type=int, default=0, help="FlowEdit's steps taken of --steps "
                   "(default 2/3 of them: the paper's 33 of 50)")
    g.add_argument("--n-min", type=int, default=0)
    g.add_argument("--n-avg", type=int, default=1)
    g.add_argument("--source-guidance", type=float, default=3.5)
    g.add_argument("--target-guidance", type=float, default=7.0)
    from .common import add_control_args

    add_control_args(p)


def _metrics(a) -> tuple[str, ...]:
    return tuple(m.strip() for m in a.metrics.split(",") if m.strip())


def _flowedit(a) -> int:
    from ..config import DataConfig, FlowEditConfig
    from ..errors import InputError
    from ..methods.registry import is_training_free
    from .common import run_job

    if a.run:
        raise InputError("Give either --run (edit a tuned run) or --video (edit a clip "
                         "without tuning), not both.")
    if not a.method or not is_training_free(a.method):
        raise InputError(f"--video edits a clip without tuning: pass --method flowedit (method "
                         f"{a.method or 'none'} is tuned: run `vcstudio tune` first, then "
                         "`vcstudio edit --run RUN`).")
    cfg = FlowEditConfig(
        model=a.model, prompt=a.prompt, negative=a.negative, steps=a.steps, n_max=a.n_max,
        n_min=a.n_min, n_avg=a.n_avg, source_guidance=a.source_guidance,
        target_guidance=a.target_guidance, seed=a.seed, fps=a.fps, metrics=_metrics(a),
        data=DataConfig(video_path=a.video, prompt=a.source_prompt or "",
                        n_frames=a.frames if a.frames is not None else 17, stride=a.stride,
                        start=a.start, width=a.width, height=a.height, size=a.size))
    res = run_job("flowedit", cfg, a, out=a.out)
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    _print(res)
    return 0


def _print(res) -> None:
    for name, r in res.scores.items():
        if not r.skipped:
            print(f"{name}: {r.value:.4g}", file=sys.stderr)
    print(res.gif)
    print(res.mp4)


def _guidance(a) -> float:
    """--guidance, else the default of the run's backbone family (models/family.py)."""
    if a.guidance is not None:
        return a.guidance
    from ..errors import VcsError
    from ..models.family import rules, run_family
    from pathlib import Path

    from ..config import EditConfig
    from ..runs.folder import RunFolder

    try:
        g = rules(run_family(RunFolder(Path(a.run)).meta())).guidance
    except (VcsError, OSError):  # a hub run or a Tune-A-Video folder: SD's
        g = None
    return g if g is not None else EditConfig().guidance


def run(a) -> int:
    from ..config import EditConfig
    from ..errors import InputError
    from ..jobs.edit import EditJobConfig
    from .common import control_from_args, run_job

    if a.video or (a.method and not a.run):
        return _flowedit(a)
    if not a.run:
        raise InputError("Give --run (the run folder `vcstudio tune` printed), or --video with "
                         "--method flowedit to edit a clip without tuning.")
    cfg = EditJobConfig(run=a.run, fps=a.fps, model=a.model or "", metrics=_metrics(a),
                        edit=EditConfig(prompt=a.prompt, negative=a.negative, steps=a.steps,
                                        guidance=_guidance(a), seed=a.seed,
                                        use_inversion=not a.no_inversion,
                                        control=control_from_args(a),
                                        inversion_prompt=a.inversion_prompt))
    _print(run_job("edit", cfg, a, out=a.out))
    return 0
