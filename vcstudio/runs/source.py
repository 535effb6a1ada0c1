"""Where a tuned run comes from: a local run folder, or a Hub repo that holds one.

``hf://user/repo[@revision][/subfolder]`` (huggingface_hub's URI grammar) or a bare ``user/repo``
that is not a local path is downloaded with ``huggingface_hub.snapshot_download`` (the local Hub
cache answers first, so a downloaded run opens offline) and the snapshot folder is returned. The
repo must hold what ``vcstudio push`` uploads: a run folder (config.yaml, delta.safetensors, ...).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import InputError, ModelNotFoundError

HF_SCHEME = "hf://"


def _hub_ref(ref: str):
    """(repo id, revision, subfolder) of a Hub reference, or None for a local path."""
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError

    if not ref.startswith(HF_SCHEME):
        if Path(ref).exists() or ref.count("/") != 1 or ref.startswith((".", "/", "~")):
            return None
        ref = HF_SCHEME + ref
    try:
        uri = parse_hf_uri(ref)
    except HfUriError as e:
        raise InputError(f"{ref} is not a Hub run reference ({e}); use hf://user/repo.") from None
    if uri.type != "model":
        raise InputError(f"{ref} points at a {uri.type}; a tuned run lives in a model repo "
                         "(hf://user/repo).")
    return uri.id, uri.revision, uri.path_in_repo


def is_hub_ref(ref: str | Path) -> bool:
    return _hub_ref(str(ref)) is not None


def check_run_ref(ref: str | Path, what: str = "run (--run)") -> None:
    """A run reference a job can open: an existing folder or a Hub repo id; else a one-line
    InputError, before the job prints or loads anything."""
    if is_hub_ref(ref) or Path(ref).is_dir():
        return
    raise InputError(f"{what}: no run folder at {ref}; give the folder `vcstudio tune` printed "
                     "(or a Hub repo, hf://user/name).")


def hub_run_files(repo: str, revision: Optional[str], sub: str, token: Optional[str],
                  max_mb: Optional[float] = None) -> tuple[str, dict[str, int]]:
    """(commit, {path in the repo: bytes}) of the run a Hub repo holds, read from its file
    listing (nothing is downloaded): a repo that is not a vcstudio run is refused, and so is
    a run larger than ``max_mb`` (the message says its size and the cap). Only a run's own
    files (runs/folder.py) are listed: anything else in the repo is never fetched."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (GatedRepoError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    from ..models.hub_access import hub_endpoint
    from .folder import is_run_file

    try:
        info = HfApi(endpoint=hub_endpoint()).model_info(repo, revision=revision,
                                                        files_metadata=True, token=token or None)
    except (GatedRepoError, RepositoryNotFoundError):
        raise ModelNotFoundError(f"No Hub repo {repo} that this token may read: check the name, "
                                 "or log in (`hf auth login` or HF_TOKEN) if it is private.") \
            from None
    except RevisionNotFoundError:
        raise ModelNotFoundError(f"The Hub repo {repo} has no revision {revision!r}.") from None
    except Exception as e:  # offline mode, a dropped connection, a proxy: one line
        raise ModelNotFoundError(f"Cannot reach the Hugging Face Hub to list {repo} "
                                 f"({type(e).__name__}); check the network (and HF_HUB_OFFLINE) "
                                 "and try again.") from None
    prefix = f"{sub.strip('/')}/" if sub else ""
    files = {f.rfilename: int(f.size or 0) for f in (info.siblings or [])
             if f.rfilename.startswith(prefix) and is_run_file(f.rfilename[len(prefix):])}
    where = f"{repo}{'/' + sub if sub else ''}"
    if f"{prefix}config.yaml" not in files or f"{prefix}delta.safetensors" not in files:
        raise InputError(f"The Hub repo {where} is not a vcstudio run (no config.yaml and "
                         "delta.safetensors); open a repo that `vcstudio push` made.")
    total = sum(files.values())
    if max_mb is not None and total > max_mb * 2**20:
        raise InputError(f"The run in {where} is {total / 2**20:.0f} MB; this studio opens runs "
                         f"of at most {max_mb:g} MB from the Hub.")
    return str(info.sha or revision or ""), files


def resolve_run(ref: str | Path, token: Optional[str] = None,
                max_mb: Optional[float] = None) -> Path:
    """A local folder for ``ref``: the folder itself, or the Hub run's snapshot (read-only:
    :func:`working_copy` gives a folder an edit may write into).

    The local Hub cache answers first (a run opened once opens offline). Otherwise the repo's
    file listing is read first (:func:`hub_run_files`: not a run, or over ``max_mb``, is
    refused before anything downloads) and only the run's own files are downloaded. With no
    network the answer comes within about 2 s."""
    hub = _hub_ref(str(ref))
    if hub is None:
        return Path(ref)
    repo, revision, sub = hub
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from ..models.hub_access import hub_endpoint, hub_online
    from .folder import INVERSION_GLOB, RUN_FILES, UPLOAD_EXTRAS

    prefix = f"{sub.strip('/')}/" if sub else ""
    patterns = [prefix + n for n in (*RUN_FILES, *UPLOAD_EXTRAS, INVERSION_GLOB)]
    folder = None
    try:
        folder = Path(snapshot_download(repo, revision=revision, local_files_only=True,
                                        allow_patterns=patterns, token=token or None))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass
    if folder is None or not _holds_run(folder / sub if sub else folder):
        if not hub_online():
            if folder is not None and any(folder.iterdir()):  # its local copy is no run
                raise InputError(f"The Hub repo {repo} is not a vcstudio run (its local copy "
                                 "has no config.yaml and delta.safetensors); open a repo that "
                                 "`vcstudio push` made.")
            raise ModelNotFoundError(
                f"Cannot reach the Hugging Face Hub to open {repo} (no network, or "
                "HF_HUB_OFFLINE is set). Download it where there is network (`hf download "
                f"{repo} --local-dir DIR`) and open DIR.")
        commit, files = hub_run_files(repo, revision, sub, token, max_mb)
        try:
            folder = Path(snapshot_download(repo, revision=commit or revision,
                                            allow_patterns=list(files), token=token or None,
                                            endpoint=hub_endpoint()))
        except Exception as e:
            raise ModelNotFoundError(
                f"Downloading {repo} failed ({type(e).__name__}: "
                f"{(str(e).splitlines() or [''])[0][:120]}); try again, or download it "
                f"elsewhere (`hf download {repo} --local-dir DIR`) and open DIR.") from None
    folder = folder / sub if sub else folder
    if not _holds_run(folder):
        raise InputError(f"The Hub repo {repo}{'/' + sub if sub else ''} is not a vcstudio run "
                         "(no config.yaml and delta.safetensors); open a repo that `vcstudio "
                         "push` made.")
    return folder


def _holds_run(folder: Path) -> bool:
    return (folder / "config.yaml").is_file() and (folder / "delta.safetensors").is_file()


def working_copy(ref: str | Path, root: Path, token: Optional[str] = None,
                 max_mb: Optional[float] = None) -> Path:
    """A run folder an edit can write into (its edits/, new inversions): a local folder is
    itself; a Hub run is linked file by file from its downloaded snapshot (the Hub cache stays
    untouched) into ``root/<user>--<name>-<commit>``, made once per commit."""
    import hashlib
    import os
    import shutil

    if not is_hub_ref(ref):
        return Path(ref)
    snap = resolve_run(ref, token, max_mb)
    repo = _hub_ref(str(ref))[0]
    rev = snap.name if len(snap.name) == 40 else hashlib.sha256(str(snap).encode()).hexdigest()
    dest = Path(root) / f"{repo.replace('/', '--')}-{rev[:12]}"
    if (dest / "delta.safetensors").exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(snap.iterdir()):
        if not f.is_file():
            continue
        target = dest / f.name
        if target.exists() or target.is_symlink():
            target.unlink()
        try:
            os.symlink(f.resolve(), target)
        except OSError:  # no symlinks here (some Windows setups): copy
            shutil.copyfile(f, target)
    return dest
