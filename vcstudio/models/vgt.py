"""APLA's Video Generation Transformer (APLA paper, Fig. 4, eqs. 7-15): VGT-Pure and VGT-Hyper.

The VGT reads the noisy latents z_t and the timestep t and outputs a perturbation of the latent
shape that is ADDED to the U-Net's noise prediction (eq. 4, see ``VideoDenoiser.perturb``).

Data flow (B batch, C latent channels, F frames, P patch, N = (H/P)(W/P) patches per frame):

1. patchify each frame -> N tokens of C*P*P values -> linear to width D; + timestep embedding;
2. spatial transformer decoder (eqs. 7, 9), per frame, over [cls_s, patch_1..patch_N] + p with
   masked multi-head self-attention: patch k attends to patches 1..k (raster order) and the class
   token attends to all patches (it is the GPT-style "last" token that summarises the frame);
3. temporal transformer decoder (eqs. 8, 10, 11) over [cls_t, D z_cls_s^1 .. D z_cls_s^F] + p,
   causal over frames: frame f sees frames 1..f only (and the start token cls_t);
4. VGT-Pure: y = z_s^{C,L} (.) z_t^{C,M}, the Hadamard product of every spatial token of frame f
   with the temporal output of frame f (eq. 12); VGT-Hyper: y* = M [z_s ; z_t], a 3-D
   convolution block over (frames, rows, cols) of the token grid (eq. 14), causal in time;
5. MLP back to C*P*P values per patch (eqs. 13, 15), unpatchify to (B, C, F, H, W).

The MLP's last layer starts at zero, so a fresh VGT outputs exactly zero and changes nothing.
With the masks on, the output for frame f depends on frames 1..f only; ``mask=False`` gives the
paper's "-EN" (encoder, no mask) variants of Table 1 / Fig. 5a.

Positional codes are fixed sinusoids (2-D for patches, 1-D for frames): the paper's "p" is not
specified further, and fixed codes let one VGT run at any frame count and resolution.

Sizes: ``VGT_PRESETS["paper"]`` (D=768, 4 spatial + 4 temporal layers, MLP ratio 4, patch 2)
comes to 60.51M parameters for VGT-Pure (paper: 60.362M, +0.25%) and 97.09M for VGT-Hyper
(paper: 97.136M, -0.05%); see :func:`preset_param_counts`. The default is much smaller
(D=256, 2 + 2 layers: 3.64M / 7.71M).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .temporal import sinusoidal_positions


@dataclass(frozen=True)
class VGTSpec:
    """Shape of a VGT; ``kind`` is "pure" or "hyper"."""

    kind: str = "pure"
    channels: int = 4
    dim: int = 256
    spatial_layers: int = 2
    temporal_layers: int = 2
    heads: int = 4
    patch: int = 2
    mlp_ratio: float = 4.0
    mask: bool = True
    time_freq_dim: int = 256


# Width/depth the paper's parameter counts imply (Table 1): with D=768, MLP ratio 4 and 8
# transformer blocks, VGT-Pure is 60.51M (paper 60.362M); the VGT-Hyper conv block below adds
# 36.58M (paper: +36.774M), 97.09M in all (paper 97.136M).
VGT_PRESETS = {
    "small": dict(dim=256, spatial_layers=2, temporal_layers=2, heads=4, patch=2),
    "paper": dict(dim=768, spatial_layers=4, temporal_layers=4, heads=12, patch=2),
}


class MaskedSelfAttention(nn.Module):
    """Multi-head self-attention (SDPA) with a boolean mask (True = may attend)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"VGT width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        n, s, d = x.shape
        q, k, v = self.qkv(x).view(n, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(h.transpose(1, 2).reshape(n, s, d))


class DecoderBlock(nn.Module):
    """Pre-LN transformer decoder block: z + MMSA(LN(z)) (eqs. 7, 8), then z + MLP(LN(z))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MaskedSelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class CausalConv3dBlock(nn.Module):
    """VGT-Hyper's convolution block M (eq. 14) on the (frames, rows, cols) token grid.

    Conv3d 3x3x3 over [spatial tokens ; temporal output] (2D -> D channels), GELU, then a
    point-wise MLP (D -> 4D -> D) with a residual. The time axis is padded on the past side
    only, so frame f still sees frames 1..f only.
    """

    def __init__(self, dim: int, mlp_ratio: float, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.conv = nn.Conv3d(2 * dim, dim, kernel_size=3, padding=(0, 1, 1))
        self.act = nn.GELU()
        hidden = int(dim * mlp_ratio)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """grid (B, 2D, F, h, w) -> (B, F, h*w, D)."""
        pad = (0, 0, 0, 0, 2, 0) if self.causal else (0, 0, 0, 0, 1, 1)
        y = self.act(self.conv(F.pad(grid, pad)))  # (B, D, F, h, w)
        b, d, f, h, w = y.shape
        y = y.permute(0, 2, 3, 4, 1).reshape(b, f, h * w, d)
        return y + self.mlp(self.norm(y))


@functools.lru_cache(maxsize=32)  # the same few shapes every step; read-only
def spatial_mask(n_patches: int, device) -> torch.Tensor:
    """(1+N, 1+N) bool: cls (index 0) sees every patch; patch k sees patches 1..k (raster)."""
    m = torch.zeros(n_patches + 1, n_patches + 1, dtype=torch.bool, device=device)
    m[0, 1:] = True
    m[1:, 1:] = torch.ones(n_patches, n_patches, dtype=torch.bool, device=device).tril()
    m[0, 0] = True  # a row must attend somewhere; cls also sees itself
    return m


@functools.lru_cache(maxsize=32)  # the same few shapes every step; read-only
def temporal_mask(n_frames: int, device) -> torch.Tensor:
    """(1+F, 1+F) bool, causal: the start token cls_t, then frame f sees cls_t and frames <= f."""
    return torch.ones(n_frames + 1, n_frames + 1, dtype=torch.bool, device=device).tril()


@functools.lru_cache(maxsize=32)  # the same few shapes every step; read-only
def grid_positions(h: int, w: int, dim: int, device, dtype) -> torch.Tensor:
    """(h*w, dim) fixed 2-D sinusoid: half the channels code the row, half the column."""
    half = dim // 2
    rows = sinusoidal_positions(h, half, device, dtype)
    cols = sinusoidal_positions(w, dim - half, device, dtype)
    return torch.cat([rows[:, None, :].expand(h, w, half),
                      cols[None, :, :].expand(h, w, dim - half)], dim=-1).reshape(h * w, dim)


class VideoGenerationTransformer(nn.Module):
    """VGT-Pure (``kind="pure"``) or VGT-Hyper (``kind="hyper"``): (z_t, t) -> perturbation."""

    def __init__(self, spec: VGTSpec) -> None:
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        if spec.kind not in ("pure", "hyper"):
            raise ValueError(f"unknown VGT kind {spec.kind!r} (pure or hyper)")
        self.spec = spec
        d, pp = spec.dim, spec.channels * spec.patch ** 2
        self.patch_embed = nn.Linear(pp, d)
        self.time_proj = Timesteps(spec.time_freq_dim, flip_sin_to_cos=True,
                                   downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(spec.time_freq_dim, d)
        self.cls_s = nn.Parameter(torch.randn(d) * 0.02)
        self.cls_t = nn.Parameter(torch.randn(d) * 0.02)
        self.spatial = nn.ModuleList(DecoderBlock(d, spec.heads, spec.mlp_ratio)
                                     for _ in range(spec.spatial_layers))
        self.norm_s = nn.LayerNorm(d)
        self.to_temporal = nn.Linear(d, d)  # "D" of eq. 10
        self.temporal = nn.ModuleList(DecoderBlock(d, spec.heads, spec.mlp_ratio)
                                      for _ in range(spec.temporal_layers))
        self.norm_t = nn.LayerNorm(d)
        self.hyper = CausalConv3dBlock(d, spec.mlp_ratio, spec.mask) if spec.kind == "hyper" \
            else None
        hidden = int(d * spec.mlp_ratio)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden), nn.GELU(),
                                  nn.Linear(hidden, pp))
        nn.init.zeros_(self.head[-1].weight)  # a fresh VGT adds exactly zero
        nn.init.zeros_(self.head[-1].bias)

    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, sample: torch.Tensor, timestep) -> torch.Tensor:
        """sample (B, C, F, H, W), timestep scalar or (B,) -> (B, C, F, H, W)."""
        s = self.spec
        b, c, f, hh, ww = sample.shape
        p = s.patch
        ph, pw = (-hh) % p, (-ww) % p  # pad to whole patches, crop at the end
        x = F.pad(sample, (0, pw, 0, ph)) if ph or pw else sample
        h, w = x.shape[-2] // p, x.shape[-1] // p
        n = h * w
        # patchify: (B, C, F, h*p, w*p) -> (B, F, N, C*p*p)
        tok = x.reshape(b, c, f, h, p, w, p).permute(0, 2, 3, 5, 1, 4, 6).reshape(b, f, n, -1)
        z = self.patch_embed(tok.to(self.patch_embed.weight.dtype))
        t = torch.as_tensor(timestep, device=sample.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(b)
        temb = self.time_embed(self.time_proj(t).to(z.dtype))  # (B, D)
        d = z.shape[-1]
        z = z + grid_positions(h, w, d, z.device, z.dtype) + temb[:, None, None, :]
        cls = (self.cls_s + temb)[:, None, None, :].expand(b, f, 1, d)
        zs = torch.cat([cls, z], dim=2).reshape(b * f, n + 1, d)  # (eq. 9), per frame
        mask = spatial_mask(n, z.device) if s.mask else None
        for blk in self.spatial:
            zs = blk(zs, mask)
        zs = self.norm_s(zs).reshape(b, f, n + 1, d)
        cls_out, tokens = zs[:, :, 0], zs[:, :, 1:]  # z_cls_s^L, z_s^{C,L}
        zt = self.to_temporal(cls_out) + sinusoidal_positions(f, d, z.device, z.dtype) \
            + temb[:, None, :]
        zt = torch.cat([(self.cls_t + temb)[:, None, :], zt], dim=1)  # (eq. 10)
        tmask = temporal_mask(f, z.device) if s.mask else None
        for blk in self.temporal:
            zt = blk(zt, tmask)
        zt = self.norm_t(zt)[:, 1:]  # z_t^{C,M}: drop cls_t (eq. 11)
        if self.hyper is None:
            y = tokens * zt[:, :, None, :]  # eq. 12
        else:
            grid = torch.cat([tokens, zt[:, :, None, :].expand(b, f, n, d)], dim=-1)
            y = self.hyper(grid.reshape(b, f, h, w, 2 * d).permute(0, 4, 1, 2, 3))  # eq. 14
        out = self.head(y)  # eqs. 13, 15: (B, F, N, C*p*p)
        out = out.reshape(b, f, h, w, c, p, p).permute(0, 4, 1, 2, 5, 3, 6)
        out = out.reshape(b, c, f, h * p, w * p)
        return out[..., :hh, :ww].to(sample.dtype)


def build_vgt(kind: str, channels: int = 4, preset: str = "", **overrides) -> \
        VideoGenerationTransformer:
    """A VGT from a preset name ("small", "paper" or "" = the spec defaults) and overrides."""
    if preset and preset not in VGT_PRESETS:
        raise ValueError(f"unknown VGT preset {preset!r}; choose from {sorted(VGT_PRESETS)}")
    kw = dict(VGT_PRESETS.get(preset, {}))
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return VideoGenerationTransformer(VGTSpec(kind=kind, channels=channels, **kw))


def preset_param_counts(preset: str = "paper", channels: int = 4) -> dict[str, int]:
    """Parameter counts of VGT-Pure and VGT-Hyper for a preset, built on the meta device."""
    with torch.device("meta"):
        return {k: build_vgt(k, channels, preset).param_count() for k in ("pure", "hyper")}
