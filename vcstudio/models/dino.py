"""DINO ViT-B/16 image features for VBench's subject consistency (and i2v_subject).

VBench loads ``facebook/dino`` ``dino_vitb16`` through torch.hub and uses the model's output, the
final-norm CLS token. transformers ships the same weights as ``ViTModel`` (``facebook/dino-vitb16``):
``last_hidden_state[:, 0]`` (after the final layernorm, no pooler) is that CLS token. VBench's
``dino_transform(224)`` resizes the short side to 224 (bilinear, no antialias), does NOT crop,
and normalises with ImageNet statistics; position embeddings are interpolated for non-square
frames, as DINO's own model does.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import torch

from ..errors import ModelNotFoundError
from .cache import ModelCache, default_cache
from .hub_access import hub_file_cached, hub_online
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess, frames_to_unit

DEFAULT_DINO = "facebook/dino-vitb16"
VBENCH_DINO_PREPROCESS = ImagePreprocess(size=224, crop=None, mean=IMAGENET_MEAN,
                                         std=IMAGENET_STD, interpolation="bilinear",
                                         antialias=False)


class DinoEncoder:
    """DINO CLS features, L2-normalised float32 (N, D)."""

    def __init__(self, model: torch.nn.Module, name: str, device: torch.device,
                 dtype: torch.dtype = torch.float32, preprocess: ImagePreprocess =
                 VBENCH_DINO_PREPROCESS, batch_size: int = 16) -> None:
        self.model = model.eval().requires_grad_(False)
        self.name = name
        self.device = device
        self.dtype = dtype
        self.preprocess = preprocess
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"DinoEncoder({self.name!r}, device={self.device})"

    @torch.no_grad()
    def encode_images(self, images, normalize: bool = True) -> torch.Tensor:
        x = frames_to_unit(images, self.device)
        ac = (torch.autocast("cuda", dtype=self.dtype)
              if self.device.type == "cuda" and self.dtype != torch.float32
              else contextlib.nullcontext())
        outs = []
        with ac:
            for i in range(0, x.shape[0], self.batch_size):
                px = self.preprocess(x[i:i + self.batch_size])
                out = self.model(pixel_values=px, interpolate_pos_encoding=True)
                outs.append(out.last_hidden_state[:, 0].float())
        feats = torch.cat(outs)
        return torch.nn.functional.normalize(feats, dim=-1) if normalize else feats


def load_dino_encoder(spec: str = DEFAULT_DINO, device=None, cache: ModelCache = default_cache,
                      dtype: Optional[torch.dtype] = None) -> DinoEncoder:
    """A transformers ``ViTModel`` from a local folder or hub id (default DINO ViT-B/16);
    ``"random"`` builds the ViT-B/16 architecture with random weights (benchmarks)."""
    from ..device import pick_device, precision_for

    device = pick_device(device) if not isinstance(device, torch.device) else device
    dtype = dtype or precision_for(device).frozen_dtype
    return cache.get(("dino", spec, str(device), str(dtype)),
                     lambda: _build(spec, device, dtype))


def _build(spec: str, device, dtype) -> DinoEncoder:
    from transformers import ViTConfig, ViTModel

    if spec == "random":  # ViT-B/16 architecture, random weights: benchmarks only
        model = ViTModel(ViTConfig(image_size=224, patch_size=16), add_pooling_layer=False)
        return DinoEncoder(model.to(device=device, dtype=dtype), "DINO ViT-B/16 (random weights)",
                           device, dtype)
    local = Path(spec).expanduser()
    if spec.startswith(("/", ".", "~")) and not (local / "config.json").is_file():
        raise ModelNotFoundError(f"No DINO model folder at {local} (config.json missing). Save "
                                 "facebook/dino-vitb16 there with ViTModel.save_pretrained.")
    if not local.is_dir() and not hub_file_cached(spec) and not hub_online():
        raise ModelNotFoundError(
            f"DINO model {spec} is not in the local cache and there is no network. Download "
            "facebook/dino-vitb16 once with network, or pass --dino with a local folder saved "
            "by transformers' ViTModel.save_pretrained.")
    try:
        model = ViTModel.from_pretrained(str(local) if local.is_dir() else spec,
                                         add_pooling_layer=False)
    except OSError as e:
        raise ModelNotFoundError(
            f"DINO model {spec} is not available here ({str(e).splitlines()[0][:160]}). "
            "Download facebook/dino-vitb16 once with network, or pass --dino with a local "
            "folder saved by transformers' ViTModel.save_pretrained.") from None
    name = f"DINO {local.name if local.is_dir() else spec}"
    return DinoEncoder(model.to(device=device, dtype=dtype), name, device, dtype)
