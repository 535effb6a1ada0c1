"""Edit, Long and Compare stream what they make: x0 previews while denoising, frames as they
decode, per-frame metrics one frame at a time (job level, tiny real model)."""
import numpy as np
import pytest

from vcstudio.config import DataConfig, EditConfig, TuneConfig
from vcstudio.pipelines.tune.loop import tune
from vcstudio.jobs import studio as make_studio
from vcstudio.run_context import RunContext

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tuned_run(tiny_sd, tmp_path_factory):
    from vcstudio.io.synthetic import moving_shape_clip
    from vcstudio.models.cache import ModelCache

    cache = ModelCache()
    cfg = TuneConfig(model=str(tiny_sd), data=DataConfig(prompt="a red circle moving right",
                                                         n_frames=6, width=64, height=64),
                     steps=4, lr=1e-3, checkpoint_every=0, inversion_steps=12)
    run = tmp_path_factory.mktemp("stream") / "run"
    tune(cfg, run, frames=moving_shape_clip(6, 64, dx=3.0), run=RunContext(cache=cache))
    return run, cache


def test_edit_streams_x0_previews_then_frames_then_per_frame_metrics(tuned_run, tmp_path):
    from vcstudio.jobs.edit import STREAM_METRICS, EditJobConfig

    run, cache = tuned_run
    evs = []
    cfg = EditJobConfig(run=str(run), metrics=STREAM_METRICS,
                        edit=EditConfig(prompt="a blue square moving right", steps=12,
                                        guidance=5.0, seed=3))
    with make_studio(tmp_path / "data", cache=cache, device="cpu") as studio:
        out = studio.run("edit", cfg, progress=evs.append)
    kinds = [("x0" if e.stage == "sample" and e.preview is not None else
              "frames" if e.stage == "decode" and e.preview is not None else
              "frame-metrics" if e.stage == "frame-metrics" else None) for e in evs]
    kinds = [k for k in kinds if k]
    first_frames = kinds.index("frames")
    assert kinds[:first_frames].count("x0") >= 2, kinds
    x0 = [e.preview for e in evs if e.stage == "sample" and e.preview is not None]
    assert all(p.dtype == np.uint8 and p.ndim == 4 and p.shape[-1] == 3 for p in x0)
    assert x0[0].shape[1] <= 128
    # frames arrive as each chunk decodes, growing to the whole edit
    decoded = [e.preview for e in evs if e.stage == "decode" and e.preview is not None]
    assert len(decoded) >= 2 and len(decoded[-1]) == 6
    assert [len(d) for d in decoded] == sorted(len(d) for d in decoded)
    np.testing.assert_array_equal(decoded[-1], out.frames)
    # per-frame metrics: one event per frame, in order, after the frames, each with that
    # frame's values only; they match the final scores
    fm = [e for e in evs if e.stage == "frame-metrics"]
    assert [e.frame for e in fm] == list(range(6))
    assert kinds.index("frame-metrics") > first_frames
    assert "clip_text" in fm[0].metrics and "consistency_adjacent" not in fm[0].metrics
    assert "consistency_adjacent" in fm[1].metrics
    for e in fm:
        for name, value in e.metrics.items():
            assert value == pytest.approx(out.scores[name].per_frame[e.frame], rel=1e-5)


def test_long_video_streams_x0_previews_then_its_frames_as_they_decode(tuned_run, tmp_path):
    from vcstudio.config import LongConfig
    from vcstudio.pipelines.long.video import long_video

    run, cache = tuned_run
    evs = []
    cfg = LongConfig(prompts=["a red circle", "a blue square"], frames=10, window=6, stride=4,
                     steps=12, guidance=5.0, decode_chunk=4, out=str(tmp_path / "long.mp4"))
    res = long_video(run, cfg, run=RunContext(progress=evs.append, cache=cache))
    shown = [(e.stage, e.step, e.preview) for e in evs if e.preview is not None]
    first_decode = next(i for i, s in enumerate(shown) if s[0] == "decode")
    x0 = [p for st, _, p in shown[:first_decode] if st.startswith("co-denoise")]
    assert len(x0) >= 2 and all(p.shape[1] <= 128 for p in x0)
    assert [s for st, s, _ in shown[first_decode:]] == [4, 8, 10]  # a chunk at a time
    np.testing.assert_array_equal(shown[-1][2], res.frames[-8:])


def test_compare_streams_each_variants_per_frame_metrics(tiny_sd, tmp_path):
    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip
    from vcstudio.jobs.compare import CompareConfig
    from vcstudio.models.cache import ModelCache

    clip = write_mp4(moving_shape_clip(6, 64, dx=3.0), tmp_path / "clip.mp4", 8)
    cfg = CompareConfig(video=str(clip), prompt="a red circle", edit_prompt="a blue square",
                        variants=["baseline"], seeds=[1, 2], model=str(tiny_sd), frames=4,
                        size=64, steps=2, edit_steps=4, guidance=5.0,
                        metrics=["clip_text", "consistency_adjacent"])
    evs = []
    with make_studio(tmp_path / "data", cache=ModelCache(), device="cpu") as studio:
        studio.run("compare", cfg, progress=evs.append)
    fm = [e.frame for e in evs if e.stage == "frame-metrics"]
    assert fm == [0, 1, 2, 3, 0, 1, 2, 3]  # each variant's edit, one frame at a time
    # each variant's edit was previewed while it denoised
    assert sum(1 for e in evs if e.stage == "sample" and e.preview is not None) >= 2


def test_edit_tab_shows_previews_in_the_video_slot_until_the_final_video(tuned_run, tmp_path):
    import shutil
    from pathlib import Path

    from vcstudio.ui import edit_tab

    run, cache = tuned_run
    with make_studio(tmp_path / "data", cache=cache, device="cpu") as studio:
        sid = studio.new_session().id
        mine = studio.session(sid).outputs / "run"
        shutil.copytree(run, mine)
        outs = list(edit_tab.edit_handler(studio, sid, str(mine), "a blue square", "", 12, 5.0,
                                          3, True))
    # until this edit has frames, the slot keeps what it showed (an update that changes nothing)
    kept = [o[0] for o in outs[:-1] if not isinstance(o[0], str)]
    assert kept and all(k == {"__type__": "update"} for k in kept), kept[:2]
    videos = [o[0] for o in outs[:-1] if isinstance(o[0], str)]
    previews = list(dict.fromkeys(v for v in videos if Path(v).name.startswith("preview-")))
    assert len(previews) >= 3  # x0 previews, then the frames as they decoded
    assert outs[-1][2] == "Done." and Path(outs[-1][0]).is_file()
    assert not Path(outs[-1][0]).name.startswith("preview-")  # the final video replaces them
    plots = [o[3] for o in outs[:-1] if isinstance(o[3], dict) and o[3].get("value") is not None]
    assert [len(set(p["value"]["frame"])) for p in plots][:3] == [1, 2, 3]  # frame by frame
    assert not any(Path(p).exists() for p in previews)  # preview files cleaned up


def test_the_uploaded_clip_plays_whole_even_when_shorter_than_the_players_48_frames(tmp_path):
    """The Edit tab's player (clip_player): an 8-frame bundled example becomes an 8-frame mp4
    in the visitor's session (served), not nothing."""
    from pathlib import Path

    from vcstudio.io import read_video
    from vcstudio.ui.edit_tab import clip_player

    example = Path(__file__).resolve().parents[1] / "assets/examples/red_circle_right_beach.mp4"
    with make_studio(tmp_path / "data", device="cpu") as studio:
        sid = studio.new_session().id
        out = clip_player(studio, sid, str(example))
        assert out and Path(out).is_file()
        assert Path(out).resolve().is_relative_to(studio.session(sid).outputs.resolve())
        assert len(read_video(out)) == len(read_video(example)) == 8
