"""LTX-Video I2V backbone: equals diffusers' LTXImageToVideoPipeline, truncated backprop reaches only
LoRA, VCD reward tuning (seed 002 eq. 3) changes only LoRA, backbone choice and CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vcstudio.errors import InputError, ModelNotFoundError
from vcstudio.methods.vcd import VCD
from vcstudio.metrics.motion import motion_amount
from vcstudio.models.lora import add_lora, load_lora, lora_targets_for, read_lora
from vcstudio.models.ltx import build_tiny_ltx, load_ltx
from vcstudio.models.vgg import load_encoder
from vcstudio.pipelines.i2v.backbones import backbone_kind, build_backbone, sample_i2v
from vcstudio.pipelines.i2v.ltx import LTXBackbone
from vcstudio.pipelines.i2v.tune import I2VTuneConfig, ab_sample, tune_i2v

N, S = 9, 32  # tiny LTX: 4x temporal / 4x spatial VAE -> 3 x 8 x 8 latents


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ltx_dir(tmp_path_factory):
    return build_tiny_ltx(tmp_path_factory.mktemp("tiny_ltx"), seed=0)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (S, S, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def small_vcd():
    return VCD(load_encoder("efficientnet-lite0", cache=None), size=160, num_proj=16)


@pytest.fixture(scope="module")
def toy_clip():
    from vcstudio.models.clip import load_clip_encoder, toy_clip_dir

    return load_clip_encoder(str(toy_clip_dir()), device="cpu")


def test_sampling_reproduces_the_diffusers_ltx_pipeline(ltx_dir):
    from diffusers import LTXImageToVideoPipeline

    pipe = LTXImageToVideoPipeline.from_pretrained(ltx_dir)
    pipe.set_progress_bar_config(disable=True)
    torch.manual_seed(0)
    img = torch.rand(1, 3, S, S)
    ref = pipe(img, prompt="a red ball rolls", height=S, width=S, num_frames=N,
               num_inference_steps=3, guidance_scale=3.0, generator=torch.Generator().manual_seed(5),
               output_type="pt").frames[0]
    ref = (ref.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().numpy()
    bb = LTXBackbone(load_ltx(ltx_dir, cache=None), guidance=3.0)
    ours = sample_i2v(bb, img, N, S, S, steps=3, seed=5, prompt="a red ball rolls")
    assert ours.shape == (N, S, S, 3) and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
    assert ours.std() > 5
    assert np.array_equal(ours, sample_i2v(bb, img, N, S, S, steps=3, seed=5, prompt="a red ball rolls"))
    assert not np.array_equal(ours, sample_i2v(bb, img, N, S, S, steps=3, seed=6,
                                               prompt="a red ball rolls"))
    # The text conditions the video (SVD would ignore it).
    assert not np.array_equal(ours, sample_i2v(bb, img, N, S, S, steps=3, seed=5,
                                               prompt="a blue car"))


def test_timestep_conditioned_vae_matches_the_pipeline_decode_noise(tmp_path):
    """LTX 0.9.1's VAE decodes at a timestep from noised latents; the noise is the seed's 3rd draw."""
    from diffusers import LTXImageToVideoPipeline

    folder = build_tiny_ltx(tmp_path / "tc", timestep_conditioning=True)
    pipe = LTXImageToVideoPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    img = torch.rand(1, 3, S, S, generator=torch.Generator().manual_seed(1))
    ref = pipe(img, prompt="a cat", height=S, width=S, num_frames=N, num_inference_steps=2,
               decode_timestep=0.05, decode_noise_scale=0.025,
               generator=torch.Generator().manual_seed(5), output_type="pt").frames[0]
    ref = (ref.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().numpy()
    bb = LTXBackbone(load_ltx(folder, cache=None), decode_timestep=0.05, decode_noise_scale=0.025)
    ours = sample_i2v(bb, img, N, S, S, steps=2, seed=5, prompt="a cat")
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
    bb.decode_noise_scale = 0.0
    assert not np.array_equal(ours, sample_i2v(bb, img, N, S, S, steps=2, seed=5, prompt="a cat"))


def test_frame_count_and_size_rules(ltx_dir, image):
    bb = LTXBackbone(load_ltx(ltx_dir, cache=None))
    with pytest.raises(InputError, match="try 9"):
        bb.encode(image, 8, S, S)
    with pytest.raises(InputError, match="multiples of 32"):
        bb.encode(image, N, 48, S)
    with pytest.raises(InputError, match="at least 2 denoising steps"):  # 1 step: NaN sigmas
        bb.denoise(bb.encode(image, N, S, S), 1)


def test_subset_decode_picks_frames_of_the_covering_latent_window(ltx_dir, image):
    bb = LTXBackbone(load_ltx(ltx_dir, cache=None))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        cond = bb.encode(image, N, S, S, generator=g, prompt="a cat")
        lat = bb.denoise(cond, 2, generator=g)
        full = bb.decode(lat)
        assert full.shape == (N, 3, S, S)
        # First and last frame span every latent frame: the exact full decode, reindexed.
        assert torch.equal(bb.decode(lat, [0, N - 1]), full[[0, N - 1]])
        # Frames 5, 6 sit in latent frame 2 (pixels 5..8): window [1, 2] -> frames 4..8.
        assert bb.latent_window([5, 6], 3) == (1, 2)
        sub = bb.decode(lat, [5, 6])
        win = bb.decode(lat[:, :, 1:3])  # the window decoded on its own = its frames 4..8
        assert torch.equal(sub, win[[1, 2]])
        bb.subset_decode = "full"  # exact: decode every latent frame, then pick
        assert torch.equal(bb.decode(lat, [5, 6]), full[[5, 6]])
    with pytest.raises(InputError, match="within 0..8"):
        bb.decode(lat, [9])


def test_truncated_backprop_reaches_only_lora_through_the_last_step(ltx_dir, image, small_vcd):
    bb = LTXBackbone(load_ltx(ltx_dir, cache=None))
    params = add_lora(bb.denoiser, rank=4, targets=lora_targets_for(bb.name))
    assert len(params) == 2 * 16  # A, B for q, k, v, out of attn1 + attn2 in 2 blocks
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        cond = bb.encode(image, N, S, S, generator=g, prompt="a dog walks")
    noise = torch.randn(1, 8, 3, 8, 8, generator=g, requires_grad=True)
    lat = bb.denoise(cond, 3, latents=noise, grad_steps=1)
    frames = bb.decode(lat, [3, 8])
    assert frames.shape == (2, 3, S, S) and frames.requires_grad
    small_vcd(frames, image=cond.image, positions=[4, 9], n_frames=N).mean.backward()
    lora_b = [p for n, p in bb.denoiser.named_parameters() if "lora_B" in n]
    assert all(float(p.grad.abs().sum()) > 0 for p in lora_b)
    assert all(p.grad is None for n, p in bb.denoiser.named_parameters() if "lora_" not in n)
    assert all(p.grad is None for p in bb.parts.vae.parameters())
    assert all(p.grad is None for p in bb.parts.text_encoder.parameters())
    assert noise.grad is None  # steps 1..2 ran without a graph
    bb.decode(bb.denoise(cond, 3, latents=noise, grad_steps=3), [8]).mean().backward()
    assert noise.grad is not None and float(noise.grad[:, :, 1:].abs().sum()) > 0
    assert float(noise.grad[:, :, 0].abs().sum()) == 0  # frame 0's noise is replaced by the image
    with torch.no_grad():
        assert not bb.denoise(cond, 3, generator=g, grad_steps=0).requires_grad


def test_tuning_changes_only_lora_and_round_trips(ltx_dir, image, small_vcd, toy_clip, tmp_path):
    bb = LTXBackbone(load_ltx(ltx_dir, cache=None), clip=toy_clip)
    before = {n: p.detach().clone() for n, p in bb.denoiser.named_parameters()}
    base_video = sample_i2v(bb, image, N, S, S, steps=2, seed=1, prompt="a red ball")
    # Deterministic objective (fixed noise, all frames 2..N) with the graph through both steps of
    # this 2-step sampler, so a few AdamW steps must lower it.
    cfg = I2VTuneConfig(steps=3, lora_rank=4, lr=2e-3, num_frames=N, height=S, width=S,
                        inference_steps=2, grad_steps=2, decode_frames=N - 1, resample_noise=False,
                        eval_every=0, seed=1)
    tlog = tune_i2v(bb, [image], cfg, prompts=["a red ball"], vcd_fn=small_vcd, out=tmp_path)
    assert tlog.vcd[-1] < tlog.vcd[0], tlog.vcd
    assert {"vcd", "fidelity", "motion"} <= set(tlog.probe[-1])
    # The base probe is this same prompted sample (seed 1): the prompt reached the tuning loop.
    assert tlog.probe[0]["motion"] == pytest.approx(motion_amount(base_video), rel=1e-6)
    after = dict(bb.denoiser.named_parameters())
    assert [n for n, p in after.items() if n in before and not torch.equal(p, before[n])] == []
    assert any(float(p.detach().abs().sum()) > 0 for n, p in after.items() if "lora_B" in n)
    base, tuned = ab_sample(bb, image, seed=1, steps=2, num_frames=N, height=S, width=S,
                            prompt="a red ball")
    assert np.array_equal(base, base_video) and not np.array_equal(base, tuned)
    tensors, lcfg, run_cfg = read_lora(tmp_path / "lora.safetensors")
    assert run_cfg["backbone"] == "ltx-video" and run_cfg["prompts"] == ["a red ball"]
    assert run_cfg["tune"]["lora_targets"] == ["to_q", "to_k", "to_v", "to_out.0"]
    fresh = LTXBackbone(load_ltx(ltx_dir, cache=None))
    load_lora(tmp_path / "lora.safetensors", fresh.denoiser)
    assert np.array_equal(sample_i2v(fresh, image, N, S, S, steps=2, seed=1, prompt="a red ball"),
                          tuned)
    assert json.loads((tmp_path / "tune_log.json").read_text())["vcd"] == tlog.vcd


def test_backbone_is_chosen_from_the_folder_or_the_option(ltx_dir, tmp_path):
    from vcstudio.models.svd import build_tiny_svd

    svd_dir = build_tiny_svd(tmp_path / "svd")
    assert backbone_kind(str(ltx_dir)) == "ltx" and backbone_kind(str(svd_dir)) == "svd"
    assert backbone_kind(str(svd_dir), "ltx") == "ltx"  # an explicit choice wins
    assert backbone_kind("Lightricks/LTX-Video") == "ltx"
    assert backbone_kind("stabilityai/stable-video-diffusion-img2vid") == "svd"
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    with pytest.raises(InputError, match="StableDiffusionPipeline"):
        backbone_kind(str(tmp_path / "sd"))
    assert build_backbone(str(ltx_dir), device="cpu", cache=None).name == "ltx-video"
    assert build_backbone(str(svd_dir), device="cpu", cache=None).name == "stable-video-diffusion"


def test_missing_ltx_model_names_it(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="--model"):
        load_ltx(tmp_path / "nope", cache=None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="Lightricks/LTX-Video-not-here"):
        load_ltx("Lightricks/LTX-Video-not-here", cache=None)


def test_cli_i2v_writes_an_ltx_video(ltx_dir, image, tmp_path):
    from vcstudio.cli import main
    from PIL import Image

    from vcstudio.io import read_video

    Image.fromarray(image).save(tmp_path / "in.png")
    out = tmp_path / "out.mp4"
    rc = main(["i2v", "--model", str(ltx_dir), "--image", str(tmp_path / "in.png"), "--prompt",
               "a red ball", "--frames", str(N), "--height", str(S), "--width", str(S),
               "--steps", "2", "--device", "cpu", "--out", str(out)])
    assert rc == 0 and out.is_file()
    video = read_video(out)
    assert video.shape[0] == N and video.shape[1:3] == (S, S)
