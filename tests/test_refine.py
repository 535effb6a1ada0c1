import pytest
import torch
from diffusers import DDIMScheduler

from vcstudio.errors import InputError
from vcstudio.pipelines.long.refine import (parse_scales, partial_timesteps, refine_plan,
                                            refine_timesteps, renoise, upsample_latents)


def test_parse_scales():
    assert parse_scales("256,512") == [256, 512]
    assert parse_scales("128, 256 ,512") == [128, 256, 512]
    with pytest.raises(InputError, match="multiples of 64"):
        parse_scales("256,500")
    with pytest.raises(InputError, match="increase"):
        parse_scales("512,256")
    with pytest.raises(InputError, match="like 256,512"):
        parse_scales("big")


def test_upsample_latents_shapes_and_frames_independent():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 3, 4, 4)
    y = upsample_latents(x, scale=2)
    assert y.shape == (1, 4, 3, 8, 8)
    # frame 1 alone gives the same result: frames never mix
    torch.testing.assert_close(upsample_latents(x[:, :, 1:2], size=(8, 8))[:, :, 0], y[:, :, 1])
    const = torch.full((2, 4, 5, 4, 6), 0.7)
    torch.testing.assert_close(upsample_latents(const, size=(8, 12), mode="bicubic"),
                               torch.full((2, 4, 5, 8, 12), 0.7))
    z = upsample_latents(x, scale=2, mode="nearest")
    torch.testing.assert_close(z[..., ::2, ::2], x)


def test_partial_timesteps():
    ts = list(range(900, -1, -100))  # 10 steps
    run, start = partial_timesteps(ts, 0.3)
    assert run == [200, 100, 0] and start == 7
    assert partial_timesteps(ts, 1.0) == (ts, 0)
    assert partial_timesteps(ts, 0.01)[0] == [0]  # at least one step
    with pytest.raises(InputError):
        partial_timesteps(ts, 0.0)


def test_refine_with_real_scheduler():
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear",
                          beta_start=0.00085, beta_end=0.012)
    run, start = refine_timesteps(sched, 50, 0.4)
    assert len(run) == 20 and start == 30
    assert run[0].item() == sched.timesteps[30].item() and run[-1].item() == sched.timesteps[-1].item()
    g = torch.Generator().manual_seed(0)
    x0 = torch.zeros(1, 4, 2, 4, 4)
    xt = renoise(sched, x0, run[0], g)
    a = sched.alphas_cumprod[run[0]]
    # x0 = 0 -> x_t = sqrt(1 - a_bar) * noise: std matches
    assert xt.std().item() == pytest.approx((1 - a).sqrt().item(), rel=0.25)


def test_refine_plan():
    plan = refine_plan([256, 512], 50, 0.5)
    assert plan == [{"size": 256, "latent": 32, "strength": 1.0, "steps": 50},
                    {"size": 512, "latent": 64, "strength": 0.5, "steps": 25}]
