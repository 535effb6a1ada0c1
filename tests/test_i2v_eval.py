"""Base vs VCD-tuned evaluation over seeds (the VCD paper's protocol), its table and plot rows
as API clients get them, the model picker's list, and the estimates' FLOP count."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from vcstudio.metrics.summary import mean_ci
from vcstudio.pipelines.i2v import eval as E

pytestmark = pytest.mark.usefixtures("one_thread")
N, S = 5, 32


def test_mean_and_95_interval_known_answer():
    m, h = mean_ci([1, 2, 3, 4, 5])
    assert m == 3 and h == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-5)
    assert mean_ci([2.0, float("nan")])[0] == 2.0 and math.isnan(mean_ci([2.0])[1])
    assert all(math.isnan(v) for v in mean_ci([]))


def test_summary_rows_plot_rows_and_table():
    vids = [E.VideoScore(img, s, arm, {k: float(s + (arm == "tuned")) for k in E.KEYS}, {})
            for img in ("a", "b") for s in (0, 1, 2) for arm in E.ARMS]
    summary = E.summarize(vids)
    assert [(r["image"], r["arm"], r["n"]) for r in summary] == [
        ("a", "base", 3), ("a", "tuned", 3), ("b", "base", 3), ("b", "tuned", 3),
        ("all", "base", 6), ("all", "tuned", 6)]
    a_base = summary[0]
    assert a_base["vcd"] == 1.0 and a_base["vcd_ci"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    rows = E.plot_rows(summary)
    assert len(rows) == 2 * 2 * 2  # images x arms x (I2V subject, I2V background)
    assert rows[0] == {"image": "a", "arm": "base", "metric": "i2v_subject", "consistency": 1.0,
                       "dynamic_degree": 1.0}
    tab = E.table(summary)
    assert tab["headers"][:3] == ["image", "arm", "n"] and len(tab["headers"]) == 3 + 9
    assert tab["data"][0][3] == "1.0000 ± 2.4841"


@pytest.fixture(scope="module")
def tuned_lora(tiny_wan_i2v, tmp_path_factory):
    """A LoRA on the tiny Wan I2V that changes its output (B set away from zero)."""
    from vcstudio.models.lora import add_lora, save_lora
    from vcstudio.models.wan import load_wan

    parts = load_wan(tiny_wan_i2v, "i2v", cache=None)
    params = add_lora(parts.transformer, 4)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in params:
            p.normal_(0, 0.3)
    path = tmp_path_factory.mktemp("lora") / "lora.safetensors"
    return save_lora(path, parts.transformer, {"backbone": "wan2.1-i2v"}, prefix="transformer")


@pytest.fixture(scope="module")
def tiny_dino(tmp_path_factory):
    from transformers import ViTConfig, ViTModel

    d = tmp_path_factory.mktemp("dino")
    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, image_size=224, patch_size=16),
             add_pooling_layer=False).save_pretrained(d)
    return d


def test_cli_eval_writes_every_column_with_an_interval(tiny_wan_i2v, tuned_lora, tiny_dino,
                                                       tmp_path, capsys):
    from PIL import Image

    from vcstudio.cli import main

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (S, S, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    out = tmp_path / "eval"
    assert main(["i2v-eval", "--model", str(tiny_wan_i2v), "--lora", str(tuned_lora),
                 "--images", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                 "--prompts", "a red ball", "--seeds", "0,1", "--steps", "2", "--frames", str(N),
                 "--height", str(S), "--width", str(S), "--encoder", "efficientnet-lite0",
                 "--vcd-size", "160", "--vcd-num-proj", "16", "--dino", str(tiny_dino),
                 "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "I2V subject ↑" in printed and "dynamic degree ↑" in printed and "VCD ↓" in printed
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["image"], r["arm"], r["n"]) for r in rows] == [
        ("a", "base", "2"), ("a", "tuned", "2"), ("b", "base", "2"), ("b", "tuned", "2"),
        ("all", "base", "4"), ("all", "tuned", "4")]
    for key in E.KEYS:  # every column, a finite mean and interval on every row
        for r in rows:
            assert math.isfinite(float(r[key])) and math.isfinite(float(r[f"{key}_ci95"])), key
    d = json.loads((out / "eval.json").read_text())
    assert d["seeds"] == [0, 1] and len(d["videos"]) == 2 * 2 * 2
    assert len(d["plot"]) == 2 * 2 * 2 and set(d["plot"][0]) == set(
        ["image", "arm", "metric", "consistency", "dynamic_degree"])
    # base and tuned from the same seed differ (the LoRA acts), the same seed's base is repeatable
    base_vcd = {(v["image"], v["seed"]): v["vcd"] for v in d["videos"] if v["arm"] == "base"}
    tuned_vcd = {(v["image"], v["seed"]): v["vcd"] for v in d["videos"] if v["arm"] == "tuned"}
    assert all(base_vcd[k] != tuned_vcd[k] for k in base_vcd)
    assert (out / "a_base.mp4").is_file() and (out / "b_tuned.mp4").is_file()


def test_plot_rows_reach_api_clients_as_a_plain_table():
    import gradio as gr

    from vcstudio.ui.i2v_tab import PLOT_HEADERS, eval_outputs

    vids = [E.VideoScore("img", s, arm, {k: 0.5 + 0.1 * s for k in E.KEYS}, {})
            for s in (0, 1) for arm in E.ARMS]
    summary = E.summarize(vids)

    class Res:
        videos, table, plot, files, note = vids, E.table(summary), E.plot_rows(summary), [], ""

    class Desktop:  # a desktop studio hands its files as they are (ui.common.served)
        public = False

    status, table, plot, files, rows = eval_outputs(Desktop, Res, 2)
    payload = gr.Dataframe(headers=PLOT_HEADERS).postprocess(rows)
    assert payload.headers == PLOT_HEADERS
    assert payload.data[0] == ["img", "base", "i2v_subject", 0.55, 0.55]
    assert set(plot["series"]) == {"base · i2v_subject", "base · i2v_background",
                                   "tuned · i2v_subject", "tuned · i2v_background"}
    assert gr.Dataframe().postprocess(table).headers[3] == "I2V subject ↑"


def test_model_picker_lists_the_known_i2v_models_offline(tiny_wan_i2v):
    import time

    from vcstudio.models.catalog import choices, status
    from vcstudio.ui.i2v_tab import models_table

    t0 = time.perf_counter()
    ids = [v for _, v in choices("i2v")]
    assert ids[:2] == ["stabilityai/stable-video-diffusion-img2vid",
                       "stabilityai/stable-video-diffusion-img2vid-xt"]
    assert "weizhou03/Wan2.1-Fun-1.3B-InP-Diffusers" in ids
    assert "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers" in ids and "Lightricks/LTX-Video" in ids
    fun = status("weizhou03/Wan2.1-Fun-1.3B-InP-Diffusers", sizes={})
    assert not fun.cached and "community conversion" in fun.line() and "~27.6 GB" in fun.line()
    half = status("weizhou03/Wan2.1-Fun-1.3B-InP-Diffusers",
                  sizes={"weizhou03/Wan2.1-Fun-1.3B-InP-Diffusers": int(27.6e9)})
    assert half.cached and "cached (27.6 GB on disk)" in half.line()
    assert status(str(tiny_wan_i2v)).local_folder
    df = models_table("i2v")
    assert list(df["cached"]) == [False] * len(df) and len(df) == 5
    assert time.perf_counter() - t0 < 2.0


def test_download_offline_leaves_it_to_the_loader(tiny_wan_i2v, monkeypatch):
    from vcstudio.models.catalog import download

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    events = []
    assert download("weizhou03/Wan2.1-Fun-1.3B-InP-Diffusers", events.append) is None
    assert download(str(tiny_wan_i2v), events.append) is None and events == []


def test_download_reports_progress_per_file(monkeypatch, tmp_path):
    """huggingface_hub drives the files bar (tqdm_class over the files, as its thread_map
    does); each becomes a download event. The Hub itself is not reached (no network here)."""
    import huggingface_hub

    from vcstudio.models import catalog, hub_access

    def fake_snapshot(repo_id, allow_patterns=None, tqdm_class=None, token=None):
        assert "*/*.safetensors" in allow_patterns
        for _ in tqdm_class(["a", "b", "c"], total=3):
            pass
        return str(tmp_path)

    monkeypatch.setattr(hub_access, "hub_online", lambda *a, **k: True)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    events = []
    assert catalog.download("weizhou03/Wan2.1-Fun-1.3B-InP-Diffusers", events.append) == tmp_path
    assert events[0].stage == "download" and "~27.6 GB" in events[0].message
    assert (events[-1].step, events[-1].total) == (3, 3) and "3/3 files" in events[-1].message


def test_flop_form_matches_the_flop_counter_and_estimates_scale():
    from diffusers import WanTransformer3DModel
    from torch.utils.flop_counter import FlopCounterMode

    from vcstudio.models.wan import estimate as we

    big = we.transformer_config("weizhou03/Wan2.1-Fun-1.3B-InP-Diffusers")
    assert big["in_channels"] == 36 and big["num_layers"] == 30
    with torch.device("meta"):  # the full-size architecture, counted without any compute
        tr = WanTransformer3DModel(**big)
    s = we.tokens(big, 25, 272, 368)
    assert s == 7 * 17 * 23
    meta = dict(device="meta")
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        tr(hidden_states=torch.zeros(1, 36, 7, 34, 46, **meta), timestep=torch.zeros(1, **meta),
           encoder_hidden_states=torch.zeros(1, 512, 4096, **meta),
           encoder_hidden_states_image=torch.zeros(1, 257, 1280, **meta))
    assert we.forward_flops(big, s) == pytest.approx(fc.get_total_flops(), rel=0.01)
    assert we.params(big) == pytest.approx(1.56e9, rel=0.03)  # the Fun-InP 1.3B (+ image K/V)
    paper = we.reward_step(big, 25, 272, 368, 30, device="cuda:H100")
    cached = we.reward_step(big, 25, 272, 368, 30, device="cuda:H100", skip_share=0.5)
    assert paper.parts["tokens"] == 7 * 17 * 23 and cached.seconds < paper.seconds
    assert 5 < paper.peak_gib < 40  # the memory target at the paper's setting
    assert we.sample(big, 25, 272, 368, 30, "cpu").seconds > 100 * paper.seconds / 30


def test_tab_estimate_names_the_reward_step_and_the_zerogpu_call(tiny_wan_i2v, tmp_path):
    from vcstudio.config import Limits
    from vcstudio.session import Studio
    from vcstudio.ui.i2v_tab import i2v_estimate

    studio = Studio(tmp_path / "data", limits=Limits())
    try:
        line = i2v_estimate(studio, "weizhou03/Wan2.1-Fun-1.3B-InP-Diffusers", 0, 0, 30, 50,
                            "auto", True)
        assert line.startswith("25 frames at 368x272: a reward step ~")
        assert "ZeroGPU" in line and "uncalibrated" in line
        assert i2v_estimate(studio, str(tiny_wan_i2v), 24, 32, 2, 3, "wan", False).endswith(
            "got 24: use 21 or 25.") or "frames" in i2v_estimate(
            studio, str(tiny_wan_i2v), 9, 32, 2, 3, "wan", False)
    finally:
        studio.close()
