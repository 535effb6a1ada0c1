"""``vcstudio push --run RUN --repo user/name``: a tuned run's delta, config and meta to the
Hub (the push job; the token from --token or $HF_TOKEN is never recorded)."""
from __future__ import annotations

import os


def add(sub) -> None:
    p = sub.add_parser("push", help="upload a tuned run's delta to the Hugging Face Hub")
    p.add_argument("--run", required=True, help="the run folder `vcstudio tune` printed")
    p.add_argument("--repo", required=True, help="Hub repo id, user/name")
    p.add_argument("--token", default=None, help="write token (default: $HF_TOKEN)")


def run(a) -> int:
    from ..jobs.push import PushConfig
    from .common import run_job

    res = run_job("push", PushConfig(run=a.run, repo_id=a.repo,
                                     token=a.token or os.environ.get("HF_TOKEN", "")), a)
    print(res.url)
    return 0
