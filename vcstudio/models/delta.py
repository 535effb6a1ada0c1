"""Tuned results as deltas: only trained tensors, in safetensors (never pickle)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..io.atomic import atomic_path


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, Any] | None = None) -> Path:
    """Atomic safetensors write; metadata values are JSON-encoded strings."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                  metadata=meta)
    return path


def load_tensors(path: str | Path, device: str | torch.device = "cpu",
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    return tensors, meta
