"""GroupNorm statistics over the whole clip, as Tune-A-Video's inflated U-Net computes them.

Tune-A-Video (Wu et al. 2023, Sec. 4.1 "network inflation") applies its ResNet blocks'
``norm1``/``norm2`` and the final ``conv_norm_out`` to the 5-D tensor (B, C, F, H, W): each
group's mean and variance span (C/G, F, H, W), i.e. all frames of one clip. The transformer
blocks' input GroupNorm runs on frames folded into the batch, so it stays per frame. vcstudio
folds frames into the batch everywhere ((B*F, C, H, W), models/inflate.py), which makes every
GroupNorm per frame unless the norms below are swapped in.

:class:`ClipGroupNorm` is an ``nn.GroupNorm`` (same ``weight``/``bias`` parameters, same state
dict names, so deltas and 2-D checkpoints are unaffected) whose forward unfolds the frames from
the shared :class:`~vcstudio.models.attention.FrameContext` and normalises each sample's clip.
Statistics are per sample b: a CFG batch (negative + positive) or a batch of co-denoising windows
is never pooled, because the batch axis is (b, f) with F known from the context.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import GROUPNORM_MODES  # noqa: F401  (re-exported: the modes built here)
from .attention import FrameContext


class ClipGroupNorm(nn.GroupNorm):
    """GroupNorm over (C/G, F, H, W) of each clip of a (B*F, C, H, W) batch."""

    def __init__(self, num_groups: int, num_channels: int, ctx: FrameContext, eps: float = 1e-5,
                 affine: bool = True) -> None:
        super().__init__(num_groups, num_channels, eps=eps, affine=affine)
        self.ctx = ctx

    @classmethod
    def replacing(cls, norm: nn.GroupNorm, ctx: FrameContext) -> "ClipGroupNorm":
        """A ClipGroupNorm holding ``norm``'s own parameters (shared, not copied)."""
        new = cls(norm.num_groups, norm.num_channels, ctx, norm.eps, norm.affine)
        if norm.affine:
            new.weight, new.bias = norm.weight, norm.bias
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.ctx.num_frames
        if f <= 1 or x.ndim != 4:
            return super().forward(x)
        bf, c, h, w = x.shape
        # (B*F, C, H, W) -> (B, C, F, H, W): torch's group_norm takes (N, C, *) and pools a
        # group over every trailing axis, frames included, separately for each n.
        x5 = x.view(bf // f, f, c, h, w).transpose(1, 2)
        y = F.group_norm(x5, self.num_groups, self.weight, self.bias, self.eps)
        return y.transpose(1, 2).reshape(bf, c, h, w)


def clip_groupnorm(unet: nn.Module, ctx: FrameContext) -> list[str]:
    """In place: the GroupNorms Tune-A-Video normalises over the clip become ClipGroupNorm.

    Those are ``norm1``/``norm2`` of every ResNet block (down, mid and up blocks) and the
    U-Net's ``conv_norm_out``; attention blocks' input norms keep per-frame statistics. Returns
    the names of the replaced modules."""
    from diffusers.models.resnet import ResnetBlock2D

    done = []
    for name, module in list(unet.named_modules()):
        if isinstance(module, ResnetBlock2D):
            for attr in ("norm1", "norm2"):
                norm = getattr(module, attr, None)
                if type(norm) is nn.GroupNorm:
                    setattr(module, attr, ClipGroupNorm.replacing(norm, ctx))
                    done.append(f"{name}.{attr}")
    if type(getattr(unet, "conv_norm_out", None)) is nn.GroupNorm:
        unet.conv_norm_out = ClipGroupNorm.replacing(unet.conv_norm_out, ctx)
        done.append("conv_norm_out")
    return done
