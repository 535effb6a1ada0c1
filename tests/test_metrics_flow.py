"""Flow, warp error and FCI on clips with known motion."""
import numpy as np
import pytest

from vcstudio.metrics import fci as fci_mod
from vcstudio.metrics import flow as flow_mod
from vcstudio.metrics import warp as warp_mod


def translated_clip(n=4, size=128, dx=3):
    """A photo (skimage's chelsea, textured fur) panned: content moves +dx px right per frame."""
    from skimage import data

    img = data.chelsea()  # 300 x 451 RGB
    y0 = (img.shape[0] - size) // 2
    x0 = (img.shape[1] - size) // 2 + n * dx // 2
    return np.stack([img[y0:y0 + size, x0 - dx * t:x0 - dx * t + size] for t in range(n)])


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_flow_of_translated_texture_is_3px(method):
    clip = translated_clip()
    flows = flow_mod.compute_flows(clip, method)
    b = 16  # off the borders
    for t in range(len(clip) - 1):
        fw = flows.forward(t)[b:-b, b:-b]
        bw = flows.backward(t)[b:-b, b:-b]
        assert fw[..., 0].mean() == pytest.approx(3.0, abs=0.1)
        assert fw[..., 1].mean() == pytest.approx(0.0, abs=0.1)
        assert bw[..., 0].mean() == pytest.approx(-3.0, abs=0.1)


def test_flow_cache_computes_each_pair_once():
    clip = translated_clip(3, 64)
    fc = flow_mod.FlowCache(clip[:2])
    f0 = fc.forward(0)
    assert fc.forward(0) is f0
    fc.append(clip[2])
    fc.compute_all()
    assert fc.n_pairs == 2 and fc.forward(0) is f0


def test_identical_frames_warp_error_zero_and_fci_zero():
    clip = np.repeat(translated_clip(1), 4, axis=0)
    w = warp_mod.warp_error(clip)
    assert w.value == pytest.approx(0.0, abs=1e-6)
    assert fci_mod.flow_consistency_index(clip).value == pytest.approx(0.0, abs=1e-3)


def test_uniform_brightness_change_warp_error():
    a = np.full((64, 64, 3), 100, np.uint8)
    b = a + 20
    zero = np.zeros((64, 64, 2), np.float32)
    assert warp_mod.warp_error_pair(a, b, zero, zero) == pytest.approx((20 / 255) ** 2, rel=1e-5)
    # through the estimated flows too (a flat image has no motion to find)
    r = warp_mod.warp_error(np.stack([a, b]))
    assert r.value == pytest.approx(0.00615, abs=1e-5)
    assert r.extra["flow_from"] == "generated"


def test_warp_error_compensates_true_motion():
    clip = translated_clip(3)
    r = warp_mod.warp_error(clip)
    naive = np.mean((clip[1:].astype(float) - clip[:-1]) ** 2) / 255 ** 2
    assert r.value < 0.1 * naive


def test_occlusion_and_motion_boundary_masks():
    fw = np.zeros((20, 20, 2), np.float32)
    fw[:, 10:, 0] = 5.0  # right half moves 5 px: a motion boundary at column 9/10
    mb = warp_mod.motion_boundary_mask(fw)
    assert mb[:, 9].all() and not mb[:, :8].any() and not mb[:, 11:].any()
    bw = -fw.copy()
    assert not warp_mod.occlusion_mask(fw[:, :5], bw[:, :5]).any()
    bad_bw = np.zeros_like(fw)  # backward flow disagrees on the moving half
    occ = warp_mod.occlusion_mask(fw, bad_bw)
    assert occ[:, 10:15].all() and not occ[:, :10].any()


def test_warp_flow_from_source_is_labelled():
    clip = translated_clip(3, 64)
    r = warp_mod.warp_error(clip, source=clip)
    assert r.extra["flow_from"] == "source" and "source" in r.definition


def test_fci_of_constant_motion_small_and_of_jerky_motion_large():
    steady = translated_clip(4, 96, 3)
    from skimage import data

    img = data.chelsea()
    offs = [0, 3, 3, 9]  # velocity 3, 0, 6: the flow changes between pairs
    jerky = np.stack([img[100:196, 200 - o:296 - o] for o in offs])
    a = fci_mod.flow_consistency_index(steady).value
    b = fci_mod.flow_consistency_index(jerky).value
    assert a < 0.5 and b > 2.0
    assert fci_mod.flow_change(np.zeros((2, 2, 2)), np.full((2, 2, 2), [3.0, 4.0])) == 5.0


def test_dis_uses_the_medium_preset():
    import cv2

    clip = translated_clip(2, 64)
    g = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip]
    medium = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(g[0], g[1], None)
    fast = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST).calc(g[0], g[1], None)
    ours = flow_mod.compute_flow(clip[0], clip[1], "dis")
    np.testing.assert_array_equal(ours, medium)
    assert np.abs(ours - fast).max() > 1e-3


def test_reconstructed_and_stand_in_metrics_are_labelled():
    from vcstudio.metrics import vbench

    clip = translated_clip(3, 64)
    assert "reconstructed" in fci_mod.flow_consistency_index(clip).to_dict()["label"]
    assert "stand-in" in vbench.dynamic_degree(clip).to_dict()["label"]
