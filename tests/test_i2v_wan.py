"""Wan2.1 I2V backbone (the VCD paper's own): equals diffusers' WanImageToVideoPipeline, only the
last step keeps a graph, the step cache at threshold 0 changes nothing, the CLI generates and
reward-tunes (the delta loads with diffusers' load_lora_weights), one-line bad-input messages."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vcstudio.errors import InputError
from vcstudio.methods.vcd import VCD
from vcstudio.models.lora import add_lora, lora_targets_for
from vcstudio.models.vgg import load_encoder
from vcstudio.models.wan import load_wan
from vcstudio.pipelines.i2v.backbones import backbone_kind, build_backbone, sample_i2v
from vcstudio.pipelines.i2v.wan import WanI2VBackbone

N, S = 9, 32  # tiny Wan: 4x temporal / 8x spatial VAE, patch 2 -> 3 x 4 x 4 latents

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (S, S, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def small_vcd():
    return VCD(load_encoder("efficientnet-lite0", cache=None), size=160, num_proj=16)


def backbone(folder, **kw) -> WanI2VBackbone:
    return WanI2VBackbone(load_wan(folder, "i2v", cache=None), **kw)


def test_sampling_reproduces_the_diffusers_wan_i2v_pipeline(tiny_wan_i2v, image):
    from diffusers import WanImageToVideoPipeline
    from PIL import Image

    pipe = WanImageToVideoPipeline.from_pretrained(tiny_wan_i2v)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(Image.fromarray(image), prompt="a red ball rolls", height=S, width=S,
               num_frames=N, num_inference_steps=4, guidance_scale=5.0,
               generator=torch.Generator().manual_seed(5), output_type="np").frames[0]
    ref = (ref * 255).round().astype(np.uint8)
    bb = backbone(tiny_wan_i2v)
    ours = sample_i2v(bb, image, N, S, S, steps=4, seed=5, prompt="a red ball rolls")
    assert ours.shape == (N, S, S, 3) and ours.dtype == np.uint8 and ours.std() > 5
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
    assert not np.array_equal(ours, sample_i2v(bb, image, N, S, S, steps=4, seed=6,
                                               prompt="a red ball rolls"))
    assert not np.array_equal(ours, sample_i2v(bb, image, N, S, S, steps=4, seed=5,
                                               prompt="a blue car"))  # the text conditions it


def test_detected_from_model_index_and_forced_by_option(tiny_wan_i2v, tiny_wan_t2v):
    assert backbone_kind(str(tiny_wan_i2v)) == "wan"
    assert backbone_kind("weizhou03/Wan2.1-Fun-1.3B-InP-Diffusers") == "wan"  # by name, uncached
    assert backbone_kind(str(tiny_wan_i2v), "svd") == "svd"
    with pytest.raises(InputError, match="WanPipeline"):  # a T2V folder is not an I2V model
        backbone_kind(str(tiny_wan_t2v))
    bb = build_backbone(str(tiny_wan_i2v), device="cpu", cache=None, backbone="wan",
                        step_cache=0.1)
    assert bb.name == "wan2.1-i2v" and bb.cache is not None and bb.cache.threshold == 0.1
    from vcstudio.models.svd import build_tiny_svd

    with pytest.raises(InputError, match="wan backbone only"):
        build_backbone(str(build_tiny_svd(tiny_wan_i2v.parent / "svd")), device="cpu",
                       cache=None, step_cache=0.1)


def test_only_the_last_step_keeps_a_graph(tiny_wan_i2v, image, small_vcd):
    bb = backbone(tiny_wan_i2v)
    params = add_lora(bb.denoiser, rank=4, targets=lora_targets_for(bb.name))
    assert len(params) == 2 * 16  # A, B of q, k, v, out in attn1 + attn2 of 2 blocks
    g = torch.Generator().manual_seed(0)
    cond = bb.encode(image, N, S, S, generator=g, prompt="a cat walks")
    noise = torch.randn(1, 16, 3, 4, 4, generator=g, requires_grad=True)
    lat = bb.denoise(cond, 3, latents=noise, grad_steps=1)
    frames = bb.decode(lat, [3, 8])
    assert frames.shape == (2, 3, S, S) and frames.requires_grad
    small_vcd(frames, image=cond.image, positions=[4, 9], n_frames=N).mean.backward()
    assert noise.grad is None  # the early steps' input (x_T) gets no gradient
    assert all(float(p.grad.abs().sum()) > 0 for n, p in bb.denoiser.named_parameters()
               if "lora_B" in n)
    assert all(p.grad is None for n, p in bb.denoiser.named_parameters() if "lora_" not in n)
    assert all(p.grad is None for p in bb.parts.vae.parameters())
    bb.decode(bb.denoise(cond, 3, latents=noise, grad_steps=3), [8]).mean().backward()
    assert noise.grad is not None and float(noise.grad.abs().sum()) > 0  # full backprop does


def test_subset_decode_is_exact_and_differentiable_through_the_causal_cache(tiny_wan_i2v,
                                                                            image):
    bb = backbone(tiny_wan_i2v)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        lat = bb.denoise(bb.encode(image, N, S, S, generator=g), 2, generator=g)
        full = bb.decode(lat)
        assert full.shape == (N, 3, S, S)
        assert torch.equal(bb.decode(lat, [2, 5]), full[[2, 5]])  # causal prefix: exact
    x = lat.clone().requires_grad_(True)
    bb.decode(x, [3]).mean().backward()  # frame 3 lives in latent frame 1
    per = x.grad.abs().sum((0, 1, 3, 4))
    assert float(per[1]) > 0 and float(per[0]) > 0  # the causal cache carries frame 0's part
    assert float(per[2]) == 0  # latent frame 2 is not decoded for it
    with pytest.raises(InputError, match="within 0..8"):
        bb.decode(lat, [9])


def test_step_cache_at_threshold_zero_equals_uncached(tiny_wan_i2v, image):
    bb = backbone(tiny_wan_i2v)
    kw = dict(steps=6, seed=3, prompt="a dog")
    plain = sample_i2v(bb, image, N, S, S, **kw)
    bb.set_step_cache(0.0)
    assert np.array_equal(sample_i2v(bb, image, N, S, S, **kw), plain)
    assert bb.cache.stats.skipped == 0 and bb.cache.stats.computed == 12  # 6 steps x 2 branches
    bb.set_step_cache(10.0)  # skips every step it may: all but the first and the last
    cached = sample_i2v(bb, image, N, S, S, **kw)
    assert bb.cache.stats.skipped == 8 and not np.array_equal(cached, plain)
    assert np.abs(cached.astype(int) - plain.astype(int)).mean() < 20  # reused, not garbage
    g = torch.Generator().manual_seed(0)
    cond = bb.encode(image, N, S, S, generator=g)
    bb.cache.keep_last = 0  # only autograd now forces the last step to compute
    before = bb.cache.stats.computed
    bb.denoise(cond, 4, generator=g, grad_steps=1)
    assert bb.cache.stats.computed - before == 4  # steps 0 and 3 (the graph's), two branches
    bb.set_step_cache(None)
    assert np.array_equal(sample_i2v(bb, image, N, S, S, **kw), plain)  # removed cleanly


def test_cli_generates_tunes_and_the_delta_loads_in_diffusers(tiny_wan_i2v, image, tmp_path):
    from diffusers import WanImageToVideoPipeline
    from PIL import Image
    from safetensors.torch import load_file

    from vcstudio.cli import main
    from vcstudio.io import read_video
    from vcstudio.models.lora import read_lora

    Image.fromarray(image).save(tmp_path / "in.png")
    size = ["--frames", str(N), "--height", str(S), "--width", str(S), "--device", "cpu"]
    out = tmp_path / "gen.mp4"
    assert main(["i2v", "--model", str(tiny_wan_i2v), "--image", str(tmp_path / "in.png"),
                 "--prompt", "a red ball", "--steps", "2", "--out", str(out), *size]) == 0
    video = read_video(out)
    assert video.shape[0] == N and video.shape[1:3] == (S, S) and video.std() > 5
    tdir = tmp_path / "tune"
    assert main(["i2v-tune", "--model", str(tiny_wan_i2v), "--images", str(tmp_path / "in.png"),
                 "--prompts", "a red ball", "--steps", "4", "--lr", "5e-3", "--lora-rank", "4",
                 "--inference-steps", "2", "--grad-steps", "2", "--decode-frames", "8",
                 "--encoder", "efficientnet-lite0", "--vcd-size", "160", "--vcd-num-proj", "16",
                 "--vcd-projections", "fixed", "--fixed-noise",
                 "--eval-every", "0", "--out", str(tdir),
                 *size]) == 0
    delta = load_file(str(tdir / "lora.safetensors"))
    assert all(k.startswith("transformer.") for k in delta)
    assert read_lora(tdir / "lora.safetensors")[2]["backbone"] == "wan2.1-i2v"
    assert any(float(v.abs().sum()) > 0 for k, v in delta.items() if "lora_B" in k)  # moved
    tlog = json.loads((tdir / "tune_log.json").read_text())
    assert tlog["vcd"][-1] < tlog["vcd"][0], tlog["vcd"]  # VCD on its training image fell
    pipe = WanImageToVideoPipeline.from_pretrained(tiny_wan_i2v)
    pipe.set_progress_bar_config(disable=True)
    kw = dict(prompt="a red ball", height=S, width=S, num_frames=N, num_inference_steps=2,
              output_type="np")
    base = pipe(Image.fromarray(image), generator=torch.Generator().manual_seed(0), **kw).frames[0]
    pipe.load_lora_weights(str(tdir / "lora.safetensors"))
    tuned = pipe(Image.fromarray(image), generator=torch.Generator().manual_seed(0), **kw).frames[0]
    assert np.abs(tuned - base).max() > 1e-3


def test_bad_inputs_are_one_line_messages(tiny_wan_i2v, image, tmp_path, capsys):
    from PIL import Image

    from vcstudio.cli import main
    from vcstudio.models.lora import save_lora
    from vcstudio.models.svd import build_tiny_svd, load_svd

    wide = np.random.default_rng(1).integers(0, 256, (S, 2 * S, 3), dtype=np.uint8)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    base = ["--model", str(tiny_wan_i2v), "--height", str(S), "--width", str(S), "--steps", "1",
            "--device", "cpu"]
    assert main(["i2v", "--image", str(tmp_path / "wide.png"), "--frames", str(N),
                 "--out", str(tmp_path / "w.mp4"), *base]) == 0
    err = capsys.readouterr().err
    assert "note: The image is 64x32; it was resized keeping its aspect to cover 32x32" in err
    assert main(["i2v", "--image", str(tmp_path / "wide.png"), "--frames", "24",
                 "--out", str(tmp_path / "x.mp4"), *base]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert lines == ["error: Wan2.1 makes 4k + 1 frames (its VAE packs 4 frames per latent "
                     "after the first); got 24: use 21 or 25."]
    svd = load_svd(build_tiny_svd(tmp_path / "svd"), cache=None)
    add_lora(svd.unet, 2)
    save_lora(tmp_path / "svd_lora.safetensors", svd.unet, {"backbone": "stable-video-diffusion"})
    assert main(["i2v", "--image", str(tmp_path / "wide.png"), "--frames", str(N), "--lora",
                 str(tmp_path / "svd_lora.safetensors"), "--out", str(tmp_path / "y.mp4"),
                 *base]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == ("error: The LoRA in svd_lora.safetensors was tuned on stable-video-diffusion; "
                   "this model is wan2.1-i2v. Use a LoRA tuned on the same backbone.")
