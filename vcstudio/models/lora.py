"""LoRA on a denoiser's attention projections via peft, saved as a safetensors delta.

The delta is written in diffusers' LoRA layout, so diffusers loads it: the LoRA tensors keyed
``<component>.<peft key>`` (``unet.`` for SVD's U-Net, ``transformer.`` for LTX-Video's
transformer: the denoiser's name in its diffusers pipeline) and the peft ``LoraConfig`` as JSON
under diffusers' ``lora_adapter_metadata`` key, as diffusers' own ``save_lora_weights`` writes.
``LTXImageToVideoPipeline.load_lora_weights(path)`` then loads every tensor. Beside it the
metadata carries vcstudio's LoRA settings and the caller's run config as JSON -- never a pickle.

Stable Video Diffusion has no diffusers LoRA loader in 0.42: ``StableVideoDiffusionPipeline`` has
no LoRA loader mixin and ``UNetSpatioTemporalConditionModel`` no ``load_lora_adapter``. The
closest diffusers-native route is what ``load_lora_adapter`` does inside: read the file with
``StableDiffusionLoraLoaderMixin.lora_state_dict(path, return_lora_metadata=True)``, strip the
``unet.`` prefix, ``peft.inject_adapter_in_model(LoraConfig(**metadata), pipe.unet)`` and
``peft.set_peft_model_state_dict``; :func:`load_lora` does exactly that.

Files from before the diffusers layout (peft keys without a prefix) still load here.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch

from ..errors import InputError, ModelNotFoundError

ATTN_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")
# Per backbone (its ``name``): SVD's U-Net, LTX-Video's and Wan2.1's transformers all name their
# attention projections diffusers' way (attn1 = self, attn2 = cross in every block; Wan I2V's
# image cross-attention keys/values, add_k_proj / add_v_proj, stay frozen).
LORA_TARGETS = {"stable-video-diffusion": ATTN_PROJECTIONS, "ltx-video": ATTN_PROJECTIONS,
                "wan2.1-i2v": ATTN_PROJECTIONS, "wan2.1-t2v": ATTN_PROJECTIONS}


def lora_targets_for(backbone_name: str) -> tuple[str, ...]:
    return LORA_TARGETS.get(backbone_name, ATTN_PROJECTIONS)


DELTA_KIND = "vcstudio-lora"
LAYOUT = "diffusers-lora-1"  # meta "layout": keys "<prefix>.<peft key>" + lora_adapter_metadata


def _lora_config(rank: int, alpha: Optional[float], targets: Sequence[str], dropout: float):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank,
                      target_modules=list(targets), lora_dropout=dropout, init_lora_weights=True)


def add_lora(module: torch.nn.Module, rank: int = 16, alpha: Optional[float] = None,
             targets: Sequence[str] = ATTN_PROJECTIONS, dropout: float = 0.0) -> list[torch.nn.Parameter]:
    """Inject LoRA (B = 0 at start, so the model is unchanged) and freeze everything else.

    Returns the trainable LoRA parameters (kept in fp32 whatever the base dtype).
    """
    from peft import inject_adapter_in_model

    if rank < 1:
        raise InputError(f"LoRA rank must be >= 1, got {rank}.")
    cfg = _lora_config(rank, alpha, targets, dropout)
    module.requires_grad_(False)
    inject_adapter_in_model(cfg, module)
    module._vcs_lora_config = {"rank": rank, "alpha": cfg.lora_alpha, "targets": list(targets),
                               "dropout": dropout}
    params = []
    for name, p in module.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()
            p.requires_grad_(True)
            params.append(p)
    if not params:
        raise InputError(f"No module matched the LoRA targets {list(targets)}.")
    return params


def lora_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().float().cpu().contiguous() for k, v in
            get_peft_model_state_dict(module).items()}


def diffusers_adapter_metadata(module: torch.nn.Module, prefix: str) -> dict:
    """The LoraConfig of ``module``'s LoRA as diffusers stores it (``peft_config.to_dict()``,
    sets as lists), keys packed with ``prefix`` like ``LoraBaseMixin._save_lora_weights``."""
    c = getattr(module, "_vcs_lora_config", None)
    if not c:
        raise InputError("This module has no LoRA to save (add_lora was not called on it).")
    d = _lora_config(c["rank"], c["alpha"], c["targets"], c["dropout"]).to_dict()
    d = {k: sorted(v) if isinstance(v, set) else v for k, v in d.items()}
    return {f"{prefix}.{k}": v for k, v in d.items()}


def save_lora(path: str | Path, module: torch.nn.Module, config: Optional[dict] = None,
              prefix: str = "unet") -> Path:
    """Write the LoRA delta atomically (temp + rename) in diffusers' layout (module docstring);
    ``prefix`` is the denoiser's component name in its diffusers pipeline."""
    from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt", "kind": DELTA_KIND, "layout": LAYOUT, "prefix": prefix,
            "lora": json.dumps(getattr(module, "_vcs_lora_config", {})),
            "config": json.dumps(config or {}, default=str),
            LORA_ADAPTER_METADATA_KEY: json.dumps(diffusers_adapter_metadata(module, prefix),
                                                  indent=2, sort_keys=True)}
    tensors = {f"{prefix}.{k}": v for k, v in lora_state_dict(module).items()}
    from ..io.atomic import atomic_path

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_lora(path: str | Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(tensors keyed as peft names them in the module, lora config, run config) of a saved
    delta, in diffusers' layout (prefix stripped) or the older unprefixed one."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"LoRA file {path} not found.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # a non-safetensors file
        raise InputError(f"{path.name} is not a safetensors LoRA delta ({type(e).__name__}).") from e
    if meta.get("kind") != DELTA_KIND:
        raise InputError(f"{path.name} is not a vcstudio LoRA delta.")
    prefix = meta.get("prefix")
    if prefix:
        head = f"{prefix}."
        if not all(k.startswith(head) for k in tensors):
            raise InputError(f"{path.name} mixes tensors of several components; expected only "
                             f"'{head}*' keys.")
        tensors = {k[len(head):]: v for k, v in tensors.items()}
    return tensors, json.loads(meta.get("lora", "{}")), json.loads(meta.get("config", "{}"))


def load_lora(path: str | Path, module: torch.nn.Module, backbone: Optional[str] = None) -> dict:
    """Inject LoRA as saved and load its tensors; returns the saved run config. With
    ``backbone`` (the model's backbone name), a delta tuned on another backbone is refused
    in one line before anything is injected."""
    from peft import set_peft_model_state_dict

    tensors, lcfg, run_cfg = read_lora(path)
    was = run_cfg.get("backbone")
    if backbone and was and was != backbone:
        raise InputError(f"The LoRA in {Path(path).name} was tuned on {was}; this model is "
                         f"{backbone}. Use a LoRA tuned on the same backbone.")
    if not hasattr(module, "_vcs_lora_config"):
        add_lora(module, lcfg.get("rank", 16), lcfg.get("alpha"), lcfg.get("targets", ATTN_PROJECTIONS))
    res = set_peft_model_state_dict(module, tensors)
    if getattr(res, "unexpected_keys", None):
        raise InputError(f"The LoRA in {Path(path).name} does not fit this model "
                         f"({len(res.unexpected_keys)} unexpected tensors); was it tuned on another base?")
    module.requires_grad_(False)
    return run_cfg


@contextlib.contextmanager
def lora_disabled(module: torch.nn.Module) -> Iterator[None]:
    """Run the base model (A/B): switch every LoRA layer off, then back on."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in module.modules() if isinstance(m, BaseTunerLayer)]
    for m in layers:
        m.enable_adapters(False)
    try:
        yield
    finally:
        for m in layers:
            m.enable_adapters(True)
