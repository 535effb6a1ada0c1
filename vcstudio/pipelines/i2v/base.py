"""What every image-to-video backbone shares: the interface, the truncated-backprop loop and the
image/frame conversions at its edges.

An :class:`I2VBackbone` does three things the reward tuning (VCD paper eq. 3) needs (and
``check(num_frames, height, width)`` resolves the model's own sizes and refuses ones it cannot
take before anything runs):

* ``encode(image, ...)``: conditioning from one image (computed once, no grad);
* ``denoise(cond, ..., grad_steps=k)``: the full sampling loop where only the LAST ``k`` steps
  keep the autograd graph (truncated backprop; k = 0 is plain sampling);
* ``decode(latents, frames=[...])``: pixels in [0, 1] of a chosen subset of frames,
  differentiable w.r.t. the latents.

``denoiser`` is the module LoRA goes into; ``denoiser_name`` is its component name in the diffusers
pipeline (``unet`` / ``transformer``), which prefixes the keys of a saved LoRA (diffusers' layout).
The backbones live in ``i2v/svd.py``, ``i2v/ltx.py`` and ``i2v/wan.py``; ``i2v.py`` picks one.
Each imports this module and nothing of the others.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import InputError
from ...progress import CancelToken, Event, ProgressFn, null_progress


class I2VBackbone(Protocol):
    """The conditioning object ``encode`` returns is the backbone's own (SVD's
    :class:`~vcstudio.pipelines.i2v.svd.I2VCond`);
    callers only read its ``image`` (1, 3, H, W) and ``num_frames`` (pixel frames)."""

    name: str
    denoiser: torch.nn.Module
    denoiser_name: str

    def check(self, num_frames: Optional[int] = None, height: Optional[int] = None,
              width: Optional[int] = None) -> tuple[int, int, int]: ...

    def encode(self, image, num_frames: int, height: int, width: int,
               generator: torch.Generator, prompt: Optional[str] = None): ...

    def denoise(self, cond: Any, steps: int, generator: torch.Generator, grad_steps: int = 0,
                progress: ProgressFn = null_progress,
                cancel: Optional[CancelToken] = None) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor, frames: Optional[Sequence[int]] = None,
               chunk: int = 8, generator: Optional[torch.Generator] = None) -> torch.Tensor: ...

    def embed_images(self, images: torch.Tensor) -> torch.Tensor: ...


def truncated_loop(step: Callable[[torch.Tensor, Any], torch.Tensor], x: torch.Tensor,
                   timesteps, grad_steps: int, progress: ProgressFn = null_progress,
                   cancel: Optional[CancelToken] = None) -> torch.Tensor:
    """The denoising loop where only the last ``grad_steps`` steps keep the autograd graph
    (VCD paper's truncated backprop; 0 = plain sampling)."""
    from ...progress import StepTimer

    n = len(timesteps)
    timer = StepTimer(n)
    for i, t in enumerate(timesteps):
        if cancel is not None:
            cancel.check()
        with torch.set_grad_enabled(i >= n - grad_steps and torch.is_grad_enabled()):
            x = step(x, t)
        progress(Event(i + 1, n, f"denoising step {i + 1}/{n}", stage="sample",
                       eta=timer.tick()))
    return x


def image_to_tensor(image, height: int, width: int) -> torch.Tensor:
    """uint8 (H, W, 3) numpy or float (3, H, W)/(1, 3, H, W) in [0, 1] -> (1, 3, height, width)."""
    if isinstance(image, np.ndarray):
        from ...io import resize_frames

        if image.ndim != 3 or image.shape[-1] != 3:
            raise InputError(f"Conditioning image must be (H, W, 3), got {image.shape}.")
        if image.shape[:2] != (height, width):
            image = resize_frames(image[None], width, height, mode="crop")[0]
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
    t = image[None] if image.ndim == 3 else image
    if tuple(t.shape[-2:]) != (height, width):
        t = F.interpolate(t.float(), size=(height, width), mode="bilinear", antialias=True,
                          align_corners=False)
    return t.float()


def aspect_note(image_hw: tuple[int, int], height: int, width: int) -> str:
    """What :func:`image_to_tensor` does to an image of another size, in one line ("" when it
    only scales or not at all): it covers height x width keeping its aspect, then crops."""
    ih, iw = int(image_hw[0]), int(image_hw[1])
    if ih * width == iw * height:
        return ""
    return (f"The image is {iw}x{ih}; it was resized keeping its aspect to cover {width}x"
            f"{height} and centre-cropped (give --width/--height of its aspect to keep all of "
            "it).")


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """float (F, 3, H, W) in [0, 1] -> uint8 (F, H, W, 3): the one exit to the io edge."""
    return (frames.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()



__all__ = ["I2VBackbone", "aspect_note", "image_to_tensor", "to_uint8", "truncated_loop"]
