"""Hub round trip on the tiny model: `vcstudio push RUN --to-folder DIR` writes exactly what an
upload holds (the offline stand-in for a download), its card's metadata reads back with
ModelCard.load, `vcstudio edit --run DIR` and `--run hf://user/name` edit from it with
inversion (the same frames as an edit of the original run) after the base fingerprint check;
the upload itself is ONE create_commit, private by default (HfApi, an outside service, is a
test double here); bad input is one line that says what to do."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vcstudio.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tuned(tiny_sd, tmp_path_factory):
    """A finished tiny run with one edit (so an inversion and an edit GIF exist)."""
    import os

    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip

    root = tmp_path_factory.mktemp("hub")
    old = os.environ.get("VCSTUDIO_DATA")
    os.environ["VCSTUDIO_DATA"] = str(root / "data")
    try:
        clip = write_mp4(moving_shape_clip(4, 32, dx=3.0), root / "c.mp4")
        run = root / "run"
        assert main(["tune", "--video", str(clip), "--prompt", "a red circle", "--model",
                     str(tiny_sd), "--frames", "4", "--stride", "1", "--size", "32", "--steps",
                     "3", "--inversion-steps", "2", "--out", str(run)]) == 0
        assert main(["edit", "--run", str(run), "--prompt", "a blue square", "--steps", "2",
                     "--guidance", "3"]) == 0
    finally:
        if old is None:
            os.environ.pop("VCSTUDIO_DATA", None)
        else:
            os.environ["VCSTUDIO_DATA"] = old
    return run


def _edit(run, capsys, *extra) -> np.ndarray:
    from vcstudio.io import read_video

    capsys.readouterr()
    assert main(["edit", "--run", str(run), "--prompt", "a blue square", "--steps", "2",
                 "--guidance", "3", *extra]) == 0
    mp4 = Path(capsys.readouterr().out.strip().splitlines()[-1])
    return mp4, read_video(mp4)


def test_to_folder_is_the_upload_and_edits_with_inversion(tuned, tiny_sd, tmp_path, capsys):
    from huggingface_hub import ModelCard

    folder = tmp_path / "pushed"
    assert main(["push", str(tuned), "--to-folder", str(folder)]) == 0
    names = sorted(p.name for p in folder.iterdir())
    inversions = sorted(p.name for p in tuned.glob("inversion-*.safetensors"))
    assert inversions and all(n.startswith("inversion-2") for n in inversions)
    assert names == sorted(["README.md", "clip-latents.safetensors", "config.yaml",
                            "delta.safetensors", "losses.json", "meta.json", "preview.gif",
                            "source.mp4", *inversions])
    card = ModelCard.load(folder / "README.md")
    meta = json.loads((tuned / "meta.json").read_text())
    d = card.data.to_dict()
    assert d["library_name"] == "vcstudio" and "vcstudio" in d["tags"]
    assert "base_model" not in d  # the tiny base is a local folder
    assert d["vcstudio_base_fingerprint"] == meta["base_fingerprint"]
    assert (d["vcstudio_prompt"], d["vcstudio_method"], d["vcstudio_steps"]) == (
        "a red circle", "baseline", 3)
    assert "preview.gif" in card.text and "hf://" in card.text
    # an edit from the folder: the same frames as from the run, from its inversion
    _, want = _edit(tuned, capsys)
    mp4, got = _edit(folder, capsys)
    assert mp4.parent == folder / "edits" and np.array_equal(got, want)
    # the inversion the edit used is the pushed one (an edit from noise differs)
    _, noise = _edit(folder, capsys, "--no-inversion")
    assert not np.array_equal(noise, want)


def test_card_names_a_hub_base_by_its_id(tuned, tmp_path):
    from vcstudio.jobs.push import hub_base, model_card

    run = tmp_path / "hubbase"
    shutil.copytree(tuned, run)
    meta = json.loads((run / "meta.json").read_text())
    meta["base_model"] = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    (run / "meta.json").write_text(json.dumps(meta))
    d = model_card(run, "me/run", ["delta.safetensors"]).data.to_dict()
    assert d["base_model"] == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert d["vcstudio_base_fingerprint"] == meta["base_fingerprint"]
    assert hub_base(str(tuned)) is None and hub_base("./a/b") is None


class _FakeApi:
    """Test double of huggingface_hub.HfApi (an outside service): records what is asked."""

    log: list = []
    fail: Exception | None = None

    def __init__(self, token=None, **kw):
        self.log.append(("init", token))

    def create_repo(self, repo_id, private=None, exist_ok=False, **kw):
        if self.fail is not None:
            raise self.fail
        self.log.append(("create_repo", repo_id, private))

    def create_commit(self, repo_id, operations, commit_message="", **kw):
        ops = [(op.path_in_repo, Path(op.path_or_fileobj).read_bytes()) for op in operations]
        self.log.append(("create_commit", repo_id, ops))
        return type("Info", (), {"oid": "c0ffee"})()

    def upload_file(self, *a, **kw):  # the old four-commit path must not be used
        self.log.append(("upload_file",))


@pytest.fixture
def fake_api(monkeypatch, hub_double):
    """HfApi's writes doubled (the Hub double answers the online check)."""
    import huggingface_hub

    _FakeApi.log, _FakeApi.fail = [], None
    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    return _FakeApi


def test_push_is_one_private_commit_with_every_file(tuned, tmp_path, fake_api, capsys):
    folder = tmp_path / "pushed"
    assert main(["push", str(tuned), "--to-folder", str(folder)]) == 0
    capsys.readouterr()
    assert main(["push", str(tuned), "--repo", "me/my-run", "--token", "hf_x"]) == 0
    assert capsys.readouterr().out.strip() == "https://huggingface.co/me/my-run"
    kinds = [e[0] for e in fake_api.log]
    assert kinds == ["init", "create_repo", "create_commit"]
    assert fake_api.log[0][1] == "hf_x" and fake_api.log[1] == ("create_repo", "me/my-run", True)
    ops = dict(fake_api.log[2][2])
    assert sorted(ops) == sorted(p.name for p in folder.iterdir())
    for name in ops:  # byte for byte what --to-folder wrote (the card names the repo)
        if name != "README.md":
            assert ops[name] == (folder / name).read_bytes(), name
    fake_api.log.clear()
    assert main(["push", str(tuned), "--repo", "me/my-run", "--token", "hf_x", "--public"]) == 0
    assert fake_api.log[1] == ("create_repo", "me/my-run", False)


def _one_line_error(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()  # progress bars above, then the error
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("error: "), err
    return last


def test_bad_pushes_are_one_line_errors(tuned, tmp_path, fake_api, capsys, monkeypatch):
    import httpx
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    push = ["push", str(tuned), "--repo", "me/my-run"]
    assert "No Hugging Face token: log in" in _one_line_error(capsys, push)
    assert "not a Hub repo id" in _one_line_error(capsys, ["push", str(tuned), "--repo", "x"])
    fake_api.fail = httpx.ConnectError("[Errno -3] Temporary failure in name resolution")
    assert "no network" in _one_line_error(capsys, [*push, "--token", "t"])
    resp = httpx.Response(401, request=httpx.Request("POST", "https://huggingface.co/api"))
    fake_api.fail = HfHubHTTPError("401 Client Error", response=resp)
    assert "refused the token (401)" in _one_line_error(capsys, [*push, "--token", "t"])
    assert not any(e[0] == "create_commit" for e in fake_api.log)
    # a run still tuning: refused before any token or network use
    live = tmp_path / "live"
    shutil.copytree(tuned, live)
    meta = json.loads((live / "meta.json").read_text())
    (live / "meta.json").write_text(json.dumps({**meta, "status": "running", "steps_done": 1}))
    assert "still tuning (step 1)" in _one_line_error(capsys, ["push", str(live), "--to-folder",
                                                               str(tmp_path / "x")])
    assert "not a vcstudio run folder" in _one_line_error(
        capsys, ["push", str(tmp_path), "--to-folder", str(tmp_path / "y")])


def test_edit_from_hf_id_and_bad_hub_runs(tuned, tiny_sd_v, tmp_path, capsys, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    import yaml

    folder = tmp_path / "pushed"
    assert main(["push", str(tuned), "--to-folder", str(folder)]) == 0
    # HF_HUB_OFFLINE=1 in tests: an id that was never downloaded is a no-network message
    assert "no network" in _one_line_error(capsys, ["edit", "--run", "hf://me/not-here",
                                                    "--prompt", "x"])
    asked = []

    def download(repo_id, revision=None, local_files_only=False, token=None, **kw):
        asked.append(repo_id)  # the Hub's snapshot_download: here the pushed folder
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    _, want = _edit(tuned, capsys)
    mp4, got = _edit("hf://me/my-run", capsys)
    assert asked and asked[0] == "me/my-run" and np.array_equal(got, want)
    assert not (folder / "edits").exists()  # written beside a link of the snapshot, not in it
    assert mp4.parent.parent.name.startswith("me--my-run-")

    # a repo that is missing, or is not a run, is refused from the Hub's listing before any
    # download: tests/test_fanout_and_faults.py drives that against a Hub double
    # a base-model mismatch, and a local base that is not on this machine
    assert "different base model" in _one_line_error(
        capsys, ["edit", "--run", str(folder), "--prompt", "x", "--model", str(tiny_sd_v)])
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    cfg["model"] = "/elsewhere/my-finetuned-sd"
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    err = _one_line_error(capsys, ["edit", "--run", str(folder), "--prompt", "x"])
    assert "local base model /elsewhere/my-finetuned-sd" in err and "--model" in err


def test_open_hub_job_gives_a_session_run_folder_that_edits(tuned, tmp_path, monkeypatch):
    import huggingface_hub

    from vcstudio.config import EditConfig
    from vcstudio.jobs import studio as make_studio
    from vcstudio.jobs.edit import EditJobConfig
    from vcstudio.jobs.open_hub import OpenHubConfig

    folder = tmp_path / "pushed"
    assert main(["push", str(tuned), "--to-folder", str(folder)]) == 0
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(folder))
    st = make_studio(tmp_path / "data", device="cpu")
    try:
        sid = st.new_session().id
        res = st.run("open_hub", OpenHubConfig("hf://me/my-run"), sid)
        assert res.run_dir.is_relative_to(st.session(sid).outputs)
        assert (res.prompt, res.method, res.steps) == ("a red circle", "baseline", 3)
        ed = st.run("edit", EditJobConfig(run=str(res.run_dir), edit=EditConfig(
            prompt="a blue square", steps=2, guidance=3.0)), sid)
        assert ed.frames.shape == (4, 32, 32, 3)
        with pytest.raises(Exception, match="not a Hub repo id"):
            st.run("open_hub", OpenHubConfig("/etc"), sid)
    finally:
        st.close()


def test_edit_tab_push_uses_the_visitors_login_and_is_private(tuned, tmp_path, fake_api):
    from types import SimpleNamespace

    from vcstudio.jobs import studio as make_studio
    from vcstudio.ui import edit_tab

    st = make_studio(tmp_path / "data", device="cpu", public=True)
    try:
        sid = st.new_session().id
        run = st.session(sid).outputs / "run"
        shutil.copytree(tuned, run)
        with pytest.raises(Exception, match="Log in with the Hugging Face button"):
            edit_tab.push_handler(st, sid, str(run), "me/run", "", False, None)
        msg = edit_tab.push_handler(st, sid, str(run), "me/run", "", False,
                                    SimpleNamespace(token="hf_oauth"))
        assert "in one commit" in msg and "(private)" in msg
        log = [e for e in fake_api.log if e != ("init", None)]  # gradio's own HfApi()
        assert log[:2] == [("init", "hf_oauth"), ("create_repo", "me/run", True)]
        assert [e[0] for e in fake_api.log].count("create_commit") == 1
        # the token never reaches the run store
        assert all("hf_oauth" not in json.dumps(j.params) for j in st.store.jobs())
    finally:
        st.close()


def test_sign_in_is_offered_only_where_gradio_can_start_it(monkeypatch):
    """With gradio's oauth extra installed but no OAUTH_CLIENT_ID (a public studio off a Space),
    Gradio would refuse to start the app: the login button needs both."""
    import importlib.util

    from vcstudio.ui.edit_tab import _oauth_available

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda m, *a: object() if m in ("authlib", "itsdangerous")
                        else real(m, *a))
    monkeypatch.delenv("OAUTH_CLIENT_ID", raising=False)
    assert not _oauth_available()
    monkeypatch.setenv("OAUTH_CLIENT_ID", "space-client-id")
    assert _oauth_available()


def test_push_offline_answers_within_two_seconds(tuned, tmp_path, monkeypatch, capsys):
    import socket
    import time

    with socket.socket() as sock:  # a port nothing listens on: the Hub is unreachable
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    t0 = time.perf_counter()
    err = _one_line_error(capsys, ["push", str(tuned), "--repo", "me/run", "--token", "t"])
    assert "Cannot reach the Hugging Face Hub" in err and "--to-folder" in err
    assert time.perf_counter() - t0 < 2.5
