"""A TeaCache-style step cache for a Wan transformer: reuse the blocks' residual on steps whose
input barely changed.

TeaCache (Liu et al. 2024, "Timestep Embedding Tells: It's Time to Cache for Video Diffusion
Model") observes that a DiT's output changes across denoising steps about as much as its
*timestep-embedding-modulated input* does, which is cheap to compute before any block runs. Per
step it measures the relative L1 change of that indicator,

    d_t = mean |m_t - m_{t-1}| / mean |m_{t-1}|,   m_t = LN(h_t) * (1 + scale_t) + shift_t

(``LN``, ``scale``, ``shift``: the first block's self-attention input norm and its
timestep-dependent modulation), maps it through a polynomial fitted per model (``rescale``;
the identity by default: the paper's fits are for specific checkpoints and vcstudio ships
none), and accumulates it. While the sum stays below ``threshold`` the step skips every block
and adds the residual (last block's output minus first block's input) kept from the last
computed step; otherwise it runs the blocks, keeps their residual and resets the sum.

What vcstudio adds, for reward tuning: a call with autograd enabled (the truncated-backprop
steps) always runs the blocks, so gradients never pass through a reused residual; the first and
the last ``keep_last`` steps of a sample always compute; each classifier-free-guidance branch
(``cond`` / ``uncond``) keeps its own state. With ``threshold = 0`` nothing is ever skipped
(the sum is never below 0), so the samples equal the uncached ones exactly.

The cache wraps the blocks' ``forward`` in place (no copies, state-dict keys unchanged, LoRA
layers inside the blocks untouched); :meth:`StepCache.remove` restores them. The caller says
which step and branch each transformer call belongs to with :meth:`StepCache.context`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch


@dataclass
class _Branch:
    prev: Optional[torch.Tensor] = None  # last step's indicator m_{t-1}
    residual: Optional[torch.Tensor] = None  # last computed step's blocks residual
    acc: float = 0.0


@dataclass
class CacheStats:
    computed: int = 0
    skipped: int = 0
    distances: list = field(default_factory=list)  # per call: the rescaled d_t (None = first)

    @property
    def skip_share(self) -> float:
        n = self.computed + self.skipped
        return self.skipped / n if n else 0.0


class StepCache:
    """Residual reuse across denoising steps for ``transformer.blocks`` (module docstring)."""

    def __init__(self, transformer, threshold: float = 0.1,
                 rescale: Optional[Sequence[float]] = None, keep_last: int = 1) -> None:
        if threshold < 0:
            raise ValueError("the step cache threshold must be >= 0")
        self.transformer = transformer
        self.blocks = list(transformer.blocks)
        self.threshold = float(threshold)
        self.rescale = tuple(rescale) if rescale else None  # polynomial, highest power first
        self.keep_last = int(keep_last)
        self.stats = CacheStats()
        self._branches: dict[str, _Branch] = {}
        self._ctx: Optional[tuple[str, int, int]] = None  # (branch, step, total)
        self._skip = False
        self._x_in: Optional[torch.Tensor] = None
        self._installed = False
        self.install()

    # ---- life cycle
    def install(self) -> None:
        if self._installed:
            return
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            orig = block.forward

            def fwd(hidden_states, encoder_hidden_states, temb, rotary_emb, *a,
                    _i=i, _orig=orig, **kw):
                return self._block(_i, last, _orig, hidden_states, encoder_hidden_states, temb,
                                   rotary_emb, *a, **kw)

            block.forward = fwd
        self._installed = True

    def remove(self) -> None:
        for block in self.blocks:
            if "forward" in block.__dict__:
                del block.forward
        self._installed = False

    def reset(self) -> None:
        """Forget every branch's state (a new sample starts)."""
        self._branches.clear()

    @contextlib.contextmanager
    def context(self, branch: str, step: int, total: int):
        """Transformer calls inside belong to denoising ``step`` (0-based) of ``total``, CFG
        ``branch``. Calls outside any context run uncached."""
        self._ctx = (branch, int(step), int(total))
        try:
            yield
        finally:
            self._ctx = None

    # ---- the decision
    def indicator(self, hidden_states: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """The first block's modulated self-attention input (float32, detached)."""
        b0 = self.blocks[0]
        with torch.no_grad():
            if temb.ndim == 4:  # per-token modulation (Wan2.2 TI2V)
                mod = b0.scale_shift_table.unsqueeze(0) + temb.float()
                shift, scale = mod[:, :, 0], mod[:, :, 1]
            else:
                mod = b0.scale_shift_table + temb.float()
                shift, scale = mod[:, 0:1], mod[:, 1:2]
            return b0.norm1(hidden_states.float()) * (1 + scale) + shift

    def _rescaled(self, d: float) -> float:
        if not self.rescale:
            return d
        out = 0.0
        for c in self.rescale:
            out = out * d + c
        return abs(out)

    def _decide(self, hidden_states, temb) -> bool:
        """True = skip the blocks this call."""
        branch, step, total = self._ctx
        st = self._branches.setdefault(branch, _Branch())
        m = self.indicator(hidden_states, temb)
        forced = (torch.is_grad_enabled() or st.prev is None or st.residual is None
                  or step == 0 or step >= total - self.keep_last
                  or st.residual.shape != hidden_states.shape)
        d = None
        if st.prev is not None and st.prev.shape == m.shape:
            d = self._rescaled(float((m - st.prev).abs().mean() / st.prev.abs().mean()
                                     .clamp_min(1e-12)))
        st.prev = m
        self.stats.distances.append(d)
        if not forced and d is not None and st.acc + d < self.threshold:
            st.acc += d
            self.stats.skipped += 1
            return True
        st.acc = 0.0
        self.stats.computed += 1
        return False

    # ---- the wrapped block
    def _block(self, i: int, last: int, orig, hidden_states, encoder_hidden_states, temb,
               rotary_emb, *a, **kw):
        if self._ctx is None:  # an uncached call (outside any denoising context)
            return orig(hidden_states, encoder_hidden_states, temb, rotary_emb, *a, **kw)
        if i == 0:
            self._skip = self._decide(hidden_states, temb)
            self._x_in = hidden_states
        st = self._branches[self._ctx[0]]
        if self._skip:
            if i == last:
                return hidden_states + st.residual.to(hidden_states.dtype)
            return hidden_states
        out = orig(hidden_states, encoder_hidden_states, temb, rotary_emb, *a, **kw)
        if i == last:
            st.residual = (out - self._x_in).detach()
            self._x_in = None
        return out
