from functools import partial

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                       TwoWayTransformer)

from vcstudio.errors import ModelNotFoundError
from vcstudio.methods.masks import (GRABCUT_LABEL, SamMasker, foreground_masks, grabcut_mask,
                                    load_sam, salient_mask)
from vcstudio.models.cache import ModelCache

IMG = 64  # tiny SAM input size; patch 16 -> 4x4 image embedding


def tiny_sam() -> Sam:
    torch.manual_seed(0)
    dim = 32
    return Sam(
        image_encoder=ImageEncoderViT(img_size=IMG, patch_size=16, embed_dim=dim, depth=2,
                                      num_heads=2, mlp_ratio=2,
                                      norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                                      qkv_bias=True, use_rel_pos=True, global_attn_indexes=(1,),
                                      window_size=2, out_chans=dim),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(IMG // 16, IMG // 16),
                                     input_image_size=(IMG, IMG), mask_in_chans=4),
        mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                 transformer=TwoWayTransformer(depth=1, embedding_dim=dim,
                                                               mlp_dim=64, num_heads=2),
                                 transformer_dim=dim, iou_head_depth=2, iou_head_hidden_dim=32),
    ).eval()


def object_frames(n=2, h=48, w=64):
    """A noisy-textured blue background with a bright orange disc moving right."""
    rng = np.random.default_rng(0)
    frames, masks = [], []
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        f = np.empty((h, w, 3), np.uint8)
        f[...] = (30, 60, 160)
        f = np.clip(f + rng.integers(-12, 12, f.shape), 0, 255).astype(np.uint8)
        m = (yy - 24) ** 2 + (xx - 26 - 3 * i) ** 2 <= 12 ** 2
        f[m] = (250, 150, 30)
        frames.append(f)
        masks.append(m)
    return np.stack(frames), np.stack(masks)


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.fixture
def sam_file(tmp_path):
    sam = tiny_sam()
    path = tmp_path / "tiny_sam.safetensors"
    save_file({k: v.contiguous() for k, v in sam.state_dict().items()}, str(path))
    return path, sam


def test_missing_checkpoint_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("VCSTUDIO_SAM_DIR", str(tmp_path))
    with pytest.raises(ModelNotFoundError) as e:
        load_sam(model_type="vit_l", cache=ModelCache())
    msg = str(e.value)
    assert "sam_vit_l_0b3195.pth" in msg and str(tmp_path) in msg and "grabcut" in msg


def test_fallback_to_grabcut_is_labelled(tmp_path, monkeypatch):
    monkeypatch.setenv("VCSTUDIO_SAM_DIR", str(tmp_path))
    frames, _ = object_frames(1)
    res = foreground_masks(frames, "sam", box=(10, 8, 44, 40), fallback=True, cache=ModelCache())
    assert res.method == GRABCUT_LABEL


def test_tiny_sam_loads_and_predicts_shapes(sam_file):
    path, ref = sam_file
    sam = load_sam(str(path), "vit_b", cache=ModelCache(), builder=tiny_sam)
    for (k, v), (k2, v2) in zip(sam.state_dict().items(), ref.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    frames, _ = object_frames(2)
    masker = SamMasker(sam)
    res = masker.point(frames, (26, 24))
    assert res.masks.shape == (2, 48, 64) and res.masks.dtype == bool and res.method == "sam-point"
    assert len(res.scores) == 2
    res = masker.box(frames, (10, 8, 44, 40))
    assert res.masks.shape == (2, 48, 64) and res.method == "sam-box"


def test_tiny_sam_automatic(sam_file):
    path, _ = sam_file
    frames, _ = object_frames(1)
    res = foreground_masks(frames, "sam", checkpoint=str(path), cache=ModelCache(),
                           builder=tiny_sam, points_per_side=2, pred_iou_thresh=-1e9,
                           stability_score_thresh=-1e9, box_nms_thresh=1.0)
    assert res.method == "sam-auto" and res.masks.shape == (1, 48, 64)


def test_salient_rule():
    h, w = 20, 20
    bg = np.ones((h, w), bool)
    big = np.zeros((h, w), bool); big[4:16, 4:16] = True
    small = np.zeros((h, w), bool); small[1:4, 1:4] = True
    recs = [{"segmentation": bg, "predicted_iou": 0.99},
            {"segmentation": small, "predicted_iou": 0.95},
            {"segmentation": big, "predicted_iou": 0.9}]
    assert salient_mask(recs, (h, w)) is recs[2]
    assert salient_mask(recs[:1], (h, w)) is recs[0]  # only background: best-scored fallback
    assert salient_mask([], (h, w)) is None


def test_grabcut_box_and_point_find_the_object():
    frames, truth = object_frames(2)
    res = foreground_masks(frames, "grabcut", box=(10, 8, 44, 40))
    assert res.method == GRABCUT_LABEL
    for m, t in zip(res.masks, truth):
        assert iou(m, t) > 0.8
    m = grabcut_mask(frames[0], point=(26, 24))
    assert iou(m, truth[0]) > 0.8
