"""One in-process launch of the app for API tests, as ``vcstudio.ui.launch`` serves it (the
same ``served_paths``: a public studio serves no folder but Gradio's cache), and the raw HTTP
helpers a misbehaving client uses (any HTTP client can send these)."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tiny_sd, data, public: bool, limits=None):
    """(studio, demo, url) of the app on the tiny model, its data in ``data``."""
    os.environ["VCSTUDIO_MODEL"] = str(tiny_sd)
    from vcstudio.jobs import studio as make_studio
    from vcstudio.space import CPU_LIMITS
    from vcstudio.ui import build_app, served_paths

    studio = make_studio(data, limits=limits or CPU_LIMITS, public=public)
    demo = build_app(studio)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                show_error=True, allowed_paths=served_paths(studio))
    return studio, demo, f"http://127.0.0.1:{port}/"


def upload(url: str, path: Path) -> str:
    """Upload a file through Gradio's upload route; its path in Gradio's cache."""
    import httpx

    with open(path, "rb") as f:
        r = httpx.post(url + "gradio_api/upload", files={"files": (Path(path).name, f)})
    r.raise_for_status()
    return r.json()[0]


def file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": Path(path).name}


def call(url: str, api: str, data: list, timeout: float = 120) -> tuple[str, object]:
    """A raw REST call: ("complete", outputs) or ("error", message)."""
    import httpx

    r = httpx.post(f"{url}gradio_api/call/{api}", json={"data": data}, timeout=timeout)
    r.raise_for_status()
    eid = r.json()["event_id"]
    kind, last = None, None
    with httpx.stream("GET", f"{url}gradio_api/call/{api}/{eid}", timeout=timeout) as s:
        for line in s.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                last = json.loads(line[5:].strip() or "null")
                return kind, last
    return kind or "", last
