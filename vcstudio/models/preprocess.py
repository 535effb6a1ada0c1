"""Image preprocessing for feature networks, as torch ops so the image path stays differentiable.

Each encoder states exactly what its reference applies: CLIP resizes the short side to the
model's size (bicubic) and center-crops (OpenAI CLIP / open_clip ``resize_mode="shortest"``);
VBench's DINO transform resizes the short side to 224 bilinearly without antialiasing and does
NOT crop. Inputs here are float tensors (N, 3, H, W) in [0, 1]; uint8 frames convert once in
:func:`frames_to_unit`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def frames_to_unit(frames, device=None) -> torch.Tensor:
    """uint8 (N, H, W, 3) numpy -> float32 (N, 3, H, W) in [0, 1]; float tensors pass through.

    A single frame (H, W, 3) becomes a batch of one.
    """
    if isinstance(frames, torch.Tensor):
        x = frames
        if x.ndim == 3:
            x = x[None]
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        return x.to(device) if device is not None else x
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (N, H, W, 3), got shape {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
    if device is not None:
        x = x.to(device)
    return x.float() / 255.0


@dataclass(frozen=True)
class ImagePreprocess:
    """Resize (short side -> ``size``), optional center crop, normalise. All torch ops.

    ``size`` is the short-side target; ``crop`` the square crop side (None = no crop).
    """

    size: int
    crop: int | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    antialias: bool = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        scale = self.size / min(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        if (nh, nw) != (h, w):
            if self.interpolation in ("bilinear", "bicubic"):
                x = F.interpolate(x, size=(nh, nw), mode=self.interpolation, align_corners=False,
                                  antialias=self.antialias)
            else:
                x = F.interpolate(x, size=(nh, nw), mode=self.interpolation)
            if self.interpolation == "bicubic":
                x = x.clamp(0.0, 1.0)  # bicubic overshoots; PIL clips to the 8-bit range too
        if self.crop is not None:
            top = int(round((nh - self.crop) / 2.0))
            left = int(round((nw - self.crop) / 2.0))
            x = x[:, :, top:top + self.crop, left:left + self.crop]
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std
