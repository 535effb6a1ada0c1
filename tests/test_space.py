"""Space hardware detection -> safe limits per GPU-memory tier."""
from __future__ import annotations

from pathlib import Path

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
    assert hw.flavor == "zero-a10g" and limits_for(hw).max_frames == 32  # an H200 slice
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


# ----------------------------------------------------------------------------- the Space's config

ROOT = Path(__file__).resolve().parents[1]


def _front_matter() -> dict:
    import yaml

    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n"), "a Space reads its config from README.md's front matter"
    return yaml.safe_load(text.split("---\n")[1])


def test_readme_front_matter_is_a_complete_space_config():
    import yaml

    from vcstudio.models.loading import DEFAULT_MODEL, DEFAULT_MODEL_FILES

    fm = _front_matter()
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert fm["sdk"] == "gradio" and fm["sdk_version"] == pins["gradio"]
    assert fm["app_file"] == "app.py" and (ROOT / fm["app_file"]).is_file()
    assert str(fm["python_version"]) == "3.11" and len(fm["short_description"]) <= 60
    assert fm["hf_oauth"] is True and "write-repos" in fm["hf_oauth_scopes"]
    assert DEFAULT_MODEL in fm["models"]
    repo, files = next(p.split(" ", 1) for p in fm["preload_from_hub"]
                       if p.startswith(DEFAULT_MODEL + " "))
    assert set(DEFAULT_MODEL_FILES) <= set(files.split(","))
    # Spaces.yaml stays, equal to the front matter
    assert yaml.safe_load((ROOT / "Spaces.yaml").read_text()) == fm


def test_readme_starts_with_the_two_newcomer_commands():
    text = (ROOT / "README.md").read_text()
    body = text.split("---\n", 2)[2].lstrip().splitlines()
    assert body[0] == "```bash"
    assert "app.py" in body[1] and "scripts/setup.sh" in body[1]
    assert "scripts/test.sh" in body[2] and body[3] == "```"


def _hub_cache_with(model_dir: Path, cache: Path, repo_id: str) -> None:
    """Lay ``model_dir`` out as huggingface_hub's cache holds a downloaded snapshot."""
    import shutil

    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


def test_default_base_model_is_sd15_when_in_the_hub_cache(tiny_sd, tmp_path):
    """Preloaded on a Space (or downloaded once on a desktop), SD 1.5 is the default base; the
    choice reads the cache only. Without it, the embedded demo model."""
    import os
    import subprocess
    import sys

    from vcstudio.models.loading import DEFAULT_MODEL

    code = ("from vcstudio.models.loading import resolve_model, load_base\n"
            "m, e = resolve_model(None)\n"
            "b = load_base(None)\n"
            "print(m, e, b.model_id, b.is_embedded, b.native_size)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("VCSTUDIO_MODEL",)}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "empty"))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[:2] == [str(ROOT / "assets" / "toy-sd"), "True"]
    _hub_cache_with(Path(tiny_sd), tmp_path / "hub", DEFAULT_MODEL)
    env["HF_HUB_CACHE"] = str(tmp_path / "hub")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[:4] == [DEFAULT_MODEL, "False", DEFAULT_MODEL, "False"]
