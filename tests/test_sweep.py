"""`vcstudio sweep`: a grid of tunes as Ray tasks merged into the run store (one local-Ray
test); skip-finished, failed cells and bad input through the same code with the in-process
executor."""
from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from vcstudio.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip

    d = tmp_path_factory.mktemp("clips")
    files = [write_mp4(moving_shape_clip(6, 32, dx=float(dx)), d / f"c{dx}.mp4")
             for dx in (1, 2, 3)]
    broken = d / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 100)  # fails when a cell reads it
    return files, broken


def grid(tiny_sd, video, **tune) -> dict:
    return {"tune": {"model": str(tiny_sd),
                     "data": {"video_path": video, "prompt": "a red circle", "n_frames": 4,
                              "stride": 1, "width": 32, "height": 32},
                     "steps": 2, "inversion_steps": 2, "checkpoint_every": 0, **tune}}


def _cells(folder: Path) -> list[dict]:
    return list(csv.DictReader((folder / "cells.csv").open()))


@pytest.fixture
def local_ray():
    """A local Ray for one test: 2 CPUs, no dashboard, a short temp dir; shut down after."""
    import ray

    from vcstudio.jobs.sweep import _local_env

    tmp = tempfile.mkdtemp(prefix="vcsr", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, log_to_driver=False,
             configure_logging=False, runtime_env={"env_vars": _local_env()})
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def test_ray_sweep_of_a_2x2_grid_records_four_runs(local_ray, tiny_sd, clips, tmp_path):
    from vcstudio.config import Limits
    from vcstudio.jobs import studio
    from vcstudio.jobs.sweep import SweepConfig

    st = studio(tmp_path / "data", limits=Limits())
    try:
        g = grid(tiny_sd, str(clips[0][0]), lr=[1e-3, 1e-4], seed=[1, 2])
        res = st.run("sweep", SweepConfig(grid=g, name="lr-seed"))
        assert [r.status for r in res.results] == ["done"] * 4
        runs = st.store.list_runs(kind="tune")
        assert len(runs) == 4 and {r.parent_run for r in runs} == {res.run_id}
        assert sorted((r.config["lr"], r.seed) for r in runs) == [
            (1e-4, 1), (1e-4, 2), (1e-3, 1), (1e-3, 2)]
        assert all("final_loss" in r.metrics and r.status == "done" for r in runs)
        rows = _cells(res.out_dir)
        assert [(r["lr"], r["seed"], r["status"]) for r in rows] == [
            ("0.001", "1", "done"), ("0.001", "2", "done"), ("0.0001", "1", "done"),
            ("0.0001", "2", "done")]
        docs = [json.loads((Path(r["run_dir"]) / "cell.json").read_text()) for r in rows]
        pids = {d["pid"] for d in docs}
        assert os.getpid() not in pids  # the cells ran in Ray's worker processes
        # a worker that ran several cells found the base model in its cache
        assert sum(d["warm"] for d in docs) >= len(docs) - len(pids)
        # the same grid again: every cell is finished, no task starts, no run is added
        again = st.run("sweep", SweepConfig(grid=g, name="lr-seed"))
        assert [r.status for r in again.results] == ["skipped"] * 4
        assert len(st.store.list_runs()) == 5  # four cells + the sweep
    finally:
        st.close()


def test_failed_cell_keeps_the_others_and_a_rerun_skips_what_finished(tiny_sd, clips,
                                                                      tmp_path, capsys):
    from vcstudio.store import Store

    files, broken = clips
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid(tiny_sd, [*map(str, files), str(broken)])))
    out = tmp_path / "sweep"
    assert main(["sweep", str(path), "--inline", "--out", str(out)]) == 1
    cap = capsys.readouterr()
    assert cap.out.strip().splitlines()[-1] == str(out)
    assert "cell 3 (data.video_path=" in cap.err and "failed" in cap.err
    assert [r["status"] for r in _cells(out)] == ["done", "done", "done", "failed"]
    with Store() as st:
        assert len(st.list_runs(kind="tune")) == 3
        n_runs = len(st.list_runs())
    # the same sweep again: the three finished cells are skipped, the broken one fails again
    assert main(["sweep", str(path), "--inline", "--out", str(out)]) == 1
    assert [r["status"] for r in _cells(out)] == ["skipped", "skipped", "skipped", "failed"]
    with Store() as st:
        assert len(st.list_runs()) == n_runs
    # the Compare tab opens it: its cells side by side with their metrics, best starred
    from vcstudio.jobs.compare import best_table
    from vcstudio.jobs.sweep import finished_sweeps, open_sweep

    with Store() as st:
        (label, sweep_id), = finished_sweeps(st)
        entries = open_sweep(st, sweep_id)
    assert label.startswith("grid") and label.endswith("(incomplete)") and len(entries) == 3
    table = best_table(entries)
    assert table[0] == ["method", "final_loss"] and sum("★" in r[1] for r in table[1:]) == 1


@pytest.mark.parametrize("tune, extra, message", [
    ({"stepz": 1}, [], "Unknown grid field tune.stepz"),
    ({"method": ["baseline", "dctt"]}, [], "Unknown method 'dctt'"),
    ({"seed": []}, [], "The grid is empty: tune.seed is an empty list"),
    ({"seed": list(range(65))}, [], "The grid has 65 cells (more than 64)"),
    ({"steps": [2, -1]}, [], "Grid cell 1 (steps=-1): steps (--steps) must be within 1..5000"),
    ({}, ["--address", "ray://127.0.0.1:9"], "Cannot reach the Ray cluster at ray://127.0.0.1:9"),
])
def test_bad_grids_are_one_line_errors_and_start_nothing(tiny_sd, clips, tmp_path, capsys,
                                                         tune, extra, message):
    from vcstudio.store import Store

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid(tiny_sd, str(clips[0][0]), **tune)))
    assert main(["sweep", str(path), "--out", str(tmp_path / "sweep"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    with Store() as st:
        assert st.list_runs() == []
    assert not (tmp_path / "sweep").exists()


def test_grid_is_the_product_of_its_lists_and_list_fields_vary_by_lists_of_lists():
    from vcstudio.jobs.sweep import expand

    cells = expand({"tune": {"trainable": [["attn1.to_q"], ["attn2.to_q", "temporal"]],
                             "adam_betas": [0.9, 0.99], "seed": [1, 2],
                             "data": {"prompt": "x", "n_frames": [4, 8]}},
                    "edit": {"prompt": ["a", "b"]}})
    assert len(cells) == 16 and len({c.key for c in cells}) == 16
    assert all(c.tune.adam_betas == (0.9, 0.99) for c in cells)  # a list field's own value
    assert cells[0].fields == {"trainable": ["attn1.to_q"], "seed": 1, "data.n_frames": 4,
                               "edit.prompt": "a"}
    assert cells[-1].tune.trainable == ("attn2.to_q", "temporal") and cells[-1].edit.prompt == "b"


def test_grid_file_problems_are_one_line_errors(tmp_path, capsys):
    for text, message in (("tune: [1, 2\n", "not valid YAML (line 2"),
                          ("edit: {prompt: x}\n", "The grid is empty"),
                          ("tune: {steps: 2}\nsweep: 1\n", "Unknown grid section sweep")):
        path = tmp_path / "g.yaml"
        path.write_text(text)
        assert main(["sweep", str(path), "--inline"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
