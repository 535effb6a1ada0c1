"""Long video: co-denoising (eqs. 18-19), masks + average fusion (eqs. 8-12), combined tuning
(eq. 20), progressive refinement, the pipeline, CLI and UI entry points, on a tiny real model."""
import dataclasses
import weakref

import numpy as np
import pytest
import torch

from vcstudio.config import DataConfig, LongConfig, MaskConfig, TuneConfig
from vcstudio.errors import ModelNotFoundError
from vcstudio.io import read_video
from vcstudio.methods.masks import GRABCUT_LABEL
from vcstudio.models.cache import ModelCache
from vcstudio.pipelines.long import codenoise
from vcstudio.pipelines.long.codenoise import CoDenoiser
from vcstudio.models.encode import encode_prompts
from vcstudio.pipelines.edit.sample import denoise
from vcstudio.pipelines.long.windows import make_layout, mix_embeddings, window_prompts
from vcstudio.run_context import RunContext
from vcstudio.scene.segments import Segment

PROMPT = "a red circle moving right"


@pytest.fixture(scope="module")
def model(base):
    from vcstudio.models.inflate import VideoDenoiser

    torch.manual_seed(0)
    m = VideoDenoiser(base.unet).eval()
    with torch.no_grad():  # temporal layers start at zero; give them a say in the test
        for n, p in m.named_parameters():
            if "temporal" in n and "to_out" in n and p.dim() > 1:
                p.normal_(0, 0.05)
    return m


@pytest.fixture(scope="module")
def run_dir(tiny_sd, tmp_path_factory, mcache):
    from vcstudio.io.synthetic import moving_shape_clip
    from vcstudio.pipelines.tune.loop import tune

    cfg = TuneConfig(model=str(tiny_sd), data=DataConfig(prompt=PROMPT, n_frames=8, width=64,
                                                         height=64),
                     steps=2, lr=1e-3, checkpoint_every=0)
    return tune(cfg, tmp_path_factory.mktemp("lv") / "run", frames=moving_shape_clip(8, 64),
                run=RunContext(cache=mcache), invert=False).run_dir


def _cond(base, prompts):
    return encode_prompts(base, prompts), encode_prompts(base, [""])


# ----------------------------------------------------------------------------- co-denoising

def test_one_window_over_the_whole_video_equals_plain_sampling(base, model):
    cond, uncond = _cond(base, [PROMPT])
    lat = torch.randn(1, 4, 8, 8, 8, generator=torch.Generator().manual_seed(1))
    plain = denoise(model, base.scheduler_config, lat, cond, uncond, 7.5, 3)
    # two segments with the same prompt: every window's embedding is that prompt's
    segs = [Segment(PROMPT, 0, 4), Segment(PROMPT, 4, 8)]
    layout = make_layout(8, 8, 8)
    wc = mix_embeddings(_cond(base, [PROMPT, PROMPT])[0], window_prompts(layout, segs,
                                                                         "interpolate"))
    co = denoise(model, base.scheduler_config, lat, cond, uncond, 7.5, 3,
                 predict=CoDenoiser(model, layout, wc, uncond, 7.5))
    torch.testing.assert_close(co, plain, atol=1e-5, rtol=1e-5)
    # the comparison is sensitive: overlapping short windows give another video
    layout = make_layout(8, 4, 2)
    short = denoise(model, base.scheduler_config, lat, cond, uncond, 7.5, 3,
                    predict=CoDenoiser(model, layout, cond.expand(layout.n_windows, -1, -1),
                                       uncond, 7.5))
    assert (short - plain).abs().max() > 1e-3


def _const_model(value):
    def f(x, t, e):
        return torch.full_like(x, value)
    return f


@pytest.mark.parametrize("L,K,S", [(13, 8, 3), (20, 6, 4), (9, 4, 4), (7, 7, 2), (31, 8, 5)])
@pytest.mark.parametrize("fusion", ["uniform", "pyramid", "gaussian"])
def test_every_frame_fused_with_weights_summing_to_one(L, K, S, fusion):
    """A model predicting 1 everywhere must give 1 on every frame (tail included): any frame a
    window misses, or whose weights do not sum to 1, shows up as != 1."""
    layout = make_layout(L, K, S, fusion)
    cond = torch.zeros(layout.n_windows, 3, 5)
    lat = torch.randn(1, 4, L, 2, 2)
    out = CoDenoiser(_const_model(1.0), layout, cond, None, 1.0, batch_windows=2)(lat, 10)
    torch.testing.assert_close(out, torch.ones_like(out))
    ident = CoDenoiser(lambda x, t, e: x, layout, cond, None, 1.0, batch_windows=3)(lat, 10)
    torch.testing.assert_close(ident, lat)  # fusing a frame-wise identity is the identity


def test_tail_frames_are_denoised_when_stride_does_not_divide(base, model):
    L, K, S = 13, 8, 3  # (L - K) % S == 2: the tail needs the end-aligned window
    layout = make_layout(L, K, S, "pyramid")
    assert layout.starts == [0, 3, 5]
    cond, uncond = _cond(base, ["a red circle", "a blue square"])
    segs = [Segment("a red circle", 0, 7), Segment("a blue square", 7, 13)]
    wc = mix_embeddings(cond, window_prompts(layout, segs, "interpolate"))
    seen = np.zeros(L, int)

    def on_batch(idx):
        for i in idx:
            seen[layout.starts[i]:layout.starts[i] + K] += 1

    cod = CoDenoiser(model, layout, wc, uncond, 7.5, batch_windows=2, on_batch=on_batch)
    lat = torch.randn(1, 4, L, 8, 8, generator=torch.Generator().manual_seed(2))
    eps = cod(lat, torch.tensor(501))
    assert (seen > 0).all()
    per_frame = eps.abs().flatten(3).mean(-1)[0].mean(0)
    assert (per_frame > 0.05).all(), per_frame  # no frame left with a zero prediction
    # the last frames come from the end-aligned window alone: its own prediction, weight 1
    direct = codenoise.guided_windows(model, lat[:, :, 5:13], torch.tensor(501), wc[2:3],
                                      uncond, 7.5)
    torch.testing.assert_close(eps[:, :, 11:], direct[:, :, 6:], atol=1e-5, rtol=1e-4)
    out = denoise(model, base.scheduler_config, lat, cond[:1], uncond, 7.5, 3, predict=cod)
    assert torch.isfinite(out).all()
    assert ((out - lat).abs().flatten(3).mean(-1)[0].mean(0) > 0.05).all()


def test_hook_holds_one_batch_of_window_outputs(base, model, monkeypatch):
    """Memory: at every U-Net call no earlier window output is alive, each call carries at most
    batch_windows windows, and one accumulator (one latent-sized buffer) is made per step."""
    alive, stats = [], {"max_alive": 0, "max_windows": 0, "calls": 0, "accumulators": 0}
    real = codenoise.guided_windows

    def tracked(model_, x, t, cond, uncond, g):
        stats["max_alive"] = max(stats["max_alive"], sum(r() is not None for r in alive))
        stats["max_windows"] = max(stats["max_windows"], x.shape[0])
        stats["calls"] += 1
        out = real(model_, x, t, cond, uncond, g)
        alive.append(weakref.ref(out))
        return out

    real_acc = codenoise.WindowAccumulator

    def counting_acc(*a, **k):
        stats["accumulators"] += 1
        return real_acc(*a, **k)

    monkeypatch.setattr(codenoise, "guided_windows", tracked)
    monkeypatch.setattr(codenoise, "WindowAccumulator", counting_acc)
    layout = make_layout(20, 6, 3)  # 6 windows
    cond, uncond = _cond(base, [PROMPT])
    cod = CoDenoiser(model, layout, cond.expand(6, -1, -1), uncond, 7.5, batch_windows=2)
    lat = torch.randn(1, 4, 20, 8, 8)
    denoise(model, base.scheduler_config, lat, cond, uncond, 7.5, 2, predict=cod)
    assert stats["max_alive"] == 0
    assert stats["max_windows"] == 2 and stats["calls"] == 2 * 3
    assert stats["accumulators"] == 2  # one per step, never one per window


def test_window_batch_halves_on_out_of_memory():
    layout = make_layout(12, 4, 2)  # 5 windows
    calls = []

    def picky(x, t, e):
        calls.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("too many windows")
        return torch.ones_like(x)

    cod = CoDenoiser(picky, layout, torch.zeros(5, 3, 5), None, 1.0, batch_windows=0)
    out = cod(torch.zeros(1, 4, 12, 2, 2), 1)
    torch.testing.assert_close(out, torch.ones_like(out))
    assert cod.batch_windows == 2 and calls[:2] == [5, 2]


# ----------------------------------------------------------------------------- pipeline

def test_long_video_writes_mp4_and_cli_prints_its_path_last(run_dir, tmp_path, capsys):
    from vcstudio.cli import main

    out = tmp_path / "long.mp4"
    rc = main(["long", "--run", str(run_dir), "--prompts", "a red circle", "a blue square",
               "--frames", "13", "--window", "8", "--stride", "3", "--steps", "2",
               "--fusion", "gaussian", "--prompt-mode", "interpolate", "--out", str(out)])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == str(out)
    assert any("3 windows of 8" in ln for ln in lines)  # the window/prompt table came first
    assert any("5-12" in ln and "a blue square" in ln for ln in lines)
    frames = read_video(out)
    assert frames.shape == (13, 64, 64, 3)
    assert out.with_suffix(".json").is_file()


def test_long_video_is_seeded_and_refines_to_higher_scales(run_dir, mcache):
    from vcstudio.pipelines.long.video import long_video

    events = []
    cfg = LongConfig(prompts=["a red circle", "a blue square"], frames=10, window=8, stride=2,
                     steps=2, seed=5, refine=(64, 128), refine_strength=0.5)
    res = long_video(run_dir, cfg, run=RunContext(progress=events.append, cache=mcache))
    assert res.frames.shape == (10, 128, 128, 3)
    assert [s["size"] for s in res.stages] == [[64, 64], [128, 128]]
    stages = {e.stage for e in events}
    assert {"load", "co-denoise 64x64", "refine 128x128", "decode", "write"} <= stages
    assert len(res.table) == 2 and res.table[1]["frames"] == "2-9"
    again = long_video(run_dir, dataclasses.replace(cfg, refine_mode="pixel",
                                                    out=str(res.mp4.with_name("px.mp4"))),
                       run=RunContext(cache=mcache))
    assert again.frames.shape == res.frames.shape
    small = dataclasses.replace(cfg, refine=(), frames=8, steps=1)
    same = long_video(run_dir, dataclasses.replace(small, out=str(res.mp4.with_name("a.mp4"))),
                      run=RunContext(cache=mcache))
    twin = long_video(run_dir, dataclasses.replace(small, out=str(res.mp4.with_name("b.mp4"))),
                      run=RunContext(cache=mcache))
    np.testing.assert_array_equal(same.frames, twin.frames)


def test_long_video_cancels(run_dir, mcache):
    from vcstudio.errors import CancelledError
    from vcstudio.pipelines.long.video import long_video
    from vcstudio.progress import CancelToken

    tok = CancelToken()

    def stop_at_first_step(ev):
        if ev.stage.startswith("co-denoise"):
            tok.cancel()

    with pytest.raises(CancelledError):
        long_video(run_dir, LongConfig(prompts=["a red circle"], frames=8, window=8, steps=5),
                   run=RunContext(progress=stop_at_first_step, cancel=tok, cache=mcache))


# ----------------------------------------------------------------------------- masks + fusion

def test_masks_path_with_tiny_sam_and_combined_tuning(run_dir, tmp_path, mcache):
    from safetensors.torch import save_file
    from test_masks import tiny_sam

    from vcstudio.models.delta import load_tensors
    from vcstudio.pipelines.long.video import long_video

    sam_path = tmp_path / "tiny_sam.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_sam().state_dict().items()}, str(sam_path))
    mask = MaskConfig(method="sam", sam_checkpoint=str(sam_path), box=(8, 8, 56, 56),
                      n_candidates=2, tune_steps=2)  # the paper's lr 2e-6
    cfg = LongConfig(prompts=["a red circle", "a blue square"], frames=10, window=8, stride=2,
                     steps=2, masks=True, mask=mask)
    res = long_video(run_dir, cfg, run=RunContext(cache=mcache), sam_builder=tiny_sam)
    assert res.mask_method == "sam-box"
    assert res.candidates.shape == (2, 8, 64, 64, 3)
    assert res.candidate_masks.shape == (2, 8, 64, 64) and res.candidate_masks.dtype == bool
    assert res.fused.shape == (8, 64, 64, 3) and res.masks.shape == (8, 64, 64)
    assert res.frames.shape == (10, 64, 64, 3) and res.mp4.is_file()
    # combined tuning started from the run's tensors and moved them (eq. 13: D -> D')
    before = load_tensors(run_dir / "delta.safetensors")[0]
    after = load_tensors(res.combined_run / "delta.safetensors")[0]
    assert set(before) == set(after)
    moved = max(float((before[k] - after[k]).abs().max()) for k in before)
    assert 0 < moved < 1e-4, moved  # two Adam steps of 2e-6 from D, not a restart from the base
    losses = __import__("json").loads((res.combined_run / "losses.json").read_text())
    assert {"l", "l_fg", "l_bg"} <= set(losses[-1])


def test_fusion_with_one_candidate_is_plain_sampling_and_weights_matter(run_dir, mcache):
    """Eq. 11 with n = 1, w1 = w2 = 1 and binary masks gives r'_k = r_k, so eq. 12 continues the
    candidate unchanged. With the default (unit variance kept) w1 = w2 = 0.5 still gives r_k (only
    their ratio matters); the literal formula halves r'_k and changes the result."""
    from vcstudio.pipelines.long.maskfusion import average_fusion_clip
    from vcstudio.pipelines.tune.loop import load_tuned

    tuned = load_tuned(run_dir, mcache)
    cond, uncond = _cond(tuned.base, ["a red circle"])
    mc = MaskConfig(method="grabcut", n_candidates=1, k_step=600, tune_steps=0)
    fr = average_fusion_clip(tuned, cond, uncond, mc, 8, (64, 64), 3, 7.5, seed=7,
                             run=RunContext(cache=mcache))
    assert fr.k_index == 1 and fr.method == GRABCUT_LABEL
    g = torch.Generator().manual_seed(7 + 1000)
    x = torch.randn((1, 4, 8, 8, 8), generator=g)
    plain = denoise(tuned.model, tuned.base.scheduler_config, x, cond, uncond, 7.5, 3)
    torch.testing.assert_close(fr.latents, plain, atol=1e-4, rtol=1e-4)
    half = average_fusion_clip(tuned, cond, uncond, dataclasses.replace(mc, w1=0.5, w2=0.5), 8,
                               (64, 64), 3, 7.5, seed=7, run=RunContext(cache=mcache))
    torch.testing.assert_close(half.latents, plain, atol=1e-4, rtol=1e-4)
    lit = dataclasses.replace(mc, w1=0.5, w2=0.5, fusion_mode="literal")
    half = average_fusion_clip(tuned, cond, uncond, lit, 8, (64, 64), 3, 7.5, seed=7,
                               run=RunContext(cache=mcache))
    assert (half.latents - plain).abs().max() > 1e-2
    x0 = average_fusion_clip(tuned, cond, uncond, dataclasses.replace(mc, fusion_space="x0"), 8,
                             (64, 64), 3, 7.5, seed=7,
                             run=RunContext(cache=mcache))  # one candidate: r_k again
    torch.testing.assert_close(x0.latents, plain, atol=1e-3, rtol=1e-3)


def test_grabcut_fallback_is_labelled_and_missing_sam_fails_first(run_dir, tmp_path,
                                                                  monkeypatch, mcache):
    from vcstudio.pipelines.long.video import long_video

    monkeypatch.setenv("VCSTUDIO_SAM_DIR", str(tmp_path / "nosam"))
    cfg = LongConfig(prompts=["a red circle"], frames=8, window=8, stride=4, steps=2,
                     masks=True, mask=MaskConfig(n_candidates=2, box=(8, 8, 56, 56),
                                                 tune_steps=0))
    with pytest.raises(ModelNotFoundError) as e:
        long_video(run_dir, cfg,
                   run=RunContext(progress=lambda ev: pytest.fail("started"), cache=mcache))
    assert "sam_vit_b_01ec64.pth" in str(e.value) and "grabcut" in str(e.value).lower()
    cfg = dataclasses.replace(cfg, mask=dataclasses.replace(cfg.mask, fallback=True))
    res = long_video(run_dir, cfg, run=RunContext(cache=mcache))
    assert res.mask_method == GRABCUT_LABEL and res.combined_run is None
    assert res.masks.shape == (8, 64, 64) and res.masks.dtype == bool


# ----------------------------------------------------------------------------- fgbg method

def _step_state(base, model, masks_shape=(8, 64, 64)):
    from vcstudio.methods.base import StepState
    from vcstudio.models.diffusion_math import add_noise, alphas_cumprod

    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(1, 4, masks_shape[0], 8, 8, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([400])
    a = alphas_cumprod(base.scheduler_config)[t]
    noisy = add_noise(x0, noise, a)
    cond = encode_prompts(base, [PROMPT])
    with torch.no_grad():
        pred = model(noisy, t, cond)
    return StepState(0, 1, model, base, x0, noise, noisy, t, a, cond, pred, noise, None,
                     "epsilon", g)


def test_fgbg_method_all_foreground_equals_plain_loss(base, model, tmp_path):
    from PIL import Image

    from vcstudio.methods.fgbg_method import FgBgConfig
    from vcstudio.methods.base import TuneMethod
    from vcstudio.methods.fgbg_method import FgBgMethod, load_mask_file
    from vcstudio.methods.registry import get_method

    s = _step_state(base, model)
    plain = TuneMethod().denoise_loss(s)
    ones = np.ones((8, 64, 64), bool)
    only_fg = TuneConfig(method="fgbg", fgbg=FgBgConfig(l1=0.0, l2=1.0, l3=0.0))
    torch.testing.assert_close(FgBgMethod(only_fg, masks=ones).denoise_loss(s), plain)
    m = FgBgMethod(TuneConfig(method="fgbg"), masks=ones)
    torch.testing.assert_close(m.denoise_loss(s), 2.0 * plain)  # l1 L + l2 L_fg, L_bg = 0
    assert m.after_step(s)["l_fg"] == pytest.approx(float(plain)) and m.last["l_bg"] == 0.0
    half = ones.copy()
    half[:, :, 32:] = False
    m = FgBgMethod(TuneConfig(method="fgbg"), masks=half)
    m.denoise_loss(s)
    assert m.last["l_fg"] + m.last["l_bg"] == pytest.approx(m.last["l"], rel=1e-5)
    assert 0 < m.last["l_fg"] < m.last["l"]
    # masks from files: a folder of PNGs and an .npz, through the registry
    folder = tmp_path / "masks"
    folder.mkdir()
    for i, f in enumerate(half):
        Image.fromarray(f.astype(np.uint8) * 255).save(folder / f"{i:03d}.png")
    np.testing.assert_array_equal(load_mask_file(folder), half)
    np.savez(tmp_path / "m.npz", masks=half)
    meth = get_method(TuneConfig(method="fgbg", fgbg=FgBgConfig(masks=str(tmp_path / "m.npz"))))
    assert isinstance(meth, FgBgMethod)
    torch.testing.assert_close(meth.denoise_loss(s), m.denoise_loss(s))


# ----------------------------------------------------------------------------- UI + bench

def test_ui_long_tab_generates(tiny_sd, tmp_path):
    from vcstudio.config import Limits
    from vcstudio.io.synthetic import moving_shape_clip
    from vcstudio.pipelines.tune.loop import tune
    from vcstudio.session import Studio
    from vcstudio.ui.long_tab import generate, preview_masks

    studio = Studio(tmp_path / "data", limits=Limits(), cache=ModelCache(), device="cpu")
    try:
        sid = studio.new_session().id
        run = studio.session(sid).outputs / "run"
        tune(TuneConfig(model=str(tiny_sd), data=DataConfig(prompt=PROMPT, n_frames=8, width=64,
                                                            height=64),
                        steps=1, checkpoint_every=0), run, frames=moving_shape_clip(8, 64),
             run=RunContext(cache=studio.cache), invert=False)
        out = list(generate(studio, sid, str(run), "", "a red circle\na blue square", 12, 8, 4,
                            "pyramid", 2, 5))
        mp4, status, strip, gallery = out[-1]
        assert status.startswith("Done") and read_video(mp4).shape[0] == 12
        assert studio.safe_path(sid, mp4, must_exist=True)  # written inside the session
        assert strip.shape[0] == 64 and gallery is None  # no mask stage asked for
        # the mask stage alone, previewed before the expensive steps (GrabCut offline)
        prev = list(preview_masks(studio, sid, str(run), "", "a red circle", 8, 8, 4, "uniform",
                                  2, 5, "grabcut", "", 2))
        items, note = prev[-1]
        assert len(items) == 3 and "grabcut" in note.lower()  # 2 candidates + the fused clip
        assert items[0][0].shape == (64, 8 * 64, 3)
        # and generation with masks on shows the same stage's pictures
        mp4, status, _, gallery = list(generate(studio, sid, str(run), "", "a red circle", 8, 8,
                                                4, "uniform", 2, 5, True, "grabcut", "", 2,
                                                0))[-1]
        assert "grabcut" in status.lower() and len(gallery) == 3
    finally:
        studio.close()


def test_bench_long_tiny_cpu(capsys):
    from vcstudio.cli import main

    assert main(["bench", "long", "--arch", "tiny", "--frames", "12", "--size", "64",
                 "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "frames_per_s" in out and "peak_gib" in out
    row = out.strip().splitlines()[-1].split("|")
    assert row[0].strip() == "long" and int(row[1]) == 12


def test_fgbg_mask_errors_are_clear_and_early(tmp_path):
    """A corrupt mask file is an InputError naming it; no masks at all fails when the method is
    built (before the model loads), not at the first training step."""
    from vcstudio.errors import InputError
    from vcstudio.methods.fgbg_method import FgBgMethod, load_mask_file

    bad = tmp_path / "m.npy"
    bad.write_bytes(b"not a numpy file")
    with pytest.raises(InputError, match="m.npy"):
        load_mask_file(bad)
    with pytest.raises(InputError, match="needs foreground masks"):
        FgBgMethod(TuneConfig(method="fgbg"))
