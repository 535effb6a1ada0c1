"""The inflated U-Net: a one-frame clip equals the 2-D model; sparse-causal attention is causal."""
import pytest
import torch

from vcstudio.models.inflate import VideoDenoiser
from vcstudio.models.loading import load_base


@pytest.fixture
def base(tiny_sd, cache):
    return load_base(str(tiny_sd), cache=cache)


def test_one_frame_equals_2d_model(base):
    vd = VideoDenoiser(base.unet).eval()
    torch.manual_seed(0)
    x, e = torch.randn(2, 4, 1, 8, 8), torch.randn(2, 77, 32)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        got = vd(x, t, e)[:, :, 0]
        want = base.unet(x[:, :, 0], t, e).sample
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_multi_frame_identity_differs_only_through_sparse_attention(base):
    """Same frame repeated: sparse-causal keys are [f0, f_prev] = copies, so every frame equals
    the 2-D output of that frame (zero-init temporal attention adds nothing)."""
    vd = VideoDenoiser(base.unet).eval()
    x1 = torch.randn(1, 4, 1, 8, 8)
    x = x1.repeat(1, 1, 5, 1, 1)
    e = torch.randn(1, 77, 32)
    with torch.no_grad():
        got = vd(x, 300, e)
        want = base.unet(x1[:, :, 0], 300, e).sample
    assert torch.allclose(got, want[:, :, None].expand_as(got), atol=1e-5)


def test_causal_earlier_frames_ignore_later_ones(base):
    vd = VideoDenoiser(base.unet, temporal=False).eval()  # temporal attention is bidirectional
    x = torch.randn(1, 4, 4, 8, 8)
    e = torch.randn(1, 77, 32)
    y = x.clone()
    y[:, :, 3] += 1.0
    with torch.no_grad():
        a, b = vd(x, 500, e), vd(y, 500, e)
    assert torch.allclose(a[:, :, :3], b[:, :, :3], atol=1e-5)
    assert not torch.allclose(a[:, :, 3], b[:, :, 3], atol=1e-3)


def test_temporal_layer_mixes_frames_once_trained(base):
    vd = VideoDenoiser(base.unet).eval()
    for m in vd.modules():  # as if tuned: non-zero output projections
        if m.__class__.__name__ == "TemporalAttention":
            torch.nn.init.normal_(m.attn.to_out[0].weight, std=0.1)
    x = torch.randn(1, 4, 4, 8, 8)
    e = torch.randn(1, 77, 32)
    y = x.clone()
    y[:, :, 3] += 1.0
    with torch.no_grad():
        a, b = vd(x, 500, e), vd(y, 500, e)
    assert not torch.allclose(a[:, :, 0], b[:, :, 0], atol=1e-4)


def test_trainable_patterns_and_cached_base_untouched(base):
    before = {k: v.clone() for k, v in base.unet.state_dict().items()}
    vd = VideoDenoiser(base.unet)
    names = vd.mark_trainable(("attn1.to_q", "attn2.to_q", "temporal"))
    assert names and all(("to_q" in n) or ("temporal" in n) for n in names)
    assert any("temporal" in n for n in names) and any("attn2.to_q" in n for n in names)
    with torch.no_grad():
        for p in vd.parameters():
            p.add_(1.0)
    after = base.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # inflation works on a copy
