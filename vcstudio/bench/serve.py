"""``vcstudio bench serve``: a load and fault test of the running studio.

It starts ``python app.py`` on a free localhost port (its own data folder and Gradio cache
under a temp dir; ``--public`` sets ``SPACE_ID`` so the app is the public Space) or drives a
given ``http://127.0.0.1:PORT`` URL, and lets N concurrent ``gradio_client`` visitors loose on
the named API of API.md: each a loop, bounded in count and time, over a weighted mix of what
people do (upload + preview, estimate, a short tune on the demo model, an edit, a Compare of
two methods), what they get wrong (a text file as video, a truncated mp4, an empty prompt,
out-of-range numbers, an over-limit request on a public Space) and how they leave (Stop
mid-tune, a client that goes away mid-job).

Every answer is classified: ``done``; ``message`` (gradio_client's ``AppError`` carrying the
VcsError's one-line message); ``unhandled`` (Gradio's generic "has raised an exception" without
a message, the UI's "Something went wrong (...)" wrapper of a non-VcsError, the job runner's
"Internal error (...)", a traceback, an HTTP 500 or a broken connection); ``timeout`` (a quick
endpoint taking over 10 s); ``left`` (a job the visitor stopped waiting for at its deadline).
Meanwhile a sampler reads the server's RSS (PSS from ``/proc/PID/smaps_rollup`` summed over
its process tree, so a forked child is not counted at its parent's size; VmHWM of the main
process) and the data folder's size every few seconds. After the
visitors leave it asks the app what it still holds: the run store's jobs (its SQLite file,
read-only) still ``queued``/``running`` some seconds after their visitor left, and whether a
probe job still gets the device (a leaked device lock blocks it); then ``PRAGMA
integrity_check`` on the store.

Bench code is CLI-level: it talks to the app over HTTP only (never imported by the core).
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[2]
QUICK = ("preview", "estimate", "stop")  # endpoints outside the device queue
QUICK_TIMEOUT_S = 10.0  # a quick endpoint slower than this is a timeout
OUTCOMES = ("done", "message", "unhandled", "timeout", "left")
# what a visitor does, by weight (bad_limit only on a public studio)
WEIGHTS = {"preview": 18, "estimate": 14, "tune": 8, "edit": 6, "compare": 2, "stop": 4,
           "disconnect": 4, "bad_text": 3, "bad_truncated": 3, "bad_prompt": 3, "bad_range": 3,
           "bad_limit": 3}
BAD = {k for k in WEIGHTS if k.startswith("bad_")}
# the order the crowd's first actions cover every kind in: quick ones first, then the jobs
COVER = ("bad_text", "estimate", "bad_truncated", "preview", "bad_range", "bad_prompt",
         "bad_limit", "tune", "stop", "disconnect", "edit", "compare")
# answers that are a bug, not a user's error message
_UNHANDLED = ("has raised an exception but has not enabled", "Something went wrong (",
              "Internal error (", "Traceback (most recent call last)")
# httpx's: the server did not answer an HTTP request (upload, queue join) within HTTP_TIMEOUT_S
_TRANSPORT_TIMEOUTS = ("ReadTimeout", "ConnectTimeout", "WriteTimeout", "PoolTimeout",
                       "TimeoutException")
HTTP_TIMEOUT_S = 30.0  # about what a browser waits for an upload or a queue join
# a short tune on the demo model: small enough that ten visitors share one CPU in minutes
TUNE = dict(frames=4, stride=1, width=64, height=64, steps=10, lr=1e-3)
VISIT_S = (60.0, 180.0)  # how long one visit (one page, one studio session) lasts
LONG_TUNE_STEPS = 60  # a tune that runs long enough to be stopped or walked away from
SOURCE, TARGET = "a red circle moving right on the beach", "a blue square moving right"


# ----------------------------------------------------------------------------- records

@dataclass
class Answer:
    action: str
    outcome: str
    seconds: float
    during_jobs: bool = False  # a job event was in flight when it was asked (quick latency)
    detail: str = ""


@dataclass
class Tally:
    """What all visitors saw; thread-safe."""

    answers: list[Answer] = field(default_factory=list)
    jobs_seen: dict[str, float] = field(default_factory=dict)  # studio job ids seen
    gone: dict[str, float] = field(default_factory=dict)  # job id -> when its client left
    sessions: set[str] = field(default_factory=set)
    run_dirs: set[str] = field(default_factory=set)  # run folders visitors were handed
    stops_effective: int = 0
    visits: int = 0
    in_flight: int = 0
    mu: threading.Lock = field(default_factory=threading.Lock)

    def add(self, a: Answer) -> None:
        with self.mu:
            self.answers.append(a)

    def job(self, job_id: Optional[str], session: Optional[str] = None) -> None:
        with self.mu:
            if job_id:
                self.jobs_seen.setdefault(job_id, 0.0)
            if session:
                self.sessions.add(session)

    @contextlib.contextmanager
    def job_running(self):
        with self.mu:
            self.in_flight += 1
        try:
            yield
        finally:
            with self.mu:
                self.in_flight -= 1

    def busy(self) -> bool:
        with self.mu:
            return self.in_flight > 0


def classify(exc: BaseException) -> tuple[str, str]:
    """(outcome, one-line text) of what a call raised."""
    from gradio_client.exceptions import AppError, ValidationError

    if isinstance(exc, ValidationError):  # an event's validator refused it before queueing
        return "message", " ".join(str(exc).split())
    if isinstance(exc, AppError):
        msg = " ".join(str(exc.message or "").split())
        if not msg or msg.lower() == "error" or any(u in msg for u in _UNHANDLED):
            return "unhandled", msg or "Error (no message)"
        return "message", msg
    if isinstance(exc, TimeoutError) or type(exc).__name__ in _TRANSPORT_TIMEOUTS:
        return "timeout", f"no answer in time ({type(exc).__name__})"
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return "unhandled", text[:300]


# ----------------------------------------------------------------------------- the server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_local(url: str) -> str:
    """The URL, normalised with a trailing slash; refuses anything but a loopback host."""
    u = urlparse(url)
    if u.scheme not in ("http", "https") or u.hostname not in ("127.0.0.1", "localhost", "::1"):
        from ..errors import InputError

        raise InputError(f"bench serve only talks to this machine: give http://127.0.0.1:PORT, "
                         f"not {url!r}.")
    return url if url.endswith("/") else url + "/"


class Server:
    """``python app.py`` in a subprocess: its own data folder, Gradio cache and log."""

    def __init__(self, work: Path, public: bool, model: Optional[str] = None,
                 ttl_s: Optional[float] = None, sweep_s: Optional[float] = None,
                 threads: Optional[int] = None) -> None:
        self.work = work
        self.data = work / "data"
        self.gradio_tmp = work / "gradio"
        self.log_path = work / "server.log"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = dict(os.environ, PORT=str(self.port), GRADIO_SERVER_NAME="127.0.0.1",
                   VCSTUDIO_DATA=str(self.data), GRADIO_TEMP_DIR=str(self.gradio_tmp),
                   HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                            os.environ.get("PYTHONPATH")])))
        env.pop("SPACE_ID", None)
        if public:
            env["SPACE_ID"] = "vcstudio/bench-serve"
        if model:
            env["VCSTUDIO_MODEL"] = model
        if ttl_s is not None:
            env["VCSTUDIO_PUBLIC_TTL_S"] = str(ttl_s)
        if sweep_s is not None:
            env["VCSTUDIO_PUBLIC_SWEEP_S"] = str(sweep_s)
        if threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self._log = None

    def start(self, timeout_s: float = 180.0) -> None:
        import httpx

        self.data.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=str(ROOT),
                                     env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with {self.proc.returncode} before "
                                   f"serving:\n{self.log_tail()}")
            with contextlib.suppress(Exception):
                if httpx.get(self.url + "config", timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the app did not answer within {timeout_s:.0f} s:\n"
                           f"{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 4000) -> str:
        return self.log_text()[-n:]


# ----------------------------------------------------------------------------- sampling

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = defaultdict(list)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids[ppid].append(int(d))
    return kids


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _pss_kib(pid: int) -> int:
    """Proportional set size of ``pid`` (``/proc/PID/smaps_rollup``): a forked child's pages
    shared copy-on-write with its parent count half to each, not in full to both (VmRSS summed
    over a tree counted a forked worker at its parent's size). VmRSS where the kernel has no
    smaps_rollup."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return _status_kib(pid, "VmRSS")


def tree_rss_mib(pid: int) -> tuple[float, float]:
    """(PSS of ``pid`` and all its descendants, VmHWM of ``pid``) in MiB (PSS: see
    :func:`_pss_kib`)."""
    kids, todo, total = _children(), [pid], 0
    seen = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        total += _pss_kib(p)
        todo.extend(kids.get(p, ()))
    return total / 1024, _status_kib(pid, "VmHWM") / 1024


def folder_mib(path: Optional[Path]) -> float:
    if path is None or not path.exists():
        return 0.0
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total / 2**20


class Sampler(threading.Thread):
    """(t, tree RSS MiB, VmHWM MiB, data MiB, gradio cache MiB, server threads) every
    ``every_s``."""

    def __init__(self, pid: Optional[int], data: Optional[Path], cache: Optional[Path],
                 every_s: float = 3.0) -> None:
        super().__init__(name="bench-serve-sampler", daemon=True)
        self.pid, self.data, self.cache, self.every_s = pid, data, cache, every_s
        self.rows: list[tuple] = []
        self.t0 = time.monotonic()
        self._halt = threading.Event()

    def sample(self) -> None:
        rss, hwm = tree_rss_mib(self.pid) if self.pid else (0.0, 0.0)
        threads = _status_kib(self.pid, "Threads") if self.pid else 0
        self.rows.append((time.monotonic() - self.t0, rss, hwm, folder_mib(self.data),
                          folder_mib(self.cache), threads))

    def run(self) -> None:
        while True:
            self.sample()
            if self._halt.wait(self.every_s):
                return

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        self.sample()


# ----------------------------------------------------------------------------- inputs

@dataclass
class Inputs:
    clips: list[Path]
    text_file: Path
    text_as_mp4: Path
    truncated: Path


def make_inputs(folder: Path, n: int) -> Inputs:
    """A few distinct small clips (so uploads are not all one content hash) and the bad
    files: a text file, a text file named .mp4 and an mp4 cut in half."""
    from ..io import write_mp4
    from ..io.synthetic import moving_shape_clip

    folder.mkdir(parents=True, exist_ok=True)
    clips = [write_mp4(moving_shape_clip(8, 64, dx=2.0 + i, seed=i), folder / f"clip{i}.mp4")
             for i in range(max(1, n))]
    text = folder / "notes.txt"
    text.write_text("this is not a video\n" * 50)
    text_mp4 = folder / "notes.mp4"
    text_mp4.write_text("this is not a video either\n" * 50)
    data = clips[0].read_bytes()
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    return Inputs(clips, text, text_mp4, truncated)


# ----------------------------------------------------------------------------- visitors

class Visitor(threading.Thread):
    """One browser tab's worth of behaviour: a weighted random loop of actions, at most
    ``max_actions`` of them and none past ``deadline`` (a job still waiting then is cancelled:
    the visitor leaves)."""

    def __init__(self, idx: int, url: str, deadline: float, tally: Tally, inputs: Inputs,
                 public: bool, max_actions: int, seed: int, job_cap_s: float,
                 crowd: int = 1) -> None:
        super().__init__(name=f"bench-visitor-{idx}", daemon=True)
        self.idx, self.url, self.deadline, self.tally = idx, url, deadline, tally
        self.inputs, self.public, self.max_actions = inputs, public, max_actions
        self.job_cap_s, self.crowd = job_cap_s, max(1, crowd)
        self.rng = random.Random(seed)
        self.clip = inputs.clips[idx % len(inputs.clips)]
        self.session = ""
        self.run_dir = ""
        self.client = None
        self.left_at = 0.0
        weights = {k: w for k, w in WEIGHTS.items() if public or k != "bad_limit"}
        self.actions, self.weights = list(weights), list(weights.values())
        self.error: Optional[str] = None

    # -- plumbing ---------------------------------------------------------------------------
    def _client(self):
        from gradio_client import Client

        return Client(self.url, verbose=False, download_files=False,
                      httpx_kwargs={"timeout": HTTP_TIMEOUT_S})

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def _wait(self, job, quick: bool) -> Any:
        """The job's final output; TimeoutError past the quick limit (x3, then it is
        abandoned) or, for a job event, past the visitor's deadline or the job cap."""
        limit = 3 * QUICK_TIMEOUT_S if quick else max(0.0, min(self.remaining(),
                                                               self.job_cap_s))
        try:
            return job.result(timeout=limit)
        except BaseException:
            if not job.done():
                job.cancel()
            raise

    def call(self, action: str, api: str, quick: bool, check: Optional[Callable] = None,
             **kw) -> Any:
        """Submit ``api`` with ``kw``, classify and record the answer; the output or None."""

        busy = self.tally.busy()
        t0 = time.monotonic()
        out, outcome, detail = None, "done", ""
        ctx = contextlib.nullcontext() if quick else self.tally.job_running()
        with ctx:
            try:
                job = self.client.submit(api_name=api, **kw)
                out = self._wait(job, quick)
            except BaseException as e:  # noqa: BLE001 - every failure is a data point
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                outcome, detail = classify(e)
                if outcome == "timeout" and not quick:
                    outcome, detail = "left", "visitor left before the job ended"
        dt = time.monotonic() - t0
        if outcome == "done" and check is not None:
            problem = check(out)
            if problem:
                outcome, detail = "unhandled", problem
        if quick and dt > QUICK_TIMEOUT_S and outcome in ("done", "message"):
            outcome, detail = "timeout", f"{dt:.1f} s"
        self.tally.add(Answer(action, outcome, dt, busy, detail))
        return out if outcome == "done" else None

    def file(self, path: Path):
        from gradio_client import handle_file

        return handle_file(str(path))

    def _note(self, out) -> None:
        """Remember the session and job a tune-like answer carries."""
        if isinstance(out, (list, tuple)) and out:
            if isinstance(out[0], str) and out[0]:
                self.session = out[0]
            job = out[1] if len(out) > 1 and isinstance(out[1], str) else None
            self.tally.job(job, self.session)

    # -- actions ----------------------------------------------------------------------------
    def do_preview(self) -> None:
        out = self.call("preview", "/preview", True, session=self.session,
                        clip=self.file(self.clip), frames=TUNE["frames"], stride=1,
                        width=TUNE["width"], height=TUNE["height"],
                        check=lambda o: None if o and "will be tuned on" in str(o[2])
                        else f"preview answered {str(o)[:120]}")
        if out:
            self.session = out[0]
            self.tally.job(None, self.session)

    def do_estimate(self) -> None:
        self.call("estimate", "/estimate", True, frames=self.rng.choice([4, 8]),
                  width=64, height=64, steps=self.rng.choice([10, 50, 100]),
                  method=self.rng.choice(["baseline", "dct", "apla"]),
                  check=lambda o: None if "Estimate" in str(o) else f"estimate: {o}")

    def _tune_ok(self, o) -> Optional[str]:
        status = str(o[2]) if isinstance(o, (list, tuple)) and len(o) > 2 else str(o)
        if status.startswith(("Tuned", "Stopped")) and o[5]:
            return None
        return f"tune answered {status[:160]!r}"

    def do_tune(self) -> None:
        out = self.call("tune", "/tune", False, self._tune_ok, session=self.session,
                        clip=self.file(self.clip), prompt=SOURCE, **TUNE)
        self._note(out)
        if out:
            self.run_dir = out[5]
            with self.tally.mu:
                self.tally.run_dirs.add(self.run_dir)

    def do_edit(self) -> None:
        if not self.run_dir:
            return self.do_tune()
        self.call("edit", "/edit", False,
                  lambda o: None if str(o[2]) == "Done." and o[0] else f"edit: {o[2]!r}",
                  session=self.session, run_dir=self.run_dir, prompt=TARGET, steps=5,
                  guidance=5.0)

    def do_compare(self) -> None:
        out = self.call("compare", "/compare", False,
                        lambda o: None if str(o[0]).startswith("Done") else f"compare: {o[0]!r}",
                        session=self.session, clip=self.file(self.clip), prompt=SOURCE,
                        edit_prompt=TARGET, frames=2, size=64, steps=10)
        return out

    def _start_long_tune(self, client):
        job = client.submit(api_name="/tune", session=self.session, clip=self.file(self.clip),
                            prompt=SOURCE, **{**TUNE, "steps": LONG_TUNE_STEPS})
        # the first streamed output carries the studio job id (the event has started)
        while True:
            done = job.done()
            outs = job.outputs()
            if outs and isinstance(outs[-1], (list, tuple)) and outs[-1][1]:
                return job, outs[-1]
            if done or self.remaining() <= 0:
                return job, None
            time.sleep(0.2)

    def do_stop(self) -> None:
        """Tune, press Stop once it runs, and expect a stopped (or just finished) tune."""
        t0, busy = time.monotonic(), self.tally.busy()
        with self.tally.job_running():
            try:
                job, first = self._start_long_tune(self.client)
            except BaseException as e:  # noqa: BLE001
                outcome, detail = classify(e)
                self.tally.add(Answer("tune_stopped", outcome, time.monotonic() - t0, busy,
                                      detail))
                return
        if first is None:  # it ended before it streamed, or the visitor's time ran out
            outcome, detail = "left", "left before the tune started"
            if job.done():
                try:
                    job.result(timeout=0)
                    outcome, detail = "unhandled", "the tune ended without a job id"
                except BaseException as e:  # noqa: BLE001
                    outcome, detail = classify(e)
            job.cancel()
            self.tally.add(Answer("tune_stopped", outcome, time.monotonic() - t0, busy,
                                  detail))
            return
        self._note(first)
        said = self.call("stop", "/stop", True, session=first[0], job_id=first[1])
        with self.tally.job_running():
            t1 = time.monotonic()
            try:
                out = self._wait(job, quick=False)
                problem = self._tune_ok(out)
                outcome = "unhandled" if problem else "done"
                if not problem and str(out[2]).startswith("Stopped"):
                    with self.tally.mu:
                        self.tally.stops_effective += 1
                detail = problem or ""
            except BaseException as e:  # noqa: BLE001
                outcome, detail = classify(e)
                if outcome == "timeout":
                    outcome, detail = "left", "visitor left before the stopped tune ended"
        self.tally.add(Answer("tune_stopped", outcome, time.monotonic() - t1, busy,
                              detail or (said or "")))

    def do_disconnect(self) -> None:
        """A second tab starts a tune and is closed mid-job: its client goes away."""
        t0, busy = time.monotonic(), self.tally.busy()
        c2 = None
        try:
            c2 = self._client()
            with self.tally.job_running():
                job, first = self._start_long_tune(c2)
            if first is not None:
                self._note(first)
                time.sleep(self.rng.uniform(0.2, 2.0))
            outcome, detail = "done", "" if first else "closed while queued"
            if first is not None:
                with self.tally.mu:
                    self.tally.gone[first[1]] = time.time()
            if job.done() and first is None:
                try:
                    job.result(timeout=0)
                except BaseException as e:  # noqa: BLE001
                    outcome, detail = classify(e)
            job.cancel()
        except BaseException as e:  # noqa: BLE001
            outcome, detail = classify(e)
        finally:
            if c2 is not None:
                c2.close()
        self.tally.add(Answer("disconnect", outcome, time.monotonic() - t0, busy, detail))

    def _bad(self, action: str, api: str, quick: bool, **kw) -> None:
        """A bad input must be answered with a message; 'done' would mean it was accepted."""
        def accepted(o) -> str:
            return f"bad input accepted: {str(o)[:120]}"

        out = self.call(action, api, quick, check=accepted, **kw)
        self._note(out)

    def do_bad_text(self) -> None:
        f = self.rng.choice([self.inputs.text_file, self.inputs.text_as_mp4])
        self._bad("bad_text", "/preview", True, session=self.session, clip=self.file(f),
                  frames=4, width=64, height=64)

    def do_bad_truncated(self) -> None:
        self._bad("bad_truncated", "/preview", True, session=self.session,
                  clip=self.file(self.inputs.truncated), frames=4, width=64, height=64)

    def do_bad_prompt(self) -> None:
        self._bad("bad_prompt", "/tune", False, session=self.session, clip=self.file(self.clip),
                  prompt=self.rng.choice(["", "   "]), **TUNE)

    def do_bad_range(self) -> None:
        bad = self.rng.choice([dict(frames=0), dict(frames=-3), dict(frames=2.5),
                               dict(width=60), dict(width=-64), dict(stride=0),
                               dict(steps=0), dict(lr=-1.0), dict(lr=5.0)])
        self._bad("bad_range", "/tune", False, session=self.session, clip=self.file(self.clip),
                  prompt=SOURCE, **{**TUNE, **bad})

    def do_bad_limit(self) -> None:
        """Over the public Space's limits (the CPU tier: 8 frames, 256 px, 100 steps)."""
        bad = self.rng.choice([dict(steps=500), dict(frames=24), dict(width=512, height=512)])
        self._bad("bad_limit", "/tune", False, session=self.session, clip=self.file(self.clip),
                  prompt=SOURCE, **{**TUNE, **bad})

    def new_visit(self) -> bool:
        """This visitor leaves and a new one arrives: a fresh client (a new Gradio session)
        and a fresh studio session; the old one idles until the public TTL removes it."""
        with contextlib.suppress(Exception):
            self.client.close()
        self.client = None
        self.session, self.run_dir = "", ""
        with self.tally.mu:
            self.tally.visits += 1
        return self.connect()

    def connect(self) -> bool:
        for attempt in range(3):  # a browser whose page did not load reloads it
            try:
                self.client = self._client()
                return True
            except Exception as e:  # noqa: BLE001
                outcome, detail = classify(e)
                self.tally.add(Answer("connect", outcome, 0.0, False, detail))
                if self.remaining() <= 0:
                    break
                time.sleep(2.0)
        return False

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> None:
        try:
            if not self.connect():
                return
            # the crowd covers every action early (visitor i takes actions i, i + N, ...
            # of COVER first), so even a short run sees each kind; then the weighted mix
            first = [a for a in COVER if a in self.actions][self.idx::self.crowd]
            visit_end = time.monotonic() + self.rng.uniform(*VISIT_S)
            for n in range(self.max_actions):
                if self.remaining() <= 0:
                    break
                if time.monotonic() > visit_end:
                    if not self.new_visit():
                        return
                    visit_end = time.monotonic() + self.rng.uniform(*VISIT_S)
                action = (first[n] if n < len(first)
                          else self.rng.choices(self.actions, self.weights)[0])
                getattr(self, f"do_{action}")()
        except BaseException as e:  # noqa: BLE001 - a visitor that dies is a finding
            outcome, detail = classify(e)
            self.tally.add(Answer("visitor", outcome, 0.0, False, detail))
            self.error = detail
        finally:
            self.left_at = time.time()
            if self.client is not None:
                with contextlib.suppress(Exception):
                    self.client.close()


# ----------------------------------------------------------------------------- the app's side

def store_path(data: Path) -> Path:
    return data / "vcstudio.db"


def store_jobs(data: Path) -> list[dict]:
    """The run store's jobs (read-only: the app keeps writing it)."""
    path = store_path(data)
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                            timeout=10)) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(
            "SELECT id, kind, status, session_id, updated, step, total, error, "
            "(SELECT MAX(t) FROM job_events e WHERE e.job_id = jobs.id) AS last_event "
            "FROM jobs")]


def integrity(data: Path) -> str:
    path = store_path(data)
    if not path.exists():
        return "no store"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                            timeout=10)) as db:
        rows = [r[0] for r in db.execute("PRAGMA integrity_check")]
    return "ok" if rows == ["ok"] else "; ".join(rows)[:300]


def wait_settled(data: Optional[Path], grace_s: float) -> list[dict]:
    """The store's jobs still queued or running after up to ``grace_s`` (polling)."""
    if data is None:
        return []
    deadline = time.monotonic() + grace_s
    while True:
        live = [j for j in store_jobs(data) if j["status"] in ("queued", "running")]
        if not live or time.monotonic() >= deadline:
            return live
        time.sleep(1.0)


def probe_device(url: str, clip: Path, timeout_s: float) -> tuple[bool, str]:
    """Whether a fresh visitor's tune still gets the device (a leaked lock or a stuck queue
    would keep it waiting): it must start (its first output) within ``timeout_s``; the probe
    then stops it."""
    from gradio_client import Client, handle_file

    c = Client(url, verbose=False, download_files=False,
               httpx_kwargs={"timeout": HTTP_TIMEOUT_S})
    try:
        job = c.submit(api_name="/tune", clip=handle_file(str(clip)), prompt=SOURCE,
                       **{**TUNE, "steps": LONG_TUNE_STEPS})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            outs = job.outputs()
            if outs and isinstance(outs[-1], (list, tuple)) and outs[-1][1]:
                c.predict(session=outs[-1][0], job_id=outs[-1][1], api_name="/stop")
                with contextlib.suppress(BaseException):
                    job.result(timeout=timeout_s)
                return True, ""
            if job.done():
                try:
                    job.result(timeout=0)
                    return True, ""
                except BaseException as e:  # noqa: BLE001
                    return False, classify(e)[1]
            time.sleep(0.2)
        job.cancel()
        return False, f"a new tune did not start within {timeout_s:.0f} s"
    finally:
        c.close()


# ----------------------------------------------------------------------------- report

def _pct(values: list[float], q: float) -> Optional[float]:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def _minute(rows, first: bool, col: int) -> Optional[float]:
    """Mean of column ``col`` over the first or last 60 s of samples."""
    if not rows:
        return None
    t_end = rows[-1][0]
    sel = [r[col] for r in rows if (r[0] <= 60 if first else r[0] >= t_end - 60)]
    return statistics.fmean(sel) if sel else None


def _slope_per_min(rows, col: int) -> Optional[float]:
    """Least-squares slope (per minute) of column ``col`` over the last half of the run."""
    if len(rows) < 4:
        return None
    half = [r for r in rows if r[0] >= rows[-1][0] / 2]
    if len(half) < 3:
        return None
    xs, ys = [r[0] / 60 for r in half], [r[col] for r in half]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def summarise(tally: Tally, samples, jobs: list[dict], live: list[dict], probe: tuple,
              integrity_s: str, meta: dict, server_log: str = "") -> dict:
    per: dict[str, Counter] = defaultdict(Counter)
    for a in tally.answers:
        per[a.action][a.outcome] += 1
    totals = Counter(a.outcome for a in tally.answers)
    latency = {}
    for kind in QUICK:
        during = [a.seconds for a in tally.answers if a.action == kind and a.during_jobs
                  and a.outcome != "left"]
        every = [a.seconds for a in tally.answers if a.action == kind and a.outcome != "left"]
        latency[kind] = {"n": len(every), "n_during_jobs": len(during),
                         "p50_s": _pct(during or every, 0.5), "p95_s": _pct(during or every, 0.95),
                         "max_s": max(every) if every else None}
    status = Counter(j["status"] for j in jobs)
    by_kind = Counter(j["kind"] for j in jobs)
    # a job whose client went away must stop within the grace time of it, not only once the
    # whole crowd has left: its last progress event (the store's job_events) may come at most
    # that long after (`updated` will not do: the TTL cleanup rewrites it to mark it expired)
    rows = {j["id"]: j for j in jobs}
    late = [rows[j] for j, t in tally.gone.items() if j in rows and rows[j]["status"] not in
            ("queued", "running")
            and (rows[j].get("last_event") or 0.0) > t + meta.get("grace_s", 30.0)]
    leaked = len(live) + len(late) + (0 if probe[0] else 1)
    bad_ok = sum(c["message"] for k, c in per.items() if k in BAD)
    bad_all = sum(sum(c.values()) for k, c in per.items() if k in BAD)
    rss = [r[1] for r in samples]
    # the growth and trend figures cover the visitors' time only (not the checks after it)
    t_left = meta.get("sampler_t_left")
    every = samples
    samples = [r for r in samples if t_left is None or r[0] <= t_left] or samples
    out = {
        "totals": {"requests": len(tally.answers), "done": totals["done"],
                   "messages": totals["message"], "unhandled": totals["unhandled"],
                   "timeouts": totals["timeout"], "left": totals["left"], "leaked": leaked},
        "integrity": integrity_s,
        "peak_rss_mib": round(max(rss), 1) if rss else None,
        "peak_hwm_mib": round(max(r[2] for r in every), 1) if every else None,
        "rss_first_min_mib": _round(_minute(samples, True, 1)),
        "rss_last_min_mib": _round(_minute(samples, False, 1)),
        "rss_growth_mib": _round(_diff(_minute(samples, False, 1), _minute(samples, True, 1))),
        "rss_last_half_slope_mib_per_min": _round(_slope_per_min(samples, 1)),
        "data_first_mib": _round(samples[0][3]) if samples else None,
        "data_peak_mib": _round(max(r[3] for r in samples)) if samples else None,
        "data_last_mib": _round(samples[-1][3]) if samples else None,
        "data_growth_mib": _round(samples[-1][3] - samples[0][3]) if samples else None,
        "data_last_half_slope_mib_per_min": _round(_slope_per_min(samples, 3)),
        "gradio_cache_last_mib": _round(samples[-1][4]) if samples else None,
        "server_threads_first_last_peak": ([samples[0][5], samples[-1][5],
                                            max(r[5] for r in samples)] if samples else None),
        # (minute, RSS MiB, data MiB): the curves behind the growth numbers
        "per_minute": _per_minute(samples),
        "latency": latency,
        "per_action": {k: dict(v) for k, v in sorted(per.items())},
        "bad_inputs": {"answered_with_message": bad_ok, "total": bad_all},
        "jobs": {"store_total": len(jobs), "by_status": dict(status), "by_kind": dict(by_kind),
                 "finished": status["done"] + status["stopped"],
                 "cancelled": status["cancelled"], "failed": status["failed"],
                 "leaked": [{k: j[k] for k in ("id", "kind", "status", "step", "total")}
                            for j in live],
                 "device_probe": "ok" if probe[0] else probe[1],
                 "disconnected": len(tally.gone),
                 "ended_late_after_disconnect": [
                     {"id": j["id"], "status": j["status"],
                      "seconds_after": round(j["last_event"] - tally.gone[j["id"]], 1)}
                     for j in late],
                 "stops_effective": tally.stops_effective},
        "server_exceptions": server_exceptions(server_log),
        "problems": sorted({f"{a.action}: {a.detail}" for a in tally.answers
                            if a.outcome in ("unhandled", "timeout")})[:30],
        # what the visitors were told, by action (a bad input must be told what to do)
        "messages": {k: sorted({a.detail[:140] for a in tally.answers
                                if a.action == k and a.outcome == "message"})[:8]
                     for k in sorted(per) if per[k]["message"]},
        # every action's answer time (a job's includes its wait in the device queue)
        "seconds": {k: {"p50": _round2(_pct(v, 0.5)), "p95": _round2(_pct(v, 0.95)),
                        "max": _round2(max(v))}
                    for k, v in sorted(_answer_times(tally).items()) if v},
        "meta": meta,
    }
    return out


_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Warning)\b|"
                       r"[A-Za-z_][\w.]*\.[A-Z]\w*):? ?(.*)$")


def server_exceptions(log_text: str) -> list[str]:
    """The exceptions the server's log shows a traceback of, other than ``gr.Error``: Gradio
    prints every failed event's traceback, and a user's error reaches the page as a
    gr.Error (an answer with its message, not a crash). A chained exception counts once, as
    the last of its chain."""
    out, in_tb = [], False
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            in_tb = True
            continue
        if not in_tb or line.startswith((" ", "\t")) or not line.strip():
            continue
        m = _EXC_LINE.match(line)
        if m is None:
            continue
        in_tb = False
        nxt = next((ln for ln in lines[i + 1:] if ln.strip()), "")
        if nxt.startswith(("During handling of the above", "The above exception was")):
            continue
        if m.group(1) not in ("gradio.exceptions.Error",):
            out.append(" ".join(line.split())[:200])
    return out


def _per_minute(rows) -> list[list[float]]:
    out = []
    for m in range(int(rows[-1][0] // 60) + 1 if rows else 0):
        sel = [r for r in rows if m * 60 <= r[0] < (m + 1) * 60]
        if sel:
            out.append([m, round(max(r[1] for r in sel), 1), round(max(r[3] for r in sel), 1)])
    return out


def _answer_times(tally: Tally) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for a in tally.answers:
        if a.outcome in ("done", "message"):
            out[a.action].append(a.seconds)
    return out


def _round2(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(x, 2)


def _round(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(x, 1)


def _diff(a, b):
    return None if a is None or b is None else a - b


def format_table(r: dict) -> str:
    lines = []
    m = r["meta"]
    lines.append(f"bench serve: {m['visitors']} visitors x {m['minutes']:g} min, "
                 f"{'public' if m['public'] else 'desktop'}, {m['url']}  "
                 f"({m['wall_s']:.0f} s wall, app torch threads "
                 f"{m.get('torch_threads') or 'default'})")
    lines.append(f"visits (a page with its own studio session): {m['visits']}")
    lines.append("")
    head = (f"{'action':<14}" + "".join(f"{o:>10}" for o in OUTCOMES) + f"{'total':>8}"
            + f"{'p50 s':>8}{'max s':>8}")
    lines += [head, "-" * len(head)]
    for action, c in r["per_action"].items():
        sec = r["seconds"].get(action, {})
        f = lambda x: "-" if x is None else f"{x:.1f}"  # noqa: E731
        lines.append(f"{action:<14}" + "".join(f"{c.get(o, 0):>10}" for o in OUTCOMES)
                     + f"{sum(c.values()):>8}{f(sec.get('p50')):>8}{f(sec.get('max')):>8}")
    t = r["totals"]
    lines.append("-" * len(head))
    lines.append(f"{'all':<14}{t['done']:>10}{t['messages']:>10}{t['unhandled']:>10}"
                 f"{t['timeouts']:>10}{t['left']:>10}{t['requests']:>8}")
    lines.append("")
    lines.append(f"{'quick endpoint':<16}{'n':>6}{'n(jobs)':>9}{'p50 s':>8}{'p95 s':>8}"
                 f"{'max s':>8}")
    for k, v in r["latency"].items():
        f = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
        lines.append(f"{k:<16}{v['n']:>6}{v['n_during_jobs']:>9}{f(v['p50_s']):>8}"
                     f"{f(v['p95_s']):>8}{f(v['max_s']):>8}")
    j = r["jobs"]
    lines.append("")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(j["by_kind"].items()))
    lines.append(f"jobs in the store: {j['store_total']} ({kinds})")
    lines.append(f"  finished {j['finished']} (stopped by Stop: {j['stops_effective']}), "
                 f"cancelled {j['cancelled']}, failed {j['failed']}, "
                 f"leaked {t['leaked']} (still running: {len(j['leaked'])}, ended > grace "
                 f"after their client left: {len(j['ended_late_after_disconnect'])} of "
                 f"{j['disconnected']}, device probe: {j['device_probe']})")
    lines.append(f"  by status: {', '.join(f'{k} {v}' for k, v in sorted(j['by_status'].items()))}")
    b = r["bad_inputs"]
    lines.append(f"bad inputs answered with a message: {b['answered_with_message']}/{b['total']}")
    lines.append(f"server RSS: peak {r['peak_rss_mib']} MiB (VmHWM {r['peak_hwm_mib']}), "
                 f"first min {r['rss_first_min_mib']}, last min {r['rss_last_min_mib']} "
                 f"(growth {r['rss_growth_mib']}), last-half slope "
                 f"{r['rss_last_half_slope_mib_per_min']} MiB/min")
    lines.append(f"data folder: {r['data_first_mib']} -> {r['data_last_mib']} MiB (peak "
                 f"{r['data_peak_mib']}, growth {r['data_growth_mib']}, last-half slope "
                 f"{r['data_last_half_slope_mib_per_min']} MiB/min); gradio cache "
                 f"{r['gradio_cache_last_mib']} MiB")
    th = r["server_threads_first_last_peak"]
    if th:
        lines.append(f"server threads: {th[0]} -> {th[1]} (peak {th[2]}); RSS/data MiB per "
                     "minute: " + " ".join(f"{m}:{a:.0f}/{d:.0f}" for m, a, d in
                                            r["per_minute"]))
    lines.append(f"store integrity_check: {r['integrity']}; exceptions in the server log "
                 f"(other than the messages gr.Error shows): {len(r['server_exceptions'])}")
    for e in r["server_exceptions"][:10]:
        lines.append(f"  server: {e}")
    att = r.get("attacker")
    if att is not None:
        lines.append(f"stranger: {att['tries']} tries on other visitors' files, jobs and runs, "
                     f"{att['n_successes']} succeeded" + (" (FAIL)" if att["n_successes"] else ""))
        lines += [f"  got: {s}" for s in att["successes"][:10]]
    if r["problems"]:
        lines.append("problems:")
        lines += [f"  {p}" for p in r["problems"]]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the command

def run_bench_serve(visitors: int = 10, minutes: float = 10.0, public: bool = False,
                    url: Optional[str] = None, data: Optional[Path] = None,
                    model: Optional[str] = None, seed: int = 0, max_actions: int = 500,
                    grace_s: float = 30.0, ttl_s: Optional[float] = None,
                    sweep_s: Optional[float] = None, sample_s: float = 3.0,
                    job_cap_s: float = 300.0, server_pid: Optional[int] = None,
                    threads: Optional[int] = 1,
                    keep: bool = False, log: Callable[[str], Any] = print) -> dict:
    """Run the load test; the report dict (see :func:`summarise`)."""
    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="vcstudio-bench-serve-"))
    server = None
    try:
        if url:
            url = check_local(url)
            pid = server_pid
            cache = None
        else:
            if public and ttl_s is None:
                # short enough that a 10-minute run sees the TTL cleanup work
                ttl_s, sweep_s = 180.0, sweep_s or 30.0
            server = Server(work, public, model, ttl_s, sweep_s, threads)
            log(f"starting python app.py on {server.url} (data {server.data})")
            server.start()
            url, pid, data, cache = server.url, server.proc.pid, server.data, server.gradio_tmp
        inputs = make_inputs(work / "inputs", min(visitors, 4))
        tally = Tally()
        sampler = Sampler(pid, data, cache, sample_s)
        sampler.start()
        deadline = time.monotonic() + minutes * 60
        crowd = [Visitor(i, url, deadline, tally, inputs, public, max_actions, seed * 1000 + i,
                         job_cap_s, visitors) for i in range(visitors)]
        log(f"{visitors} visitors for {minutes:g} min ...")
        attacker = None
        if public:  # a stranger among them, holding whatever the others were handed
            from .attack import Attacker

            attacker = Attacker(url, data, tally, deadline, seed=seed)
            attacker.start()
        for v in crowd:
            v.start()
            time.sleep(0.2)  # not all in the same millisecond
        for v in crowd:
            # each visitor stops by itself at the deadline; this is only a backstop
            v.join(max(1.0, deadline - time.monotonic()) + job_cap_s + 60)
        if attacker is not None:
            attacker.join(180)
        left = time.time()
        t_left = time.monotonic() - sampler.t0
        log(f"visitors left; waiting up to {grace_s:.0f} s for their jobs to end ...")
        live = wait_settled(data, grace_s)
        probe = probe_device(url, inputs.clips[0], max(30.0, grace_s))
        live = wait_settled(data, 5.0)  # the probe's own tune has ended too
        sampler.stop()
        jobs = store_jobs(data) if data is not None else []
        meta = {"visitors": visitors, "minutes": minutes, "public": public, "url": url,
                "wall_s": time.monotonic() - t_start, "visitors_left_at": left,
                "ttl_s": ttl_s, "torch_threads": threads if server else None,
                "work": str(work) if keep else None,
                "visits": tally.visits + visitors, "sampler_t_left": t_left,
                "grace_s": grace_s,
                "visitor_errors": [v.error for v in crowd if v.error]}
        report = summarise(tally, sampler.rows, jobs, live, probe,
                           integrity(data) if data is not None else "not checked (no data)",
                           meta, server.log_text() if server else "")
        report["attacker"] = attacker.report() if attacker is not None else None
        return report
    finally:
        if server is not None:
            server.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def add_bench_serve_args(p) -> None:
    p.add_argument("--visitors", type=int, default=10)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--public", action="store_true",
                   help="start the app as a public Space (SPACE_ID set): its limits, "
                        "ownership checks and session TTL cleanup")
    p.add_argument("--url", help="drive a running studio at http://127.0.0.1:PORT instead "
                                 "(local hosts only)")
    p.add_argument("--data", type=Path, help="with --url: the app's data folder (for the "
                                             "store checks and the folder size)")
    p.add_argument("--pid", type=int, help="with --url: the app's process id (for RSS)")
    p.add_argument("--model", help="base model of the app it starts (default: the demo model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-actions", type=int, default=500, help="per visitor")
    p.add_argument("--grace", type=float, default=30.0,
                   help="seconds after the visitors leave before a live job counts as leaked")
    p.add_argument("--ttl", type=float, help="public session TTL of the app it starts "
                                             "(default 180 s with --public)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of the app it starts (OMP_NUM_THREADS; 0 = torch's "
                        "default). 1 by default: on a small shared CPU box the demo model "
                        "tunes ~10x faster single-threaded than with oversubscribed threads")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (server log)")
    p.add_argument("--json", nargs="?", const="-", metavar="PATH",
                   help="write the report as JSON (to stdout without PATH)")


def run_bench_serve_cli(a) -> int:
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    r = run_bench_serve(visitors=a.visitors, minutes=a.minutes, public=a.public, url=a.url,
                        data=a.data, model=a.model, seed=a.seed, max_actions=a.max_actions,
                        grace_s=a.grace, ttl_s=a.ttl, server_pid=a.pid, threads=a.threads or None,
                        keep=a.keep, log=log)
    text = json.dumps(r, indent=1, default=str)
    if a.json == "-":
        print(format_table(r), file=sys.stderr)
        print(text)
    else:
        print(format_table(r))
        if a.json:
            Path(a.json).write_text(text + "\n")
    t = r["totals"]
    att = r.get("attacker") or {}
    return 0 if (t["unhandled"] == 0 and t["leaked"] == 0 and r["integrity"] == "ok"
                 and not att.get("n_successes")) else 1
