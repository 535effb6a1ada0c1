"""Peak-memory estimates from a job's sizes, checked before the heavy work starts.

Each job computes what it will hold at its peak (host RAM and device memory) from its frame
count, size, batch and model size, and calls :func:`check`: a job that would not fit is refused
with an :class:`~vcstudio.errors.OutOfMemoryError` that names the setting to lower, instead of
growing until the kernel kills the server (and every visitor's session with it).

Available host memory is read from ``/proc/meminfo`` (``MemAvailable``: free + reclaimable page
cache), else ``os.sysconf``; device memory from ``torch.cuda.mem_get_info``. Where neither can be
read nothing is refused. Estimates are deliberately a little high (a refused job names its
estimate; a killed server names nothing).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import OutOfMemoryError

GIB = 2**30
# SD 1.x U-Net parameters: the scale the per-frame activation constants below are measured at
SD_UNET_PARAMS = 860e6
# activations per 512x512-frame equivalent of one forward pass without gradients (sampling,
# inversion), SD 1.x in bf16; CFG doubles the batch
SAMPLE_ACT_GIB_PER_FRAME = 0.3
# one-shot tuning at SD 1.x scale: frozen SD parts in bf16 (~2.1) + trainable q/temporal
# params with AdamW (~1.2); activations per 512^2 frame, with / without gradient checkpointing
TUNE_BASE_GIB = 3.3
TUNE_ACT_GIB_PER_FRAME = {True: 0.9, False: 3.2}
SAMPLE_BASE_GIB = 2.1  # frozen weights for sampling
# what the process needs beyond a job's own arrays (Python, torch, the Gradio server)
HOST_RESERVE_GIB = 0.5
HOST_USABLE = 0.9  # of MemAvailable: leave the page cache a little


MEMINFO = "/proc/meminfo"
CGROUP = "/sys/fs/cgroup"  # a container's (a Space's) own limit, below the host's MemAvailable


def _cgroup_available_gib() -> Optional[float]:
    try:
        limit = Path(CGROUP, "memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path(CGROUP, "memory.current").read_text().strip())
        return max(0, int(limit) - used) / GIB
    except (OSError, ValueError):
        return None


def host_available_gib() -> Optional[float]:
    """MemAvailable from /proc/meminfo (else free physical pages, os.sysconf), capped by the
    cgroup's memory.max - memory.current where a container limit is set; None if unknown."""
    avail = None
    try:
        with open(MEMINFO) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024 / GIB
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / GIB
        except (ValueError, OSError, AttributeError):
            avail = None
    cg = _cgroup_available_gib()
    if cg is not None:
        avail = cg if avail is None else min(avail, cg)
    return avail


def device_available_gib(device) -> Optional[float]:
    """Free memory of a CUDA device plus what torch's caching allocator holds for reuse (a
    job's own cached blocks are free to it); None for the CPU or when unknown."""
    if str(device).split(":")[0] != "cuda":
        return None
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    import torch as _torch

    dev = _torch.device(str(device))
    idx = dev.index if dev.index is not None else _torch.cuda.current_device()
    free, _total = _torch.cuda.mem_get_info(idx)
    reusable = _torch.cuda.memory_reserved(idx) - _torch.cuda.memory_allocated(idx)
    return (free + max(0, reusable)) / GIB


@dataclass
class Need:
    """A job's estimated peak: host and device GiB (device 0 on the CPU, where everything is
    host memory), what it is for, and the settings that lower it."""

    host_gib: float
    device_gib: float = 0.0
    what: str = "this job"
    lower: str = "fewer frames or a smaller size"


def frames_gib(frames: int, height: int, width: int, copies: float = 1.0) -> float:
    """uint8 RGB frames held in memory (``copies`` of them)."""
    return copies * frames * height * width * 3 / GIB


def _refuse(msg: str) -> OutOfMemoryError:
    e = OutOfMemoryError(msg)
    e.refused = True  # nothing was allocated: the studio keeps its model cache
    return e


def check(need: Need, device="cpu", host_gib: Optional[float] = None,
          device_gib: Optional[float] = None) -> Need:
    """Refuse ``need`` when it exceeds what is available (``host_gib`` / ``device_gib`` given =
    use those instead of reading them: tests). On the CPU the device part is host memory too."""
    on_cpu = str(device).split(":")[0] != "cuda"
    host = host_available_gib() if host_gib is None else host_gib
    want_host = need.host_gib + (need.device_gib if on_cpu else 0.0)
    if host is not None and want_host + HOST_RESERVE_GIB > HOST_USABLE * host:
        raise _refuse(
            f"{need.what[:1].upper()}{need.what[1:]} needs ~{want_host:.1f} GiB of memory at its "
            f"peak and ~{max(0.0, HOST_USABLE * host - HOST_RESERVE_GIB):.1f} GiB is available: "
            f"lower {need.lower}.")
    if not on_cpu:
        dev = device_available_gib(device) if device_gib is None else device_gib
        if dev is not None and need.device_gib > 0.95 * dev:
            raise _refuse(
                f"{need.what[:1].upper()}{need.what[1:]} needs ~{need.device_gib:.1f} GiB of "
                f"device memory and ~{dev:.1f} GiB is free on {device}: lower {need.lower}.")
    return need


def model_scale(module) -> float:
    """A loaded U-Net's size relative to SD 1.x (the embedded demo model is ~0.01)."""
    return sum(p.numel() for p in module.parameters()) / SD_UNET_PARAMS


def oom_message(e: BaseException, kind: str, device) -> str:
    """The message of an out-of-memory that happened inside a job anyway."""
    if isinstance(e, MemoryError):
        return (f"The server ran out of host memory during this {kind} job; it was stopped and "
                "the studio keeps running. Try fewer frames, a smaller width/height or fewer "
                "frames per batch.")
    return (f"The device ({device}) ran out of memory during this {kind} job; it was stopped "
            "and the studio keeps running. Try fewer frames, a smaller width/height or fewer "
            "frames per step; the memory estimate before starting shows what fits.")


_LIBC = []  # [libc or None], loaded once


def release_freed_host_memory() -> bool:
    """Hand the pages that finished jobs freed back to the OS (glibc ``malloc_trim(0)``; a
    no-op elsewhere); True if any were released.

    glibc keeps freed heap pages in its arenas for reuse. A job's frames, latents and flows
    are freed when it ends, but the server's RSS stays at the high-water mark of every arena
    its worker threads used: under `vcstudio bench serve` (10 visitors) the server held ~800
    MiB more than it used after 8 minutes, and one call gave it back. Called after each job
    and by the public studio's cleanup sweep; costs milliseconds."""
    if not _LIBC:
        lib = None
        if sys.platform.startswith("linux"):
            import ctypes
            import ctypes.util

            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                lib.malloc_trim  # musl has none
            except (OSError, AttributeError):
                lib = None
        _LIBC.append(lib)
    lib = _LIBC[0]
    return bool(lib.malloc_trim(0)) if lib is not None else False


def units(frames: int, height: int, width: int) -> float:
    """512x512-frame equivalents."""
    return frames * height * width / (512 * 512)


def tune_gib(frames: int, height: int, width: int, method_gib: float, checkpointing: bool,
             scale: float = 1.0) -> float:
    """Peak of one-shot tuning: weights + trainables with AdamW + the method's parts +
    activations, at ``scale`` x SD 1.x."""
    return scale * (TUNE_BASE_GIB + method_gib
                    + units(frames, height, width) * TUNE_ACT_GIB_PER_FRAME[bool(checkpointing)])


def sample_gib(frames: int, height: int, width: int, scale: float = 1.0,
               cfg_batch: int = 2) -> float:
    """Peak of sampling / inversion: frozen weights + one forward pass's activations (CFG
    doubles the batch)."""
    return scale * (SAMPLE_BASE_GIB
                    + cfg_batch * units(frames, height, width) * SAMPLE_ACT_GIB_PER_FRAME)
