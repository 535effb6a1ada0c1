"""What one request may make the server do, checked before it does it (fan-out caps, Hub
downloads), and the faults a stranger or a full disk can cause: one-line answers, nothing of
anyone's lost or half-written."""
from __future__ import annotations

import errno
import time
from pathlib import Path

import numpy as np
import pytest

from vcstudio.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tiny_sd, tmp_path_factory):
    """Two finished tiny runs (A with an edit) and A's upload written to a folder."""
    import os

    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip

    root = tmp_path_factory.mktemp("fanout")
    old = os.environ.get("VCSTUDIO_DATA")
    os.environ["VCSTUDIO_DATA"] = str(root / "data")
    try:
        clip = write_mp4(moving_shape_clip(4, 32, dx=3.0), root / "c.mp4")
        out = {}
        for name in ("a", "b"):
            out[name] = root / f"run-{name}"
            assert main(["tune", "--video", str(clip), "--prompt", "a red circle", "--model",
                         str(tiny_sd), "--frames", "4", "--stride", "1", "--size", "32",
                         "--steps", "3", "--inversion-steps", "2", "--out",
                         str(out[name])]) == 0
        assert main(["push", str(out["a"]), "--to-folder", str(root / "pushed")]) == 0
    finally:
        if old is None:
            os.environ.pop("VCSTUDIO_DATA", None)
        else:
            os.environ["VCSTUDIO_DATA"] = old
    out["pushed"], out["clip"] = root / "pushed", clip
    return out


def _one_line_error(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()  # progress bars above, then the error
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("error: "), err
    return last


# ----------------------------------------------------------------------------- fan-out caps

def test_a_huge_sweep_grid_is_refused_by_its_count_before_it_is_built(tmp_path):
    from vcstudio.config import Limits
    from vcstudio.jobs.sweep import SweepConfig, validate

    grid = {"tune": {"seed": list(range(100)), "lr": [1e-5 * (i + 1) for i in range(100)],
                     "steps": list(range(1, 101)), "data": {"n_frames": list(range(1, 101)),
                                                            "stride": list(range(1, 101))}}}
    for yes, limit in ((False, Limits().max_sweep_cells), (True, Limits().max_sweep_cells),
                       (True, 16)):
        t0 = time.perf_counter()
        with pytest.raises(Exception, match="10000000000 cells"):
            validate(SweepConfig(grid=grid, yes=yes), Limits(max_sweep_cells=limit))
        assert time.perf_counter() - t0 < 1.0


def test_compare_fan_out_is_capped_on_the_public_tier_and_duplicates_run_once():
    from vcstudio.config import Limits
    from vcstudio.jobs.compare import CompareConfig, validate, variant_count, variants
    from vcstudio.space import CPU_LIMITS, PUBLIC_FANOUT

    public = Limits(**{**CPU_LIMITS.__dict__, **PUBLIC_FANOUT})
    base = dict(video="c.mp4", prompt="a", edit_prompt="b", frames=4, size=64, steps=10)
    same = CompareConfig(variants=["dct"] * 200, **base)
    with pytest.raises(Exception, match="at most 8"):
        validate(same, public)  # a 200-name list is refused outright
    assert variant_count(CompareConfig(variants=["dct"] * 20, **base)) == 1
    assert len(variants(CompareConfig(variants=["dct", "dct", "baseline"], seeds=[1, 1, 2],
                                      **base))) == 4  # 2 methods x 2 seeds
    seeds = CompareConfig(variants=["baseline"], seeds=list(range(9)), **base)
    with pytest.raises(Exception, match="makes 9 variants.*at most 8"):
        validate(seeds, public)
    validate(CompareConfig(variants=["baseline"], seeds=list(range(8)), **base), public)


def test_long_video_windows_and_candidates_are_capped():
    from vcstudio.config import Limits, LongConfig
    from vcstudio.jobs.long import LongJobConfig, validate
    from vcstudio.pipelines.long.windows import window_count, window_starts

    for frames, window, stride in ((32, 8, 4), (33, 8, 4), (8, 8, 8), (100, 16, 5)):
        assert window_count(frames, window, stride) == len(window_starts(frames, window, stride))
    lim = Limits(max_windows=10, max_candidates=5)
    with pytest.raises(Exception, match="make 2497 windows.*at most 10"):
        validate(LongJobConfig("run", LongConfig(prompts=["a"], frames=10000, window=16,
                                                 stride=4)), lim)
    with pytest.raises(Exception, match="candidates"):
        validate(LongJobConfig("run", LongConfig(prompts=["a"], frames=16, window=8, stride=4,
                                                 masks=True)), Limits(max_candidates=3))


# ----------------------------------------------------------------------------- push --to-folder

def test_push_to_folder_never_overwrites_another_run(runs, tmp_path, capsys):
    b = runs["b"]
    before = {p.relative_to(b): p.read_bytes() for p in sorted(b.rglob("*")) if p.is_file()}
    err = _one_line_error(capsys, ["push", str(runs["a"]), "--to-folder", str(b)])
    assert "is a tuned run" in err
    err = _one_line_error(capsys, ["push", str(runs["a"]), "--to-folder", str(b), "--overwrite"])
    assert "is a tuned run" in err
    after = {p.relative_to(b): p.read_bytes() for p in sorted(b.rglob("*")) if p.is_file()}
    assert after == before  # byte-identical
    # an existing file, the run itself, a system folder: one line each
    f = tmp_path / "file.txt"
    f.write_text("x")
    for target, words in ((f, "is a file"), (runs["a"], "the run itself"),
                          (Path("/proc/self"), "system folder")):
        assert words in _one_line_error(capsys, ["push", str(runs["a"]), "--to-folder",
                                                 str(target)])
    # a non-empty folder only with --overwrite, replaced whole
    full = tmp_path / "full"
    full.mkdir()
    (full / "old.txt").write_text("old")
    assert "--overwrite" in _one_line_error(capsys, ["push", str(runs["a"]), "--to-folder",
                                                     str(full)])
    assert (full / "old.txt").read_text() == "old"
    assert main(["push", str(runs["a"]), "--to-folder", str(full), "--overwrite"]) == 0
    assert not (full / "old.txt").exists() and (full / "delta.safetensors").is_file()
    assert not list(tmp_path.glob(".full.*"))  # no temp folder left beside it


# ----------------------------------------------------------------------------- out of disk

def test_a_full_disk_ends_a_tune_with_one_line_and_a_checkpoint_to_resume(
        tiny_sd, runs, tmp_path, monkeypatch, capsys):
    """The OS-level save fails as a full disk does (safetensors' writer raising ENOSPC for the
    delta; never a double of our own writer): one line saying how much space the run needs,
    the step kept as a checkpoint, nothing half-written; once space is back the tune resumes
    and finishes. A tune shorter than the checkpoint interval is covered too."""
    import safetensors.torch

    real = safetensors.torch.save_file

    def full_disk(tensors, filename, metadata=None):
        if "delta" in Path(filename).name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    out = tmp_path / "run"
    argv = ["tune", "--video", str(runs["clip"]), "--prompt", "a red circle", "--model",
            str(tiny_sd), "--frames", "4", "--stride", "1", "--size", "32", "--steps", "3",
            "--inversion-steps", "2", "--out", str(out)]
    err = _one_line_error(capsys, argv)
    assert "Out of disk space" in err and "MB" in err and "step 3 is kept" in err, err
    assert (out / "checkpoint.safetensors").is_file() and not (out / "delta.safetensors").exists()
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]  # nothing half-written
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    assert main(argv) == 0  # space is back: the same command resumes at step 3 and finishes
    assert (out / "delta.safetensors").is_file() and not (out / "checkpoint.safetensors").exists()


# ----------------------------------------------------------------------------- /open_hub

def test_open_hub_lists_first_refuses_non_runs_and_big_runs_and_fetches_only_a_run(
        runs, hub_double, tmp_path):
    hub = hub_double
    from vcstudio.config import Limits
    from vcstudio.jobs import studio as make_studio
    from vcstudio.jobs.open_hub import OpenHubConfig

    hub.add_sizes("big/model", {"model.safetensors": 40 * 2**30, "config.json": 500})
    hub.add_sizes("big/run", {"config.yaml": 900, "delta.safetensors": 3 * 2**30,
                              "clip-latents.safetensors": 2**20})
    hub.add_folder("me/run", runs["pushed"])
    hub.repos["me/run"]["weights-of-something-else.bin"] = b"\0" * 4096  # never fetched
    st = make_studio(tmp_path / "data", device="cpu", limits=Limits(max_hub_run_mb=2048))
    try:
        sid = st.new_session().id
        with pytest.raises(Exception, match="is not a vcstudio run"):
            st.run("open_hub", OpenHubConfig("hf://big/model"), sid)
        with pytest.raises(Exception, match=r"3073 MB; this studio opens runs of at most 2048 MB"):
            st.run("open_hub", OpenHubConfig("big/run"), sid)
        assert hub.downloads() == []  # both refused from the listing alone
        res = st.run("open_hub", OpenHubConfig("hf://me/run"), sid)
        fetched = {p.rsplit("/", 1)[-1] for p in hub.downloads()}
        assert "weights-of-something-else.bin" not in fetched
        assert {"config.yaml", "delta.safetensors", "clip-latents.safetensors"} <= fetched
        assert (res.run_dir / "delta.safetensors").is_file()
        assert res.run_dir.is_relative_to(st.session(sid).outputs)
        with pytest.raises(Exception, match="No Hub repo no/such"):
            st.run("open_hub", OpenHubConfig("no/such"), sid)
    finally:
        st.close()


def test_open_hub_offline_answers_within_two_seconds(tmp_path, monkeypatch):
    from vcstudio.jobs import studio as make_studio
    from vcstudio.jobs.open_hub import OpenHubConfig

    import socket

    with socket.socket() as sock:  # a port nothing listens on: the Hub is unreachable
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    st = make_studio(tmp_path / "data", device="cpu")
    try:
        t0 = time.perf_counter()
        with pytest.raises(Exception, match="Cannot reach the Hugging Face Hub"):
            st.run("open_hub", OpenHubConfig("hf://me/run"), st.new_session().id)
        assert time.perf_counter() - t0 < 2.5
    finally:
        st.close()
