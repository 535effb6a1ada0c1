"""I2V LoRA deltas in diffusers' LoRA layout: diffusers loads every tensor and gives the same video
as vcstudio's own loading (tiny SVD and LTX-Video built with the real classes); files written
before the diffusers layout still load in vcstudio."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vcstudio.models.lora import add_lora, load_lora, lora_state_dict, read_lora, save_lora
from vcstudio.models.ltx import build_tiny_ltx, load_ltx
from vcstudio.models.svd import build_tiny_svd, load_svd
from vcstudio.pipelines.i2v.backbones import sample_i2v
from vcstudio.pipelines.i2v.ltx import LTXBackbone
from vcstudio.pipelines.i2v.svd import SVDBackbone

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_lora(module, rank=4, alpha=8.0, seed=0):
    """LoRA with non-zero A and B (a fresh one is the identity: B = 0), alpha != rank so the
    scale alpha / r has to travel with the file."""
    add_lora(module, rank=rank, alpha=alpha)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in module.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def _peft_tensors(module):
    """Every LoRA tensor a module holds, keyed without the adapter name (peft's saved layout)."""
    from peft import get_peft_model_state_dict

    names = {n.split(".lora_")[1].split(".")[1] for n, _ in module.named_parameters()
             if ".lora_" in n}
    assert len(names) == 1, names  # one adapter
    return get_peft_model_state_dict(module, adapter_name=names.pop())


def _as_uint8(video: torch.Tensor) -> np.ndarray:
    return (video.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().numpy()


@pytest.fixture(scope="module")
def svd_dir(tmp_path_factory):
    return build_tiny_svd(tmp_path_factory.mktemp("tiny_svd"), seed=0, frames=4)


@pytest.fixture(scope="module")
def ltx_dir(tmp_path_factory):
    return build_tiny_ltx(tmp_path_factory.mktemp("tiny_ltx"), seed=0)


def test_ltx_lora_loads_with_the_diffusers_pipelines_load_lora_weights(ltx_dir, tmp_path):
    from diffusers import LTXImageToVideoPipeline

    bb = LTXBackbone(load_ltx(ltx_dir, cache=None), guidance=3.0)
    _random_lora(bb.denoiser)
    path = save_lora(tmp_path / "lora.safetensors", bb.denoiser, {"note": "test"},
                     prefix=bb.denoiser_name)
    saved = lora_state_dict(bb.denoiser)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert all(k.startswith("transformer.") and "lora" in k for k in f.keys())
        assert json.loads(f.metadata()["lora_adapter_metadata"])["transformer.lora_alpha"] == 8.0

    pipe = LTXImageToVideoPipeline.from_pretrained(ltx_dir)
    pipe.set_progress_bar_config(disable=True)
    img = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    kw = dict(prompt="a red ball rolls", height=32, width=32, num_frames=9, num_inference_steps=2,
              guidance_scale=3.0, output_type="pt")
    plain = _as_uint8(pipe(img, generator=torch.Generator().manual_seed(5), **kw).frames[0])
    pipe.load_lora_weights(str(path))  # the file itself ...
    got = _peft_tensors(pipe.transformer)
    assert set(got) == set(saved) and len(saved) == 2 * 16  # every tensor, none left over
    assert all(torch.equal(got[k].float(), saved[k]) for k in saved)
    theirs = _as_uint8(pipe(img, generator=torch.Generator().manual_seed(5), **kw).frames[0])
    pipe2 = LTXImageToVideoPipeline.from_pretrained(ltx_dir)
    pipe2.load_lora_weights(str(tmp_path))  # ... or its folder, as diffusers users pass it
    assert set(_peft_tensors(pipe2.transformer)) == set(saved)

    fresh = LTXBackbone(load_ltx(ltx_dir, cache=None), guidance=3.0)
    assert load_lora(path, fresh.denoiser) == {"note": "test"}
    ours = sample_i2v(fresh, img, 9, 32, 32, steps=2, seed=5, prompt="a red ball rolls")
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    assert np.abs(theirs.astype(int) - plain.astype(int)).max() > 10  # the LoRA acts


def test_svd_lora_loads_through_diffusers_reader_and_peft(svd_dir, tmp_path):
    """SVD has no diffusers LoRA loader (no mixin on the pipeline, no load_lora_adapter on its
    U-Net): the file is read with diffusers' own lora_state_dict and injected with peft, the
    steps diffusers' load_lora_adapter takes."""
    from diffusers import StableDiffusionPipeline, StableVideoDiffusionPipeline
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    assert not hasattr(StableVideoDiffusionPipeline, "load_lora_weights")
    bb = SVDBackbone(load_svd(svd_dir, cache=None))
    _random_lora(bb.denoiser, seed=1)
    path = save_lora(tmp_path / "lora.safetensors", bb.denoiser, prefix=bb.denoiser_name)
    saved = lora_state_dict(bb.denoiser)

    pipe = StableVideoDiffusionPipeline.from_pretrained(svd_dir)
    pipe.set_progress_bar_config(disable=True)
    sd, alphas, meta = StableDiffusionPipeline.lora_state_dict(str(path), return_lora_metadata=True)
    assert alphas is None and all(k.startswith("unet.") for k in sd)
    sd = {k[len("unet."):]: v for k, v in sd.items()}
    cfg = LoraConfig(**{k[len("unet."):]: v for k, v in meta.items()})
    inject_adapter_in_model(cfg, pipe.unet)
    res = set_peft_model_state_dict(pipe.unet, sd)
    assert not res.unexpected_keys
    got = _peft_tensors(pipe.unet)
    assert set(got) == set(saved) and all(torch.equal(got[k], saved[k]) for k in saved)
    img = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    theirs = _as_uint8(pipe(img, height=32, width=32, num_frames=4, num_inference_steps=3,
                            generator=torch.Generator().manual_seed(5), output_type="pt").frames[0])
    fresh = SVDBackbone(load_svd(svd_dir, cache=None))
    load_lora(path, fresh.denoiser)
    ours = sample_i2v(fresh, img, 4, 32, 32, steps=3, seed=5)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    plain = sample_i2v(SVDBackbone(load_svd(svd_dir, cache=None)), img, 4, 32, 32, steps=3, seed=5)
    assert np.abs(ours.astype(int) - plain.astype(int)).max() > 10


def test_lora_file_from_before_the_diffusers_layout_still_loads(svd_dir, tmp_path):
    """The older layout: peft keys without a component prefix, no diffusers metadata."""
    from safetensors.torch import save_file

    bb = SVDBackbone(load_svd(svd_dir, cache=None))
    _random_lora(bb.denoiser, seed=2)
    old = tmp_path / "old.safetensors"
    save_file(lora_state_dict(bb.denoiser), str(old),
              metadata={"kind": "vcstudio-lora", "lora": json.dumps(bb.denoiser._vcs_lora_config),
                        "config": json.dumps({"tune": {"lr": 1e-3}})})
    new = save_lora(tmp_path / "new.safetensors", bb.denoiser, {"tune": {"lr": 1e-3}})
    t_old, c_old, r_old = read_lora(old)
    t_new, c_new, r_new = read_lora(new)
    assert t_old.keys() == t_new.keys() and c_old == c_new and r_old == r_new
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    want = sample_i2v(bb, img, steps=2, seed=1)
    for f in (old, new):
        fresh = SVDBackbone(load_svd(svd_dir, cache=None))
        load_lora(f, fresh.denoiser)
        assert np.array_equal(sample_i2v(fresh, img, steps=2, seed=1), want)
