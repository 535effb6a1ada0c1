"""Incremental evaluation for the UI: frames arrive one at a time, values stream back.

Each ``add(frame)`` embeds only the new frame, computes only the new flow pair(s) and the new
per-pair values, then re-scores from the shared features with the same registry functions the
batch ``evaluate`` uses, so a finished stream equals a batch evaluation of the same frames.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

import numpy as np

from .context import VideoContext
from .registry import resolve_names, run_metric, select
from .result import MetricResult


class MetricStream:
    def __init__(self, metrics: Optional[Iterable[str] | str] = None, **context_kwargs) -> None:
        """``context_kwargs`` go to :class:`VideoContext` (prompt, source, image, clip, dino,
        flow_method, warp_flow, device, cache, ...)."""
        self.ctx = VideoContext(None, **context_kwargs)
        self.names = select(self.ctx, resolve_names(metrics))
        self._last: dict[str, MetricResult] = {}

    def add(self, frame: np.ndarray) -> dict[str, list[float]]:
        """Append one uint8 (H, W, 3) frame -> {metric: per-frame values so far}, one value per
        frame (NaN where undefined yet, e.g. a pair metric's first frame). Metrics skipped for
        good (missing input or weights) are left out; see :meth:`results` for their reasons."""
        self.ctx.append(frame)
        self._last = {n: run_metric(self.ctx, n) for n in self.names}
        out = {}
        for n, r in self._last.items():
            if not r.skipped:
                out[n] = list(r.per_frame)
            elif "min_frames" in r.extra:  # only too early in the stream
                out[n] = [math.nan] * self.ctx.n
        return out

    def summary(self) -> dict[str, float]:
        """Per-video values of the frames so far (finite ones only)."""
        return {n: r.value for n, r in self._last.items()
                if not r.skipped and math.isfinite(r.value)}

    def results(self) -> dict[str, MetricResult]:
        return dict(self._last)
