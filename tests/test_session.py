"""Session manager: device lock queueing, cancellation, error capture, OOM mapping, progress
streaming, uploads and path safety. Jobs are registered as the Studio's registry has them (a
config dataclass + run(cfg, ctx)); their bodies are real workers that record timestamps."""
from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch

from vcstudio.config import Limits
from vcstudio.errors import CancelledError, InputError, OutOfMemoryError
from vcstudio.models.cache import ModelCache
from vcstudio.progress import Event
from vcstudio.session import DeviceLock, JobSpec, Studio, safe_path


@dataclass
class Call:
    """A test job's config: the body to run (args, kwargs) and a number to record."""

    fn: Callable = None
    args: tuple = ()
    kwargs: Any = None
    steps: int = 0


def _run_call(cfg: Call, ctx):
    return cfg.fn(*cfg.args, progress=ctx, cancel=ctx.cancel, **(cfg.kwargs or {}))


def _positive(cfg: Call, limits: Limits) -> None:
    if cfg.steps < 0:
        raise InputError(f"steps must be within 0..{limits.max_steps}; got {cfg.steps}.")


JOBS = {k: JobSpec(k, Call, _run_call, validate=_positive) for k in ("tune", "edit", "eval")}


def submit(studio, sid, kind, fn, *args, **kw):
    opts = {k: kw.pop(k) for k in ("resume_of", "device", "out") if k in kw}
    steps = kw.pop("steps", 0)
    return studio.submit(kind, Call(fn, args, kw, steps), sid, **opts)


@pytest.fixture
def studio(tmp_path):
    torch.manual_seed(0)
    up = tmp_path / "gradio"
    up.mkdir()
    s = Studio(tmp_path / "data", limits=Limits(max_upload_mb=0.01), cache=ModelCache(),
               upload_roots=[up], device="cpu", jobs=JOBS)
    yield s
    s.close()


def _stepper(log, name, steps=5, dt=0.02):
    """A job that works ``steps`` steps, reporting each, recording when it held the device."""
    def fn(progress, cancel):
        t0 = time.monotonic()
        for i in range(steps):
            time.sleep(dt)
            progress(Event(i + 1, steps, f"{name} step {i + 1}", metrics={"loss": 1.0 / (i + 1)},
                           stage="tune"))
        log.append((name, t0, time.monotonic()))
        return {"name": name}
    return fn


def test_two_sessions_never_overlap_on_one_device(studio):
    a, b = studio.new_session(), studio.new_session()
    log: list = []
    ids: list = []
    mu = threading.Lock()

    def client(sess, tag):
        for k in range(3):
            jid = submit(studio, sess.id, "tune", _stepper(log, f"{tag}{k}", steps=4, dt=0.01))
            with mu:
                ids.append(jid)

    threads = [threading.Thread(target=client, args=(s, t)) for s, t in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outs = [studio.wait(j, timeout=30) for j in ids]
    assert [o.status for o in outs] == ["done"] * 6
    spans = sorted((t0, t1) for _, t0, t1 in log)
    assert len(spans) == 6
    for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
        assert e0 <= s1, "two jobs held the device at once"
    assert {j.status for j in studio.store.jobs()} == {"done"}
    assert len(studio.store.jobs(session_id=a.owner)) == 3


def test_device_lock_is_first_come_first_served(studio):
    order: list = []
    gate = threading.Event()

    def blocker(progress, cancel):
        gate.wait(10)

    def job(tag):
        def fn(progress, cancel):
            order.append(tag)
        return fn

    first = submit(studio, None, "eval", blocker)
    while studio.store.job(first).status != "running":
        time.sleep(0.005)
    ids = []
    for k in range(5):
        ids.append(submit(studio, None, "eval", job(k)))
        while studio.device_lock().waiting < k + 1:  # this worker took its place in the queue
            time.sleep(0.001)
    assert studio.device_lock().waiting == 5 and studio.queue_position(ids[0]) == 5
    gate.set()
    for j in ids:
        studio.wait(j, timeout=10)
    assert order == [0, 1, 2, 3, 4]


def test_cancel_mid_job_stops_within_one_step(studio):
    sess = studio.new_session()
    steps_done: list = []
    reached = threading.Event()

    def long_job(progress, cancel):
        for i in range(1000):
            cancel.check()
            time.sleep(0.01)
            steps_done.append(i)
            if i == 5:
                reached.set()
        return "finished"  # never reached

    jid = submit(studio, sess.id, "tune", long_job)
    assert reached.wait(10)
    assert studio.cancel(jid)
    at_cancel = len(steps_done)
    out = studio.wait(jid, timeout=10)
    assert out.status == "cancelled" and isinstance(out.error, CancelledError)
    assert len(steps_done) - at_cancel <= 1  # at most the step in flight finished
    assert studio.store.job(jid).status == "cancelled"
    with pytest.raises(CancelledError):
        studio.result(jid)
    assert not studio.cancel(jid)  # already over


def test_cancel_through_progress_and_while_queued(studio):
    gate = threading.Event()
    ran: list = []

    def reports_only(progress, cancel):  # never calls cancel.check() itself
        for i in range(1000):
            time.sleep(0.01)
            ran.append(i)
            progress(Event(i + 1, 1000))
            if i == 3:
                gate.set()

    def never(progress, cancel):
        ran.append("queued job ran")

    running = submit(studio, None, "tune", reports_only)
    queued = submit(studio, None, "edit", never)
    assert gate.wait(10)
    t0 = time.monotonic()
    studio.cancel(queued)
    assert studio.wait(queued, timeout=5).status == "cancelled"
    assert time.monotonic() - t0 < 1.0  # left the queue, did not wait for the running job
    studio.cancel(running)
    assert studio.wait(running, timeout=5).status == "cancelled"
    assert "queued job ran" not in ran and len(ran) < 20


def test_vcs_error_fails_job_and_next_job_runs(studio):
    def bad(progress, cancel):
        raise InputError("The prompt is empty; type what the video should show.")

    def buggy(progress, cancel):
        return 1 / 0

    def good(x, progress, cancel, scale=1):
        return x * scale

    j1 = submit(studio, None, "edit", bad)
    j2 = submit(studio, None, "edit", buggy)
    j3 = submit(studio, None, "edit", good, 21, scale=2)
    o1, o2 = studio.wait(j1, 10), studio.wait(j2, 10)
    assert o1.status == "failed" and o1.message.startswith("The prompt is empty")
    assert studio.store.job(j1).error == "The prompt is empty; type what the video should show."
    with pytest.raises(InputError, match="prompt is empty"):
        studio.result(j1)
    assert o2.status == "failed" and "Internal error (ZeroDivisionError" in o2.message
    assert studio.result(j3, timeout=10) == 42
    assert studio.store.job(j3).status == "done"


def test_out_of_memory_becomes_vcs_error_and_frees_cache(studio):
    studio.cache.get(("model", "fp32"), lambda: torch.zeros(4))

    def greedy(progress, cancel):
        return torch.empty(2**50, dtype=torch.uint8)  # a real allocator failure (1 PiB)

    jid = submit(studio, None, "tune", greedy)
    out = studio.wait(jid, 10)
    assert out.status == "failed" and isinstance(out.error, OutOfMemoryError)
    assert "fewer frames" in out.message and "can't allocate" in str(out.error.__cause__)
    assert studio.cache.keys() == []
    assert studio.result(submit(studio, None, "tune", lambda progress, cancel: "ok"), 10) == "ok"


def test_progress_stream_and_recorded_events(studio):
    gate = threading.Event()

    def job(progress, cancel):
        gate.wait(10)
        for i in range(5):
            progress(Event(i + 1, 5, metrics={"loss": 0.5 ** i}, stage="tune"))
        run_id = progress.open_run("tune", progress.run_folder("tune"), {"steps": 5}, seed=1)
        return {"run_id": run_id}

    jid = submit(studio, None, "tune", job)
    stream = studio.events(jid, timeout=10)
    gate.set()
    got = [(e.step, e.metrics["loss"]) for e in stream]
    assert got == [(i + 1, 0.5 ** i) for i in range(5)]
    rec = studio.store.events(jid)
    assert [e["metrics"]["loss"] for e in rec] == [0.5 ** i for i in range(5)]
    job_row = studio.store.job(jid)
    assert job_row.status == "done" and job_row.run_id == studio.result(jid)["run_id"]
    # a late subscriber gets the last event and the end, without blocking
    assert [e.step for e in studio.events(jid, timeout=1)] == [5]


def test_interrupted_jobs_listed_resumed_and_dismissed(tmp_path):
    up = tmp_path / "up"
    up.mkdir()

    def make():
        return Studio(tmp_path / "d", limits=Limits(), cache=ModelCache(), upload_roots=[up],
                      device="cpu", jobs=JOBS)

    s1 = make()
    gate = threading.Event()
    running = submit(s1, None, "tune", lambda progress, cancel: gate.wait(0.5), steps=123)
    queued = submit(s1, None, "edit", lambda progress, cancel: None)
    while s1.store.job(running).status != "running":
        time.sleep(0.005)
    s1.store.close()  # the server goes away while one job runs and one waits
    gate.set()
    s2 = make()
    res = {j.id: j for j in s2.store.resumable_jobs()}
    assert set(res) == {running, queued} and res[running].params["config"]["steps"] == 123
    new = submit(s2, None, "tune", lambda progress, cancel: "resumed", resume_of=running)
    assert s2.result(new, 10) == "resumed"
    assert s2.cancel(queued)  # the user dismisses the other one
    assert s2.store.resumable_jobs() == [] and s2.store.job(queued).status == "cancelled"
    s2.close()


# ----------------------------------------------------------------------------- paths

def test_safe_path_refuses_escapes(studio, tmp_path):
    sess = studio.new_session()
    (sess.uploads / "clip.mp4").write_bytes(b"x")
    assert safe_path(sess, "uploads/clip.mp4", must_exist=True) == sess.uploads / "clip.mp4"
    assert safe_path(sess, sess.uploads / "clip.mp4") == sess.uploads / "clip.mp4"
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    os.symlink(outside, sess.uploads / "link.txt")  # a symlink escaping the folder
    os.symlink(tmp_path, sess.folder / "dirlink")
    os.symlink(sess.uploads / "clip.mp4", sess.uploads / "inside.mp4")  # stays inside: fine
    for bad in ("../x", "uploads/../../x", "../../../../etc/passwd", "/etc/passwd",
                str(outside), "uploads/link.txt", "dirlink/secret.txt", "", "a\x00b",
                "~/x", f"../{sess.folder.name}-evil/x"):
        with pytest.raises(InputError):
            safe_path(sess, bad)
    assert safe_path(sess, "uploads/inside.mp4") == sess.uploads / "clip.mp4"
    with pytest.raises(InputError, match="does not exist"):
        safe_path(sess, "uploads/none.mp4", must_exist=True)
    with pytest.raises(InputError, match="not valid"):
        studio.session("../../" + sess.id[6:])
    with pytest.raises(InputError, match="expired"):
        studio.session("0" * 32)


def test_uploads_copied_with_limits(studio, tmp_path):
    sess = studio.new_session()
    up = tmp_path / "gradio"
    small = up / "my clip (1).MP4"
    small.write_bytes(b"v" * 5000)
    dest = studio.save_upload(sess.id, small, allowed_suffixes=[".mp4", ".gif"])
    assert dest.read_bytes() == b"v" * 5000
    # in a folder named by content (one copy per distinct upload), under the cleaned name
    assert dest == sess.uploads / hashlib.sha256(b"v" * 5000).hexdigest() / "my clip _1_.mp4"
    assert studio.save_upload(sess.id, small, allowed_suffixes=[".mp4"]) == dest
    d2 = studio.save_upload(sess.id, b"png!", name="../../etc/evil.png")
    assert d2 == sess.uploads / hashlib.sha256(b"png!").hexdigest() / "evil.png"

    big = up / "big.mp4"
    big.write_bytes(b"v" * 20000)  # limit is 0.01 MB = 10485 bytes
    with pytest.raises(InputError, match="0.01 MB upload limit"):
        studio.save_upload(sess.id, big)
    with pytest.raises(InputError, match="upload limit"):
        studio.save_upload(sess.id, b"v" * 20000, name="big.mp4")
    with pytest.raises(InputError, match="not a supported file type"):
        studio.save_upload(sess.id, up / "my clip (1).MP4", name="x.exe",
                           allowed_suffixes=[".mp4"])
    elsewhere = tmp_path / "secret.mp4"
    elsewhere.write_bytes(b"s")
    with pytest.raises(InputError, match="upload box"):
        studio.save_upload(sess.id, elsewhere)
    os.symlink(elsewhere, up / "sneaky.mp4")  # a link inside the upload folder pointing out
    with pytest.raises(InputError, match="upload box"):
        studio.save_upload(sess.id, up / "sneaky.mp4")
    assert sorted(p.name for p in sess.uploads.iterdir()) == sorted([dest.parent.name,
                                                                      d2.parent.name])


def test_cleanup_removes_only_old_idle_sessions(studio):
    old, fresh = studio.new_session(), studio.new_session()
    past = time.time() - 7200
    for p in [old.folder, *old.folder.rglob("*")]:
        os.utime(p, (past, past))
    job = studio.store.add_job("tune", old.owner)  # the store names sessions by owner id
    studio.store.update_job(job, status="done")
    assert studio.cleanup_sessions(max_age_s=3600) == [old.owner]
    assert not old.folder.exists() and fresh.folder.exists()
    assert studio.store.job(job).status == "expired"  # the record says its files are gone


def test_public_cleanup_runs_on_its_own(studio):
    sess = studio.new_session()
    past = time.time() - 7200
    for p in [sess.folder, *sess.folder.rglob("*")]:
        os.utime(p, (past, past))
    studio.start_cleanup(0.05, 3600)
    deadline = time.time() + 10
    while sess.folder.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert not sess.folder.exists()


def test_device_lock_mutual_exclusion_with_plain_threads():
    lock = DeviceLock("cpu")
    inside, overlaps = [0], [0]

    def worker():
        for _ in range(20):
            with lock:
                inside[0] += 1
                overlaps[0] += inside[0] > 1
                time.sleep(0.0005)
                inside[0] -= 1

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert overlaps[0] == 0 and not lock.locked() and lock.waiting == 0


def test_unknown_job_and_invalid_config_start_nothing(studio):
    with pytest.raises(InputError, match="Unknown job 'train'; known jobs: tune, edit, eval"):
        studio.submit("train", None)
    ran = []
    with pytest.raises(InputError, match="steps must be within 0..5000; got -3"):
        submit(studio, None, "tune", lambda progress, cancel: ran.append(1), steps=-3)
    assert ran == [] and studio.store.jobs() == []  # validated before anything was recorded


def test_stopped_result_and_detached_records_replay(studio, tmp_path):
    """A job that ends with ``stopped`` is recorded stopped with its message; what a
    store-less context kept is written into the store by replay (the sweep's merge)."""
    from types import SimpleNamespace

    from vcstudio.session import DetachedContext

    jid = submit(studio, None, "tune", lambda progress, cancel: SimpleNamespace(
        stopped=True, message="Stopped at step 3 of 10", run_id=None))
    out = studio.wait(jid, 10)
    assert out.status == "stopped" and studio.store.job(jid).message == "Stopped at step 3 of 10"
    assert [j.id for j in studio.store.resumable_jobs()] == [jid]
    ctx = DetachedContext(tmp_path / "cell")
    rid = ctx.open_run("tune", tmp_path / "cell", {"method": "dct"}, seed=4, label="m=dct")
    ctx.add_metrics(rid, video={"final_loss": 0.5}, frames={"l": [1.0, 2.0]})
    (tmp_path / "cell").mkdir()
    (tmp_path / "cell" / "delta.safetensors").write_bytes(b"x")
    ctx.add_artifact(rid, "delta", tmp_path / "cell" / "delta.safetensors")
    ctx.finish_run(rid)
    ids = studio.replay(ctx.records)
    run = studio.store.run(ids[rid])
    assert (run.kind, run.seed, run.label, run.method) == ("tune", 4, "m=dct", "dct")
    assert studio.store.video_metrics([run.id])[run.id] == {"final_loss": 0.5}
    assert studio.store.run_dir(run.id) == (tmp_path / "cell").resolve()  # outside: absolute
    assert studio.replay(ctx.records) == ids  # the same folder: the same run, no new one


def test_events_subscribe_when_called_not_at_first_read(studio):
    """A page that subscribes, then updates itself before reading, loses no event: with the
    latest-event-only replay of a late subscriber it would see only the last of the three."""
    started, go = threading.Event(), threading.Event()

    def body(progress=None, cancel=None):
        started.set()
        go.wait(10)
        for i in range(3):
            progress(Event(stage="t", step=i + 1, total=3))
        return "ok"

    sid = studio.new_session().id
    job = submit(studio, sid, "tune", body)
    assert started.wait(10)
    events = studio.events(job)  # subscribed here
    go.set()
    studio.wait(job, 10)
    assert [e.step for e in events] == [1, 2, 3]


def test_a_slow_reader_with_a_small_backlog_sees_the_newest_events_and_the_end(studio):
    """A page's stream (ui/common.UI_BACKLOG) keeps the newest unread events: 10 steps
    published before a reader with backlog 4 reads come to it as the last ones, then the end
    (which drops the oldest waiting one); the store still holds every step."""
    go = threading.Event()

    def body(progress=None, cancel=None):
        go.wait(10)
        for i in range(10):
            progress(Event(stage="tune", step=i + 1, total=10, metrics={"loss": float(i)}))
        return "ok"

    job = submit(studio, studio.new_session().id, "tune", body)
    slow, full = studio.events(job, backlog=4), studio.events(job)
    go.set()
    studio.wait(job, 10)
    assert [e.step for e in slow] == [8, 9, 10]
    assert [e.step for e in full] == list(range(1, 11))
    assert [r["step"] for r in studio.store.events(job) if r["stage"] == "tune"] == \
        list(range(1, 11))


def test_the_tune_stream_redraws_skipped_steps_from_the_store(studio):
    """A page that read only the last steps of a tune still ends with every step's loss."""
    from types import SimpleNamespace

    from vcstudio.methods.registry import plotted_terms
    from vcstudio.ui.edit_tab import _tune_stream

    def body(progress=None, cancel=None):
        for i in range(6):
            progress(Event(stage="tune", step=i + 1, total=6, metrics={"loss": 1.0 + i}))
        return "ok"

    sid = studio.new_session().id
    job = submit(studio, sid, "tune", body)
    studio.wait(job, 10)
    res = SimpleNamespace(stopped=False, steps=6, seconds=1.0, message="", run_dir="r")
    seen = [Event(stage="tune", step=6, total=6, metrics={"loss": 6.0})]  # the stream's last
    terms = {k: p for k, p in plotted_terms().items() if k == "loss"}
    out = list(_tune_stream(studio, sid, [("job", job), *seen, ("result", res)], terms))
    df = out[-1][3]["value"]
    assert df[df["series"] == "loss"]["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert df[df["series"] == "loss"]["raw"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
