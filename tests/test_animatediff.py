"""The AnimateDiff route (TuneConfig.temporal = "animatediff"): diffusers' UNetMotionModel built
with from_unet2d from the base U-Net and a MotionAdapter (a tiny one of the real class, laid out
for the tiny SD U-Net), under the same VideoDenoiser, tuning, deltas, edits, long video, DCT and
APLA as vcstudio's own temporal layers."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vcstudio.config import DataConfig, EditConfig, LongConfig, TuneConfig
from vcstudio.methods.apla import APLAConfig
from vcstudio.methods.dct import DCTConfig
from vcstudio.device import precision_for
from vcstudio.errors import InputError, ModelNotFoundError
from vcstudio.models.cache import ModelCache
from vcstudio.models.inflate import VideoDenoiser
from vcstudio.models.loading import load_base
from vcstudio.pipelines.tune.loop import build_video_model, load_tuned, tune
from vcstudio.run_context import RunContext

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")
PROMPT = "a red circle moving right"


def tiny_adapter(**kw):
    """A MotionAdapter for the tiny SD U-Net (blocks 32, 64; one layer each; 8 GroupNorm groups)
    with random weights everywhere, output projections included: a stand-in for pretrained
    motion modules."""
    from diffusers import MotionAdapter

    torch.manual_seed(0)
    args = dict(block_out_channels=(32, 64), motion_layers_per_block=1, motion_norm_num_groups=8,
                motion_num_attention_heads=4, motion_max_seq_length=16)
    return MotionAdapter(**{**args, **kw})


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("motion-adapter")
    tiny_adapter().save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def base(tiny_sd):
    return load_base(str(tiny_sd), CPU, cache=ModelCache())


def ad_cfg(model, adapter="", steps=4, frames=4, size=64, **kw):
    return TuneConfig(model=str(model), data=DataConfig(prompt=PROMPT, n_frames=frames,
                                                        width=size, height=size),
                      temporal="animatediff", motion_adapter=str(adapter), steps=steps, lr=3e-3,
                      checkpoint_every=0, inversion_steps=4, **kw)


def test_video_unet_is_diffusers_motion_unet_with_the_adapters_modules(base, adapter_dir):
    from diffusers import MotionAdapter, UNetMotionModel

    from vcstudio.models.attention import SparseCausalAttnProcessor

    model, _, names = build_video_model(base, ad_cfg(base.model_id, adapter_dir),
                                        precision_for(CPU))
    assert isinstance(model.unet, UNetMotionModel) and model.route == "animatediff"
    adapter = MotionAdapter.from_pretrained(adapter_dir)
    ours = {k: v for k, v in model.unet.state_dict().items() if "motion_modules" in k}
    theirs = {f"{k}": v for k, v in adapter.state_dict().items() if "motion_modules" in k}
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    procs = model.unet.attn_processors
    sparse = {n for n, p in procs.items() if isinstance(p, SparseCausalAttnProcessor)}
    assert sparse and all(".attentions." in n and n.endswith("attn1.processor") for n in sparse)
    assert not any("motion_modules" in n for n in sparse)
    # trainable by default: the q projections and every motion-module tensor ("temporal")
    motion = {n for n, _ in model.named_parameters() if "motion_modules" in n}
    assert motion <= set(names) and any(".attentions." in n and "to_q" in n for n in names)
    assert all("motion_modules" in n or "to_q" in n for n in names)
    # On a clip of one repeated frame sparse-causal attention is plain attention, so ours is
    # diffusers' own UNetMotionModel, which takes the text states per frame (B*F, tokens, dim).
    plain = UNetMotionModel.from_unet2d(base.unet, adapter).eval()
    x = torch.randn(2, 4, 1, 8, 8).repeat(1, 1, 3, 1, 1)
    e = torch.randn(2, 77, 32)
    t = torch.tensor([50, 600])
    with torch.no_grad():
        got = model.eval()(x, t, e)
        want = plain(x, t, e.repeat_interleave(3, dim=0)).sample
        flat = base.unet(x[:, :, 0], t, e).sample
    torch.testing.assert_close(got, want, atol=5e-4, rtol=1e-3)  # duplicated keys: rounding
    assert (got - flat[:, :, None]).abs().max() > 1e-2  # the pretrained-like modules act
    from diffusers.models.attention_processor import AttnProcessor2_0

    model.unet.set_attn_processor(AttnProcessor2_0())  # diffusers' own processors: exactly theirs
    with torch.no_grad():
        assert torch.equal(model(x, t, e), want)


def test_fresh_motion_modules_are_the_identity_and_sized_to_the_base(base):
    model, _, _ = build_video_model(base, ad_cfg(base.model_id, ""), precision_for(CPU))
    assert model.unet.config.block_out_channels == base.unet.config.block_out_channels
    x = torch.randn(1, 4, 1, 8, 8).repeat(1, 1, 5, 1, 1)
    e = torch.randn(1, 77, 32)
    with torch.no_grad():
        got = model.eval()(x, 300, e)
        want = base.unet(x[:, :, 0], 300, e).sample
    assert torch.allclose(got, want[:, :, None].expand_as(got), atol=1e-5)
    y = torch.randn(1, 4, 4, 8, 8)
    z = y.clone()
    z[:, :, 3] += 1.0
    with torch.no_grad():  # fresh: only sparse-causal attention mixes frames, forward in time
        a, b = model(y, 500, e), model(z, 500, e)
    assert torch.allclose(a[:, :, :3], b[:, :, :3], atol=1e-5)


def test_adapter_of_another_layout_is_a_one_line_error(base, tmp_path):
    prec = precision_for(CPU)
    for name, kw in (("three", dict(block_out_channels=(32, 64, 64))),
                     ("wide", dict(block_out_channels=(64, 128), motion_norm_num_groups=8)),
                     ("layers", dict(motion_layers_per_block=2))):
        tiny_adapter(**kw).save_pretrained(tmp_path / name)
        with pytest.raises(InputError, match="laid out for U-Net blocks") as e:
            build_video_model(base, ad_cfg(base.model_id, tmp_path / name), prec)
        assert "\n" not in str(e.value)
    with pytest.raises(ModelNotFoundError, match="not a diffusers MotionAdapter folder"):
        build_video_model(base, ad_cfg(base.model_id, tmp_path / "missing"), prec)
    with pytest.raises(ModelNotFoundError, match="--motion-adapter DIR"):  # offline hub id
        build_video_model(base, ad_cfg(base.model_id, "someone/motion-adapter"), prec)
    with pytest.raises(InputError, match="--temporal animatediff"):
        build_video_model(base, dataclasses.replace(ad_cfg(base.model_id, tmp_path / "three"),
                                                    temporal="vcstudio"), prec)
    model, _, _ = build_video_model(base, ad_cfg(base.model_id, ""), prec)
    with pytest.raises(InputError, match="32 frame positions"):
        model(torch.randn(1, 4, 33, 8, 8), 10, torch.randn(1, 77, 32))


def test_tuning_lowers_loss_changes_only_trainables_and_round_trips(tiny_sd, base, adapter_dir,
                                                                    clip8, tmp_path):
    from vcstudio.models.diffusion_math import add_noise, alphas_cumprod
    from vcstudio.pipelines.edit.edits import edit_frames
    from vcstudio.models.encode import encode_prompts, encode_video

    def fixed_loss(model, n=12):
        g = torch.Generator().manual_seed(123)
        ac = alphas_cumprod(base.scheduler_config)
        total = 0.0
        with torch.no_grad():
            for _ in range(n):
                noise = torch.randn(lat.shape, generator=g)
                t = torch.randint(0, 1000, (1,), generator=g)
                total += float(((model(add_noise(lat, noise, ac[t]), t, cond) - noise) ** 2).mean())
        return total / n

    clip = clip8[:4]
    lat, cond = encode_video(base, clip), encode_prompts(base, [PROMPT])
    cfg = ad_cfg(tiny_sd, adapter_dir, steps=20, frames=4)
    torch.manual_seed(cfg.seed)
    before_model, _, _ = build_video_model(base, cfg, precision_for(CPU))
    before = {n: p.detach().clone() for n, p in before_model.named_parameters()}
    loss0 = fixed_loss(before_model.eval())
    c = ModelCache()
    res = tune(cfg, tmp_path / "run", frames=clip, run=RunContext(cache=c))
    tuned = load_tuned(res.run_dir, c)
    assert fixed_loss(tuned.model) < 0.9 * loss0
    trained = {n for n, p in tuned.model.named_parameters() if p.requires_grad}
    changed = {n for n, p in tuned.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trained
    assert any("motion_modules" in n for n in changed) and any(".attentions." in n for n in changed)
    # delta round trip: a fresh process (new cache) loads the same tensors and the same edit
    again = load_tuned(res.run_dir, ModelCache())
    assert all(torch.equal(p, dict(again.model.named_parameters())[n])
               for n, p in tuned.model.named_parameters())
    ec = EditConfig(prompt="a blue square moving right", steps=4, seed=3)
    a = edit_frames(tuned, ec)
    assert a.shape == clip.shape and np.array_equal(a, edit_frames(again, ec))
    # long video: windows of 4 over 6 frames, co-denoised by the same model
    from vcstudio.pipelines.long.video import long_video

    out = long_video(res.run_dir, LongConfig(prompts=["a blue square"], frames=6, window=4,
                                             stride=2, steps=2), run=RunContext(cache=c))
    assert out.frames.shape == (6, 64, 64, 3)


def test_one_dct_step_trains_spatial_adapters_beside_the_motion_modules(base, clip8, tmp_path):
    import json

    import open_clip

    from vcstudio.models.adapter import MSAdapter
    from vcstudio.models.delta import load_tensors

    d = tmp_path / "oc"
    d.mkdir()
    (d / "vcs-ad-clip.json").write_text(json.dumps(
        {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32,
                                         "patch_size": 8, "head_width": 16},
         "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2,
                      "layers": 1}}))
    open_clip.add_model_config(d)
    dct = DCTConfig(clip_model="vcs-ad-clip", clip_pretrained="random", random_feature_weights=True,
                    vgg_layers=("relu1_1",), frames_per_step=1, warmup=0.0, t_max=1000)
    cfg = ad_cfg(base.model_id, "", steps=2, size=32, method="dct", dct=dct)
    model, _, _ = build_video_model(base, cfg, precision_for(CPU))
    from diffusers.models.attention import BasicTransformerBlock

    adapters = [m for n, m in model.named_modules() if isinstance(m, MSAdapter)]
    spatial = [m for m in base.unet.modules() if isinstance(m, BasicTransformerBlock)]
    assert len(adapters) == 2 * len(spatial)  # attn1 + ff of each spatial block, as in 2-D
    assert not any("motion_modules" in n for n, m in model.named_modules()
                   if isinstance(m, MSAdapter))
    res = tune(cfg, tmp_path / "run", frames=clip8[:4, :32, :32],
               run=RunContext(cache=ModelCache()), invert=False)
    assert {"l_cons", "loss"} <= set(res.losses[-1])
    tensors, _ = load_tensors(res.run_dir / "delta.safetensors")
    assert any("ms_adapter" in k and ".up." in k and float(v.abs().sum()) > 0
               for k, v in tensors.items())
    assert any("motion_modules" in k for k in tensors)


def test_one_apla_step_trains_the_vgt_on_the_motion_unet(base, clip8, tmp_path):
    from vcstudio.models.delta import load_tensors

    apla = dataclasses.replace(APLAConfig(), vgt_dim=32, vgt_layers=1, vgt_temporal_layers=1,
                               vgt_heads=2, vgt_patch=2)
    cfg = ad_cfg(base.model_id, "", steps=2, method="apla", apla=apla)
    c = ModelCache()
    res = tune(cfg, tmp_path / "run", frames=clip8[:4], run=RunContext(cache=c), invert=False)
    assert {"disc_loss", "vgt_ratio"} <= set(res.losses[-1]) and res.losses[-1]["vgt_ratio"] > 0
    tensors, _ = load_tensors(res.run_dir / "delta.safetensors")
    assert float(tensors["perturb.vgt.head.3.weight"].abs().max()) > 0
    assert any("motion_modules" in k for k in tensors)
    tuned = load_tuned(res.run_dir, c)
    assert isinstance(tuned.model, VideoDenoiser) and tuned.model.route == "animatediff"
    assert "vgt" in tuned.model.perturb


def test_pipeline_from_pretrained_on_the_animatediff_route(tiny_sd, adapter_dir):
    from vcstudio.pipelines.edit.video_pipeline import VideoEditPipeline

    pipe = VideoEditPipeline.from_pretrained(str(tiny_sd), temporal="animatediff",
                                             motion_adapter=str(adapter_dir))
    pipe.set_progress_bar_config(disable=True)
    x, e = torch.randn(1, 4, 3, 8, 8), torch.randn(1, 77, 32)
    with torch.no_grad():
        assert pipe.unet(x, 10, e).sample.shape == x.shape
    video = pipe("a red circle", num_frames=3, num_inference_steps=2, output_type="np").frames[0]
    assert video.shape == (3, 64, 64, 3)


def test_cli_flags_and_bench_row(adapter_dir, capsys):
    from vcstudio.cli import build_parser, main, tune_config_from_args

    a = build_parser().parse_args(["tune", "--prompt", "x", "--temporal", "animatediff",
                                   "--motion-adapter", str(adapter_dir)])
    cfg = tune_config_from_args(a)
    assert cfg.temporal == "animatediff" and cfg.motion_adapter == str(adapter_dir)
    assert tune_config_from_args(build_parser().parse_args(["tune", "--prompt", "x"])).temporal \
        == "vcstudio"
    rc = main(["bench", "tune", "--arch", "tiny", "--temporal", "animatediff", "--frames", "2",
               "--size", "32", "--steps", "1", "--warmup", "1", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0 and "tune/baseline [animatediff]" in out and "s_per_step" in out
