"""APLA (seed 003): VGT, hyper-loss, 1x1 discriminator, ablation switches, tune -> delta -> edit."""
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vcstudio.config import DataConfig, EditConfig, TuneConfig
from vcstudio.device import precision_for
from vcstudio.methods.apla import APLAConfig
from vcstudio.errors import InputError
from vcstudio.methods.apla import TABLE3, APLAMethod, vgt_ratio
from vcstudio.methods.base import StepState
from vcstudio.methods.discriminator import AdversarialTrainer, NoiseDiscriminator
from vcstudio.methods.hyper_loss import HyperLoss, perceptual_encoder
from vcstudio.models.diffusion_math import add_noise, alphas_cumprod, training_target
from vcstudio.models.vgt import build_vgt, preset_param_counts
from vcstudio.run_context import RunContext

CPU = torch.device("cpu")
TINY_VGT = dict(vgt_dim=32, vgt_layers=1, vgt_temporal_layers=1, vgt_heads=2, vgt_patch=2)


def apla_cfg(model="", steps=4, lr=1e-3, n_frames=4, **apla):
    a = dataclasses.replace(APLAConfig(), **{**TINY_VGT, **apla})
    return TuneConfig(model=str(model), data=DataConfig(prompt="a red circle moving right",
                                                        n_frames=n_frames, width=64, height=64),
                      method="apla", steps=steps, lr=lr, checkpoint_every=0, inversion_steps=4,
                      apla=a)


@pytest.fixture
def base(tiny_sd, cache):
    from vcstudio.models.loading import load_base

    return load_base(str(tiny_sd), CPU, cache=cache)


def build(base, cfg):
    from vcstudio.pipelines.tune.loop import build_video_model

    torch.manual_seed(0)
    return build_video_model(base, cfg, precision_for(CPU, "no"))


def step_state(model, base, seed=0, frames=4):
    """One training step's forward, exactly as the tuning loop builds it."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(1, 4, frames, 8, 8, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([500])
    a = alphas_cumprod(base.scheduler_config)[t]
    noisy = add_noise(x0, noise, a)
    text = torch.randn(1, 77, base.unet.config.cross_attention_dim, generator=g)
    pred = model(noisy, t, text)
    return StepState(step=0, total=1, model=model, base=base, latents=x0, noise=noise,
                     noisy=noisy, timesteps=t, alpha_bar=a, text_emb=text, pred=pred,
                     target=training_target(base.prediction_type, x0, noise, a),
                     frames=torch.zeros(frames, 3, 64, 64), prediction_type=base.prediction_type,
                     generator=g)


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def moved(before, model):
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


# ----------------------------------------------------------------------------------- VGT

def test_fresh_vgt_leaves_sampled_frames_unchanged(base):
    from vcstudio.models.encode import decode_latents, encode_prompts
    from vcstudio.pipelines.edit.sample import denoise

    model, method, _ = build(base, apla_cfg(vgt="hyper"))
    model.eval()
    # the VGT is really in the forward pass: its output is added (zero while fresh)
    outs = []
    model.perturb["vgt"].register_forward_hook(lambda m, a, o: outs.append(o))
    lat = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    cond, uncond = encode_prompts(base, ["a red circle"]), encode_prompts(base, [""])

    def sample():
        out = denoise(model, base.scheduler_config, lat, cond, uncond, 7.5, 3)
        return out, decode_latents(base, out)

    with_vgt, frames_with = sample()
    assert outs and float(outs[-1].abs().max()) == 0.0
    vgt = model.perturb.pop("vgt")
    without, frames_without = sample()
    torch.testing.assert_close(with_vgt, without, rtol=0, atol=1e-6)
    torch.testing.assert_close(frames_with, frames_without, rtol=0, atol=1e-6)
    # the same VGT with a non-zero last layer does change the samples
    nn.init.normal_(vgt.head[-1].weight, std=0.05)
    model.perturb["vgt"] = vgt
    assert float((sample()[0] - without).abs().max()) > 1e-3


@pytest.mark.parametrize("kind", ["pure", "hyper"])
def test_vgt_is_causal_over_frames(kind):
    """Changing frame 2 of 5 changes frames 2..4 only; the unmasked "-EN" variant leaks back."""
    torch.manual_seed(0)
    x = torch.randn(1, 4, 5, 8, 6)
    x2 = x.clone()
    x2[:, :, 2] += torch.randn_like(x2[:, :, 2])
    for mask in (True, False):
        vgt = build_vgt(kind, 4, dim=32, spatial_layers=1, temporal_layers=2, heads=2,
                        mask=mask).eval()
        nn.init.normal_(vgt.head[-1].weight, std=0.5)
        with torch.no_grad():
            d = (vgt(x2, 300) - vgt(x, 300)).abs().amax(dim=(0, 1, 3, 4))
        assert (d[2:] > 1e-3).all(), d
        if mask:
            assert (d[:2] < 1e-6).all(), d
        else:
            assert (d[:2] > 1e-4).all(), d


def test_vgt_shape_timestep_and_zero_start():
    torch.manual_seed(0)
    vgt = build_vgt("pure", 4, dim=32, spatial_layers=1, temporal_layers=1, heads=2, patch=2)
    x = torch.randn(2, 4, 3, 9, 7)  # odd sizes: padded to whole patches, cropped back
    with torch.no_grad():
        assert vgt(x, torch.tensor([10, 900])).shape == x.shape
        assert float(vgt(x, 500).abs().max()) == 0.0  # zero-initialised last layer
    nn.init.normal_(vgt.head[-1].weight, std=0.5)
    with torch.no_grad():
        a, b = vgt(x, torch.tensor([10, 10])), vgt(x, torch.tensor([10, 900]))
    assert torch.equal(a[0], b[0]) and float((a[1] - b[1]).abs().max()) > 1e-3


def test_param_counts_match_the_paper():
    counts = preset_param_counts("paper")
    assert abs(counts["pure"] / 60.362e6 - 1) < 0.005, counts
    assert abs(counts["hyper"] / 97.136e6 - 1) < 0.005, counts
    small = build_vgt("pure", 4, "small")
    assert small.param_count() == sum(p.numel() for p in small.parameters()) == \
        preset_param_counts("small")["pure"]


# --------------------------------------------------------------------------- hyper-loss

def test_hyper_loss_terms_have_known_values():
    enc = perceptual_encoder("efficientnet-lite0")
    g = torch.Generator().manual_seed(0)
    target = torch.randn(1, 4, 2, 16, 16, generator=g)
    hl = HyperLoss(alpha=1.0, beta=0.5, gamma=0.1, encoder=enc)
    zero, parts0 = hl(target.clone(), target)
    assert float(zero) == 0.0 and parts0["perceptual"] == 0.0
    pred = (target + 0.3).requires_grad_()
    loss, parts = hl(pred, target)
    assert parts["mse"] == pytest.approx(0.09, rel=1e-5)
    assert parts["l1"] == pytest.approx(0.3, rel=1e-5)
    assert parts["perceptual"] > 1e-4
    assert float(loss.detach()) == pytest.approx(0.09 + 0.5 * 0.3 + 0.1 * parts["perceptual"],
                                                 rel=1e-5)
    loss.backward()
    # the perceptual term sends its own gradient: it differs from the MSE + L1 gradient alone
    plain = 2 * 0.3 / pred.numel() + 0.5 / pred.numel()
    assert float((pred.grad - plain).abs().max()) > 1e-3 * plain


# -------------------------------------------------------------------------- discriminator

def test_discriminator_learns_and_reports_accuracy():
    torch.manual_seed(0)
    disc = NoiseDiscriminator(4)
    adv = AdversarialTrainer(disc, lr=1e-2)
    real = torch.randn(1, 4, 3, 8, 8)
    fake = torch.randn(1, 4, 3, 8, 8) + torch.tensor([0.8, 0, 0, -0.8]).view(1, 4, 1, 1, 1)
    first = adv.update(real, fake)
    for _ in range(60):
        logs = adv.update(real, fake)
    assert logs["disc_loss"] < first["disc_loss"] and logs["disc_loss"] < math.log(2)
    assert logs["disc_acc"] > 0.6
    assert all(p.grad is None for p in disc.parameters())  # nothing left for the main optimiser


def test_discriminator_optimiser_state_resumes_exactly():
    torch.manual_seed(0)
    real, fake = torch.randn(1, 4, 2, 4, 4), torch.randn(1, 4, 2, 4, 4) + 0.5
    a = AdversarialTrainer(NoiseDiscriminator(4), lr=1e-2)
    for _ in range(3):
        a.update(real, fake)
    b = AdversarialTrainer(NoiseDiscriminator(4), lr=1e-2)
    b.disc.load_state_dict(a.disc.state_dict())
    b.load_state_dict({k: v.clone() for k, v in a.state_dict().items()})
    assert a.state_dict() and all(torch.equal(v, b.state_dict()[k])
                                  for k, v in a.state_dict().items())
    a.update(real, fake)
    b.update(real, fake)
    for pa, pb in zip(a.disc.parameters(), b.disc.parameters()):
        assert torch.equal(pa, pb)


def test_generator_and_discriminator_losses_move_only_their_own_parameters(base):
    from vcstudio.pipelines.tune.loop import _optimizer

    cfg = apla_cfg(hyper_loss=False)
    model, method, names = build(base, cfg)
    disc_names = {n for n in names if n.startswith("aux.discriminator.")}
    gen_names = set(names) - disc_names
    assert disc_names and any(n.startswith("perturb.vgt.") for n in gen_names)
    # the tuning loop's optimiser holds EVERY trainable tensor, the discriminator's too
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(params, cfg, CPU)
    s = step_state(model, base)
    adv = method.extra_losses(s)["adv_g"]
    assert float(adv.detach()) > 0
    adv.backward()
    named = dict(model.named_parameters())
    assert all(named[n].grad is None for n in disc_names)
    assert named["perturb.vgt.head.3.weight"].grad.abs().sum() > 0
    assert any(named[n].grad is not None and named[n].grad.abs().sum() > 0
               for n in gen_names if n.startswith("unet."))
    before = snapshot(model)
    opt.step()
    opt.zero_grad(set_to_none=True)
    changed = moved(before, model)
    assert changed and changed <= gen_names and not changed & disc_names
    # the discriminator's own update moves the discriminator only
    before = snapshot(model)
    logs = method.after_step(s)
    assert set(logs) >= {"disc_loss", "disc_acc", "vgt_ratio"}
    assert moved(before, model) == disc_names
    assert all(named[n].grad is None for n in disc_names)


def test_vgt_ratio_is_logged():
    vgt, unet = torch.full((2, 2), 0.02), torch.full((2, 2), 2.0)
    assert vgt_ratio(vgt, unet + vgt) == pytest.approx(0.01)  # the prediction is their sum
    assert vgt_ratio(None, unet) is None


# ------------------------------------------------------------------------------- ablations

ROWS = dict(TABLE3)
ROWS["full, VGT-Hyper"] = ("hyper", True, True)


@pytest.mark.parametrize("row", list(ROWS))
def test_ablation_switches_give_exactly_the_named_parts(base, row):
    vgt, disc, hyper = ROWS[row]
    model, method, names = build(base, apla_cfg(vgt=vgt, discriminator=disc, hyper_loss=hyper))
    assert set(model.perturb) == ({"vgt"} if vgt != "none" else set())
    assert set(model.aux) == ({"discriminator"} if disc else set())
    if vgt != "none":
        assert type(model.perturb["vgt"].hyper).__name__ == (
            "CausalConv3dBlock" if vgt == "hyper" else "NoneType")
    assert any(n.startswith("perturb.vgt.") for n in names) == (vgt != "none")
    assert any(n.startswith("aux.discriminator.") for n in names) == disc
    s = step_state(model, base)
    mse = F.mse_loss(s.pred.float(), s.target.float())
    loss = method.denoise_loss(s)
    if hyper:
        assert float(loss) > float(mse) + 1e-4  # + beta L1 + gamma perceptual
    else:
        assert float(loss) == float(mse)
    assert set(method.extra_losses(s)) == ({"adv_g"} if disc else set())
    info = method.summary()
    assert ("vgt_params" in info) == (vgt != "none")
    assert ("discriminator_params" in info) == disc


def test_cli_flags_map_to_apla_config():
    from vcstudio.cli import build_parser, tune_config_from_args

    a = build_parser().parse_args(["tune", "--prompt", "x", "--method", "apla", "--vgt", "hyper",
                                   "--no-discriminator", "--no-hyper-loss", "--vgt-preset",
                                   "paper"])
    c = tune_config_from_args(a)
    assert (c.method, c.apla.vgt, c.apla.discriminator, c.apla.hyper_loss, c.apla.vgt_preset) \
        == ("apla", "hyper", False, False, "paper")
    d = tune_config_from_args(build_parser().parse_args(["tune", "--prompt", "x"])).apla
    assert (d.vgt, d.discriminator, d.hyper_loss) == ("pure", True, True)


def test_unknown_vgt_variant_is_a_user_error():

    with pytest.raises(InputError, match="pure, hyper or none"):
        APLAMethod(apla_cfg(vgt="tiny"))


# ----------------------------------------------------------------- tune -> delta -> edit

def test_tune_saves_vgt_and_discriminator_and_editing_applies_the_vgt(tiny_sd, clip8, tmp_path):
    from vcstudio.models.cache import ModelCache
    from vcstudio.models.delta import load_tensors
    from vcstudio.pipelines.edit.edits import edit_frames
    from vcstudio.runs.folder import RunFolder
    from vcstudio.pipelines.tune.loop import load_tuned, tune

    cache = ModelCache()
    res = tune(apla_cfg(tiny_sd, steps=4, lr=1e-2), tmp_path / "run", frames=clip8[:4],
               run=RunContext(cache=cache, device=CPU), invert=False)
    assert {"disc_loss", "disc_acc", "vgt_ratio", "adv_g", "mse", "l1", "perceptual"} <= \
        set(res.losses[-1])
    assert res.losses[-1]["vgt_ratio"] > 0  # the VGT has left zero
    tensors, _ = load_tensors(RunFolder(res.run_dir).delta_path)
    assert any(k.startswith("perturb.vgt.") for k in tensors)
    assert {k for k in tensors if k.startswith("aux.")} == {"aux.discriminator.conv.weight",
                                                          "aux.discriminator.conv.bias"}
    assert float(tensors["perturb.vgt.head.3.weight"].abs().max()) > 0
    info = RunFolder(res.run_dir).meta()["method_summary"]
    assert info["vgt_params"] == sum(v.numel() for k, v in tensors.items()
                                     if k.startswith("perturb.vgt."))

    tuned = load_tuned(res.run_dir, cache, CPU)
    vgt = tuned.model.perturb["vgt"]
    assert torch.equal(vgt.head[3].weight, tensors["perturb.vgt.head.3.weight"])
    ecfg = EditConfig(prompt="a blue square moving right", steps=4, guidance=5.0,
                      use_inversion=False)
    with_vgt = edit_frames(tuned, ecfg)
    tuned.model.perturb.pop("vgt")
    without = edit_frames(tuned, ecfg)
    tuned.model.perturb["vgt"] = vgt
    again = edit_frames(tuned, ecfg)
    assert np.array_equal(with_vgt, again)  # sampling is deterministic ...
    assert np.abs(with_vgt.astype(int) - without.astype(int)).max() > 0  # ... and uses the VGT


@pytest.mark.slow  # three tuning runs: ~60 s on the shared CPU
def test_resume_restores_the_discriminator_and_its_optimiser(tiny_sd, clip8, tmp_path, cache):
    """A run cancelled after 2 of 4 steps and resumed logs the same losses (discriminator's too)
    and saves the same delta as an uninterrupted run."""
    from vcstudio.errors import CancelledError
    from vcstudio.models.delta import load_tensors
    from vcstudio.runs.folder import RunFolder
    from vcstudio.pipelines.tune.loop import tune
    from vcstudio.progress import CancelToken

    cfg = apla_cfg(tiny_sd, steps=4, lr=1e-2, gamma=0.0, disc_lr=1e-2)
    frames = clip8[:4]
    full = tune(cfg, tmp_path / "a", frames=frames,
                run=RunContext(cache=cache, device=CPU), invert=False)
    token = CancelToken()
    prog = lambda ev: token.cancel() if ev.stage == "tune" and ev.step == 2 else None  # noqa
    with pytest.raises(CancelledError):
        tune(cfg, tmp_path / "b", frames=frames,
             run=RunContext(progress=prog, cancel=token, cache=cache, device=CPU), invert=False)
    ck, _ = load_tensors(RunFolder(tmp_path / "b").checkpoint_path)
    assert any(k.startswith("method/disc_opt/") for k in ck)
    resumed = tune(cfg, tmp_path / "b", frames=frames,
                   run=RunContext(cache=cache, device=CPU), invert=False)
    for key in ("loss", "adv_g", "disc_loss", "vgt_ratio"):
        assert [r[key] for r in resumed.losses] == pytest.approx([r[key] for r in full.losses],
                                                                 rel=1e-5), key
    da, _ = load_tensors(RunFolder(full.run_dir).delta_path)
    db, _ = load_tensors(RunFolder(resumed.run_dir).delta_path)
    for k in ("aux.discriminator.conv.weight", "perturb.vgt.head.3.weight"):
        torch.testing.assert_close(da[k], db[k], rtol=1e-5, atol=1e-7)


def test_apla_plus_dct_stacks_both_methods_parts(base):
    """apla+dct: VGT + discriminator + MS-Adapters in one model, APLA's hyper-loss as the
    denoising loss, DCT's consistency and APLA's adversarial terms both added, both after-step
    logs, both resume states."""
    from vcstudio.methods.dct import DCTConfig
    from vcstudio.methods.compose import ComposedMethod
    from vcstudio.methods.registry import get_method

    cfg = dataclasses.replace(apla_cfg(), method="apla+dct",
                              dct=DCTConfig(semantic=False, random_feature_weights=True,
                                            vgg_layers=("relu1_1",), frames_per_step=1,
                                            decode_size=32, warmup=0.0, t_max=1000))
    model, method, names = build(base, cfg)
    assert isinstance(method, ComposedMethod) and method.name == "apla+dct"
    assert set(model.perturb) == {"vgt"} and set(model.aux) == {"discriminator"}
    assert any(".adapters." in n or "adapter" in n for n in names)  # DCT's MS-Adapters train
    assert any(n.startswith("perturb.vgt.") for n in names)
    s = step_state(model, base)
    loss = method.denoise_loss(s)
    extra = method.extra_losses(s)
    assert set(extra) == {"adv_g", "cons"}
    (loss + sum(extra.values())).backward()
    logs = method.after_step(s)
    assert {"mse", "l1", "disc_loss", "l_tex"} <= set(logs)  # both methods' logs
    state = method.state_dict()
    assert any(k.startswith("apla/") for k in state) and "dct/frame_rng" in state
    info = method.summary()
    assert info["vgt_params"] > 0 and info["adapter_params"] > 0
    # only the combinable methods stack; two loss-replacing parts are refused
    with pytest.raises(InputError, match="combine"):
        get_method(dataclasses.replace(cfg, method="apla+fgbg"))
