"""DCT's multi-scale spatial adapter (DCT paper, Sec. 3.3.1, eq. 5), installed into every
transformer block of the (inflated) U-Net.

    MS-Adapter(X) = X + W_up1(GELU(W_down1 X)) + W_up2(GELU(W_down2 X))

Two bottleneck branches of different widths (``ratios`` of the block width); the up-projections
start at zero, so a fresh adapter is the identity and a freshly adapted model equals the original.

Where (``sites``):

* ``"attn1"``: after the spatial (sparse-causal) self-attention -- eq. 5 applied to the attention
  output before the block adds it to its residual stream (``ms_adapter_sa``);
* ``"ff"``: beside the feed-forward -- eq. 5's two branches take the feed-forward's (normalised)
  input and are added to its output, the block's own residual playing eq. 5's ``X +``
  (``ms_adapter_ff``).

Installed with forward hooks on the block's own ``attn1`` / ``ff`` submodules, so the diffusers
block keeps its code and its parameter names (``attn1.to_q`` still matches), and it composes with
:class:`vcstudio.models.temporal.TemporalBlock`, which wraps the block from outside. The adapters
live as submodules of the block, so their parameters are part of the model (and of the saved
delta) under names containing ``ms_adapter``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

ADAPTER_PATTERN = "ms_adapter"  # every adapter parameter name contains this
SITES = {"attn1": "ms_adapter_sa", "ff": "ms_adapter_ff"}


class MSAdapter(nn.Module):
    """Eq. 5 on tokens (..., dim): ``forward(x) = x + branches(x)``."""

    def __init__(self, dim: int, ratios: Sequence[float] = (0.25, 0.0625)) -> None:
        super().__init__()
        if not ratios:
            raise ValueError("MS-Adapter needs at least one bottleneck ratio")
        widths = [max(1, int(round(dim * r))) for r in ratios]
        self.down = nn.ModuleList(nn.Linear(dim, w) for w in widths)
        self.up = nn.ModuleList(nn.Linear(w, dim) for w in widths)
        for up in self.up:  # zero-initialised: the adapter starts as the identity
            nn.init.zeros_(up.weight)
            nn.init.zeros_(up.bias)

    def branches(self, x: torch.Tensor) -> torch.Tensor:
        """sum_i W_up_i(GELU(W_down_i x)) -- eq. 5 without its identity term."""
        out = None
        for down, up in zip(self.down, self.up):
            h = up(F.gelu(down(x)))
            out = h if out is None else out + h
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branches(x)


def _after_hook(adapter: MSAdapter):
    def hook(module, args, output):
        return adapter(output)  # eq. 5 on the self-attention output
    return hook


def _beside_hook(adapter: MSAdapter):
    def hook(module, args, output):
        return output + adapter.branches(args[0])  # parallel to the feed-forward
    return hook


def transformer_blocks(unet: nn.Module) -> list[nn.Module]:
    """Every spatial diffusers BasicTransformerBlock in ``unet`` (wrapped by TemporalBlock or
    not); AnimateDiff's motion modules are built of the same blocks but attend over frames, so
    they get no (spatial) adapter."""
    from diffusers.models.attention import BasicTransformerBlock

    return [m for n, m in unet.named_modules()
            if isinstance(m, BasicTransformerBlock) and "motion_modules" not in n]


def install_ms_adapters(unet: nn.Module, ratios: Sequence[float] = (0.25, 0.0625),
                        sites: Sequence[str] = ("attn1", "ff")) -> list[MSAdapter]:
    """Add an MS-Adapter at each of ``sites`` in every transformer block; returns them.

    Idempotent per block: a block that already has an adapter at a site is left as it is.
    """
    unknown = [s for s in sites if s not in SITES]
    if unknown:
        raise ValueError(f"unknown adapter site(s) {unknown}; choose from {list(SITES)}")
    added = []
    for blk in transformer_blocks(unet):
        dim = blk.attn1.to_q.in_features
        for site in sites:
            name = SITES[site]
            if hasattr(blk, name):
                continue
            ad = MSAdapter(dim, ratios).to(device=blk.attn1.to_q.weight.device)
            blk.add_module(name, ad)
            target = blk.attn1 if site == "attn1" else blk.ff
            target.register_forward_hook(_after_hook(ad) if site == "attn1" else _beside_hook(ad))
            added.append(ad)
    return added


def adapters_of(module: nn.Module) -> list[MSAdapter]:
    return [m for m in module.modules() if isinstance(m, MSAdapter)]
