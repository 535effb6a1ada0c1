"""Fail fast offline: is a hub file cached, and can the hub be reached at all?

Without this, huggingface_hub retries a dead connection for minutes before giving up.
"""
from __future__ import annotations

import os
import socket
from typing import Optional
from urllib.parse import urlparse


def hub_endpoint() -> str:
    """The Hub's address: ``$HF_ENDPOINT`` (a mirror, or a test's local stand-in) read now,
    else huggingface_hub's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def offline_mode() -> bool:
    """Whether this process was told to stay off the Hub (``HF_HUB_OFFLINE``): known without
    any network probe."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false")


def hub_online(host: Optional[str] = None, timeout: float = 2.0) -> bool:
    """Whether the Hub answers a TCP connection within ``timeout`` seconds (``host`` default:
    the endpoint's), so an offline machine hears so at once instead of after the client's
    retries."""
    if offline_mode():
        return False
    url = urlparse(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host or url.hostname, port if host is None else 443),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def hub_file_cached(repo_id: str, filename: str = "config.json") -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)
