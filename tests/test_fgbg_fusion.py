import numpy as np
import pytest
import torch

from vcstudio.methods.fgbg import FgBgWeights, fgbg_losses, latent_mask, masked_mse
from vcstudio.methods.fusion import average_fusion, fuse_candidates


def test_latent_mask_area_average():
    m = np.zeros((2, 16, 16), bool)
    m[:, :8, :8] = True       # top-left latent cell (8x8 pixels -> 1 cell at 2x2)
    m[1, 8:12, 8:16] = True   # half of the bottom-right cell on frame 1
    lm = latent_mask(m, (2, 2))
    assert lm.shape == (1, 1, 2, 2, 2)
    np.testing.assert_allclose(lm[0, 0, 0].numpy(), [[1, 0], [0, 0]])
    np.testing.assert_allclose(lm[0, 0, 1].numpy(), [[1, 0], [0, 0.5]])
    np.testing.assert_allclose(latent_mask(m, (2, 2), threshold=0.6)[0, 0, 1].numpy(), [[1, 0], [0, 0]])
    assert latent_mask(m.astype(np.uint8) * 255, (2, 2)).max() == 1


def test_all_foreground_equals_plain_loss():
    torch.manual_seed(0)
    eps, pred = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 4, 3, 8, 8)
    ones = torch.ones(1, 1, 3, 8, 8)
    out = fgbg_losses(pred, eps, ones)
    plain = torch.nn.functional.mse_loss(pred, eps)
    torch.testing.assert_close(out["l_fg"], plain)
    torch.testing.assert_close(out["l"], plain)
    assert out["l_bg"].item() == 0.0
    torch.testing.assert_close(out["total"], 2.0 * plain)  # l1 = l2 = 1, l3 * 0
    out = fgbg_losses(pred, eps, ones, weights=FgBgWeights(reduction="masked"))
    torch.testing.assert_close(out["l_fg"], plain)


def test_binary_masks_split_the_loss_and_known_answer():
    eps = torch.zeros(1, 1, 1, 2, 2)
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 2, 2)
    fg = torch.tensor([1.0, 0, 0, 1]).reshape(1, 1, 1, 2, 2)
    out = fgbg_losses(pred, eps, fg, weights=FgBgWeights(1.0, 2.0, 3.0))
    assert out["l"].item() == pytest.approx(30 / 4)
    assert out["l_fg"].item() == pytest.approx(17 / 4)
    assert out["l_bg"].item() == pytest.approx(13 / 4)
    assert out["total"].item() == pytest.approx(30 / 4 + 2 * 17 / 4 + 3 * 13 / 4)
    assert masked_mse(pred - eps, fg, "masked").item() == pytest.approx(17 / 2)


def test_fg_gradient_is_zero_outside_mask():
    torch.manual_seed(0)
    pred = torch.randn(1, 4, 2, 4, 4, requires_grad=True)
    eps = torch.randn(1, 4, 2, 4, 4)
    fg = torch.zeros(1, 1, 2, 4, 4)
    fg[..., 1:3, 1:3] = 1
    fgbg_losses(pred, eps, fg)["l_fg"].backward()
    g = pred.grad
    assert torch.all(g[..., 0, :] == 0) and torch.all(g[..., :, 3] == 0)
    assert torch.all(g[..., 1:3, 1:3] != 0)


def test_mask_must_be_latent_resolution():
    with pytest.raises(ValueError, match="latent resolution"):
        fgbg_losses(torch.zeros(1, 4, 1, 8, 8), torch.zeros(1, 4, 1, 8, 8), torch.ones(1, 1, 1, 64, 64))


# ----------------------------------------------------------------------------- eq. 11

def _cands():
    # 3 candidates, 1x4 "images" with constant values 1, 2, 3
    r = torch.tensor([1.0, 2.0, 3.0]).reshape(3, 1, 1).expand(3, 1, 4).clone()
    fg = torch.tensor([[[1.0, 1, 0, 0]], [[0, 1, 1, 0]], [[0, 0, 0, 0]]])  # fg masks per candidate
    return r, fg


def test_average_fusion_paper_formula():
    r, fg = _cands()
    bg = 1 - fg
    out = average_fusion(r, bg, r[0], fg[0], w1=1.0, w2=1.0)
    # pixel 0: bg in cands 2,3 -> (2+3)/3 ; + fg of cand 1 -> 1
    # pixel 1: bg only in cand 3 -> 3/3 ; + 1
    # pixel 2: bg in 1,3 -> (1+3)/3 ; fg mask of cand 1 is 0 there
    # pixel 3: bg in all -> 6/3
    np.testing.assert_allclose(out.flatten().numpy(), [5 / 3 + 1, 1 + 1, 4 / 3, 2], rtol=1e-6)
    out = average_fusion(r, bg, r[0], fg[0], w1=0.5, w2=2.0)
    np.testing.assert_allclose(out.flatten().numpy(), [0.5 * 5 / 3 + 2, 0.5 + 2, 0.5 * 4 / 3, 1],
                               rtol=1e-6)
    torch.testing.assert_close(fuse_candidates(r, fg, 0, 0.5, 2.0), out)


def test_average_fusion_normalised():
    r, fg = _cands()
    out = fuse_candidates(r, fg, fg_index=0, mode="normalised")
    # pixel 0,1: foreground of cand 1 (=1); pixel 2: bg avg of cands 1,3 = 2; pixel 3: avg = 2
    np.testing.assert_allclose(out.flatten().numpy(), [1, 1, 2, 2])
    # identical candidates + any masks -> unchanged
    same = torch.full((4, 2, 3), 7.0)
    masks = (torch.rand(4, 2, 3) > 0.5).float()
    torch.testing.assert_close(fuse_candidates(same, masks, 1, mode="normalised"), same[0])


def test_fusion_weights_learnable():
    r, fg = _cands()
    w1 = torch.tensor(1.0, requires_grad=True)
    w2 = torch.tensor(1.0, requires_grad=True)
    fuse_candidates(r, fg, 0, w1, w2).sum().backward()
    assert w1.grad.item() == pytest.approx((5 + 3 + 4 + 6) / 3)
    assert w2.grad.item() == pytest.approx(2.0)
