"""The open_hub job: a pushed run from the Hub (``hf://user/name`` or ``user/name``) as a run
folder of this session's (or the data folder's), ready to edit with inversion: the Edit tab's
"Open from Hub". The download goes through huggingface_hub's snapshot_download (the local Hub
cache answers first); the folder links the snapshot's files, so edits and new inversions are
written beside them, never into the cache. The base-model fingerprint is checked when the
first edit loads the run onto its base."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Limits
from ..errors import InputError


@dataclass
class OpenHubConfig:
    ref: str = ""  # hf://user/name[@revision] or user/name
    token: str = ""  # for a private repo (never stored); "" = the local login


@dataclass
class OpenHubOutcome:
    run_dir: Path
    repo_id: str
    prompt: str
    method: str
    steps: int
    base_model: str  # as the card names it: a Hub id, or "" for a local base
    base_fingerprint: str
    message: str = ""


def validate(cfg: OpenHubConfig, limits: Limits) -> None:
    from ..runs.source import is_hub_ref

    ref = (cfg.ref or "").strip()
    if not ref:
        raise InputError("Give the Hub repo of a pushed run, e.g. hf://user/my-run.")
    if not is_hub_ref(ref):
        raise InputError(f"{ref!r} is not a Hub repo id; give it as user/name or "
                         "hf://user/name.")


def run(cfg: OpenHubConfig, ctx) -> OpenHubOutcome:
    from ..runs.source import working_copy
    from ..runs.open import open_run
    from ..progress import Event
    from .push import card_metadata

    ref = cfg.ref.strip()
    ctx(Event(0, 1, f"downloading {ref}", stage="download"))
    root = (ctx.session.outputs if ctx.session is not None else Path(ctx.data_dir) / "runs")
    folder = working_copy(ref, root / "hub", cfg.token or None, ctx.limits.max_hub_run_mb)
    rf = open_run(folder)
    meta, card, tcfg = rf.meta(), card_metadata(folder), rf.config()
    repo = ref[len("hf://"):] if ref.startswith("hf://") else ref
    steps = int(meta.get("steps_done", tcfg.steps))
    base = str(card.get("base_model") or "")
    msg = (f"Opened {repo}: {meta.get('method', tcfg.method)}, {steps} steps on "
           f"\"{tcfg.data.prompt}\"; now type an edit prompt and generate.")
    ctx(Event(1, 1, msg, stage="download"))
    return OpenHubOutcome(folder, repo, tcfg.data.prompt, meta.get("method", tcfg.method), steps,
                          base, str(meta.get("base_fingerprint", "")), msg)
