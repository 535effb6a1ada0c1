"""Load a diffusers pipeline's parts from a hub id or folder, frozen on a device (I2V backbones)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..errors import ModelNotFoundError
from .cache import ModelCache


def load_pipeline(pipeline_class: str, model: str | Path, dtype: torch.dtype, what: str,
                  folders: str, local_files_only: bool = False):
    """``diffusers.<pipeline_class>.from_pretrained(model)``; a missing folder or an unreachable
    hub id becomes a ModelNotFoundError that names the model and how to provide it offline."""
    import diffusers

    src = str(model)
    is_dir = Path(src).is_dir()
    if not is_dir and (Path(src).suffix or src.startswith((".", "/"))):
        raise ModelNotFoundError(f"{what} model folder {src} does not exist; pass --model a "
                                 f"diffusers folder ({folders}) or a hub id.")
    cls = getattr(diffusers, pipeline_class)
    if not is_dir and not local_files_only:
        try:  # the local Hub cache first: offline, a cached model loads without a network wait
            return cls.from_pretrained(src, dtype=dtype, local_files_only=True)
        except (OSError, ValueError, EnvironmentError):
            pass
        from .hub_access import hub_online

        if not hub_online():  # else huggingface_hub retries a dead connection for minutes
            raise ModelNotFoundError(
                f"The {what} model {src!r} is not in the local Hugging Face cache and the Hub "
                "cannot be reached; download it where there is network (`hf download "
                f"{src}`) or pass --model a local folder.")
    try:
        return cls.from_pretrained(src, dtype=dtype, local_files_only=local_files_only or is_dir)
    except (OSError, ValueError, EnvironmentError) as e:
        raise ModelNotFoundError(
            f"Could not load the {what} model {src!r} ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}). Without network, download it elsewhere with "
            "`huggingface-cli download` and pass the local folder with --model.") from e


def read_model_index(model: str | Path) -> Optional[dict]:
    """A diffusers folder's (or the locally cached hub repo's) model_index.json as a dict; None
    when neither is at hand (cache lookups only: no network)."""
    import json

    index = Path(model) / "model_index.json"
    if not index.is_file() and not Path(model).exists():
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(str(model), "model_index.json")
            index = Path(hit) if isinstance(hit, str) else index
        except Exception:  # not a valid repo id: the loader reports it
            pass
    return json.loads(index.read_text()) if index.is_file() else None


def freeze(device, *modules: torch.nn.Module) -> None:
    """Frozen inference parts: on ``device``, no gradients, eval mode."""
    for m in modules:
        m.to(device)
        m.requires_grad_(False)
        m.eval()


def cached(cache: Optional[ModelCache], key: tuple, build: Callable[[], Any]) -> Any:
    return build() if cache is None else cache.get(key, build)
