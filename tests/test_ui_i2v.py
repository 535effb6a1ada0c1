"""I2V tab: reward-tune a tiny LTX-Video with VCD from the page's handler, then base vs tuned."""
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def ltx(tmp_path_factory):
    from vcstudio.models.ltx import build_tiny_ltx

    return build_tiny_ltx(tmp_path_factory.mktemp("tiny_ltx"), seed=0)


@pytest.mark.slow  # ~60 s: reward steps, guardrail probes and VCD at the paper's 224 px
def test_reward_tune_streams_curves_and_ends_with_base_vs_tuned(ltx, tmp_path):
    from PIL import Image

    from vcstudio.io import read_video
    from vcstudio.session import Studio
    from vcstudio.ui.i2v_tab import generate_ab, reward_tune

    img = tmp_path / "cond.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(img)
    from vcstudio.config import Limits

    studio = Studio(tmp_path / "data", upload_roots=[tmp_path], limits=Limits())
    try:
        sid = studio.new_session().id
        outs = list(reward_tune(studio, sid, str(img), "a cat", str(ltx), 9, 32, 2, 0, 3,
                                2e-4, 4))
        status, curve, base, tuned, ab_plot, lora = outs[-1]
        assert status.startswith("Tuned 3 steps"), status
        assert len(curve) == 3  # one VCD value per reward step
        assert Path(lora).is_file()
        vb, vt = read_video(base), read_video(tuned)
        assert vb.shape == vt.shape and vb.shape[0] == 9
        assert not np.array_equal(vb, vt)  # the LoRA changed the video
        assert set(ab_plot["series"]) == {"base", "VCD-tuned"}
        # the saved LoRA reproduces the tuned video from a fresh model
        vb2, vt2, _, note = generate_ab(studio, sid, str(img), "a cat", str(ltx), lora, 9, 32, 2, 0)
        assert np.abs(read_video(vt2).astype(int) - vt.astype(int)).max() <= 2
        assert "Mean VCD base" in note
    finally:
        studio.close()
