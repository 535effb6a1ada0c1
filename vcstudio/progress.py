"""One progress protocol for every job: the CLI feeds it to tqdm, the UI to gr.Progress.

A job calls ``progress(Event(...))``; a cancel token is polled between steps.
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from .errors import CancelledError


@dataclass
class Event:
    step: int
    total: int
    message: str = ""
    # uint8 (F, H, W, 3): a tuning preview (stage "tune"), a low-res strip of the predicted x0
    # while sampling (stage "sample"), or the frames decoded so far (stage "decode")
    preview: Optional[np.ndarray] = None
    metrics: dict[str, float] = field(default_factory=dict)
    stage: str = ""
    # files the job has finished writing, by name ({"mp4": path}), so a page can show them
    # before the job ends (an edit's video while its frames are still being scored)
    outputs: dict[str, str] = field(default_factory=dict)
    # seconds the job expects to still need (measured step times; tune), else None
    eta: Optional[float] = None
    # streamed per-frame scores: ``metrics`` holds frame ``frame``'s values (stage "frame-metrics")
    frame: Optional[int] = None


ProgressFn = Callable[[Event], Any]


def null_progress(event: Event) -> None:  # noqa: D401 - the do-nothing callback
    return None


class StepTimer:
    """The ETA of a loop of ``total`` like steps, re-estimated from the steps timed so far
    (the first step, which warms kernels and allocators up, is left out once three are
    timed): what a sampling loop puts in its events' ``eta``."""

    def __init__(self, total: int, clock: Callable[[], float] = time.perf_counter) -> None:
        self.total, self.clock = int(total), clock
        self.last = clock()
        self.times: list[float] = []

    def tick(self) -> float:
        """One step done -> seconds the remaining steps should take."""
        now = self.clock()
        self.times.append(now - self.last)
        self.last = now
        ts = self.times[1:] if len(self.times) >= 3 else self.times
        return max(0, self.total - len(self.times)) * sum(ts) / len(ts)


class CancelToken:
    """Thread-safe flag a UI Stop button sets; jobs call ``check()`` between steps."""

    def __init__(self) -> None:
        self._ev = threading.Event()

    def cancel(self) -> None:
        self._ev.set()

    @property
    def cancelled(self) -> bool:
        return self._ev.is_set()

    def check(self) -> None:
        if self._ev.is_set():
            raise CancelledError("Cancelled by the user.")


class TqdmProgress:
    """Progress callback that drives one tqdm bar per stage (CLI)."""

    def __init__(self, stream=None) -> None:
        self._bar = None
        self._stage = None
        self._stream = stream
        self._t0 = time.time()

    def __call__(self, ev: Event) -> None:
        from tqdm.auto import tqdm

        if ev.stage == "estimate":  # the job's ``Estimate: ...`` line, printed as it is
            self.close()
            print(ev.message, file=self._stream if self._stream is not None else sys.stderr,
                  flush=True)
            return
        if self._bar is None or ev.stage != self._stage or ev.total != self._bar.total:
            self.close()
            # a bar opened mid-stage (a resumed run, or the stage's first event after k steps)
            # starts at that step, so its rate counts only steps it saw happen
            self._bar = tqdm(total=ev.total, initial=ev.step, desc=ev.stage or "working",
                             file=self._stream, dynamic_ncols=True)
            self._stage = ev.stage
        self._bar.n = ev.step
        from .calibration import format_seconds

        if ev.metrics:
            post = {k: f"{v:.4g}" for k, v in ev.metrics.items()}
            if ev.eta is not None:  # the job's own ETA (counts previews and inversion to come)
                post["eta"] = format_seconds(ev.eta)
            self._bar.set_postfix(post, refresh=False)
        elif ev.message:
            eta = f", ETA {format_seconds(ev.eta)}" if ev.eta is not None and \
                "ETA" not in ev.message else ""
            self._bar.set_postfix_str(ev.message[-70:] + eta, refresh=False)
        self._bar.refresh()
        if ev.step >= ev.total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
