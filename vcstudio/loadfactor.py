"""How busy the CPU is for this process's torch work: the one load-factor reader.

A speed measured while the machine was idle does not hold while other work shares its CPUs (and
the other way round). Every measured speed is therefore recorded with the machine's **rate** at
the time (vcstudio/calibration.py), and read back scaled by

    load factor = rate when the speed was measured / rate now     (calibration.load_factor)

The rate is ``1 / busy`` with

    busy = max(1, (others + threads) / cpus)

``cpus`` = the CPUs this process may run on (its affinity, capped by a container's cpu.max
quota), ``threads`` = torch's intra-op threads (what a job runs), ``others`` = how many threads
of everything else are runnable: the kernel's count of runnable threads (``/proc/loadavg``'s
"running" field) less this process's own runnable threads, sampled every :data:`PERIOD_S`
seconds by a background thread (started on first use) and averaged: over the last
:data:`TAU_S` seconds for "now" (an exponentially weighted mean), over a job's own run for the
rate its speed is recorded with (:class:`Window`). In words: each runnable thread gets a fair
share of the CPUs, so a job's threads run ``busy`` times slower than on an idle machine.

Why not the 1-minute load average: it lags (4 threads started a minute before showed as 2.5), and
it counts this process's own job; and not a timed probe of the CPU: one short timing varied 4x
from one reading to the next on this 2-core machine at load 10. Before the sampler has a few
seconds of samples the load average less this process's share stands in. CPU only: a GPU's speed
does not follow the host's load, its rate is 0 ("does not apply", factor 1); so is a machine
without ``/proc/loadavg``. The fair-share model ignores the other work's priority (nice): the
estimates give a range, and a running job re-estimates from its own steps.
"""
from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import Callable, Optional

PERIOD_S = 0.5  # seconds between samples of the run queue
TAU_S = 15.0  # "now" = the samples' exponentially weighted mean over about this long
MIN_SAMPLES = 6  # fewer: the load average stands in
LOADAVG = Path("/proc/loadavg")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cpus() -> int:
    """The CPUs this process may run on: its affinity, capped by a cgroup cpu.max quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            n = max(1, min(n, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def threads() -> int:
    """torch's intra-op threads (1 where torch is not there)."""
    try:
        import torch

        return max(1, int(torch.get_num_threads()))
    except Exception:  # noqa: BLE001 - no torch: a single thread
        return 1


def _own_running(exclude_caller: bool = False) -> int:
    """This process's threads that are running or runnable now."""
    me = str(threading.get_native_id()) if exclude_caller else None
    n = 0
    try:
        for task in Path("/proc/self/task").iterdir():
            if task.name == me:
                continue
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue
            if stat[stat.rindex(")") + 2:].startswith("R"):
                n += 1
    except OSError:
        return 0
    return n


def others_sample() -> Optional[float]:
    """Runnable threads of everything else right now: the kernel's runnable count (which counts
    the reading thread) less this process's runnable threads (the reading one included);
    None without /proc/loadavg."""
    try:
        running = int(LOADAVG.read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return float(max(0, running - _own_running()))


class _Sampler:
    """Samples :func:`others_sample` every :data:`PERIOD_S` seconds on a daemon thread: a running
    total (for :class:`Window`) and an exponentially weighted mean (for "now")."""

    def __init__(self, sample: Callable[[], Optional[float]] = others_sample) -> None:
        self.sample = sample
        self.total, self.n, self.ewma = 0.0, 0, None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name="vcstudio-load", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        a = 1.0 - math.exp(-PERIOD_S / TAU_S)
        while True:
            v = self.sample()
            if v is None:
                return  # no run queue to read: the load average stands in
            with self.lock:
                self.total += v
                self.n += 1
                self.ewma = v if self.ewma is None else self.ewma + a * (v - self.ewma)
            time.sleep(PERIOD_S)

    def now(self) -> Optional[float]:
        with self.lock:
            return self.ewma if self.n >= MIN_SAMPLES else None


_SAMPLER: Optional[_Sampler] = None
_SAMPLER_LOCK = threading.Lock()


def _sampler() -> _Sampler:
    global _SAMPLER
    with _SAMPLER_LOCK:
        if _SAMPLER is None:
            _SAMPLER = _Sampler()
        return _SAMPLER


def busy(others: float, n_threads: int, n_cpus: int) -> float:
    """How many times slower a job of ``n_threads`` threads runs than on an idle machine when
    ``others`` other threads are runnable on ``n_cpus`` CPUs (fair shares)."""
    return max(1.0, (max(0.0, others) + n_threads) / max(1, n_cpus))


def _loadavg_others(loadavg: Callable[[], tuple], busy_s: Optional[float]) -> Optional[float]:
    """The 1-minute load average less this process's share of it (a job busy for ``busy_s``
    seconds: threads x (1 - e^(-busy_s/60)), the kernel's damping; else its threads running
    now); None where unknown."""
    try:
        load = float(loadavg()[0])
    except (OSError, AttributeError, IndexError, TypeError, ValueError):
        return None
    own = (threads() * (1.0 - math.exp(-max(0.0, busy_s) / 60.0)) if busy_s is not None
           else min(threads(), _own_running(exclude_caller=True)))
    return load - own


def rate(device="cpu", busy_s: Optional[float] = None,
         loadavg: Optional[Callable[[], tuple]] = None) -> float:
    """The machine's rate for this process's work now (``1 / busy``, module doc); 0.0 on a GPU
    or where the load is unknown. ``loadavg`` (a stand-in for ``os.getloadavg``, tests) reads
    the load average instead of the sampled run queue; so does a process whose sampler has no
    samples yet, taking out its own share (``busy_s``: seconds its job has kept its threads
    busy; None: its threads running now)."""
    if str(device).split(":")[0] != "cpu":
        return 0.0
    others = None
    if loadavg is None:
        others = _sampler().now()
        loadavg = os.getloadavg
    if others is None:
        others = _loadavg_others(loadavg, busy_s)
    if others is None:
        return 0.0
    return 1.0 / busy(others, threads(), cpus())


class Window:
    """The machine's mean rate over a stretch of work (a tune, a probe): the samples taken
    between its start and :meth:`rate`; before enough samples, :func:`rate` at that moment."""

    def __init__(self, device="cpu") -> None:
        self.device = device
        self.t0 = time.monotonic()
        self.start = None
        if str(device).split(":")[0] == "cpu":
            s = _sampler()
            with s.lock:
                self.start = (s.total, s.n)

    def rate(self) -> float:
        if self.start is None:
            return 0.0
        s = _sampler()
        with s.lock:
            total, n = s.total - self.start[0], s.n - self.start[1]
        if n < MIN_SAMPLES:
            return rate(self.device, busy_s=time.monotonic() - self.t0)
        return 1.0 / busy(total / n, threads(), cpus())


def loadavg_text(loadavg: Callable[[], tuple] = os.getloadavg) -> Optional[str]:
    """"load 9.4 on 2 CPUs" (the 1-minute load average, for context), None where unknown."""
    try:
        load = float(loadavg()[0])
    except (OSError, AttributeError, IndexError, TypeError, ValueError):
        return None
    n = cpus()
    return f"load {load:.1f} on {n} CPU{'s' * (n != 1)}"
