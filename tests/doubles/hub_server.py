"""A test double of the Hugging Face Hub's HTTP API (an outside service), served on loopback:
just the routes huggingface_hub's ``model_info`` / ``repo_info`` and ``hf_hub_download`` use.

What it keeps of the real Hub (huggingface_hub's client code and the Hub's API docs): a repo's
info at ``GET /api/models/<repo>/revision/<rev>`` lists ``siblings`` with ``rfilename`` and,
when ``blobs`` is asked, ``size``; a file is ``HEAD``/``GET /<repo>/resolve/<rev>/<name>`` with
its commit in ``X-Repo-Commit``, its hash in ``ETag`` and its ``Content-Length``; the file
tree at ``GET /api/models/<repo>/tree/<rev>`` lists ``type``, ``path`` and ``size``; an unknown
repo answers 404 with ``X-Error-Code: RepoNotFound``. Repos are folders given to the server
(or sizes it claims without holding the bytes, to test caps). ``requests`` records every
(method, path), so a test can check that nothing was downloaded.
"""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class HubDouble:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes | int]] = {}  # repo -> {name: bytes or size}
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_HEAD(self):
                hub._answer(self, head=True)

            def do_GET(self):
                hub._answer(self, head=False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def add_folder(self, repo: str, folder: Path) -> None:
        self.repos[repo] = {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}

    def add_tree(self, repo: str, folder: Path) -> None:
        """A repo holding every file under ``folder``, by its relative path (a diffusers
        folder's ``unet/config.json``)."""
        root = Path(folder)
        self.repos[repo] = {p.relative_to(root).as_posix(): p.read_bytes()
                            for p in sorted(root.rglob("*")) if p.is_file()}

    def add_sizes(self, repo: str, sizes: dict[str, int]) -> None:
        """A repo whose files the server only claims (a listing without bytes)."""
        self.repos[repo] = dict(sizes)

    def downloads(self) -> list[str]:
        return [p for m, p in self.requests if "/resolve/" in p]

    def close(self) -> None:
        self._server.shutdown()

    @staticmethod
    def sha(repo: str) -> str:
        return hashlib.sha1(repo.encode()).hexdigest()

    def _answer(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append((h.command, path))
        if path.startswith("/api/models/"):
            parts = path[len("/api/models/"):].split("/")
            repo = "/".join(parts[:2])
            if repo not in self.repos:
                return self._send(h, 404, b'{"error": "Repository not found"}',
                                  {"X-Error-Code": "RepoNotFound"}, head)
            files = self.repos[repo]
            if parts[2:3] == ["tree"]:  # list_repo_tree: snapshot_download's file list
                body = json.dumps([
                    {"type": "file", "path": n, "oid": hashlib.sha1(n.encode()).hexdigest(),
                     "size": len(v) if isinstance(v, bytes) else v}
                    for n, v in files.items()]).encode()
                return self._send(h, 200, body, {"Content-Type": "application/json"}, head)
            body = json.dumps({
                "id": repo, "modelId": repo, "sha": self.sha(repo), "private": False,
                "siblings": [{"rfilename": n, "size": len(v) if isinstance(v, bytes) else v}
                             for n, v in files.items()]}).encode()
            return self._send(h, 200, body, {"Content-Type": "application/json"}, head)
        if "/resolve/" in path:
            repo, rest = path.lstrip("/").split("/resolve/", 1)
            name = rest.split("/", 1)[1] if "/" in rest else ""
            data = self.repos.get(repo, {}).get(name)
            if not isinstance(data, bytes):
                return self._send(h, 404, b"", {"X-Error-Code": "EntryNotFound"}, head)
            etag = '"' + hashlib.sha256(data).hexdigest() + '"'
            return self._send(h, 200, data, {"X-Repo-Commit": self.sha(repo), "ETag": etag,
                                             "Content-Type": "application/octet-stream"}, head)
        self._send(h, 404, b"", {}, head)

    @staticmethod
    def _send(h, status: int, body: bytes, headers: dict, head: bool) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)
