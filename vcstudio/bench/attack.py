"""The stranger of ``vcstudio bench serve --public``: a visitor who tries to read or act on
everyone else's work while the crowd uses the Space.

It is handed everything a stranger could learn -- the data folder's path, every run folder
and job id the other visitors were given (as if they had leaked), and the sessions' public ids
those folders carry -- and, every few seconds, tries to fetch files under the data folder
through every Gradio file route (absolute, URL-encoded, ``..`` out of Gradio's cache), and to
stop, resume, edit, push, extend and compare the other visitors' jobs and runs with those ids.
Each try that is answered with anything but a refusal is a success, and any success fails the
benchmark (exit 1).
"""
from __future__ import annotations

import os
import random
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Optional

# files of the data folder itself that no URL may reach
DATA_FILES = ("vcstudio.db", "vcstudio.db-wal", "vcstudio.db-shm", "studio.key")
RUN_FILES = ("delta.safetensors", "config.yaml", "meta.json", "source.mp4",
             "clip-latents.safetensors", "checkpoint.safetensors")


def gradio_cache() -> Path:
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")


def file_routes(url: str, target: Path) -> list[str]:
    """Every way a client could name ``target`` to Gradio's file routes: absolute,
    URL-encoded, ``..`` out of Gradio's own cache (plain and %-encoded dots), relative to
    the server's folder; both route spellings."""
    cache = gradio_cache()
    up = "../" * len(cache.resolve().parts)
    rel = f"{cache}/{up}{str(target).lstrip('/')}"
    out = []
    for path in (str(target), urllib.parse.quote(str(target), safe=""), rel,
                 urllib.parse.quote(rel, safe=""), rel.replace("../", "%2e%2e/"),
                 os.path.relpath(target)):
        out += [f"{url}gradio_api/file={path}", f"{url}gradio_api/file/{path}",
                f"{url}file={path}"]
    return out


def fetched(url: str, timeout: float = 30.0) -> bool:
    """Whether a GET of ``url`` was answered with the file (HTTP 200)."""
    import httpx

    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


class Attacker(threading.Thread):
    """Tries, every ``every_s`` seconds until ``deadline``, what a stranger would (see the
    module). ``known`` is the crowd's tally: its ``run_dirs`` and ``jobs_seen``."""

    def __init__(self, url: str, data: Optional[Path], known, deadline: float,
                 every_s: float = 5.0, seed: int = 0) -> None:
        super().__init__(name="bench-attacker", daemon=True)
        self.url, self.data, self.known, self.deadline = url, data, known, deadline
        self.every_s = every_s
        self.rng = random.Random(seed)
        self.tries = 0
        self.successes: list[str] = []
        self.errors: list[str] = []
        self.client = None

    def _client(self):
        from gradio_client import Client

        if self.client is None:
            self.client = Client(self.url, verbose=False, download_files=False,
                                 httpx_kwargs={"timeout": 30.0})
        return self.client

    def _success(self, what: str) -> None:
        self.successes.append(what)

    def files(self, run_dirs: list[str]) -> None:
        targets = [self.data / f for f in DATA_FILES] if self.data else []
        for r in run_dirs:
            targets += [Path(r) / f for f in RUN_FILES]
            uploads = Path(r).parents[1] / "uploads"
            if uploads.is_dir():
                targets += [p for p in uploads.rglob("*") if p.is_file()][:2]
        for t in targets:
            if not t.exists():
                continue
            for u in file_routes(self.url, t):
                self.tries += 1
                if fetched(u):
                    self._success(f"GET {u}")

    def act(self, run_dirs: list[str], jobs: list[str]) -> None:
        """Stop/resume jobs and edit/push/extend/compare runs of others, presenting their
        public session ids (from the run folders) or a session of its own."""
        c = self._client()
        owners = sorted({Path(r).parents[1].name for r in run_dirs})
        sessions = owners[:2] + [""]
        run = self.rng.choice(run_dirs) if run_dirs else ""
        for session in sessions:
            for job in jobs[:2]:
                self.tries += 1
                out = self._call(c, "/stop", session=session, job_id=job)
                if isinstance(out, str) and out.startswith("Stopping"):
                    self._success(f"/stop {job} with session {session[:8]}")
                self.tries += 1
                if self._call(c, "/resume", session=session, job_id=job) is not None:
                    self._success(f"/resume {job} with session {session[:8]}")
            if not run:
                continue
            for api, kw in (("/edit", dict(run_dir=run, prompt="stolen", steps=5)),
                            ("/push", dict(run_dir=run, repo_id="stranger/stolen", token="x")),
                            ("/long", dict(run_dir=run, prompts="a\nb", frames=8)),
                            ("/compare", dict(clip=None, methods=[], runs=[run],
                                              edit_prompt="stolen"))):
                self.tries += 1
                if self._call(c, api, session=session, **kw) is not None:
                    self._success(f"{api} {Path(run).name} with session {session[:8]}")

    def _call(self, c, api: str, **kw):
        """The answer, or None for a refusal (an error answer)."""
        try:
            return c.submit(api_name=api, **kw).result(timeout=120)
        except Exception as e:  # noqa: BLE001 - a refusal is what we want
            if "timed out" in str(e).lower():
                self.errors.append(f"{api}: {str(e)[:80]}")
            return None

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            with self.known.mu:
                run_dirs = sorted(self.known.run_dirs)
                jobs = sorted(self.known.jobs_seen)
            try:
                self.files(run_dirs)
                self.act(run_dirs, self.rng.sample(jobs, min(3, len(jobs))))
            except Exception as e:  # noqa: BLE001 - keep trying; report it
                self.errors.append(f"{type(e).__name__}: {str(e)[:120]}")
            end = time.monotonic() + self.every_s
            while time.monotonic() < min(end, self.deadline):
                time.sleep(0.2)

    def report(self) -> dict:
        return {"tries": self.tries, "successes": self.successes[:30],
                "n_successes": len(self.successes), "errors": self.errors[:10]}
