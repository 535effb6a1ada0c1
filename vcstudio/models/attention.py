"""Sparse-causal self-attention as a diffusers attention processor (Tune-A-Video, eq. in Sec. 4.1).

Frames are folded into the batch: hidden states arrive as (B*F, N, D). Each frame's queries attend
to the keys/values of the FIRST frame and of the PREVIOUS frame (frame 0's previous is itself),
so a one-frame clip attends to a duplicated key set, which leaves softmax attention unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class FrameContext:
    """Shared by the processors of one inflated U-Net: how many frames the batch folds."""

    num_frames: int = 1


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.view(b, n, heads, d // heads).transpose(1, 2)


class SparseCausalAttnProcessor:
    """attn1 processor: K, V from frames [0, f-1] for frame f; attention through torch SDPA."""

    def __init__(self, ctx: FrameContext) -> None:
        self.ctx = ctx

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs):
        if hidden_states.ndim != 3:
            raise ValueError("SparseCausalAttnProcessor expects (batch*frames, tokens, dim)")
        residual = hidden_states
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        bf, n, _ = hidden_states.shape
        f = self.ctx.num_frames
        b = bf // f
        q = attn.to_q(hidden_states)
        k = attn.to_k(hidden_states)
        v = attn.to_v(hidden_states)
        # every frame attends to [first, previous]; frame 0's previous is itself
        prev = torch.clamp(torch.arange(f, device=k.device) - 1, min=0)
        first = torch.zeros(f, dtype=torch.long, device=k.device)

        def sparse(x: torch.Tensor) -> torch.Tensor:
            x = x.view(b, f, n, -1)
            return torch.cat([x[:, first], x[:, prev]], dim=2).view(bf, 2 * n, -1)

        k, v = sparse(k), sparse(v)
        q, k, v = (_heads(t, attn.heads) for t in (q, k, v))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(bf, n, -1).to(q.dtype)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor
