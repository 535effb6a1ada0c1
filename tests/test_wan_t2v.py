"""Wan2.1 T2V building blocks (issue 27's core): the backbone (clip latents, prompts, velocity,
x0, the shifted schedule, LoRA in diffusers' layout, estimates), one-shot LoRA tuning with the
rectified-flow loss, flow inversion + sampling, FlowEdit, DCT / APLA on the DiT."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vcstudio.errors import InputError
from vcstudio.models.wan import load_wan
from vcstudio.models.wan.t2v import WanT2VBackbone, shift_sigma
from vcstudio.pipelines.flow import ode as flow
from vcstudio.pipelines.flow.tune import FlowTuneConfig, held_out_loss, tune_lora

N, S = 9, 32  # 3 latent frames of 4 x 4

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clip():
    from vcstudio.io.synthetic import moving_shape_clip

    return moving_shape_clip(N, S, dx=2.0)


def backbone(folder) -> WanT2VBackbone:
    return WanT2VBackbone(load_wan(folder, "t2v", cache=None))


def test_clip_latents_prompts_velocity_and_schedule(tiny_wan_t2v, tiny_wan_i2v, clip):
    bb = backbone(tiny_wan_t2v)
    z = bb.encode_clip(clip)
    assert z.shape == (1, 16, 3, 4, 4) and torch.equal(z, bb.encode_clip(clip))  # mode: fixed
    frames = bb.decode(z)
    assert frames.shape == (N, 3, S, S) and torch.equal(bb.decode(z, [2, 7]), frames[[2, 7]])
    emb = bb.encode_prompts(["a red circle moving right", ""])
    assert emb.shape == (2, 512, 32)
    x = torch.randn_like(z)
    v = bb.predict(x, 0.7, emb[:1])
    assert v.shape == z.shape and torch.allclose(bb.x0(x, 0.7, v), x - 0.7 * v)
    assert torch.allclose(bb.add_noise(z, x, 0.7), 0.3 * z + 0.7 * x)
    assert torch.equal(bb.target(z, x), x - z)
    # the scheduler's own shifted schedule (UniPC, flow_shift 3), from ~1 down to 0
    from diffusers import UniPCMultistepScheduler

    ref = UniPCMultistepScheduler.from_config(bb.parts.scheduler.config)
    ref.set_timesteps(6)
    assert bb.shift == 3.0 and torch.allclose(bb.sigmas(6), torch.as_tensor(ref.sigmas).float())
    assert float(bb.sigmas(6)[-1]) == 0 and float(bb.sigmas(6)[0]) > 0.99
    g = torch.Generator().manual_seed(0)
    s = bb.train_sigmas(4000, g)
    assert 0 < float(s.min()) and float(s.max()) < 1
    # the shift puts more training draws at high noise: median 3 * 0.5 / (1 + 2 * 0.5) = 0.75
    assert float(s.median()) == pytest.approx(0.75, abs=0.02)
    assert float(shift_sigma(torch.tensor(0.25), 3.0)) == pytest.approx(0.5)
    bb.free_text_encoder()
    assert bb.parts.text_encoder is None and torch.equal(bb.encode_prompts([""]), emb[1:])
    with pytest.raises(InputError, match="Wan2.1 I2V model"):
        WanT2VBackbone(load_wan(tiny_wan_i2v, cache=None))


def test_frame_and_size_rules_are_one_line(tiny_wan_t2v, clip):
    bb = backbone(tiny_wan_t2v)
    with pytest.raises(InputError, match=r"got 8: use 5 or 9\.$"):
        bb.encode_clip(clip[:8])
    with pytest.raises(InputError, match=r"got 40x32: use 48x32\.$"):
        bb.check(9, 32, 40)


def test_tuning_moves_lora_lowers_the_loss_and_loads_in_diffusers(tiny_wan_t2v, clip, tmp_path):
    from diffusers import WanPipeline

    bb = backbone(tiny_wan_t2v)
    z = bb.encode_clip(clip)
    emb = bb.encode_prompts(["a red circle moving right"])
    before = held_out_loss(bb, z, emb)
    events = []
    cfg = FlowTuneConfig(steps=40, lr=5e-3, lora_rank=4, seed=0)
    res = tune_lora(bb, clip, "a red circle moving right", cfg, progress=events.append,
                    out=tmp_path)
    assert [e.step for e in events] == list(range(1, 41)) and "loss" in events[0].metrics
    assert bb.parts.text_encoder is None  # freed once the prompt was encoded
    after = held_out_loss(bb, res.latents, res.embeds)
    assert after < 0.9 * before, (before, after)
    lora_b = [p for n, p in bb.denoiser.named_parameters() if "lora_B" in n]
    assert lora_b and all(float(p.detach().abs().sum()) > 0 for p in lora_b)
    assert all(not p.requires_grad for n, p in bb.denoiser.named_parameters() if "lora_" not in n)
    pipe = WanPipeline.from_pretrained(tiny_wan_t2v)
    pipe.set_progress_bar_config(disable=True)
    kw = dict(prompt="a red circle moving right", height=S, width=S, num_frames=N,
              num_inference_steps=2, output_type="np")
    base = pipe(generator=torch.Generator().manual_seed(0), **kw).frames[0]
    pipe.load_lora_weights(str(res.lora))
    tuned = pipe(generator=torch.Generator().manual_seed(0), **kw).frames[0]
    assert np.abs(tuned - base).max() > 1e-3
    fresh = backbone(tiny_wan_t2v)
    assert fresh.load_lora(res.lora)["backbone"] == "wan2.1-t2v"
    assert torch.allclose(fresh.predict(z, 0.5, emb), bb.predict(z, 0.5, emb), atol=1e-5)


def test_inversion_then_sampling_reconstructs_the_clip_latents(tiny_wan_t2v, clip):
    bb = backbone(tiny_wan_t2v)
    z = bb.encode_clip(clip)
    emb = bb.encode_prompts(["a red circle moving right"])
    errs = []
    for steps in (4, 32):
        events = []
        x1 = flow.invert(bb, z, emb, steps, progress=events.append)
        assert [e.stage for e in events] == ["invert"] * steps
        assert float((x1 - z).abs().mean()) > float(z.abs().mean())  # far from the clip
        rec = flow.sample(bb, x1, emb, steps)  # same prompt, no guidance
        errs.append(float((rec - z).abs().mean()))
    # explicit Euler both ways: the error shrinks about as the step (8x the steps: ~1/7)
    assert errs[1] < 0.1 * float(z.abs().mean()) and errs[1] < 0.25 * errs[0], errs


def test_sampling_with_cfg_streams_previews(tiny_wan_t2v):
    bb = backbone(tiny_wan_t2v)
    emb = bb.encode_prompts(["a red circle", ""])
    x = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    events = []
    out = flow.sample(bb, x, emb[:1], 4, uncond=emb[1:], guidance=5.0, progress=events.append,
                      preview_every=2)
    assert [e.preview is not None for e in events] == [False, True, False, True]
    assert events[1].preview.shape == (1, S, S, 3) and events[1].preview.dtype == np.uint8
    plain = flow.sample(bb, x, emb[:1], 4)
    assert not torch.allclose(out, plain)  # guidance acts


def test_flowedit_same_prompt_returns_the_clip(tiny_wan_t2v, clip):
    bb = backbone(tiny_wan_t2v)
    z = bb.encode_clip(clip)
    src, tgt, neg = bb.encode_prompts(["a red circle moving right", "a blue square moving right",
                                       ""]).split(1)
    kw = dict(steps=10, n_max=7, generator=torch.Generator().manual_seed(0))
    same = flow.flow_edit(bb, z, src, src, neg, source_guidance=3.5, target_guidance=3.5, **kw)
    assert torch.allclose(same, z, atol=1e-5)
    events = []
    edited = flow.flow_edit(bb, z, src, tgt, neg, progress=events.append, preview_every=7, **kw)
    assert float((edited - z).abs().mean()) > 1e-4 and len(events) == 7
    assert events[-1].stage == "flowedit" and events[-1].preview is not None
    tail = flow.flow_edit(bb, z, src, tgt, neg, n_min=2, n_avg=2, **kw)  # then plain sampling
    assert tail.shape == z.shape and not torch.allclose(tail, edited)
    with pytest.raises(InputError, match="n_min <= n_max <= steps"):
        flow.flow_edit(bb, z, src, tgt, neg, steps=10, n_max=12)


def test_dct_and_apla_on_the_dit(tiny_wan_t2v, clip):
    from vcstudio.config import DataConfig, TuneConfig
    from vcstudio.methods.dct import DCTConfig
    from vcstudio.methods.clws import make_clws
    from vcstudio.methods.dct import DCTMethod
    from vcstudio.methods.dit import (MS_ADAPTER_ON_DIT, clws_weights, dct_consistency,
                                      vgt_velocity)
    from vcstudio.models.vgt import build_vgt

    bb = backbone(tiny_wan_t2v)
    params = bb.add_lora(4)
    z = bb.encode_clip(clip)
    emb = bb.encode_prompts(["a red circle moving right"])
    cfg = TuneConfig(data=DataConfig(prompt="x", n_frames=N, width=S, height=S), method="dct",
                     dct=DCTConfig(adapter=False, semantic=False, texture=True,
                                   random_feature_weights=True, frames_per_step=2,
                                   vgg_layers=("relu1_1", "relu2_1")))
    method = DCTMethod(cfg)
    sigma = torch.tensor([0.6])
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
    x_s = bb.add_noise(z, noise, sigma)
    v = bb.predict(x_s, sigma, emb)
    real = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255
    loss, logs = dct_consistency(method, bb, x_s, sigma, v, real, step=0)
    assert len(logs["frames"]) == 2 and float(loss.detach()) > 0
    loss.backward()
    assert any(float(p.grad.abs().sum()) > 0 for p in params if p.grad is not None)
    # CLWS schedules over sigma: the Gaussian weighting is all-semantic at the noisiest level
    gauss = make_clws("gaussian")
    assert clws_weights(gauss, 0, 1.0)[0] == pytest.approx(1.0)
    assert clws_weights(gauss, 0, 0.0)[0] < 0.1
    # APLA: the VGT's output adds to the velocity; fresh, it changes nothing
    vgt = build_vgt("pure", channels=16, dim=32, spatial_layers=1, temporal_layers=1, heads=2,
                    patch=2)
    assert torch.equal(vgt_velocity(vgt, x_s, sigma, v.detach()), v.detach())
    out = vgt_velocity(vgt, x_s, sigma, v.detach())
    out.sum().backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in vgt.parameters())
    assert MS_ADAPTER_ON_DIT.startswith("off")


def test_estimates_scale_with_the_clip(tiny_wan_t2v):
    bb = backbone(tiny_wan_t2v)
    small = bb.estimate(9, 32, 32)
    big = bb.estimate(25, 64, 64)
    assert big.seconds > small.seconds and big.peak_gib > small.peak_gib
    assert bb.estimate(9, 32, 32, "sample", 30).seconds > small.seconds
    assert "uncalibrated" in small.how
    with pytest.raises(InputError, match="train' or 'sample"):
        bb.estimate(9, 32, 32, "edit")
