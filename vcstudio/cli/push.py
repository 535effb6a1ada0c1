"""``vcstudio push RUN --repo user/name [--public]``: a tuned run to the Hub in one commit
(delta, clip latents, inversions, config, meta, preview GIF, model card), private unless
--public; ``--to-folder DIR`` writes exactly that upload into DIR instead. The token comes from
--token, else the local login (``hf auth login`` / $HF_TOKEN) and is never recorded."""
from __future__ import annotations

import os


def add(sub) -> None:
    p = sub.add_parser("push", help="upload a tuned run to the Hugging Face Hub (one commit)")
    p.add_argument("run_pos", nargs="?", metavar="RUN", help="the run folder `vcstudio tune` "
                   "printed")
    p.add_argument("--run", help="the run folder (same as RUN)")
    p.add_argument("--repo", default="", help="Hub repo id, user/name")
    p.add_argument("--public", action="store_true", help="make a new repo public (default: "
                   "private)")
    p.add_argument("--to-folder", metavar="DIR", help="write what would be uploaded into DIR "
                   "instead of pushing")
    p.add_argument("--overwrite", action="store_true", help="--to-folder may replace an "
                   "existing non-empty folder (never a tuned run)")
    p.add_argument("--token", default=None, help="write token (default: the local login or "
                   "$HF_TOKEN)")


def run(a) -> int:
    from ..errors import InputError
    from ..jobs.push import PushConfig
    from .common import run_job

    run_dir = a.run or a.run_pos
    if not run_dir:
        raise InputError("Name the run folder to push: vcstudio push RUN --repo user/name.")
    if not a.to_folder and not a.repo:
        raise InputError("Give the Hub repo to push to (--repo user/name), or --to-folder DIR.")
    res = run_job("push", PushConfig(run=run_dir, repo_id=a.repo,
                                     token=a.token or os.environ.get("HF_TOKEN", ""),
                                     private=not a.public, to_folder=a.to_folder or "",
                                     overwrite=a.overwrite), a)
    print(res.url)
    return 0
