"""Known answers for the score math (embeddings given) and the pixel metrics."""
import math

import numpy as np
import pytest
import torch

from vcstudio.metrics import clip_scores, recon, vbench


def _abab():
    a = torch.tensor([1.0, 0.0, 0.0])
    b = torch.tensor([0.0, 1.0, 0.0])
    return a, b, torch.stack([a, a, b])


def test_adjacent_and_all_pairs_on_orthogonal_embeddings():
    _, _, e = _abab()
    adj = clip_scores.adjacent_consistency_from_embeddings(e)
    assert adj.tolist() == pytest.approx([100.0, 0.0])
    assert adj.mean() == pytest.approx(50.0)
    # ordered pairs i != j: (0,1),(1,0) are 1, the four with B are 0 -> 2/6
    assert clip_scores.all_pairs_consistency_from_embeddings(e) == pytest.approx(100 / 3)
    run = clip_scores.all_pairs_running(e)
    assert math.isnan(run[0]) and run[1:] == pytest.approx([100.0, 100 / 3])


def test_identical_embeddings_give_consistency_100():
    e = torch.randn(1, 16).repeat(5, 1)
    assert clip_scores.adjacent_consistency_from_embeddings(e).mean() == pytest.approx(100.0)
    assert clip_scores.all_pairs_consistency_from_embeddings(e) == pytest.approx(100.0)


def test_alignment_is_order_invariant_consistency_is_not():
    torch.manual_seed(0)
    e = torch.randn(6, 8)
    txt = torch.randn(8)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    al = clip_scores.text_alignment_from_embeddings(e, txt).mean()
    assert clip_scores.text_alignment_from_embeddings(e[perm], txt).mean() == pytest.approx(al)
    c1 = clip_scores.adjacent_consistency_from_embeddings(e).mean()
    c2 = clip_scores.adjacent_consistency_from_embeddings(e[perm]).mean()
    assert abs(c1 - c2) > 1.0
    # all-pairs is a set statistic: order invariant by construction
    assert clip_scores.all_pairs_consistency_from_embeddings(e[perm]) == pytest.approx(
        clip_scores.all_pairs_consistency_from_embeddings(e))


def test_alignment_is_not_clamped_and_scaled_by_100():
    img = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    txt = torch.tensor([1.0, 0.0])
    assert clip_scores.text_alignment_from_embeddings(img, txt).tolist() == [100.0, -100.0]


def test_diversity_of_identical_and_orthogonal_videos():
    a, b, _ = _abab()
    assert clip_scores.diversity_from_embeddings([a[None], a[None]]) == pytest.approx(0.0)
    assert clip_scores.diversity_from_embeddings([a[None], b[None]]) == pytest.approx(1.0)


def test_i2v_score_known_answer():
    a, _, e = _abab()
    # 0.4 * max(1,1,0) + 0.3 * mean(1,0) + 0.3 * min(1,0)
    assert vbench.i2v_score_from_embeddings(a, e) == pytest.approx(0.55)
    assert vbench.i2v_score_from_embeddings(a, e, (0.5, 0.5, 0.0)) == pytest.approx(0.75)


def test_vbench_consistency_clamps_negative_cosines():
    a = torch.tensor([1.0, 0.0])
    e = torch.stack([a, -a, a])
    # t=2: first -1 -> 0, prev -1 -> 0; t=3: first 1, prev -1 -> 0 => [0, 0.5]
    assert vbench.vbench_consistency_from_embeddings(e).tolist() == pytest.approx([0.0, 0.5])


def test_flicker_known_answers():
    same = np.full((4, 16, 16, 3), 77, np.uint8)
    assert vbench.temporal_flickering(same).value == pytest.approx(1.0)
    alt = np.stack([np.full((16, 16, 3), 100 if t % 2 == 0 else 110, np.uint8)
                    for t in range(6)])
    assert vbench.temporal_flickering(alt).value == pytest.approx(245 / 255, abs=1e-5)
    assert vbench.temporal_flickering(alt).value == pytest.approx(0.96078, abs=1e-5)


def test_dynamic_degree_threshold_rule():
    # 512x512: threshold 12 px; 16 pairs need round(4) = 4 above it
    assert vbench.dynamic_degree_from_pairs([13] * 4 + [0] * 12, 512, 512) == 1.0
    assert vbench.dynamic_degree_from_pairs([13] * 3 + [0] * 13, 512, 512) == 0.0


def test_psnr_of_offset_10():
    rng = np.random.default_rng(0)
    a = rng.integers(20, 230, (3, 32, 32, 3), dtype=np.uint8)
    r = recon.psnr(a, a + 10)
    assert r.value == pytest.approx(28.1308, abs=1e-4)
    assert r.per_frame == pytest.approx([28.1308] * 3, abs=1e-4)


def test_ssim_gaussian_window_matches_wang_et_al_settings():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (2, 40, 48, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    ours = recon.ssim_frames(a, b)
    for i in range(2):
        ref = structural_similarity(a[i], b[i], gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=255, channel_axis=-1)
        assert ours[i] == pytest.approx(ref, abs=1e-6)
    uniform = structural_similarity(a[0], b[0], data_range=255, channel_axis=-1)
    assert abs(uniform - ours[0]) > 1e-3  # the 7x7 uniform default is a different number
    assert recon.ssim_frames(a, a) == pytest.approx([1.0, 1.0])


def test_recon_resizes_source_and_rejects_short_source():
    from vcstudio.errors import InputError

    a = np.full((2, 16, 16, 3), 50, np.uint8)
    src = np.full((3, 32, 32, 3), 60, np.uint8)
    assert recon.psnr(a, src).value == pytest.approx(20 * math.log10(255 / 10))
    with pytest.raises(InputError):
        recon.psnr(a, src[:1])


def test_lpips_architecture_identity_and_skip_without_weights(tmp_path):
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    r = recon.lpips(np.zeros((1, 32, 32, 3), np.uint8), np.zeros((1, 32, 32, 3), np.uint8))
    assert r.skipped and "AlexNet" in r.skipped
    alex = torchvision.models.alexnet(weights=None)
    torch.save(alex.state_dict(), tmp_path / "alex.pth")
    lin = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1)
           for k, c in enumerate((64, 192, 384, 256, 256))}
    save_file(lin, str(tmp_path / "lin.safetensors"))
    model = recon.build_lpips(tmp_path / "lin.safetensors", tmp_path / "alex.pth")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert recon.lpips(a, a, model).value == pytest.approx(0.0, abs=1e-7)
    assert recon.lpips(a, b, model).value > 0.01


def test_ssim_torch_path_agrees_with_cpu_path():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (2, 24, 30, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.normal(0, 15, a.shape), 0, 255).astype(np.uint8)
    ours = recon._ssim_torch(a, b, recon.gaussian_window(1.5), torch.device("cpu"))
    assert ours == pytest.approx(recon.ssim_frames(a, b), abs=1e-5)
