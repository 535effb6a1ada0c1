"""The job layer end to end on the tiny model: every surface's runs in the store, stop and
resume (also after kill -9), compare, edits that never overwrite each other, and bad input that
is one line naming the setting and its range."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vcstudio.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip

    return write_mp4(moving_shape_clip(8, 64, dx=3.0), tmp_path_factory.mktemp("clip") / "c.mp4")


def _tune_args(tiny_sd, clip_file, *extra):
    return ["tune", "--video", str(clip_file), "--prompt", "a red circle", "--model",
            str(tiny_sd), "--frames", "4", "--stride", "1", "--size", "32", *extra]


def _runs_json(tmp_path, *extra) -> list[dict]:
    out = tmp_path / f"runs-{time.monotonic_ns()}.json"
    assert main(["runs", "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_cli_tune_and_edits_are_runs_in_the_store(tiny_sd, clip_file, tmp_path, capsys):
    """A CLI tune is in `vcstudio runs --json` with its config and run folder (here outside the
    data folder, so absolute); two all-emoji edit prompts give two files and two edit runs."""
    out_dir = tmp_path / "elsewhere" / "run"
    assert main(_tune_args(tiny_sd, clip_file, "--steps", "3", "--out", str(out_dir))) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out_dir)
    for prompt in ("🐱🐱", "🐶🐶"):
        assert main(["edit", "--run", str(out_dir), "--prompt", prompt, "--steps", "2"]) == 0
    edits = sorted(p.name for p in (out_dir / "edits").glob("*.mp4"))
    assert len(edits) == 2, edits
    runs = _runs_json(tmp_path)
    tune = next(r for r in runs if r["kind"] == "tune")
    assert tune["run_dir"] == str(out_dir.resolve()) and tune["status"] == "done"
    assert tune["config"]["data"]["n_frames"] == 4 and tune["config"]["steps"] == 3
    assert tune["method"] == "baseline" and "final_loss" in tune["metrics"]
    edit_runs = [r for r in runs if r["kind"] == "edit"]
    assert sorted(r["config"]["edit"]["prompt"] for r in edit_runs) == ["🐱🐱", "🐶🐶"]
    assert {r["parent_run"] for r in edit_runs} == {tune["id"]}
    # the same flag on stdout: a JSON list there, nothing else
    capsys.readouterr()
    assert main(["runs", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [r["id"] for r in runs]


@pytest.mark.parametrize("argv, message", [
    (["--frames", "-3"], "data.n_frames (--frames) must be within 1..128; got -3."),
    (["--frames", "0"], "data.n_frames (--frames) must be within 1..128; got 0."),
    (["--frames", "500"], "data.n_frames (--frames) must be within 1..128; got 500."),
    (["--size", "-64"], "data.size (--size) must be within 0..1024 (0 = the model's "
                        "native size); got -64."),
    (["--size", "36"], "data.size (--size) must be a multiple of 8 (the VAE's scale); got 36."),
    (["--steps", "0"], "steps (--steps) must be within 1..5000; got 0."),
    (["--lr", "2"], "lr (--lr) must be within (0, 1); got 2.0."),
])
def test_out_of_range_tune_settings_are_one_line_errors(tiny_sd, clip_file, argv, message,
                                                        capsys):
    assert main(_tune_args(tiny_sd, clip_file, *argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: " + message), err


def test_other_bad_inputs_are_one_line_errors(tiny_sd, clip_file, tmp_path, capsys):
    from vcstudio.store import Store

    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\ndata: {video_path: x}\n")
    cases = [
        (["tune", "--config", str(bad)], "line 2"),
        (["long", "--run", str(tmp_path), "--prompts", "a", "b", "--frames", "100000000"],
         "long.frames (--frames) must be within 1..10000; got 100000000."),
        (["resume", "job-nope"], "No job or run 'job-nope' in the run store"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    # resume of a finished tune: nothing to resume, nothing started
    assert main(_tune_args(tiny_sd, clip_file, "--steps", "1", "--out",
                           str(tmp_path / "r"))) == 0
    capsys.readouterr()
    with Store() as st:
        job = st.jobs(status="done")[0].id
        n_jobs = len(st.jobs())
    assert main(["resume", job]) == 2
    assert "finished; there is nothing to resume" in capsys.readouterr().err
    with Store() as st:
        assert len(st.jobs()) == n_jobs


def _delta(run_dir: Path) -> dict:
    from vcstudio.models.delta import load_tensors

    return load_tensors(Path(run_dir) / "delta.safetensors")[0]


def test_killed_cli_tune_is_resumable_and_resume_matches_an_uninterrupted_run(
        tiny_sd, clip_file, tmp_path, capsys):
    """kill -9 a CLI tune after a checkpoint: `runs --resumable` lists it (its process is
    gone), `resume` finishes it, and its delta equals an uninterrupted run's."""
    import torch

    from vcstudio.store import Store

    args = _tune_args(tiny_sd, clip_file, "--steps", "30", "--checkpoint-every", "3",
                      "--inversion-steps", "2")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", "")
           or str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "vcstudio", *args, "--out",
                             str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    st = Store(recover=False)  # a reader beside the CLI's own store
    try:
        deadline = time.monotonic() + 240
        job = None
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
            live = [j for j in st.jobs() if j.kind == "tune" and j.checkpoint]
            if live:
                job = live[0]
                break
        assert job is not None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        st.close()
        if proc.poll() is None:
            proc.kill()
    listed = _runs_json(tmp_path, "--resumable")
    assert [(r["id"], r["status"]) for r in listed] == [(job.id, "interrupted")]
    assert listed[0]["checkpoint"].endswith("checkpoint.safetensors")
    assert 0 < listed[0]["step"] < 30  # cut short mid-run
    capsys.readouterr()
    assert main(["resume", job.id]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / "killed")
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    a, b = _delta(tmp_path / "killed"), _delta(tmp_path / "whole")
    assert sorted(a) == sorted(b)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    assert any(float(torch.as_tensor(b[k]).abs().max()) > 0 for k in b)  # it did train
    runs = {r["run_dir"]: r for r in _runs_json(tmp_path)}
    assert runs[str(tmp_path / "killed")]["status"] == "done"  # the resuming job's status
    assert _runs_json(tmp_path, "--resumable") == []


def test_stop_ends_in_a_clean_stopped_state_that_edits_and_resumes(tiny_sd, clip_file,
                                                                   tmp_path):
    """Stop from the Edit tab's handler: the generator ends normally (no error badges) with
    "Stopped at step k of N", the loss plot, preview and run folder; the stop left a usable
    delta, meta.json and the store say stopped; Resume finishes it."""
    from vcstudio.config import Limits
    from vcstudio.jobs import studio as make_studio
    from vcstudio.ui import edit_tab

    studio = make_studio(tmp_path / "data", limits=Limits(), upload_roots=[clip_file.parent])
    studio.model, studio.embedded = str(tiny_sd), False
    try:
        sid = studio.new_session().id
        gen = edit_tab.tune_handler(studio, sid, str(clip_file), "a red circle", 4, 1, 0, 32,
                                    32, "crop", "center", "baseline", 30, 1e-3, 33, True, True,
                                    True, "mul-fourier", "pure", True, True)
        first = next(gen)  # "Queued…", with the job id the Stop button cancels

        def stop_at_step_3(jid):
            for ev in studio.events(jid):
                if ev.stage == "tune" and ev.step >= 3:
                    studio.cancel(jid)  # the Stop button
                    return

        import threading

        stopper = threading.Thread(target=stop_at_step_3, args=(first[1],))
        stopper.start()
        outs = [first, *gen]
        stopper.join(30)
        _, jid, status, plot, preview, run_dir = outs[-1]
        assert status.startswith("Stopped at step") and status.split()[5] == "30;", status
        assert plot is not None and run_dir
        k = int(status.split()[3])
        assert 3 <= k < 30
        meta = json.loads((Path(run_dir) / "meta.json").read_text())
        assert meta["status"] == "stopped" and meta["steps_done"] == k
        assert studio.store.job(jid).status == "stopped"
        run = studio.store.run_by_dir(run_dir, "tune")
        assert studio.store.run_status(run) == "stopped"
        # the stopped checkpoint is a usable delta: edit from it
        edits = list(edit_tab.edit_handler(studio, sid, run_dir, "a blue square", "", 2, 5.0,
                                           33, True))
        assert edits[-1][2] == "Done." and Path(edits[-1][0]).is_file()
        # and it resumes from the step it stopped at, to the end
        assert [j for _, j in edit_tab.resumable_choices(studio, sid)] == [jid]
        last = list(edit_tab.resume_handler(studio, sid, jid))[-1]
        assert last[2].startswith("Tuned 30 steps") and last[5] == run_dir
        losses = json.loads((Path(run_dir) / "losses.json").read_text())
        assert [r["step"] for r in losses] == list(range(1, 31))
        assert edit_tab.resumable_choices(studio, sid) == []
    finally:
        studio.close()


def test_cli_compare_two_methods_writes_montage_table_and_csv(tiny_sd, clip_file, tmp_path,
                                                              capsys):
    import csv

    from vcstudio.io import read_video

    out = tmp_path / "cmp"
    rc = main(["compare", "--video", str(clip_file), "--prompt", "a red circle",
               "--edit-prompt", "a blue square", "--methods", "baseline,dct-table3-ms",
               "--model", str(tiny_sd), "--frames", "4", "--size", "32", "--steps", "2",
               "--edit-steps", "2", "--metrics", "warp_error,psnr", "--out", str(out)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and lines[-1] == str(out)
    assert lines[0].split()[:3] == ["method", "warp_error", "psnr"]  # the metrics table
    assert sum("★" in line for line in lines) >= 1
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [r["label"] for r in rows] == ["baseline (Tune-A-Video)", "DCT ablation MS"]
    assert [r["method"] for r in rows] == ["baseline", "dct"] and all(r["psnr"] for r in rows)
    doc = json.loads((out / "compare.json").read_text())
    assert len(doc["runs"]) == 2
    montage = read_video(out / "compare.mp4")
    assert montage.shape[0] == 4 and montage.shape[2] > 2 * 32  # two clips side by side
    frames = [read_video(next((out / d).glob("edits/*.mp4"))) for d in
              sorted(p.name for p in out.iterdir() if p.is_dir())]
    assert len(frames) == 2 and not np.array_equal(frames[0], frames[1])
