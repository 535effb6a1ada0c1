"""The push job: a tuned run to the Hugging Face Hub in ONE commit, with everything an edit
needs, so ``vcstudio edit --run hf://user/name`` (or "Open from Hub") edits from it anywhere
with inversion: the delta, the clip latents, every cached inversion, config.yaml, meta.json,
the source clip, the losses, a preview GIF and a README.md model card built with
huggingface_hub's ModelCard / ModelCardData.

The card's metadata names the base model as a Hub id when the base came from the Hub; for a
local base (a folder, a single file, the embedded demo model) ``base_model`` is left out (the
Hub would read a path as a repo id) and ``vcstudio_base_fingerprint`` identifies it; the
fingerprint is there in both cases, and an edit checks it against the base it loads.

``to_folder`` writes exactly what would be uploaded (card included) into a folder instead: the
offline stand-in for a download, and a way to upload by hand (``hf upload``). Repos are
private unless ``private`` is false. The token is a secret the store never records; without
one, the local login (``hf auth login``, ``$HF_TOKEN``) is used.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..config import Limits
from ..errors import InputError, VcsError
from ..runs.folder import CARD_FILE as CARD, INVERSION_GLOB, PREVIEW_FILE as PREVIEW, RUN_FILES

LIBRARY = "vcstudio"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class PushConfig:
    run: str = ""  # the tuned run folder
    repo_id: str = ""  # user/name
    token: str = ""  # a write token (never stored); "" = the local login
    private: bool = True
    to_folder: str = ""  # write the upload into this folder instead of pushing
    overwrite: bool = False  # to_folder may replace an existing non-empty folder (not a run)


@dataclass
class PushOutcome:
    url: str  # the repo's page, or the folder written
    repo_id: str
    files: list[str]  # paths in the repo, README.md included
    commit: str = ""  # the commit's id ("" for a folder)
    private: bool = True


def validate(cfg: PushConfig, limits: Limits) -> None:
    if not cfg.run:
        raise InputError("Tune first: there is no delta to push yet.")
    if cfg.to_folder:
        check_target(Path(cfg.run), Path(cfg.to_folder), cfg.overwrite)
        return
    if not cfg.repo_id or not _REPO_ID.match(cfg.repo_id.strip()):
        raise InputError(f"{cfg.repo_id or 'No repo id'!s} is not a Hub repo id; give one as "
                         "user/name.")


def check_target(run: Path, folder: Path, overwrite: bool = False) -> None:
    """A ``to_folder`` the upload may be written into, or a one-line InputError: never the run
    itself or a folder inside it, never another run folder (its delta, config and inversions
    would be lost), never a file or a system folder, and an existing non-empty folder only
    with ``overwrite``."""
    from ..runs.folder import RunFolder

    try:
        target, src = folder.expanduser().resolve(), run.expanduser().resolve()
    except (OSError, RuntimeError) as e:
        raise InputError(f"--to-folder {folder} cannot be used ({e}).") from None
    if not RunFolder(src).config_path.is_file():
        return  # not a run at all: the job says so first
    if target == src or target.is_relative_to(src) or src.is_relative_to(target):
        raise InputError(f"--to-folder {folder} is the run itself (or holds it); write the "
                         "upload into a new folder.")
    if target.is_relative_to("/proc") or target.is_relative_to("/sys") \
            or target.is_relative_to("/dev") or target == Path(target.anchor):
        raise InputError(f"--to-folder {folder} is a system folder; give a new folder.")
    if target.exists() and not target.is_dir():
        raise InputError(f"--to-folder {folder} is a file, not a folder; give a new folder.")
    if RunFolder(target).config_path.is_file() or RunFolder(target).delta_path.is_file():
        raise InputError(f"--to-folder {folder} is a tuned run; writing there would replace its "
                         "delta, config and inversions. Give a new folder.")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise InputError(f"--to-folder {folder} exists and is not empty; give a new folder, or "
                         "--overwrite to replace it.")


def hub_base(base_model: Optional[str]) -> Optional[str]:
    """The base model as a Hub repo id, or None when it is local (a path that exists here, a
    path-looking string, a single file, the embedded model)."""
    if not base_model or not _REPO_ID.match(base_model) or base_model.startswith((".", "~")):
        return None
    if Path(base_model).exists():
        return None
    return base_model


def upload_files(run: Path) -> dict[str, Path]:
    """{path in the repo: local file} of what a run's upload holds (the card aside); a run
    that is not finished, or not a run, is a one-line error."""
    from ..runs.open import open_run

    rf = open_run(run, must_be_finished=False)
    meta = rf.meta()
    if meta.get("status") == "running" or (rf.checkpoint_path.is_file()
                                           and meta.get("status") != "stopped"):
        step = meta.get("steps_done")
        raise InputError(f"The run {run} is still tuning{f' (step {step})' if step else ''}, "
                         "or was cut short; push it when it finishes (or Stop or resume it "
                         "first: a stopped tune's delta can be pushed).")
    if not rf.delta_path.is_file():
        raise InputError(f"The run {run} has no delta.safetensors yet; tune it to the end (or "
                         "Stop it) before pushing.")
    files = {name: rf.path / name for name in RUN_FILES if (rf.path / name).is_file()}
    if "clip-latents.safetensors" not in files:
        raise InputError(f"The run {run} lacks clip-latents.safetensors, which an edit with "
                         "inversion needs; tune it again with this version.")
    for p in sorted(rf.path.glob(INVERSION_GLOB)):
        files[p.name] = p
    return files


def _preview(run: Path, dest: Path) -> Path:
    """The newest edit's GIF, else the source clip as a GIF."""
    gifs = sorted((run / "edits").glob("*.gif"), key=lambda p: p.stat().st_mtime)
    if gifs:
        shutil.copyfile(gifs[-1], dest)
        return dest
    from ..io import read_video, write_gif

    return write_gif(read_video(run / "source.mp4"), dest, 8.0)


def model_card(run: Path, repo_id: str, files: list[str]):
    """The README.md card: ModelCardData metadata (library, tags, base model or its
    fingerprint, the training prompt, method, steps) and a text with the preview and how to
    edit from the repo."""
    from huggingface_hub import ModelCard, ModelCardData

    from ..runs.folder import RunFolder

    from ..models.family import rules, run_family

    rf = RunFolder(Path(run))
    meta, cfg = rf.meta(), rf.config()
    fam = rules(run_family(meta))
    base = hub_base(meta.get("base_model"))
    prompt, method = cfg.data.prompt, meta.get("method", cfg.method)
    steps = int(meta.get("steps_done", cfg.steps))
    extra = {"vcstudio_base_fingerprint": meta.get("base_fingerprint"),
             "vcstudio_prompt": prompt, "vcstudio_method": method, "vcstudio_steps": steps,
             "vcstudio_temporal": cfg.temporal, "vcstudio_frames": meta.get("n_frames"),
             "vcstudio_size": [meta.get("width"), meta.get("height")],
             "vcstudio_seed": cfg.seed, "vcstudio_clip_hash": meta.get("clip_hash"),
             "vcstudio_status": meta.get("status"), "vcstudio_backbone": fam.name}
    if fam.lora_delta:  # a DiT's LoRA: no temporal layers of ours
        extra.pop("vcstudio_temporal")
    tags = ["vcstudio", "video-editing", "one-shot-tuning",
            *(["lora", f"backbone-{fam.name}"] if fam.lora_delta else ["tune-a-video"]),
            f"method-{method.replace('+', '-')}"]
    data = ModelCardData(library_name=LIBRARY, pipeline_tag="text-to-video", tags=tags,
                         **({"base_model": base} if base else {}), **extra)
    where = (f"[{base}](https://huggingface.co/{base})" if base else
             f"a local base model (`{Path(str(meta.get('base_model'))).name}`, fingerprint "
             f"`{meta.get('base_fingerprint')}`; pass it with `--model`)")
    text = "\n".join([
        f"# {repo_id.split('/')[-1]}", "",
        f"A one-shot video tune made with vcstudio: **{method}** for {steps} steps on a "
        f"{meta.get('n_frames')}-frame {meta.get('width')}x{meta.get('height')} clip described "
        f"as \"{prompt}\", over {where}.", "",
        f"![preview]({PREVIEW})", "",
        "## Edit from it", "", "```bash",
        f"vcstudio edit --run hf://{repo_id} --prompt \"...\"", "```", "",
        "The repo holds what an edit needs: the delta (trained tensors only), the clip latents "
        f"and {'flow' if fam.parameterization == 'flow' else 'DDIM'} inversions, config.yaml "
        "and meta.json. The edit checks that the base model it loads has the fingerprint "
        "above.", "",
        *([f"`delta.safetensors` is a LoRA in diffusers' layout over {fam.label}: "
           f"`{fam.pipeline}.from_pretrained(BASE).load_lora_weights(\"delta.safetensors\")` "
           "loads it.", ""] if fam.lora_delta else []),
        "## Files", "", *[f"- `{f}`" for f in files], ""])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text}")


def stage(run: Path, folder: Path, repo_id: str) -> list[str]:
    """Write the upload into ``folder``: the run's files, the preview and the card; returns
    the repo paths, in upload order."""
    run = Path(run)
    files = upload_files(run)
    folder.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        shutil.copyfile(src, folder / name)
    _preview(run, folder / PREVIEW)
    names = [*files, PREVIEW, CARD]
    model_card(run, repo_id, names).save(folder / CARD)
    return names


def _hub_error(e: Exception, repo_id: str) -> VcsError:
    """A Hub failure as one line that says what to do."""
    status = getattr(getattr(e, "response", None), "status_code", None)
    name = type(e).__name__
    if status == 401:
        return VcsError("The Hub refused the token (401); log in again or give a write token "
                        "(huggingface.co/settings/tokens).")
    if status == 403:
        return VcsError(f"This token may not write to {repo_id} (403); use a token with write "
                        "access, or a repo under your own name.")
    if status is None and any(k in name for k in ("Connect", "Timeout", "Network", "Offline")) \
            or "offline" in str(e).lower():
        return VcsError("Cannot reach the Hugging Face Hub (no network); push later, or write "
                        "the upload with --to-folder DIR and upload DIR with `hf upload`.")
    return VcsError(f"Could not push to {repo_id} ({name}"
                    f"{f' {status}' if status else ''}); check the repo id and the token.")


def _token(cfg: PushConfig) -> str:
    if cfg.token:
        return cfg.token
    from huggingface_hub import get_token

    tok = get_token()
    if not tok:
        raise InputError("No Hugging Face token: log in (the Login button on a Space, `hf auth "
                         "login` or $HF_TOKEN elsewhere) or give a write token.")
    return tok


def run(cfg: PushConfig, ctx) -> PushOutcome:
    import tempfile

    from huggingface_hub import CommitOperationAdd, HfApi

    from ..progress import Event

    run_dir = Path(cfg.run)
    repo_id = cfg.repo_id.strip() or f"user/{run_dir.name}"
    if cfg.to_folder:
        from ..io.atomic import atomic_dir

        folder = Path(cfg.to_folder)
        check_target(run_dir, folder, cfg.overwrite)  # again: the folder may have changed
        upload_files(run_dir)  # a run still tuning fails before the folder is touched
        try:
            with atomic_dir(folder, replace=True) as tmp:  # all of it, or nothing
                names = stage(run_dir, tmp, repo_id)
        except OSError as e:
            raise InputError(f"Could not write the upload into {folder} ({e.strerror or e}); "
                             "give a folder you can write to.") from None
        return PushOutcome(str(folder), repo_id, names, private=cfg.private)
    upload_files(run_dir)  # a run still tuning fails before any token or network use
    token = _token(cfg)
    from ..models.hub_access import hub_online

    if not hub_online():  # at once, not after the client's retries
        raise VcsError("Cannot reach the Hugging Face Hub (no network); push later, or write "
                       "the upload with --to-folder DIR (the app: Push when online) and upload "
                       "DIR with `hf upload`.")
    with tempfile.TemporaryDirectory(prefix="vcstudio-push-") as tmp:
        names = stage(run_dir, Path(tmp), repo_id)
        ctx(Event(0, 1, f"uploading {len(names)} files to {repo_id} in one commit",
                  stage="push"))
        api = HfApi(token=token)
        try:
            api.create_repo(repo_id, private=cfg.private, exist_ok=True)
            info = api.create_commit(
                repo_id, operations=[CommitOperationAdd(path_in_repo=n,
                                                        path_or_fileobj=str(Path(tmp) / n))
                                     for n in names],
                commit_message=f"vcstudio run {run_dir.name}: delta, latents, inversions, "
                               "config, card")
        except VcsError:
            raise
        except Exception as e:
            raise _hub_error(e, repo_id) from None
    ctx(Event(1, 1, "pushed", stage="push"))
    commit = getattr(info, "oid", "") or ""
    return PushOutcome(f"https://huggingface.co/{repo_id}", repo_id, names, str(commit),
                       cfg.private)


def card_metadata(folder: str | Path) -> dict:
    """The card's metadata of a pushed folder (ModelCard.load), {} without a card."""
    from huggingface_hub import ModelCard

    path = Path(folder) / CARD
    if not path.is_file():
        return {}
    return ModelCard.load(path).data.to_dict()
