"""Estimates from measured speeds (calibration), the tune's ETA, preview cadence within ~10%
of tuning, and inversions cached per step count and reused by edits."""
import json
import time

import pytest

from vcstudio import calibration as cal
from vcstudio.config import DataConfig, EditConfig, TuneConfig
from vcstudio.jobs import studio as make_studio
from vcstudio.jobs.tune import estimate, estimate_line

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(model, clip, steps, **kw):
    return TuneConfig(model=str(model), data=DataConfig(video_path=str(clip), prompt="a red circle",
                                                        n_frames=6, stride=1, width=64,
                                                        height=64),
                      steps=steps, lr=1e-3, checkpoint_every=0, inversion_steps=10, **kw)


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip

    return write_mp4(moving_shape_clip(8, 64, dx=3.0),
                     tmp_path_factory.mktemp("clip") / "clip.mp4", 8)


def test_preview_cadence_keeps_previews_under_a_tenth_of_tuning():
    # the CPU numbers: ~2.5 s a step, ~70 s a preview -> one preview per 280 steps
    assert cal.preview_cadence(10, 70.0, 2.5) == 280
    assert 70.0 / (cal.preview_cadence(10, 70.0, 2.5) * 2.5) <= 0.1
    assert cal.preview_cadence(10, 0.5, 2.5) == 10  # cheap previews: as often as asked
    assert cal.preview_cadence(0, 70.0, 2.5) == 0  # none asked
    assert cal.previews_in(500, 0, 280) == 1


def test_estimate_is_uncalibrated_then_within_2x_of_a_tune_after_one_short_tune(
        tiny_sd, clip_file, tmp_path):
    from vcstudio.models.cache import ModelCache

    data = tmp_path / "data"
    with make_studio(data, cache=ModelCache(), device="cpu") as studio:
        before = estimate(_cfg(tiny_sd, clip_file, 40), "cpu", calibration_dir=data)
        assert before["how"] == "uncalibrated"
        assert "uncalibrated" in estimate_line(before)
        # one short tune calibrates; its progress events carry an ETA
        evs = []
        studio.run("tune", _cfg(tiny_sd, clip_file, 8), progress=evs.append)
        etas = [e.eta for e in evs if e.stage == "tune" and e.eta is not None]
        assert len(etas) == 8 and etas[-1] < etas[0]
        assert "ETA" in next(e for e in evs if e.stage == "tune" and e.step == 4).message
        assert (data / cal.FILE_NAME).is_file()
        # the estimate of another tune (5x the steps) is within 2x of its measured time, and
        # it never waits for the device: made while the device lock is held
        cfg = _cfg(tiny_sd, clip_file, 40)
        with studio.device_lock("cpu"):
            t = time.perf_counter()
            est = estimate(cfg, "cpu", calibration_dir=data)
            assert time.perf_counter() - t < 1.0
        assert est["how"] == "calibrated" and est["parts"]["inversion_s"] > 0
        t = time.perf_counter()
        studio.run("tune", cfg)
        real = time.perf_counter() - t
    assert real / 2 <= est["seconds"] <= 2 * real, (est, real)


def test_the_estimate_counts_the_validation_samples(tiny_sd, clip_file, tmp_path):
    """Tune-A-Video's validation samples (every ``validation.every`` steps and at the end, one
    per prompt) are in the estimate, and the estimate of a tune that makes them is within 2x of
    its time (calibrated by a short tune without them)."""
    from vcstudio.config import ValidationConfig
    from vcstudio.models.cache import ModelCache

    val = ValidationConfig(prompts=("a blue square", "a green star"), every=10, steps=20,
                           guidance=5.0)
    plain, sampled = _cfg(tiny_sd, clip_file, 20), _cfg(tiny_sd, clip_file, 20, validation=val)
    data = tmp_path / "data"
    with make_studio(data, cache=ModelCache(), device="cpu") as studio:
        studio.run("tune", _cfg(tiny_sd, clip_file, 8))  # calibrates
        a = estimate(plain, "cpu", calibration_dir=data)
        b = estimate(sampled, "cpu", calibration_dir=data)
        # at step 10 and at the end, 2 prompts, 20 steps each, two U-Net passes under CFG
        assert b["parts"]["validation_samples"] == 4
        assert b["seconds"] - a["seconds"] == pytest.approx(b["parts"]["validation_s"], abs=0.2)
        assert b["parts"]["validation_s"] > 0 and "4 validation samples" in estimate_line(b)
        t = time.perf_counter()
        studio.run("tune", sampled)
        real = time.perf_counter() - t
    assert real / 2 <= b["seconds"] <= 2 * real, (b, real)


def test_tune_previews_cost_at_most_about_a_tenth_and_the_estimate_counts_them(
        tiny_sd, clip8, tmp_path, cache):
    from vcstudio.pipelines.tune import tune

    cfg = TuneConfig(model=str(tiny_sd), data=DataConfig(prompt="a red circle", n_frames=8,
                                                         width=64, height=64),
                     steps=40, lr=1e-3, checkpoint_every=0, inversion_steps=4,
                     preview_every=1, preview_steps=2)
    evs = []
    tune(cfg, tmp_path / "run", frames=clip8, cache=cache, progress=evs.append,
         calibration_dir=tmp_path)
    timing = json.loads((tmp_path / "run" / "meta.json").read_text())["timing"]
    shown = [e for e in evs if e.stage == "tune" and e.preview is not None]
    assert 1 <= len(shown) == timing["previews"] < 40  # asked every step: spaced out
    share = timing["previews"] * timing["preview_s"] / (40 * timing["train_step_s"])
    assert share <= 0.15, timing  # ~10%, the first one spaced by the prior
    # the calibrated estimate counts those previews and the inversion
    est = estimate(cfg, "cpu", calibration_dir=tmp_path)
    assert est["parts"]["previews"] >= 1 and est["parts"]["previews_s"] > 0
    assert est["parts"]["previews_s"] <= 0.15 * est["parts"]["tune_s"]


def test_edits_reuse_the_tunes_inversion_and_cache_another_step_count(tiny_sd, clip8,
                                                                       tmp_path, cache):
    from vcstudio.pipelines.edit import edit
    from vcstudio.pipelines.tune import tune

    cfg = TuneConfig(model=str(tiny_sd), data=DataConfig(prompt="a red circle", n_frames=4,
                                                         width=64, height=64),
                     steps=3, lr=1e-3, checkpoint_every=0, inversion_steps=6)

    def inversions(evs):  # an inversion reports its own steps (stage "invert")
        return sum(1 for e in evs if e.stage == "invert" and e.step == 1)

    evs = []
    tune(cfg, tmp_path / "run", frames=clip8[:4], cache=cache, progress=evs.append)
    assert inversions(evs) == 1  # the tune inverts at its inversion_steps
    for steps, expected in ((6, 0), (6, 0), (4, 1), (4, 0)):
        evs = []
        edit(tmp_path / "run", EditConfig(prompt="a blue square", steps=steps, seed=1),
             progress=evs.append, cache=cache)
        assert inversions(evs) == expected, (steps, expected)
    assert len(list((tmp_path / "run").glob("inversion-*.safetensors"))) == 2


def test_edit_estimate_counts_the_inversion_only_when_it_is_not_cached(tiny_sd, clip8,
                                                                       tmp_path, cache):
    from vcstudio.jobs.edit import EditJobConfig
    from vcstudio.jobs.edit import estimate as edit_estimate
    from vcstudio.jobs.long import LongJobConfig
    from vcstudio.jobs.long import estimate as long_estimate
    from vcstudio.config import LongConfig
    from vcstudio.pipelines.edit import edit
    from vcstudio.pipelines.tune import tune

    cfg = TuneConfig(model=str(tiny_sd), data=DataConfig(prompt="a red circle", n_frames=8,
                                                         width=64, height=64),
                     steps=6, lr=1e-3, checkpoint_every=0, inversion_steps=20)
    run = tmp_path / "run"
    job = EditJobConfig(run=str(run), edit=EditConfig(prompt="a blue square", steps=20, seed=1))
    tune(cfg, run, frames=clip8, cache=cache, calibration_dir=tmp_path / "cal")
    assert edit_estimate(job, "cpu", tmp_path / "elsewhere")["how"] == "uncalibrated"
    est = edit_estimate(job, "cpu", tmp_path / "cal")
    assert est["how"] == "calibrated" and est["inversion"] is False  # the tune's, reused
    other = edit_estimate(EditJobConfig(run=str(run), edit=EditConfig(prompt="x", steps=30)),
                          "cpu", tmp_path / "cal")
    assert other["inversion"] is True and other["parts"]["inversion_s"] > 0
    t = time.perf_counter()
    edit(run, job.edit, cache=cache)
    real = time.perf_counter() - t
    assert real / 2.5 <= est["seconds"] <= 2.5 * real, (est, real)
    long = long_estimate(LongJobConfig(str(run), LongConfig(prompts=["a"], frames=16, window=8,
                                                            stride=4, steps=10)),
                         "cpu", tmp_path / "cal")
    assert long["how"].startswith("scaled") or long["how"] == "calibrated"
    assert long["seconds"] > 0
