"""The push job: upload a tuned run's delta, config, meta and a short model card to the Hub.

Moved here as it was in the Edit tab (one file per upload); its token is a secret the store
never records. Self-contained on purpose: it is to become a one-commit upload with a full
model card.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..config import Limits
from ..errors import InputError, VcsError

FILES = ("delta.safetensors", "config.yaml", "meta.json", "README.md")


@dataclass
class PushConfig:
    run: str = ""  # the tuned run folder
    repo_id: str = ""  # user/name
    token: str = ""  # a write token (never stored)


@dataclass
class PushOutcome:
    url: str
    repo_id: str


def validate(cfg: PushConfig, limits: Limits) -> None:
    if not cfg.run:
        raise InputError("Tune first: there is no delta to push yet.")
    if not cfg.token or not cfg.repo_id:
        raise InputError("Give a Hub repo id (user/name) and a write token.")


def run(cfg: PushConfig, ctx) -> PushOutcome:
    from huggingface_hub import HfApi

    run = Path(cfg.run)
    api = HfApi(token=cfg.token)
    try:
        api.create_repo(cfg.repo_id, exist_ok=True)
        card = run / "README.md"
        meta = json.loads((run / "meta.json").read_text())
        card.write_text(f"# vcstudio delta\n\nOne-shot tuned on a {meta.get('n_frames')}-frame "
                        f"clip over base `{meta.get('base_model')}` (fingerprint "
                        f"{meta.get('base_fingerprint')}), method {meta.get('method')}, "
                        f"seed {meta.get('seed')}. Load with vcstudio: `vcstudio edit --run "
                        "FOLDER --prompt ...`.\n")
        for name in FILES:
            api.upload_file(path_or_fileobj=str(run / name), path_in_repo=name,
                            repo_id=cfg.repo_id)
    except Exception as e:
        raise VcsError(f"Could not push to the Hub ({type(e).__name__}); check the token "
                       "and the network.") from None
    return PushOutcome(f"https://huggingface.co/{cfg.repo_id}", cfg.repo_id)
