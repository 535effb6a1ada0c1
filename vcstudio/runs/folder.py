"""The run folder: what one tuning job leaves behind, and how it is loaded again.

    config.yaml              the TuneConfig
    meta.json                clip hash, base model + fingerprint, versions, device, seed, status
    source.mp4               the exact frames tuned on
    delta.safetensors        trained tensors only (+ metadata: fingerprint, clip hash, config)
    method.safetensors       on a DiT (Wan): a method's own trained modules beside the LoRA
                             delta (APLA's VGT and discriminator; methods/dit.py)
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
from typing import Optional

import torch

from ..config import TuneConfig, read_text_file, save_yaml, to_dict
from ..runs.tav_import import load_run_config
from ..errors import InputError
from ..io.atomic import atomic_path, write_json
from ..paths import data_dir


# what a pushed run holds (its upload): what an edit reads, what a reader wants to see, the
# card and preview the push adds, and every cached inversion. Opening a run from the Hub
# downloads these and nothing else.
RUN_FILES = ("config.yaml", "meta.json", "delta.safetensors", "clip-latents.safetensors",
             "source.mp4", "losses.json", "method.safetensors")
CARD_FILE, PREVIEW_FILE = "README.md", "preview.gif"
UPLOAD_EXTRAS = (CARD_FILE, PREVIEW_FILE)
INVERSION_GLOB = "inversion-*.safetensors"


# the settings that shape a tuned model: config.yaml may not change them after tuning
TUNED_SHAPE_KEYS = ("data.n_frames", "data.width", "data.height", "method", "temporal",
                    "groupnorm", "frame_positions", "trainable", "dct.adapter",
                    "dct.adapter_ratios", "apla.vgt", "apla.vgt_preset", "apla.vgt_dim")


def _dig(d: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


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
        delta holds the config it was tuned with, and so is a config.yaml edited to describe
        another model than the delta's (frames, size, method, temporal layers: an edit would
        build one the tuned tensors do not fit, or sample a clip it was not tuned on)."""
        if not self.config_path.is_file():
            raise InputError(f"{self.path} is not a vcstudio run folder (no config.yaml).")
        keep = (" (delta.safetensors keeps a copy of the config it was tuned with: "
                "RunFolder.restore_config() writes it back)")
        try:
            cfg = load_run_config(self.config_path)
        except InputError as e:
            raise InputError(f"{str(e).rstrip('.')}"
                             f"{keep if self.delta_path.is_file() else ''}.") from None
        changed = self._differs_from_delta(cfg)
        if changed:
            raise InputError(f"config.yaml in {self.path} was edited after tuning ({changed}); "
                             f"its delta was tuned with the other value{keep}.")
        return cfg

    def _differs_from_delta(self, cfg: TuneConfig) -> str:
        """'data.n_frames 4 -> 400' for the first setting that shapes the tuned model and that
        config.yaml changed from the config saved in the delta ('' when they agree)."""
        if not self.delta_path.is_file():
            return ""
        try:
            from safetensors import safe_open

            with safe_open(str(self.delta_path), framework="pt") as f:
                saved = json.loads((f.metadata() or {}).get("config", "null"))
        except Exception:  # a damaged delta is reported where it is loaded
            return ""
        if not isinstance(saved, dict):
            return ""
        now = to_dict(cfg)
        for key in TUNED_SHAPE_KEYS:
            a, b = _dig(saved, key), _dig(now, key)
            if a is not None and b is not None and a != b:
                return f"{key} {a} -> {b}"
        return ""

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
