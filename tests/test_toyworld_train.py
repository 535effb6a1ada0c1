"""The demo model's training code: a few CPU steps per phase with a tiny config, resumable
chunks that equal one run, the losses on inputs whose answer is known, and the saved folders
loading through the user-facing diffusers / transformers paths."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vcstudio.models.loading import EMBEDDED_MODEL
from vcstudio.toyworld.models import ModelSizes, folder_mb
from vcstudio.toyworld.train import (ToyTrainConfig, Work, clip_loss, min_snr_weights,
                                     sample_timesteps, train_toyworld, unet_loss, vae_loss)

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(root: Path, **kw) -> ToyTrainConfig:
    base = dict(out=str(root / "sd"), clip_out=str(root / "clip"), work=str(root / "work"),
                seed=0, vae_steps=10, vae_batch=8, clip_steps=12, clip_batch=16, dataset=48,
                unet_steps=12, unet_batch=8, scale_samples=64, eval_n=2, eval_steps=2,
                warmup=2, vae_lr=3e-3, clip_lr=2e-3, unet_lr=2e-3, sizes=ModelSizes.tiny())
    return ToyTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    cfg = _cfg(tmp_path_factory.mktemp("toy"))
    res = train_toyworld(cfg)
    assert res.done
    return cfg, res.log


def _first_last(losses, k=3):
    vals = [v for _, v in losses]
    return float(np.mean(vals[:k])), float(np.mean(vals[-k:]))


@pytest.mark.parametrize("phase", ["clip", "unet"])
def test_loss_decreases(trained, phase):
    cfg, _ = trained
    state, _ = Work(Path(cfg.work)).load()
    first, last = _first_last(state["losses"][phase])
    assert math.isfinite(last) and last < 0.9 * first, (phase, first, last)


def test_vae_reconstruction_improves(trained):
    # batch-to-batch variance dominates 10 steps of training loss: compare one fixed batch
    from diffusers import AutoencoderKL

    from vcstudio.toyworld.data import BatchSampler
    from vcstudio.toyworld.models import build_vae

    cfg, _ = trained
    torch.manual_seed(cfg.seed)  # the trainer builds its VAE right after this seed
    before = build_vae(cfg.sizes)
    after = AutoencoderKL.from_pretrained(f"{cfg.out}/vae", dtype=torch.float32)
    x, _ = BatchSampler(123, cfg.sizes.size)(32)
    with torch.no_grad():
        err = [float(((m(x, sample_posterior=False).sample - x) ** 2).mean())
               for m in (before, after)]
    assert err[1] < 0.8 * err[0], err


def test_the_log_keeps_cpu_time_per_chunk_and_the_evaluation(trained):
    cfg, log = trained
    saved = json.loads(Path(cfg.out, "train_log.json").read_text())
    assert saved["device"] == "cpu" and saved["cpu_seconds"] > 0
    assert len(saved["chunks"]) == 1 and saved["chunks"][0]["cpu_s"] == saved["cpu_seconds"]
    assert {"colour_acc", "shape_acc", "background_acc", "clip_top1", "at_30_steps"} \
        <= set(saved["eval"])
    assert json.loads(Path(cfg.out, "eval.json").read_text())["summary"]["n"] == cfg.eval_n


def test_saved_folder_is_a_standard_sd_pipeline(trained):
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from safetensors import safe_open

    cfg, log = trained
    pipe = StableDiffusionPipeline.from_pretrained(cfg.out, dtype=torch.float32)
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert pipe.scheduler.config.prediction_type == "epsilon"
    assert pipe.safety_checker is None and pipe.vae_scale_factor == 4
    model_index = json.loads(Path(cfg.out, "model_index.json").read_text())
    assert {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= set(model_index)
    # fp16 U-Net on disk, fp32 text encoder (transformers keeps the checkpoint's dtype)
    with safe_open(f"{cfg.out}/unet/diffusion_pytorch_model.safetensors", "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16
    plain = StableDiffusionPipeline.from_pretrained(cfg.out)  # no dtype: as a user types it
    assert plain.text_encoder.dtype == plain.unet.dtype == torch.float32
    # scaling factor = 1 / std of latents, stored in the VAE config
    sf = pipe.vae.config.scaling_factor
    assert sf == pytest.approx(log["scaling_factor"])
    from vcstudio.toyworld.data import BatchSampler

    x, _ = BatchSampler(99, 32)(64)
    with torch.no_grad():
        z = pipe.vae.encode(x).latent_dist.sample() * sf
    assert z.shape == (64, 4, 8, 8)  # 4x downsampling, 4 channels
    assert 0.7 < float(z.std()) < 1.4
    img = pipe("a red circle on the beach", num_inference_steps=2, height=32, width=32,
               generator=torch.Generator().manual_seed(0), output_type="np").images
    assert img.shape == (1, 32, 32, 3) and np.isfinite(img).all()
    # the text encoder = the toy CLIP's text tower (frozen), as in SD
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(cfg.clip_out, dtype=torch.float32)
    a, b = pipe.text_encoder.state_dict(), clip.text_model.state_dict()
    assert torch.equal(a["embeddings.token_embedding.weight"],
                       b["embeddings.token_embedding.weight"])


def test_saved_clip_loads_with_processor(trained):
    from transformers import CLIPModel, CLIPProcessor

    from vcstudio.toyworld.render import render_image
    from vcstudio.toyworld.world import Scene

    cfg, _ = trained
    model = CLIPModel.from_pretrained(cfg.clip_out, dtype=torch.float32)
    proc = CLIPProcessor.from_pretrained(cfg.clip_out)
    img = render_image(Scene("star", "red", "beach"), 32)
    inp = proc(text=["a red star on the beach", "a blue circle in the snow"], images=[img],
               return_tensors="pt", padding="max_length",
               max_length=proc.tokenizer.model_max_length)
    assert inp.pixel_values.shape == (1, 3, 32, 32)
    ref = torch.as_tensor(img).permute(2, 0, 1).float() / 127.5 - 1  # [-1, 1] as trained
    assert torch.allclose(inp.pixel_values[0], ref, atol=1e-4)
    with torch.no_grad():
        assert model(**inp).logits_per_image.shape == (1, 2)


def test_two_chunks_of_k_steps_equal_one_run_of_2k(tmp_path):
    """Resume continues exactly: weights, AdamW moments, EMA, data and RNG positions. The
    chunks end inside the CLIP phase and inside the U-Net phase (after the encoded set)."""
    for k in (7, 14):  # vae 10, clip 12 (ends at 22), encode 1 batch, unet 12
        a = _cfg(tmp_path / f"a{k}")
        b = _cfg(tmp_path / f"b{k}")
        ra = train_toyworld(a, max_steps=2 * k)
        train_toyworld(b, max_steps=k)
        rb = train_toyworld(b, max_steps=k)
        assert (ra.phase, ra.step) == (rb.phase, rb.step) and not ra.done
        (_, ta), (sb, tb) = Work(Path(a.work)).load(), Work(Path(b.work)).load()
        assert set(ta) == set(tb)
        for key in ta:
            assert torch.allclose(ta[key].float(), tb[key].float(), atol=1e-6), key
        assert len(sb["chunks"]) == 2 and sb["cpu_seconds"] == pytest.approx(
            sum(c["cpu_s"] for c in sb["chunks"]), abs=0.2)
    assert ra.phase == "unet"  # the second k ended inside the U-Net phase


def test_a_finished_work_folder_is_not_restarted_without_resume(trained):
    from vcstudio.errors import InputError

    cfg, _ = trained
    with pytest.raises(InputError, match="--resume"):
        train_toyworld(cfg, resume=False)


def test_clip_loss_known_answer():
    # duplicates share the positive: perfect logits leave the target entropy, 2/3 ln 2
    caps = ["a", "a", "b"]
    same = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.float32)
    assert float(clip_loss(100 * same, caps)) == pytest.approx(2 / 3 * math.log(2), abs=1e-4)
    assert float(clip_loss(torch.zeros(3, 3), ["a", "b", "c"])) == pytest.approx(math.log(3),
                                                                                abs=1e-5)


def test_min_snr_weights_known_answer():
    # SNR = a / (1 - a): a = 0.5 -> 1 (kept); a = 10/11 -> 10 (min(10, 5) / 10 = 0.5)
    w = min_snr_weights(torch.tensor([0.5, 10 / 11, 0.01]), 5.0)
    assert w.tolist() == pytest.approx([1.0, 0.5, 1.0], abs=1e-5)
    assert min_snr_weights(torch.tensor([0.9]), 0.0).tolist() == [1.0]


def test_vae_loss_weighs_the_object():
    """The same error costs 1 + object_weight times more on the object than on the background
    (edge and KL terms off)."""
    cfg = ToyTrainConfig(vae_object_weight=4.0, vae_edge_weight=0.0, kl_weight=0.0)
    x = torch.zeros(1, 3, 16, 16)
    alpha = torch.zeros(1, 1, 16, 16)
    alpha[..., 6:10, 6:10] = 1  # the object; its 1-px rim counts too (8x8 weighted)
    on, off = x.clone(), x.clone()
    on[..., 7, 7] = 0.1
    off[..., 0, 0] = 0.1
    kl = torch.zeros(1)
    assert float(vae_loss(on, x, alpha, kl, cfg)) == pytest.approx(
        5 * float(vae_loss(off, x, alpha, kl, cfg)))


def test_unet_loss_weighs_the_objects_cells():
    """The same noise error costs 1 + unet_object_weight times more in a cell the object
    touches than in a background cell (min-SNR off); without cells it is the plain MSE."""
    cfg = ToyTrainConfig(unet_object_weight=4.0, min_snr=0.0)
    noise = torch.zeros(1, 4, 8, 8)
    cells = torch.zeros(1, 1, 8, 8)
    cells[..., 2:5, 2:5] = 1
    on, off = noise.clone(), noise.clone()
    on[:, 0, 3, 3] = 0.5
    off[:, 0, 7, 7] = 0.5
    a = torch.tensor([0.5])
    assert float(unet_loss(on, noise, a, cfg, cells)) == pytest.approx(
        5 * float(unet_loss(off, noise, a, cfg, cells)))
    assert float(unet_loss(on, noise, a, cfg)) == pytest.approx(0.25 / 256)


def test_focused_timesteps_land_in_the_focus_range():
    """Known answer: uniform timesteps put 60% in 400..999; with half of them drawn from that
    range, 0.5 + 0.5 * 0.6 = 80% are there; every timestep stays in 0..999."""
    g = torch.Generator().manual_seed(0)
    plain = sample_timesteps(20000, ToyTrainConfig(), g)
    focused = sample_timesteps(20000, ToyTrainConfig(unet_focus_share=0.5), g)
    assert float((plain >= 400).float().mean()) == pytest.approx(0.6, abs=0.015)
    assert float((focused >= 400).float().mean()) == pytest.approx(0.8, abs=0.015)
    assert int(focused.min()) >= 0 and int(focused.max()) <= 999


def test_object_mask_marks_the_cells_the_object_touches():
    """Known answer from the scenes' geometry: the cell under each object's centre is marked,
    cells two past its reach (1.2 radii, world.EXTENT) are not, and the marked area grows with
    the radius."""
    from vcstudio.toyworld.data import LatentSet
    from vcstudio.toyworld.world import EXTENT

    s = ModelSizes()
    ds = LatentSet(24, 3, s)
    cells = ds.object_mask(np.arange(24), s.vae_scale)[:, 0]
    n = s.size // s.vae_scale
    assert cells.shape == (24, n, n)
    sb = ds.scene_batch
    yy, xx = torch.meshgrid(torch.arange(n) + 0.5, torch.arange(n) + 0.5, indexing="ij")
    for k in range(24):
        cx, cy, r = float(sb.cx[k]) * n, float(sb.cy[k]) * n, float(sb.r[k]) * n
        assert cells[k, int(cy), int(cx)] == 1
        far = ((xx - cx) ** 2 + (yy - cy) ** 2).sqrt() > EXTENT * r + 2.5
        assert float(cells[k][far].max()) == 0
    area = cells.flatten(1).mean(1).numpy()
    assert np.corrcoef(area, sb.r.numpy())[0, 1] > 0.8


def test_fp16_folder_under_budget(trained):
    cfg, log = trained
    assert folder_mb(cfg.out) < 30 and log["mb"]["sd"] == pytest.approx(folder_mb(cfg.out),
                                                                       abs=0.05)


def test_default_architecture_fits_30_mb(tmp_path):
    from vcstudio.toyworld.models import (build_clip, build_tokenizer, build_unet, build_vae,
                                          text_encoder_from_clip)

    s = ModelSizes()
    tok = build_tokenizer(tmp_path, s.max_length)

    def n(m):
        return sum(p.numel() for p in m.parameters())

    clip = build_clip(s, tok)
    sd_mb = 2 * (n(build_vae(s)) + n(build_unet(s)) + n(text_encoder_from_clip(clip))) / 2**20
    assert sd_mb < 30, sd_mb
    assert 2 * n(clip) / 2**20 < 10


def test_a_finished_run_given_more_unet_steps_trains_them(trained, tmp_path):
    """--unet-steps above what a finished run trained re-enters the U-Net phase from its
    weights (a warm restart), saves the longer-trained model and evaluates it again."""
    import shutil

    from diffusers import UNet2DConditionModel

    cfg, _ = trained
    work = tmp_path / "work"
    shutil.copytree(cfg.work, work)
    more = _cfg(tmp_path, work=str(work), unet_steps=20)
    res = train_toyworld(more, resume=True)
    assert res.done
    state, _ = Work(work).load()
    steps = [k for k, _ in state["losses"]["unet"]]
    assert steps[-9:] == list(range(12, 21))[-9:] and steps[-1] == 20
    assert state["unet_restart"] == 12 and res.log["eval"] is not None
    a = UNet2DConditionModel.from_pretrained(cfg.out, subfolder="unet").state_dict()
    b = UNet2DConditionModel.from_pretrained(more.out, subfolder="unet").state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) > 1e-4
    again = train_toyworld(more, resume=True)  # nothing more to do: not trained again
    assert again.done and len(Work(work).load()[0]["losses"]["unet"]) == len(steps)


def test_the_cli_config_takes_the_lr_and_builds_the_shipped_architecture_unless_asked():
    from vcstudio.cli import build_parser
    from vcstudio.toyworld.command import train_config_from_args

    def cfg(*flags):
        return train_config_from_args(build_parser().parse_args(["toyworld", "train", *flags]))

    assert cfg("--unet-lr", "5e-5").unet_lr == 5e-5 and cfg().unet_lr == 5e-4
    shipped = json.loads((EMBEDDED_MODEL / "unet" / "config.json").read_text())
    assert shipped.get("addition_embed_type") is None and not cfg().sizes.unet_text_in_time
    assert cfg("--unet-text-in-time").sizes.unet_text_in_time
    tiny = cfg("--tiny", "--unet-text-in-time").sizes
    assert tiny.unet_text_in_time and tiny.unet_channels == ModelSizes.tiny().unet_channels


def test_a_folder_written_before_the_text_in_time_knob_resumes(trained, tmp_path):
    """Work folders from before ``unet_text_in_time`` existed (the shipped model's run among
    them) do not record it; they were built without it and resume as such."""
    import shutil

    cfg, _ = trained
    work = tmp_path / "work"
    shutil.copytree(cfg.work, work)
    meta = json.loads((work / "state.json").read_text())
    del meta["config"]["sizes"]["unet_text_in_time"]
    (work / "state.json").write_text(json.dumps(meta))
    assert train_toyworld(_cfg(tmp_path, work=str(work), unet_steps=14), resume=True).done
    sizes = json.loads((work / "state.json").read_text())["config"]["sizes"]
    assert sizes["unet_text_in_time"] is False


def test_unet_lr_sets_the_added_steps_peak_and_the_chunk_records_it(trained, tmp_path):
    """--unet-lr: more steps on a finished run warm-restart to that peak, so a low one moves
    the raw U-Net weights far less than the default does (a gentle continuation)."""
    import shutil

    from vcstudio.models.delta import load_tensors

    cfg, _ = trained
    before, _ = load_tensors(Path(cfg.work) / "state.safetensors")
    moved = {}
    for lr in (2e-3, 2e-6):
        work = tmp_path / f"work-{lr}"
        shutil.copytree(cfg.work, work)
        more = _cfg(tmp_path / f"o-{lr}", work=str(work), unet_steps=18, unet_lr=lr)
        assert train_toyworld(more, resume=True).done
        state, _ = Work(work).load()
        assert state["chunks"][-1]["unet_lr"] == lr
        after, _ = load_tensors(work / "state.safetensors")
        moved[lr] = max(float((after[k] - before[k]).abs().max())
                        for k in before if k.startswith("unet/"))
    assert moved[2e-3] > 1e-4 and moved[2e-6] < moved[2e-3] / 100


def test_restart_unet_trains_a_new_unet_on_the_kept_vae_clip_and_encoded_set(trained, tmp_path):
    """--restart-unet: a U-Net of other sizes from step 0 on a finished run's VAE, CLIP and
    encoded set. Those are not trained again (the saved VAE is the same tensor for tensor),
    the chunk that trained only the old U-Net leaves the CPU sum for ``dropped_chunks``, and
    other VAE sizes are still refused."""
    import dataclasses

    from diffusers import AutoencoderKL, UNet2DConditionModel

    from vcstudio.errors import InputError

    cfg, _ = trained
    old = _cfg(tmp_path / "old")
    train_toyworld(old, max_steps=25)  # vae 10, clip 12, encode 1, then 2 U-Net steps
    assert train_toyworld(old, resume=True).done  # this chunk began inside the U-Net phase
    first = Work(Path(old.work)).load()[0]
    assert [c["start"]["phase"] for c in first["chunks"]] == ["vae", "unet"]
    sizes = dataclasses.replace(cfg.sizes, unet_channels=(8, 16, 16), unet_text_in_time=True)
    new = _cfg(tmp_path / "new", work=old.work, unet_steps=6, sizes=sizes)
    with pytest.raises(InputError, match="other model sizes"):
        train_toyworld(new, resume=True)  # other U-Net sizes need the explicit restart
    res = train_toyworld(new, restart_unet=True, max_steps=4)
    assert not res.done and (res.phase, res.step) == ("unet", 4)
    res = train_toyworld(new, resume=True)
    assert res.done
    state, _ = Work(Path(old.work)).load()
    assert [k for k, _ in state["losses"]["unet"]] == list(range(1, 7))
    assert [(c["start"]["phase"], c["start"]["step"]) for c in state["chunks"]] == [
        ("vae", 0), ("unet", 0), ("unet", 4)]
    assert [c["start"] for c in res.log["dropped_chunks"]] == [{"phase": "unet", "step": 2}]
    assert state["chunks"][0]["cpu_s"] == first["chunks"][0]["cpu_s"]
    assert state["cpu_seconds"] == pytest.approx(sum(c["cpu_s"] for c in state["chunks"]),
                                                 abs=0.2)
    old_vae = AutoencoderKL.from_pretrained(f"{old.out}/vae").state_dict()
    new_vae = AutoencoderKL.from_pretrained(f"{new.out}/vae").state_dict()
    assert all(torch.equal(old_vae[k], new_vae[k]) for k in old_vae)
    unet = UNet2DConditionModel.from_pretrained(new.out, subfolder="unet")
    assert tuple(unet.config.block_out_channels) == (8, 16, 16)
    assert unet.config.addition_embed_type == "text" and res.log["eval"] is not None
    with pytest.raises(InputError, match="other model sizes"):
        train_toyworld(_cfg(tmp_path / "x", work=old.work,
                            sizes=dataclasses.replace(cfg.sizes, vae_channels=(8, 16, 32))),
                       restart_unet=True)


@pytest.mark.parametrize("text_in_time", [True, False])
def test_the_top_level_hears_the_caption_only_through_the_time_embedding(text_in_time):
    """The 16x16 blocks hold no cross-attention: with ``unet_text_in_time`` the pooled caption
    reaches them through the timestep embedding (AdaGN); without it their output does not
    depend on the caption at all."""
    import dataclasses

    from vcstudio.toyworld.models import build_unet

    torch.manual_seed(0)
    s = dataclasses.replace(ModelSizes.tiny(), unet_text_in_time=text_in_time)
    unet = build_unet(s).eval()
    got = []
    unet.down_blocks[0].register_forward_hook(lambda m, i, o: got.append(o[0]))
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        for seed in (1, 2):
            emb = torch.randn(2, s.max_length, s.text_width,
                              generator=torch.Generator().manual_seed(seed))
            unet(x, 500, encoder_hidden_states=emb)
    diff = float((got[0] - got[1]).abs().max())
    assert (diff > 1e-3) if text_in_time else (diff == 0.0), diff


def test_text_lr_trains_the_text_encoder_with_the_unet_and_resumes_exactly(tmp_path):
    """--text-lr: the text encoder trains with the U-Net (GLIDE's arrangement) and is saved in
    the pipeline; the toy CLIP keeps its own tower (the metrics' encoder stays independent).
    Two chunks inside the U-Net phase equal one run: encoder, its moments and its EMA too."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPModel

    runs = {}
    for name, chunks in (("one", [None]), ("two", [26, None])):
        cfg = _cfg(tmp_path / name, text_lr=2e-3)
        for k in chunks:  # vae 10, clip 12, encode 1: the first chunk stops at U-Net step 3
            res = train_toyworld(cfg, max_steps=k, resume=True)
        assert res.done
        runs[name] = (cfg, Work(Path(cfg.work)).load()[1])
    (cfg, ta), (_, tb) = runs["one"], runs["two"]
    assert any(k.startswith("ema_text/") for k in ta) and set(ta) == set(tb)
    for key in ta:
        assert torch.allclose(ta[key].float(), tb[key].float(), atol=1e-6), key
    pipe = StableDiffusionPipeline.from_pretrained(cfg.out, dtype=torch.float32)
    clip = CLIPModel.from_pretrained(cfg.clip_out, dtype=torch.float32)
    a, b = pipe.text_encoder.state_dict(), clip.text_model.state_dict()
    moved = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert moved > 1e-3, moved

    def gap(prefix):  # the pipeline's encoder vs the checkpoint's EMA or raw weights
        return max(float((a[k] - ta[prefix + k].half().float()).abs().max()) for k in a)

    assert gap("ema_text/") < 1e-6 < gap("text/"), (gap("ema_text/"), gap("text/"))
    frozen = Work(Path(_cfg(tmp_path / "f").work))
    assert not frozen.exists()
    train_toyworld(_cfg(tmp_path / "f"), max_steps=26)  # frozen: nothing of the text saved
    assert not any(k.startswith(("text/", "ema_text/")) for k in frozen.load()[1])


def test_init_from_trains_a_new_unet_on_a_finished_models_vae_and_clip(tmp_path):
    """--init-from MODEL CLIP: a new work folder from a finished model (its work folder gone):
    the VAE and CLIP are not trained again (saved tensor for tensor as they were), the chunks
    that trained them count in the CPU sum, the U-Net-only chunks are listed as dropped, and a
    folder that already holds a run is refused."""
    from diffusers import AutoencoderKL
    from transformers import CLIPModel

    from vcstudio.errors import InputError

    old = _cfg(tmp_path / "old")
    train_toyworld(old, max_steps=25)  # vae 10, clip 12, encode 1, then 2 U-Net steps
    assert train_toyworld(old, resume=True).done  # a chunk that trained only the U-Net
    old_log = json.loads(Path(old.out, "train_log.json").read_text())
    new = _cfg(tmp_path / "new", unet_steps=5, text_lr=1e-3)
    res = train_toyworld(new, init_from=(old.out, old.clip_out))
    assert res.done and res.log["eval"] is not None
    assert res.log["init_from"] == {"model": old.out, "clip": old.clip_out}
    assert res.log["chunks"][0] == old_log["chunks"][0]
    assert [c["start"] for c in res.log["dropped_chunks"]] == [{"phase": "unet", "step": 2}]
    assert res.log["cpu_seconds"] == pytest.approx(
        sum(c["cpu_s"] for c in res.log["chunks"]), abs=0.2)
    assert res.log["cpu_seconds"] > old_log["chunks"][0]["cpu_s"]
    state = Work(Path(new.work)).load()[0]
    assert [k for k, _ in state["losses"]["unet"]] == [1, 2, 3, 4, 5]
    assert not state["losses"]["vae"] and not state["losses"]["clip"]  # not trained again
    a = AutoencoderKL.from_pretrained(f"{old.out}/vae").state_dict()
    b = AutoencoderKL.from_pretrained(f"{new.out}/vae").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    a = CLIPModel.from_pretrained(old.clip_out).state_dict()
    b = CLIPModel.from_pretrained(new.clip_out).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(InputError, match="holds a run already"):
        train_toyworld(new, init_from=(old.out, old.clip_out))
    with pytest.raises(InputError, match="train_log.json"):
        train_toyworld(_cfg(tmp_path / "x"), init_from=(str(tmp_path), old.clip_out))


def test_two_workers_split_each_batch_and_equal_one_process(tmp_path):
    """--workers 2 (parallel.py): each step's batch is split over two single-thread processes
    and their gradients averaged, so the run is the one-process run up to float summation
    order, resumable across chunks (the first stops inside the U-Net phase; CLIP and the
    encoded set run on rank 0 alone in between). Rank 0's log counts the other process's CPU
    time, which rank 0 itself never spends."""
    from vcstudio.toyworld.train import _cpu_seconds

    kw = dict(text_lr=2e-3, unet_object_weight=2.0)  # every trainable and weighting path
    one = _cfg(tmp_path / "one", **kw)
    assert not train_toyworld(one, max_steps=34).done  # vae 10, clip 12, encode 1, unet 11
    two = _cfg(tmp_path / "two", workers=2, **kw)
    cpu0 = _cpu_seconds()
    for k in (26, 8):
        res = train_toyworld(two, max_steps=k, resume=True)
    own = _cpu_seconds() - cpu0
    assert (res.phase, res.step) == ("unet", 11)
    (sa, ta), (sb, tb) = Work(Path(one.work)).load(), Work(Path(two.work)).load()
    assert set(ta) == set(tb)
    # the logged loss of every step (the ranks' average) follows the one-process run's: a rank
    # computing the wrong rows, or gradients not averaged, parts them at the first step
    for phase in ("vae", "clip", "unet"):
        a, b = np.array(sa["losses"][phase]), np.array(sb["losses"][phase])
        assert a.shape == b.shape and len(a) > 8, phase
        assert np.allclose(a, b, rtol=2e-4, atol=0), (phase, np.abs(a - b).max())
    # the weights agree up to AdamW's sign of a near-zero gradient (a few lr at most)
    worst = max(float((ta[k].float() - tb[k].float()).abs().max()) for k in ta
                if k.startswith(("vae/", "clip/", "unet/", "ema/", "text/", "ema_text/")))
    assert worst < 0.02, worst
    assert [c["workers"] for c in sb["chunks"]] == [2, 2]
    assert sb["cpu_seconds"] > own + 1.0, (sb["cpu_seconds"], own)  # the helper's imports alone


def test_a_worker_that_never_starts_is_an_error_not_a_hang(tmp_path, monkeypatch):
    """Rank 0 waits a bounded time for the others (a script without the __main__ guard kills
    its spawned workers at import), then says what to do."""
    from datetime import timedelta

    from vcstudio.errors import InputError
    from vcstudio.toyworld import parallel, train

    monkeypatch.setattr(parallel, "_MEET", timedelta(seconds=2))
    monkeypatch.setattr(train, "start_helpers", lambda world, cfg, args: (parallel.free_port(),
                                                                          []))
    with pytest.raises(InputError, match="did not start"):
        train_toyworld(_cfg(tmp_path, workers=2))
