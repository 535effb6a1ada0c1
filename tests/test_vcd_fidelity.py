"""VCD (the VCD paper) as metric and reward (issue 15.3, 15.4) and its memory bound (issue 19.2):
fixed projections for the metric, fresh ones every reward step, aspect-keeping resize, scoring
in bounded batches streamed from the decoder with progress per batch."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vcstudio.errors import InputError
from vcstudio.methods.vcd import VCD, fit_square, projection_filters, reward_projection_seed
from vcstudio.models.vgg import load_encoder

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = dict(size=160, num_proj=16)


@pytest.fixture(scope="module")
def effnet():
    return load_encoder("efficientnet-lite0", cache=None)


def _clip(n: int, h: int = 96, w: int = 192) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    tex = gaussian_filter(rng.random((h, w + 4 * n, 3)), (2, 2, 0))
    tex = ((tex - tex.min()) / np.ptp(tex) * 255).astype(np.uint8)
    return np.stack([tex[:, 4 * k:4 * k + w] for k in range(n)])


def test_metric_scores_are_bit_identical_across_calls(effnet):
    frames = _clip(4, 160, 160)
    m = VCD(effnet, **FAST)
    first = m(frames)
    assert torch.equal(m(frames).per_frame, first.per_frame)
    assert torch.equal(VCD(effnet, **FAST)(frames).per_frame, first.per_frame)  # a fresh instance
    # a reward-style call with its own slices scores differently and leaves the metric's alone
    other = m(frames, projection_seed=reward_projection_seed(0, 1))
    assert not torch.equal(other.per_frame, first.per_frame)
    assert torch.equal(m(frames).per_frame, first.per_frame)


def test_reward_steps_draw_different_projections(effnet):
    seeds = [reward_projection_seed(33, k) for k in (1, 2, 3)]
    assert len(set(seeds)) == 3 and 0 not in seeds  # never the metric's seed
    m = VCD(effnet, **FAST)
    a, b = m.filters(0, 8, seeds[0]), m.filters(0, 8, seeds[1])
    assert not torch.equal(a, b) and torch.equal(a, projection_filters(8, 16, 5, seeds[0], 0))
    assert torch.equal(m.filters(0, 8), projection_filters(8, 16, 5, 0, 0))


def test_reward_tuning_redraws_projections_every_step_by_default(tmp_path):
    from vcstudio.models.svd import build_tiny_svd, load_svd
    from vcstudio.pipelines.i2v.backbones import SVDBackbone
    from vcstudio.pipelines.i2v.tune import I2VTuneConfig, tune_i2v

    bb = SVDBackbone(load_svd(build_tiny_svd(tmp_path / "svd", seed=0, frames=4), cache=None))
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    vcd = VCD(load_encoder("efficientnet-lite0", cache=None), size=160, num_proj=4)
    assert I2VTuneConfig().vcd_projections == "redraw"
    kw = dict(steps=2, lora_rank=2, inference_steps=2, decode_frames=1, eval_every=0, seed=5)
    log = tune_i2v(bb, [image], I2VTuneConfig(**kw), vcd_fn=vcd)
    assert log.projection_seed == [reward_projection_seed(5, 1), reward_projection_seed(5, 2)]
    assert log.projection_seed[0] != log.projection_seed[1]
    bb = SVDBackbone(load_svd(tmp_path / "svd", cache=None))
    log = tune_i2v(bb, [image], I2VTuneConfig(vcd_projections="fixed", **kw), vcd_fn=vcd)
    assert log.projection_seed == [None, None]
    with pytest.raises(InputError, match="vcd_projections"):
        tune_i2v(bb, [image], I2VTuneConfig(vcd_projections="sometimes", **kw), vcd_fn=vcd)


def test_resize_keeps_the_aspect():
    """A disc in a 2:1 frame stays a disc (short side to 224 + centre crop, or black bars),
    where the old square stretch squashed it to an ellipse."""
    h, w = 120, 240
    yy, xx = np.mgrid[:h, :w]
    disc = ((yy - 60) ** 2 + (xx - 120) ** 2 < 40 ** 2).astype(np.float32)
    x = torch.from_numpy(disc)[None, None].expand(1, 3, h, w).contiguous()

    def extent(img):
        m = img[0, 0] > 0.5
        rows, cols = m.any(1).nonzero(), m.any(0).nonzero()
        return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)

    for fit in ("crop", "pad"):
        out = fit_square(x, 224, fit)
        assert out.shape == (1, 3, 224, 224)
        dh, dw = extent(out)
        assert abs(dh - dw) <= 2, (fit, dh, dw)
    dh, dw = extent(fit_square(x, 224, "stretch"))
    assert dw < 0.6 * dh  # the stretch squashes the disc
    pad = fit_square(x, 224, "pad")
    assert float(pad[..., :50, :].abs().max()) == 0.0  # black bars above and below
    crop = fit_square(torch.rand(2, 3, 160, 320), 160, "crop")
    assert crop.shape[-2:] == (160, 160)
    with pytest.raises(InputError, match="crop"):
        fit_square(x, 224, "squash")


def test_wide_frames_score_as_their_centre_crop(effnet):
    frames = _clip(3, 160, 320)
    m = VCD(effnet, **FAST)
    crop = np.ascontiguousarray(frames[:, :, 80:240])
    assert torch.equal(m(frames).per_frame, m(crop).per_frame)
    assert not torch.equal(VCD(effnet, fit="stretch", **FAST)(frames).per_frame,
                           m(frames).per_frame)


def test_scoring_runs_in_bounded_batches_and_equals_one_batch(effnet):
    """The encoder never sees more than x_cnd + B frames at once; chunked scores equal the
    one-batch scores (to float rounding: another batch size may pick another conv kernel)."""
    frames = _clip(11, 160, 160)
    seen = []
    hook = effnet.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[0]))
    try:
        events = []
        chunked = VCD(effnet, batch=3, **FAST)(frames, progress=events.append)
        assert max(seen) == 1 + 3 and sum(s - 1 for s in seen) == 10
        assert [e.step for e in events] == [3, 6, 9, 10] and events[-1].total == 10
        seen.clear()
        whole = VCD(effnet, batch=100, **FAST)(frames)
        assert seen == [11]
    finally:
        hook.remove()
    torch.testing.assert_close(chunked.per_frame, whole.per_frame, rtol=1e-5, atol=1e-6)
    assert chunked.positions == whole.positions == list(range(2, 12))


def test_score_stream_from_the_decoder_equals_the_array(effnet, tmp_path):
    from vcstudio.io import iter_video, read_video, write_mp4

    path = write_mp4(_clip(9, 160, 192), tmp_path / "clip.mp4")
    chunks = list(iter_video(path, 4))
    assert [len(c) for c in chunks] == [4, 4, 1]
    m = VCD(effnet, batch=2, **FAST)
    events = []
    streamed = m.score_stream(iter_video(path, 4), progress=events.append, total=9)
    whole = m(read_video(path))
    assert torch.equal(streamed.per_frame, whole.per_frame)
    assert streamed.n_frames == 9 and streamed.weights.tolist() == whole.weights.tolist()
    assert [e.step for e in events] == [2, 3, 5, 7, 8] and events[-1].total == 8
    img = read_video(path)[4]
    torch.testing.assert_close(m.score_stream(iter_video(path, 3), image=img).per_frame,
                               m(read_video(path), image=img).per_frame)
    with pytest.raises(InputError, match="2 frames"):
        m.score_stream(iter(chunks[-1:]))


def test_eval_vcd_job_streams_with_progress_per_batch(tmp_path):
    """The eval job (Score VCD, `vcstudio eval-vcd`) decodes, resizes and encodes the clip
    ``batch`` frames at a time and reports each batch."""
    from vcstudio.cli import main
    from vcstudio.io import write_mp4

    write_mp4(_clip(7, 128, 256), tmp_path / "c.mp4")
    out = tmp_path / "vcd.json"
    assert main(["eval-vcd", "--video", str(tmp_path / "c.mp4"), "--encoder",
                 "efficientnet-lite0", "--size", "160", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["vcd_n_frames"] == 7 and len(d["vcd_per_frame"]) == 6
    assert d["vcd_params"]["fit"] == "crop"


def test_bench_metrics_prints_the_vcd_row(capsys):
    from vcstudio.cli import main

    assert main(["bench", "metrics", "--metrics", "vcd", "--vcd-frames", "5", "--vcd-size",
                 "96", "--vcd-batch", "2", "--vcd-encoder", "efficientnet-lite0",
                 "--device", "cpu"]) == 0
    row = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("vcd ")]
    frames, size, seconds, rss = row[0].split()[1:]
    assert (frames, size) == ("5", "96") and float(seconds) > 0 and 200 < float(rss) < 4096
