"""Run store: round trip, WAL, migrations, atomic artifacts, crash/restart recovery."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from vcstudio.config import TuneConfig
from vcstudio.errors import InputError
from vcstudio.store import MIGRATIONS, SCHEMA_VERSION, Store, atomic_path, default_data_dir

REPO = Path(__file__).resolve().parents[1]


def test_run_round_trip_metrics_and_exports(tmp_path):
    with Store(tmp_path) as st:
        cfg = TuneConfig(method="dct", seed=7)
        a = st.create_run("tune", cfg, seed=7, device="cpu", clip_hash="abc", label="dct run")
        b = st.create_run("tune", TuneConfig(method="baseline"), seed=7, clip_hash="abc")
        c = st.create_run("edit", {"prompt": "a jeep"}, seed=1, parent_run=a.id)
        st.add_frame_metrics(a.id, "clip_text", [0.25, 0.5, 0.75], model="ViT-B-32")
        st.add_frame_metrics(a.id, "clip_text", [0.9], model="ViT-B-32", start=1)  # replaces 1
        st.add_video_metrics(a.id, {"clip_text": 0.6, "fci": 0.9})
        st.add_video_metrics(b.id, {"clip_text": 0.4})
        st.finish_run(a.id)

        r = st.run(a.id)
        assert r.config["method"] == "dct" and r.config["dct"]["clws"] == "mul-fourier"
        assert r.seed == 7 and r.device == "cpu" and r.clip_hash == "abc" and r.finished
        assert "torch" in r.versions and "numpy" in r.versions
        assert (tmp_path / r.run_dir).is_dir()
        assert st.frame_metrics(a.id) == {"clip_text[ViT-B-32]": [0.25, 0.9, 0.75]}
        # a pair metric has no value at frame 0 (NaN): it is stored without it, read back as NaN
        st.add_frame_metrics(b.id, "warp_error", [float("nan"), 0.1, 0.2])
        st.add_video_metrics(b.id, {"lpips": float("nan")})
        wf = st.frame_metrics(b.id)["warp_error"]
        assert math.isnan(wf[0]) and wf[1:] == [0.1, 0.2]
        assert "lpips" not in st.video_metrics([b.id])[b.id]

        assert [x.id for x in st.list_runs(method="dct")] == [a.id]
        assert {x.id for x in st.list_runs(clip_hash="abc")} == {a.id, b.id}
        assert [x.id for x in st.list_runs(kind="edit")] == [c.id]
        assert [x.id for x in st.list_runs(finished=True)] == [a.id]
        assert [x.id for x in st.list_runs(parent_run=a.id)] == [c.id]
        assert [x.id for x in st.list_runs(text="jeep")] == [c.id]
        assert st.list_runs(method="dct")[0].metrics == {"clip_text": 0.6, "fci": 0.9}
        assert [x.id for x in st.list_runs(limit=2)] == [c.id, b.id]  # newest first

        header, rows = st.metrics_table([a.id, b.id])
        assert header == ["run", "label", "kind", "method", "seed", "clip_text", "fci"]
        assert rows == [[a.id, "dct run", "tune", "dct", 7, 0.6, 0.9],
                        [b.id, "", "tune", "baseline", 7, 0.4, None]]

        text = st.export_csv([a.id, b.id], tmp_path / "out.csv")
        got = list(csv.reader(io.StringIO((tmp_path / "out.csv").read_text(), newline="")))
        assert got[0] == header and got[2] == [b.id, "", "tune", "baseline", "7", "0.4", ""]
        assert text.encode() == (tmp_path / "out.csv").read_bytes()
        long = list(csv.reader(io.StringIO(st.export_csv([a.id], per_frame=True))))
        assert long[1:] == [[a.id, "clip_text", "ViT-B-32", str(i), str(v)]
                            for i, v in enumerate([0.25, 0.9, 0.75])]

        st.write_artifact_json(a.id, "config.json", cfg)
        js = st.export_json([a.id], tmp_path / "out.json")
        on_disk = json.loads((tmp_path / "out.json").read_text())
        assert on_disk == json.loads(json.dumps(js))
        assert on_disk["runs"][0]["artifacts"] == [{"kind": "json",
                                                    "path": f"runs/{a.id}/config.json"}]
        assert on_disk["runs"][0]["frame_metrics"]["clip_text[ViT-B-32]"][1] == 0.9


def test_wal_mode_and_concurrent_reader(tmp_path):
    st = Store(tmp_path)
    assert st.journal_mode == "wal"
    run = st.create_run("tune", {}, seed=1)
    # a second process-like reader sees committed data while the store holds a write lock
    other = sqlite3.connect(st.path)
    with st._tx() as db:
        db.execute("UPDATE runs SET label='pending' WHERE id=?", (run.id,))
        assert other.execute("SELECT label FROM runs").fetchone()[0] == ""  # no block, old view
    assert other.execute("SELECT label FROM runs").fetchone()[0] == "pending"
    other.close()
    st.close()


def test_migrate_from_empty_db(tmp_path):
    with Store(tmp_path) as st:
        assert st.schema_version == SCHEMA_VERSION == 3
        tables = {r[0] for r in st._q("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"jobs", "runs", "frame_metrics", "video_metrics", "artifacts",
                "job_events"} <= tables
    with Store(tmp_path) as st:  # re-opening a current store migrates nothing
        assert st.schema_version == SCHEMA_VERSION


def test_migrate_from_v1_db_keeps_data(tmp_path):
    db = sqlite3.connect(tmp_path / Store.DB_NAME)
    db.executescript(MIGRATIONS[0])
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO runs (id, kind, config, seed, run_dir, created, finished) "
               "VALUES ('r1', 'tune', '{\"method\": \"apla\"}', 5, 'runs/r1', 1.0, 2.0)")
    db.execute("INSERT INTO video_metrics VALUES ('r1', 'fci', 0.75, '')")
    db.execute("INSERT INTO jobs (id, kind, status, created, updated, run_id) "
               "VALUES ('j1', 'tune', 'running', 1.0, 1.0, 'r1')")
    db.commit()
    db.close()
    with Store(tmp_path) as st:
        assert st.schema_version == 3
        r = st.run("r1")
        assert (r.kind, r.seed, r.method, r.finished, r.label) == ("tune", 5, "apla", 2.0, "")
        assert st.video_metrics(["r1"]) == {"r1": {"fci": 0.75}}
        # a v1 job has no owner: nobody can still run it, so it is resumable after migration
        assert [(j.id, j.status, j.params) for j in st.resumable_jobs()] == [
            ("j1", "interrupted", {})]
        assert r.job_id is None and st.run_status(r) == "interrupted"  # v3: its job, by run_id
        st.add_event("j1", 3, 10, "tune", "step 3", {"loss": 0.5})  # v2 table works
        assert st.job("j1").progress == pytest.approx(0.3)


def test_newer_schema_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / Store.DB_NAME)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(InputError, match="newer vcstudio"):
        Store(tmp_path)


def test_atomic_artifact_writes(tmp_path):
    with Store(tmp_path) as st:
        run = st.create_run("edit", {}, seed=0)
        target = st.write_artifact_bytes(run.id, "json", "result.json", b'{"v": 1}')
        assert target.read_bytes() == b'{"v": 1}'

        seen = {}

        def broken(tmp: Path):
            seen["suffix"] = tmp.suffix
            seen["target_during_write"] = target.read_bytes()
            tmp.write_bytes(b'{"v": 2')  # half written ...
            raise OSError("disk full")  # ... then the writer dies

        with pytest.raises(OSError, match="disk full"):
            st.write_artifact(run.id, "json", "result.json", broken)
        assert seen == {"suffix": ".json", "target_during_write": b'{"v": 1}'}
        with open(target, "rb") as reader:  # a reader holding the old version ...
            st.write_artifact_bytes(run.id, "json", "result.json", b'{"v": 3}')
            assert reader.read() == b'{"v": 1}'  # ... keeps reading it whole (rename, no rewrite)
        assert target.read_bytes() == b'{"v": 3}'
        st.write_artifact_bytes(run.id, "json", "result.json", b'{"v": 1}')
        assert target.read_bytes() == b'{"v": 1}'  # the old file is untouched
        assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]  # no temp

        # a real video writer through the helper: the temp name keeps .mp4 for ffmpeg
        import imageio.v2 as iio

        frames = np.zeros((4, 32, 32, 3), np.uint8)
        frames[:, 8:24, 8:24] = 200

        def mp4(tmp: Path):
            iio.mimwrite(tmp, list(frames), fps=8, macro_block_size=1)

        p = st.write_artifact(run.id, "mp4", "edit.mp4", mp4)
        back = np.stack(iio.mimread(p))
        assert back.shape == (4, 32, 32, 3) and abs(int(back[0, 16, 16, 0]) - 200) < 8
        assert st.artifacts(run.id) == [("json", f"runs/{run.id}/result.json"),
                                         ("mp4", f"runs/{run.id}/edit.mp4")]
        assert st.artifacts(run.id, "mp4") == [("mp4", f"runs/{run.id}/edit.mp4")]

        for bad in ("../escape.json", "/tmp/x.json", "sub/dir.json", ".tmp-x.json"):
            with pytest.raises(InputError):
                st.write_artifact_bytes(run.id, "json", bad, b"{}")

    with pytest.raises(OSError, match="no file"):  # a writer that forgot to write
        with atomic_path(tmp_path / "x.bin") as tmp:
            tmp.unlink()
    assert not (tmp_path / "x.bin").exists()


_CRASHER = textwrap.dedent("""
    import os, sys
    from vcstudio.store import Store
    st = Store(sys.argv[1])
    run = st.create_run("tune", {"method": "dct"}, seed=3, clip_hash="c0ffee")
    st.add_video_metrics(run.id, {"fci": 0.5})
    st.write_artifact_bytes(run.id, "delta", "delta.safetensors", b"tensors")
    st.finish_run(run.id)
    done = st.add_job("tune", "s1", params={"steps": 10}, run_id=run.id)
    st.update_job(done, status="done", progress=1.0)
    live = st.add_job("tune", "s1", params={"steps": 500})
    st.update_job(live, status="running")
    st.add_event(live, 40, 500, "tune", "step 40", {"loss": 0.125})
    st.update_job(live, checkpoint="runs/x/ckpt-40.safetensors")
    queued = st.add_job("edit", "s2")
    print(run.id, done, live, queued, flush=True)
    os._exit(1)  # a crash: no close(), no cleanup
""")


def test_restart_after_crash_keeps_finished_and_lists_unfinished(tmp_path):
    out = subprocess.run([sys.executable, "-c", _CRASHER, str(tmp_path)], capture_output=True,
                         text=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": ""},
                         timeout=60)
    assert out.returncode == 1, out.stderr
    run_id, done, live, queued = out.stdout.split()
    with Store(tmp_path) as st:
        r = st.run(run_id)
        assert r.finished is not None and r.clip_hash == "c0ffee" and r.config == {
            "method": "dct"}
        assert st.video_metrics([run_id]) == {run_id: {"fci": 0.5}}
        (kind, rel), = st.artifacts(run_id)
        assert (tmp_path / rel).read_bytes() == b"tensors"
        assert st.job(done).status == "done"
        res = {j.id: j for j in st.resumable_jobs()}
        assert set(res) == {live, queued}
        assert res[live].status == "interrupted" and res[live].params == {"steps": 500}
        assert res[live].checkpoint == "runs/x/ckpt-40.safetensors"
        assert res[live].step == 40 and res[live].progress == pytest.approx(0.08)
        assert st.events(live)[0]["metrics"] == {"loss": 0.125}
        st.mark_resumed(live, st.add_job("tune", "s1"))
        assert [j.id for j in st.resumable_jobs()] == [queued]


def test_clean_restart_and_live_owner_untouched(tmp_path):
    st = Store(tmp_path)
    finished = st.add_job("eval", "s")
    st.update_job(finished, status="done")
    running = st.add_job("tune", "s")
    st.update_job(running, status="running")
    # a job left by an earlier process that had our pid (containers restart with the same pid)
    recycled = st.add_job("tune", "s")
    st._q("UPDATE jobs SET status='running', owner=? WHERE id=?",
          (f"{socket.gethostname()}:{os.getpid()}:0ld0ne", recycled))
    other = Store(tmp_path)  # a second live store (another app on the same folder)
    assert [j.id for j in other.resumable_jobs()] == [recycled]
    assert other.job(running).status == "running"  # the live one's job is left alone
    st.close()
    other.close()
    with Store(tmp_path) as again:
        assert again.job(finished).status == "done"
        assert {j.id for j in again.resumable_jobs()} == {running, recycled}


def test_threads_write_concurrently(tmp_path):
    with Store(tmp_path) as st:
        jobs = [st.add_job("tune", f"s{i}") for i in range(4)]

        def work(j):
            for k in range(50):
                st.add_event(j, k + 1, 50, "tune", "", {"loss": 1.0 / (k + 1)})

        threads = [threading.Thread(target=work, args=(j,)) for j in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for j in jobs:
            ev = st.events(j)
            assert [e["step"] for e in ev] == list(range(1, 51))
            assert st.job(j).progress == 1.0


def test_default_data_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("VCSTUDIO_DATA", str(tmp_path / "d"))
    assert default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("VCSTUDIO_DATA")
    assert default_data_dir().name == "vcstudio"


def test_unknown_kind_refused(tmp_path):
    with Store(tmp_path) as st:
        with pytest.raises(InputError, match="tune, edit, long"):
            st.add_job("train")
        with pytest.raises(InputError, match="No run"):
            st.run("nope")


def test_runs_cli_lists_and_exports(tmp_path):
    import argparse

    from vcstudio.cli import runs as runs_cli

    with Store(tmp_path / "d") as st:
        a = st.create_run("tune", {"method": "dct"}, seed=3, label="first")
        st.add_video_metrics(a.id, {"fci": 0.25})
        st.finish_run(a.id)
        st.create_run("edit", {"prompt": "x"}, seed=4)
        out_dir = tmp_path / "elsewhere" / "run"  # a run written outside the data folder
        b = st.create_run("tune", {"method": "baseline"}, run_dir=out_dir)
    p = argparse.ArgumentParser()
    runs_cli.add(p.add_subparsers(dest="cmd"))
    buf = io.StringIO()
    args = p.parse_args(["runs", "--data", str(tmp_path / "d"), "--method", "dct", "--csv",
                         str(tmp_path / "m.csv"), "--json", str(tmp_path / "m.json")])
    assert runs_cli.run(args, out=buf) == 0
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith(a.id) and "dct" in lines[0] and "fci=0.25" in lines[0]
    assert "seed=3 done" in lines[0] and len(lines) == 1
    rows = list(csv.reader(io.StringIO((tmp_path / "m.csv").read_text(), newline="")))
    assert rows == [["run", "label", "kind", "method", "seed", "fci"],
                    [a.id, "first", "tune", "dct", "3", "0.25"]]
    doc = json.loads((tmp_path / "m.json").read_text())  # a JSON list, one object per run
    assert [r["id"] for r in doc] == [a.id]
    assert doc[0]["method"] == "dct" and doc[0]["status"] == "done"
    assert doc[0]["run_dir"] == str(tmp_path / "d" / "runs" / a.id)
    # --json without a path: the list on stdout; the outside run by its absolute path
    import contextlib

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert runs_cli.run(p.parse_args(["runs", "--data", str(tmp_path / "d"), "--json"]),
                            out=io.StringIO()) == 0
    doc = json.loads(buf.getvalue())
    assert {r["id"] for r in doc} == {a.id, b.id} | {r["id"] for r in doc if r["kind"] == "edit"}
    assert next(r for r in doc if r["id"] == b.id)["run_dir"] == str(out_dir.resolve())
    buf = io.StringIO()
    assert runs_cli.run(p.parse_args(["runs", "--data", str(tmp_path / "d"), "--resumable"]),
                        out=buf) == 0
    assert buf.getvalue() == ""
