"""Item 10 of issue 19: damaged run files, non-UTF-8 prompts and broken clips are one-line
InputErrors that say what to do, and the damaged file is left as it was."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from vcstudio.config import DataConfig, EditConfig, TuneConfig, check_prompt, to_dict
from vcstudio.runs.tav_import import load_tune_config
from vcstudio.errors import InputError
from vcstudio.io import write_mp4
from vcstudio.io.synthetic import moving_shape_clip
from vcstudio.models.delta import load_tensors, save_tensors
from vcstudio.run_context import RunContext
from vcstudio.runs.folder import RunFolder

pytestmark = pytest.mark.usefixtures("one_thread")


def one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------ prompts

@pytest.mark.parametrize("text,msg", [
    ("\udcff\udcfe", r"not valid UTF-8 text \(the byte 0xff at character 1\)"),
    ("a car\ud800", r"unpaired surrogate U\+D800 at character 6"),
    ("   ", "is empty: describe what the video should show"),
    (None, "is empty"),
    ("a\x00b", "NUL character"),
    ("x" * 10001, "10001 characters long"),
    (b"bytes", "must be text"),
])
def test_check_prompt_refuses(text, msg):
    with pytest.raises(InputError, match=msg) as e:
        check_prompt(text)
    assert "retype" in one_line(e) or "empty" in str(e.value) or "text" in str(e.value) \
        or "keep it" in str(e.value)


def test_check_prompt_accepts_unicode_and_optional_empty():
    assert check_prompt("une Porsche sur la plage, été 🚗") == "une Porsche sur la plage, été 🚗"
    assert check_prompt("", "negative prompt", required=False) == ""


def test_edit_and_tune_validation_use_it():
    from vcstudio.pipelines.edit.edits import validate_edit
    from vcstudio.pipelines.tune.loop import _validate

    with pytest.raises(InputError, match="edit prompt is not valid UTF-8"):
        validate_edit(EditConfig(prompt="\udcff"))
    with pytest.raises(InputError, match="negative prompt is not valid UTF-8"):
        validate_edit(EditConfig(prompt="a car", negative="\udcfe"))
    with pytest.raises(InputError, match="source prompt is not valid UTF-8"):
        _validate(TuneConfig(data=DataConfig(prompt="\udcff")))


def test_an_edit_is_checked_in_one_place_the_job_and_the_pipeline_alike(tmp_path):
    """One validate_edit (pipelines/edit/edits.py): the edit job's validate step names the settings
    under ``edit.``; the pipeline's own input check says the same without it."""
    from vcstudio.config import Limits
    from vcstudio.jobs import edit as edit_job
    from vcstudio.pipelines.edit.edits import validate_edit

    assert not hasattr(edit_job, "validate_edit")
    for bad, pattern in ((dict(steps=0), r"steps \(--steps\) must be within 1\.\.\d+; got 0"),
                         (dict(guidance=51.0), r"guidance \(--guidance\) must be within \[0, 50\]"),
                         (dict(seed=-1), r"seed \(--seed\) must be within 0\.\."),
                         (dict(eta=2.0), r"eta must be within \[0, 1\]")):
        e = EditConfig(prompt="a car", **bad)
        with pytest.raises(InputError, match="^" + pattern):
            validate_edit(e)
        with pytest.raises(InputError, match="^edit\\." + pattern):
            edit_job.validate(edit_job.EditJobConfig(run=str(tmp_path), edit=e), Limits())
    validate_edit(EditConfig(prompt="a car", steps=1, guidance=0.0, eta=1.0))


def test_encode_prompts_is_the_backstop(tiny_sd, cache):
    from vcstudio.models.loading import load_base
    from vcstudio.models.encode import encode_prompts

    base = load_base(str(tiny_sd), torch.device("cpu"), torch.float32, cache)
    with pytest.raises(InputError, match="not valid UTF-8"):
        encode_prompts(base, ["a story \udcff"])


# ------------------------------------------------------------------ safetensors files

@pytest.fixture
def tensors():
    g = torch.Generator().manual_seed(0)
    return {"a": torch.randn(64, 64, generator=g), "b": torch.randn(8, generator=g).bfloat16()}


@pytest.mark.parametrize("cut", [0, 5, 100, "half", -1])
def test_cut_short_delta(tmp_path, tensors, cut):
    p = save_tensors(tmp_path / "delta.safetensors", tensors, {"base_model": "x"})
    data = p.read_bytes()
    n = len(data) // 2 if cut == "half" else cut % len(data)
    p.write_bytes(data[:n])
    with pytest.raises(InputError) as e:
        load_tensors(p)
    msg = one_line(e)
    assert msg.startswith("delta.safetensors in ") and "is damaged" in msg
    assert "left as it is" in msg and "tune again into a new folder" in msg
    assert p.read_bytes() == data[:n]  # nothing touched


def test_damaged_in_place_is_caught_by_the_checksum(tmp_path, tensors):
    p = save_tensors(tmp_path / "inversion-10.safetensors", tensors)
    data = bytearray(p.read_bytes())
    data[-3] ^= 0xFF  # same length, one flipped byte inside the tensor data
    p.write_bytes(bytes(data))
    with pytest.raises(InputError) as e:
        load_tensors(p)
    assert "do not match the checksum" in one_line(e)
    assert "delete it: the next edit recomputes it" in str(e.value)


def test_round_trip_and_older_files_without_checksum(tmp_path, tensors):
    from safetensors.torch import save_file

    p = save_tensors(tmp_path / "d.safetensors", tensors, {"config": {"steps": 3}})
    back, meta = load_tensors(p)
    assert meta == {"config": {"steps": 3}}
    assert all(torch.equal(back[k], tensors[k]) for k in tensors)
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={"steps": "3"})
    assert load_tensors(old)[1] == {"steps": 3}
    save_file(tensors, str(old), metadata={"steps": "not json"})
    with pytest.raises(InputError, match="metadata is not valid JSON"):
        load_tensors(old)
    with pytest.raises(InputError, match="missing from"):
        load_tensors(tmp_path / "nope.safetensors")


# ------------------------------------------------------------------ run folder records

def test_damaged_meta_json_is_an_error_and_kept(tmp_path):
    rf = RunFolder(tmp_path)
    rf.meta_path.write_text('{"status": "done", "clip_hash": ')
    with pytest.raises(InputError) as e:
        rf.meta()
    msg = one_line(e)
    assert "meta.json in" in msg and "not valid JSON" in msg and "line 1, column" in msg
    with pytest.raises(InputError):
        rf.update_meta(status="running")  # never overwrites what it could not read
    assert rf.meta_path.read_text() == '{"status": "done", "clip_hash": '
    rf.meta_path.write_text("[1, 2]")
    with pytest.raises(InputError, match="holds a list, not an object"):
        rf.meta()
    rf.meta_path.write_bytes(b'{"prompt": "\xff"}')
    with pytest.raises(InputError, match="not UTF-8 text"):
        rf.meta()


def test_damaged_config_yaml_one_line_and_restorable(tmp_path, tensors):
    rf = RunFolder(tmp_path)
    cfg = TuneConfig(model="m", data=DataConfig(prompt="a car", width=64, height=32, crop="top"),
                     steps=7)
    save_tensors(rf.delta_path, tensors, {"config": to_dict(cfg)})
    rf.config_path.write_text("model: m\ndata: {prompt: [a car\nsteps: 7\n")
    with pytest.raises(InputError) as e:
        rf.config()
    msg = one_line(e)
    assert "is not valid YAML (line" in msg and "restore_config" in msg
    rf.restore_config()
    assert rf.config() == cfg
    assert (tmp_path / "config.yaml.damaged").read_text().startswith("model: m\ndata: {prompt")


def test_config_yaml_errors_are_one_line(tmp_path):
    p = tmp_path / "c.yaml"
    for text, msg in (("a: [1, 2\nb: 3\n", "is not valid YAML"),
                      ("data: 5\n", "TuneConfig.data must be a mapping"),
                      ("stepz: 5\n", "Unknown TuneConfig keys: stepz")):
        p.write_text(text)
        with pytest.raises(InputError, match=msg) as e:
            load_tune_config(p)
        one_line(e)
    p.write_bytes(b"model: \xff\n")
    with pytest.raises(InputError, match=r"not UTF-8 text \(byte 0xff at offset 7\)"):
        load_tune_config(p)


# ------------------------------------------------------------------ through the jobs' entry points

@pytest.fixture(scope="module")
def tuned_run(tiny_sd, tmp_path_factory):
    from vcstudio.pipelines.tune.loop import tune

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "run"
    data = DataConfig(prompt="a red disc", n_frames=4, width=64, height=64)
    tune(TuneConfig(model=str(tiny_sd), data=data, steps=1, checkpoint_every=0,
                    inversion_steps=2), out, frames=moving_shape_clip(4, 64))
    return out


def damaged_copy(run, tmp_path, what: str):
    dst = tmp_path / f"run-{what}"
    shutil.copytree(run, dst)
    if what == "delta":
        p = dst / "delta.safetensors"
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif what == "meta":
        (dst / "meta.json").write_text('{"status": "done",')
    elif what == "config":
        (dst / "config.yaml").write_text("model: [\n")
    return dst


def test_load_tuned_refuses_cut_short_delta(tuned_run, tmp_path, cache):
    # the lowest public function under edit and long
    from vcstudio.pipelines.tune.loop import load_tuned

    run = damaged_copy(tuned_run, tmp_path, "delta")
    with pytest.raises(InputError, match="delta.safetensors in .* is damaged"):
        load_tuned(run, cache)
    assert load_tuned(tuned_run, cache).run.path == tuned_run


def test_edit_refuses_damaged_meta(tuned_run, tmp_path, cache):
    from vcstudio.pipelines.edit.edits import edit

    run = damaged_copy(tuned_run, tmp_path, "meta")
    with pytest.raises(InputError, match="meta.json in .* is damaged"):
        edit(run, EditConfig(prompt="a blue disc", steps=2), run=RunContext(cache=cache))
    assert not any((run / "edits").glob("*.mp4"))


def cli(*args, timeout=300):
    env = {**os.environ, "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "vcstudio", *args], capture_output=True,
                       timeout=timeout, env=env)
    err = r.stderr.decode("utf-8", "replace")
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2, err[-2000:]
    assert "Traceback" not in err and len(lines) == 1, err[-2000:]
    return lines[0]


@pytest.mark.parametrize("what,expect", [
    ("delta", "error: delta.safetensors in "),
    # the same after-load path as delta, ~13 s of subprocess: run with the slow tests
    pytest.param("meta", "error: meta.json in ", marks=pytest.mark.slow),
    ("prompt", "error: The edit prompt is not valid UTF-8 text (the byte 0xff"),
])
def test_cli_edit_errors(tuned_run, tmp_path, what, expect):
    if what == "prompt":
        line = cli("edit", "--run", str(tuned_run), "--prompt", b"\xff\xfe", "--steps", "2")
    else:
        line = cli("edit", "--run", str(damaged_copy(tuned_run, tmp_path, what)),
                   "--prompt", "a blue disc", "--steps", "2")
    assert line.startswith(expect), line


@pytest.fixture
def mixed_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, f in enumerate(moving_shape_clip(4, 32)):
        Image.fromarray(f if i != 3 else np.zeros((24, 32, 3), np.uint8)).save(
            folder / f"{i}.png")
    return folder


def test_cli_tune_mixed_sizes(mixed_folder, tiny_sd, tmp_path):
    line = cli("tune", "--video", str(mixed_folder), "--prompt", "a disc", "--model",
               str(tiny_sd), "--frames", "4", "--size", "32", "--out", str(tmp_path / "r"))
    assert "must share one size: 0.png is 32x32 but 3.png is 32x24" in line


def test_cli_eval_mixed_sizes(mixed_folder):
    line = cli("eval", str(mixed_folder))
    assert "must share one size" in line


def test_cli_eval_vcd_cut_short_video(tmp_path):
    path = write_mp4(moving_shape_clip(12, 64), tmp_path / "c.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[:800])
    line = cli("eval-vcd", "--video", str(cut), "--encoder", "efficientnet-lite0")
    assert line.startswith("error: Could not open cut.mp4 as a video: it is cut short")
