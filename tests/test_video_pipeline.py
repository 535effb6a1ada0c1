"""VideoEditPipeline: vcstudio's video model as a diffusers DiffusionPipeline (tiny real model).

The edit job samples through it: its frames equal the ones the edit job made before the
pipeline existed (tests/data/edit_reference.npz, written by the old DDIM loop with the same
tiny model, clip, 4 tuning steps and seeds)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from vcstudio.config import DataConfig, EditConfig, TuneConfig
from vcstudio.errors import InputError, ModelNotFoundError
from vcstudio.models.cache import ModelCache
from vcstudio.pipelines.edit.edits import edit_frames
from vcstudio.pipelines.tune.loop import load_tuned, tune
from vcstudio.pipelines.edit.video_pipeline import VideoEditPipeline
from vcstudio.run_context import RunContext

pytestmark = pytest.mark.usefixtures("one_thread")
REFERENCE = Path(__file__).parent / "data" / "edit_reference.npz"
README = Path(__file__).parents[1] / "README.md"


def make_run(model_dir, out: Path) -> Path:
    """4 tuning steps of the tiny model on the moving-circle clip (the reference's run)."""
    from vcstudio.io.synthetic import moving_shape_clip

    cfg = TuneConfig(model=str(model_dir), data=DataConfig(prompt="a red circle moving right",
                                                           n_frames=8, width=64, height=64),
                     steps=4, lr=1e-3, checkpoint_every=0, inversion_steps=8)
    return tune(cfg, out, frames=moving_shape_clip(8, 64, dx=3.0),
                run=RunContext(cache=ModelCache())).run_dir


def reference_edits(run_dir) -> dict[str, np.ndarray]:
    """The edit job's two sampling paths: from the inversion (eta 0) and from noise (eta 0.5,
    where the generator feeds DDIM's noise)."""
    tuned = load_tuned(run_dir, ModelCache())
    return {"inversion": edit_frames(tuned, EditConfig(prompt="a blue square moving right",
                                                       steps=8, guidance=7.5, seed=5)),
            "noise_eta": edit_frames(tuned, EditConfig(prompt="a blue square moving right",
                                                       negative="red", steps=6, guidance=4.0,
                                                       seed=7, use_inversion=False, eta=0.5))}


@pytest.fixture(scope="module")
def run_dir(tiny_sd, tmp_path_factory):
    return make_run(tiny_sd, tmp_path_factory.mktemp("vp") / "run")


@pytest.fixture(scope="module")
def pipe(tiny_sd, run_dir):
    p = VideoEditPipeline.from_pretrained(str(tiny_sd)).load_tuned(str(run_dir))
    p.set_progress_bar_config(disable=True)
    return p


def test_edit_frames_equal_those_of_the_edit_before_the_pipeline(run_dir):
    """Measured: bit-identical on the machine that wrote the reference; the tolerance allows
    another CPU's float rounding. A deliberate change of the tuning or sampling numerics
    rewrites the reference: ``python tests/test_video_pipeline.py``."""
    ref = np.load(REFERENCE)
    for k, frames in reference_edits(run_dir).items():
        d = np.abs(frames.astype(int) - ref[k].astype(int))
        assert frames.shape == (8, 64, 64, 3) and d.max() <= 2 and d.mean() < 0.05, (k, d.max())


def test_pipeline_is_a_diffusion_pipeline_with_the_base_components(pipe):
    from diffusers import DDIMScheduler, DiffusionPipeline

    assert isinstance(pipe, DiffusionPipeline) and isinstance(pipe.scheduler, DDIMScheduler)
    assert set(pipe.components) == {"vae", "text_encoder", "tokenizer", "unet", "scheduler"}
    assert pipe.device.type == "cpu" and pipe.dtype == torch.float32


def test_unet_takes_and_returns_video_shaped_samples(pipe):
    torch.manual_seed(0)
    x, e = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 77, 32)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        out = pipe.unet(x, t, encoder_hidden_states=e)
        plain = pipe.unet(x, t, e, return_dict=False)[0]
        direct = pipe.unet.denoiser(x, t, e)
    assert out.sample.shape == x.shape and torch.equal(out.sample, plain)
    assert torch.equal(out.sample, direct)
    assert not torch.allclose(out.sample[:, :, 0], out.sample[:, :, 1])  # frames differ
    with pytest.raises(ValueError, match=r"\(B, C, F, H, W\)"):
        pipe.unet(x[:, :, 0], t, e)
    with pytest.raises(ValueError, match="tokens"):
        pipe.unet(x, t, e[:1])


def test_pipeline_call_defaults_to_the_tuned_clip_and_is_seeded(pipe):
    kw = dict(num_inference_steps=3, output_type="np")
    a = pipe("a blue square", generator=torch.Generator().manual_seed(1), **kw).frames
    b = pipe("a blue square", generator=torch.Generator().manual_seed(1), **kw).frames
    c = pipe("a blue square", generator=torch.Generator().manual_seed(2), **kw).frames
    assert a.shape == (1, 8, 64, 64, 3) and a.dtype == np.float32 and 0 <= a.min() <= a.max() <= 1
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    pil = pipe(["a blue square", "a red circle"], num_frames=2, height=32, width=32,
               num_inference_steps=2).frames
    assert len(pil) == 2 and len(pil[0]) == 2 and pil[0][0].size == (32, 32)
    with pytest.raises(InputError, match="empty"):
        pipe("  ")
    with pytest.raises(InputError, match="multiples of 8"):
        pipe("a cat", height=60)
    with pytest.raises(InputError, match="does not match"):
        pipe("a cat", num_frames=3, latents=torch.randn(1, 4, 2, 8, 8))


def test_any_diffusers_scheduler_swaps_in(pipe):
    """DPM-Solver++ of order 1 is DDIM (Lu et al.): on the same timesteps (trailing spacing,
    both ending at alpha_bar_0) it gives DDIM's latents; its default second order moves them."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    kw = dict(num_frames=2, output_type="latent", guidance_scale=3.0, num_inference_steps=10)
    noise = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    ddim = pipe.scheduler
    try:
        pipe.scheduler = DDIMScheduler.from_config(ddim.config, timestep_spacing="trailing")
        want = pipe("a red circle", latents=noise, **kw).frames
        dpm = dict(algorithm_type="dpmsolver++", timestep_spacing="trailing",
                   final_sigmas_type="sigma_min")
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(ddim.config, solver_order=1, **dpm)
        assert pipe.config.scheduler[1] == "DPMSolverMultistepScheduler"
        first = pipe("a red circle", latents=noise, **kw).frames
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(ddim.config, **dpm)
        second = pipe("a red circle", latents=noise, **kw).frames
        with pytest.raises(InputError, match="takes no eta"):
            pipe("a red circle", latents=noise, eta=0.5, **{**kw, "num_inference_steps": 2})
    finally:
        pipe.scheduler = ddim
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert (first - want).abs().max() < 1e-3 * want.abs().mean()
    assert (second - want).abs().max() > 100 * (first - want).abs().max()


def test_callback_on_step_end_sees_and_changes_latents(pipe):
    kw = dict(num_frames=2, num_inference_steps=4, output_type="latent",
              generator=torch.Generator().manual_seed(3))
    noise = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(3))
    seen = []

    def keep(p, i, t, tensors):
        seen.append((i, int(t), tuple(tensors["latents"].shape),
                     tuple(tensors["prompt_embeds"].shape)))
        return tensors

    def zero_frame_1(p, i, t, tensors):
        if i == 1:
            lat = tensors["latents"].clone()
            lat[:, :, 1] = 0
            tensors["latents"] = lat
        return tensors

    plain = pipe("a red circle", latents=noise, **kw).frames
    same = pipe("a red circle", latents=noise, callback_on_step_end=keep,
                callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"], **kw).frames
    changed = pipe("a red circle", latents=noise, callback_on_step_end=zero_frame_1, **kw).frames
    assert torch.equal(plain, same)
    assert [s[0] for s in seen] == [0, 1, 2, 3] and seen[0][2] == (1, 4, 2, 8, 8)
    assert seen[0][3] == (2, 77, 32)  # negative + positive rows under CFG
    assert (changed - plain).abs().max() > 0.1
    with pytest.raises(InputError, match="not among"):
        pipe("a red circle", callback_on_step_end=keep, callback_on_step_end_tensor_inputs=["x"])


def test_cfg_cutoff_callback_of_diffusers_works(pipe):
    """diffusers' SDCFGCutoffCallback slices prompt_embeds to the positive rows: from then on
    the pipeline predicts with the positive prompt alone."""
    from diffusers.callbacks import SDCFGCutoffCallback

    noise = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(4))
    kw = dict(latents=noise, num_inference_steps=3, output_type="latent")
    full = pipe("a red circle", guidance_scale=5.0, **kw).frames
    cut = pipe("a red circle", guidance_scale=5.0,
               callback_on_step_end=SDCFGCutoffCallback(cutoff_step_ratio=None,
                                                        cutoff_step_index=0), **kw).frames
    assert pipe.guidance_scale == 0.0  # the callback's own switch
    assert (cut - full).abs().max() > 1e-3


def test_vae_slicing_decodes_frame_by_frame_with_the_same_frames(pipe):
    calls = []
    h = pipe.vae.decoder.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
    noise = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    try:
        whole = pipe("a red circle", latents=noise, num_inference_steps=2, output_type="pt").frames
        n_whole, calls[:] = list(calls), []
        pipe.enable_vae_slicing()
        sliced = pipe("a red circle", latents=noise, num_inference_steps=2, output_type="pt").frames
    finally:
        pipe.disable_vae_slicing()
        h.remove()
    assert n_whole == [3] and calls == [1, 1, 1]
    assert sliced.shape == (1, 3, 3, 64, 64) and torch.allclose(whole, sliced, atol=1e-5)


def test_model_cpu_offload_installs_hooks_and_keeps_the_frames(tiny_sd, run_dir):
    """On a CPU-only machine diffusers' offload refuses its default device; given device="cpu"
    it installs the same accelerate hooks (execution device, one model at a time, re-armed after
    each call), which is the code path that runs on a GPU."""
    p = VideoEditPipeline.from_pretrained(str(tiny_sd)).load_tuned(str(run_dir))
    p.set_progress_bar_config(disable=True)
    noise = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(6))
    kw = dict(latents=noise, num_inference_steps=3, output_type="np")
    want = p("a blue square", **kw).frames
    p.enable_model_cpu_offload(device="cpu")
    assert all(hasattr(m, "_hf_hook") for m in (p.unet, p.vae, p.text_encoder))
    assert p._execution_device.type == "cpu"
    got = p("a blue square", **kw).frames
    again = p("a blue square", **kw).frames  # hooks re-armed by maybe_free_model_hooks
    assert np.array_equal(got, want) and np.array_equal(again, want)
    p.load_tuned(str(run_dir))  # a new unet under offload gets hooks too
    assert hasattr(p.unet, "_hf_hook") and np.array_equal(p("a blue square", **kw).frames, want)


def test_load_tuned_from_hub_id_and_bad_references(tiny_sd, run_dir, monkeypatch, tmp_path):
    import huggingface_hub

    asked = []

    def fake_download(repo_id, revision=None, local_files_only=False, **kw):  # the Hub's API
        asked.append((repo_id, revision, local_files_only))
        return str(run_dir)

    p = VideoEditPipeline.from_pretrained(str(tiny_sd))
    with pytest.raises(ModelNotFoundError, match="no network"):  # HF_HUB_OFFLINE=1 in tests
        p.load_tuned("hf://someone/not-downloaded")
    with pytest.raises(InputError, match="model repo"):
        p.load_tuned("hf://datasets/someone/data")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    p.load_tuned("hf://someone/my-run@v1")
    assert asked == [("someone/my-run", "v1", True)] and p._tuned.run.path == run_dir
    (tmp_path / "README.md").write_text("not a run")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(tmp_path))
    with pytest.raises(InputError, match="not a vcstudio run"):
        p.load_tuned("someone/other")


def test_load_tuned_refuses_a_run_of_another_base(tiny_sd_v, run_dir):
    p = VideoEditPipeline.from_pretrained(str(tiny_sd_v))
    with pytest.raises(InputError, match="different base model"):
        p.load_tuned(str(run_dir))
    with pytest.raises(InputError, match="save"):
        p.save_pretrained("anywhere")


def test_readme_library_snippet_runs_on_the_tiny_model(tiny_sd, run_dir, monkeypatch):
    """The README's VideoEditPipeline example, its base and run swapped for the tiny ones (the
    Hub download answered from the run folder) and the step counts made small."""
    import huggingface_hub

    import vcstudio

    text = README.read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S)
                if "VideoEditPipeline" in b)
    code = re.sub(r'^base = .*$', f'base = {str(tiny_sd)!r}', code, flags=re.M)
    code = code.replace("num_inference_steps=50", "num_inference_steps=4")
    code = code.replace("inversion_latents(50)", "inversion_latents(4)")
    code = code.replace("num_inference_steps=20", "num_inference_steps=3")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(run_dir))
    assert vcstudio.VideoEditPipeline is VideoEditPipeline
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    video, frames = scope["video"], scope["frames"]
    assert video.shape == (8, 64, 64, 3) and 0 <= video.min() and video.max() <= 1
    assert len(frames) == 8 and frames[0].size == (64, 64)
    # the edit from the inversion is the edit job's own frames
    want = edit_frames(load_tuned(run_dir, ModelCache()),
                       EditConfig(prompt="a Porsche on the beach", steps=4, guidance=12.5, seed=33))
    got = (video * 255).round().astype(np.uint8)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_pipeline_built_from_diffusers_parts_inflates_the_2d_unet(tiny_sd, run_dir):
    """VideoEditPipeline(vae=..., unet=UNet2DConditionModel, ...) from a diffusers SD pipeline's
    own components: the 2-D U-Net is inflated (a copy; one frame = the 2-D model) and kept as
    the base the run's delta goes onto."""
    from diffusers import StableDiffusionPipeline

    sd = StableDiffusionPipeline.from_pretrained(str(tiny_sd), safety_checker=None,
                                                 requires_safety_checker=False)
    keep = ("vae", "text_encoder", "tokenizer", "unet", "scheduler")
    p = VideoEditPipeline(**{k: v for k, v in sd.components.items() if k in keep})
    x, e, t = torch.randn(1, 4, 1, 8, 8), torch.randn(1, 77, 32), torch.tensor([300])
    with torch.no_grad():
        assert torch.allclose(p.unet(x, t, e).sample[:, :, 0], sd.unet(x[:, :, 0], t, e).sample,
                              atol=1e-5)
    p.load_tuned(str(run_dir))  # same weights -> same fingerprint as the run's base
    assert p._tuned.run.path == run_dir and p.unet.denoiser is p._tuned.model


if __name__ == "__main__":  # rewrite the reference (see the first test)
    import tempfile

    from vcstudio.models.tiny import build_tiny_sd

    torch.set_num_threads(1)  # as the tests run it (one_thread)
    with tempfile.TemporaryDirectory() as d:
        run = make_run(build_tiny_sd(Path(d) / "tiny-sd", seed=0), Path(d) / "run")
        np.savez_compressed(REFERENCE, **reference_edits(run))
    print(f"wrote {REFERENCE}")
