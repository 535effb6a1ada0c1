"""Long Video on Wan2.1 (issue 27): co-denoising windows counted in latent frames, a prompt per
window, the flow sampler with the windows' velocities fused, on the tiny WanPipeline folder
(real classes, offline tokenizer) through the CLI, the job API and the pipeline."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from vcstudio.cli import main
from vcstudio.config import LongConfig
from vcstudio.errors import InputError
from vcstudio.run_context import RunContext

pytestmark = pytest.mark.usefixtures("one_thread")

W, H = 48, 32
PROMPTS = ["a red circle moving right", "a blue square moving left"]


def _long(**kw) -> LongConfig:
    base = dict(prompts=list(PROMPTS), frames=33, window=17, stride=8, steps=3, guidance=5.0,
                seed=7, fusion="pyramid", size=48)
    return LongConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def studio_data(tmp_path_factory):
    return tmp_path_factory.mktemp("wanlong-data")


@pytest.fixture(scope="module")
def wan_run(tiny_wan_t2v, studio_data, tmp_path_factory):
    """A Wan run tuned through the studio (LoRA rank 4, a few steps at a high rate: the LoRA
    visibly moves), recorded in ``studio_data``'s store."""
    from vcstudio import jobs
    from vcstudio.config import DataConfig, Limits, TuneConfig
    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip

    clip = write_mp4(moving_shape_clip(9, W, dx=2.0)[:, :H],
                     tmp_path_factory.mktemp("wanlong-clip") / "c.mp4")
    studio = jobs.studio(studio_data, limits=Limits(), device="cpu")
    try:
        res = studio.run("tune", TuneConfig(
            model=str(tiny_wan_t2v), steps=4, lr=5e-2, lora_rank=4, preview_every=0,
            data=DataConfig(video_path=str(clip), prompt=PROMPTS[0], n_frames=9, stride=1,
                            width=W, height=H)))
    finally:
        studio.close()
    return res.run_dir


def test_windows_are_counted_in_latent_frames():
    from vcstudio.pipelines.long.windows import latent_grid, latent_segments, window_count
    from vcstudio.scene.segments import Segment

    g = latent_grid(33, 17, 8, 4)  # the brief's example: 9 latent frames, windows of 5 every 2
    assert (g.made, g.latent_frames, g.latent_window, g.latent_stride) == (33, 9, 5, 2)
    assert window_count(g.latent_frames, g.latent_window, g.latent_stride) == 3
    assert g.note == ""  # nothing rounded
    assert (g.video_span(0, 5), g.video_span(2, 7), g.video_span(4, 9)) == (
        (0, 17), (5, 25), (13, 33))  # latent frame 0 is one video frame, the others four
    # off the grid: frames made at the next 4k + 1 and cut back, the window rounded up to 4k + 1
    # (never below what was asked), the stride to a multiple of 4 (halves up); said in one line
    r = latent_grid(30, 16, 6, 4)
    assert (r.made, r.latent_frames, r.latent_window, r.latent_stride) == (33, 9, 5, 2)
    assert (r.window_frames, r.stride_frames) == (17, 8)
    assert "\n" not in r.note and "30 frames are made as 33 and cut back to 30" in r.note
    assert "window 16 -> 17 frames" in r.note and "stride 6 -> 8 frames" in r.note
    assert latent_grid(30, 30, 8, 4).latent_window == 9  # a window as long as the video: one
    assert latent_grid(21, 9, 2, 4).latent_stride == 1  # at least one latent frame
    sd = latent_grid(30, 16, 6, 1)  # Stable Diffusion: frames are latent frames
    assert (sd.latent_frames, sd.latent_window, sd.latent_stride, sd.note) == (30, 16, 6, "")
    # the timeline on the latent frames that hold it: the last segment reaches the end
    segs = latent_segments([Segment("a", 0, 15), Segment("b", 15, 30)], r)
    assert [(s.start, s.end) for s in segs] == [(0, 5), (4, 9)]


def test_cli_long_on_the_wan_base_writes_the_asked_frames_with_a_prompt_per_window(
        tiny_wan_t2v, tmp_path, capsys):
    from vcstudio.io import read_video

    out = tmp_path / "long.mp4"
    rc = main(["long", "--model", str(tiny_wan_t2v), "--prompts", *PROMPTS, "--frames", "30",
               "--window", "16", "--stride", "8", "--size", "40", "--steps", "2", "--seed", "3",
               "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0 and cap.out.strip().splitlines()[-1] == str(out)
    assert read_video(out).shape == (30, H, W, 3)  # 33 made, cut back to the asked 30
    # the table: 3 windows of 17 video frames (5 latent every 2 of 9), one prompt each
    assert "3 windows of 17 (stride 8, pyramid fusion) (5 latent frames every 2 of 9)" in cap.out
    assert "made as 33 and cut back to 30" in cap.out and "window 16 -> 17" in cap.out
    assert "--size 40 is rounded to 48" in cap.err  # the size note, said once at the end
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["backbone"] == "wan" and info["latent"] == {"frames": 9, "window": 5,
                                                            "stride": 2, "made_frames": 33}
    assert [w["prompt"] for w in info["windows"]] == [PROMPTS[0], PROMPTS[0], PROMPTS[1]]
    assert [w["frames"] for w in info["windows"]] == ["0-16", "5-24", "13-29"]
    assert info["config"]["guidance"] == 5.0  # Wan's own scale when --guidance is not given
    # --show-timeline prints the same table without a model step
    assert main(["long", "--model", str(tiny_wan_t2v), "--prompts", *PROMPTS, "--frames", "33",
                 "--window", "17", "--stride", "8", "--show-timeline"]) == 0
    shown = capsys.readouterr().out
    assert "3 windows of 17" in shown and "note:" not in shown


def test_a_single_window_equals_plain_wan_sampling(tiny_wan_t2v, tmp_path):
    from vcstudio.models.family import load_flow_backbone
    from vcstudio.pipelines.long.codenoise import CoDenoiser
    from vcstudio.pipelines.flow.ode import sample
    from vcstudio.pipelines.flow.long import flow_long_video
    from vcstudio.pipelines.i2v.base import to_uint8
    from vcstudio.pipelines.long.windows import make_layout

    cfg = _long(prompts=[PROMPTS[0]], frames=17, window=17, stride=8)
    res = flow_long_video(cfg, model=str(tiny_wan_t2v), out_root=tmp_path)
    assert res.layout.n_windows == 1 and res.frames.shape == (17, H, W, 3)
    bb = load_flow_backbone(str(tiny_wan_t2v))
    cond, uncond = bb.encode_prompts([PROMPTS[0], ""]).split(1)
    noise = torch.randn((1, 16, 5, H // 8, W // 8), generator=torch.Generator().manual_seed(7))
    plain = sample(bb, noise, cond, 3, uncond=uncond, guidance=5.0)
    with torch.no_grad():
        frames = to_uint8(bb.decode(plain))
    assert np.abs(frames.astype(int) - res.frames.astype(int)).max() <= 1
    # the latents themselves: the co-denoiser over one window is the guided velocity
    one = CoDenoiser(bb.predict, make_layout(5, 5, 1, "pyramid"), cond, uncond, 5.0)
    fused = sample(bb, noise, cond, 3, uncond=uncond, guidance=5.0, predict=one)
    assert (fused - plain).abs().max().item() < 1e-5
    assert plain.abs().mean().item() > 0.1  # a real sample, not zeros


def test_windows_with_other_prompts_come_out_other(tiny_wan_t2v, tmp_path):
    from vcstudio.pipelines.flow.long import flow_long_video

    events = []
    two = flow_long_video(_long(steps=6), model=str(tiny_wan_t2v), out_root=tmp_path / "a",
                          run=RunContext(progress=events.append))
    same = flow_long_video(_long(steps=6, prompts=[PROMPTS[0], PROMPTS[0]]),
                           model=str(tiny_wan_t2v), out_root=tmp_path / "b")
    assert [r["prompt"] for r in two.table] == [PROMPTS[0], PROMPTS[0], PROMPTS[1]]
    d = (two.latents - same.latents).abs().mean(dim=(0, 1, 3, 4))  # per latent frame
    # only the last window's prompt differs (latent frames 4-8): the frames it alone holds
    # (7, 8) change, those of the first two windows (0-3) barely (the overlaps carry a trace of
    # it there: the frames are denoised together); ~2e-3 vs ~1e-5 on the tiny model, whose
    # random cross-attention is weak
    assert d[7:].min() > 1e-4 and d[7:].min() > 20 * d[:4].max()
    # previews stream while co-denoising: a strip over the whole video (6 latent frames)
    strips = [e for e in events if e.stage == "co-denoise 48x32" and e.preview is not None]
    assert len(strips) == 5 and strips[0].preview.shape == (6, H, W, 3)


def test_a_tuned_wan_run_generates_through_the_job_with_its_lora(tiny_wan_t2v, wan_run,
                                                                 studio_data, tmp_path):
    from vcstudio import jobs
    from vcstudio.config import Limits
    from vcstudio.jobs.long import LongJobConfig
    from vcstudio.pipelines.flow.long import flow_long_video

    studio = jobs.studio(studio_data, limits=Limits(), device="cpu")
    try:
        events = []
        res = studio.run("long", LongJobConfig(run=str(wan_run), long=_long(frames=21, window=9,
                                                                            stride=4, size=0)),
                         progress=events.append)
        rec, tune = studio.store.run(res.run_id), studio.store.run_by_dir(wan_run, "tune")
    finally:
        studio.close()
    assert res.mp4.is_file() and res.mp4.parent == wan_run / "long"
    assert res.frames.shape == (21, H, W, 3)  # the tuned clip's size
    assert res.layout.n_windows == 4  # 6 latent frames, windows of 3 every 1
    assert any(e.stage == "estimate" and "calibrated" in e.message for e in events)
    assert rec.kind == "long" and rec.parent_run == tune.id  # recorded under the tuned run
    base = flow_long_video(_long(frames=21, window=9, stride=4, size=48), model=str(tiny_wan_t2v),
                           out_root=tmp_path / "base")
    assert np.abs(base.frames.astype(int) - res.frames.astype(int)).mean() > 0.5  # the LoRA


def test_the_wan_long_estimate_is_windows_times_the_sampling_estimate(tiny_wan_t2v, wan_run):
    from vcstudio.jobs.flow_estimates import sample_estimate
    from vcstudio.jobs.long import LongJobConfig, estimate, estimate_line

    cfg = LongJobConfig(model=str(tiny_wan_t2v), long=_long(steps=10))
    est = estimate(cfg)
    p = est["parts"]
    assert est["how"] == "uncalibrated" and (p["windows"], p["window_frames"]) == (3, 17)
    assert "3 windows of 17 frames at 48x32" in estimate_line(est)
    more = estimate(LongJobConfig(model=str(tiny_wan_t2v), long=_long(steps=10, stride=4)))
    assert more["parts"]["windows"] == 5  # stride 4: a latent frame apart
    assert more["parts"]["co_denoise_s"] > 1.4 * p["co_denoise_s"]  # ~5/3 (rounded to ms)
    tuned = estimate(LongJobConfig(run=str(wan_run), long=_long(size=0)))
    assert (tuned["parts"]["width"], tuned["parts"]["height"]) == (W, H)
    # the full-size 1.3B on an H100: 81 frames at 832x480 in windows of 33 every 16
    wan = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    full = estimate(LongJobConfig(model=wan, long=LongConfig(
        prompts=["a"], frames=81, window=33, stride=16, steps=50, guidance=5.0)), "cuda:H100")
    p = full["parts"]
    assert (p["windows"], p["window_frames"], p["width"], p["height"]) == (4, 33, 832, 480)
    one = sample_estimate(wan, 33, 480, 832, 50, 5.0, "cuda:H100")  # one window's sampling
    assert p["co_denoise_s"] == pytest.approx(4 * one["parts"]["sample_s"], rel=1e-3)
    assert 10 < full["seconds"] < 600 and one["gib"] < full["gib"] < 40


@pytest.mark.parametrize("argv, message", [
    (["--window", "0"], r"long\.window \(--window\) must be within 1\.\.33"),
    (["--window", "40"], r"long\.window \(--window\) must be within 1\.\.33 \(at most the video"),
    (["--stride", "0"], r"long\.stride \(--stride\) must be within 1\.\.17"),
    (["--stride", "20"], r"long\.stride \(--stride\) must be within 1\.\.17 \(at most the window"),
    (["--masks"], r"--masks .* runs on Stable Diffusion runs only; drop it for this Wan2\.1"),
    (["--refine", "64,128"], r"--refine .* runs on Stable Diffusion runs only"),
])
def test_bad_wan_long_input_is_one_line(tiny_wan_t2v, tmp_path, capsys, argv, message):
    rc = main(["long", "--model", str(tiny_wan_t2v), "--prompts", "a red circle", "--frames",
               "33", "--window", "17", "--stride", "8", "--steps", "1", "--out",
               str(tmp_path / "x.mp4"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: ") and re.search(message, err[-1]), err[-1]
    assert not (tmp_path / "x.mp4").exists()


def test_long_needs_a_run_on_sd_and_a_run_or_model(tiny_sd, capsys):
    from vcstudio.config import Limits
    from vcstudio.jobs.long import LongJobConfig, validate

    assert main(["long", "--model", str(tiny_sd), "--prompts", "a cat", "--frames", "16"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "Long Video on Stable Diffusion generates from a tuned run" in line
    with pytest.raises(InputError, match=r"run \(--run\) is empty.*--model"):
        validate(LongJobConfig(long=_long()), Limits())
