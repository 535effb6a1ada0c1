import numpy as np
import pytest
import torch

from vcstudio.errors import InputError
from vcstudio.pipelines.long.windows import (WindowAccumulator, fuse, layout_image, layout_table,
                                             make_layout, mix_embeddings, position_weights,
                                             window_prompts, window_slice, window_starts)
from vcstudio.scene.segments import Segment

GRID = [(L, K, S) for L in range(1, 33) for K in range(1, L + 1) for S in range(1, K + 1)]


def test_known_starts():
    assert window_starts(16, 16, 8) == [0]
    assert window_starts(24, 16, 8) == [0, 8]
    assert window_starts(30, 16, 8) == [0, 8, 14]  # tail window aligned to the end
    assert window_starts(120, 16, 8) == list(range(0, 105, 8))  # (120-16) % 8 == 0
    assert window_starts(121, 16, 8) == list(range(0, 105, 8)) + [105]
    assert window_starts(10, 4, 4) == [0, 4, 6]


@pytest.mark.parametrize("fusion", ["uniform", "pyramid", "gaussian"])
def test_every_frame_covered_and_weights_sum_to_one(fusion):
    for L, K, S in GRID:
        lay = make_layout(L, K, S, fusion)
        cov = lay.coverage()
        assert cov.min() >= 1, (L, K, S)
        assert lay.starts[-1] + K == L and lay.starts[0] == 0
        assert all(b - a <= S for a, b in zip(lay.starts, lay.starts[1:]))
        np.testing.assert_allclose(lay.frame_weights().sum(0), 1.0, atol=1e-12)


def test_bad_layouts_raise():
    with pytest.raises(InputError, match="shorter than one window"):
        window_starts(8, 16, 4)
    with pytest.raises(InputError, match="Stride"):
        window_starts(32, 16, 17)
    with pytest.raises(InputError, match="Stride"):
        window_starts(32, 16, 0)


def test_position_weights_shapes():
    np.testing.assert_allclose(position_weights(5, "pyramid"), [1, 2, 3, 2, 1])
    np.testing.assert_allclose(position_weights(4, "pyramid"), [1, 2, 2, 1])
    g = position_weights(9, "gaussian")
    assert g.argmax() == 4 and np.allclose(g, g[::-1]) and g.min() > 0


def test_pyramid_weights_known_answer():
    # L=6, K=4, S=2, raw [1,2,2,1]: frame 2 gets 2 (win 0) and 1 (win 1), frame 3 gets 1 and 2.
    lay = make_layout(6, 4, 2, "pyramid")
    np.testing.assert_allclose(lay.weights[0], [1, 1, 2 / 3, 1 / 3])
    np.testing.assert_allclose(lay.weights[1], [1 / 3, 2 / 3, 1, 1])


def test_fuse_identical_predictions_returns_them():
    torch.manual_seed(0)
    for L, K, S, fusion in [(30, 16, 8, "gaussian"), (17, 5, 3, "pyramid"), (9, 9, 1, "uniform")]:
        lay = make_layout(L, K, S, fusion)
        video = torch.randn(2, 4, L, 3, 5)
        preds = window_slice(video, lay, range(lay.n_windows))
        out = fuse(preds, lay)
        torch.testing.assert_close(out, video, atol=1e-6, rtol=0)


def test_single_window_is_identity():
    torch.manual_seed(0)
    lay = make_layout(12, 12, 4, "gaussian")
    x = torch.randn(1, 4, 12, 2, 2)
    assert torch.equal(fuse([x], lay), x)


def test_fuse_weighted_average_known_answer():
    # windows [0..3] and [2..5] predict constants 0 and 1; uniform: overlap frames -> 0.5
    lay = make_layout(6, 4, 2, "uniform")
    out = fuse([torch.zeros(1, 1, 4, 1, 1), torch.ones(1, 1, 4, 1, 1)], lay)
    np.testing.assert_allclose(out.flatten().numpy(), [0, 0, 0.5, 0.5, 1, 1])
    lay = make_layout(6, 4, 2, "pyramid")
    out = fuse([torch.zeros(1, 1, 4, 1, 1), torch.ones(1, 1, 4, 1, 1)], lay)
    np.testing.assert_allclose(out.flatten().numpy(), [0, 0, 1 / 3, 2 / 3, 1, 1], atol=1e-6)


def test_tail_frames_not_zero():
    lay = make_layout(30, 16, 8)
    out = fuse([torch.ones(1, 1, 16, 1, 1)] * lay.n_windows, lay)
    assert torch.all(out == 1)


def test_accumulator_batches_and_missing_window():
    lay = make_layout(20, 8, 4)
    acc = WindowAccumulator(lay, torch.zeros(1, 2, 8, 1, 1))
    for batch in lay.batches(2)[:-1]:
        for i in batch:
            acc.add(i, torch.ones(1, 2, 8, 1, 1))
    with pytest.raises(ValueError, match="never added"):
        acc.result()


def test_majority_and_interpolated_prompts():
    segs = [Segment("a", 0, 10), Segment("b", 10, 20)]
    lay = make_layout(20, 8, 4)  # starts 0,4,8,12
    assert lay.starts == [0, 4, 8, 12]
    maj = window_prompts(lay, segs, "majority")
    assert [p[0][0] for p in maj] == [0, 0, 1, 1]  # window 4..11: 6 frames of a -> a; 8..15 -> b
    inter = window_prompts(lay, segs, "interpolate")
    assert inter[0] == [(0, 1.0)]
    assert inter[1] == [(0, 0.75), (1, 0.25)]
    assert inter[2] == [(0, 0.25), (1, 0.75)]
    emb = torch.stack([torch.zeros(3, 2), torch.ones(3, 2)])
    mixed = mix_embeddings(emb, inter)
    assert mixed.shape == (4, 3, 2)
    np.testing.assert_allclose(mixed[:, 0, 0].numpy(), [0, 0.25, 0.75, 1])


def test_tie_goes_to_earlier_segment():
    segs = [Segment("a", 0, 6), Segment("b", 6, 12)]
    lay = make_layout(12, 4, 2)  # window 4..7 overlaps both on 2 frames
    assert window_prompts(lay, segs)[2] == [(0, 1.0)]


def test_table_and_image():
    segs = [Segment("a cat", 0, 15), Segment("a dog", 15, 30)]
    lay = make_layout(30, 16, 8, "pyramid")
    rows = layout_table(lay, segs, "interpolate")
    assert [r["start"] for r in rows] == [0, 8, 14]
    assert rows[-1]["frames"] == "14-29"
    assert "a dog" in rows[-1]["prompt"] and "a cat" in rows[-1]["prompt"]
    img = layout_image(lay, segs)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.shape[1] == 30 * 16
    # last row is white where weights sum to 1 (all frames)
    assert (img[-4, :, :] == 255).all()
