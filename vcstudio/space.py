"""Where the app runs (a Hugging Face Space or a desktop) and the safe limits that follow.

On a Space the hardware flavor comes from ``SPACE_HARDWARE`` (a Space sets ``SPACE_ID``; the
flavor names are huggingface_hub's ``SpaceHardware`` values); a visible CUDA device's real
memory wins over the flavor table. Limits step down by GPU-memory tier so a visitor cannot pick
settings that crash the Space; on CPU they fit the embedded default model.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Mapping, Optional

from .config import Limits

# GPU memory per GPU (GiB) of Space hardware flavors; multi-GPU flavors count one GPU, since
# a job runs on one device.
FLAVOR_GIB: dict[str, float] = {
    "t4-small": 16, "t4-medium": 16, "l4x1": 24, "l4x4": 24, "a10g-small": 24,
    "a10g-large": 24, "a10g-largex2": 24, "a10g-largex4": 24, "l40sx1": 48, "l40sx4": 48,
    "l40sx8": 48, "a100-large": 80, "a100x4": 80, "a100x8": 80, "rtx-pro-6000": 96,
    "rtx-pro-6000x2": 96, "rtx-pro-6000x4": 96, "rtx-pro-6000x8": 96,
    # ZeroGPU lends half an H200 (about 70 GB) per call, with a time limit per call (the
    # flavor keeps its historical name)
    "zero-a10g": 70,
}

# (minimum GPU GiB, frames, longest side, tuning steps, upload MB), first match from the top.
# 24 GiB runs Tune-A-Video's 8 x 512^2 with checkpointing; frames double with memory.
TIERS: tuple[tuple[float, int, int, int, float], ...] = (
    (70, 32, 768, 1000, 500),
    (40, 24, 512, 800, 300),
    (20, 16, 512, 500, 200),
    (14, 8, 512, 300, 100),
    (6, 8, 384, 200, 100),
)
CPU_LIMITS = Limits(max_frames=8, max_side=256, max_steps=100, max_upload_mb=50,
                    max_long_frames=32)
# what one visitor's request may fan out to on a public Space (every tier): a Space has one
# device queue that all its visitors share
PUBLIC_FANOUT = dict(max_variants=8, max_sweep_cells=16, max_windows=64, max_candidates=5,
                     max_hub_run_mb=2048.0)
# a long video's length on a GPU tier: this many times the frames one window tunes on
LONG_PER_FRAME = 8


@dataclass(frozen=True)
class Hardware:
    on_space: bool
    space_id: str
    flavor: str  # Space hardware flavor, "" off a Space or when unknown
    gpu_name: str  # "" without a visible GPU
    gpu_gib: Optional[float]  # memory of one GPU; None on CPU

    @property
    def tier(self) -> str:
        return "cpu" if not self.gpu_gib else f"{self.gpu_gib:.0f} GiB GPU"


def detect(env: Optional[Mapping[str, str]] = None, cuda: Optional[bool] = None) -> Hardware:
    """Read the environment (``os.environ`` by default) and the CUDA device, if any.
    ``cuda=False`` ignores torch (for tests and for ZeroGPU, where CUDA is attached later)."""
    env = os.environ if env is None else env
    space_id = env.get("SPACE_ID", "")
    flavor = env.get("SPACE_HARDWARE", "").strip().lower()
    if not flavor and env.get("SPACES_ZERO_GPU", "").lower() == "true":
        flavor = "zero-a10g"
    gpu_name, gpu_gib = "", FLAVOR_GIB.get(flavor)
    if cuda is None or cuda:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(torch.cuda.current_device())
            gpu_name, gpu_gib = props.name, props.total_memory / 2**30
    return Hardware(bool(space_id), space_id, flavor, gpu_name, gpu_gib)


def limits_for(hw: Hardware, base: Limits = Limits()) -> Limits:
    """Safe limits for ``hw``: the GPU-memory tier's frames/side/steps/upload, never above
    ``base``; CPU gets :data:`CPU_LIMITS`."""
    if not hw.gpu_gib:
        tier = CPU_LIMITS
    else:
        for min_gib, frames, side, steps, upload in TIERS:
            if hw.gpu_gib >= min_gib:
                tier = Limits(max_frames=frames, max_side=side, max_steps=steps,
                              max_upload_mb=upload, max_long_frames=LONG_PER_FRAME * frames)
                break
        else:  # a GPU smaller than the lowest tier: treat like CPU
            tier = CPU_LIMITS
    return replace(base, max_frames=min(base.max_frames, tier.max_frames),
                   max_side=min(base.max_side, tier.max_side),
                   max_steps=min(base.max_steps, tier.max_steps),
                   max_upload_mb=min(base.max_upload_mb, tier.max_upload_mb),
                   max_long_frames=min(base.max_long_frames, tier.max_long_frames))


def safe_limits(env: Optional[Mapping[str, str]] = None, cuda: Optional[bool] = None) -> Limits:
    """Limits for this process: tiered on a Space (visitors share it) and on CPU; a desktop
    with a GPU keeps the generous defaults (its owner sees the memory estimate instead)."""
    hw = detect(env, cuda)
    if hw.on_space:
        return replace(limits_for(hw), **PUBLIC_FANOUT)
    if not hw.gpu_gib:
        return limits_for(hw)
    return Limits()


def describe(hw: Hardware, limits: Limits) -> str:
    """One line for the app's header, e.g. 'Space a10g-small (24 GiB GPU): up to 16 frames...'"""
    where = f"Space {hw.flavor or hw.space_id}" if hw.on_space else "Local"
    gpu = hw.gpu_name or hw.tier
    text = (f"{where} ({gpu}): up to {limits.max_frames} frames, {limits.max_side} px, "
            f"{limits.max_steps} tuning steps, {limits.max_long_frames}-frame long videos, "
            f"{limits.max_upload_mb:g} MB uploads.")
    if not hw.gpu_gib:
        text += " No GPU: runs the small embedded default model."
    return text
