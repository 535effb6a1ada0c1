"""Classical optical flow, computed once per video and shared by every flow metric.

Methods: OpenCV DIS with the MEDIUM preset (the metrics' default) and Farneback with
(pyr_scale 0.5, levels 3, winsize 15, iterations 3, poly_n 5, poly_sigma 1.2, flags 0).
Flows are float32 (H, W, 2) in pixels, (u, v) = (dx, dy): frame t at x matches frame t+1 at
x + w(x). ``forward[t]`` is the flow t -> t+1, ``backward[t]`` the flow t+1 -> t.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

METHODS = ("dis", "farneback")
FARNEBACK_PARAMS = (0.5, 3, 15, 3, 5, 1.2, 0)
_local = threading.local()


def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def _dis():
    import cv2

    # one DIS object per thread: calc() keeps internal buffers
    if getattr(_local, "dis", None) is None:
        _local.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return _local.dis


def compute_flow(a: np.ndarray, b: np.ndarray, method: str = "dis") -> np.ndarray:
    """Flow from RGB (or gray) frame ``a`` to frame ``b`` -> float32 (H, W, 2)."""
    import cv2

    ga = a if a.ndim == 2 else _gray(a)
    gb = b if b.ndim == 2 else _gray(b)
    if method == "dis":
        return _dis().calc(ga, gb, None)
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(ga, gb, None, *FARNEBACK_PARAMS)
    raise ValueError(f"unknown flow method {method!r}; use one of {METHODS}")


def _workers() -> int:
    return max(1, min(8, (os.cpu_count() or 1)))


class FlowCache:
    """Forward/backward flows of one video, computed lazily pair by pair and kept.

    ``append(frame)`` supports streaming; ``forward(t)`` / ``backward(t)`` compute on first use.
    Pairs are computed in a thread pool (OpenCV releases the GIL).
    """

    def __init__(self, frames=None, method: str = "dis", label: str = "generated") -> None:
        if method not in METHODS:
            raise ValueError(f"unknown flow method {method!r}; use one of {METHODS}")
        self.method = method
        self.label = label  # which video the flow came from ("generated" / "source")
        self._gray: list[np.ndarray] = []
        self._fw: dict[int, np.ndarray] = {}
        self._bw: dict[int, np.ndarray] = {}
        for f in (frames if frames is not None else []):
            self.append(f)

    @property
    def model(self) -> str:
        return "OpenCV DIS (MEDIUM preset)" if self.method == "dis" else \
            "OpenCV Farneback (0.5, 3, 15, 3, 5, 1.2, 0)"

    def __len__(self) -> int:
        return len(self._gray)

    @property
    def n_pairs(self) -> int:
        return max(0, len(self._gray) - 1)

    def append(self, frame: np.ndarray) -> None:
        self._gray.append(_gray(frame))

    def _pair(self, t: int, backward: bool) -> np.ndarray:
        a, b = self._gray[t], self._gray[t + 1]
        return compute_flow(b, a, self.method) if backward else compute_flow(a, b, self.method)

    def compute_all(self, backward: bool = True) -> None:
        """Fill every missing pair in parallel."""
        jobs = [(t, False) for t in range(self.n_pairs) if t not in self._fw]
        if backward:
            jobs += [(t, True) for t in range(self.n_pairs) if t not in self._bw]
        if not jobs:
            return
        if len(jobs) == 1:
            results = [self._pair(*jobs[0])]
        else:
            with ThreadPoolExecutor(_workers()) as ex:
                results = list(ex.map(lambda j: self._pair(*j), jobs))
        for (t, bw), flow in zip(jobs, results):
            (self._bw if bw else self._fw)[t] = flow

    def forward(self, t: int) -> np.ndarray:
        if t not in self._fw:
            self._fw[t] = self._pair(t, False)
        return self._fw[t]

    def backward(self, t: int) -> np.ndarray:
        if t not in self._bw:
            self._bw[t] = self._pair(t, True)
        return self._bw[t]


def compute_flows(frames: np.ndarray, method: str = "dis", backward: bool = True,
                  label: str = "generated") -> FlowCache:
    """All forward (and backward) flows of ``frames``, computed once, in parallel."""
    cache = FlowCache(frames, method, label)
    cache.compute_all(backward)
    return cache


def flow_magnitude(flow: np.ndarray) -> np.ndarray:
    return np.sqrt((flow.astype(np.float64) ** 2).sum(-1))
