"""ZeroGPU off-Space: the stand-in ``spaces`` (tests/doubles, a double of ``spaces.GPU`` only)
on sys.path, everything else real. A tune split over three time-limited GPU calls gives the
same delta as one uninterrupted tune; calls that run past their time are aborted and end in
one line that says what to do."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vcstudio import zerogpu
from vcstudio.config import DataConfig, TuneConfig
from vcstudio.errors import VcsError

pytestmark = pytest.mark.usefixtures("one_thread")
DOUBLES = Path(__file__).resolve().parent / "doubles"


def test_plan_fits_every_call_and_covers_every_step():
    from vcstudio.jobs.tune import estimate

    cfg = TuneConfig(data=DataConfig(n_frames=24, width=512, height=512), steps=500)
    est = estimate(cfg, "cuda")
    sps, inv = est["seconds_per_step"], est["seconds_inversion"]
    plan = zerogpu.plan_tune(500, sps, inv, 120)
    assert sum(plan) == 500 and max(plan[:-1]) - min(plan[:-1]) <= 1
    print(f"500 steps, 24 x 512^2 at the estimate's {sps:.2f} s/step: {len(plan)} calls {plan}")

    def fits(n, last):  # what each call asks for, unrounded, stays within the limit
        return ((zerogpu.LOAD_SECONDS + n * sps + (inv if last else 0)) * zerogpu.MARGIN
                <= 120)

    assert all(fits(n, i == len(plan) - 1) for i, n in enumerate(plan))
    assert all(zerogpu.call_seconds(n, sps, inv, i == len(plan) - 1, 120) <= 120
               for i, n in enumerate(plan))
    # the fewest calls: one call fewer cannot hold the 500 steps
    per_call = max(n for n in range(1000) if fits(n, False))
    beside_inv = max([n for n in range(1000) if fits(n, True)], default=0)
    assert (len(plan) - 2) * per_call + beside_inv < 500
    # a short tune is one call; resuming near the end too
    small = estimate(TuneConfig(data=DataConfig(n_frames=8, width=256, height=256), steps=20,
                                inversion_steps=10), "cuda")
    assert zerogpu.plan_tune(20, small["seconds_per_step"], small["seconds_inversion"], 120) \
        == [20]
    # 24 x 512^2 frames: the inversion (~63 s estimated) takes a call of its own
    assert zerogpu.plan_tune(500, sps, inv, 120, done=495) == [5, 0]
    with pytest.raises(VcsError, match="does not fit a 60 s ZeroGPU call"):
        zerogpu.plan_tune(500, sps, inv, 60)


@pytest.fixture
def stand_in(monkeypatch):
    """The stand-in ``spaces`` importable, ZeroGPU switched on, vcstudio's decorated function
    registered afresh against it."""
    monkeypatch.syspath_prepend(str(DOUBLES))
    monkeypatch.delitem(sys.modules, "spaces", raising=False)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setattr(zerogpu, "_gpu_fn", None)
    import spaces

    spaces.calls.clear()
    spaces.GRANT_FACTOR = 1.0
    yield spaces
    monkeypatch.delitem(sys.modules, "spaces", raising=False)


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip

    return write_mp4(moving_shape_clip(4, 32, dx=3.0), tmp_path_factory.mktemp("clip") / "c.mp4")


def _cfg(tiny_sd, clip_file, steps=6) -> TuneConfig:
    return TuneConfig(model=str(tiny_sd), data=DataConfig(
        video_path=str(clip_file), prompt="a red circle", n_frames=4, stride=1, width=32,
        height=32), steps=steps, checkpoint_every=0, inversion_steps=2, seed=3)


def _three_call_limit(cfg, calls: int = 3) -> float:
    """A per-call limit under which the planner splits ``cfg`` into exactly ``calls`` calls."""
    from vcstudio.jobs.tune import estimate

    est = estimate(cfg, "cpu")
    for tenth in range(10, 100000):
        try:
            plan = zerogpu.plan_tune(cfg.steps, est["seconds_per_step"],
                                     est["seconds_inversion"], tenth / 10)
        except VcsError:  # not even one step fits
            continue
        if len(plan) == calls:
            return tenth / 10
    raise AssertionError(f"no limit gives {calls} calls")


def test_tune_split_over_three_gpu_calls_equals_one_call(stand_in, tiny_sd, clip_file,
                                                         tmp_path, monkeypatch):
    from vcstudio.jobs import studio as make_studio
    from vcstudio.jobs.edit import EditJobConfig
    from vcstudio.config import EditConfig
    from vcstudio.models.delta import load_tensors

    cfg = _cfg(tiny_sd, clip_file)
    limit = _three_call_limit(cfg)
    monkeypatch.setenv("VCSTUDIO_ZEROGPU_MAX_S", str(limit))
    st = make_studio(tmp_path / "data", device="cpu")
    try:
        events = []
        res = st.run("tune", cfg, progress=events.append, out=tmp_path / "split")
        assert [c["aborted"] for c in stand_in.calls] == [False] * 3
        assert all(c["requested"] <= limit for c in stand_in.calls)
        assert any("running in 3 GPU calls" in e.message for e in events)
        assert res.steps == 6 and not res.stopped and res.message.endswith("in 3 GPU calls.")
        run = st.store.run(res.run_id)  # the replayed records: one run, finished, its delta
        assert run.finished and st.store.run_dir(run.id) == tmp_path / "split"
        job = st.store.job(run.job_id)
        assert job.status == "done" and job.kind == "tune"
        assert list((tmp_path / "split").glob("inversion-2*.safetensors"))
        assert not (tmp_path / "split" / "checkpoint.safetensors").exists()

        # an edit on ZeroGPU: the inversion for its 3 steps in a call of its own (cached in
        # the run folder), then the sampling; the next edit with 3 steps needs only one call
        n = len(stand_in.calls)
        ecfg = EditJobConfig(run=str(tmp_path / "split"), edit=EditConfig(
            prompt="a blue square", steps=3, guidance=3.0))
        ed = st.run("edit", ecfg)
        assert len(stand_in.calls) == n + 2 and ed.frames.shape[0] == 4
        assert list((tmp_path / "split").glob("inversion-3*.safetensors"))
        assert st.store.run(ed.run_id).finished
        ed2 = st.run("edit", ecfg)
        assert len(stand_in.calls) == n + 3 and (ed2.frames == ed.frames).all()

        monkeypatch.delenv("SPACES_ZERO_GPU")  # the same tune in one piece, off ZeroGPU
        st.run("tune", cfg, out=tmp_path / "whole")
    finally:
        st.close()
    a = load_tensors(tmp_path / "split" / "delta.safetensors")[0]
    b = load_tensors(tmp_path / "whole" / "delta.safetensors")[0]
    assert sorted(a) == sorted(b)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    assert any(float(b[k].abs().max()) > 0 for k in b)  # it did train


def test_calls_past_their_time_abort_and_end_in_one_line(stand_in, tiny_sd, clip_file,
                                                         tmp_path, monkeypatch):
    from vcstudio.jobs import studio as make_studio

    cfg = _cfg(tiny_sd, clip_file, steps=4)
    monkeypatch.setenv("VCSTUDIO_ZEROGPU_MAX_S", str(_three_call_limit(_cfg(tiny_sd, clip_file))))
    stand_in.GRANT_FACTOR = 1e-9  # every call gets next to no time
    st = make_studio(tmp_path / "data", device="cpu")
    try:
        with pytest.raises(VcsError) as e:
            st.run("tune", cfg, out=tmp_path / "t")
        msg = str(e.value)
        assert "\n" not in msg and "aborted" in msg and "press Resume" in msg
        assert [c["aborted"] for c in stand_in.calls] == [True] * (zerogpu.RETRIES + 1)
        stand_in.GRANT_FACTOR = 1.0
        stand_in.MAX_DURATION = 1.0  # below what a call asks for: refused before running
        with pytest.raises(VcsError, match="ZeroGPU refused a"):
            st.run("tune", cfg, out=tmp_path / "t2")
    finally:
        stand_in.MAX_DURATION = 300.0
        st.close()


def test_edit_tab_status_says_the_tune_runs_in_several_gpu_calls(stand_in, tiny_sd, clip_file,
                                                                 tmp_path, monkeypatch):
    from vcstudio.config import Limits
    from vcstudio.jobs import studio as make_studio
    from vcstudio.ui import edit_tab

    ui_cfg = edit_tab.tune_config(str(clip_file), "a red circle", 4, 1, 0, 32, 32, "crop",
                                  "center", "baseline", 6, 3e-5, 3)  # what the tab submits
    # its 50 inversion steps weigh more than its 6 tuning steps: two calls, the inversion
    # in the second
    monkeypatch.setenv("VCSTUDIO_ZEROGPU_MAX_S", str(_three_call_limit(ui_cfg, 2)))
    st = make_studio(tmp_path / "data", device="cpu", limits=Limits(),
                     upload_roots=[clip_file.parent])
    st.model, st.embedded = str(tiny_sd), False
    try:
        sid = st.new_session().id
        outs = list(edit_tab.tune_handler(st, sid, str(clip_file), "a red circle", 4, 1, 0, 32,
                                          32, "crop", "center", "baseline", 6, 3e-5, 3, True,
                                          True, True, "mul-fourier", "pure", True, True))
    finally:
        st.close()
    statuses = [o[2] for o in outs]
    assert any("running in 2 GPU calls" in s for s in statuses), statuses
    assert statuses[-1].startswith("Tuned 6 steps") and outs[-1][5]  # the run folder
    assert len(stand_in.calls) == 2
