"""Compare Methods: the synced side-by-side video and the best-per-column table."""
import numpy as np

from vcstudio.io.montage import LABEL_BAND, side_by_side
from vcstudio.ui.compare_tab import best_table


def test_side_by_side_lines_up_frames_and_scales_to_one_height():
    a = np.zeros((4, 32, 32, 3), np.uint8)
    a[:, :, :, 0] = np.arange(4)[:, None, None] * 60  # frame index coded in red
    b = np.full((2, 64, 32, 3), 200, np.uint8)  # taller and shorter: A is scaled up to 64
    out = side_by_side([a, b], ["A", "B"], gap=4)
    assert out.shape == (4, 64 + LABEL_BAND, 64 + 4 + 32, 3)
    # frame t of the montage shows frame t of A
    assert [int(out[t, LABEL_BAND + 10, 10, 0]) for t in range(4)] == [0, 60, 120, 180]
    # B (2 frames) holds its last frame for frames 2, 3
    assert np.array_equal(out[3, LABEL_BAND:, 68:], out[1, LABEL_BAND:, 68:])
    assert (out[0, LABEL_BAND:, 68:] == 200).all()
    # the label band carries dark text pixels
    assert out[0, :LABEL_BAND, :64].min() < 100


def _entry(name, **vals):
    hib = {"clip_text": True, "warp_error": False, "flicker": True}
    return {"name": name, "scores": {k: {"value": v, "higher_is_better": hib[k]}
                                     for k, v in vals.items()}}


def test_best_table_stars_the_best_in_each_metrics_direction():
    rows = best_table([_entry("a", clip_text=30.0, warp_error=0.01),
                       _entry("b", clip_text=25.0, warp_error=0.002),
                       _entry("c", clip_text=28.0)])
    header, ra, rb, rc = rows
    assert header == ["method", "clip_text", "warp_error"]
    assert ra[1].startswith("★") and not rb[1].startswith("★")  # higher is better
    assert rb[2].startswith("★") and not ra[2].startswith("★")  # lower is better
    assert rc[2] == "–"  # a metric the run lacks


def test_best_table_stars_nothing_with_one_entry():
    rows = best_table([_entry("a", clip_text=30.0)])
    assert not any("★" in c for c in rows[1])


def test_series_frame_has_no_placeholder_series():
    """An empty plot is None: a placeholder series fixed the browser plot's colour scale and the
    real loss line was then never drawn."""
    from vcstudio.ui.common import series_frame

    assert series_frame({}) is None and series_frame({"loss": [None, float("nan")]}) is None
    df = series_frame({"loss": [1.0, None, 0.5], "alpha": [0.2]})
    assert set(df["series"]) == {"loss", "alpha"}
    assert list(df[df.series == "loss"]["step"]) == [1, 3]  # padded steps keep their place


def test_public_studio_keeps_visitors_runs_and_server_paths_apart(tmp_path):
    """On a public Space a visitor lists and loads only their own past comparisons and cannot
    make the server read a path they type; a desktop studio shares both."""
    import pytest

    from vcstudio.errors import InputError
    from vcstudio.session import Studio
    from vcstudio.ui.compare_tab import _owner, load_entry, past_choices
    from vcstudio.ui.i2v_tab import _check_request

    for public in (True, False):
        studio = Studio(tmp_path / f"d{public}", public=public)
        try:
            a, b = studio.new_session(), studio.new_session()
            # runs record their session's public owner id, never its secret
            ra = studio.store.create_run("compare", config={"session": a.owner}, seed=1,
                                         label="A")
            rb = studio.store.create_run("compare", config={"session": b.owner}, seed=1,
                                         label="B")
            for r in (ra, rb):
                studio.store.finish_run(r.id)
            owner = _owner(studio, a.id)  # whose runs visitor a's page may see
            ids = {rid for _, rid in past_choices(studio.store, owner)}
            assert ids == ({ra.id} if public else {ra.id, rb.id})
            if public:
                with pytest.raises(InputError, match="another visitor"):
                    load_entry(studio.store, rb.id, owner)
                with pytest.raises(InputError, match="server paths"):
                    studio.server_path("SAM checkpoint", "/etc/passwd")
            else:
                assert studio.server_path("SAM checkpoint", "/x/sam.pth") == "/x/sam.pth"
            with pytest.raises(InputError, match="Frames must be within 0..8"):
                _check_request(studio, "org/i2v", studio.limits.max_frames + 1, 0)
            assert _check_request(studio, "org/i2v", 0, 0) == "org/i2v"  # hub ids always
        finally:
            studio.close()


def test_compare_estimate_is_within_2x_of_a_comparison_once_calibrated(tiny_sd, tmp_path):
    """Each distinct tune once plus each variant's edit, at the speeds a first comparison
    measured (scoring not counted): within 2x of the comparison's time; a second method
    doubles the tunes and edits it counts."""
    import time

    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip
    from vcstudio.jobs import studio as make_studio
    from vcstudio.jobs.compare import CompareConfig, estimate
    from vcstudio.models.cache import ModelCache

    clip = write_mp4(moving_shape_clip(8, 64, dx=3.0), tmp_path / "clip.mp4")
    base = dict(video=str(clip), prompt="a red circle", edit_prompt="a blue square",
                model=str(tiny_sd), frames=4, size=64, steps=20, guidance=5.0, edit_steps=20,
                variants=["baseline (Tune-A-Video)"])
    with make_studio(tmp_path / "data", cache=ModelCache(), device="cpu") as st:
        assert estimate(CompareConfig(**base), "cpu", st.data_dir)["how"] == "uncalibrated"
        st.run("compare", CompareConfig(**base))  # calibrates this model and method
        cfg = CompareConfig(**{**base, "steps": 60})
        est = estimate(cfg, "cpu", calibration_dir=st.data_dir)
        assert est["how"] == "calibrated" and (est["tunes"], est["edits"]) == (1, 1)
        t = time.perf_counter()
        st.run("compare", cfg)
        real = time.perf_counter() - t
        two = estimate(CompareConfig(**{**base, "steps": 60, "variants": [
            "baseline (Tune-A-Video)", "DCT full (mul-Fourier CLWS)"]}), "cpu", st.data_dir)
    assert real / 2 <= est["seconds"] <= 2 * real, (est, real)
    assert (two["tunes"], two["edits"]) == (2, 2) and two["seconds"] > est["seconds"]
