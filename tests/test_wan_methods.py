"""DCT and APLA on the Wan2.1 DiT (issue 27 item 4; methods/dit.py): the terms move their
parameters, each switch removes its own term (the losses then equal the baseline's, same seed),
a run records backbone and method, APLA's VGT comes back for the edit, Compare takes
``dct@<wan folder>``; and the Wan estimates calibrated by earlier runs (item 7).

Tiny real models: conftest's WanPipeline folder, a tiny open_clip ViT under its own name, VGG19
with random weights (every assertion holds for any weights)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from vcstudio.cli import main
from vcstudio.config import DataConfig, TuneConfig
from vcstudio.methods.apla import APLAConfig
from vcstudio.methods.dct import DCTConfig

pytestmark = pytest.mark.usefixtures("one_thread")

W, H = 48, 32
PROMPT = "a red circle moving right"
TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                            "head_width": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2,
                          "layers": 1}}
TINY_VGT = dict(vgt_dim=32, vgt_layers=1, vgt_temporal_layers=1, vgt_heads=2, vgt_patch=2)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip

    frames = moving_shape_clip(9, W, dx=2.0)[:, :H]
    return write_mp4(frames, tmp_path_factory.mktemp("wanm") / "c.mp4")


@pytest.fixture(scope="module")
def tiny_clip_name(tmp_path_factory):
    import open_clip

    d = tmp_path_factory.mktemp("oc")
    (d / "vcs-wan-dct-clip.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(d)
    return "vcs-wan-dct-clip"


def cfg_for(model, clip, method="baseline", steps=3, dct=None, apla=None) -> TuneConfig:
    return TuneConfig(model=str(model), method=method, steps=steps, lr=5e-3, lora_rank=2,
                      checkpoint_every=0, seed=3,
                      data=DataConfig(video_path=str(clip), prompt=PROMPT, n_frames=9,
                                      stride=1, width=W, height=H),
                      dct=dct or DCTConfig(), apla=apla or APLAConfig())


def dct_settings(name, **kw) -> DCTConfig:
    base = dict(clip_model=name, clip_pretrained="random", random_feature_weights=True,
                vgg_layers=("relu1_1", "relu2_1"), frames_per_step=2, warmup=0.0, t_max=1000,
                decode_size=0, lam=1.0)
    return DCTConfig(**{**base, **kw})


def tune(cfg, out):
    from vcstudio.pipelines.flow.run import tune_flow

    return tune_flow(cfg, out)


def lora(run_dir) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "delta.safetensors"))


@pytest.fixture(scope="module")
def baseline(tiny_wan_t2v, clip, tmp_path_factory):
    return tune(cfg_for(tiny_wan_t2v, clip), tmp_path_factory.mktemp("b") / "run")


def test_dct_on_wan_moves_the_lora_and_logs_each_term(tiny_wan_t2v, clip, tiny_clip_name,
                                                      baseline, tmp_path):
    from vcstudio.runs.folder import RunFolder

    res = tune(cfg_for(tiny_wan_t2v, clip, "dct", dct=dct_settings(tiny_clip_name)),
               tmp_path / "dct")
    for r in res.losses:  # every step: both terms, the CLWS weight, lam x l_cons in the total
        assert r["l_sem"] > 0 and r["l_tex"] > 0 and 0 <= r["alpha"] <= 1
        assert r["l_cons"] == pytest.approx(r["alpha"] * r["l_sem"]
                                            + (1 - r["alpha"]) * r["l_tex"], rel=1e-4)
        assert r["cons"] == pytest.approx(r["l_cons"], rel=1e-5)  # lam = 1
        assert r["total"] == pytest.approx(r["loss"] + r["cons"], rel=1e-5)
    # the same seed draws the same noise and sigmas: the first step's denoising loss is the
    # baseline's, and the LoRA ends elsewhere only because of DCT's terms
    assert res.losses[0]["loss"] == pytest.approx(baseline.losses[0]["loss"], rel=1e-6)
    a, b = lora(res.run_dir), lora(baseline.run_dir)
    assert set(a) == set(b)
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert diff > 1e-4
    meta = RunFolder(res.run_dir).meta()
    assert meta["backbone"] == "wan" and meta["method"] == "dct"
    s = meta["method_summary"]
    assert s["semantic"] and s["texture"] and s["adapter"].startswith("off")
    assert any("MS-Adapter is off" in n for n in meta["notes"])
    assert (res.run_dir / "clws_alpha.png").is_file()
    assert not (res.run_dir / "method.safetensors").is_file()  # DCT adds no module on a DiT


def test_dct_on_wan_is_zero_at_the_true_x0_and_decodes_lone_latent_frames(tiny_wan_t2v, clip,
                                                                         tiny_clip_name):
    """The "decoded" target is the clip's own latents through the same lone-frame decode: the
    consistency loss vanishes when the velocity is the true one (x0 exact), and not otherwise;
    each latent frame decodes to one pixel frame at the decode size."""
    from vcstudio.io import read_video
    from vcstudio.methods.dct import DCTMethod
    from vcstudio.methods.dit import dct_consistency, predicted_frames
    from vcstudio.models.family import load_flow_backbone

    bb = load_flow_backbone(str(tiny_wan_t2v))
    z = bb.encode_clip(read_video(str(clip)))  # (1, 16, 3, 4, 6)
    m = DCTMethod(cfg_for(tiny_wan_t2v, clip, "dct", dct=dct_settings(tiny_clip_name,
                                                                      frames_per_step=3)))
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.4])
    x_s = bb.add_noise(z, noise, sigma)
    exact, logs = dct_consistency(m, bb, x_s, sigma, noise - z, step=0, clip_latents=z)
    assert logs["frames"] == [0, 1, 2] and float(exact) < 1e-6
    off, _ = dct_consistency(m, bb, x_s, sigma, noise - z + 0.5, step=0, clip_latents=z)
    assert float(off) > 1e-3
    assert predicted_frames(bb, x_s, sigma, noise - z, [2, 0]).shape == (2, 3, H, W)
    assert predicted_frames(bb, x_s, sigma, noise - z, [1], (2, 3)).shape == (1, 3, 16, 24)


@pytest.mark.parametrize("off, gone, kept", [
    ({"semantic": False}, "l_sem", "l_tex"),
    ({"texture": False}, "l_tex", "l_sem"),
])
def test_each_dct_switch_removes_its_term(tiny_wan_t2v, clip, tiny_clip_name, tmp_path, off,
                                          gone, kept):
    res = tune(cfg_for(tiny_wan_t2v, clip, "dct", steps=2,
                       dct=dct_settings(tiny_clip_name, **off)), tmp_path / "run")
    for r in res.losses:
        assert gone not in r and r[kept] > 0
        # the other term takes the whole weight (Table 3 "S" / "T")
        assert r["l_cons"] == pytest.approx(r[kept], rel=1e-6)
        assert r["alpha"] == (1.0 if kept == "l_sem" else 0.0)


def test_dct_with_both_losses_off_or_lam_zero_is_the_baseline(tiny_wan_t2v, clip,
                                                              tiny_clip_name, baseline,
                                                              tmp_path):
    for i, d in enumerate([dct_settings(tiny_clip_name, semantic=False, texture=False),
                           dct_settings(tiny_clip_name, lam=0.0)]):
        res = tune(cfg_for(tiny_wan_t2v, clip, "dct", dct=d), tmp_path / f"r{i}")
        assert [r["loss"] for r in res.losses] == pytest.approx(
            [r["loss"] for r in baseline.losses], rel=1e-6)
        assert not any("cons" in r for r in res.losses)


def test_clws_schedules_over_sigma_on_wan(tiny_wan_t2v, clip, tiny_clip_name, tmp_path):
    """A timestep CLWS reads sigma as the noise share: linear alpha = sigma exactly."""
    res = tune(cfg_for(tiny_wan_t2v, clip, "dct", steps=2,
                       dct=dct_settings(tiny_clip_name, clws="linear")), tmp_path / "run")
    for r in res.losses:
        assert r["alpha"] == pytest.approx(r["sigma"], abs=1e-6)
    # and the stepwise schedule's t_max in sigma: t_max 1 leaves no step with the terms
    res = tune(cfg_for(tiny_wan_t2v, clip, "dct", steps=2,
                       dct=dct_settings(tiny_clip_name, t_max=1)), tmp_path / "none")
    assert not any("cons" in r for r in res.losses)


def apla_settings(**kw) -> APLAConfig:
    return dataclasses.replace(APLAConfig(), **{**TINY_VGT, "perceptual_random_weights": True,
                                                "lam": 0.5, **kw})


def test_apla_on_wan_moves_the_vgt_and_the_discriminator(tiny_wan_t2v, clip, tmp_path):
    from vcstudio.models.delta import load_tensors
    from vcstudio.pipelines.flow.run import load_flow_run
    from vcstudio.runs.folder import RunFolder

    one = tune(cfg_for(tiny_wan_t2v, clip, "apla", steps=1, apla=apla_settings()),
               tmp_path / "one")
    res = tune(cfg_for(tiny_wan_t2v, clip, "apla", steps=4, apla=apla_settings()),
               tmp_path / "run")
    mods = load_tensors(res.run_dir / "method.safetensors")[0]
    first = load_tensors(one.run_dir / "method.safetensors")[0]
    head = [k for k in mods if k.startswith("vgt.head.3.")]
    assert head and all(float(mods[k].abs().max()) > 0 for k in head)  # started at zero
    disc = [k for k in mods if k.startswith("discriminator.")]
    assert disc and max(float((mods[k] - first[k]).abs().max()) for k in disc) > 1e-6
    for r in res.losses:
        assert r["loss"] == pytest.approx(r["mse"] + 0.5 * r["l1"] + 0.1 * r["perceptual"],
                                          rel=1e-4)  # the hyper-loss, eq. 18
        assert r["adv_g"] > 0 and 0 <= r["disc_acc"] <= 1 and r["disc_loss"] > 0
    assert res.losses[-1]["vgt_ratio"] > 0
    meta = RunFolder(res.run_dir).meta()
    assert meta["method"] == "apla" and meta["method_summary"]["vgt_params"] > 0
    # an edit's backbone gets the VGT back: it changes the velocity
    run = load_flow_run(res.run_dir)
    assert "vgt" in run.backbone.perturb
    x = torch.randn(run.latents.shape, generator=torch.Generator().manual_seed(0))
    emb = run.backbone.encode_prompts([PROMPT])
    with torch.no_grad():
        v = run.backbone.predict(x, 0.5, emb)
        vgt = run.backbone.perturb.pop("vgt")
        plain = run.backbone.predict(x, 0.5, emb)
    assert float((v - plain).abs().max()) > 0
    assert torch.allclose(v, vgt(x, 0.5, plain), atol=1e-5)


def test_each_apla_switch_removes_its_term(tiny_wan_t2v, clip, baseline, tmp_path):
    no_disc = tune(cfg_for(tiny_wan_t2v, clip, "apla", steps=2,
                           apla=apla_settings(discriminator=False)), tmp_path / "nd")
    assert not any(k in r for r in no_disc.losses for k in ("adv_g", "disc_loss", "disc_acc"))
    no_hyper = tune(cfg_for(tiny_wan_t2v, clip, "apla", steps=2,
                            apla=apla_settings(hyper_loss=False, discriminator=False)),
                    tmp_path / "nh")
    assert not any(k in r for r in no_hyper.losses for k in ("mse", "l1", "perceptual"))
    # a fresh VGT adds exactly zero: the first step's plain MSE is the baseline's
    assert no_hyper.losses[0]["loss"] == pytest.approx(baseline.losses[0]["loss"], rel=1e-6)
    none = tune(cfg_for(tiny_wan_t2v, clip, "apla", apla=apla_settings(
        vgt="none", hyper_loss=False, discriminator=False)), tmp_path / "none")
    assert [r["loss"] for r in none.losses] == pytest.approx(
        [r["loss"] for r in baseline.losses], rel=1e-6)
    assert not (none.run_dir / "method.safetensors").is_file()
    assert not any("vgt_ratio" in r for r in none.losses)


def test_apla_tune_on_wan_resumes_to_the_same_weights(tiny_wan_t2v, clip, tmp_path):
    """The VGT, the discriminator and its Adam are in the checkpoint: stopped after 2 steps and
    resumed, the run ends where an uninterrupted one does."""
    from vcstudio.models.delta import load_tensors
    from vcstudio.pipelines.flow.run import tune_flow

    cfg = dataclasses.replace(cfg_for(tiny_wan_t2v, clip, "apla", steps=4,
                                      apla=apla_settings(gamma=0.0)), checkpoint_every=1)
    whole = tune_flow(cfg, tmp_path / "whole")
    part = tune_flow(cfg, tmp_path / "parts", step_budget=2)
    assert part.paused
    rest = tune_flow(cfg, tmp_path / "parts")
    assert rest.steps == 4
    a = load_tensors(whole.run_dir / "method.safetensors")[0]
    b = load_tensors(rest.run_dir / "method.safetensors")[0]
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5


def test_cli_tune_dct_and_apla_on_wan_write_runs_that_say_so(tiny_wan_t2v, clip, tmp_path,
                                                              capsys):
    from vcstudio.runs.folder import RunFolder

    for method, extra in (("dct", []), ("apla", ["--vgt", "none", "--no-hyper-loss"]),
                          ("apla+dct", ["--no-hyper-loss"])):
        out = tmp_path / method
        rc = main(["tune", "--video", str(clip), "--prompt", PROMPT, "--model",
                   str(tiny_wan_t2v), "--frames", "9", "--stride", "1", "--size", "48",
                   "--steps", "2", "--lora-rank", "2", "--method", method, *extra,
                   "--out", str(out)])
        assert rc == 0, capsys.readouterr().err
        meta = RunFolder(out).meta()
        assert (meta["backbone"], meta["method"]) == ("wan", method)
        assert (out / "delta.safetensors").is_file()
    err = capsys.readouterr().err
    assert err.count("the MS-Adapter is off") >= 2  # dct and apla+dct, one line each
    # fgbg stays U-Net only: one line naming what runs on Wan2.1
    assert main(["tune", "--video", str(clip), "--prompt", PROMPT, "--model",
                 str(tiny_wan_t2v), "--method", "fgbg", "--steps", "1"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "fgbg" in line and "dct" in line and "apla" in line


def test_compare_takes_dct_at_a_wan_folder(tiny_wan_t2v, clip, tmp_path, capsys):
    import csv

    out = tmp_path / "cmp"
    rc = main(["compare", "--video", str(clip), "--prompt", PROMPT, "--edit-prompt",
               "a blue square moving right", "--methods",
               f"baseline@{tiny_wan_t2v},dct@{tiny_wan_t2v}", "--frames", "5", "--size", "48",
               "--steps", "2", "--lr", "1e-3", "--edit-steps", "2", "--metrics", "psnr",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [r["method"] for r in rows] == ["baseline", "dct"]
    assert all(r["psnr"] for r in rows)
    runs = [json.loads(p.read_text()) for p in out.rglob("meta.json")]
    assert {(m.get("backbone"), m.get("method")) for m in runs} >= {("wan", "dct")}


# ------------------------------------------------------------------- calibrated estimates

def test_a_second_wan_tune_and_edit_are_estimated_from_the_first(tiny_wan_t2v, clip,
                                                                  tmp_path):
    """The first estimate comes from the architecture; after a tune (with previews) and an
    edit on this device the same estimates are calibrated by what they measured, and DCT's
    estimate adds its share to the baseline's measured step."""
    from vcstudio import calibration as cal
    from vcstudio.config import EditConfig, FlowEditConfig
    from vcstudio.jobs import flowedit as flowedit_job
    from vcstudio.jobs.flow_estimates import (flowedit_estimate, sample_estimate, tune_estimate,
                                              tune_line)
    from vcstudio.pipelines.flow.edit import edit_flow_run
    from vcstudio.pipelines.flow.run import tune_flow

    folder = tmp_path / "cal"
    cfg = dataclasses.replace(cfg_for(tiny_wan_t2v, clip, steps=4), preview_every=2,
                              preview_steps=2)
    first = tune_estimate(cfg, "cpu", folder, rate=0.0)
    assert first["how"] == "uncalibrated" and first["parts"]["previews"] == 2
    res = tune_flow(cfg, tmp_path / "run", calibration_dir=folder)
    found = cal.lookup(folder, "cpu", cfg.model, "baseline", 9, W, H)
    assert found.how == "calibrated" and found.speed.train_step_s > 0
    assert found.speed.sample_step_s > 0 and found.speed.decode_s > 0
    second = tune_estimate(cfg, "cpu", folder, rate=0.0)
    assert second["how"] == "calibrated" and second["basis"]
    sp = found.speed
    ms = 2e-3  # the estimate's parts are rounded to ms
    assert second["parts"]["tune_s"] == pytest.approx(4 * sp.train_step_s, abs=ms)
    assert second["parts"]["overhead_s"] == pytest.approx(sp.overhead_s, abs=ms)
    assert second["parts"]["previews_s"] == pytest.approx(
        2 * (2 * 2 * sp.sample_step_s + sp.decode_s), abs=ms)
    assert "calibrated" in tune_line(second) and "FLOPs" not in tune_line(second)
    # DCT not yet measured: the baseline's measured step x its architecture share (> 1)
    dct = tune_estimate(dataclasses.replace(cfg, method="dct"), "cpu", folder, rate=0.0)
    assert dct["how"].startswith("scaled from the baseline") and dct["method_share"] > 1
    assert dct["parts"]["tune_s"] == pytest.approx(
        4 * sp.train_step_s * dct["method_share"], abs=ms)
    assert dct["gib"] > second["gib"]
    # an edit: the tune's previews measured a pass and a decode at this shape
    e1 = sample_estimate(str(tiny_wan_t2v), 9, H, W, 6, 5.0, "cpu", 0, folder, 0.0)
    assert e1["how"] == "calibrated"
    pass_s, _, _ = cal.lookup_unit(folder, "cpu", cal.flow_unit(cal.FLOW_PASS,
                                                                str(tiny_wan_t2v)), (9, W, H))
    assert e1["parts"]["sample_s"] == pytest.approx(6 * 2 * pass_s, abs=ms)
    edit_flow_run(res.run_dir, EditConfig(prompt="a blue square", steps=3, guidance=5.0),
                  calibration_dir=folder)
    entry = json.loads(cal.path_in(folder).read_text())
    unit = entry[f"unit|cpu|{cal.flow_unit(cal.FLOW_PASS, str(tiny_wan_t2v))}"]
    assert unit[f"9x{W}x{H}"]["samples"] == 2  # the tune's previews, then the edit
    fe = FlowEditConfig(model=str(tiny_wan_t2v), prompt="a blue square", steps=6, n_max=4,
                        data=DataConfig(video_path=str(clip), prompt=PROMPT, n_frames=9,
                                        stride=1, width=W, height=H))
    f1 = flowedit_estimate(fe, "cpu", folder, 0.0)
    assert f1["how"] == "calibrated" and f1["parts"]["flowedit_s"] > 0
    assert flowedit_estimate(fe, "cpu", tmp_path / "empty", 0.0)["how"] == "uncalibrated"
    assert "calibrated" in flowedit_job.estimate_line(f1)


def test_method_shares_on_the_full_size_wan_tune():
    """The 1.3B at 49 frames 480x832 on an H100 (architecture figures): DCT's default terms
    (2 lone latent frames at 256 px, CLIP + VGG) and APLA's small VGT add well under the
    issue's 50% to a step, and DCT's decode graph stays a fraction of a GiB per frame."""
    from vcstudio.jobs.flow_estimates import tune_estimate

    def est(method):
        return tune_estimate(TuneConfig(model="Wan-AI/Wan2.1-T2V-1.3B-Diffusers", method=method,
                                        steps=300, data=DataConfig(n_frames=49, width=832,
                                                                   height=480)),
                             "cuda:H100", None, rate=0.0)

    base, dct, apla, both = est("baseline"), est("dct"), est("apla"), est("apla+dct")
    assert 1.0 < dct["method_share"] < 1.5 and 1.0 < apla["method_share"] < 1.2
    assert both["method_share"] == pytest.approx(
        dct["method_share"] + apla["method_share"] - 1, rel=1e-3)
    assert dct["seconds"] == pytest.approx(base["seconds"] * dct["method_share"], rel=1e-2)
    assert 0.6 < dct["gib"] - base["gib"] < 4.0 and base["gib"] < 24


# ---------------------------------------------------------------------------------- bench

def test_bench_wan_refuses_the_full_size_on_a_cpu_and_runs_tiny(capsys):
    """`vcstudio bench tune|sample --backbone wan`: the 1.3B needs a GPU (one line); --tiny
    runs the same code paths on the tests' architecture: LoRA steps per method with DCT's
    share of a step, an edit's CFG steps and FlowEdit, one table and the targets."""
    assert main(["bench", "tune", "--backbone", "wan", "--device", "cpu"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "needs a GPU" in line and "--tiny" in line
    assert main(["bench", "tune", "--backbone", "wan", "--tiny", "--method", "baseline,apla",
                 "--steps", "1", "--warmup", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    rows = {ln.split("|")[0].strip(): ln for ln in out.splitlines() if "|" in ln}
    assert "wan tune/baseline" in rows and "wan tune/apla" in rows
    assert " 9 " in rows["wan tune/baseline"] and "48x32" in rows["wan tune/baseline"]
    assert "targets (issue 27" in out
    assert main(["bench", "sample", "--backbone", "wan", "--tiny", "--steps", "3", "--device",
                 "cpu"]) == 0
    out = capsys.readouterr().out
    assert "wan edit (3 CFG steps + decode)" in out and "wan FlowEdit (2 of 3 steps" in out


def test_the_dct_share_row_compares_the_step_times():
    from vcstudio.bench.wan import dct_share_row, shape

    rows = [{"what": "wan tune/baseline", "frames": 49, "size": "832x480", "s_per_step": 1.0,
             "device": "H100"},
            {"what": "wan tune/dct (2 fr @ 256 px, every step)", "s_per_step": 1.3}]
    row = dct_share_row(rows)
    assert row["share"] == "+30%" and row["ok"] == "yes"
    rows[1]["s_per_step"] = 1.6
    assert dct_share_row(rows)["ok"] == "NO"
    assert dct_share_row(rows[:1]) is None
    assert shape(False) == (49, 480, 832) and shape(False, 33, 832) == (33, 480, 832)
    assert shape(True) == (9, 32, 48) and shape(False, 50) == (49, 480, 832)
