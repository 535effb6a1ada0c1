"""CLIP / DINO loaders with tiny random-weight REAL models, evaluate(), the stream and the CLI.

Assertions here never depend on weight values: shapes, determinism, paths, provenance and
identities that hold for any weights (identical frames -> cos 1).
"""
import argparse
import json

import numpy as np
import pytest
import torch

from vcstudio.errors import ModelNotFoundError
from vcstudio.io.synthetic import moving_shape_clip
from vcstudio.metrics import MetricStream, evaluate
from vcstudio.models.cache import ModelCache
from vcstudio.models.clip import load_clip_encoder, parse_clip_spec
from vcstudio.models.dino import load_dino_encoder

TINY_OPEN_CLIP = {"embed_dim": 16,
                  "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                                 "head_width": 16},
                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16,
                               "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import open_clip
    from safetensors.torch import save_file
    from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel

    from vcstudio.models.tokenizer import build_clip_tokenizer

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    (root / "oc").mkdir()
    (root / "oc" / "vcs-tiny-clip.json").write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(root / "oc")
    oc = open_clip.create_model("vcs-tiny-clip", pretrained=None)
    save_file(oc.state_dict(), str(root / "tiny_oc.safetensors"))

    tok = build_clip_tokenizer(["a", "red", "disc", "moving", "cat"], root / "hf")
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                         eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
                         pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, image_size=32, patch_size=8),
        projection_dim=8)
    CLIPModel(cfg).save_pretrained(root / "hf")

    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, image_size=224, patch_size=16),
             add_pooling_layer=False).save_pretrained(root / "dino")
    return root


def _clip():
    return moving_shape_clip(5, 64, dx=4.0, seed=1)


def test_spec_parsing():
    assert parse_clip_spec("ViT-B-32/openai") == ("open_clip", "ViT-B-32", "openai")
    assert parse_clip_spec("ViT-L-14") == ("open_clip", "ViT-L-14", "openai")
    assert parse_clip_spec("ViT-B-32/random") == ("open_clip", "ViT-B-32", None)
    assert parse_clip_spec("ViT-B-32:/w/x.safetensors") == ("open_clip_file", "ViT-B-32",
                                                             "/w/x.safetensors")
    assert parse_clip_spec("hf:openai/clip-vit-base-patch32")[0] == "hf_hub"


def test_open_clip_local_checkpoint_and_random(models):
    cache = ModelCache()
    enc = load_clip_encoder(f"vcs-tiny-clip:{models / 'tiny_oc.safetensors'}", "cpu", cache)
    assert "vcs-tiny-clip" in enc.name and "tiny_oc.safetensors" in enc.name
    e = enc.encode_images(_clip())
    assert e.shape == (5, 16) and torch.allclose(e.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert torch.equal(e, enc.encode_images(_clip()))  # deterministic
    t = enc.encode_text(["a red disc", "a cat"])
    assert t.shape == (2, 16)
    assert load_clip_encoder(f"vcs-tiny-clip:{models / 'tiny_oc.safetensors'}", "cpu",
                             cache) is enc  # through the cache
    rnd = load_clip_encoder("vcs-tiny-clip/random", "cpu", ModelCache())
    assert "random" in rnd.name


def test_clip_image_path_is_differentiable(models):
    enc = load_clip_encoder(f"vcs-tiny-clip:{models / 'tiny_oc.safetensors'}", "cpu",
                            ModelCache())
    x = torch.rand(2, 3, 48, 40, requires_grad=True)
    enc.encode_images(x, differentiable=True).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in enc.model.parameters())


def test_transformers_clip_folder(models):
    enc = load_clip_encoder(str(models / "hf"), "cpu", ModelCache())
    assert enc.kind == "hf" and "hf" in enc.name
    assert enc.encode_images(_clip()).shape == (5, 8)
    assert enc.encode_text(["a red disc"]).shape == (1, 8)


def test_missing_weights_raise_model_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError, match="ViT-B-32"):
        load_clip_encoder(f"ViT-B-32:{tmp_path / 'nope.safetensors'}", "cpu", ModelCache())
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_clip_encoder(str(tmp_path), "cpu", ModelCache())
    with pytest.raises(ModelNotFoundError, match="DINO"):
        load_dino_encoder(str(tmp_path / "dino"), "cpu", ModelCache())


def test_dino_folder_non_square_frames(models):
    enc = load_dino_encoder(str(models / "dino"), "cpu", ModelCache())
    frames = np.random.default_rng(0).integers(0, 256, (3, 48, 80, 3), dtype=np.uint8)
    e = enc.encode_images(frames)  # short side -> 224, no crop: 224 x 373, interpolated pos
    assert e.shape == (3, 16)


def test_evaluate_identical_frames_known_answers_any_weights(models):
    frames = np.repeat(_clip()[:1], 4, axis=0)
    clip = f"vcs-tiny-clip:{models / 'tiny_oc.safetensors'}"
    res = evaluate(frames, prompt="a red disc", source=frames, image=frames[0], clip=clip,
                   dino=str(models / "dino"), device="cpu", cache=ModelCache())
    assert res["consistency_adjacent"].value == pytest.approx(100.0, abs=1e-3)
    assert res["consistency_all_pairs"].value == pytest.approx(100.0, abs=1e-3)
    assert res["subject_consistency"].value == pytest.approx(1.0, abs=1e-5)
    assert res["background_consistency"].value == pytest.approx(1.0, abs=1e-5)
    assert res["i2v_subject"].value == pytest.approx(1.0, abs=1e-5)
    assert res["flicker"].value == 1.0
    assert res["warp_error"].value == pytest.approx(0.0, abs=1e-6)
    assert res["fci"].value == pytest.approx(0.0, abs=1e-3)
    assert res["ssim"].value == pytest.approx(1.0)
    assert res["lpips"].skipped and res["vcd"].skipped in (None, res["vcd"].skipped)
    assert "vcs-tiny-clip" in res["clip_text"].model
    assert "dino" in res["subject_consistency"].model


def test_evaluate_skips_missing_inputs_and_models(models, tmp_path):
    frames = _clip()
    res = evaluate(frames, metrics="clip_text,psnr,flicker,subject_consistency",
                   dino=str(tmp_path / "none"), device="cpu", cache=ModelCache())
    assert res["clip_text"].skipped == "needs --prompt"
    assert res["psnr"].skipped == "needs --source"
    assert "DINO" in res["subject_consistency"].skipped
    assert not res["flicker"].skipped
    defaults = evaluate(frames, metrics=None, clip="vcs-tiny-clip/random", dino=str(tmp_path),
                        device="cpu", cache=ModelCache())
    assert "clip_text" not in defaults and "psnr" not in defaults and "warp_error" in defaults


def test_stream_matches_batch(models):
    frames = _clip()
    clip = f"vcs-tiny-clip:{models / 'tiny_oc.safetensors'}"
    names = "consistency_adjacent,consistency_all_pairs,clip_text,flicker,warp_error,fci,psnr"
    kw = dict(prompt="a red disc", source=frames, clip=clip, device="cpu", cache=ModelCache())
    stream = MetricStream(names, **kw)
    for t, f in enumerate(frames):
        out = stream.add(f)
        assert len(out["flicker"]) == t + 1
    batch = evaluate(frames, metrics=names, **kw)
    for n, r in stream.results().items():
        assert r.value == pytest.approx(batch[n].value, rel=1e-4, abs=1e-6), n
        np.testing.assert_allclose(r.per_frame, batch[n].per_frame, rtol=1e-4, atol=1e-6)


def test_cli_eval_writes_json_and_csv(models, tmp_path, capsys):
    from vcstudio.io import write_frames
    from vcstudio.cli.metrics import add_eval_args, run_eval

    folder = write_frames(_clip(), tmp_path / "frames")
    p = argparse.ArgumentParser()
    add_eval_args(p)
    args = p.parse_args([str(folder), "--prompt", "a red disc", "--metrics",
                         "clip_text,consistency,flicker,warp_error,psnr",
                         "--clip", f"vcs-tiny-clip:{models / 'tiny_oc.safetensors'}",
                         "--device", "cpu", "--json", str(tmp_path / "r.json"),
                         "--csv", str(tmp_path / "r.csv")])
    assert run_eval(args) == 0
    out = capsys.readouterr().out
    assert "consistency_all_pairs" in out and "needs --source" in out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert set(doc["metrics"]) == {"clip_text", "consistency_adjacent", "consistency_all_pairs",
                                   "flicker", "warp_error", "psnr"}
    assert doc["metrics"]["warp_error"]["model"].startswith("OpenCV DIS")
    assert doc["metrics"]["psnr"]["skipped"] == "needs --source"
    rows = (tmp_path / "r.csv").read_text().strip().splitlines()
    assert rows[0].startswith("frame,clip_text") and len(rows) == 1 + 5 + 1


def test_bench_runs_small(models, capsys):
    from vcstudio.cli.metrics import add_bench_metrics_args, run_bench_metrics

    p = argparse.ArgumentParser()
    add_bench_metrics_args(p)
    args = p.parse_args(["--frames", "4", "--size", "64", "--clip", "vcs-tiny-clip/random",
                         "--dino", str(models / "dino"), "--device", "cpu",
                         "--metrics", "flicker,warp_error,consistency_adjacent"])
    assert run_bench_metrics(args) == 0
    out = capsys.readouterr().out
    assert "warp_error" in out and "frames/s" in out


def test_offline_hub_models_fail_fast_and_metrics_skip(monkeypatch):
    import time

    import vcstudio.models.clip as clip_mod
    import vcstudio.models.dino as dino_mod

    monkeypatch.setattr(clip_mod, "hub_online", lambda *a, **k: False)
    monkeypatch.setattr(clip_mod, "_cached_weights", lambda cfg: None)
    monkeypatch.setattr(clip_mod, "toy_clip_dir", lambda: clip_mod.Path("/nonexistent-toy"))
    monkeypatch.setattr(dino_mod, "hub_online", lambda *a, **k: False)
    monkeypatch.setattr(dino_mod, "hub_file_cached", lambda *a, **k: False)
    t0 = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="ViT-B-32/openai"):
        load_clip_encoder("ViT-B-32/openai", "cpu", ModelCache())
    with pytest.raises(ModelNotFoundError, match="dino-vitb16"):
        load_dino_encoder("facebook/dino-vitb16", "cpu", ModelCache())
    res = evaluate(_clip(), prompt="a cat", metrics="clip_text,subject_consistency,flicker",
                   device="cpu", cache=ModelCache())
    assert "not in the local cache" in res["clip_text"].skipped
    assert "dino-vitb16" in res["subject_consistency"].skipped
    assert res["flicker"].value > 0.5
    assert time.perf_counter() - t0 < 20
