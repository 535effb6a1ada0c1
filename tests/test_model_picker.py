"""The base-model picker (ui/model_picker.py; issue 27, item 6): a model in the local Hugging
Face cache shows as cached, a missing one downloads with byte progress (a Hub double on
loopback) or, offline, fails in one line; the API's ``model`` reaches the job and is recorded
by the run; a public studio refuses a server path; the default base follows the GPU, the
network and the cache."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from vcstudio.models.catalog import ALIASES

SD15, SD21 = ALIASES["sd15"], ALIASES["sd21"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache that huggingface_hub and vcstudio read (still offline)."""
    import huggingface_hub.constants as hc

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    return cache


def _into_hub_cache(folder: Path, cache: Path, repo_id: str) -> None:
    """``folder`` laid out as huggingface_hub stores a downloaded snapshot: the bytes in
    ``blobs/<sha256>``, the snapshot's files links to them, ``refs/main`` naming the commit."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    for f in sorted(Path(folder).rglob("*")):
        if not f.is_file():
            continue
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / f.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


def _studio(tmp_path, model, public=False, uploads=()):
    from vcstudio.config import Limits
    from vcstudio.jobs import studio as make_studio

    st = make_studio(tmp_path / "data", limits=Limits(), public=public,
                     upload_roots=list(uploads))
    st.model, st.embedded = str(model), False  # what build_app sets from the banner's choice
    return st


@pytest.fixture
def clip(tmp_path):
    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip

    return write_mp4(moving_shape_clip(8, 64, dx=3.0), tmp_path / "clips" / "circle.mp4")


# ----------------------------------------------------------------------------- the default base

def test_the_default_base_rule():
    from vcstudio.errors import ModelNotFoundError
    from vcstudio.models.loading import EMBEDDED_MODEL, default_base

    # (gpu, online, sd15 cached) -> SD 1.5?
    table = {(True, True, False): True, (True, False, False): False,
             (False, True, False): False, (False, False, False): False,
             (False, False, True): True, (True, False, True): True}
    for (gpu, online, cached), sd15 in table.items():
        d = default_base(gpu, online, cached)
        assert (d.model == SD15) == sd15 and d.embedded == (not sd15), (gpu, online, cached)
        assert d.model == (SD15 if sd15 else str(EMBEDDED_MODEL))
    assert "GPU and the Hugging Face Hub" in default_base(True, True, False).why
    assert "no GPU" in default_base(False, True, False).why
    assert "cannot be reached" in default_base(True, False, False).why
    assert "in the local Hugging Face cache" in default_base(False, False, True).why
    with pytest.raises(ModelNotFoundError, match="toyworld train"):
        default_base(False, False, False, demo_present=False)
    assert default_base(True, True, False, demo_present=False).model == SD15


def test_the_banner_says_which_default_and_why(hub_cache, monkeypatch, hub_double):
    """Probed on this machine: a GPU (torch's answer patched) and the Hub (a loopback double)
    -> SD 1.5; no GPU or, offline, no Hub -> the demo model; VCSTUDIO_MODEL wins over both."""
    import torch

    from vcstudio.ui import _model_notice

    monkeypatch.delenv("VCSTUDIO_MODEL", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    model, embedded, banner = _model_notice()
    assert (model, embedded) == (SD15, False)
    assert f"Base model: `{SD15}`" in banner and "GPU and the Hugging Face Hub" in banner
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, embedded, banner = _model_notice()
    assert embedded and "Offline demo model in use" in banner and "cannot be reached" in banner
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "there is no GPU" in _model_notice()[2]
    monkeypatch.setenv("VCSTUDIO_MODEL", "sd21")  # an alias, as `vcstudio app --model sd21`
    model, embedded, banner = _model_notice()
    assert (model, embedded) == (SD21, False) and "VCSTUDIO_MODEL" in banner


# ----------------------------------------------------------------------------- cached or not

def test_a_model_in_the_local_hub_cache_shows_as_cached(tiny_sd, hub_cache, tmp_path):
    from vcstudio.models.catalog import cached_sizes
    from vcstudio.models.loading import load_base, probed_default_base
    from vcstudio.ui import model_picker as mp

    st = _studio(tmp_path, tiny_sd)
    labels = {v: label for label, v in mp.choices(st)}
    assert labels[SD15] == "Stable Diffusion 1.5 [sd; ~4.3 GB download]"
    assert "not in the local cache" not in mp.info_line(st, "sd15")  # a known size instead
    assert "~4.3 GB download on first use" in mp.info_line(st, "sd15")

    _into_hub_cache(tiny_sd, hub_cache, SD15)
    _into_hub_cache(tiny_sd, hub_cache, "someone/tiny-sd")
    on_disk = sum(f.stat().st_size for f in Path(tiny_sd).rglob("*") if f.is_file())
    assert cached_sizes()[SD15] == on_disk
    labels = {v: label for label, v in mp.choices(st)}
    assert labels[SD15] == "Stable Diffusion 1.5 [sd; cached]"
    assert labels[SD21] == "Stable Diffusion 2.1 [sd; ~5.2 GB download]"
    assert labels["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"].endswith("[wan; ~28.9 GB download]")
    assert labels[""] == f"Default: {tiny_sd}" and labels["demo"].startswith("Embedded demo")
    mb = f"{on_disk / 1e6:.1f} MB"
    assert mp.info_line(st, "sd15") == (f"Stable Diffusion 1.5: cached ({mb} on disk); runs "
                                        "as Stable Diffusion.")
    assert mp.info_line(st, "someone/tiny-sd") == (f"someone/tiny-sd: cached ({mb} on disk); "
                                                   "runs as Stable Diffusion.")
    missing = mp.info_line(st, "someone/elsewhere")
    assert "not in the local cache" in missing and "offline (HF_HUB_OFFLINE)" in missing
    # the picked alias loads from the cache through the user's path; the default follows it
    assert load_base(mp.job_model(st, "sd15")).model_id == SD15
    assert probed_default_base().model == SD15


def test_a_missing_model_downloads_with_bytes_and_eta(tiny_sd, hub_double):
    """A job's fetch of a model not cached: huggingface_hub's snapshot download from the Hub
    (a loopback double serving the tiny pipeline), reported as bytes of the files it fetches."""
    from vcstudio.models.catalog import fetch, status

    hub_double.add_tree("someone/tiny-sd", Path(tiny_sd))
    total = sum(f.stat().st_size for f in Path(tiny_sd).rglob("*") if f.is_file())
    assert not status("someone/tiny-sd").cached
    events = []
    path = fetch("someone/tiny-sd", events.append)
    assert (path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert status("someone/tiny-sd").cached and status("someone/tiny-sd").bytes_on_disk == total
    byte_events = [e for e in events if " MB / " in e.message]
    assert byte_events and all(e.stage == "download" for e in events)
    last = byte_events[-1]
    assert last.message.startswith(f"downloading someone/tiny-sd: {total / 1e6:.2f} MB / "
                                   f"{total / 1e6:.2f} MB")
    n = len(hub_double.downloads())
    assert fetch("someone/tiny-sd", events.append) is None  # cached: no network call at all
    assert len(hub_double.downloads()) == n


def test_the_byte_meter_gives_rate_and_eta():
    from types import SimpleNamespace

    from vcstudio.models.catalog import ByteMeter

    now = [100.0]
    events = []
    meter = ByteMeter("sd", events.append, total=4 * 10**9, clock=lambda: now[0])
    files = SimpleNamespace(unit="it", n=1, total=12)
    meter.report(files)  # no byte yet: the files bar speaks
    assert events[-1].message == "downloading sd: 1/12 files" and events[-1].eta is None
    got = SimpleNamespace(unit="B", n=10**9, total=0)  # the bars' own total is not known yet
    meter.report(got)
    assert events[-1].message == "downloading sd: 1.00 GB / 4.00 GB" and events[-1].eta is None
    now[0], got.n = 150.0, 2 * 10**9  # 1 GB in 50 s: 20 MB/s, 2 GB to go
    meter.report(got)
    ev = events[-1]
    assert ev.message == "downloading sd: 2.00 GB / 4.00 GB at 20.0 MB/s, ETA 1 min 40 s"
    assert (ev.step, ev.total, ev.eta) == (2000, 4000, 100.0)
    files.n = 5
    meter.report(files)  # once bytes move, the files bar speaks in bytes too
    assert "files" not in events[-1].message and events[-1].message == ev.message


def test_offline_a_missing_model_is_one_message(tiny_sd, hub_cache, clip, tmp_path):
    """A tune on a hub id that is not cached, with no network: no download is tried, and the
    page's error is one line that says what to do (in the page's words)."""
    import gradio as gr

    from vcstudio.models.catalog import fetch
    from vcstudio.ui import edit_tab

    events = []
    assert fetch("someone/not-here", events.append) is None and events == []
    st = _studio(tmp_path, tiny_sd, uploads=[clip.parent])
    try:
        sid = st.new_session().id
        with pytest.raises(gr.Error) as err:
            list(edit_tab.tune_handler(st, sid, str(clip), "a red circle", 4, 1, 0, 32, 32,
                                       "crop", "center", "baseline", 10, 1e-3, 33, True, True,
                                       True, "mul-fourier", "pure", True, True,
                                       model="someone/not-here"))
        msg = err.value.message
        assert "\n" not in msg and "Traceback" not in msg and "--model" not in msg
        assert msg.startswith("'someone/not-here' is not in the local Hugging Face cache and "
                              "the Hub cannot be reached")
        assert "type DIR into the Base model picker" in msg
    finally:
        st.close()


# ----------------------------------------------------------------------------- who may pick what

def test_a_public_studio_refuses_server_paths(tiny_sd, clip, tmp_path):
    """A stranger's pick must not make the server read its files: a folder, a file, a path
    written as one, any text that is no Hub id, and a Hub id neither listed nor cached (a
    download a stranger would start) are refused in one line; the listed models, the aliases
    and the studio's own default pass. A desktop takes the folder and any Hub id."""
    from vcstudio.errors import InputError
    from vcstudio.models.loading import EMBEDDED_MODEL
    from vcstudio.ui import compare_tab, edit_tab, model_picker as mp

    pub = _studio(tmp_path / "pub", SD15, public=True)
    desk = _studio(tmp_path / "desk", SD15)
    try:
        for bad in (str(tiny_sd), str(Path(tiny_sd) / "unet" / "config.json"), "/etc",
                    "../models/x", "~/models", "assets/examples", "a/b/c", "C:/models"):
            with pytest.raises(InputError, match="public studio"):
                mp.job_model(pub, bad)
            with pytest.raises(InputError, match="public studio"):
                mp.run_model(pub, bad)
            assert mp.info_line(pub, bad).startswith("⚠️") and "public studio" in \
                mp.info_line(pub, bad)
        with pytest.raises(InputError, match="does not read server folders"):
            edit_tab.tune_job_config(pub, str(clip), "a red circle", 4, 1, 0, 32, 32, "crop",
                                     "center", "baseline", 10, 1e-3, 33, model=str(tiny_sd))
        with pytest.raises(InputError, match="does not read server folders"):
            compare_tab.compare_config(pub, str(clip), "a", "b", ["baseline"], [], 4, 64, 10,
                                       33, model=str(tiny_sd))
        assert mp.job_model(pub, "sd21") == SD21 and mp.job_model(desk, "someone/m") == "someone/m"
        # nor download whatever a stranger names: an unlisted Hub id runs only when cached
        with pytest.raises(InputError, match="downloads only the listed base models"):
            mp.job_model(pub, "someone/m")
        assert mp.job_model(pub, "demo") == str(EMBEDDED_MODEL)
        assert mp.job_model(pub, "") == SD15 and mp.run_model(pub, "") == ""
        assert mp.job_model(desk, str(tiny_sd)) == str(tiny_sd)  # a desktop reads its folders
        assert mp.info_line(desk, str(tiny_sd)).endswith("on this machine; runs as Stable "
                                                         "Diffusion.")
        assert "no such folder" in mp.info_line(desk, "/no/such/model")
    finally:
        pub.close()
        desk.close()


# ----------------------------------------------------------------------------- the API's model

@pytest.fixture(scope="module")
def app(tiny_sd, tmp_path_factory):
    from app_launch import launch

    studio, demo, url = launch(tiny_sd, tmp_path_factory.mktemp("picker-data"), public=False)
    yield {"studio": studio, "demo": demo, "url": url}
    demo.close()
    studio.close()
    os.environ.pop("VCSTUDIO_MODEL", None)


def _configs(studio, kind: str) -> list[dict]:
    return [(j.params or {}).get("config") or {} for j in studio.store.jobs() if j.kind == kind]


def test_the_api_model_reaches_the_jobs_and_the_run_records_it(app, tiny_sd, tiny_sd_v, clip):
    """/tune on another base than the studio's: the run's config and meta name it, the
    studio's default stays (a pick is the caller's own); /edit, /long and /compare hand their
    ``model`` to their jobs (a base with other weights is refused by fingerprint, a hub id not
    cached in one line)."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    import yaml

    studio = app["studio"]
    c = Client(app["url"], verbose=False)
    session, job, status, _, _, run_dir = c.predict(
        clip=handle_file(str(clip)), prompt="a red circle", frames=4, width=32, height=32,
        steps=10, lr=1e-3, model=str(tiny_sd_v), api_name="/tune")
    assert status.startswith("Tuned 10 steps"), status
    meta = json.loads((Path(run_dir) / "meta.json").read_text())
    assert meta["base_model"] == str(tiny_sd_v) and meta["backbone"] == "sd"
    assert yaml.safe_load((Path(run_dir) / "config.yaml").read_text())["model"] == str(tiny_sd_v)
    assert _configs(studio, "tune")[-1]["model"] == str(tiny_sd_v)
    assert studio.model == str(tiny_sd)  # the shared default is untouched by the pick

    with pytest.raises(AppError, match="tuned on a different base model") as err:
        c.predict(session=session, run_dir=run_dir, prompt="a blue square", steps=5,
                  model=str(tiny_sd), api_name="/edit")
    assert "Base model picker" in str(err.value)
    assert _configs(studio, "edit")[-1]["model"] == str(tiny_sd)
    with pytest.raises(AppError, match="'someone/not-here' is not in the local Hugging Face"):
        c.predict(session=session, run_dir=run_dir, prompts="a red circle", frames=8,
                  window=4, stride=2, steps=5, model="someone/not-here", api_name="/long")
    assert _configs(studio, "long")[-1]["model"] == "someone/not-here"
    try:
        c.predict(session=session, clip=handle_file(str(clip)), prompt="a red circle",
                  edit_prompt="a blue square", methods=["baseline (Tune-A-Video)"], frames=2,
                  size=64, steps=10, model="someone/not-here", api_name="/compare")
    except AppError:
        pass  # its one variant could not load: the comparison may end in that message
    assert _configs(studio, "compare")[-1]["model"] == "someone/not-here"


def test_the_cli_model_flag_takes_the_pickers_aliases(tiny_sd):
    from vcstudio.cli import parse
    from vcstudio.models.loading import EMBEDDED_MODEL

    tune = ["tune", "--video", "clip.mp4", "--prompt", "a red circle", "--model"]
    assert parse(tune + ["sd21"]).model == SD21
    assert parse(tune + ["wan-1.3b"]).model == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert parse(tune + ["demo"]).model == str(EMBEDDED_MODEL)
    assert parse(tune + [str(tiny_sd)]).model == str(tiny_sd)
    assert parse(["edit", "--run", "r", "--prompt", "p", "--model", "sd15"]).model == SD15
    assert parse(["app", "--model", "sd15"]).model == SD15
    assert parse(tune[:-1]).model is None
