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


def resolve_run(ref: str | Path, token: Optional[str] = None) -> Path:
    """A local folder for ``ref``: the folder itself, or the downloaded Hub snapshot (read-only:
    :func:`working_copy` gives a folder an edit may write into)."""
    hub = _hub_ref(str(ref))
    if hub is None:
        return Path(ref)
    repo, revision, sub = hub
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    try:
        folder = Path(snapshot_download(repo, revision=revision, local_files_only=True,
                                        token=token or None))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        try:
            folder = Path(snapshot_download(repo, revision=revision, token=token or None))
        except (GatedRepoError, RepositoryNotFoundError):
            raise ModelNotFoundError(
                f"No Hub repo {repo} that this token may read: check the name, or log in "
                "(`hf auth login` or HF_TOKEN) if it is private.") from None
        except RevisionNotFoundError:
            raise ModelNotFoundError(f"The Hub repo {repo} has no revision {revision!r}.") from None
        except (LocalEntryNotFoundError, OSError) as e:
            raise ModelNotFoundError(
                f"Cannot download {repo} (no network or HF_HUB_OFFLINE is set: "
                f"{str(e).splitlines()[0][:120]}). Download it where there is network "
                f"(`hf download {repo} --local-dir DIR`) and pass DIR.") from None
    folder = folder / sub if sub else folder
    if not (folder / "config.yaml").is_file() or not (folder / "delta.safetensors").is_file():
        raise InputError(f"The Hub repo {repo}{'/' + sub if sub else ''} is not a vcstudio run "
                         "(no config.yaml and delta.safetensors); open a repo that `vcstudio "
                         "push` made.")
    return folder


def working_copy(ref: str | Path, root: Path, token: Optional[str] = None) -> Path:
    """A run folder an edit can write into (its edits/, new inversions): a local folder is
    itself; a Hub run is linked file by file from its downloaded snapshot (the Hub cache stays
    untouched) into ``root/<user>--<name>-<commit>``, made once per commit."""
    import hashlib
    import os
    import shutil

    if not is_hub_ref(ref):
        return Path(ref)
    snap = resolve_run(ref, token)
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
