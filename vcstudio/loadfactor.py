"""How fast this machine runs this process's torch work right now: the one load-factor reader.

A speed measured while the machine was idle does not hold while other work shares its CPUs (and
the other way round). The estimates therefore record, with every measured speed, the machine's
**rate** at that time, and scale the measured seconds by

    load factor = rate when the speed was measured / rate now

before adding them up (``calibration.load_factor``; CPU only: a GPU's speed does not follow the
host's load, its rate is recorded as 0 = "does not apply" and its factor is 1).

The rate is the number of small convolution + matrix-multiply rounds per second this process
completes in a short window (:data:`WINDOW_S`), with torch's current thread count: the share of
the CPU the process gets, measured the way a job feels it. It follows what ``os.getloadavg() /
os.cpu_count()`` cannot see: the priority (nice) of the other work, and that torch's parallel
regions wait for their slowest thread, so two threads on a busy two-core machine lose far more
than the load average says (measured here: a load average of 9 on 2 CPUs made a 2-thread torch
loop ~3x slower than a 1-thread one). The load average is shown beside the estimate only as
context (:func:`loadavg_text`).

A reading costs :data:`WINDOW_S` of one core and is reused for :data:`CACHE_S` seconds (per thread
count), so estimates asked for on every slider change stay instant.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable, Optional

WINDOW_S = 0.5  # how long one reading runs
CACHE_S = 10.0  # a reading is reused this long
_LOCK = threading.Lock()
_CACHE: dict[int, tuple[float, float]] = {}  # threads -> (monotonic time, rate)


def _threads() -> int:
    try:
        import torch

        return int(torch.get_num_threads())
    except Exception:  # no torch: the estimates still work, the factor stays 1
        return 0


def _measure(window_s: float, clock: Callable[[], float]) -> float:
    """Rounds per second of a fixed small torch workload over ``window_s`` seconds."""
    import torch

    with torch.no_grad():
        x = torch.ones(2, 16, 32, 32)
        w = torch.full((16, 16, 3, 3), 0.01)
        m = torch.full((128, 128), 0.01)
        torch.nn.functional.conv2d(x, w, padding=1)  # allocate outside the window
        n, t0 = 0, clock()
        while True:
            torch.nn.functional.conv2d(x, w, padding=1)
            m = m @ m * 0.5
            n += 1
            dt = clock() - t0
            if dt >= window_s and n >= 3:
                return n / dt


def cpu_rate(window_s: float = WINDOW_S, fresh: bool = False,
             clock: Callable[[], float] = time.perf_counter) -> float:
    """This process's torch rate now (rounds/s; 0.0 where torch is missing). Reused for
    :data:`CACHE_S` seconds unless ``fresh``."""
    threads = _threads()
    if threads <= 0:
        return 0.0
    now = time.monotonic()
    with _LOCK:
        hit = _CACHE.get(threads)
        if hit and not fresh and now - hit[0] < CACHE_S:
            return hit[1]
    rate = _measure(window_s, clock)
    with _LOCK:
        _CACHE[threads] = (time.monotonic(), rate)
    return rate


def rate(device="cpu", fresh: bool = False) -> float:
    """The rate a speed measured on ``device`` is recorded with and scaled by: the CPU's
    (:func:`cpu_rate`) on the CPU; 0.0 ("does not apply", factor 1) on a GPU or MPS."""
    if str(device).split(":")[0] != "cpu":
        return 0.0
    return cpu_rate(fresh=fresh)


def loadavg_text() -> Optional[str]:
    """"load 9.4 on 2 CPUs" (the 1-minute load average, for context), None where unknown."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return None
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return f"load {load:.1f} on {cpus} CPU{'s' * (cpus != 1)}"


def forget() -> None:
    """Drop the cached readings (tests; a job that wants the next reading fresh)."""
    with _LOCK:
        _CACHE.clear()
