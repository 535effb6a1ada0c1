"""Coming from Tune-A-Video (issue 16): its YAML configs run end to end, and its tuned output
folders open for edit, long video, Compare and the pipeline, and convert to vcstudio runs.

Everything is built here with diffusers' real classes and tiny sizes; the Tune-A-Video folder is
written from its published layout and parameter naming (model_index.json naming
TuneAVideoPipeline, unet/config.json naming UNet3DConditionModel, ``...transformer_blocks.0.
attn_temp.to_q.weight`` / ``norm_temp``, inv_latents/ddim_latent-<step>.pt); no code of
Tune-A-Video is used."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vcstudio.cli import main
from vcstudio.io import write_mp4

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["a blue square moving right", "a green circle / on snow"]


def tav_yaml(tmp_path: Path, **over) -> Path:
    """A config in Tune-A-Video's format (its configs/*.yaml keys), tiny sizes."""
    d = {
        "pretrained_model_path": "./checkpoints/stable-diffusion-v1-4",
        "output_dir": "./outputs/circle",
        "train_data": {"video_path": "data/circle.mp4", "prompt": "a red circle moving right",
                       "n_sample_frames": 4, "width": 64, "height": 64, "sample_start_idx": 0,
                       "sample_frame_rate": 2},
        "validation_data": {"prompts": PROMPTS, "video_length": 4, "width": 64, "height": 64,
                            "num_inference_steps": 3, "guidance_scale": 7.5,
                            "use_inv_latent": True, "num_inv_steps": 3},
        "learning_rate": 1e-3, "train_batch_size": 1, "max_train_steps": 3,
        "checkpointing_steps": 1000, "validation_steps": 2,
        "trainable_modules": ["attn1.to_q", "attn2.to_q", "attn_temp"], "seed": 33,
        "mixed_precision": "fp16", "use_8bit_adam": False, "gradient_checkpointing": True,
        "enable_xformers_memory_efficient_attention": True,
    }
    d.update(over)
    import yaml

    (tmp_path / "configs").mkdir(exist_ok=True)
    p = tmp_path / "configs" / "circle.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


@pytest.fixture
def tav_repo(tmp_path, clip8, monkeypatch):
    """A Tune-A-Video checkout's layout: data/circle.mp4, configs/circle.yaml; cwd = its root."""
    (tmp_path / "data").mkdir()
    write_mp4(clip8, tmp_path / "data" / "circle.mp4")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_tuneavideo_config_runs_end_to_end_with_samples_in_its_layout(tiny_sd, tav_repo,
                                                                       capsys):
    cfg = tav_yaml(tav_repo)
    rc = main(["tune", "--config", str(cfg), "--model", str(tiny_sd)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    run = Path(out.strip().splitlines()[-1])
    assert run.resolve() == (tav_repo / "outputs" / "circle").resolve()  # output_dir
    assert "note: enable_xformers_memory_efficient_attention" in err and "SDPA" in err
    assert "use_8bit_adam" not in err  # False is what vcstudio does anyway: nothing to say
    for step in (2, 3):  # validation_steps 2, and the end (3 steps)
        for p in PROMPTS:
            name = p.replace("/", "_") + ".gif"
            gif = run / "samples" / f"sample-{step}" / name
            assert gif.is_file(), sorted(str(x) for x in run.rglob("*.gif"))
    meta = json.loads((run / "meta.json").read_text())
    listed = {(e["step"], e["prompt"]) for e in meta["samples"]}
    assert listed == {(s, p) for s in (2, 3) for p in PROMPTS}
    from vcstudio.runs.folder import RunFolder

    rc_cfg = RunFolder(run).config()
    assert rc_cfg.validation.prompts == tuple(PROMPTS) and rc_cfg.validation.every == 2
    assert rc_cfg.trainable == ("attn1.to_q", "attn2.to_q", "temporal.attn")
    assert rc_cfg.groupnorm == "clip" and rc_cfg.frame_positions is False
    # the samples at step 2 and 3 differ: step 2 was sampled with the weights of step 2
    from vcstudio.io import read_video

    a = read_video(run / "samples" / "sample-2" / (PROMPTS[0] + ".gif"))
    b = read_video(run / "samples" / "sample-3" / (PROMPTS[0] + ".gif"))
    assert a.shape == b.shape == (4, 64, 64, 3) and (a != b).any()


def test_tuneavideo_config_bad_inputs_are_one_line_errors(tiny_sd, tav_repo, capsys):
    cfg = tav_yaml(tav_repo)
    rc = main(["tune", "--config", str(cfg)])  # the base it names is not here, offline
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error:")
    assert "CompVis/stable-diffusion-v1-4" in err[-1] and "--model" in err[-1]
    assert not (tav_repo / "outputs" / "circle" / "delta.safetensors").exists()  # no demo run
    rc = main(["tune", "--config", str(tav_yaml(tav_repo, train_data={
        "video_path": "data/none.mp4", "prompt": "x"})), "--model", str(tiny_sd)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "data/none.mp4" in err and "--video" in err
    rc = main(["tune", "--config", str(tav_yaml(tav_repo,
                                                pretrained_model_path="./ckpt/mine"))])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "./ckpt/mine" in err and "--model" in err


# ----------------------------------------------------------------- Tune-A-Video output folders

class NotATensor:  # a pickled object a weights-only load must refuse
    def __init__(self):
        self.payload = "anything"


def _tav_state(unet2d, temporal_scale: float = 0.05, seed: int = 0) -> dict:
    """Tune-A-Video's UNet3D state dict, written from its naming: the 2-D names, plus
    ``attn_temp`` (to_q, to_k, to_v without bias, to_out.0 with bias) and ``norm_temp`` in every
    transformer block."""
    g = torch.Generator().manual_seed(seed)
    sd = {k: v.clone() for k, v in unet2d.state_dict().items()}
    for key in list(sd):
        if key.endswith(".transformer_blocks.0.norm1.weight"):
            blk = key[: -len("norm1.weight")]
            dim = sd[key].shape[0]
            for p in ("to_q", "to_k", "to_v", "to_out.0"):
                sd[f"{blk}attn_temp.{p}.weight"] = temporal_scale * torch.randn(dim, dim,
                                                                                generator=g)
            sd[f"{blk}attn_temp.to_out.0.bias"] = temporal_scale * torch.randn(dim, generator=g)
            sd[f"{blk}norm_temp.weight"] = 1 + 0.1 * torch.randn(dim, generator=g)
            sd[f"{blk}norm_temp.bias"] = 0.1 * torch.randn(dim, generator=g)
        if key.endswith(("attn1.to_q.weight", "attn2.to_q.weight")):  # "tuned" queries
            sd[key] = sd[key] + 0.05 * torch.randn(sd[key].shape, generator=g)
    return sd


def write_tav_folder(tiny_sd: Path, out: Path, video: str = "", state=None,
                     temporal_scale: float = 0.05, safetensors: bool = False) -> Path:
    """A Tune-A-Video output_dir: the base's components, unet/ with a UNet3DConditionModel
    config and its state dict (.bin via torch.save, as diffusers 0.11 saved it), model_index.json
    naming TuneAVideoPipeline, its config.yaml and inv_latents/ddim_latent-<step>.pt."""
    import shutil

    import yaml
    from diffusers import UNet2DConditionModel

    out.mkdir(parents=True)
    for sub in ("vae", "text_encoder", "tokenizer", "scheduler"):
        shutil.copytree(tiny_sd / sub, out / sub)
    unet2d = UNet2DConditionModel.from_pretrained(tiny_sd / "unet")
    cfg = dict(unet2d.config)
    cfg.update(_class_name="UNet3DConditionModel", _diffusers_version="0.11.1",
               down_block_types=[b.replace("2D", "3D") for b in cfg["down_block_types"]],
               up_block_types=[b.replace("2D", "3D") for b in cfg["up_block_types"]],
               mid_block_type="UNetMidBlock3DCrossAttn")
    (out / "unet").mkdir()
    (out / "unet" / "config.json").write_text(json.dumps(cfg, default=str))
    sd = state if state is not None else _tav_state(unet2d, temporal_scale)
    if safetensors:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()},
                  str(out / "unet" / "diffusion_pytorch_model.safetensors"))
    else:
        torch.save(sd, out / "unet" / "diffusion_pytorch_model.bin")
    index = json.loads((tiny_sd / "model_index.json").read_text())
    index.update(_class_name="TuneAVideoPipeline", unet=["tuneavideo.models.unet",
                                                         "UNet3DConditionModel"])
    (out / "model_index.json").write_text(json.dumps(index))
    (out / "config.yaml").write_text(yaml.safe_dump({
        "pretrained_model_path": "./checkpoints/stable-diffusion-v1-4", "output_dir": str(out),
        "train_data": {"video_path": video, "prompt": "a red circle moving right",
                       "n_sample_frames": 4, "width": 64, "height": 64,
                       "sample_start_idx": 0, "sample_frame_rate": 2},
        "validation_data": {"prompts": PROMPTS, "video_length": 4, "width": 64, "height": 64,
                            "num_inference_steps": 3, "guidance_scale": 7.5,
                            "use_inv_latent": True, "num_inv_steps": 3},
        "trainable_modules": ["attn1.to_q", "attn2.to_q", "attn_temp"], "max_train_steps": 300,
        "learning_rate": 3e-5, "mixed_precision": "fp16", "seed": 33,
        "enable_xformers_memory_efficient_attention": True}))
    (out / "inv_latents").mkdir()
    torch.save(torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(9)),
               out / "inv_latents" / "ddim_latent-300.pt")
    return out


@pytest.fixture(scope="module")
def tav_dir(tiny_sd, tmp_path_factory, clip8_module):
    root = tmp_path_factory.mktemp("tav")
    video = write_mp4(clip8_module, root / "circle.mp4")
    return write_tav_folder(tiny_sd, root / "outputs" / "circle", video=str(video))


@pytest.fixture(scope="module")
def clip8_module():
    from vcstudio.io.synthetic import moving_shape_clip

    return moving_shape_clip(8, 64, dx=3.0)


def _module_by_tav_name(unet, key: str):
    """Walk vcstudio's inflated U-Net by a Tune-A-Video parameter name, part by part: inside
    one of our wrapped transformer blocks attn_temp / norm_temp are its temporal attention and
    LayerNorm, every other part is the wrapped diffusers block's."""
    from vcstudio.models.temporal import TemporalBlock

    parts, mod = key.split("."), unet
    for i, part in enumerate(parts[:-1]):
        if isinstance(mod, TemporalBlock):
            mod = {"attn_temp": mod.temporal.attn, "norm_temp": mod.temporal.norm}.get(
                part) or getattr(mod.block, part)
        else:
            mod = getattr(mod, part) if not part.isdigit() else mod[int(part)]
    return getattr(mod, parts[-1])


def test_tav_folder_opens_in_the_pipeline_tensor_by_tensor(tav_dir):
    from vcstudio.pipelines.edit.video_pipeline import VideoEditPipeline

    pipe = VideoEditPipeline.from_pretrained(str(tav_dir))
    pipe.set_progress_bar_config(disable=True)
    den = pipe.unet.denoiser
    sd = torch.load(tav_dir / "unet" / "diffusion_pytorch_model.bin", weights_only=True)
    for key, value in sd.items():
        got = _module_by_tav_name(den.unet, key)
        assert torch.equal(got.detach().float(), value.float()), key
    assert sum(".temporal." in n for n, _ in den.named_parameters()) == \
        sum("_temp." in k for k in sd)
    from vcstudio.models.groupnorm import ClipGroupNorm

    assert isinstance(den.unet.conv_norm_out, ClipGroupNorm)  # Tune-A-Video's statistics
    assert not any(m.positions for m in den.modules() if hasattr(m, "positions"))
    x, e = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 77, 32)
    with torch.no_grad():
        y = pipe.unet(x, 10, e).sample
    assert y.shape == x.shape
    # the run's inversion is Tune-A-Video's saved latents
    inv = pipe.inversion_latents(3)
    assert torch.equal(inv.cpu(), torch.load(tav_dir / "inv_latents" / "ddim_latent-300.pt",
                                             weights_only=True))
    video = pipe("a blue square", latents=inv, num_inference_steps=3, output_type="np").frames[0]
    assert video.shape == (4, 64, 64, 3)


def test_zero_temporal_one_frame_equals_the_2d_unet(tiny_sd, tmp_path):
    from diffusers import UNet2DConditionModel

    from vcstudio.pipelines.edit.video_pipeline import VideoEditPipeline

    u2 = UNet2DConditionModel.from_pretrained(tiny_sd / "unet").eval()
    sd = _tav_state(u2, temporal_scale=0.0)
    for k in list(sd):  # the 2-D reference holds the same tuned queries
        if "_temp." not in k:
            u2.state_dict()[k].copy_(sd[k])
    folder = write_tav_folder(tiny_sd, tmp_path / "zero", state=sd, safetensors=True)
    pipe = VideoEditPipeline.from_pretrained(str(folder))
    x, e, t = torch.randn(2, 4, 1, 8, 8), torch.randn(2, 77, 32), torch.tensor([20, 900])
    with torch.no_grad():
        got = pipe.unet(x, t, e).sample[:, :, 0]
        want = u2(x[:, :, 0], t, e).sample
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_edit_and_long_open_a_tav_folder(tav_dir, tmp_path, capsys):
    rc = main(["edit", "--run", str(tav_dir), "--prompt", "a blue square", "--steps", "3",
               "--out", str(tmp_path / "edits")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    from vcstudio.io import read_video

    assert read_video(out.strip().splitlines()[-1]).shape == (4, 64, 64, 3)
    long_out = tmp_path / "long.mp4"
    rc = main(["long", "--run", str(tav_dir), "--prompts", "a red circle", "a blue square",
               "--frames", "6", "--window", "4", "--stride", "2", "--steps", "2",
               "--out", str(long_out)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert read_video(long_out).shape == (6, 64, 64, 3)


def test_convert_tav_writes_a_run_with_the_trainables_and_temporal_layers(tav_dir, tiny_sd,
                                                                          tiny_sd_v, tmp_path,
                                                                          capsys):
    from vcstudio.models.delta import load_tensors
    from vcstudio.models.loading import load_base
    from vcstudio.models.cache import ModelCache
    from vcstudio.runs.folder import RunFolder

    run = tmp_path / "run"
    rc = main(["convert-tav", str(tav_dir), "--out", str(run)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert Path(out.strip().splitlines()[-1]) == run
    rf = RunFolder(run)
    tensors, meta = load_tensors(rf.delta_path)
    sd = torch.load(tav_dir / "unet" / "diffusion_pytorch_model.bin", weights_only=True)
    temporal = [k for k in sd if "_temp." in k]
    queries = [k for k in sd if k.endswith(("attn1.to_q.weight", "attn2.to_q.weight"))]
    assert len(tensors) == len(temporal) + len(queries)  # trainables + what 2-D lacks
    assert any(".temporal.norm." in k for k in tensors)  # norm_temp: not in the 2-D U-Net
    base = load_base(str(tav_dir), cache=ModelCache())
    assert meta["base_fingerprint"] == base.fingerprint == rf.meta()["base_fingerprint"]
    cfg = rf.config()
    assert cfg.groupnorm == "clip" and cfg.frame_positions is False
    assert cfg.trainable == ("attn1.to_q", "attn2.to_q", "temporal.attn")
    assert list(run.glob("inversion-3*.safetensors")) and (run / "clip-latents.safetensors"
                                                           ).is_file()
    assert rf.source_path.is_file() and rf.meta()["clip_hash"]
    # onto the base it was tuned from: the 2-D tensors outside the trainables match
    rc = main(["convert-tav", str(tav_dir), "--out", str(tmp_path / "run2"), "--model",
               str(tiny_sd)])
    assert rc == 0, capsys.readouterr().err
    assert RunFolder(tmp_path / "run2").meta()["base_model"] == str(tiny_sd)
    # another base: a one-line error that says what to do
    rc = main(["convert-tav", str(tav_dir), "--out", str(tmp_path / "run3"), "--model",
               str(tiny_sd_v)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "tuned from another base" in err and "--model" in err
    # the converted run edits like any run
    rc = main(["edit", "--run", str(run), "--prompt", "a blue square", "--steps", "3"])
    assert rc == 0, capsys.readouterr().err


def test_bad_tav_folders_are_one_line_errors(tiny_sd, tmp_path, capsys):
    from diffusers import UNet2DConditionModel

    u2 = UNet2DConditionModel.from_pretrained(tiny_sd / "unet")
    sd = _tav_state(u2)
    sd["down_blocks.0.attentions.0.transformer_blocks.0.attn_extra.weight"] = torch.zeros(2)
    folder = write_tav_folder(tiny_sd, tmp_path / "extra", state=sd)
    rc = main(["edit", "--run", str(folder), "--prompt", "x", "--steps", "2"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "attn_extra.weight" in err

    sd = _tav_state(u2)
    sd.pop("up_blocks.1.attentions.0.transformer_blocks.0.norm_temp.bias")
    folder = write_tav_folder(tiny_sd, tmp_path / "lacking", state=sd)
    rc = main(["convert-tav", str(folder), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "lacks up_blocks.1.attentions.0.transformer_blocks.0.norm_temp.bias" in err

    folder = write_tav_folder(tiny_sd, tmp_path / "pickle", state=_tav_state(u2))
    torch.save({"conv_in.weight": NotATensor()}, folder / "unet" / "diffusion_pytorch_model.bin")
    rc = main(["convert-tav", str(folder), "--out", str(tmp_path / "r2")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "pickled objects other than tensors" in err and "\n" not in err

    folder = write_tav_folder(tiny_sd, tmp_path / "badpt", state=_tav_state(u2))
    torch.save(NotATensor(), folder / "inv_latents" / "ddim_latent-300.pt")
    rc = main(["convert-tav", str(folder), "--out", str(tmp_path / "r3")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "ddim_latent-300.pt" in err and "pickled objects" in err

    (tmp_path / "neither").mkdir()
    rc = main(["edit", "--run", str(tmp_path / "neither"), "--prompt", "x"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "not a vcstudio run folder" in err and "Tune-A-Video" in err


def test_compare_scores_a_tav_folder_beside_a_vcstudio_run(tav_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["convert-tav", str(tav_dir), "--out", str(run)]) == 0
    capsys.readouterr()
    rc = main(["compare", "--runs", f"{tav_dir},{run}", "--edit-prompt", "a blue square",
               "--edit-steps", "2", "--metrics", "flicker", "--out", str(tmp_path / "cmp")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert f"run {tav_dir.name}" in out and "run run" in out  # both rows in the table
    assert (tmp_path / "cmp" / "compare.csv").is_file()


def test_edit_tab_opens_a_tav_folder_and_edits_it(tav_dir, tmp_path):
    import gradio as gr

    from vcstudio.jobs import studio as make_studio
    from vcstudio.ui.edit_tab import edit_handler, open_tav_handler

    st = make_studio(tmp_path / "app", public=False)
    try:
        sid, status, run = open_tav_handler(st, None, str(tav_dir))
        assert "Opened" in status and Path(run).is_relative_to(st.session(sid).folder)
        last = None
        for last in edit_handler(st, sid, run, "a blue square", "", 2, 5.0, 1, True):
            pass
        assert last[2] == "Done." and Path(last[0]).is_file()
    finally:
        st.close()
    pub = make_studio(tmp_path / "space", public=True)
    try:
        with pytest.raises(gr.Error, match="public studio"):
            open_tav_handler(pub, None, str(tav_dir))
    finally:
        pub.close()


def test_tav_config_notes_and_wrong_kinds(tmp_path):
    import yaml

    from vcstudio.config import read_yaml
    from vcstudio.runs.tav_import import read_tuneavideo
    from vcstudio.errors import InputError

    p = tav_yaml(tmp_path, adam_epsilon="1e-08", resume_from_checkpoint=None,
                 lr_scheduler="cosine", consistency_weight=0.1)
    imp = read_tuneavideo(read_yaml(p), p)
    text = "\n".join(imp.notes)
    assert "adam_epsilon" not in text and "resume_from_checkpoint" not in text  # defaults
    assert "lr_scheduler: 'cosine' is not used" in text
    assert "consistency_weight is not a Tune-A-Video key" in text  # a peer's extra key
    assert imp.hub_id == "CompVis/stable-diffusion-v1-4" and imp.cfg.model == imp.hub_id
    for name, hub in (("stable-diffusion-v1-5", "stable-diffusion-v1-5/stable-diffusion-v1-5"),
                      ("stable-diffusion-2-1", "stabilityai/stable-diffusion-2-1")):
        q = tav_yaml(tmp_path, pretrained_model_path=f"./checkpoints/{name}")
        assert read_tuneavideo(read_yaml(q), q).cfg.model == hub
    bad = tav_yaml(tmp_path, learning_rate="fast")
    with pytest.raises(InputError, match="wrong kind"):
        read_tuneavideo(yaml.safe_load(bad.read_text()), bad)


def test_a_tav_folder_converted_in_fp16_edits_in_fp32(tiny_sd, tmp_path, clip8_module, capsys):
    """Tune-A-Video configs say mixed_precision fp16: converting on a GPU loads the folder's
    base in fp16, editing on a CPU in fp32. The run still edits (the base is the same weights),
    with its trained queries and temporal layers."""
    from diffusers import UNet2DConditionModel

    from vcstudio.models.cache import ModelCache
    from vcstudio.models.loading import load_base
    from vcstudio.runs.convert import convert_tav

    unet2d = UNet2DConditionModel.from_pretrained(tiny_sd / "unet")
    state = _tav_state(unet2d, temporal_scale=0.2)
    g = torch.Generator().manual_seed(3)
    for k in state:
        if k.endswith(("attn1.to_q.weight", "attn2.to_q.weight")):  # trained queries
            state[k] = state[k] + 0.05 * torch.randn(state[k].shape, generator=g)
    video = write_mp4(clip8_module, tmp_path / "circle.mp4")
    folder = write_tav_folder(tiny_sd, tmp_path / "tav", video=str(video), state=state)
    base16 = load_base(str(folder), dtype=torch.float16, cache=ModelCache())
    run = convert_tav(folder, tmp_path / "run", base=base16)
    rc = main(["edit", "--run", str(run), "--prompt", "a blue square", "--steps", "3"])
    assert rc == 0, capsys.readouterr().err


def test_opening_a_tav_folder_reads_files_only_and_a_job_converts_it(tav_dir, monkeypatch):
    """open_run (estimates, argument parsing) never loads a model: an unconverted Tune-A-Video
    folder is a one-line error; prepare_run (a job's start) converts it, loading its base once,
    and open_run then finds the converted run without loading anything."""
    from vcstudio.errors import InputError
    from vcstudio.models import loading
    from vcstudio.runs.open import open_run
    from vcstudio.runs.convert import prepare_run

    loads, real = [], loading.load_base
    monkeypatch.setattr(loading, "load_base", lambda *a, **k: loads.append(a) or real(*a, **k))
    with pytest.raises(InputError, match="not converted yet") as e:
        open_run(tav_dir)
    assert "\n" not in str(e.value) and loads == []
    rf = prepare_run(tav_dir, device="cpu")
    assert len(loads) == 1 and rf.delta_path.is_file()
    assert open_run(tav_dir).path == rf.path and len(loads) == 1


def test_estimates_and_argument_parsing_on_a_tav_folder_load_no_model(tiny_sd, tmp_path,
                                                                      clip8_module):
    """The edit and long-video estimates, ``edit``'s guidance default, ``long``'s run check and
    ``open_run`` read a Tune-A-Video folder without loading a model (every diffusers
    from_pretrained and our load_base raise here): before it is converted they say so in one
    line, after prepare_run (a job's start, with the real loader) they read the converted run."""
    import argparse

    from diffusers import DiffusionPipeline, ModelMixin

    from vcstudio.cli.edit import _guidance
    from vcstudio.config import EditConfig, LongConfig
    from vcstudio.errors import InputError
    from vcstudio.jobs import edit as edit_job, long as long_job
    from vcstudio.models import loading
    from vcstudio.runs.convert import prepare_run
    from vcstudio.runs.open import open_run
    from vcstudio.runs.source import check_run_ref

    folder = write_tav_folder(tiny_sd, tmp_path / "fresh",
                              video=str(write_mp4(clip8_module, tmp_path / "c.mp4")))

    def forbid(*a, **k):
        raise AssertionError("a model was loaded while reading a run")

    def no_loading(mp):
        mp.setattr(loading, "load_base", forbid)
        mp.setattr(ModelMixin, "from_pretrained", classmethod(forbid))
        mp.setattr(DiffusionPipeline, "from_pretrained", classmethod(forbid))

    edit_cfg = edit_job.EditJobConfig(run=str(folder), edit=EditConfig(prompt="x", steps=3))
    long_cfg = long_job.LongJobConfig(run=str(folder), long=LongConfig(frames=8, window=4,
                                                                       stride=2, steps=3))
    with pytest.MonkeyPatch.context() as mp:
        no_loading(mp)
        for estimate, cfg in ((edit_job.estimate, edit_cfg), (long_job.estimate, long_cfg)):
            with pytest.raises(InputError, match="not converted yet"):
                estimate(cfg, "cpu")
        guidance = _guidance(argparse.Namespace(guidance=None, run=str(folder)))
        assert guidance == EditConfig().guidance
        check_run_ref(str(folder))  # the CLI's check that the run is there: it is
        with pytest.raises(InputError, match="not converted yet"):
            open_run(folder)
    prepare_run(folder, device="cpu")  # the real loader: the job's explicit step
    with pytest.MonkeyPatch.context() as mp:
        no_loading(mp)
        assert open_run(folder).delta_path.is_file()
        assert edit_job.estimate(edit_cfg, "cpu")["seconds"] > 0
        assert long_job.estimate(long_cfg, "cpu")["seconds"] > 0
