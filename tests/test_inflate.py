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
    # temporal attention is bidirectional, and clip-wide GroupNorm statistics (Tune-A-Video's)
    # see every frame: sparse-causal attention alone is causal
    vd = VideoDenoiser(base.unet, temporal=False, groupnorm="frame").eval()
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


# ------------------------------------------------------------ clip-wide GroupNorm (issue 15.5)

def _zero_temporal(vd):
    for m in vd.modules():
        if m.__class__.__name__ == "TemporalAttention":
            assert float(m.attn.to_out[0].weight.detach().abs().max()) == 0.0  # zero-init: inert


def _reference_clip_gn_unet(unet, x5, t, e):
    """The 2-D U-Net with Tune-A-Video's statistics, written here from torch alone: every
    ResNet norm1/norm2 and conv_norm_out is torch's group_norm applied to the unfolded
    (B, C, F, H, W) tensor (groups over C/G, F, H, W); attention-block norms stay per frame.
    Sparse-causal attention keys from [first, previous] frame."""
    import torch.nn.functional as F
    from diffusers.models.attention_processor import AttnProcessor2_0
    from diffusers.models.resnet import ResnetBlock2D

    b, c, f, h, w = x5.shape
    hooks = []

    def gn_hook(mod, inp, out):
        xin = inp[0]
        n, ch, hh, ww = xin.shape
        x = xin.reshape(n // f, f, ch, hh, ww).permute(0, 2, 1, 3, 4)
        y = F.group_norm(x, mod.num_groups, mod.weight, mod.bias, mod.eps)
        return y.permute(0, 2, 1, 3, 4).reshape(n, ch, hh, ww)

    norms = [m.norm1 for m in unet.modules() if isinstance(m, ResnetBlock2D)]
    norms += [m.norm2 for m in unet.modules() if isinstance(m, ResnetBlock2D)]
    norms.append(unet.conv_norm_out)
    for nm in norms:
        hooks.append(nm.register_forward_hook(gn_hook))

    class Sparse(AttnProcessor2_0):  # keys/values of frame 0 and of the previous frame
        def __call__(self, attn, hs, encoder_hidden_states=None, attention_mask=None, **kw):
            n, tok, d = hs.shape
            q, k, v = attn.to_q(hs), attn.to_k(hs), attn.to_v(hs)
            prev = [max(i - 1, 0) for i in range(f)]

            def kv(z):
                z = z.view(n // f, f, tok, d)
                return torch.cat([z[:, [0] * f], z[:, prev]], 2).reshape(n, 2 * tok, d)

            k, v = kv(k), kv(v)
            hd = d // attn.heads
            q, k, v = (z.view(n, -1, attn.heads, hd).transpose(1, 2) for z in (q, k, v))
            o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, tok, d)
            return attn.to_out[1](attn.to_out[0](o))

    procs = {k: (Sparse() if k.endswith("attn1.processor") else AttnProcessor2_0())
             for k in unet.attn_processors}
    old = unet.attn_processors
    unet.set_attn_processor(procs)
    try:
        xf = x5.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        out = unet(xf, t.repeat_interleave(f), e.repeat_interleave(f, 0)).sample
    finally:
        for hk in hooks:
            hk.remove()
        unet.set_attn_processor(old)
    return out.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)


def test_clip_groupnorm_equals_torch_group_norm_over_the_clip(base):
    vd = VideoDenoiser(base.unet).eval()  # default: Tune-A-Video's clip-wide GroupNorm
    _zero_temporal(vd)
    from vcstudio.models.groupnorm import ClipGroupNorm

    clip = [n for n, m in vd.unet.named_modules() if isinstance(m, ClipGroupNorm)]
    assert "conv_norm_out" in clip and any("mid_block.resnets" in n for n in clip)
    assert any(n.startswith("up_blocks") and n.endswith("norm2") for n in clip)
    assert not any(".attentions." in n for n in clip)  # transformer input norms: per frame
    torch.manual_seed(3)
    x = torch.randn(2, 4, 4, 8, 8)
    x[:, :, 2] *= 3.0  # frames with different statistics: pooling them shows
    e, t = torch.randn(2, 77, 32), torch.tensor([40, 800])
    with torch.no_grad():
        got = vd(x, t, e)
        want = _reference_clip_gn_unet(base.unet, x, t, e)
        per_frame = VideoDenoiser(base.unet, groupnorm="frame").eval()(x, t, e)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    rel = float((per_frame - got).norm() / got.norm())
    assert rel > 0.01, rel  # the reference tells the two apart
    # one clip at a time gives the same numbers: a batch of 2 (CFG) is not pooled
    with torch.no_grad():
        one = vd(x[1:], t[1:], e[1:])
    torch.testing.assert_close(one, got[1:], atol=1e-5, rtol=1e-4)


def test_clip_groupnorm_one_frame_equals_2d_and_keeps_parameter_names(base):
    vd = VideoDenoiser(base.unet, groupnorm="clip").eval()
    x, e = torch.randn(2, 4, 1, 8, 8), torch.randn(2, 77, 32)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        got = vd(x, t, e)[:, :, 0]
        want = base.unet(x[:, :, 0], t, e).sample
    assert torch.allclose(got, want, atol=1e-5)
    names = {n for n, _ in vd.unet.named_parameters()}
    assert "conv_norm_out.weight" in names and "mid_block.resnets.0.norm1.bias" in names


def test_frame_positions_option_and_default_trainables(base):
    from vcstudio.config import DEFAULT_TRAINABLE

    x = torch.randn(1, 4, 3, 8, 8)
    e = torch.randn(1, 77, 32)
    outs = {}
    for pos in (False, True):
        torch.manual_seed(0)
        vd = VideoDenoiser(base.unet, frame_positions=pos).eval()
        for m in vd.modules():
            if m.__class__.__name__ == "TemporalAttention":
                assert m.positions is pos
                torch.nn.init.normal_(m.attn.to_out[0].weight, std=0.1)
        with torch.no_grad():
            outs[pos] = vd(x, 300, e)
    assert (outs[True] - outs[False]).abs().max() > 1e-4
    names = VideoDenoiser(base.unet).mark_trainable(DEFAULT_TRAINABLE)
    assert any(".temporal.attn.to_q" in n for n in names)
    assert not any(".temporal.norm." in n for n in names)  # TAV freezes norm_temp
    assert all(n.endswith(("to_q.weight", "to_q.bias")) or ".temporal.attn." in n for n in names)


def test_runs_without_the_fields_load_as_they_were_tuned(tmp_path):
    import yaml

    from vcstudio.config import TuneConfig, to_dict
    from vcstudio.runs.tav_import import load_run_config, load_tune_config

    d = to_dict(TuneConfig())
    assert d["groupnorm"] == "clip" and d["frame_positions"] is False
    for k in ("groupnorm", "frame_positions"):
        d.pop(k)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(d))
    old = load_run_config(tmp_path / "config.yaml")
    assert old.groupnorm == "frame" and old.frame_positions is True
    assert load_tune_config(tmp_path / "config.yaml").groupnorm == "clip"  # a new tune: default
