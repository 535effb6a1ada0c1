"""Space hardware detection -> safe limits per GPU-memory tier."""
from __future__ import annotations

import pytest

from vcstudio.config import Limits
from vcstudio.space import CPU_LIMITS, Hardware, describe, detect, limits_for, safe_limits


@pytest.mark.parametrize("flavor, frames, side, steps", [
    ("t4-small", 8, 512, 300),
    ("a10g-small", 16, 512, 500),
    ("l4x4", 16, 512, 500),  # one GPU of four: a job runs on one
    ("l40sx1", 24, 512, 800),
    ("a100-large", 32, 768, 1000),
    ("cpu-basic", 8, 256, 100),
    ("", 8, 256, 100),
])
def test_space_flavor_tiers(flavor, frames, side, steps):
    env = {"SPACE_ID": "someone/vcstudio", "SPACE_HARDWARE": flavor}
    hw = detect(env, cuda=False)
    assert hw.on_space and hw.flavor == flavor
    lim = safe_limits(env, cuda=False)
    assert (lim.max_frames, lim.max_side, lim.max_steps) == (frames, side, steps)


def test_zero_gpu_and_unknown_flavor():
    hw = detect({"SPACE_ID": "a/b", "SPACES_ZERO_GPU": "true"}, cuda=False)
    assert hw.flavor == "zero-a10g" and limits_for(hw).max_frames == 24
    assert limits_for(detect({"SPACE_ID": "a/b", "SPACE_HARDWARE": "quantum-9000"},
                             cuda=False)) == limits_for(Hardware(True, "a/b", "", "", None))


def test_real_gpu_memory_wins_and_limits_never_exceed_base():
    hw = Hardware(True, "a/b", "t4-small", "NVIDIA H100 80GB HBM3", 79.1)
    lim = limits_for(hw)
    assert (lim.max_frames, lim.max_side) == (32, 768)
    strict = limits_for(hw, Limits(max_frames=10, max_upload_mb=20))
    assert (strict.max_frames, strict.max_side, strict.max_upload_mb) == (10, 768, 20)
    assert limits_for(Hardware(True, "a/b", "", "tiny", 4.0)) == limits_for(
        Hardware(True, "a/b", "", "", None))  # below the lowest tier: CPU limits


def test_desktop_cpu_is_small_and_gpu_tiers_apply():
    assert safe_limits({}, cuda=False) == limits_for(Hardware(False, "", "", "", None))
    assert safe_limits({}, cuda=False).max_frames == CPU_LIMITS.max_frames == 8
    hw = Hardware(False, "", "", "RTX 4090", 24.0)
    assert limits_for(hw).max_frames == 16


def test_describe_names_hardware_and_limits():
    hw = detect({"SPACE_ID": "a/b", "SPACE_HARDWARE": "a10g-small"}, cuda=False)
    text = describe(hw, limits_for(hw))
    assert text.startswith("Space a10g-small (24 GiB GPU): up to 16 frames, 512 px, 500")
    cpu = Hardware(False, "", "", "", None)
    assert "embedded default model" in describe(cpu, limits_for(cpu))
