"""`python app.py` started as the README says, with HOME (and so the platform's default data
folder) in a temporary folder outside both the temp dir and the working dir: the tests of the
app as shipped share this one start-up."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def app_py(base: Path):
    """Start the app under ``base`` (home/, tmp/, app.log); yields {"url", "home", "tmp",
    "log"} once it answers, and stops it afterwards. A start that fails is a test failure
    with the app's log."""
    home, tmp = base / "home", base / "tmp"
    home.mkdir()
    tmp.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("VCSTUDIO_DATA", "XDG_DATA_HOME", "GRADIO_TEMP_DIR", "VCSTUDIO_MODEL")}
    # the app's temp dir is tmp/, its working dir the repository: HOME lies outside both
    env.update(HOME=str(home), TMPDIR=str(tmp), PORT=str(port), HF_HUB_OFFLINE="1",
               GRADIO_ANALYTICS_ENABLED="False")
    log = open(base / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(1)
    if proc.poll() is not None or time.time() >= deadline:
        proc.kill()
        log.close()
        pytest.fail("python app.py did not start:\n" + (base / "app.log").read_text()[-3000:])
    try:
        yield {"url": url, "home": home, "tmp": tmp, "log": base / "app.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
