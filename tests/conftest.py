"""Shared fixtures: tiny real-class checkpoints written with save_pretrained, synthetic clips."""
from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))
# no test reaches the network: Hub lookups answer from the local cache at once
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    from vcstudio.models.tiny import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"), seed=0)


@pytest.fixture(scope="session")
def tiny_sd_v(tmp_path_factory):
    from vcstudio.models.tiny import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd-v"), seed=1,
                         prediction_type="v_prediction")


@pytest.fixture(scope="session")
def tiny_wan_t2v(tmp_path_factory):
    """A tiny random WanPipeline folder (models/wan/tiny.py)."""
    from vcstudio.models.wan import build_tiny_wan_t2v

    return build_tiny_wan_t2v(tmp_path_factory.mktemp("tiny-wan-t2v"), seed=0)


@pytest.fixture(scope="session")
def tiny_wan_i2v(tmp_path_factory):
    """A tiny random WanImageToVideoPipeline folder (in_channels 36, CLIP vision encoder)."""
    from vcstudio.models.wan import build_tiny_wan_i2v

    return build_tiny_wan_i2v(tmp_path_factory.mktemp("tiny-wan-i2v"), seed=0)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on the shared 2-core machine run ~10x faster single-threaded; a module opts
    in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def cache():
    from vcstudio.models.cache import ModelCache

    return ModelCache()


@pytest.fixture(scope="module")
def mcache():
    """One model cache for a module's tests (the ``cache`` fixture: one per test)."""
    from vcstudio.models.cache import ModelCache

    return ModelCache()


@pytest.fixture(scope="module")
def base(tiny_sd, mcache):
    """The tiny SD loaded once per module (a module may define its own ``base``)."""
    from vcstudio.models.loading import load_base

    return load_base(str(tiny_sd), cache=mcache)


@pytest.fixture
def clip8():
    from vcstudio.io.synthetic import moving_shape_clip

    return moving_shape_clip(8, 64, dx=3.0)


@pytest.fixture(autouse=True)
def _data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VCSTUDIO_DATA", str(tmp_path / "data"))


@pytest.fixture
def hub_double(monkeypatch, tmp_path):
    """The Hugging Face Hub's HTTP API as a test double on loopback (tests/doubles/hub_server:
    an outside service), with huggingface_hub and vcstudio pointed at it: online, and a fresh
    Hub cache."""
    import sys
    from pathlib import Path

    import huggingface_hub.constants as hc

    doubles = str(Path(__file__).parent / "doubles")
    sys.path.insert(0, doubles)
    from hub_server import HubDouble

    server = HubDouble()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hc, "ENDPOINT", server.url)
    monkeypatch.setattr(hc, "HUGGINGFACE_CO_URL_TEMPLATE",
                        server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    yield server
    server.close()
    sys.path.remove(doubles)
