"""I2V backbone (SVD via diffusers), VCD reward LoRA tuning (seed 002 eq. 3), A/B, CLI entries."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vcstudio.errors import ModelNotFoundError
from vcstudio.methods.vcd import VCD
from vcstudio.metrics.motion import flow_magnitudes, motion_amount
from vcstudio.models.lora import load_lora, read_lora
from vcstudio.models.svd import build_tiny_svd, load_svd
from vcstudio.models.vgg import load_encoder
from vcstudio.pipelines.i2v.backbones import SVDBackbone, sample_i2v
from vcstudio.pipelines.i2v.tune import I2VTuneConfig, ab_sample, tune_i2v
from vcstudio.run_context import RunContext


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def svd_dir(tmp_path_factory):
    return build_tiny_svd(tmp_path_factory.mktemp("tiny_svd"), seed=0, frames=4)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def small_vcd():
    # The real pretrained offline encoder; few slices keep the CPU test fast.
    return VCD(load_encoder("efficientnet-lite0", cache=None), size=160, num_proj=16)


def test_sampling_reproduces_the_diffusers_svd_pipeline(svd_dir):
    from diffusers import StableVideoDiffusionPipeline

    pipe = StableVideoDiffusionPipeline.from_pretrained(svd_dir)
    pipe.set_progress_bar_config(disable=True)
    torch.manual_seed(0)
    img = torch.rand(1, 3, 32, 32)  # 32 px = the tiny CLIP's input size, so neither side resizes
    ref = pipe(img, height=32, width=32, num_frames=4, num_inference_steps=3,
               generator=torch.Generator().manual_seed(5), output_type="pt").frames[0]
    ref = (ref.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().numpy()
    bb = SVDBackbone(load_svd(svd_dir, cache=None))
    ours = sample_i2v(bb, img, 4, 32, 32, steps=3, seed=5)
    assert ours.shape == (4, 32, 32, 3) and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
    assert ours.std() > 5  # not a blank video
    again = sample_i2v(bb, img, 4, 32, 32, steps=3, seed=5)
    other = sample_i2v(bb, img, 4, 32, 32, steps=3, seed=6)
    assert np.array_equal(ours, again) and not np.array_equal(ours, other)


def test_truncated_backprop_reaches_only_lora_through_the_last_step(svd_dir, image, small_vcd):
    from vcstudio.models.lora import add_lora

    bb = SVDBackbone(load_svd(svd_dir, cache=None))
    params = add_lora(bb.denoiser, rank=4)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        cond = bb.encode(image, 4, generator=g)
    noise = torch.randn(1, 4, 4, 8, 8, generator=g, requires_grad=True)
    lat = bb.denoise(cond, 3, latents=noise, grad_steps=1)
    frames = bb.decode(lat, [1, 3])
    assert frames.shape == (2, 3, 16, 16) and frames.requires_grad
    small_vcd(frames, image=cond.image, positions=[2, 4], n_frames=4).mean.backward()
    lora_b = [p for n, p in bb.denoiser.named_parameters() if "lora_B" in n]
    assert any(float(p.grad.abs().sum()) > 0 for p in lora_b)
    assert all(p.grad is None for n, p in bb.denoiser.named_parameters() if "lora_" not in n)
    assert all(p.grad is None for p in bb.parts.vae.parameters())
    assert noise.grad is None  # steps 1..2 ran without a graph: nothing flows back to x_T
    bb.decode(bb.denoise(cond, 3, latents=noise, grad_steps=3), [3]).mean().backward()
    assert noise.grad is not None and float(noise.grad.abs().sum()) > 0  # full backprop does
    assert len(params) == 2 * 64  # A, B for q, k, v, out of 16 attentions (spatial+temporal, self+cross)
    with torch.no_grad():
        assert not bb.denoise(cond, 3, generator=g, grad_steps=0).requires_grad


def test_tuning_changes_only_lora_lowers_vcd_and_round_trips(svd_dir, image, small_vcd, tmp_path):
    bb = SVDBackbone(load_svd(svd_dir, cache=None))
    before = {n: p.detach().clone() for n, p in bb.denoiser.named_parameters()}
    base_video = sample_i2v(bb, image, steps=3, seed=1)
    # Deterministic objective (fixed noise, all frames 2..N) with the graph through every step of
    # this 3-step tiny sampler, so a few AdamW steps must lower it.
    cfg = I2VTuneConfig(steps=3, lora_rank=4, lr=2e-3, inference_steps=3, grad_steps=3,
                        decode_frames=3, resample_noise=False, eval_every=0, motion_collapse=1e6)
    events = []
    tlog = tune_i2v(bb, [image], cfg, prompts=["a test"], vcd_fn=small_vcd,
                    run=RunContext(progress=events.append), out=tmp_path)
    assert tlog.vcd[-1] < tlog.vcd[0], tlog.vcd
    assert [e.step for e in events] == [1, 2, 3] and "vcd" in events[0].metrics
    assert {"fidelity", "motion", "probe_vcd"} <= set(events[-1].metrics)
    assert tlog.warnings and "motion collapsed" in tlog.warnings[0]  # threshold forced high
    after = dict(bb.denoiser.named_parameters())
    changed = [n for n, p in after.items() if n in before and not torch.equal(p, before[n])]
    assert changed == []  # every base weight untouched ...
    lora_b = [p for n, p in after.items() if "lora_B" in n]
    assert any(float(p.abs().sum()) > 0 for p in lora_b)  # ... and LoRA moved from zero
    # A/B with the same seed: base = the untuned model exactly, tuned differs.
    base, tuned = ab_sample(bb, image, seed=1, steps=3)
    assert np.array_equal(base, base_video) and not np.array_equal(base, tuned)
    # The delta reloads onto a fresh base model and reproduces the tuned video.
    tensors, lcfg, run_cfg = read_lora(tmp_path / "lora.safetensors")
    assert lcfg["rank"] == 4 and run_cfg["tune"]["lr"] == 2e-3 and run_cfg["prompts"] == ["a test"]
    assert all("lora" in k for k in tensors)
    fresh = SVDBackbone(load_svd(svd_dir, cache=None))
    load_lora(tmp_path / "lora.safetensors", fresh.denoiser)
    assert np.array_equal(sample_i2v(fresh, image, steps=3, seed=1), tuned)
    assert json.loads((tmp_path / "tune_log.json").read_text())["vcd"] == tlog.vcd


def test_missing_model_is_a_model_not_found_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="--model"):
        load_svd(tmp_path / "nope", cache=None)
    with pytest.raises(ModelNotFoundError):
        load_svd(tmp_path, cache=None)  # a folder without the SVD parts


def test_motion_amount_known_shift():
    rng = np.random.default_rng(0)
    from scipy.ndimage import gaussian_filter

    tex = gaussian_filter(rng.random((96, 96)), 2.0)
    tex = ((tex - tex.min()) / np.ptp(tex) * 255).astype(np.uint8)
    frames = np.stack([np.repeat(np.roll(tex, 2 * k, axis=1)[..., None], 3, -1) for k in range(4)])
    inner = flow_magnitudes(frames[:, 16:-16, 16:-16])
    assert inner == pytest.approx([2.0] * 3, abs=0.3)
    still = np.repeat(frames[:1], 4, axis=0)
    assert motion_amount(still) < 0.01


def test_eval_vcd_cli_writes_per_frame_json(tmp_path):
    from vcstudio.cli import main
    from vcstudio.io import write_frames

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    b = np.roll(a, 3, axis=1)
    write_frames(np.stack([a, a, b]), tmp_path / "clip")
    out = tmp_path / "vcd.json"
    assert main(["eval-vcd", "--video", str(tmp_path / "clip"), "--encoder",
                 "efficientnet-lite0", "--size", "160", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["vcd_per_frame"][0] == 0.0 and d["vcd_per_frame"][1] > 0
    assert d["vcd_temporal_weights"] == [2 / 3, 1 / 3]
    assert d["vcd_encoder"].startswith("efficientnet-lite0")
