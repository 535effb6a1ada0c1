"""Shared Wan2.1 pieces: tiny folders load through diffusers and vcstudio alike, size rules,
latent normalisation, UMT5 embeddings cached then the encoder freed, offline errors."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from vcstudio.errors import InputError, ModelNotFoundError
from vcstudio.models.wan import (PromptEmbeddings, check_frames, check_size, denormalize,
                                 latent_frames, load_wan, nearest_frames, normalize, wan_kind)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_plain_diffusers_pipelines_run_on_the_tiny_folders(tiny_wan_t2v, tiny_wan_i2v):
    from diffusers import WanImageToVideoPipeline, WanPipeline
    from PIL import Image

    t2v = WanPipeline.from_pretrained(tiny_wan_t2v)
    t2v.set_progress_bar_config(disable=True)
    out = t2v("a red ball", height=32, width=32, num_frames=9, num_inference_steps=2,
              generator=torch.Generator().manual_seed(0), output_type="np").frames[0]
    assert out.shape == (9, 32, 32, 3) and 0.01 < out.std() and np.isfinite(out).all()
    i2v = WanImageToVideoPipeline.from_pretrained(tiny_wan_i2v)
    i2v.set_progress_bar_config(disable=True)
    assert i2v.transformer.config.in_channels == 36 and i2v.transformer.config.image_dim == 16
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8))
    out = i2v(img, prompt="a cat", height=32, width=32, num_frames=5, num_inference_steps=2,
              generator=torch.Generator().manual_seed(0), output_type="np").frames[0]
    assert out.shape == (5, 32, 32, 3) and 0.01 < out.std()


def test_load_and_detect_kind(tiny_wan_t2v, tiny_wan_i2v, tmp_path):
    t2v = load_wan(tiny_wan_t2v, cache=None)
    i2v = load_wan(tiny_wan_i2v, cache=None)
    assert (t2v.kind, i2v.kind) == ("t2v", "i2v") and t2v.image_encoder is None
    assert i2v.image_encoder is not None and i2v.image_processor is not None
    assert not any(p.requires_grad for p in t2v.transformer.parameters())
    assert wan_kind(tiny_wan_t2v) == "t2v" and wan_kind(tiny_wan_i2v) == "i2v"
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    with pytest.raises(InputError, match="StableDiffusionPipeline pipeline, not Wan2.1") as e:
        wan_kind(tmp_path / "sd")
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="Wan2.1"):
        load_wan(tmp_path / "sd", cache=None)


def test_missing_model_is_one_line_and_fast_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="weizhou03/Wan2.1-Fun-1.3B-InP-Diffusers") as e:
        load_wan("weizhou03/Wan2.1-Fun-1.3B-InP-Diffusers", "i2v", cache=None)
    assert time.perf_counter() - t0 < 2.0 and "\n" not in str(e.value)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_wan(tmp_path / "nope", "t2v", cache=None)


def test_frame_and_size_rules_name_the_nearest_valid_values():
    assert [check_frames(n) for n in (5, 25, 81)] == [5, 25, 81]
    assert latent_frames(25) == 7 and latent_frames(81) == 21
    assert nearest_frames(24) == (21, 25) and nearest_frames(2) == (5, 5)
    with pytest.raises(InputError, match=r"got 24: use 21 or 25\.$"):
        check_frames(24)
    with pytest.raises(InputError, match="use 5"):
        check_frames(1)
    assert check_size(272, 368) == (272, 368)
    with pytest.raises(InputError, match=r"got 368x270: use 368x272\.$"):
        check_size(270, 368)


def test_latent_normalisation_is_the_pipelines(tiny_wan_t2v):
    vae = load_wan(tiny_wan_t2v, cache=None).vae
    z = torch.randn(1, 16, 2, 4, 4)
    mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
    assert torch.allclose(normalize(z, vae), (z - mean) / std, atol=1e-6)
    assert torch.allclose(denormalize(normalize(z, vae), vae), z, atol=1e-5)
    assert float(std.std()) > 0.1  # Wan's real per-channel statistics, not ones


def test_prompt_embeddings_cached_then_encoder_freed(tiny_wan_t2v):
    from diffusers import WanPipeline

    parts = load_wan(tiny_wan_t2v, cache=None)
    emb = PromptEmbeddings(parts.tokenizer, parts.text_encoder, torch.device("cpu"))
    e = emb(["a red ball", ""])
    assert e.shape == (2, 512, 32)
    n_tok = len(parts.tokenizer("a red ball").input_ids)
    assert float(e[0, :n_tok].abs().sum()) > 0 and float(e[0, n_tok:].abs().sum()) == 0
    pipe = WanPipeline.from_pretrained(tiny_wan_t2v)
    ref, _ = pipe.encode_prompt("a red ball", do_classifier_free_guidance=False, device="cpu",
                                max_sequence_length=512)
    assert torch.allclose(e[:1], ref.float(), atol=1e-6)  # what WanPipeline conditions on
    emb.free()
    assert emb.freed and torch.equal(emb("a red ball"), e[:1])  # answered from the cache
    with pytest.raises(InputError, match="freed"):
        emb("a blue car")
