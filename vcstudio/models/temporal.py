"""Temporal attention after each transformer block (Tune-A-Video's attn_temp).

At every spatial position the tokens of all frames attend to each other. The output projection
starts at zero, so a freshly inflated model equals the 2-D model. Parameter names follow
Tune-A-Video's: ``temporal.norm`` is its ``norm_temp``, ``temporal.attn`` its ``attn_temp``.

``positions`` (TuneConfig.frame_positions, default off as in Tune-A-Video, which has none) adds a
fixed sinusoidal frame-position code to the attention input (as AnimateDiff's motion modules do):
without it, attention over frames sees a set and cannot tell their order. It has no parameters
and, with the zero output projection, does not change the identity at initialisation. Runs tuned
before the option existed had it on, and load with it on (config.load_run_config).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .attention import FrameContext


def sinusoidal_positions(n: int, dim: int, device, dtype) -> torch.Tensor:
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32)
                     * (-math.log(10000.0) / dim))
    pe = torch.zeros(n, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe.to(dtype)


class TemporalAttention(nn.Module):
    """LayerNorm -> multi-head attention over frames (per position) -> zero-init projection."""

    def __init__(self, dim: int, heads: int, ctx: FrameContext, positions: bool = False) -> None:
        super().__init__()
        self.positions = positions
        from diffusers.models.attention_processor import Attention, AttnProcessor2_0

        self.ctx = ctx
        self.norm = nn.LayerNorm(dim)
        self.attn = Attention(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False,
                              processor=AttnProcessor2_0())
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        f = self.ctx.num_frames
        bf, n, d = hidden_states.shape
        b = bf // f
        x = hidden_states.view(b, f, n, d).permute(0, 2, 1, 3).reshape(b * n, f, d)
        h = self.norm(x)
        if self.positions:
            h = h + sinusoidal_positions(f, d, h.device, h.dtype)
        h = self.attn(h)
        x = x + h
        return x.view(b, n, f, d).permute(0, 2, 1, 3).reshape(bf, n, d)


class TemporalBlock(nn.Module):
    """Wraps a diffusers BasicTransformerBlock: the block, then temporal attention.

    Accepts the block's positional call signature so diffusers' gradient checkpointing, which
    calls blocks positionally, works unchanged.
    """

    def __init__(self, block: nn.Module, ctx: FrameContext, positions: bool = False) -> None:
        super().__init__()
        self.block = block
        dim = block.norm1.normalized_shape[0] if hasattr(block.norm1, "normalized_shape") \
            else block.attn1.to_q.in_features
        heads = block.attn1.heads
        self.temporal = TemporalAttention(dim, heads, ctx, positions)

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None,
                encoder_attention_mask=None, timestep=None, cross_attention_kwargs=None,
                class_labels=None, added_cond_kwargs=None):
        h = self.block(hidden_states, attention_mask=attention_mask,
                       encoder_hidden_states=encoder_hidden_states,
                       encoder_attention_mask=encoder_attention_mask, timestep=timestep,
                       cross_attention_kwargs=cross_attention_kwargs, class_labels=class_labels)
        return self.temporal(h)
