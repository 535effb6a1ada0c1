"""Structure control (issue 18): conditions per frame, ControlNet / T2I-Adapter residuals in the
inflated U-Net, equal to diffusers' own pipelines on one frame; edits, long video, bad inputs.
Tiny ControlNetModel / T2IAdapter are built with the real classes, saved with save_pretrained and
loaded back through the users' path (hub id or folder)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vcstudio.config import ControlConfig, DataConfig, EditConfig, LongConfig, TuneConfig
from vcstudio.errors import InputError, ModelNotFoundError, VcsError
from vcstudio.models.cache import ModelCache

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "a red circle moving right"


@pytest.fixture(scope="module")
def mcache():
    return ModelCache()


@pytest.fixture(scope="module")
def base(tiny_sd, mcache):
    from vcstudio.models.loading import load_base

    return load_base(str(tiny_sd), cache=mcache)


def _controlnet(base, folder, zero=True, seed=0, cross_dim=None):
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    if cross_dim is None:
        cn = ControlNetModel.from_unet(base.unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    else:
        from vcstudio.models.tiny import tiny_unet_config

        cfg = tiny_unet_config(cross_dim)
        cn = ControlNetModel(in_channels=4, block_out_channels=cfg["block_out_channels"],
                             down_block_types=cfg["down_block_types"], layers_per_block=1,
                             cross_attention_dim=cross_dim, attention_head_dim=8,
                             norm_num_groups=8, conditioning_embedding_out_channels=(8, 8, 16, 16))
    if not zero:  # give the zero convolutions (and the rest) a say
        with torch.no_grad():
            for n, p in cn.named_parameters():
                if "controlnet_down_blocks" in n or "controlnet_mid_block" in n:
                    p.normal_(0, 0.2)
    cn.save_pretrained(folder)
    return str(folder)


def _adapter(folder, seed=0):
    from diffusers import T2IAdapter

    torch.manual_seed(seed)
    ad = T2IAdapter(in_channels=3, channels=[32, 64], num_res_blocks=1, downscale_factor=8,
                    adapter_type="full_adapter")
    with torch.no_grad():
        for p in ad.parameters():
            p.mul_(3.0)  # random features large enough to move a tiny U-Net
    ad.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def nets(base, tmp_path_factory):
    d = tmp_path_factory.mktemp("ctl")
    return {"zero": _controlnet(base, d / "cn-zero"), "cn": _controlnet(base, d / "cn", False),
            "cn2": _controlnet(base, d / "cn2", False, seed=1),
            "adapter": _adapter(d / "adapter"),
            "wide": _controlnet(base, d / "cn-wide", cross_dim=48)}


def _png_folder(frames, folder):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:03d}.png")
    return str(folder)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A synthetic 96x64 clip as lossless frames: tuning crops it to 64x64 at the right."""
    from vcstudio.io.synthetic import moving_shape_clip

    raw = moving_shape_clip(8, 96, dx=3.0)[:, :64]  # (8, 64, 96, 3)
    return raw, _png_folder(raw, tmp_path_factory.mktemp("src") / "clip")


@pytest.fixture(scope="module")
def run(tiny_sd, source, tmp_path_factory, mcache):
    from vcstudio.pipelines.tune import load_tuned, tune

    cfg = TuneConfig(model=str(tiny_sd), data=DataConfig(
        video_path=source[1], prompt=PROMPT, n_frames=8, stride=1, width=64, height=64,
        crop="right"), steps=2, lr=1e-3, checkpoint_every=0, inversion_steps=3)
    res = tune(cfg, tmp_path_factory.mktemp("run") / "run", cache=mcache)
    return load_tuned(res.run_dir, mcache)


def _cond_video(frames, folder):
    return _png_folder(frames, folder)


def _blobs(seed, n=8, size=64):
    g = np.random.default_rng(seed)
    return (g.random((n, size, size, 3)) > 0.5).astype(np.uint8) * 255


# ----------------------------------------------------------------------------- conditions
def test_canny_matches_opencv_frame_by_frame_at_the_tuned_crop(run, source):
    import cv2

    from vcstudio.io import fit_frames
    from vcstudio.pipelines.structure import clip_conditions, tuned_clip

    raw = source[0]
    clip = tuned_clip(run)
    want_clip = fit_frames(raw, 64, 64, "crop", "right")
    assert np.array_equal(clip, want_clip) and not np.array_equal(clip, raw[:, :, :64])
    (cond,) = clip_conditions([ControlConfig("canny", "m", low=50, high=150)], clip, 8, 64, 64)
    assert cond.shape == (8, 64, 64, 3) and cond.dtype == np.uint8
    for i in range(8):
        edges = cv2.Canny(want_clip[i], 50, 150)
        assert edges.any()
        assert np.array_equal(cond[i, ..., 0], edges) and np.array_equal(cond[i, ..., 2], edges)


def test_uploaded_condition_video_is_resampled_to_the_clip(tmp_path):
    from vcstudio.control.conditions import condition_video, resample_frames

    frames = np.stack([np.full((32, 48, 3), i * 10, np.uint8) for i in range(20)])
    path = _cond_video(frames, tmp_path / "pose")
    out = condition_video(path, 8, 16, 16, "crop", "center")
    assert out.shape == (8, 16, 16, 3)
    # evenly spread, first and last kept: frames 0, 3, 5, 8, 11, 14, 16, 19
    assert [int(v) for v in out[:, 0, 0, 0]] == [0, 30, 50, 80, 110, 140, 160, 190]
    assert resample_frames(frames[:3], 6)[:, 0, 0, 0].tolist() == [0, 0, 10, 10, 20, 20]
    with pytest.raises(InputError, match="needs its condition video"):
        condition_video("", 8, 16, 16)


# ----------------------------------------------------------------------------- vs diffusers
def _one_step_ours(base, unet2d, control, prompt_embeds, neg, latents):
    from diffusers import DDIMScheduler

    from vcstudio.pipelines.video_pipeline import VideoEditPipeline

    pipe = VideoEditPipeline(vae=base.vae, text_encoder=base.text_encoder,
                             tokenizer=base.tokenizer, unet=unet2d,
                             scheduler=DDIMScheduler.from_config(base.scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt_embeds=prompt_embeds, negative_prompt_embeds=neg,
                latents=latents[:, :, None], num_inference_steps=1, guidance_scale=7.5,
                output_type="latent", control=control).frames[:, :, 0]


def _inputs(base):
    from vcstudio.pipelines.encode import encode_prompts

    g = torch.Generator().manual_seed(3)
    latents = torch.randn((1, 4, 8, 8), generator=g)
    image = torch.from_numpy(_blobs(5, 1)).permute(0, 3, 1, 2).float() / 255
    return (encode_prompts(base, [PROMPT]), encode_prompts(base, [""]), latents, image)


def test_one_frame_with_controlnet_equals_diffusers_controlnet_pipeline(base, nets):
    from diffusers import DDIMScheduler, StableDiffusionControlNetPipeline

    from vcstudio.control.models import StructureControl, Unit, load_control_model

    kind, cn = load_control_model(nets["cn"])
    assert kind == "controlnet"
    emb, neg, latents, image = _inputs(base)
    ref = StableDiffusionControlNetPipeline(
        vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=base.unet,
        controlnet=cn, scheduler=DDIMScheduler.from_config(base.scheduler_config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    ref.set_progress_bar_config(disable=True)
    want = ref(prompt_embeds=emb, negative_prompt_embeds=neg, image=image, latents=latents,
               num_inference_steps=1, guidance_scale=7.5, controlnet_conditioning_scale=0.7,
               output_type="latent", height=64, width=64).images
    ctrl = StructureControl([Unit("controlnet", cn, image, 0.7)])
    got = _one_step_ours(base, base.unet, ctrl, emb, neg, latents)
    plain = _one_step_ours(base, base.unet, None, emb, neg, latents)
    assert ctrl.calls == 1
    assert (want - plain).abs().max() > 1e-3  # the ControlNet changes the step
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_one_frame_with_adapter_equals_diffusers_adapter_pipeline(base, nets):
    from diffusers import DDIMScheduler, StableDiffusionAdapterPipeline

    from vcstudio.control.models import StructureControl, Unit, load_control_model

    kind, ad = load_control_model(nets["adapter"])
    assert kind == "adapter"
    emb, neg, latents, image = _inputs(base)
    ref = StableDiffusionAdapterPipeline(
        vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=base.unet,
        adapter=ad, scheduler=DDIMScheduler.from_config(base.scheduler_config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    ref.set_progress_bar_config(disable=True)
    want = ref(prompt_embeds=emb, negative_prompt_embeds=neg, image=image, latents=latents,
               num_inference_steps=1, guidance_scale=7.5, adapter_conditioning_scale=0.8,
               output_type="latent", height=64, width=64).images
    got = _one_step_ours(base, base.unet, StructureControl([Unit("adapter", ad, image, 0.8)]),
                         emb, neg, latents)
    plain = _one_step_ours(base, base.unet, None, emb, neg, latents)
    assert (want - plain).abs().max() > 1e-3
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
