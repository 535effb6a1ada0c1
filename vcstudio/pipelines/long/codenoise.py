"""Temporal co-denoising of a long latent video (consistency-tuning paper, eqs. 18-19; Gen-L-Video).

:class:`CoDenoiser` is a ``predict(latents, t)`` hook for
:func:`vcstudio.pipelines.edit.sample.denoise`.
At each step it cuts the L-frame latents into the layout's windows (eq. 18, P_i(v_t)), runs the
U-Net on ``batch_windows`` windows per call, each with its own prompt embedding h^i and
classifier-free guidance, and accumulates the weighted window predictions in place
(:class:`~vcstudio.pipelines.long.windows.WindowAccumulator`): every frame gets the
per-frame-normalised weighted average of the windows that contain it (eq. 19).

Why fusing the model output is eq. 19: all windows see the same x_t on the frames they share, and
a DDIM step is affine in the predicted noise, x_{t-1} = a_t x_t + b_t eps. With weights that sum to
1 per frame, sum_i W_i (a_t x_t + b_t eps_i) = a_t x_t + b_t sum_i W_i eps_i, so stepping the fused
prediction equals fusing the per-window x_{t-1} (the minimiser of eq. 19). With eta > 0 the
sampler's noise is drawn once for the whole video, so this stays exact.

The same co-denoiser drives Wan2.1's flow sampler (pipelines/flow/long.py): ``model`` is then the
backbone's ``predict(x, sigma, embeds)``, the windows are in latent frames, and the fused output
is the velocity (an Euler step is affine in it, so the argument above holds as it is).

Memory: one latent-sized accumulator plus one batch of window outputs; no list of all windows.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ...config import guided_passes
from ...errors import InputError
from .windows import WindowAccumulator, WindowLayout, window_slice


def guided_windows(model, x: torch.Tensor, t, cond: torch.Tensor, uncond: Optional[torch.Tensor],
                   guidance: float) -> torch.Tensor:
    """CFG over a batch of windows with one prompt embedding per window.

    ``x``: (n, C, K, h, w); ``cond``: (n, 77, D); ``uncond``: (1, 77, D) or None.
    Returns eps_u + g (eps_c - eps_u), both branches in one U-Net call.
    """
    if uncond is None or guided_passes(guidance) == 1:
        return model(x, t, cond).float()
    n = x.shape[0]
    e = torch.cat([uncond.expand(n, -1, -1).to(cond.dtype), cond])
    u, c = model(torch.cat([x, x]), t, e).float().chunk(2)
    return u + guidance * (c - u)


class CoDenoiser:
    """``predict(latents, t)`` hook: window-wise guided prediction fused per frame (eq. 19).

    ``window_cond``: (n_windows, 77, D), one embedding per window (see windows.window_prompts /
    mix_embeddings). ``batch_windows``: windows per U-Net call; 0 = all windows at once (halved
    whenever the device runs out of memory, and the size that worked is kept).
    """

    def __init__(self, model, layout: WindowLayout, window_cond: torch.Tensor,
                 uncond: Optional[torch.Tensor], guidance: float, batch_windows: int = 0,
                 on_batch: Optional[Callable[[list[int]], None]] = None, control=None) -> None:
        if window_cond.shape[0] != layout.n_windows:
            raise InputError(f"{window_cond.shape[0]} window prompts for {layout.n_windows} "
                             "windows; build them with window_prompts/mix_embeddings.")
        self.model = model
        self.layout = layout
        self.window_cond = window_cond
        self.uncond = uncond
        self.guidance = float(guidance)
        self.batch_windows = int(batch_windows) if batch_windows and batch_windows > 0 \
            else layout.n_windows
        self.on_batch = on_batch  # called with each batch's window indices (progress, tests)
        # structure control over the whole video (control.models.StructureControl, attached to
        # the model by the caller): each window takes its own frames' conditions
        self.control = control
        self.calls = 0

    def _batch(self, latents: torch.Tensor, t, idx: list[int]) -> torch.Tensor:
        b = latents.shape[0]
        x = window_slice(latents, self.layout, idx)  # (n, B, C, K, h, w)
        x = x.reshape(len(idx) * b, *x.shape[2:])
        cond = self.window_cond[idx].repeat_interleave(b, dim=0)
        if self.control is not None:  # rows are window-major, then the batch: as x above
            k = self.layout.window
            frames = torch.tensor([[self.layout.starts[i] + j for j in range(k)] for i in idx])
            self.control.window_index = frames.repeat_interleave(b, dim=0)
        return guided_windows(self.model, x, t, cond, self.uncond, self.guidance)

    def __call__(self, latents: torch.Tensor, t) -> torch.Tensor:
        if latents.shape[2] != self.layout.length:
            raise ValueError(f"latents have {latents.shape[2]} frames, the layout "
                             f"{self.layout.length}")
        b = latents.shape[0]
        acc = WindowAccumulator(self.layout, latents, frame_dim=2)
        pending = list(range(self.layout.n_windows))
        while pending:
            idx, rest = pending[:self.batch_windows], pending[self.batch_windows:]
            try:
                out = self._batch(latents, t, idx)
            except torch.OutOfMemoryError:
                if len(idx) == 1:
                    raise
                self.batch_windows = max(1, len(idx) // 2)  # keep the size that fits
                if latents.is_cuda:
                    torch.cuda.empty_cache()
                continue
            self.calls += 1
            if self.on_batch is not None:
                self.on_batch(idx)
            for j, i in enumerate(idx):
                acc.add(i, out[j * b:(j + 1) * b])
            del out  # only one batch of window outputs is alive at a time
            pending = rest
        return acc.result()

