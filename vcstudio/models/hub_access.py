"""Fail fast offline: is a hub file cached, and can the hub be reached at all?

Without this, huggingface_hub retries a dead connection for minutes before giving up.
"""
from __future__ import annotations

import os
import socket


def hub_online(host: str = "huggingface.co", timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def hub_file_cached(repo_id: str, filename: str = "config.json") -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)
