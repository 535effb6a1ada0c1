"""Estimates from measured speeds (calibration), the tune's ETA, preview cadence within ~10%
of tuning, and inversions cached per step count and reused by edits."""
import json
import time

import pytest

from vcstudio import calibration as cal
from vcstudio.config import DataConfig, EditConfig, TuneConfig
from vcstudio.jobs import studio as make_studio
from vcstudio.jobs.tune import estimate, estimate_line
from vcstudio.run_context import RunContext

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
    from vcstudio.pipelines.tune.loop import tune

    cfg = TuneConfig(model=str(tiny_sd), data=DataConfig(prompt="a red circle", n_frames=8,
                                                         width=64, height=64),
                     steps=40, lr=1e-3, checkpoint_every=0, inversion_steps=4,
                     preview_every=1, preview_steps=2)
    evs = []
    tune(cfg, tmp_path / "run", frames=clip8, run=RunContext(progress=evs.append, cache=cache),
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
    from vcstudio.pipelines.edit.edits import edit
    from vcstudio.pipelines.tune.loop import tune

    cfg = TuneConfig(model=str(tiny_sd), data=DataConfig(prompt="a red circle", n_frames=4,
                                                         width=64, height=64),
                     steps=3, lr=1e-3, checkpoint_every=0, inversion_steps=6)

    def inversions(evs):  # an inversion reports its own steps (stage "invert")
        return sum(1 for e in evs if e.stage == "invert" and e.step == 1)

    evs = []
    tune(cfg, tmp_path / "run", frames=clip8[:4], run=RunContext(progress=evs.append, cache=cache))
    assert inversions(evs) == 1  # the tune inverts at its inversion_steps
    for steps, expected in ((6, 0), (6, 0), (4, 1), (4, 0)):
        evs = []
        edit(tmp_path / "run", EditConfig(prompt="a blue square", steps=steps, seed=1),
             run=RunContext(progress=evs.append, cache=cache))
        assert inversions(evs) == expected, (steps, expected)
    assert len(list((tmp_path / "run").glob("inversion-*.safetensors"))) == 2


def test_edit_estimate_counts_the_inversion_only_when_it_is_not_cached(tiny_sd, clip8,
                                                                       tmp_path, cache):
    from vcstudio.jobs.edit import EditJobConfig
    from vcstudio.jobs.edit import estimate as edit_estimate
    from vcstudio.jobs.long import LongJobConfig
    from vcstudio.jobs.long import estimate as long_estimate
    from vcstudio.config import LongConfig
    from vcstudio.pipelines.edit.edits import edit
    from vcstudio.pipelines.tune.loop import tune

    cfg = TuneConfig(model=str(tiny_sd), data=DataConfig(prompt="a red circle", n_frames=8,
                                                         width=64, height=64),
                     steps=6, lr=1e-3, checkpoint_every=0, inversion_steps=20)
    run = tmp_path / "run"
    job = EditJobConfig(run=str(run), edit=EditConfig(prompt="a blue square", steps=20, seed=1))
    tune(cfg, run, frames=clip8, run=RunContext(cache=cache), calibration_dir=tmp_path / "cal")
    assert edit_estimate(job, "cpu", tmp_path / "elsewhere")["how"] == "uncalibrated"
    est = edit_estimate(job, "cpu", tmp_path / "cal")
    assert est["how"] == "calibrated" and est["inversion"] is False  # the tune's, reused
    other = edit_estimate(EditJobConfig(run=str(run), edit=EditConfig(prompt="x", steps=30)),
                          "cpu", tmp_path / "cal")
    assert other["inversion"] is True and other["parts"]["inversion_s"] > 0
    t = time.perf_counter()
    edit(run, job.edit, run=RunContext(cache=cache))
    real = time.perf_counter() - t
    assert real / 2.5 <= est["seconds"] <= 2.5 * real, (est, real)
    long = long_estimate(LongJobConfig(str(run), LongConfig(prompts=["a"], frames=16, window=8,
                                                            stride=4, steps=10)),
                         "cpu", tmp_path / "cal")
    assert long["how"].startswith("scaled") or long["how"] == "calibrated"
    assert long["seconds"] > 0


# -- estimates you can plan by: measured speeds, a probe where there are none, the load factor

def _recorded(folder, cfg, train_s, pass_s, rate, **kw):
    d = cfg.data
    cal.record(folder, "cpu", cfg.model, cfg.method,
               cal.Speed(d.n_frames, d.width, d.height, train_s, pass_s, rate=rate, **kw))


def test_the_estimate_follows_the_measured_speed_and_the_load_factor(tmp_path):
    """Every stage is the measured speed x its count, and every measured time is scaled by the
    load factor (rate when measured / rate now): half the machine's rate now, twice the
    seconds, and the line says how much busier it is."""
    cfg = TuneConfig(model="m", data=DataConfig(n_frames=8, width=64, height=64), steps=100,
                     inversion_steps=20)
    _recorded(tmp_path, cfg, 0.5, 0.2, rate=100.0, overhead_s=3.0, decode_s=0.4)
    same = estimate(cfg, "cpu", calibration_dir=tmp_path, rate=100.0)
    p = same["parts"]
    assert same["how"] == "calibrated" and same["load"] == 1.0
    assert p["tune_s"] == pytest.approx(100 * 0.5) and p["inversion_s"] == pytest.approx(20 * 0.2)
    assert same["seconds"] == pytest.approx(3.0 + 50 + 4, abs=0.1)
    assert same["low"] == same["high"] == pytest.approx(same["seconds"], abs=0.1)
    busy = estimate(cfg, "cpu", calibration_dir=tmp_path, rate=50.0)
    assert busy["load"] == pytest.approx(2.0)
    assert busy["seconds"] == pytest.approx(2 * same["seconds"], abs=0.2)
    assert "x2.0 vs when measured" in estimate_line(busy, "cpu")
    idle = estimate(cfg, "cpu", calibration_dir=tmp_path, rate=400.0)
    assert idle["seconds"] == pytest.approx(same["seconds"] / 4, abs=0.1)
    # a second measurement at half the rate with twice the time is the same speed: the mean
    # of the two, brought to one rate, stays put
    _recorded(tmp_path, cfg, 1.0, 0.4, rate=50.0, overhead_s=6.0, decode_s=0.8)
    again = estimate(cfg, "cpu", calibration_dir=tmp_path, rate=100.0)
    assert again["seconds"] == pytest.approx(same["seconds"], rel=0.01)
    # a GPU's speed does not follow the host's load
    gpu = TuneConfig(model="m", data=cfg.data, steps=100, inversion_steps=20)
    cal.record(tmp_path, "cuda", "m", "baseline", cal.Speed(8, 64, 64, 0.1, 0.05, rate=0.0))
    assert estimate(gpu, "cuda", calibration_dir=tmp_path)["load"] == 1.0


def test_a_probe_measures_a_shape_nothing_was_measured_at(tmp_path):
    """No speed for this shape: the estimate asks the probe once (it records what it measured,
    as a tune would), then follows the probe's figures; without a probe it scales the nearest
    measured shape by frames x pixels and says so with a range."""
    cfg = TuneConfig(model="m", data=DataConfig(n_frames=8, width=64, height=64), steps=10,
                     inversion_steps=10)
    asked = []

    def probe(c):
        asked.append((c.data.n_frames, c.data.width, c.data.height))
        _recorded(tmp_path, c, 0.3, 0.1, rate=100.0, source="probe")

    before = estimate(cfg, "cpu", calibration_dir=tmp_path, rate=100.0)
    assert before["how"] == "uncalibrated" and before["high"] >= 4 * before["seconds"] * 0.99
    est = estimate(cfg, "cpu", calibration_dir=tmp_path, probe=probe, rate=100.0)
    assert asked == [(8, 64, 64)] and est["how"] == "probed"
    assert est["parts"]["tune_s"] == pytest.approx(10 * 0.3)
    assert est["parts"]["inversion_s"] == pytest.approx(10 * 0.1)
    assert est["low"] < est["seconds"] < est["high"]  # two timed steps: a range
    estimate(cfg, "cpu", calibration_dir=tmp_path, probe=probe, rate=100.0)
    assert len(asked) == 1  # measured once
    # twice the frames, no probe: scaled from 8x64x64, a rough range
    wide = TuneConfig(model="m", data=DataConfig(n_frames=16, width=64, height=64), steps=10,
                      inversion_steps=10)
    sc = estimate(wide, "cpu", calibration_dir=tmp_path, rate=100.0)
    assert sc["how"] == "scaled from 8x64x64"
    assert sc["parts"]["tune_s"] == pytest.approx(2 * est["parts"]["tune_s"])
    text = estimate_line(sc, "cpu")
    assert "rough" in text and "–" in text, text
    # a tune at that shape replaces the probe's figures
    _recorded(tmp_path, cfg, 0.6, 0.2, rate=100.0)
    assert estimate(cfg, "cpu", calibration_dir=tmp_path, rate=100.0)["parts"]["tune_s"] \
        == pytest.approx(6.0)


def test_the_edit_estimate_counts_passes_by_the_samplers_guidance_rule(tmp_path):
    """Two U-Net passes a step whenever guidance is not 1 (the sampler's rule, 0 included)."""
    from vcstudio.config import guided_passes
    from vcstudio.jobs.edit import edit_parts

    assert [guided_passes(g) for g in (0.0, 0.5, 1.0, 7.5)] == [2, 2, 1, 2]
    sp = cal.Speed(8, 64, 64, 1.0, 0.25, decode_s=0.5)
    one = edit_parts(EditConfig(prompt="x", steps=10, guidance=1.0), sp, inverts=True)
    two = edit_parts(EditConfig(prompt="x", steps=10, guidance=0.5), sp, inverts=False)
    assert one["sample_s"] == pytest.approx(2.5) and one["inversion_s"] == pytest.approx(2.5)
    assert two["sample_s"] == pytest.approx(5.0) and two["inversion_s"] == 0
    assert one["decode_s"] == two["decode_s"] == 0.5


def test_the_load_factor_follows_the_load_average_less_the_jobs_own_share(monkeypatch):
    """rate = 1 / max(1, (others + threads) / cpus), others = the load average less this
    process's share of it (a job busy for t seconds: threads x (1 - e^(-t/60))); a speed
    measured inside a job at one load, estimated outside a job at another, scales by the
    ratio of the two."""
    import math

    from vcstudio import loadfactor

    monkeypatch.setattr(loadfactor, "cpus", lambda: 2)
    monkeypatch.setattr(loadfactor, "threads", lambda: 2)
    monkeypatch.setattr(loadfactor, "_own_running", lambda **kw: 0)

    def at(load, **kw):
        return loadfactor.rate("cpu", loadavg=lambda: (load, 0.0, 0.0), **kw)

    assert at(0.0) == 1.0 and at(1.0) == pytest.approx(2 / 3)  # idle; one other thread
    assert at(6.0) == pytest.approx(1 / 4)  # (6 + 2) / 2
    own = 2 * (1 - math.exp(-1))  # a job busy for 60 s is this much of the load average
    inside = at(6.0 + own, busy_s=60.0)
    assert inside == pytest.approx(1 / 4)  # the same machine, read from inside the job
    assert loadfactor.rate("cuda:0", loadavg=lambda: (6.0, 0, 0)) == 0.0  # does not apply
    # measured inside a job at load 6 (others), estimated when the others are 14: x2
    sp = cal.Speed(8, 64, 64, 1.0, 0.3, rate=inside)
    assert sp.at_rate(at(14.0)).train_step_s == pytest.approx(2.0)
    assert sp.at_rate(at(7.0)).train_step_s == 1.0  # within the model's noise: unchanged


def test_the_sampled_run_queue_gives_the_rate_now_and_over_a_job(monkeypatch):
    """With the background sampler's figures (a stand-in here, no thread, no clock): "now" is
    its weighted mean of other runnable threads, a job's rate the mean of the samples taken
    while it ran."""
    import threading

    from vcstudio import loadfactor

    class Samples:
        lock = threading.Lock()
        total, n, mean = 0.0, 0, 2.0

        def now(self):
            return self.mean

    stub = Samples()
    monkeypatch.setattr(loadfactor, "_SAMPLER", stub)
    monkeypatch.setattr(loadfactor, "cpus", lambda: 2)
    monkeypatch.setattr(loadfactor, "threads", lambda: 2)
    assert loadfactor.rate("cpu") == pytest.approx(1 / 2)  # (2 + 2) / 2
    job = loadfactor.Window("cpu")
    stub.total, stub.n = stub.total + 10 * 6.0, stub.n + 10  # 6 others while the job ran
    assert job.rate() == pytest.approx(1 / 4)
    stub.mean = 14.0  # busier now: a speed measured during that job takes twice as long
    sp = cal.Speed(8, 64, 64, 1.0, 0.3, rate=job.rate())
    assert sp.at_rate(loadfactor.rate("cpu")).train_step_s == pytest.approx(2.0)


def test_the_etas_follow_their_clocks():
    """A job's ETA rescales the estimate of what is left by how the work so far compared
    with its estimate; a sampling loop's ETA is its mean step time (warm-up left out) x the
    steps left."""
    from vcstudio.jobs.estimates import EtaClock
    from vcstudio.progress import StepTimer

    t = [0.0]
    clock = EtaClock(100.0, clock=lambda: t[0])
    assert clock.eta() == 100.0
    t[0] = 40.0
    clock.done(20.0)  # 20 s of estimated work took 40 s: what is left takes twice as long
    assert clock.eta() == pytest.approx(160.0)
    now = [0.0]
    timer = StepTimer(10, clock=lambda: now[0])
    etas = []
    for dt in (5.0, 1.0, 1.0, 1.0):
        now[0] += dt
        etas.append(timer.tick())
    assert etas[-1] == pytest.approx(6 * 1.0)  # the 5 s warm-up step is left out


def test_tune_and_compare_print_the_estimate_line_before_they_start(tiny_sd, tmp_path,
                                                                   capsys):
    """The CLI prints the app's ``Estimate: ...`` line (a probe measured this shape first:
    nothing was calibrated in this data folder) before the tune's first step and before the
    comparison's first variant."""
    from vcstudio.cli import main
    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip

    clip = write_mp4(moving_shape_clip(4, 32, dx=3.0), tmp_path / "c.mp4")
    assert main(["tune", "--video", str(clip), "--prompt", "a red circle", "--model",
                 str(tiny_sd), "--frames", "4", "--stride", "1", "--size", "32", "--steps", "3",
                 "--inversion-steps", "2", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "Estimate: " in err and "probed" in err, err
    assert err.index("Estimate: ") < err.index("tune:") < err.index("tuned 3 steps"), err
    assert main(["compare", "--video", str(clip), "--prompt", "a red circle", "--edit-prompt",
                 "a blue square", "--model", str(tiny_sd), "--methods", "baseline",
                 "--frames", "4", "--size", "32", "--steps", "2", "--edit-steps", "2",
                 "--metrics", "consistency_adjacent", "--out", str(tmp_path / "cmp")]) == 0
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if "Estimate: " in ln)
    assert "1 tune, 1 edit" in line and "uncalibrated" not in line, line  # measured above
    assert err.index("Estimate: ") < err.index("variant 1/1"), err


def test_a_cli_bar_opened_mid_stage_counts_its_rate_from_there():
    """A resumed training run's first event says step 500 of 1000: the bar's rate and ETA come
    from the steps it saw (10 in ~0.2 s), not from 510 steps in 0.2 s."""
    import io
    import re

    from vcstudio.progress import Event, TqdmProgress

    out = io.StringIO()
    bar = TqdmProgress(stream=out)
    bar(Event(500, 1000, stage="unet"))
    time.sleep(0.2)
    bar(Event(510, 1000, stage="unet"))
    rate = float(re.findall(r"([\d.]+)it/s", out.getvalue())[-1])
    assert 2 < rate < 60  # 10 steps over at least the 0.2 s slept
