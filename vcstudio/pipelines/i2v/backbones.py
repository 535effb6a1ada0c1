"""Image-to-video: the backbone registry and plain I2V sampling.

Three backbones share the :class:`~vcstudio.pipelines.i2v.base.I2VBackbone` interface: Stable
Video Diffusion (``i2v/svd.py``), LTX-Video (``i2v/ltx.py``, text + image conditioned, temporally
compressed latents) and Wan2.1 I2V (``i2v/wan.py``, the VCD paper's own backbone; CLIP image
states + UMT5 text, a causal 4x temporal VAE, a switchable step cache); each reproduces its
diffusers pipeline's sampling and the tests check it against diffusers itself. :data:`REGISTRY`
maps a backbone kind to the diffusers pipeline class it reads, its loader and its class;
``build_backbone`` picks one from the model folder's pipeline class or an explicit choice. The
backbones import only ``i2v_base``, never this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from ...device import precision_for
from ...errors import InputError
from ...models.ltx import load_ltx
from ...models.svd import load_svd
from ...models.wan.loading import load_wan_i2v
from ...progress import CancelToken, ProgressFn, null_progress
from .base import I2VBackbone, image_to_tensor, to_uint8, truncated_loop
from .ltx import LTXBackbone
from .svd import I2VCond, SVDBackbone
from .wan import WanI2VBackbone


@dataclass(frozen=True)
class BackboneEntry:
    pipeline_class: str  # the diffusers pipeline whose model_index.json names this backbone
    load: Callable  # (model, device=, dtype=, cache=) -> parts
    backbone: type  # (parts, precision=, **kwargs) -> I2VBackbone
    options: tuple[str, ...] = ()  # keyword settings only this backbone takes
    names: tuple[str, ...] = ()  # hub-id substrings that name it when no index is at hand


REGISTRY: dict[str, BackboneEntry] = {
    "svd": BackboneEntry("StableVideoDiffusionPipeline", load_svd, SVDBackbone),
    "ltx": BackboneEntry("LTXImageToVideoPipeline", load_ltx, LTXBackbone, names=("ltx",)),
    "wan": BackboneEntry("WanImageToVideoPipeline", load_wan_i2v, WanI2VBackbone,
                         options=("step_cache",), names=("wan",)),
}
BACKBONES = tuple(REGISTRY)
# each backbone's own (frames, height, width) when none is given: SVD's and LTX-Video's
# documented sizes, the VCD paper's Wan setting
OWN_SIZES = {"svd": (14, 576, 1024), "ltx": (121, 512, 704), "wan": (25, 272, 368)}
_ALL_OPTIONS = {o for e in REGISTRY.values() for o in e.options}
PIPELINE_BACKBONE = {e.pipeline_class: k for k, e in REGISTRY.items()}


def backbone_kind(model: str, backbone: str = "auto") -> str:
    """"svd" | "ltx" | "wan" for a model: an explicit choice wins; else the folder's
    model_index.json ``_class_name`` (cached hub files too); else the hub id's name; else SVD."""
    from ...models.pipeline_parts import read_model_index

    if backbone != "auto":
        if backbone not in BACKBONES:
            raise InputError(f"Unknown I2V backbone {backbone!r}; choose one of {BACKBONES} or auto.")
        return backbone
    index = read_model_index(model)
    if index is not None:
        cls = index.get("_class_name", "")
        if cls in PIPELINE_BACKBONE:
            return PIPELINE_BACKBONE[cls]
        raise InputError(f"{model} holds a {cls or 'unknown'} pipeline; the I2V job runs "
                         f"{', '.join(PIPELINE_BACKBONE)}. Pass --backbone to force one.")
    low = str(model).lower()
    return next((k for k, e in REGISTRY.items() if any(n in low for n in e.names)), "svd")


def build_backbone(model: str, device=None, mixed_precision: str = "auto",
                   cache=None, backbone: str = "auto", **kwargs):
    """The backbone for a model id / folder: SVD, LTX-Video or Wan2.1 I2V (see
    :func:`backbone_kind`). ``kwargs`` go to the backbone's class; a setting only another
    backbone takes (Wan's ``step_cache``) set to anything but None is a one-line error."""
    from ...device import pick_device
    from ...models.cache import default_cache

    dev = pick_device(device)
    prec = precision_for(dev, mixed_precision)
    cache = default_cache if cache is None else cache
    kind = backbone_kind(model, backbone)
    entry = REGISTRY[kind]
    for k in [k for k in kwargs if k not in entry.options and k in _ALL_OPTIONS]:
        if kwargs.pop(k) is not None:
            owners = ", ".join(n for n, e in REGISTRY.items() if k in e.options)
            raise InputError(f"{k.replace('_', ' ')} is available on the {owners} backbone "
                             f"only; {model} is {kind}.")
    parts = entry.load(model, device=dev, dtype=prec.frozen_dtype, cache=cache)
    return entry.backbone(parts, precision=prec, **kwargs)


def check_i2v_memory(backbone: I2VBackbone, num_frames: Optional[int] = None,
                     height: Optional[int] = None, width: Optional[int] = None,
                     tune: bool = False) -> None:
    """Refuse an image-to-video generation, or a VCD reward tune (VCD paper eq. 3: gradients
    through the last denoising step and the decode), whose estimated peak exceeds the free
    memory, before anything is sampled (vcstudio/memory.py, at the denoiser's size relative to
    SD 1.x; the model's own frames and size where none is given). The message names the
    settings that lower it."""
    from ... import memory

    n = int(num_frames or backbone.default_frames)
    h0, w0 = backbone.default_size()
    h, w = int(height or h0), int(width or w0)
    scale = memory.model_scale(backbone.denoiser)
    dev = (memory.tune_gib(n, h, w, 0.0, True, scale) if tune
           else memory.sample_gib(n, h, w, scale))
    what = "a VCD reward tune" if tune else "an image-to-video generation"
    memory.check(memory.Need(memory.frames_gib(n, h, w, 3), dev,
                             f"{what} of {n} frames at {w}x{h}",
                             "frames or size (--frames / --size; 0 = the model's own)"),
                 backbone.device)


def sample_i2v(backbone: I2VBackbone, image, num_frames: Optional[int] = None,
               height: Optional[int] = None, width: Optional[int] = None, steps: int = 25,
               seed: int = 0, progress: ProgressFn = null_progress,
               cancel: Optional[CancelToken] = None, prompt: Optional[str] = None) -> np.ndarray:
    """Generate a video from one image (+ prompt, where the backbone reads one) -> uint8
    (F, H, W, 3). Same seed, same frames: one generator feeds encode, denoise and decode in the
    order the diffusers pipelines draw from it."""
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        cond = backbone.encode(image, num_frames, height, width, generator=g, prompt=prompt)
        lat = backbone.denoise(cond, steps, generator=g, progress=progress, cancel=cancel)
        return to_uint8(backbone.decode(lat, generator=g))


__all__ = ["BACKBONES", "OWN_SIZES", "REGISTRY", "I2VBackbone", "I2VCond", "LTXBackbone",
           "SVDBackbone", "WanI2VBackbone",
           "backbone_kind", "build_backbone", "check_i2v_memory", "image_to_tensor", "sample_i2v",
           "to_uint8", "truncated_loop"]
