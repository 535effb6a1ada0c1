"""The app's named API (API.md) driven the way a client drives it: gradio_client against a
launched app, and raw HTTP where a client misbehaves (disconnects mid-job, replays another
visitor's upload path, names a server file)."""
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from app_launch import call, file_data, launch, upload

ROOT = Path(__file__).resolve().parents[1]


def _launch(tiny_sd, data, public: bool):
    return launch(tiny_sd, data, public)


@pytest.fixture(scope="module")
def app(tiny_sd, tmp_path_factory):
    studio, demo, url = _launch(tiny_sd, tmp_path_factory.mktemp("api-data"), public=False)
    yield {"studio": studio, "demo": demo, "url": url}
    demo.close()
    studio.close()
    os.environ.pop("VCSTUDIO_MODEL", None)


@pytest.fixture(scope="module")
def wide_clip(tmp_path_factory):
    """A 2:1 clip (128 x 64): a moving disc beside its mirror image."""
    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip

    clip = moving_shape_clip(8, 64, dx=3.0)
    wide = np.concatenate([clip, clip[:, :, ::-1]], axis=2)
    return write_mp4(wide, tmp_path_factory.mktemp("wide") / "wide.mp4")


def _api_md() -> dict[str, list[str]]:
    """{endpoint: parameter names} from the tables of API.md (the contract)."""
    text = (ROOT / "API.md").read_text()
    out, name = {}, None
    for line in text.splitlines():
        m = re.match(r"### `(/\w+)`", line)
        if m:
            name = m.group(1)
            out[name] = []
            continue
        m = re.match(r"\| (\w+) \|", line)
        if name and m and m.group(1) != "param":
            out[name].append(m.group(1))
    # "/mask_preview: as /long without use_masks, tune_steps and structure"
    out["/mask_preview"] = [p for p in out["/long"]
                            if p not in ("use_masks", "tune_steps", "structure")]
    out["/long_control_preview"] = out["/control_preview"]  # "as /control_preview"
    return out


def test_every_endpoint_is_named_with_the_parameters_of_api_md(app):
    from gradio_client import Client

    info = Client(app["url"], verbose=False).view_api(return_format="dict", print_info=False)
    named = info["named_endpoints"]
    assert not info["unnamed_endpoints"]
    text = json.dumps(info)
    for bad in (r"param_\d", r"lambda", r"_prev_\d", r"value_\d"):
        assert not re.search(bad, text), bad
    got = {k: [p["parameter_name"] for p in v["parameters"]] for k, v in named.items()}
    assert got == _api_md()
    # every parameter but the files and the ids a job hands out has a default
    required = {k: [p["parameter_name"] for p in v["parameters"]
                    if not p["parameter_has_default"]] for k, v in named.items()}
    assert required["/tune"] == ["clip"] and required["/preview"] == ["clip"]
    assert required["/long_plan"] == [] and required["/stop"] == []


def test_jobs_queue_per_device_and_the_rest_answer_beside_them(app):
    """One Gradio concurrency group per device, one event at a time, a bounded queue; the
    quick endpoints are outside that group."""
    from vcstudio.ui.common import QUEUE_MAX

    demo = app["demo"]
    fns = {f.api_name: f for f in demo.fns.values() if isinstance(f.api_name, str)}
    jobs = ("tune", "resume", "edit", "long", "mask_preview", "score_vcd", "i2v", "i2v_tune",
            "compare", "open_tav")
    for name in jobs:
        assert fns[name].concurrency_id == "device-cpu", name
        assert fns[name].concurrency_limit == 1, name
    for name in ("preview", "estimate", "compare_estimate", "clip_size", "long_plan", "stop",
                 "push"):
        assert fns[name].concurrency_id != "device-cpu", name
    assert demo._queue.max_size == QUEUE_MAX


def test_slider_changes_store_one_copy_and_the_wide_clip_keeps_its_aspect(app, wide_clip):
    """Seven preview calls of one clip (what seven slider moves send): one stored copy. A 2:1
    clip is sized 2:1, previews at 2:1 and is tuned and edited at 2:1."""
    from gradio_client import Client, handle_file
    from PIL import Image

    from vcstudio.io import read_video

    c = Client(app["url"], verbose=False)
    session, width, height = c.predict(clip=handle_file(str(wide_clip)),
                                       api_name="/clip_size")
    assert (width, height) == (64, 32)  # the largest this tier allows for the demo size
    for frames in (2, 3, 4, 5, 6, 7, 4):
        session, strip, info = c.predict(session=session, clip=handle_file(str(wide_clip)),
                                         frames=frames, stride=1, width=width, height=height,
                                         api_name="/preview")
    assert info == "4 frames at 64x32 will be tuned on."
    assert Image.open(strip).size == (4 * 64, 32)  # the strip: 4 frames of 64 x 32
    uploads = app["studio"].session(session).uploads
    assert len(list(uploads.iterdir())) == 1

    session, job, status, loss, preview, run_dir = c.predict(
        session=session, clip=handle_file(str(wide_clip)), prompt="a red circle", frames=4,
        stride=1, width=width, height=height, steps=10, lr=1e-3, api_name="/tune")
    assert status.startswith("Tuned 10 steps"), status
    video, gif, estatus, plot, table = c.predict(session=session, run_dir=run_dir,
                                                 prompt="a blue square", steps=5, guidance=5.0,
                                                 api_name="/edit")
    frames = read_video(video["video"] if isinstance(video, dict) else video)
    assert estatus == "Done." and frames.shape == (4, 32, 64, 3)
    assert len(list(uploads.iterdir())) == 1  # the tune read the same stored copy


def test_an_api_client_steers_an_edit_with_the_structure_list(app, wide_clip, tiny_sd,
                                                              tmp_path):
    """/edit's ``structure`` (the Structure panel's 13 values, API.md) from gradio_client: off
    gives the plain edit, a canny ControlNet changes it, a malformed list is refused by name."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import ValidationError

    from test_control import _controlnet
    from vcstudio.io import read_video
    from vcstudio.models.loading import load_base

    net = _controlnet(load_base(str(tiny_sd)), tmp_path / "cn", zero=False)
    c = Client(app["url"], verbose=False)
    session, job, status, *_, run_dir = c.predict(
        clip=handle_file(str(wide_clip)), prompt="a red circle", frames=4, width=64, height=32,
        steps=10, api_name="/tune")
    off = ["none", "", 1.0, 0.0, 1.0, None]

    def edit(structure):
        video, _, estatus, *_ = c.predict(session=session, run_dir=run_dir, steps=5,
                                          prompt="a blue square", guidance=5.0,
                                          structure=structure, api_name="/edit")
        assert estatus == "Done."
        return read_video(video["video"] if isinstance(video, dict) else video).astype(float)

    plain = edit(off + off + [""])
    assert np.array_equal(plain, edit([]))  # [] = no conditions
    steered = edit(["canny", net, 1.0, 0.0, 1.0, None] + off + [""])
    assert steered.shape == plain.shape == (4, 32, 64, 3)
    assert np.abs(steered - plain).mean() > 1.0  # the ControlNet's residuals moved it
    with pytest.raises(ValidationError, match="structure: structure must be a list of the 13 values"):
        c.predict(session=session, run_dir=run_dir, prompt="a blue square",
                  structure=["canny", net], api_name="/edit")
    with pytest.raises(ValidationError, match="structure's scale_1 must be a number"):
        c.predict(session=session, run_dir=run_dir, prompt="a blue square",
                  structure=["canny", net, "big", 0.0, 1.0, None] + off + [""],
                  api_name="/edit")


@pytest.mark.parametrize("args,msg", [
    (dict(frames=-3), "frames|minimum"), (dict(frames=0), "frames|minimum"),
    (dict(frames=2.5), "whole number"), (dict(width=-64), "width|minimum"),
    (dict(width=60), "multiple of 8"), (dict(steps=100000), "steps|maximum"),
])
def test_out_of_range_numbers_are_errors(app, wide_clip, args, msg):
    from gradio_client import Client, handle_file

    c = Client(app["url"], verbose=False)
    kw = dict(clip=handle_file(str(wide_clip)), prompt="a red circle", frames=4, width=64,
              height=32, steps=10)
    with pytest.raises(Exception, match=msg):
        c.predict(**{**kw, **args}, api_name="/tune")
    with pytest.raises(Exception, match="long.frames|maximum"):
        c.predict(prompts="a\nb", frames=100000000, window=8, stride=4, api_name="/long_plan")


def test_the_compare_estimate_counts_each_method_and_run(app, wide_clip):
    """/compare_estimate: one tune and one edit per method (a tuned run: its edit only), more
    methods or steps take longer, out-of-range numbers are refused (it is outside the device
    group: test_jobs_queue_per_device_and_the_rest_answer_beside_them)."""
    from gradio_client import Client, handle_file

    c = Client(app["url"], verbose=False)
    base = dict(runs=[], frames=4, size=64, steps=20, api_name="/compare_estimate")
    baseline, dct = "baseline (Tune-A-Video)", "DCT full (mul-Fourier CLWS)"

    def seconds(line: str) -> float:  # "~45 s", "~1 min 25 s", "~3 min"
        m = re.search(r"~(?:(\d+) min(?: (\d+) s)?|(\d+(?:\.\d+)?) s)\b", line)
        assert m, line
        return 60 * float(m.group(1) or 0) + float(m.group(2) or m.group(3) or 0)

    one = c.predict(methods=[baseline], **base)
    two = c.predict(methods=[baseline, dct], **base)
    assert "1 tune, 1 edit" in one and "2 tunes, 2 edits" in two, (one, two)
    assert seconds(two) > seconds(one)
    assert seconds(c.predict(methods=[baseline], **{**base, "steps": 100})) > seconds(one)
    with pytest.raises(Exception, match=r"Tuning steps must be within 10\.\.100"):
        c.predict(methods=[baseline], **{**base, "steps": 1000})
    session, job, status, *_, run_dir = c.predict(
        clip=handle_file(str(wide_clip)), prompt="a red circle", frames=4, width=64, height=32,
        steps=10, api_name="/tune")
    with_run = c.predict(methods=[], **{**base, "runs": [run_dir]})
    assert "0 tunes, 1 edit" in with_run and "calibrated" in with_run, with_run


@pytest.mark.parametrize("args,msg", [
    (dict(frames=-3), r"Frames must be within 1\.\.\d+; got -3"),
    (dict(width=-64), r"Width \(px\) must be within 16\.\.\d+; got -64"),
    (dict(steps=100000), r"Tuning steps must be within 10\.\.100; got 100000"),
])
def test_the_estimate_refuses_the_numbers_the_tune_refuses(app, args, msg):
    """/estimate reads the Tune's sliders, whose bounds the Tune's validator checks: it checks
    them too (it once gave an estimate for -3 frames)."""
    from gradio_client import Client

    c = Client(app["url"], verbose=False)
    with pytest.raises(Exception, match=msg):
        c.predict(**{**dict(frames=4, width=64, height=32, steps=10), **args},
                  api_name="/estimate")


def test_the_estimate_follows_the_picked_model(app):
    """/estimate counts for the base the picker names (it once always counted the studio's
    default): Wan2.1-1.3B's estimate holds its 1.3B parameters, the default's does not."""
    import re

    from gradio_client import Client

    c = Client(app["url"], verbose=False)
    base = dict(frames=5, width=64, height=64, steps=10, api_name="/estimate")

    def gib(line):
        return float(re.search(r"([\d.]+) GiB", line).group(1))

    default, wan = c.predict(**base), c.predict(**base, model="wan-1.3b")
    assert gib(wan) > 2 and gib(default) < 1, (default, wan)
    assert c.predict(**base, model="") == default


def test_the_long_plan_lays_windows_out_as_the_picked_model_counts(app):
    """/long_plan follows the base a long video would run on: Wan2.1 lays windows out in
    latent frames of 4 (each row says which video frames it covers); the default counts video
    frames. A run folder the caller may not read does not fail the plan (video frames)."""
    from gradio_client import Client

    c = Client(app["url"], verbose=False)
    base = dict(prompts="a\nb", frames=29, window=13, stride=8, api_name="/long_plan")
    *_, plain = c.predict(**base)
    *_, wan = c.predict(**base, model="wan-1.3b")
    assert all("latent_frames" not in r for r in plain) and len(plain) == 3
    # 29 frames = 8 latent frames (the first alone, then 4 each); a window of 13 frames = 4
    # latent frames, the stride of 8 frames = 2
    assert [r["latent_frames"] for r in wan] == ["0-3", "2-5", "4-7"], wan
    assert [r["frames"] for r in wan] == ["0-12", "5-20", "13-28"]
    *_, stranger = c.predict(**base, session="nobody", run_dir=str(app["studio"].data_dir))
    assert stranger == plain


_upload, _file, _call = upload, file_data, call


def _fn_index(url: str, api: str) -> int:
    import httpx

    cfg = httpx.get(url + "config").json()
    return next(d["id"] for d in cfg["dependencies"] if d.get("api_name") == api)


def test_a_client_that_disconnects_mid_tune_frees_the_device(app, wide_clip):
    """The tune's client goes away (its event stream closes): the Studio job stops at its
    next step and nothing holds the device lock."""
    import httpx

    studio, url = app["studio"], app["url"]
    path = _upload(url, wide_clip)
    sh = "disconnect" + os.urandom(4).hex()
    data = ["", _file(path), "a red circle", 4, 1, 0, 64, 32, "crop", "center", "baseline",
            100, 1e-3, 33, True, True, True, "mul-fourier", "pure", True, True, ""]
    r = httpx.post(url + "gradio_api/queue/join",
                   json={"data": data, "fn_index": _fn_index(url, "tune"), "session_hash": sh,
                         "event_data": None, "trigger_id": None})
    r.raise_for_status()
    job = None
    with httpx.stream("GET", url + "gradio_api/queue/data", params={"session_hash": sh},
                      timeout=120) as s:
        for line in s.iter_lines():
            if '"process_generating"' in line or '"progress"' in line:
                live = [h for h in list(studio._jobs.values()) if not h.done.is_set()]
                if live and live[0].status == "running":
                    job = live[0].id
                    break
    assert job is not None  # the stream is closed here: the client is gone
    deadline = time.time() + 60
    while time.time() < deadline and not studio.wait(job, 0.5).finished:
        pass
    out = studio.wait(job, 1)
    assert out.finished and out.status in ("stopped", "cancelled"), out.status
    assert not studio.device_lock().locked()
    stored = studio.store.job(job)
    assert stored.status in ("stopped", "cancelled") and stored.step < 100


# ----------------------------------------------------------------------------- public mode

@pytest.fixture(scope="module")
def public_app(tiny_sd, tmp_path_factory):
    studio, demo, url = _launch(tiny_sd, tmp_path_factory.mktemp("public-data"), public=True)
    yield {"studio": studio, "demo": demo, "url": url}
    demo.close()
    studio.close()
    os.environ.pop("VCSTUDIO_MODEL", None)


def test_idle_visitors_gradio_state_is_dropped_and_they_can_come_back(public_app):
    """Gradio keeps a state per visitor until 10,000 of them; the public studio's sweep drops
    those idle for the TTL (vcstudio/ui/visitor_state.py). Two visitors' states are kept while
    they are active, dropped once idle, and a visitor who returns is answered again."""
    from gradio_client import Client

    from vcstudio.ui.visitor_state import drop_idle_states

    holder = public_app["demo"].state_holder
    est = dict(frames=4, width=64, height=32, steps=10, api_name="/estimate")
    a, b = (Client(public_app["url"], verbose=False) for _ in range(2))
    for c in (a, b):
        assert "GiB" in c.predict(**est)
    ours = {a.session_hash, b.session_hash}
    assert ours <= set(holder.session_data)
    assert drop_idle_states(public_app["demo"], 3600) == 0
    assert ours <= set(holder.session_data)
    time.sleep(0.3)
    assert drop_idle_states(public_app["demo"], 0.2) >= 2
    assert not ours & set(holder.session_data)
    assert "GiB" in a.predict(**est)


def _preview_args(session: str, clip) -> list:
    return [session, clip, 4, 1, 0, 64, 32, "crop", "center"]


def test_public_studio_reads_only_the_visitors_own_uploads(public_app, wide_clip, tmp_path):
    url = public_app["url"]
    a_path = _upload(url, wide_clip)  # visitor A's upload
    kind, out = _call(url, "preview", _preview_args("", _file(a_path)))
    assert kind == "complete", out
    a_session, strip = out[0], out[1]
    # visitor B replays A's cached path raw: refused, with a message about uploading
    kind, msg = _call(url, "preview", _preview_args("", _file(a_path)))
    assert kind == "error" and "upload" in str(msg).lower(), msg
    # ... and a file the app served A (in Gradio's cache, never uploaded) likewise
    served = strip["path"] if isinstance(strip, dict) else strip
    kind, msg = _call(url, "preview", _preview_args("", _file(served)))
    assert kind == "error" and "upload" in str(msg).lower(), msg
    # a server path sent as FileData is refused too
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(wide_clip.read_bytes())
    kind, msg = _call(url, "preview", _preview_args("", _file(str(secret))))
    assert kind == "error", msg
    # B's own upload of the same clip is accepted (Gradio files both under one path)
    b_path = _upload(url, wide_clip)
    kind, out = _call(url, "preview", _preview_args("", _file(b_path)))
    assert kind == "complete" and out[0] != a_session, out
    # A keeps using their own upload
    kind, out = _call(url, "preview", _preview_args(a_session, _file(a_path)))
    assert kind == "complete", out
    # an example clip, as Gradio serves it from its cache when a visitor clicks it
    import shutil
    import tempfile

    cache = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    example = ROOT / "assets" / "examples" / "red_circle_right_beach.mp4"
    cached = cache / ("example-" + os.urandom(4).hex()) / example.name
    cached.parent.mkdir(parents=True)
    shutil.copyfile(example, cached)
    kind, out = _call(url, "preview", _preview_args("", _file(str(cached))))
    assert kind == "complete", out
    # the page's order: a new upload is sized (clip_size), then previewed, in one session
    from vcstudio.io import write_gif
    from vcstudio.io.synthetic import moving_shape_clip

    c_path = _upload(url, write_gif(moving_shape_clip(4, 64, dx=2.0), tmp_path / "c.gif"))
    kind, out = _call(url, "clip_size", ["", _file(c_path)])
    assert kind == "complete" and out[1:] == [64, 64], out
    kind, out = _call(url, "preview", _preview_args(out[0], _file(c_path)))
    assert kind == "complete", out


def test_public_studio_checks_limits_and_ownership_on_the_server(public_app, wide_clip):
    from gradio_client import Client, handle_file

    from vcstudio.space import CPU_LIMITS

    url, studio = public_app["url"], public_app["studio"]
    a, b = Client(url, verbose=False), Client(url, verbose=False)
    sid_a, job_a, status, _, _, run_a = a.predict(
        clip=handle_file(str(wide_clip)), prompt="a red circle", frames=4, width=64,
        height=32, steps=10, lr=1e-3, api_name="/tune")
    assert status.startswith("Tuned"), status
    sid_b = b.predict(session="", clip=handle_file(str(wide_clip)), frames=4, width=64,
                      height=32, api_name="/preview")[0]
    # B may not stop A's job, nor edit from A's run folder
    with pytest.raises(Exception, match="another visitor"):
        b.predict(session=sid_b, job_id=job_a, api_name="/stop")
    with pytest.raises(Exception, match="outside|not|session"):
        b.predict(session=sid_b, run_dir=run_a, prompt="a blue square", api_name="/edit")
    assert a.predict(session=sid_a, job_id=job_a, api_name="/stop") == "Nothing is running."
    # a Compare edits the visitor's own tuned runs beside (or instead of) the methods, and
    # nobody else's
    with pytest.raises(Exception, match="outside|session"):
        b.predict(session=sid_b, clip=None, methods=[], runs=[run_a], edit_prompt="a blue square",
                  api_name="/compare")
    status, montage, table, *_ = a.predict(session=sid_a, clip=None, methods=[], runs=[run_a],
                                           edit_prompt="a blue square", api_name="/compare")
    assert status.startswith("Done"), status
    rows = table["data"]
    assert len(rows) == 1 and Path(run_a).name in rows[0][0], rows
    # the Space's limits hold on the server, whatever a client sends (the CPU tier: 8 frames,
    # 256 px, 100 steps, 32-frame long videos)
    lim = CPU_LIMITS
    with pytest.raises(Exception, match="8"):
        a.predict(session=sid_a, clip=handle_file(str(wide_clip)), methods=["baseline "
                  "(Tune-A-Video)"], prompt="a", edit_prompt="b", frames=24, size=64, steps=10,
                  api_name="/compare")
    with pytest.raises(Exception, match=str(lim.max_steps)):
        a.predict(session=sid_a, clip=handle_file(str(wide_clip)), prompt="a", frames=4,
                  width=64, height=32, steps=500, api_name="/tune")
    with pytest.raises(Exception, match=str(lim.max_long_frames)):
        a.predict(session=sid_a, run_dir=run_a, prompts="a\nb", frames=240, api_name="/long")
    with pytest.raises(Exception, match=str(lim.max_side)):
        a.predict(session=sid_a, clip=handle_file(str(wide_clip)), prompt="a", frames=4,
                  width=512, height=32, steps=10, api_name="/tune")
    # and its cache and sessions are deleted after a TTL
    assert public_app["demo"].delete_cache is not None
    assert not studio.device_lock().locked()


def test_gif_and_zip_of_images_are_accepted_as_the_label_says(app, tmp_path):
    import zipfile

    from gradio_client import Client, handle_file
    from PIL import Image

    from vcstudio.io import write_gif
    from vcstudio.io.synthetic import moving_shape_clip

    clip = moving_shape_clip(6, 64, dx=3.0)
    gif = write_gif(clip, tmp_path / "clip.gif")
    zpath = tmp_path / "frames.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for i, f in enumerate(clip):
            Image.fromarray(f).save(tmp_path / f"{i}.png")
            z.write(tmp_path / f"{i}.png", f"frame{i}.png")
    c = Client(app["url"], verbose=False)
    for f in (gif, zpath):
        _, strip, info = c.predict(clip=handle_file(str(f)), frames=4, width=64, height=64,
                                   api_name="/preview")
        assert info == "4 frames at 64x64 will be tuned on.", f


def test_a_bad_upload_is_named_by_the_visitors_file_name(app, tmp_path):
    """The stored copy lives under its content hash; the message names the file the visitor
    chose (it once read "Could not open 21c230a8...ad.mp4 as a video")."""
    from gradio_client import Client, handle_file

    notes = tmp_path / "my notes.mp4"
    notes.write_text("not a video\n" * 20)
    c = Client(app["url"], verbose=False)
    with pytest.raises(Exception, match=r"Could not open my notes\.mp4 as a video: it holds "
                                        r"text") as e:
        c.predict(clip=handle_file(str(notes)), frames=4, width=64, height=64,
                  api_name="/preview")
    assert not re.search(r"[0-9a-f]{64}", str(e.value))


def _running_tune(app, client, clip, **size):
    """Submit a 100-step tune from ``client`` and wait until it holds the device:
    (gradio_client job, studio job id)."""
    from gradio_client import handle_file

    job = client.submit(clip=handle_file(str(clip)), prompt="a red circle", steps=100,
                        lr=1e-3, api_name="/tune", **size)
    deadline, jid = time.time() + 60, None
    while time.time() < deadline and jid is None:
        live = [h for h in list(app["studio"]._jobs.values())
                if not h.done.is_set() and h.status == "running"]
        jid = live[0].id if live else None
        time.sleep(0.2)
    assert jid is not None
    return job, jid


def test_a_cancelled_event_stops_its_job(app, wide_clip):
    """gradio_client's job.cancel() (the event cancelled): the tune stops at its next step."""
    from gradio_client import Client, handle_file

    studio = app["studio"]
    c = Client(app["url"], verbose=False)
    job, jid = _running_tune(app, c, wide_clip, frames=4, width=64, height=32)
    # preview and estimate are outside the device's queue group: they answer while it runs
    other = Client(app["url"], verbose=False)
    info = other.predict(clip=handle_file(str(wide_clip)), frames=4, width=64, height=32,
                         api_name="/preview")[2]
    est = other.predict(frames=4, width=64, height=32, steps=100, api_name="/estimate")
    assert info.startswith("4 frames") and est.startswith("Estimate")
    assert not studio.wait(jid, 0).finished  # the tune was still running meanwhile
    job.cancel()
    out = studio.wait(jid, 60)
    assert out.finished and out.status in ("stopped", "cancelled"), out.status
    assert studio.store.job(jid).step < 100
    assert not studio.device_lock().locked()


def test_a_closed_tab_stops_its_jobs(app, wide_clip):
    """The visitor leaves (their client's heartbeat ends: Gradio's unload event): the jobs
    that client started stop, freeing the device."""
    from gradio_client import Client

    studio = app["studio"]
    c = Client(app["url"], verbose=False)
    # a 256x128 clip at full size: a tune of minutes if never stopped (a 128x64 one took 12 s
    # on an idle machine, less than Gradio takes to notice a closed client), so it can only
    # end stopped by the heartbeat's end, however fast the machine
    from vcstudio.io import write_mp4
    from vcstudio.io.synthetic import moving_shape_clip

    half = moving_shape_clip(8, 128, dx=6.0)
    big = write_mp4(np.concatenate([half, half[:, :, ::-1]], axis=2),
                    wide_clip.parent / "wide256.mp4")
    _, jid = _running_tune(app, c, big, frames=8, width=256, height=128)
    c.close()  # ends the heartbeat: the page is gone
    out = studio.wait(jid, 60)
    assert out.finished and out.status in ("stopped", "cancelled"), out.status
    assert studio.store.job(jid).step < 100


def test_bad_job_inputs_are_refused_before_the_device_queue(app, wide_clip):
    """While a long tune holds the device, a tune with frames=-3 or an empty prompt and an
    edit with no run are refused by the events' validators within seconds, with the job's
    own one-line message, instead of after the queue wait."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import ValidationError

    studio = app["studio"]
    c = Client(app["url"], verbose=False)
    job, jid = _running_tune(app, c, wide_clip, frames=8, width=128, height=64)
    other = Client(app["url"], verbose=False)
    kw = dict(clip=handle_file(str(wide_clip)), prompt="a red circle", frames=4, width=64,
              height=32, steps=10, api_name="/tune")
    cases = [(dict(kw, frames=-3), r"- frames: Frames must be within 1\.\.8; got -3\."),
             (dict(kw, frames=2.5), "frames: Frames must be a whole number"),
             (dict(kw, steps=500), r"steps: Tuning steps must be within 10\.\.100"),
             (dict(kw, prompt=" "), "prompt: Describe the clip in the source prompt"),
             (dict(kw, width=60), "width: .*multiple of 8"),
             (dict(run_dir="", prompt="a blue square", api_name="/edit"),
              r"run_dir: Tune on a clip first"),
             (dict(run_dir="x", prompt="", api_name="/edit"), "prompt: .*edit prompt")]
    for args, msg in cases:
        t0 = time.time()
        with pytest.raises(ValidationError, match=msg):
            other.predict(**args)
        assert time.time() - t0 < 5, args
    assert not studio.wait(jid, 0).finished  # refused beside the running tune, not after it
    job.cancel()
    assert studio.wait(jid, 60).finished
    assert not studio.device_lock().locked()


def _api_md_defaults() -> dict[str, dict[str, str]]:
    """{endpoint: {parameter: the default cell of API.md's table}}."""
    text = (ROOT / "API.md").read_text()
    out, name = {}, None
    for line in text.splitlines():
        m = re.match(r"### `(/\w+)`", line)
        if m:
            name = m.group(1)
            out[name] = {}
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith(
            "| ") else []
        if name and len(cells) >= 3 and cells[0] != "param" and not cells[0].startswith("-"):
            out[name][cells[0]] = cells[-1]
    return out


def _literal(cell: str):
    """API.md's default cell as a value: "x", 3, 1.5, True/False/None, [] (the words after it
    explain it); *tier* a / b -> a (the tests run on the demo / CPU tier); else None."""
    import ast

    cell = re.sub(r"^\*tier\* ", "", cell)
    m = re.match(r'^("[^"]*"|\[\]|-?\d+(?:\.\d+)?(?:e-?\d+)?|True|False|None|true|false)\b',
                 cell)
    if not m:
        return ("skip",)
    tok = {"true": "True", "false": "False"}.get(m.group(1), m.group(1))
    return ast.literal_eval(tok)


def test_the_api_schema_matches_api_md(app):
    """No parameter is a list of choices frozen at start (runs, job ids, sweep ids are
    strings checked when called), and every default API.md gives is view_api's."""
    from gradio_client import Client

    info = Client(app["url"], verbose=False).view_api(return_format="dict", print_info=False)
    named = info["named_endpoints"]
    for api, params in named.items():
        for p in params["parameters"]:
            if p["parameter_name"] in ("runs", "job_id", "sweep_id", "past_runs", "run_dir"):
                assert "Literal" not in p["python_type"]["type"], (api, p)
    docs = _api_md_defaults()
    wrong = []
    for api, params in named.items():
        for p in params["parameters"]:
            cell = docs.get(api, {}).get(p["parameter_name"])
            if cell is None:
                continue
            if cell.startswith("required"):  # the caller must give it (an empty one is
                continue                         # refused with a message): no default to match
            if not p["parameter_has_default"]:
                wrong.append((api, p["parameter_name"], f"required, API.md: {cell}"))
                continue
            want = _literal(cell)
            if want != ("skip",) and p["parameter_default"] != want:
                wrong.append((api, p["parameter_name"], p["parameter_default"], cell))
    assert not wrong, wrong
