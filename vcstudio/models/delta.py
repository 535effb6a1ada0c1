"""Tuned results as deltas: only trained tensors, in safetensors (never pickle).

Every file written here carries a SHA-256 of its tensors in its metadata, so a file damaged in
place (a bad copy, a flipped block) is caught on load, not only one that was cut short (which
safetensors itself refuses). Files written before the checksum existed load unchecked.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..io.atomic import atomic_path

CHECKSUM_KEY = "vcstudio_sha256"

# what to do about a damaged file, by the run-folder file it is (runs/folder.py names them)
_REPAIR = {
    "delta": "tune again into a new folder (`vcstudio tune --config RUN/config.yaml --out NEW`)"
             " or fetch the run again from where it was shared",
    "checkpoint": "delete it to restart tuning from step 0, or restore it from a copy",
    "inversion": "delete it: the next edit recomputes it",
}


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``tensors`` (sorted by name)."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().cpu()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, Any] | None = None) -> Path:
    """Atomic safetensors write; metadata values are JSON-encoded strings, plus a checksum."""
    from safetensors.torch import save_file

    path = Path(path)
    cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    meta[CHECKSUM_KEY] = json.dumps(tensors_digest(cpu))
    with atomic_path(path) as tmp:
        save_file(cpu, str(tmp), metadata=meta)
    return path


def _damaged(path: Path, why: str) -> InputError:
    kind = next((k for k in _REPAIR if path.name.startswith(k)), None)
    todo = _REPAIR[kind] if kind else "restore it from a copy"
    return InputError(f"{path.name} in {path.parent} is damaged ({why}); the file is left as it "
                      f"is: {todo}.")


def load_tensors(path: str | Path, device: str | torch.device = "cpu",
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata) of a file :func:`save_tensors` wrote; a missing, cut-short or
    damaged file is an InputError naming it and what to do (the file is never touched)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path.name} is missing from {path.parent}; "
                         + (_REPAIR["delta"] if path.name.startswith("delta") else
                            "restore it from a copy") + ".")
    tensors = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw_meta = f.metadata() or {}
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
    except Exception as e:  # SafetensorError: cut short, not safetensors, bad header
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise _damaged(path, f"not a complete safetensors file: {reason[:120]}") from None
    try:
        meta = {k: json.loads(v) for k, v in raw_meta.items()}
    except json.JSONDecodeError:
        raise _damaged(path, "its metadata is not valid JSON") from None
    expected = meta.pop(CHECKSUM_KEY, None)
    if expected is not None and tensors_digest(tensors) != expected:
        raise _damaged(path, "its tensors do not match the checksum written with them")
    if str(device) != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    return tensors, meta
