"""Which backbone family runs a base model, read in one place (DESIGN "Models and weights": the
family is read from model_index.json and served by its backbone module), and what each family
asks of a clip.

Families the clip jobs (tune, edit, compare) run:

* ``"sd"`` -- Stable Diffusion 1.x/2.x inflated to video (DDPM/DDIM, U-Net;
  ``models/loading.py`` + ``pipelines/tune/loop.py``): the embedded demo model, any
  ``StableDiffusionPipeline`` folder or hub id, a single ``.safetensors`` / ``.ckpt`` file, a
  Tune-A-Video output folder.
* ``"wan"`` -- Wan2.1 text-to-video (rectified flow, DiT; ``models/wan/t2v.py`` +
  ``pipelines/flow*.py``): a ``WanPipeline`` folder or hub id.

The family is the model_index.json's ``_class_name`` (a local folder, or a hub id's file in the
local Hugging Face cache: no network); a class no clip job runs is a one-line error that says
which ones are supported. Without an index at hand (a hub id not downloaded yet) the picker's
catalogue (models/catalog.py) answers for the ids it knows, else the id's name (a "wan" word
in it: Wan), else SD -- the loader then says in one line what is missing.

Jobs dispatch on the family string returned here; everything else a family decides (its frame
and size rules, its default learning rate, the backbone object) is answered by this module, so
no code above models/ tests a family's name beyond that dispatch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import InputError

SD, WAN = "sd", "wan"
FAMILIES = (SD, WAN)

# model_index.json _class_name -> family (the pipelines a clip job can tune and edit)
SD_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline",
                "StableDiffusionInpaintPipeline", "TuneAVideoPipeline")
FAMILY_OF_CLASS = {**{c: SD for c in SD_PIPELINES}, "WanPipeline": WAN}
# pipelines vcstudio runs elsewhere: where to go instead
ELSEWHERE = {"WanImageToVideoPipeline": "an image-to-video model: use `vcstudio i2v`",
             "StableVideoDiffusionPipeline": "an image-to-video model: use `vcstudio i2v`",
             "LTXImageToVideoPipeline": "an image-to-video model: use `vcstudio i2v`"}


@dataclass(frozen=True)
class FamilyRules:
    """What a family asks of a clip and of a tune by default."""

    name: str
    label: str  # what a message calls it
    temporal: int  # frames are temporal * k + 1 (1: any count)
    multiple: int  # sides are multiples of this
    native_side: int  # the long side when none is given (0: the model's own, read on load)
    lr: Optional[float]  # the default learning rate of a tune (None: TuneConfig's own)
    steps: Optional[int]  # the default tuning steps (None: TuneConfig's own)
    guidance: Optional[float]  # the default edit guidance (None: the tier's, config.TierDefaults)
    parameterization: str  # "ddpm" | "flow"
    pipeline: str  # the diffusers pipeline class of its base models
    lora_delta: bool  # a run's delta.safetensors is a LoRA in diffusers' layout


RULES = {
    SD: FamilyRules(SD, "Stable Diffusion", 1, 8, 0, None, None, None, "ddpm",
                    "StableDiffusionPipeline", False),
    # Wan2.1: 4x temporal causal VAE (4k + 1 frames), 8x VAE x 2x2 patches (sides of 16), 832x480
    # native (the 1.3B model's), LoRA at 1e-4 for 300 steps, CFG 5 (WanPipeline's default)
    WAN: FamilyRules(WAN, "Wan2.1", 4, 16, 832, 1e-4, 300, 5.0, "flow", "WanPipeline", True),
}


def supported() -> str:
    return ", ".join(f"{RULES[f].label} ({'/'.join(c for c, g in FAMILY_OF_CLASS.items() if g == f)})"
                     for f in FAMILIES)


def family_of_index(index: dict, model: str) -> str:
    """The family a model_index.json names; another class: a one-line InputError."""
    cls = index.get("_class_name", "") if isinstance(index, dict) else ""
    if cls in FAMILY_OF_CLASS:
        return FAMILY_OF_CLASS[cls]
    where = f"; it is {ELSEWHERE[cls]}" if cls in ELSEWHERE else ""
    raise InputError(f"{model} holds a {cls or 'pipeline of unknown class'} (model_index.json "
                     f"_class_name){where}; tune and edit run {supported()}.")


def backbone_family(model: Optional[str]) -> str:
    """"sd" | "wan" for a base model: "" / None is the default model (loading.resolve_model),
    a single checkpoint file is SD, a folder or cached hub id by its model_index.json (module
    docstring); an unknown class is a one-line InputError."""
    from .loading import resolve_model
    from .pipeline_parts import read_model_index
    from .tav import is_tav_folder

    model_id, embedded = resolve_model(model or None)
    if embedded:
        return SD
    path = Path(model_id).expanduser()
    if path.is_file():
        return SD
    if path.is_dir() and is_tav_folder(path):
        return SD
    try:
        index = read_model_index(model_id)
    except (OSError, ValueError):
        raise InputError(f"{model_id}: its model_index.json is unreadable; pass a diffusers "
                         "folder.") from None
    if index is not None:
        return family_of_index(index, model_id)
    from .catalog import find

    known = find(model_id)
    if known is not None and known.family in FAMILIES:
        if known.task != "t2v" and known.family == WAN:
            raise InputError(f"{model_id} is {ELSEWHERE['WanImageToVideoPipeline']}; tune and "
                             f"edit run {supported()}.")
        return known.family
    return WAN if looks_like_wan(model_id) else SD


def looks_like_wan(model_id: str) -> bool:
    """A hub id whose name says Wan ("Wan-AI/Wan2.1-...", ".../wan2.1-t2v"), not merely holds
    the letters ("someone/swan-diffusion")."""
    import re

    return re.search(r"(?:^|[/_.\-])wan(?:[\d._\-]|$)", model_id.lower()) is not None


def resolved(model: Optional[str]) -> str:
    """The model id or path ``model`` names: "" / None is the default model
    (loading.resolve_model: $VCSTUDIO_MODEL, SD 1.5 when cached, the embedded demo model)."""
    from .loading import resolve_model

    return resolve_model(model or None)[0]


def default_guidance(model: Optional[str]) -> float:
    """The edit guidance a base model's edits use unless told: its family's (5 on Wan2.1, as
    WanPipeline), else its tier's (config.TierDefaults: 12.5 on Stable Diffusion, 5 on the
    embedded demo model)."""
    from ..config import tier_defaults
    from .loading import resolve_model

    model_id, embedded = resolve_model(model or None)
    g = rules(backbone_family(model_id)).guidance
    return g if g is not None else tier_defaults(embedded).guidance


def rules(family: str) -> FamilyRules:
    if family not in RULES:
        raise InputError(f"Unknown backbone family {family!r}; choose {', '.join(FAMILIES)}.")
    return RULES[family]


def run_family(meta: dict) -> str:
    """The family a run folder's meta.json records (runs from before the field: SD)."""
    return str((meta or {}).get("backbone") or SD)


def load_flow_backbone(model: str, device=None, mixed_precision: str = "auto", cache=None):
    """A flow-matching backbone for ``model`` (Wan2.1 T2V: models/wan/t2v.py) on ``device``,
    its parts in the device policy's precision. With a model ``cache`` the frozen parts are the
    cached ones (the UMT5 encoder, ~11 GB, loads once per session) and the backbone gets its
    own copy of the transformer: tuning injects LoRA into it and the job frees its reference
    to the text encoder, neither of which the cached parts see. Without one, a fresh load."""
    from ..device import pick_device, precision_for

    model = resolved(model)
    family = backbone_family(model)
    if rules(family).parameterization != "flow":
        raise InputError(f"{model} is a {rules(family).label} model, not a flow-matching one; "
                         "FlowEdit and LoRA flow tuning run on Wan2.1 (WanPipeline).")
    dev = pick_device(str(device) if device is not None else None)
    prec = precision_for(dev, mixed_precision)
    from .wan.loading import load_wan
    from .wan.t2v import WanT2VBackbone

    parts = load_wan(model, "t2v", dev, prec.frozen_dtype, cache=cache)
    if cache is not None:
        import copy
        import dataclasses

        parts = dataclasses.replace(parts, transformer=copy.deepcopy(parts.transformer))
    return WanT2VBackbone(parts, prec)


def flow_fingerprint(backbone) -> str:
    """Identifies a flow backbone's weights (a LoRA delta is refused on another base): its
    transformer config and a few weight tensors rounded to bf16 (the same weights in fp32 or
    bf16 give the same fingerprint), as loading._fingerprint does for SD."""
    import hashlib
    import json

    import torch

    tr = backbone.denoiser
    h = hashlib.sha256(json.dumps(dict(tr.config), sort_keys=True, default=str).encode())
    tensors = [tr.patch_embedding.weight, tr.proj_out.weight]
    for t in tensors:
        h.update(t.detach().float().cpu().to(torch.bfloat16).view(torch.int16).numpy().tobytes())
    return h.hexdigest()[:16]


__all__ = ["FAMILIES", "FamilyRules", "RULES", "SD", "WAN", "backbone_family",
           "default_guidance", "family_of_index", "flow_fingerprint", "load_flow_backbone", "resolved", "rules",
           "run_family", "supported"]
