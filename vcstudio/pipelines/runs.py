"""The run folder: what one tuning job leaves behind, and how it is loaded again.

    config.yaml              the TuneConfig
    meta.json                clip hash, base model + fingerprint, versions, device, seed, status
    source.mp4               the exact frames tuned on
    delta.safetensors        trained tensors only (+ metadata: fingerprint, clip hash, config)
    inversion-<N>[-<key>].safetensors DDIM-inverted clip latents for N steps under a prompt
                             (no key: the source prompt, as runs before inversion_prompt made
                             them; "-empty": the empty prompt; else a hash of the prompt)
    checkpoint.safetensors   resume state while tuning (removed when finished)
    losses.json              per-step loss terms
    edits/                   generated videos, each named for its whole edit config (edit_stem)
"""
from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from ..config import TuneConfig, load_run_config, read_text_file, save_yaml
from ..errors import InputError
from ..io.atomic import atomic_path, write_json  # noqa: F401 (run folders' JSON writer)
from ..paths import data_dir


# what a pushed run holds (its upload): what an edit reads, what a reader wants to see, the
# card and preview the push adds, and every cached inversion. Opening a run from the Hub
# downloads these and nothing else.
RUN_FILES = ("config.yaml", "meta.json", "delta.safetensors", "clip-latents.safetensors",
             "source.mp4", "losses.json")
CARD_FILE, PREVIEW_FILE = "README.md", "preview.gif"
UPLOAD_EXTRAS = (CARD_FILE, PREVIEW_FILE)
INVERSION_GLOB = "inversion-*.safetensors"


def is_run_file(name: str) -> bool:
    """Whether ``name`` (a path in a run's folder or repo) is one of a run's own files."""
    import fnmatch

    return name in RUN_FILES or name in UPLOAD_EXTRAS or (
        "/" not in name and fnmatch.fnmatch(name, INVERSION_GLOB))


def versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "transformers": transformers.__version__}


def new_run_dir(prefix: str = "run") -> Path:
    root = data_dir() / "runs"
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-{stamp}-", dir=root))




@dataclass
class RunFolder:
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def meta_path(self) -> Path:
        return self.path / "meta.json"

    @property
    def delta_path(self) -> Path:
        return self.path / "delta.safetensors"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.safetensors"

    @property
    def source_path(self) -> Path:
        return self.path / "source.mp4"

    def inversion_path(self, steps: int, prompt: Optional[str] = None) -> Path:
        """The cached inversion for ``steps`` under ``prompt`` (the text itself; None = the
        source prompt). Keyed by the prompt so that an edit under another inversion prompt
        never reuses a cache made under this one."""
        if prompt is None:
            return self.path / f"inversion-{steps}.safetensors"
        if prompt == "":
            return self.path / f"inversion-{steps}-empty.safetensors"
        import hashlib

        key = hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        return self.path / f"inversion-{steps}-{key}.safetensors"

    @property
    def edits(self) -> Path:
        p = self.path / "edits"
        p.mkdir(exist_ok=True)
        return p

    def meta(self) -> dict:
        """meta.json as a dict ({} before the first write). A damaged file is an InputError and
        is never overwritten: ``update_meta`` reads it first, so nothing is lost."""
        if not self.meta_path.is_file():
            return {}
        text = read_text_file(self.meta_path, "run record")
        try:
            m = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(
                f"meta.json in {self.path} is damaged (not valid JSON: {e.msg} at line "
                f"{e.lineno}, column {e.colno}); fix or restore it, or move it aside to go on "
                "without the run's record (its config and tensors are untouched).") from None
        if not isinstance(m, dict):
            raise InputError(f"meta.json in {self.path} is damaged (it holds a "
                             f"{type(m).__name__}, not an object); fix or restore it, or move it "
                             "aside to go on without the run's record.")
        return m

    def losses(self) -> list[dict]:
        """losses.json: the per-step logs ({"step": k, "loss": ..., ...}) of the steps done,
        written with every checkpoint and at the end; [] without (or with a damaged) file."""
        p = self.path / "losses.json"
        try:
            rows = json.loads(p.read_text()) if p.is_file() else []
        except (OSError, ValueError):
            return []
        return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []

    def update_meta(self, **kw) -> dict:
        m = self.meta()
        m.update(kw)
        write_json(self.meta_path, m)
        return m

    def config(self) -> TuneConfig:
        """The run's TuneConfig; a damaged config.yaml is a one-line InputError that says the
        delta holds the config it was tuned with."""
        if not self.config_path.is_file():
            raise InputError(f"{self.path} is not a vcstudio run folder (no config.yaml).")
        try:
            return load_run_config(self.config_path)
        except InputError as e:
            keep = (" (delta.safetensors keeps a copy of the config it was tuned with: "
                    "RunFolder.restore_config() writes it back)" if self.delta_path.is_file()
                    else "")
            raise InputError(f"{str(e).rstrip('.')}{keep}.") from None

    def restore_config(self) -> Path:
        """Rewrite config.yaml from the copy in the delta's metadata; a damaged config.yaml is
        kept beside it as config.yaml.damaged. Returns the path of the restored file."""
        from ..config import run_config_from_dict
        from ..models.delta import load_tensors

        cfg = load_tensors(self.delta_path)[1].get("config")
        if not isinstance(cfg, dict):
            raise InputError(f"The delta in {self.path} holds no config to restore from.")
        if self.config_path.is_file():
            aside, n = self.config_path.with_name("config.yaml.damaged"), 1
            while aside.exists():
                n += 1
                aside = self.config_path.with_name(f"config.yaml.damaged-{n}")
            self.config_path.replace(aside)
        with atomic_path(self.config_path) as tmp:
            save_yaml(run_config_from_dict(cfg), tmp)
        return self.config_path

    def save_config(self, cfg: TuneConfig) -> None:
        save_yaml(cfg, self.config_path)
