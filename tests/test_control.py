"""Structure control (issue 18): conditions per frame, ControlNet / T2I-Adapter residuals in the
inflated U-Net, equal to diffusers' own pipelines on one frame; edits, long video, bad inputs.
Tiny ControlNetModel / T2IAdapter are built with the real classes, saved with save_pretrained and
loaded back through the users' path (hub id or folder)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vcstudio.config import ControlConfig, DataConfig, EditConfig, LongConfig, TuneConfig
from vcstudio.errors import InputError, ModelNotFoundError
from vcstudio.models.cache import ModelCache
from vcstudio.run_context import RunContext

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "a red circle moving right"


def _controlnet(base, folder, zero=True, seed=0, cross_dim=None):
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    if cross_dim is None:
        cn = ControlNetModel.from_unet(base.unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    else:
        from vcstudio.models.tiny import tiny_unet_config

        cfg = tiny_unet_config(cross_dim)
        cn = ControlNetModel(in_channels=4, block_out_channels=cfg["block_out_channels"],
                             down_block_types=cfg["down_block_types"], layers_per_block=1,
                             cross_attention_dim=cross_dim, attention_head_dim=8,
                             norm_num_groups=8, conditioning_embedding_out_channels=(8, 8, 16, 16))
    if not zero:  # give the zero convolutions and the condition embedding a say
        with torch.no_grad():
            for n, p in cn.named_parameters():
                if n.startswith(("controlnet_down_blocks", "controlnet_mid_block")):
                    p.normal_(0, 0.2)
                elif n.startswith("controlnet_cond_embedding"):  # default init washes out
                    p.normal_(0, 0.4) if n.endswith("weight") else p.zero_()
    cn.save_pretrained(folder)
    return str(folder)


def _adapter(folder, seed=0):
    from diffusers import T2IAdapter

    torch.manual_seed(seed)
    ad = T2IAdapter(in_channels=3, channels=[32, 64], num_res_blocks=1, downscale_factor=8,
                    adapter_type="full_adapter")
    with torch.no_grad():
        for p in ad.parameters():
            p.mul_(3.0)  # random features large enough to move a tiny U-Net
    ad.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def nets(base, tmp_path_factory):
    d = tmp_path_factory.mktemp("ctl")
    return {"zero": _controlnet(base, d / "cn-zero"), "cn": _controlnet(base, d / "cn", False),
            "cn2": _controlnet(base, d / "cn2", False, seed=1),
            "adapter": _adapter(d / "adapter"),
            "wide": _controlnet(base, d / "cn-wide", cross_dim=48)}


def _png_folder(frames, folder):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:03d}.png")
    return str(folder)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A synthetic 96x64 clip as lossless frames: tuning crops it to 64x64 at the right."""
    from vcstudio.io.synthetic import moving_shape_clip

    raw = moving_shape_clip(8, 96, dx=3.0)[:, :64]  # (8, 64, 96, 3)
    return raw, _png_folder(raw, tmp_path_factory.mktemp("src") / "clip")


@pytest.fixture(scope="module")
def run(tiny_sd, source, tmp_path_factory, mcache):
    from vcstudio.pipelines.tune.loop import load_tuned, tune

    cfg = TuneConfig(model=str(tiny_sd), data=DataConfig(
        video_path=source[1], prompt=PROMPT, n_frames=8, stride=1, width=64, height=64,
        crop="right"), steps=2, lr=1e-3, checkpoint_every=0, inversion_steps=3)
    res = tune(cfg, tmp_path_factory.mktemp("run") / "run", run=RunContext(cache=mcache))
    return load_tuned(res.run_dir, mcache)


def _cond_video(frames, folder):
    return _png_folder(frames, folder)


def _blobs(seed, n=8, size=64):
    """Condition frames with structure: white on one half (seed picks which), noise on top."""
    g = np.random.default_rng(seed)
    out = (g.random((n, size, size, 3)) > 0.8).astype(np.uint8) * 255
    half = slice(0, size // 2) if seed % 2 else slice(size // 2, size)
    out[:, :, half] = 255
    return out


# ----------------------------------------------------------------------------- conditions
def test_canny_matches_opencv_frame_by_frame_at_the_tuned_crop(run, source):
    import cv2

    from vcstudio.io import fit_frames
    from vcstudio.pipelines.edit.structure import clip_conditions, tuned_clip

    raw = source[0]
    clip = tuned_clip(run)
    want_clip = fit_frames(raw, 64, 64, "crop", "right")
    assert np.array_equal(clip, want_clip) and not np.array_equal(clip, raw[:, :, :64])
    (cond,) = clip_conditions([ControlConfig("canny", "m", low=50, high=150)], clip, 8, 64, 64)
    assert cond.shape == (8, 64, 64, 3) and cond.dtype == np.uint8
    for i in range(8):
        edges = cv2.Canny(want_clip[i], 50, 150)
        assert edges.any()
        assert np.array_equal(cond[i, ..., 0], edges) and np.array_equal(cond[i, ..., 2], edges)


def test_uploaded_condition_video_is_resampled_to_the_clip(tmp_path):
    from vcstudio.control.conditions import condition_video, resample_frames

    frames = np.stack([np.full((32, 48, 3), i * 10, np.uint8) for i in range(20)])
    path = _cond_video(frames, tmp_path / "pose")
    out = condition_video(path, 8, 16, 16, "crop", "center")
    assert out.shape == (8, 16, 16, 3)
    # evenly spread, first and last kept: frames 0, 3, 5, 8, 11, 14, 16, 19
    assert [int(v) for v in out[:, 0, 0, 0]] == [0, 30, 50, 80, 110, 140, 160, 190]
    assert resample_frames(frames[:3], 6)[:, 0, 0, 0].tolist() == [0, 0, 10, 10, 20, 20]
    with pytest.raises(InputError, match="needs its condition video"):
        condition_video("", 8, 16, 16)


# ----------------------------------------------------------------------------- vs diffusers
def _one_step_ours(base, unet2d, control, prompt_embeds, neg, latents):
    from diffusers import DDIMScheduler

    from vcstudio.pipelines.edit.video_pipeline import VideoEditPipeline

    pipe = VideoEditPipeline(vae=base.vae, text_encoder=base.text_encoder,
                             tokenizer=base.tokenizer, unet=unet2d,
                             scheduler=DDIMScheduler.from_config(base.scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt_embeds=prompt_embeds, negative_prompt_embeds=neg,
                latents=latents[:, :, None], num_inference_steps=1, guidance_scale=7.5,
                output_type="latent", control=control).frames[:, :, 0]


def _inputs(base):
    from vcstudio.models.encode import encode_prompts

    g = torch.Generator().manual_seed(3)
    latents = torch.randn((1, 4, 8, 8), generator=g)
    image = torch.from_numpy(_blobs(5, 1)).permute(0, 3, 1, 2).float() / 255
    return (encode_prompts(base, [PROMPT]), encode_prompts(base, [""]), latents, image)


@pytest.mark.parametrize("kind, pipeline, scale_arg", [
    ("controlnet", "StableDiffusionControlNetPipeline", "controlnet_conditioning_scale"),
    ("adapter", "StableDiffusionAdapterPipeline", "adapter_conditioning_scale")])
def test_one_frame_with_a_control_model_equals_its_diffusers_pipeline(base, nets, kind,
                                                                       pipeline, scale_arg):
    """One DDIM step of a 1-frame clip under a ControlNet (its residuals) or a T2I-Adapter (its
    features) equals the diffusers pipeline's step, and differs from the uncontrolled one."""
    import diffusers
    from diffusers import DDIMScheduler

    from vcstudio.control.models import StructureControl, Unit, load_control_model

    found, model = load_control_model(nets["cn" if kind == "controlnet" else "adapter"])
    assert found == kind
    emb, neg, latents, image = _inputs(base)
    ref = getattr(diffusers, pipeline)(
        vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=base.unet,
        scheduler=DDIMScheduler.from_config(base.scheduler_config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False, **{kind: model})
    ref.set_progress_bar_config(disable=True)
    want = ref(prompt_embeds=emb, negative_prompt_embeds=neg, image=image, latents=latents,
               num_inference_steps=1, guidance_scale=7.5, output_type="latent", height=64,
               width=64, **{scale_arg: 0.7}).images
    ctrl = StructureControl([Unit(kind, model, image, 0.7)])
    got = _one_step_ours(base, base.unet, ctrl, emb, neg, latents)
    plain = _one_step_ours(base, base.unet, None, emb, neg, latents)
    assert ctrl.calls == 1
    assert (want - plain).abs().max() > 1e-3  # the control model changes the step
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- edits
def _edit(run, mcache, control, steps=3):
    from vcstudio.pipelines.edit.edits import edit_frames

    return edit_frames(run, EditConfig(prompt="a blue square", steps=steps, guidance=7.5,
                                       control=control), run=RunContext(cache=mcache))


@pytest.fixture(scope="module")
def plain_edit(run, mcache):
    return _edit(run, mcache, [])


def test_zero_convolutions_give_exactly_the_uncontrolled_edit(run, mcache, nets, plain_edit):
    out = _edit(run, mcache, [ControlConfig("canny", nets["zero"], scale=1.0)])
    assert np.array_equal(out, plain_edit)


def test_condition_video_changes_the_edit_and_scale_zero_restores_it(run, mcache, nets,
                                                                     plain_edit, tmp_path):
    va = _cond_video(_blobs(1), tmp_path / "a")
    vb = _cond_video(_blobs(2), tmp_path / "b")
    a = _edit(run, mcache, [ControlConfig("video", nets["cn"], video=va)])
    b = _edit(run, mcache, [ControlConfig("video", nets["cn"], video=vb)])
    canny = _edit(run, mcache, [ControlConfig("canny", nets["cn"])])
    ab = float(np.abs(a.astype(int) - b.astype(int)).mean())
    ap = float(np.abs(a.astype(int) - plain_edit.astype(int)).mean())
    assert ab > 0.5 and ap > 0.5, (ab, ap)
    assert not np.array_equal(canny, a)
    off = _edit(run, mcache, [ControlConfig("video", nets["cn"], scale=0.0, video=va)])
    assert np.array_equal(off, plain_edit)
    # a window of the steps with no step in it acts nowhere either: start/end are honoured
    late = _edit(run, mcache, [ControlConfig("video", nets["cn"], start=0.0, end=0.2, video=va)])
    assert np.array_equal(late, plain_edit)


def test_two_controlnets_and_an_adapter_together(run, mcache, nets, plain_edit, tmp_path):
    from vcstudio.control.models import StructureControl, build_units
    from vcstudio.pipelines.edit.structure import tuned_clip

    va = _cond_video(_blobs(1), tmp_path / "a")
    both = [ControlConfig("video", nets["cn"], video=va), ControlConfig("canny", nets["cn2"])]
    two = _edit(run, mcache, both)
    one = _edit(run, mcache, both[:1])
    assert not np.array_equal(two, one)
    # the second at scale 0 is the first alone (Multi-ControlNet sums per-condition residuals)
    off = _edit(run, mcache, [both[0], dataclasses.replace(both[1], scale=0.0)])
    assert np.array_equal(off, one)
    with_adapter = _edit(run, mcache, both + [ControlConfig("canny", nets["adapter"])])
    assert not np.array_equal(with_adapter, two)
    # residual sum: the multi call equals the sum of single calls on one folded batch
    from vcstudio.control.conditions import canny

    clip = tuned_clip(run)
    conds = [canny(clip), canny(clip)[::-1].copy()]
    specs = [ControlConfig("canny", nets["cn"], scale=0.5), ControlConfig("canny", nets["cn2"])]
    units = build_units(specs, conds, run.model.config)
    x = torch.randn(8, 4, 8, 8)
    t = torch.full((8,), 500)
    e = torch.randn(8, 77, 32)
    multi = StructureControl(units)(x, t, e, 1, 8)
    singles = [StructureControl([u])(x, t, e, 1, 8) for u in units]
    torch.testing.assert_close(multi["mid_block_additional_residual"],
                               sum(s["mid_block_additional_residual"] for s in singles))


def test_edit_job_and_cli_take_control_flags(run, nets, tmp_path, capsys):
    from vcstudio.cli import main
    from vcstudio.io import read_video

    rc = main(["edit", "--run", str(run.run.path), "--prompt", "a blue square", "--steps", "2",
               "--control", "canny:0.6", "--control-model", nets["cn"], "--out",
               str(tmp_path / "e")])
    assert rc == 0
    mp4 = capsys.readouterr().out.strip().splitlines()[-1]
    assert read_video(mp4).shape == (8, 64, 64, 3)


# ----------------------------------------------------------------------------- long video
def test_long_video_windows_take_their_own_frames_conditions(run, mcache, nets, tmp_path):
    """Windows of 8 with stride 8 over 16 frames: a condition video that differs only in the
    second segment changes only the second segment's frames; with overlapping windows each
    ControlNet call gets exactly its window's frames (the tail window included)."""
    from vcstudio.pipelines.long.video import long_video

    a = _blobs(1, 16)
    b = a.copy()
    b[8:] = _blobs(2, 8)  # the second segment's conditions differ
    va, vb = _cond_video(a, tmp_path / "a"), _cond_video(b, tmp_path / "b")

    def gen(video, out, **kw):
        cfg = LongConfig(prompts=["a red circle", "a blue square"], frames=16, window=8,
                         stride=8, steps=2, guidance=7.5, out=str(tmp_path / out),
                         control=[ControlConfig("video", nets["cn"], video=video, **kw)])
        return long_video(run.run.path, cfg, run=RunContext(cache=mcache)).frames

    fa, fb = gen(va, "a.mp4"), gen(vb, "b.mp4")
    assert np.array_equal(fa[:8], fb[:8])  # window 0 saw frames 0-7 of either video
    assert float(np.abs(fa[8:].astype(int) - fb[8:].astype(int)).mean()) > 0.3
    # stride 4: windows overlap, every window still gets its own frames (checked on the call)
    from vcstudio.control.models import StructureControl

    calls = []
    orig = StructureControl.__call__

    def spy(self, x, t, e, bb, f):
        calls.append(self.window_index.clone())
        return orig(self, x, t, e, bb, f)

    StructureControl.__call__ = spy
    try:
        cfg = LongConfig(prompts=["a red circle"], frames=14, window=8, stride=4, steps=1,
                         guidance=7.5, batch_windows=1, out=str(tmp_path / "c.mp4"),
                         control=[ControlConfig("video", nets["cn"], video=va)])
        long_video(run.run.path, cfg, run=RunContext(cache=mcache))
    finally:
        StructureControl.__call__ = orig
    assert [c[0].tolist() for c in calls] == [list(range(s, s + 8)) for s in (0, 4, 6)]


def test_long_video_segment_with_blank_conditions_stays_uncontrolled(run, mcache, nets,
                                                                     tmp_path):
    """An adapter's features of a blank (black) frame are exactly zero when its convolutions
    carry no bias, so a segment whose conditions are blank is left uncontrolled."""
    from diffusers import T2IAdapter

    from vcstudio.pipelines.long.video import long_video

    torch.manual_seed(0)
    ad = T2IAdapter(in_channels=3, channels=[32, 64], num_res_blocks=1, downscale_factor=8)
    with torch.no_grad():
        for n, p in ad.named_parameters():
            p.zero_() if n.endswith("bias") else p.mul_(3.0)
    ad.save_pretrained(tmp_path / "ad")
    cond = _blobs(1, 16)
    cond[8:] = 0  # second segment: no structure given
    video = _cond_video(cond, tmp_path / "c")

    def gen(control, out):
        cfg = LongConfig(prompts=["a red circle", "a blue square"], frames=16, window=8,
                         stride=8, steps=2, guidance=7.5, out=str(tmp_path / out),
                         control=control)
        return long_video(run.run.path, cfg, run=RunContext(cache=mcache)).frames

    plain = gen([], "p.mp4")
    ctl = gen([ControlConfig("video", str(tmp_path / "ad"), video=video)], "x.mp4")
    assert np.array_equal(ctl[8:], plain[8:])
    assert float(np.abs(ctl[:8].astype(int) - plain[:8].astype(int)).mean()) > 0.3


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_are_one_line_messages(run, mcache, nets, tmp_path, monkeypatch):
    from vcstudio.cli import main
    from vcstudio.control import parse_control, validate_controls
    from vcstudio.control.conditions import depth, pose
    from vcstudio.control.models import check_compatible, load_control_model

    def one_line(exc_info, *words):
        msg = str(exc_info.value)
        assert "\n" not in msg and all(w in msg for w in words), msg

    # a ControlNet for another base (cross-attention width 48, the base 32)
    kind, wide = load_control_model(nets["wide"])
    with pytest.raises(InputError) as e:
        check_compatible(kind, wide, run.model.config, "wide-cn")
    one_line(e, "cross-attention width 48", "base model 32")
    with pytest.raises(InputError) as e:
        _edit(run, mcache, [ControlConfig("canny", nets["wide"])])
    one_line(e, "cross-attention width")
    # depth without its weights (offline), pose without its package
    with pytest.raises(ModelNotFoundError) as e:
        depth(np.zeros((1, 16, 16, 3), np.uint8), "nobody/no-depth-model")
    one_line(e, "hf download nobody/no-depth-model")
    monkeypatch.setitem(__import__("sys").modules, "controlnet_aux", None)
    with pytest.raises(ModelNotFoundError) as e:
        pose(np.zeros((1, 16, 16, 3), np.uint8))
    one_line(e, "pip install controlnet-aux", "--control-video")
    # a model that is not there, a folder that holds something else, settings out of range
    with pytest.raises(ModelNotFoundError) as e:
        load_control_model("nobody/no-controlnet")
    one_line(e, "hf download nobody/no-controlnet")
    with pytest.raises(InputError) as e:
        load_control_model(str(run.base.model_id) + "/unet")
    one_line(e, "UNet2DConditionModel", "ControlNet or T2I-Adapter")
    for bad, words in (([ControlConfig("canny", "")], ("--control-model",)),
                       ([ControlConfig("canny", "m", scale=9)], ("scale", "0..5")),
                       ([ControlConfig("canny", "m", start=0.8, end=0.2)], ("start < end",)),
                       ([ControlConfig("video", "m")], ("--control-video",)),
                       ([ControlConfig("edges", "m")], ("Unknown condition", "canny"))):
        with pytest.raises(InputError) as e:
            validate_controls(bad)
        one_line(e, *words)
    with pytest.raises(InputError) as e:
        parse_control("canny:strong")
    one_line(e, "kind[:scale")
    # the CLI: two models for three conditions is an error, before anything loads
    rc = main(["edit", "--run", str(run.run.path), "--prompt", "a blue square", "--control",
               "canny", "--control", "canny", "--control", "canny", "--control-model", "a",
               "--control-model", "b"])
    assert rc == 2


def test_tuning_with_a_t2i_adapter_changes_what_is_learnt(tiny_sd, source, nets, tmp_path,
                                                          mcache):
    """Tune-time conditions (seed 001): the frozen adapter's features shape the gradients, so
    the tuned delta differs from the same tuning without them; the adapter is not in the delta
    and the CLI flags reach the config."""
    from vcstudio.cli.tune import add, tune_config_from_args
    from vcstudio.pipelines.tune.loop import tune
    from vcstudio.models.delta import load_tensors

    def delta(control, out):
        cfg = TuneConfig(model=str(tiny_sd), data=DataConfig(
            video_path=source[1], prompt=PROMPT, n_frames=8, stride=1, width=64, height=64),
            steps=2, lr=1e-2, checkpoint_every=0, control=control)
        res = tune(cfg, tmp_path / out, run=RunContext(cache=mcache), invert=False)
        return load_tensors(res.run_dir / "delta.safetensors")[0]

    plain = delta([], "plain")
    ctl = delta([ControlConfig("canny", nets["adapter"], scale=1.0)], "ctl")
    assert set(plain) == set(ctl)  # only the trainable tensors: no adapter weights
    diff = max(float((plain[k].float() - ctl[k].float()).abs().max()) for k in plain)
    assert diff > 1e-4
    import argparse

    sub = argparse.ArgumentParser().add_subparsers()
    add(sub)
    a = sub.choices["tune"].parse_args(["--video", source[1], "--prompt", PROMPT, "--control",
                                        "canny:0.5", "--control-model", nets["adapter"]])
    cfg = tune_config_from_args(a)
    assert [(c.kind, c.scale, c.model) for c in cfg.control] == [("canny", 0.5,
                                                                  nets["adapter"])]


def test_estimates_count_the_controlnet(nets):
    from vcstudio.jobs.tune import estimate, estimate_edit

    plain = EditConfig(prompt="x", steps=50)
    one = dataclasses.replace(plain, control=[ControlConfig("canny", nets["cn"])])
    two = dataclasses.replace(plain, control=[ControlConfig("canny", nets["cn"]),
                                              ControlConfig("canny", nets["cn2"])])
    ad = dataclasses.replace(plain, control=[ControlConfig("canny", nets["adapter"])])
    e0, e1, e2, ea = (estimate_edit(c, 24, 512, 512, "cuda") for c in (plain, one, two, ad))
    sample = e0["seconds"] * 2 / 3  # inversion: 1 call a step; CFG sampling: 2
    assert e1["control_seconds"] == pytest.approx(sample / 3, rel=1e-2)
    assert e2["seconds"] - e0["seconds"] == pytest.approx(2 * (e1["seconds"] - e0["seconds"]),
                                                          rel=1e-2)
    assert e1["gib"] > e0["gib"] and ea["control_seconds"] == 0 and ea["gib"] > e0["gib"]
    t0 = estimate(TuneConfig(data=DataConfig(n_frames=8)), "cuda")
    t1 = estimate(TuneConfig(data=DataConfig(n_frames=8), control=one.control), "cuda")
    assert t1["seconds"] > t0["seconds"] and t1["gib"] > t0["gib"]


def test_bench_sample_prints_the_controlnet_row(capsys):
    from vcstudio.cli import main

    assert main(["bench", "sample", "--control", "canny", "--arch", "tiny", "--frames", "2",
                 "--size", "64", "--steps", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if ln.startswith("added by the ControlNet"))
    assert "share_of_unet" in out
    float(row.split("|")[-1])  # a number (its size is noise at 2 steps on a shared CPU)
    assert "sample/baseline + ControlNet (canny)" in out


# ----------------------------------------------------------------------------- compare, sweep
def test_compare_control_is_a_variant_field_and_reuses_the_tune(tiny_sd, source, nets,
                                                                 tmp_path):
    from vcstudio.jobs import studio as make_studio
    from vcstudio.jobs.compare import CompareConfig, variants

    ctl = {"kind": "canny", "model": nets["cn"], "scale": 0.5}
    cfg = CompareConfig(video=source[1], prompt=PROMPT, edit_prompt="a blue square",
                        variants=["baseline"], model=str(tiny_sd), frames=8, size=64,
                        steps=2, edit_steps=2, guidance=7.5, metrics=[],
                        control=[[], [ctl]])
    vs = variants(cfg)
    assert [v.label for v in vs] == ["baseline (Tune-A-Video), no control",
                                     f"baseline (Tune-A-Video), control canny:0.5 ({nets['cn']})"]
    assert vs[0].edit.control == [] and vs[1].edit.control[0].scale == 0.5
    studio = make_studio(tmp_path / "data")
    try:
        res = studio.run("compare", cfg, out=str(tmp_path / "cmp"))
    finally:
        studio.close()
    assert not res.failed and len(res.entries) == 2
    a, b = (e["frames"] for e in res.entries)
    assert not np.array_equal(a, b)  # the control changed the edit
    assert len(list((tmp_path / "cmp").glob("*/delta.safetensors"))) == 1  # one tune for both
    with pytest.raises(InputError, match="control"):
        studio2 = make_studio(tmp_path / "d2")
        try:
            studio2.run("compare", dataclasses.replace(cfg, control=[[{"kind": "canny"}]]))
        finally:
            studio2.close()


def test_sweep_grid_varies_the_control_of_edits():
    from vcstudio.jobs.sweep import expand

    cells = expand({"tune": {"data": {"prompt": PROMPT}, "steps": 2},
                    "edit": {"prompt": "a blue square",
                             "control": [[], [{"kind": "canny", "model": "m", "scale": 0.5}]]}})
    assert [c.edit.control for c in cells] == [[], [ControlConfig("canny", "m", scale=0.5)]]
    assert cells[0].key != cells[1].key and "edit.control" in cells[1].fields


# ----------------------------------------------------------------------------- UI
def test_structure_panel_previews_conditions_and_steers_edit_and_long(tiny_sd, source, nets,
                                                                      tmp_path):
    from vcstudio.config import Limits
    from vcstudio.io import read_video
    from vcstudio.pipelines.tune.loop import tune
    from vcstudio.session import Studio
    from vcstudio.ui import structure
    from vcstudio.ui.edit_tab import edit_handler
    from vcstudio.ui.long_tab import generate

    studio = Studio(tmp_path / "data", limits=Limits(), cache=ModelCache(), device="cpu")
    try:
        sid = studio.new_session().id
        run = studio.session(sid).outputs / "run"
        tune(TuneConfig(model=str(tiny_sd), data=DataConfig(
            video_path=source[1], prompt=PROMPT, n_frames=8, stride=1, width=64, height=64),
            steps=1, checkpoint_every=0, inversion_steps=2), run,
            run=RunContext(cache=studio.cache))
        slot = ["canny", nets["cn"], 0.8, 0.0, 1.0, None]
        off = ["none", "", 1.0, 0.0, 1.0, None]
        values = slot + off + [""]
        items, note = structure.preview(studio, sid, str(run), 0, *values)
        assert len(items) == 1 and items[0][0].shape == (64, 8 * 64, 3)
        assert "8 frames" in note and "canny" in items[0][1]
        cfgs = structure.control_configs(studio, sid, values)
        assert [(c.kind, c.scale, c.model) for c in cfgs] == [("canny", 0.8, nets["cn"])]
        mp4 = list(edit_handler(studio, sid, str(run), "a blue square", "", 2, 5.0, 33, True,
                                control=values))[-1][0]
        assert read_video(mp4).shape == (8, 64, 64, 3)
        with pytest.raises(Exception, match="cross-attention"):
            list(edit_handler(studio, sid, str(run), "a blue square", "", 2, 5.0, 33, True,
                              control=["canny", nets["wide"], 1.0, 0.0, 1.0, None] + off + [""]))
        out = list(generate(studio, sid, str(run), "", "a red circle", 8, 8, 4, "uniform", 2,
                            5, False, "grabcut", "", 2, 0, control=values))[-1]
        assert out[1].startswith("Done") and read_video(out[0]).shape[0] == 8
    finally:
        studio.close()
    public = Studio(tmp_path / "pub", public=True)
    try:
        with pytest.raises(InputError, match="Hub id"):
            structure.control_configs(public, public.new_session().id,
                                      ["canny", nets["cn"], 1.0, 0.0, 1.0, None] + off + [""])
    finally:
        public.close()


def test_app_has_the_structure_panels_endpoints(tmp_path):
    from vcstudio.session import Studio
    from vcstudio.ui import build_app

    studio = Studio(tmp_path / "data")
    try:
        demo = build_app(studio)
        names = {d.get("api_name") for d in demo.config["dependencies"]}
    finally:
        studio.close()
    assert {"control_preview", "long_control_preview", "edit", "long"} <= names


def test_cli_pairs_models_and_videos_with_conditions():
    import argparse

    from vcstudio.cli.common import add_control_args, control_from_args

    p = argparse.ArgumentParser()
    add_control_args(p)
    a = p.parse_args(["--control", "canny:0.8", "--control", "video:1:0:0.6", "--control-model",
                      "cn", "--control-model", "ad", "--control-video", "pose.mp4"])
    got = [(c.kind, c.model, c.scale, c.start, c.end, c.video) for c in control_from_args(a)]
    assert got == [("canny", "cn", 0.8, 0.0, 1.0, ""), ("video", "ad", 1.0, 0.0, 0.6, "pose.mp4")]
    a = p.parse_args(["--control", "canny", "--control", "depth", "--control-model", "m",
                      "--control-video", "long.mp4"])
    assert [(c.model, c.video) for c in control_from_args(a)] == [("m", "long.mp4")] * 2
    with pytest.raises(InputError, match="need a --control"):
        control_from_args(p.parse_args(["--control-model", "m"]))


def test_animatediff_route_takes_controlnet_residuals_and_refuses_adapters(base, nets):
    """UNetMotionModel (diffusers' AnimateDiff U-Net) folds frames video-major like the
    vcstudio route, so the same residuals go in: zero convolutions change nothing, trained
    ones do; adapters are refused in one line (it takes no intrablock residuals)."""
    from diffusers import MotionAdapter

    from vcstudio.control.models import StructureControl, Unit, load_control_model
    from vcstudio.models.inflate import VideoDenoiser

    torch.manual_seed(0)
    motion = MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=1,
                           motion_norm_num_groups=8, motion_num_attention_heads=4,
                           motion_max_seq_length=16)
    model = VideoDenoiser(base.unet, motion_adapter=motion).eval()
    x = torch.randn(2, 4, 4, 8, 8)
    t = torch.tensor([500])
    e = torch.randn(2, 77, 32)
    cond = torch.from_numpy(_blobs(1, 4)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        plain = model(x, t, e)
        outs = {}
        for name in ("zero", "cn"):
            with model.controlled(StructureControl([Unit("controlnet",
                                                         load_control_model(nets[name])[1],
                                                         cond)])):
                outs[name] = model(x, t, e)
    assert torch.equal(outs["zero"], plain)
    assert float((outs["cn"] - plain).abs().mean()) > 1e-3
    ad = StructureControl([Unit("adapter", load_control_model(nets["adapter"])[1], cond)])
    with pytest.raises(InputError, match="vcstudio's temporal route"):
        with model.controlled(ad):
            pass
