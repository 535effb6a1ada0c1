"""What a tune shows while it runs, on the tiny model: previews at a fixed cadence (the first
within a fifth of the steps, always the last step, a resumed tune too), the loss plot's rows
with real values, and a resumed tune's plot that starts with the steps tuned before."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from vcstudio.run_context import RunContext

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip

    return write_mp4(moving_shape_clip(8, 64, dx=3.0), tmp_path_factory.mktemp("clip") / "c.mp4")


def _preview_steps(events) -> list[int]:
    return [e.step for e in events if e.stage == "tune" and e.preview is not None]


def _grid_from_to(steps: list[int], first: int, last: int, every: int) -> None:
    assert steps[0] == first and steps[-1] == last, steps
    assert all(s % every == 0 for s in steps) and steps == sorted(set(steps)), steps


def test_previews_come_at_a_fifth_and_at_the_last_step_also_when_resumed(tiny_sd, tmp_path,
                                                                         cache):
    from vcstudio.config import DataConfig, TuneConfig
    from vcstudio.io.synthetic import moving_shape_clip
    from vcstudio.runs.folder import RunFolder
    from vcstudio.pipelines.tune.loop import tune
    from vcstudio.ui.edit_tab import _previews

    frames = moving_shape_clip(4, 32)
    cfg = TuneConfig(model=str(tiny_sd), data=DataConfig(prompt="a red circle", n_frames=4,
                                                         width=32, height=32),
                     steps=20, lr=1e-3, checkpoint_every=0, inversion_steps=2, **_previews(20))
    assert cfg.preview_every == 4
    evs = []
    tune(cfg, tmp_path / "whole", frames=frames, run=RunContext(progress=evs.append, cache=cache),
         calibration_dir=tmp_path, invert=False)
    # the first preview at step 4 (20% of the steps) and the last step's; between them the
    # cost rule spaces them by the MEASURED preview and step times (a preview costs ~8 steps
    # here, so usually none; a busy CI machine once measured it cheaper and added one), on
    # the grid. The rule's arithmetic: test_estimate's preview-cadence test.
    _grid_from_to(_preview_steps(evs), 4, 20, 4)
    shown = [e.preview for e in evs if e.preview is not None]
    assert all(p.shape == (4, 32, 32, 3) for p in shown)

    # paused at step 6 (a checkpoint), then resumed: the next multiple of 4 and the last step
    evs = []
    first = tune(cfg, tmp_path / "resumed", frames=frames,
                 run=RunContext(progress=evs.append, cache=cache),
                 calibration_dir=tmp_path, invert=False, step_budget=6)
    assert first.paused and first.steps == 6 and _preview_steps(evs) == [4]
    evs = []
    tune(cfg, tmp_path / "resumed", frames=frames, run=RunContext(progress=evs.append, cache=cache),
         calibration_dir=tmp_path, invert=False)
    _grid_from_to(_preview_steps(evs), 8, 20, 4)
    assert [r["step"] for r in RunFolder(tmp_path / "resumed").losses()] == list(range(1, 21))

    # previews off stay off, the last step included
    evs = []
    tune(TuneConfig(**{**cfg.__dict__, "preview_every": 0, "steps": 3}), tmp_path / "none",
         frames=frames, run=RunContext(progress=evs.append, cache=cache), invert=False)
    assert _preview_steps(evs) == []


def test_the_tabs_tune_shows_a_preview_early_and_resume_continues_the_loss_plot(
        tiny_sd, clip_file, tmp_path):
    """Through the Edit tab's handlers (what /tune and /resume stream): a 20-step tune's
    preview output is set by step 4; its loss rows hold the real losses of every step; a
    stopped tune resumed draws the earlier steps first and goes on from the checkpoint."""
    from vcstudio.config import Limits
    from vcstudio.jobs import studio as make_studio
    from vcstudio.runs.folder import RunFolder
    from vcstudio.ui import edit_tab

    studio = make_studio(tmp_path / "data", limits=Limits(), upload_roots=[clip_file.parent])
    studio.model, studio.embedded = str(tiny_sd), False
    args = (str(clip_file), "a red circle", 4, 1, 0, 32, 32, "crop", "center", "baseline", 20,
            1e-3, 33, True, True, True, "mul-fourier", "pure", True, True)
    try:
        sid = studio.new_session().id
        outs = list(edit_tab.tune_handler(studio, sid, *args))
        assert all(len(o) == 6 for o in outs)  # the API's outputs, unchanged
        steps_shown = [int(o[2].split("step ")[1].split("/")[0]) for o in outs
                       if o[4] is not None and o[2].startswith("tune: step")]
        assert steps_shown and steps_shown[0] <= 4  # within the first fifth
        last = outs[-1]
        assert last[2].startswith("Tuned 20 steps") and last[4] is not None
        rows = last[3]["value"]
        loss = rows[rows["series"] == "loss"]
        logged = [r["loss"] for r in RunFolder(Path(last[5])).losses()]
        assert list(loss["step"]) == list(range(1, 21))
        assert list(loss["value"]) == pytest.approx(logged)  # the real losses, not 0-1
        assert set(rows["axis"]) == {"denoising loss"} and not rows["earlier"].any()
        assert set(rows["series"]) == {"loss"}  # the baseline's total is its loss: not drawn
        fig = edit_tab.loss_figure(last[3])
        assert [a.get_title() for a in fig.axes] == ["denoising loss"]
        assert list(fig.axes[0].get_lines()[0].get_ydata()) == pytest.approx(logged)

        # stopped at step k, then resumed from the tab
        gen = edit_tab.tune_handler(studio, sid, *args)
        first = next(gen)

        def stop_at_step_6(jid):
            for ev in studio.events(jid):
                if ev.stage == "tune" and ev.step >= 6:
                    studio.cancel(jid)
                    return

        stopper = threading.Thread(target=stop_at_step_6, args=(first[1],))
        stopper.start()
        stopped = [first, *gen][-1]
        stopper.join(30)
        assert stopped[2].startswith("Stopped at step")
        k = int(stopped[2].split()[3])
        assert 6 <= k < 20
        resumed = list(edit_tab.resume_handler(studio, sid, first[1]))
        queued = resumed[0][3]["value"]  # before the resumed job's first step: the earlier ones
        assert list(queued[queued["series"] == "loss"]["step"]) == list(range(1, k + 1))
        final = resumed[-1]
        assert final[2].startswith("Tuned 20 steps") and final[5] == stopped[5]
        rows = final[3]["value"]
        loss = rows[rows["series"] == "loss"]
        assert list(loss["step"]) == list(range(1, 21))
        assert list(loss["earlier"]) == [True] * k + [False] * (20 - k)
        logged = [r["loss"] for r in RunFolder(Path(final[5])).losses()]
        assert list(loss["value"]) == pytest.approx(logged)
        assert any(o[4] is not None for o in resumed)  # a resumed tune previews too
        fig = edit_tab.loss_figure(final[3])
        marks = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("resumed")]
        assert [ln.get_label() for ln in marks] == [f"resumed from step {k}"]
    finally:
        studio.close()
