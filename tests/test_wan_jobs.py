"""Wan2.1 end to end through the jobs (issue 27): the backbone family read from
model_index.json, `vcstudio tune` / `vcstudio edit` on a tiny WanPipeline folder, the delta in
diffusers' LoRA layout, the training-free flowedit job, and the one-line refusals (frames,
sizes, methods on the wrong base, unknown pipeline classes)."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from vcstudio.cli import main
from vcstudio.errors import InputError
from vcstudio.run_context import RunContext

pytestmark = pytest.mark.usefixtures("one_thread")

W, H = 48, 32  # the clip's size: aspect 3:2


@pytest.fixture(scope="module")
def wan_clip(tmp_path_factory):
    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip

    frames = moving_shape_clip(11, W, dx=2.0)[:, :H]  # 11 frames of 48x32
    return write_mp4(frames, tmp_path_factory.mktemp("wanclip") / "c.mp4")


@pytest.fixture(scope="module")
def wan_run(tiny_wan_t2v, wan_clip, tmp_path_factory):
    """A CLI tune on the tiny Wan folder (11 frames read -> 9, --size 40 -> 48x32)."""
    out = tmp_path_factory.mktemp("wanrun") / "run"
    rc = main(["tune", "--video", str(wan_clip), "--prompt", "a red circle moving right",
               "--model", str(tiny_wan_t2v), "--frames", "11", "--stride", "1", "--size", "40",
               "--steps", "6", "--lr", "5e-3", "--lora-rank", "4", "--out", str(out)])
    assert rc == 0
    return out


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1]


def test_the_family_is_read_from_model_index(tiny_wan_t2v, tiny_wan_i2v, tiny_sd, tmp_path):
    from vcstudio.models.family import backbone_family, rules
    from vcstudio.models.loading import EMBEDDED_MODEL

    assert backbone_family(str(tiny_wan_t2v)) == "wan"
    assert backbone_family(str(tiny_sd)) == "sd"
    assert backbone_family(str(EMBEDDED_MODEL)) == "sd"
    assert (rules("wan").temporal, rules("wan").multiple) == (4, 16)
    # hub ids not downloaded: the catalogue, else a "wan" word in the name
    assert backbone_family("Wan-AI/Wan2.1-T2V-1.3B-Diffusers") == "wan"
    assert backbone_family("Wan-AI/Wan2.1-T2V-14B-Diffusers") == "wan"
    assert backbone_family("someone/swan-diffusion") == "sd"
    assert backbone_family(str(tiny_sd / "unet" / "diffusion_pytorch_model.safetensors")) == "sd"
    with pytest.raises(InputError, match="image-to-video model: use `vcstudio i2v`"):
        backbone_family(str(tiny_wan_i2v))
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(InputError) as e:
        backbone_family(str(odd))
    msg = str(e.value)
    assert "\n" not in msg and "FluxPipeline" in msg
    assert "WanPipeline" in msg and "StableDiffusionPipeline" in msg  # says what is supported


def test_cli_refuses_an_unknown_pipeline_class_in_one_line(tiny_wan_t2v, wan_clip, tmp_path,
                                                            capsys):
    odd = shutil.copytree(tiny_wan_t2v, tmp_path / "odd")
    idx = json.loads((odd / "model_index.json").read_text())
    (odd / "model_index.json").write_text(json.dumps({**idx, "_class_name": "MysteryPipeline"}))
    assert main(["tune", "--video", str(wan_clip), "--prompt", "x", "--model", str(odd),
                 "--steps", "1"]) == 2
    line = _one_line(capsys)
    assert line.startswith("error: ") and "MysteryPipeline" in line and "WanPipeline" in line


def test_clip_frames_follow_4k_plus_1_and_sides_16():
    from vcstudio.config import DataConfig
    from vcstudio.models.family import rules
    from vcstudio.pipelines.flow.clip import flow_size, prepare_clip, resample_frames

    raw = np.arange(11)[:, None, None, None] * np.ones((11, 32, 48, 3), np.uint8)
    frames, note = resample_frames(raw, 4)
    # 11 -> 9, evenly over the same span: first and last frame kept
    assert len(frames) == 9 and frames[0, 0, 0, 0] == 0 and frames[-1, 0, 0, 0] == 10
    assert "11 frames are resampled to 9" in note
    assert resample_frames(raw[:9], 4)[1] is None
    with pytest.raises(InputError, match="at least 5 frames"):
        resample_frames(raw[:4], 4)
    r = rules("wan")
    assert flow_size(0, 0, 40, (32, 48), r) == (48, 32)  # 40 -> 48 long side, 3:2 kept
    assert flow_size(0, 0, 0, (480, 832), r) == (832, 480)  # the 1.3B model's native size
    assert flow_size(64, 0, 0, (32, 48), r) == (64, 48)  # one side given: the other follows
    with pytest.raises(InputError, match=r"multiples of 16 .* got 40x32: use 48x32\.$"):
        flow_size(40, 32, 0, (32, 48), r)
    frames, d, notes = prepare_clip(raw, DataConfig(size=40, width=0, height=0), r)
    assert frames.shape == (9, 32, 48, 3) and (d.n_frames, d.width, d.height) == (9, 48, 32)
    assert len(notes) == 1


def test_cli_tune_on_wan_writes_a_run_with_backbone_and_a_diffusers_lora(tiny_wan_t2v,
                                                                         wan_run, tmp_path):
    from diffusers import WanPipeline

    from vcstudio.runs.folder import RunFolder

    rf = RunFolder(wan_run)
    meta, cfg = rf.meta(), rf.config()
    assert meta["backbone"] == "wan" and meta["status"] == "done" and meta["steps_done"] == 6
    assert (meta["n_frames"], meta["width"], meta["height"]) == (9, 48, 32)
    assert any("resampled to 9" in n for n in meta["notes"])
    assert (cfg.data.n_frames, cfg.data.width, cfg.data.height, cfg.lora_rank) == (9, 48, 32, 4)
    losses = rf.losses()
    assert [r["step"] for r in losses] == list(range(1, 7)) and all("loss" in r for r in losses)
    for name in ("delta.safetensors", "clip-latents.safetensors", "source.mp4", "config.yaml"):
        assert (wan_run / name).is_file(), name
    # the delta is diffusers' LoRA layout: WanPipeline loads it, and it changes the output
    pipe = WanPipeline.from_pretrained(tiny_wan_t2v)
    pipe.set_progress_bar_config(disable=True)
    kw = dict(prompt="a red circle moving right", height=H, width=W, num_frames=9,
              num_inference_steps=2, output_type="np")
    base = pipe(generator=torch.Generator().manual_seed(0), **kw).frames[0]
    pipe.load_lora_weights(str(rf.delta_path))
    tuned = pipe(generator=torch.Generator().manual_seed(0), **kw).frames[0]
    assert np.abs(tuned - base).max() > 1e-3


def test_cli_edit_of_a_wan_run_writes_mp4_and_gif_and_streams_previews(wan_run, capsys):
    from vcstudio.config import EditConfig
    from vcstudio.io import read_video
    from vcstudio.pipelines.flow.edit import edit_flow_run

    assert main(["edit", "--run", str(wan_run), "--prompt", "a blue square moving right",
                 "--steps", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    mp4 = lines[-1]
    assert mp4.endswith(".mp4") and lines[-2].endswith(".gif")
    frames = read_video(mp4)
    assert frames.shape == (9, H, W, 3)
    assert (wan_run / "inversion-4-empty.safetensors").is_file()  # cached for the next edit
    events = []
    res = edit_flow_run(wan_run, EditConfig(prompt="a blue square moving right", steps=4,
                                            guidance=5.0), run=RunContext(progress=events.append),
                        preview_every=2)
    previews = [e for e in events if e.stage == "sample" and e.preview is not None]
    assert len(previews) == 2 and previews[0].preview.shape == (1, H, W, 3)
    assert [e.stage for e in events].count("invert") == 0  # the inversion came from the cache
    assert res.frames.shape == (9, H, W, 3)
    # the run's store record: a tune and an edit, the edit's parent the tune
    assert main(["runs", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert any(r["kind"] == "edit" for r in runs)


def test_flow_tune_events_cancel_and_checkpoints(tiny_wan_t2v, wan_clip, tmp_path):
    from vcstudio.config import DataConfig, TuneConfig
    from vcstudio.pipelines.flow.run import tune_flow
    from vcstudio.runs.folder import RunFolder
    from vcstudio.progress import CancelToken

    cancel = CancelToken()
    events = []

    def progress(e):
        events.append(e)
        if e.stage == "tune" and e.step == 3:
            cancel.cancel()

    cfg = TuneConfig(model=str(tiny_wan_t2v), steps=8, lr=1e-3, lora_rank=2,
                     checkpoint_every=2, preview_every=2, preview_steps=2, data=DataConfig(video_path=str(wan_clip),
                                                         prompt="a red circle", n_frames=9,
                                                         stride=1, width=32, height=32))
    res = tune_flow(cfg, tmp_path / "run", run=RunContext(progress=progress, cancel=cancel))
    assert res.stopped and res.steps == 3 and res.total == 8
    losses = [e.metrics["loss"] for e in events if e.stage == "tune" and e.metrics]
    assert len(losses) == 3 and all(np.isfinite(losses))
    previews = [e for e in events if e.preview is not None]
    assert [e.step for e in previews] == [2] and previews[0].preview.shape == (9, 32, 32, 3)
    etas = [e.eta for e in events if e.stage == "tune" and e.metrics]
    assert all(e is not None and e > 0 for e in etas)  # steps left x the measured step time
    meta = RunFolder(res.run_dir).meta()
    assert meta["status"] == "stopped" and meta["steps_done"] == 3
    assert (res.run_dir / "delta.safetensors").is_file()  # the stop's delta: editable
    assert (res.run_dir / "checkpoint.safetensors").is_file()  # and its state: resumable
    # tuning again into the folder resumes: a time-limited call first (2 steps), then the rest
    part = tune_flow(cfg, tmp_path / "run", step_budget=2)
    assert part.paused and part.steps == 5
    whole = tune_flow(cfg, tmp_path / "run")
    assert not whole.stopped and whole.steps == 8
    assert [r["step"] for r in RunFolder(whole.run_dir).losses()] == list(range(1, 9))
    assert not (whole.run_dir / "checkpoint.safetensors").is_file()
    with pytest.raises(InputError, match="already holds a tuned run"):
        tune_flow(cfg, tmp_path / "run")
    # the same steps as an uninterrupted tune: the same LoRA and losses
    straight = tune_flow(cfg, tmp_path / "straight")
    assert [round(r["loss"], 5) for r in straight.losses] == [
        round(r["loss"], 5) for r in RunFolder(whole.run_dir).losses()]
    from vcstudio.models.lora import read_lora

    a, b = read_lora(whole.run_dir / "delta.safetensors")[0], read_lora(
        straight.run_dir / "delta.safetensors")[0]
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_flowedit_with_the_source_prompt_returns_the_clip(tiny_wan_t2v, wan_clip, tmp_path,
                                                           capsys):
    from vcstudio.config import DataConfig, FlowEditConfig
    from vcstudio.io import read_video
    from vcstudio.models.family import load_flow_backbone
    from vcstudio.pipelines.flow.edit import flowedit_clip

    data = DataConfig(video_path=str(wan_clip), prompt="a red circle moving right", n_frames=9,
                      stride=1, width=0, height=0, size=48)
    same = FlowEditConfig(model=str(tiny_wan_t2v), data=data, prompt=data.prompt, steps=6,
                          source_guidance=3.5, target_guidance=3.5)
    events = []
    res = flowedit_clip(same, run=RunContext(progress=events.append), out_dir=tmp_path / "same")
    assert res.frames.shape == (9, 32, 48, 3)
    bb = load_flow_backbone(str(tiny_wan_t2v))
    with torch.no_grad():
        z = bb.encode_clip(res.source)
        from vcstudio.pipelines.i2v.base import to_uint8

        back = to_uint8(bb.decode(z))
    # the velocity difference is zero: FlowEdit gives back the clip's latents, so its decode
    assert np.abs(res.frames.astype(int) - back.astype(int)).max() <= 1
    assert [e.stage for e in events].count("flowedit") == 4  # 2/3 of 6 steps taken
    # the CLI: a target prompt edits, written as mp4 + gif
    out = tmp_path / "cli"
    assert main(["edit", "--video", str(wan_clip), "--model", str(tiny_wan_t2v), "--method",
                 "flowedit", "--source-prompt", data.prompt, "--prompt",
                 "a blue square moving right", "--frames", "9", "--size", "48", "--steps", "6",
                 "--out", str(out)]) == 0
    mp4 = capsys.readouterr().out.strip().splitlines()[-1]
    edited = read_video(mp4)
    assert edited.shape == (9, 32, 48, 3) and (out / "source.mp4").is_file()
    assert np.abs(edited.astype(int) - back.astype(int)).mean() > 0.5


@pytest.mark.parametrize("argv, message", [
    (["--width", "40", "--height", "32"], r"multiples of 16 .*got 40x32: use 48x32\."),
    # DCT and APLA run on Wan2.1 (tests/test_wan_methods.py); combined fg/bg tuning does not
    (["--method", "fgbg"], r"Method fgbg runs on Stable Diffusion base models, not on "
                           r"Wan2.1; on Wan2.1 pick baseline, dct, apla, apla\+dct"),
    (["--frames", "3"], r"at least 5 frames"),
])
def test_bad_wan_tune_input_is_one_line(tiny_wan_t2v, wan_clip, tmp_path, capsys, argv,
                                        message):
    rc = main(["tune", "--video", str(wan_clip), "--prompt", "a red circle", "--model",
               str(tiny_wan_t2v), "--stride", "1", "--steps", "1", "--out",
               str(tmp_path / "r"), *argv])
    assert rc == 2
    line = _one_line(capsys)
    assert line.startswith("error: ")
    import re

    assert re.search(message, line), line


def test_flowedit_refuses_an_sd_base_in_one_line(tiny_sd, wan_clip, capsys):
    assert main(["edit", "--video", str(wan_clip), "--model", str(tiny_sd), "--method",
                 "flowedit", "--source-prompt", "a red circle", "--prompt", "a blue square",
                 "--steps", "2"]) == 2
    line = _one_line(capsys)
    assert "Method flowedit runs on Wan2.1 base models, not on Stable Diffusion" in line
    assert main(["tune", "--video", str(wan_clip), "--prompt", "x", "--model", str(tiny_sd),
                 "--method", "flowedit"]) != 0
    assert "needs no tuning" in capsys.readouterr().err


def test_variant_models_after_at_resolve_aliases_and_label_the_row(tiny_sd):
    from vcstudio.jobs.compare import CompareConfig, split_variant, variant_count, variants

    assert split_variant("baseline@wan-1.3b") == ("baseline", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
    assert split_variant("dct@sd15")[1] == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert split_variant("dct") == ("dct", "")
    with pytest.raises(InputError, match="names no base model after '@'"):
        split_variant("dct@")
    cfg = CompareConfig(video="", prompt="a", edit_prompt="b", model=str(tiny_sd), size=32,
                        variants=["baseline", "baseline@wan-1.3b", "flowedit@wan", "dct"],
                        guidance=None)
    vs = variants(cfg)
    assert variant_count(cfg) == len(vs) == 4
    assert [v.tune.model if v.tune else v.flowedit.model for v in vs] == [
        str(tiny_sd), "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        str(tiny_sd)]
    assert vs[1].label.endswith("@ wan-1.3b") and vs[2].tune is None
    # no --guidance: each variant's base model's own (the tiny SD: the full tier's 12.5)
    assert [v.edit.guidance for v in vs] == [12.5, 5.0, 5.0, 12.5]
    assert {v.edit.guidance for v in variants(dataclasses.replace(cfg, guidance=7.0))} == {7.0}
    assert (vs[1].tune.data.width, vs[1].tune.data.size) == (0, 32)  # the DiT fits it itself


def test_compare_with_an_sd_and_wan_variants_gives_one_row_each(tiny_sd, tiny_wan_t2v,
                                                                 wan_clip, tmp_path, capsys):
    import csv

    from vcstudio.io import read_video

    out = tmp_path / "cmp"
    rc = main(["compare", "--video", str(wan_clip), "--prompt", "a red circle moving right",
               "--edit-prompt", "a blue square moving right", "--methods",
               f"baseline,baseline@{tiny_wan_t2v},flowedit@{tiny_wan_t2v}", "--model",
               str(tiny_sd), "--frames", "5", "--size", "48", "--steps", "2", "--lr", "1e-3",
               "--edit-steps", "3", "--metrics", "warp_error,psnr", "--out", str(out)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and lines[-1] == str(out)
    assert lines[0].split()[:3] == ["method", "warp_error", "psnr"]
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert len(rows) == 3
    assert [r["method"] for r in rows] == ["baseline", "baseline", "flowedit"]
    assert all(r["psnr"] and r["warp_error"] for r in rows)  # the same metric columns filled
    assert rows[1]["label"].endswith(f"@ {tiny_wan_t2v.name}")
    montage = read_video(out / "compare.mp4")
    assert montage.shape[0] == 5 and montage.shape[2] > 3 * 48  # three clips side by side


def test_a_wan_run_on_other_weights_is_refused_by_fingerprint(wan_run, tmp_path, capsys):
    from vcstudio.models.wan import build_tiny_wan_t2v

    other = build_tiny_wan_t2v(tmp_path / "other", seed=1)  # same architecture, other weights
    assert main(["edit", "--run", str(wan_run), "--model", str(other), "--prompt", "x",
                 "--steps", "2"]) == 2
    line = _one_line(capsys)
    assert "tuned on other weights" in line and "fingerprints differ" in line


def test_wan_estimates_come_from_the_architecture_labelled_uncalibrated(tiny_wan_t2v,
                                                                         wan_clip, wan_run):
    from vcstudio.config import DataConfig, TuneConfig
    from vcstudio.jobs import edit as edit_job
    from vcstudio.jobs import tune as tune_job
    from vcstudio.jobs.edit import EditJobConfig
    from vcstudio.config import EditConfig

    def tune_est(frames, model=str(tiny_wan_t2v), device="cpu", w=0, h=0):
        return tune_job.estimate(TuneConfig(model=model, steps=300, data=DataConfig(
            video_path=str(wan_clip), n_frames=frames, width=w, height=h, size=48)), device)

    small, big = tune_est(9), tune_est(21)
    assert small["how"] == "uncalibrated" and "TFLOP/s assumed on CPU" in small["basis"]
    assert small["parts"]["frames"] == 9 and tune_est(11)["parts"]["frames"] == 9  # 4k + 1
    assert big["seconds"] > small["seconds"]
    # the full-size 1.3B architecture on an H100: 49 frames at 480x832, 300 LoRA steps
    full = tune_est(49, "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "cuda:H100", 832, 480)
    assert 0.5 < full["seconds_per_step"] < 2.0 and full["gib"] < 24
    e = edit_job.estimate(EditJobConfig(run=str(wan_run), edit=EditConfig(prompt="x", steps=8,
                                                                          guidance=5.0)))
    assert e["how"] == "uncalibrated" and e["parts"]["sample_s"] > 0
    assert "uncalibrated" in edit_job.estimate_line(e)


def test_long_video_refuses_the_sd_only_stages_on_a_wan_run_in_one_line(wan_run, capsys):
    """Long Video runs on a Wan run (tests/test_wan_long.py); its mask stage does not."""
    assert main(["long", "--run", str(wan_run), "--prompts", "a red circle", "--frames", "20",
                 "--window", "9", "--stride", "4", "--masks"]) == 2
    line = _one_line(capsys)
    assert "--masks" in line and "runs on Stable Diffusion runs only" in line and "Wan2.1" in line


def test_a_wan_default_model_runs_through_the_studio(tiny_wan_t2v, wan_clip, tmp_path,
                                                      monkeypatch):
    """$VCSTUDIO_MODEL names the app's default model: a Wan folder there is what a tune and an
    edit submitted without a model (the app's tabs, the API) run on."""
    from vcstudio import jobs
    from vcstudio.config import DataConfig, EditConfig, Limits, TuneConfig
    from vcstudio.jobs.edit import EditJobConfig
    from vcstudio.runs.folder import RunFolder

    monkeypatch.setenv("VCSTUDIO_MODEL", str(tiny_wan_t2v))
    studio = jobs.studio(tmp_path / "data", limits=Limits(), device="cpu")
    try:
        events = []
        res = studio.run("tune", TuneConfig(steps=2, lr=1e-3, lora_rank=2, data=DataConfig(
            video_path=str(wan_clip), prompt="a red circle", n_frames=9, stride=1, width=48,
            height=32)), progress=events.append)
        meta = RunFolder(res.run_dir).meta()
        assert meta["backbone"] == "wan" and meta["base_model"] == str(tiny_wan_t2v)
        assert any(e.stage == "estimate" and "uncalibrated" in e.message for e in events)
        out = studio.run("edit", EditJobConfig(run=str(res.run_dir), edit=EditConfig(
            prompt="a blue square", steps=2, guidance=5.0)))
        assert out.mp4.is_file() and out.frames.shape == (9, 32, 48, 3)
        # the session's model cache holds the frozen Wan parts once: the tune's LoRA went
        # into its own copy of the transformer, and the text encoder is still there
        wan = [studio.cache.get(k, None) for k in studio.cache.keys()
               if k[0] == "wan" and k[2] == str(tiny_wan_t2v)]
        assert len(wan) == 1 and wan[0].text_encoder is not None
        assert not any("lora_" in n for n, _ in wan[0].transformer.named_parameters())
    finally:
        studio.close()


def test_a_pushed_wan_run_says_it_is_a_diffusers_lora_and_edits(wan_run, tmp_path, capsys):
    folder = tmp_path / "pushed"
    assert main(["push", str(wan_run), "--to-folder", str(folder)]) == 0
    card = (folder / "README.md").read_text()
    assert "backbone-wan" in card and "tune-a-video" not in card
    assert 'WanPipeline.from_pretrained(BASE).load_lora_weights("delta.safetensors")' in card
    capsys.readouterr()
    assert main(["edit", "--run", str(folder), "--prompt", "a cat", "--steps", "2"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith(".mp4")


def test_a_sweep_runs_flowedit_cells_beside_tuned_ones(tiny_wan_t2v, wan_clip, tmp_path):
    """`method: [baseline, flowedit]` in a sweep grid: the baseline cell tunes and edits, the
    FlowEdit cell edits the clip without tuning; both are scored with the same metrics."""
    import csv

    import yaml

    g = {"tune": {"model": str(tiny_wan_t2v),
                  "data": {"video_path": str(wan_clip), "prompt": "a red circle moving right",
                           "n_frames": 9, "stride": 1, "size": 48},
                  "method": ["baseline", "flowedit"], "steps": 2, "lora_rank": 4,
                  "inversion_steps": 2, "checkpoint_every": 0, "preview_every": 0},
         "edit": {"prompt": "a blue square moving right", "steps": 3}}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(g))
    out = tmp_path / "sweep"
    assert main(["sweep", str(path), "--inline", "--out", str(out),
                 "--metrics", "consistency_adjacent"]) == 0
    rows = list(csv.DictReader((out / "cells.csv").open()))
    assert [r["status"] for r in rows] == ["done", "done"]
    base, fe = rows
    assert float(fe["consistency_adjacent"]) > 0 and float(base["consistency_adjacent"]) > 0
    assert base["final_loss"] and not fe["final_loss"]  # FlowEdit tuned nothing
    cells = sorted(out.glob("cell-*"))
    assert sum((c / "delta.safetensors").is_file() for c in cells) == 1
    assert sum(1 for c in cells for _ in c.rglob("*.mp4")) >= 2
    # a FlowEdit cell without an edit section is refused before anything runs
    del g["edit"]
    path.write_text(yaml.safe_dump(g))
    assert main(["sweep", str(path), "--inline", "--out", str(tmp_path / "no")]) == 2
