"""DCT (seed 000): MS-Adapter, frequency-domain consistency loss, CLWS, the gradient path, the
Table-3 switches, tune -> delta -> load_tuned -> edit, and the CLI/bench wiring.

Tiny real models with random weights: the tiny SD of conftest, a tiny open_clip ViT registered
under its own name, VGG19 with random weights (``random_feature_weights``; the real weights are
not here). Every assertion holds for any weights.
"""
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from vcstudio.config import DataConfig, EditConfig, TuneConfig
from vcstudio.methods.clws import CLWS_NAMES, make_clws
from vcstudio.methods.dct import DCTConfig
from vcstudio.methods.freq_loss import freq_distance, low_frequency_share
from vcstudio.models.adapter import MSAdapter, install_ms_adapters
from vcstudio.run_context import RunContext

TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                            "head_width": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2,
                          "layers": 1}}
PROMPT = "a red circle moving right"


@pytest.fixture(scope="module")
def tiny_clip_name(tmp_path_factory):
    import open_clip

    d = tmp_path_factory.mktemp("oc")
    (d / "vcs-dct-clip.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(d)
    return "vcs-dct-clip"


def dct_cfg(model, tiny_clip_name, steps=2, size=32, frames=4, **dct):
    kw = dict(clip_model=tiny_clip_name, clip_pretrained="random", random_feature_weights=True,
              vgg_layers=("relu1_1", "relu2_1"), frames_per_step=1, warmup=0.0, t_max=1000)
    kw.update(dct)
    return TuneConfig(model=str(model), data=DataConfig(prompt=PROMPT, n_frames=frames, width=size,
                                                        height=size),
                      method="dct", steps=steps, lr=1e-3, checkpoint_every=0, inversion_steps=3,
                      dct=DCTConfig(**kw))


# ----------------------------------------------------------------------------- MS-Adapter

def test_adapter_is_identity_then_trains():
    torch.manual_seed(0)
    ad = MSAdapter(16, (0.25, 0.0625))
    assert [lin.out_features for lin in ad.down] == [4, 1]  # the two bottleneck widths
    x = torch.randn(3, 5, 16)
    assert torch.equal(ad(x), x)  # zero-init up projections: eq. 5 is the identity
    opt = torch.optim.SGD(ad.parameters(), lr=0.1)
    target = torch.randn(3, 5, 16)
    losses = []
    for _ in range(30):
        loss = ((ad(x) - target) ** 2).mean()
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(float(u.weight.detach().abs().sum()) > 0 for u in ad.up)
    assert all(float(dn.weight.grad.abs().sum()) > 0 for dn in ad.down)  # down trains too
    assert losses[-1] < 0.97 * losses[0], losses


def test_adapters_in_every_block_compose_with_temporal_wrapper(tiny_sd, cache):
    from vcstudio.models.adapter import adapters_of, transformer_blocks
    from vcstudio.models.inflate import VideoDenoiser
    from vcstudio.models.loading import load_base
    from vcstudio.models.temporal import TemporalBlock

    base = load_base(str(tiny_sd), cache=cache)
    vm = VideoDenoiser(base.unet).eval()
    names_before = {n for n, _ in vm.named_parameters()}
    x = torch.randn(1, 4, 3, 4, 4)
    cond = torch.randn(1, 77, base.unet.config.cross_attention_dim)
    with torch.no_grad():
        ref = vm(x, torch.tensor([500]), cond)
    blocks = transformer_blocks(vm.unet)
    wrapped = [m.block for m in vm.unet.modules() if isinstance(m, TemporalBlock)]
    assert blocks and all(any(b is w for w in wrapped) for b in blocks)
    added = install_ms_adapters(vm.unet, sites=("attn1", "ff"))
    assert len(added) == 2 * len(blocks) == len(adapters_of(vm))
    names = {n for n, _ in vm.named_parameters()}
    assert names_before < names  # nothing renamed (attn1.to_q patterns still match) ...
    assert all("ms_adapter" in n and ".block.ms_adapter_" in n for n in names - names_before)
    with torch.no_grad():
        same = vm(x, torch.tensor([500]), cond)
        assert torch.equal(same, ref)  # fresh adapters: the model is unchanged
        for site in ("ms_adapter_sa", "ms_adapter_ff"):  # ... and each site is in the forward
            ad = getattr(blocks[0], site)
            ad.up[0].weight.fill_(0.05)
            assert (vm(x, torch.tensor([500]), cond) - ref).abs().max() > 1e-4, site
            ad.up[0].weight.zero_()


# ----------------------------------------------------------------------------- eq. 7 / 10

def test_freq_distance_is_eq10_split_into_amplitude_and_phase():
    g = torch.Generator().manual_seed(0)
    p, t = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 8, 8, generator=g)
    fp, ft = torch.fft.fft2(p), torch.fft.fft2(t)
    literal = ((fp - ft).abs() ** 2).sum((1, 2, 3)) / (ft.abs() ** 2).sum((1, 2, 3))
    assert math.isclose(float(freq_distance(p, t)), float(literal.mean()), rel_tol=1e-4)
    assert float(freq_distance(t, t)) < 1e-6
    # a circular shift keeps every amplitude and changes only phases
    shifted = torch.roll(t, shifts=(2, 3), dims=(-2, -1))
    amp_only = float(freq_distance(shifted, t, phase_weight=0.0))
    both = float(freq_distance(shifted, t, phase_weight=1.0))
    assert amp_only < 1e-6 and both > 0.5


def _wave(freq: float, size: int = 16, channels: int = 4) -> torch.Tensor:
    """(1, C, size, size) cosine of ``freq`` cycles per map along x (+ a DC offset)."""
    x = torch.arange(size, dtype=torch.float32)
    row = torch.cos(2 * math.pi * freq * x / size)
    return (2.0 + row.expand(size, size)).expand(1, channels, size, size).clone()


def test_low_frequency_share_separates_coarse_from_fine():
    assert float(low_frequency_share(_wave(1))) > 0.99  # 1 cycle: all coarse (DC ignored)
    assert float(low_frequency_share(_wave(7))) < 0.01  # 7 of 8 possible: all fine
    assert float(low_frequency_share(torch.ones(1, 2, 8, 8))) == 0.5  # nothing but DC


# ----------------------------------------------------------------------------- CLWS

def test_every_clws_returns_convex_weights():
    rng = np.random.default_rng(0)
    for name in CLWS_NAMES:
        sched = make_clws(name)
        for t in (0, 250, 500, 999):
            feats = {"sem": [torch.from_numpy(rng.normal(size=(2, 8, 7, 7))).float()],
                     "tex": [torch.from_numpy(rng.normal(size=(2, 4, 16, 16))).float()]}
            w_sem, w_tex = sched.weights(3, t, feats)
            assert 0.0 <= w_sem <= 1.0 and 0.0 <= w_tex <= 1.0, (name, t)
            assert math.isclose(w_sem + w_tex, 1.0, abs_tol=1e-9), (name, t)


def test_timestep_clws_put_semantics_first():
    lin, exp, gau = make_clws("linear"), make_clws("exponential"), make_clws("gaussian")
    assert lin.weights(0, 999, None)[0] == pytest.approx(1.0)
    assert lin.weights(0, 0, None)[0] == pytest.approx(0.0)
    assert lin.weights(0, 333, None)[0] == pytest.approx(333 / 999)
    for s in (exp, gau):
        a = [s.weights(0, t, None)[0] for t in (0, 200, 400, 600, 800, 999)]
        assert all(x < y for x, y in zip(a, a[1:])), (s.name, a)  # semantic weight grows with t
        assert a[-1] == pytest.approx(1.0)
    assert exp.weights(0, 0, None)[0] == pytest.approx(math.exp(-3.0))
    assert gau.weights(0, 0, None)[0] == pytest.approx(math.exp(-1 / (2 * 0.4 ** 2)))
    assert make_clws("constant", constant=0.3).weights(7, 123, None) == pytest.approx((0.3, 0.7))


@pytest.mark.parametrize("name", ["fourier", "mul-fourier"])
def test_fourier_clws_follow_where_the_energy_is(name):
    sched = make_clws(name)
    mid_tex = [_wave(4, 16)]
    a_coarse_sem = sched.weights(0, 500, {"sem": [_wave(1, 16)], "tex": mid_tex})[0]
    a_fine_sem = sched.weights(0, 500, {"sem": [_wave(7, 16)], "tex": mid_tex})[0]
    assert a_coarse_sem > a_fine_sem + 0.3, (a_coarse_sem, a_fine_sem)  # structure -> semantic
    mid_sem = [_wave(4, 16)]
    a_fine_tex = sched.weights(0, 500, {"sem": mid_sem, "tex": [_wave(7, 16)]})[0]
    a_coarse_tex = sched.weights(0, 500, {"sem": mid_sem, "tex": [_wave(1, 16)]})[0]
    assert a_fine_tex < a_coarse_tex - 0.3, (a_fine_tex, a_coarse_tex)  # detail -> texture


def test_multiscale_fourier_sees_what_one_scale_cannot():
    """Both semantic maps are all below the cutoff at full scale (single-scale Fourier cannot
    tell them apart); after 2x/4x pooling only the very coarse one still is (eq. 6)."""
    tex = [_wave(6, 32)]
    one, mul = make_clws("fourier"), make_clws("mul-fourier")
    very_coarse = {"sem": [_wave(1, 32)], "tex": tex}
    near_cutoff = {"sem": [_wave(7, 32)], "tex": tex}
    assert one.weights(0, 0, very_coarse)[0] == pytest.approx(one.weights(0, 0, near_cutoff)[0])
    assert mul.weights(0, 0, very_coarse)[0] > mul.weights(0, 0, near_cutoff)[0] + 0.05


# ----------------------------------------------------------------------------- gradient path

def _build(tiny_sd, cache, cfg):
    """The model + method exactly as tune() builds them."""
    from vcstudio.device import precision_for
    from vcstudio.models.loading import load_base
    from vcstudio.pipelines.tune.loop import build_video_model

    base = load_base(str(tiny_sd), cache=cache)
    torch.manual_seed(0)
    model, method, _ = build_video_model(base, cfg, precision_for(torch.device("cpu")))
    return base, model.train(), method


def _step_state(tiny_sd, cache, cfg, clip, t=300):
    """Build as tune() does and run one training forward at timestep t."""
    from vcstudio.methods.base import StepState
    from vcstudio.models.diffusion_math import add_noise, alphas_cumprod, training_target
    from vcstudio.models.encode import encode_prompts, encode_video

    base, model, method = _build(tiny_sd, cache, cfg)
    lat = encode_video(base, clip)
    emb = encode_prompts(base, [PROMPT])
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(lat.shape, generator=g)
    ts = torch.tensor([t])
    a = alphas_cumprod(base.scheduler_config)[ts]
    noisy = add_noise(lat, noise, a)
    pred = model(noisy, ts, emb)
    real = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255
    s = StepState(step=0, total=10, model=model, base=base, latents=lat, noise=noise,
                  noisy=noisy, timesteps=ts, alpha_bar=a, text_emb=emb, pred=pred,
                  target=training_target(base.prediction_type, lat, noise, a), frames=real,
                  prediction_type=base.prediction_type, generator=g)
    return model, method, s


def _grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
            for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("which", ["semantic", "texture"])
def test_consistency_terms_alone_move_the_trainable_tensors(tiny_sd, cache, tiny_clip_name,
                                                           which):
    """A public DCT release computed these features under no_grad on the noised input, so its
    extra losses never changed a weight. Ours reach q projections, temporal layers and adapters,
    and change the update relative to the baseline's denoising loss alone."""
    from vcstudio.io.synthetic import moving_shape_clip

    clip = moving_shape_clip(4, 32, dx=3.0)
    cfg = dct_cfg(tiny_sd, tiny_clip_name, semantic=which == "semantic",
                  texture=which == "texture")
    model, method, s = _step_state(tiny_sd, cache, cfg, clip)
    extra = method.extra_losses(s)
    logs = method.after_step(s)
    assert set(extra) == {"cons"} and ("l_sem" in logs) == (which == "semantic")
    assert ("l_tex" in logs) == (which == "texture") and logs["l_cons"] > 0
    g_cons = _grads(model, extra["cons"])
    moved = {n for n, g in g_cons.items() if float(g.abs().sum()) > 0}
    assert any("attn1.to_q" in n for n in moved) and any("attn2.to_q" in n for n in moved)
    assert any("ms_adapter" in n and ".up." in n for n in moved)
    assert any("temporal" in n and "to_out" in n for n in moved)
    base_loss = method.denoise_loss(s)
    g_base = _grads(model, base_loss)
    g_total = _grads(model, base_loss + extra["cons"])
    diff = sum(float((g_total[n] - g_base[n]).abs().sum()) for n in g_base)
    ref = sum(float(g.abs().sum()) for g in g_base.values())
    assert diff > 1e-3 * ref, (diff, ref)


def test_consistency_loss_vanishes_at_the_true_x0(tiny_sd, cache, tiny_clip_name):
    """Targets are the clip latents through the same decode: a perfect x0 costs nothing."""
    from vcstudio.io.synthetic import moving_shape_clip

    clip = moving_shape_clip(4, 32, dx=3.0)
    model, method, s = _step_state(tiny_sd, cache, dct_cfg(tiny_sd, tiny_clip_name), clip)
    assert float(method.extra_losses(s)["cons"]) > 1e-3
    s._x0 = s.latents.clone()
    assert float(method.extra_losses(s)["cons"]) < 1e-5


def test_stepwise_schedule_and_frame_subset(tiny_sd, cache, tiny_clip_name):
    from vcstudio.io.synthetic import moving_shape_clip

    clip = moving_shape_clip(4, 32, dx=3.0)
    cfg = dct_cfg(tiny_sd, tiny_clip_name, warmup=0.3, t_max=400, frames_per_step=3)
    model, method, s = _step_state(tiny_sd, cache, cfg, clip, t=300)
    for step, t, on in ((0, 300, False), (2, 300, False), (3, 300, True), (3, 399, True),
                        (3, 400, False), (9, 999, False)):
        s2 = dataclasses.replace(s, step=step, timesteps=torch.tensor([t]))
        assert (method.active(s2) is not None) == on, (step, t)
        assert (method.extra_losses(s2) != {}) == on
    picks = [method.pick_frames(4) for _ in range(20)]
    assert all(len(p) == 3 and p == sorted(set(p)) for p in picks) and len(set(map(tuple, picks))) > 1
    state = method.state_dict()
    nxt = method.pick_frames(4)
    method.load_state_dict(state)  # resume replays the same frame draws
    assert method.pick_frames(4) == nxt


def test_offline_defaults_fall_back_to_labelled_stand_ins(monkeypatch):
    """Without VGG19 / ViT-B-32 weights (offline), the default DCT config still runs: the
    pretrained EfficientNet-Lite0 and the embedded toy CLIP stand in, named as such, and the
    CLIP token grid passes gradients back to the pixels."""
    from vcstudio.errors import ModelNotFoundError
    from vcstudio.methods.dct import load_semantic_net, load_texture_net
    from vcstudio.models.clip import TOY_CLIP_NAME
    from vcstudio.models.vgg import find_vgg19_weights

    try:
        find_vgg19_weights()
        pytest.skip("VGG19 weights are installed here: nothing falls back")
    except ModelNotFoundError:
        pass
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tex = load_texture_net(DCTConfig(), torch.device("cpu"))
    assert tex.name == "efficientnet-lite0 (offline stand-in)"
    assert tex.layers == ("stem", "stage2", "stage3", "stage5")  # strides of relu1_1..relu4_1
    sem = load_semantic_net(DCTConfig(), torch.device("cpu"))
    assert sem.name in (TOY_CLIP_NAME, "open_clip ViT-B-32/openai")
    x = torch.rand(1, 3, 48, 48, requires_grad=True)
    grid = sem.image_tokens(x)
    assert grid.ndim == 4 and grid.shape[-1] == grid.shape[-2] > 1
    grid.square().mean().backward()
    assert float(x.grad.abs().sum()) > 0


# ----------------------------------------------------------------------------- Table 3

TABLE3 = {"baseline": (False, False, False), "MS": (True, False, False),
          "S": (False, True, False), "T": (False, False, True), "MS+S": (True, True, False),
          "MS+T": (True, False, True), "S+T": (False, True, True), "DCT": (True, True, True)}


@pytest.mark.slow  # ~15 s: nine model builds
def test_table3_switches_build_exactly_the_named_parts(tiny_sd, cache, tiny_clip_name):
    """Each row's model holds exactly its parts: adapters iff MS, CLIP iff S, VGG iff T, and
    otherwise the baseline's trainable set; its loss terms are exactly the ones it names."""
    from vcstudio.io.synthetic import moving_shape_clip

    clip = moving_shape_clip(2, 32, dx=3.0)
    _, _, s = _step_state(tiny_sd, cache, dct_cfg(tiny_sd, tiny_clip_name), clip)  # one forward
    baseline_cfg = dataclasses.replace(dct_cfg(tiny_sd, tiny_clip_name), method="baseline")
    _, model, _ = _build(tiny_sd, cache, baseline_cfg)
    baseline_names = {n for n, p in model.named_parameters() if p.requires_grad}
    for row, (ms, sem, tex) in TABLE3.items():
        cfg = dct_cfg(tiny_sd, tiny_clip_name, adapter=ms, semantic=sem, texture=tex)
        _, model, method = _build(tiny_sd, cache, cfg)
        trained = {n for n, p in model.named_parameters() if p.requires_grad}
        adapter_names = {n for n, _ in model.named_parameters() if "ms_adapter" in n}
        assert bool(adapter_names) == ms and adapter_names <= trained, row
        assert trained - adapter_names == baseline_names, row
        method.load_feature_nets()  # what tuning does at its first consistency step
        info = method.summary()
        assert (method.semantic is not None) == sem and (method.texture is not None) == tex, row
        assert (info["semantic_net"] is not None, info["texture_net"] is not None) == (sem, tex)
        extra = method.extra_losses(s)  # the terms depend on the prediction, not on the model
        logs = method.after_step(s)
        assert bool(extra) == (sem or tex), row
        assert ("l_sem" in logs, "l_tex" in logs) == (sem, tex), row
        if sem and tex:
            assert 0.0 <= logs["alpha"] <= 1.0
        elif sem or tex:
            assert logs["alpha"] == (1.0 if sem else 0.0), row


def test_cli_flags_map_onto_the_dct_config():
    from vcstudio.cli import build_parser, tune_config_from_args

    p = build_parser()
    a = p.parse_args(["tune", "--video", "x.mp4", "--prompt", "p", "--method", "dct",
                      "--no-adapter", "--no-texture", "--clws", "gaussian"])
    cfg = tune_config_from_args(a)
    assert cfg.method == "dct" and cfg.dct.clws == "gaussian"
    assert (cfg.dct.adapter, cfg.dct.semantic, cfg.dct.texture) == (False, True, False)
    full = tune_config_from_args(p.parse_args(["tune", "--video", "x.mp4", "--prompt", "p",
                                               "--method", "dct"]))
    assert (full.dct.adapter, full.dct.semantic, full.dct.texture) == (True, True, True)
    assert full.dct.clws == "mul-fourier"


# ----------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_tune_dct_saves_adapters_and_edits(tiny_sd, cache, tiny_clip_name, tmp_path):
    from vcstudio.io.synthetic import moving_shape_clip
    from vcstudio.models.delta import load_tensors
    from vcstudio.pipelines.edit.edits import edit_frames
    from vcstudio.pipelines.tune.loop import load_tuned, tune

    clip = moving_shape_clip(4, 32, dx=3.0)
    cfg = dct_cfg(tiny_sd, tiny_clip_name, steps=3, frames_per_step=2)
    seen = []
    res = tune(cfg, tmp_path / "run", frames=clip, run=RunContext(
        progress=lambda ev: seen.append(ev.metrics or {}) if ev.stage == "tune" else None,
        cache=cache))
    assert any({"l_sem", "l_tex", "alpha", "l_cons", "loss"} <= set(m) for m in seen)
    losses = json.loads((res.run_dir / "losses.json").read_text())
    assert len(losses) == 3
    assert all({"alpha", "l_sem", "l_tex", "l_cons", "cons"} <= set(r) for r in losses)
    assert (res.run_dir / "clws_alpha.png").read_bytes()[:4] == b"\x89PNG"
    meta = json.loads((res.run_dir / "meta.json").read_text())
    assert meta["method_summary"]["texture_net"] == "vgg19 (random weights)"
    tensors, _ = load_tensors(res.run_dir / "delta.safetensors")
    ad = {k: v for k, v in tensors.items() if "ms_adapter" in k}
    assert ad and any(".up." in k and float(v.abs().sum()) > 0 for k, v in ad.items())
    tuned = load_tuned(res.run_dir, cache)
    named = dict(tuned.model.named_parameters())
    assert all(torch.equal(named[k], v) for k, v in ad.items())
    frames = edit_frames(tuned, EditConfig(prompt="a blue square moving right", steps=3))
    assert frames.shape == clip.shape and frames.dtype == np.uint8


@pytest.mark.slow
def test_bench_tune_dct_runs_on_cpu(capsys):
    from vcstudio.cli import main

    assert main(["bench", "tune", "--method", "baseline,dct", "--arch", "tiny", "--frames", "4",
                 "--size", "64", "--steps", "2", "--warmup", "1", "--dct-frames", "1",
                 "--dct-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "tune/baseline" in out and "tune/dct" in out
