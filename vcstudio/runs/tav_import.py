"""Tune-A-Video's YAML configs read as ours (its repository's configs/*.yaml, and the peers'
releases that reuse the format, e.g. DCT's): ``pretrained_model_path``, ``train_data``,
``validation_data``, ... mapped onto a :class:`~vcstudio.config.TuneConfig`, with a one-line note
for every key vcstudio does differently or does not know. :func:`load_tune_config` and
:func:`load_run_config` read either format.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..config import (DataConfig, EditConfig, TuneConfig, ValidationConfig, from_dict, read_yaml,
                      run_config_from_dict)
from ..errors import InputError

# Tune-A-Video module names -> ours (its attn_temp / norm_temp are our temporal.attn / .norm)
TAV_MODULE_NAMES = {"attn_temp": "temporal.attn", "norm_temp": "temporal.norm"}

# the local folders Tune-A-Video's README downloads base models into -> the hub ids they are
TAV_HUB_IDS = {
    "stable-diffusion-v1-4": "CompVis/stable-diffusion-v1-4",
    "stable-diffusion-v1-5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "stable-diffusion-2-1": "stabilityai/stable-diffusion-2-1",
    "stable-diffusion-2-1-base": "stabilityai/stable-diffusion-2-1-base",
}

# keys of Tune-A-Video's train script vcstudio has no use for -> (the value that needs no note,
# what vcstudio does instead)
_TAV_IGNORED = {
    "use_8bit_adam": (False, "vcstudio tunes with torch's AdamW (fused on CUDA), not 8-bit Adam"),
    "enable_xformers_memory_efficient_attention":
        (False, "vcstudio's attention always runs through torch SDPA (memory-efficient kernels "
                "where the device has them); xformers is not used"),
    "scale_lr": (False, "vcstudio uses learning_rate as given (one process, no accumulation)"),
    "lr_scheduler": ("constant", "vcstudio keeps the learning rate constant"),
    "lr_warmup_steps": (0, "vcstudio has no learning-rate warm-up"),
    "gradient_accumulation_steps": (1, "vcstudio takes one optimiser step per batch"),
    "adam_epsilon": (1e-8, "vcstudio's AdamW uses eps 1e-8"),
    "resume_from_checkpoint": (None, "vcstudio resumes from its own checkpoints: run the same "
                                     "command with the same --out, or `vcstudio resume JOB`"),
}
_TAV_KNOWN = {"pretrained_model_path", "output_dir", "train_data", "validation_data",
              "validation_steps", "trainable_modules", "train_batch_size", "max_train_steps",
              "learning_rate", "adam_beta1", "adam_beta2", "adam_weight_decay", "max_grad_norm",
              "gradient_checkpointing", "checkpointing_steps", "mixed_precision", "seed"}
_TAV_TRAIN_DATA = {"video_path", "prompt", "n_sample_frames", "width", "height",
                   "sample_start_idx", "sample_frame_rate"}
_TAV_VALIDATION = {"prompts", "video_length", "width", "height", "num_inference_steps",
                   "guidance_scale", "use_inv_latent", "num_inv_steps"}


@dataclass
class TuneAVideoImport:
    """A Tune-A-Video-format config read as ours: the TuneConfig, where its run goes
    (``output_dir``), where its base model came from, and one-line notes on what was mapped or
    ignored."""

    cfg: TuneConfig
    notes: list[str] = field(default_factory=list)
    output_dir: str = ""
    model_path: str = ""  # pretrained_model_path as written
    hub_id: str = ""  # the hub id it was mapped to ("" = used as written)
    video_path: str = ""  # train_data.video_path as written


def _same(value, default) -> bool:
    """YAML reads 1e-08 as text (PyYAML wants a dot in floats): compare numbers as numbers."""
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            return float(value) == float(default)
        except (TypeError, ValueError):
            return False
    return value == default


def tav_hub_id(path: str) -> str:
    """The hub id a missing local Tune-A-Video checkpoint folder stands for ("" = none)."""
    name = Path(str(path).rstrip("/\\")).name.lower()
    return TAV_HUB_IDS.get(name, "")


def _find_beside(path: str, config_file: Optional[Path]) -> str:
    """A relative path as Tune-A-Video reads it (from the current folder), else found beside
    the config or one folder up (configs/x.yaml of a repository checkout); as written when
    found nowhere (the tune then says it is missing)."""
    if not path or Path(path).is_absolute() or Path(path).exists() or config_file is None:
        return path
    for root in (config_file.parent, config_file.parent.parent):
        if (root / path).exists():
            return str(root / path)
    return path


def read_tuneavideo(d: dict, config_file: Optional[str | Path] = None) -> TuneAVideoImport:
    """Map a Tune-A-Video config (configs/*.yaml of its repository, also the peers' releases
    that reuse the format, e.g. DCT's) onto ours, with a note for every key vcstudio does
    differently or does not know."""
    cf = Path(config_file) if config_file else None
    notes: list[str] = []
    cfg, _ = _from_tuneavideo(d)
    imp = TuneAVideoImport(cfg, notes, output_dir=str(d.get("output_dir") or ""),
                           model_path=str(d.get("pretrained_model_path") or ""))
    if imp.model_path and not Path(imp.model_path).exists():
        found = _find_beside(imp.model_path, cf)
        if found != imp.model_path:
            cfg.model = found
        elif tav_hub_id(imp.model_path):
            imp.hub_id = tav_hub_id(imp.model_path)
            cfg.model = imp.hub_id
            notes.append(f"pretrained_model_path {imp.model_path} is not here: using the model "
                         f"it is a download of, {imp.hub_id} (--model overrides).")
    imp.video_path = cfg.data.video_path
    cfg.data.video_path = _find_beside(cfg.data.video_path, cf)
    for key in sorted(d):
        if key in _TAV_IGNORED:
            default, what = _TAV_IGNORED[key]
            if not _same(d[key], default):
                notes.append(f"{key}: {d[key]!r} is not used; {what}.")
        elif key not in _TAV_KNOWN:
            notes.append(f"{key} is not a Tune-A-Video key vcstudio knows; ignored.")
    for section, known in (("train_data", _TAV_TRAIN_DATA), ("validation_data", _TAV_VALIDATION)):
        sub = d.get(section) or {}
        if isinstance(sub, dict):
            for key in sorted(set(sub) - known):
                notes.append(f"{section}.{key} is not a Tune-A-Video key vcstudio knows; ignored.")
    vd = d.get("validation_data") or {}
    if isinstance(vd, dict):
        td = d.get("train_data") or {}
        for key, train in (("video_length", "n_sample_frames"), ("width", "width"),
                           ("height", "height")):
            if key in vd and vd[key] != td.get(train, vd[key]):
                notes.append(f"validation_data.{key} {vd[key]} differs from train_data.{train} "
                             f"{td.get(train)}: vcstudio samples validation videos at the tuned "
                             "clip's frames and size.")
    return imp


def _from_tuneavideo(d: dict) -> tuple[TuneConfig, Optional[EditConfig]]:
    """Map a Tune-A-Video config (configs/*.yaml of its repository) onto ours; a value of the
    wrong kind (``learning_rate: fast``) is a one-line InputError."""
    try:
        return _map_tuneavideo(d)
    except (TypeError, ValueError, AttributeError) as e:
        raise InputError(f"The Tune-A-Video config holds a value of the wrong kind ({e}); fix "
                         "it (numbers for steps, rates and sizes, a list for prompts).") from None


def _map_tuneavideo(d: dict) -> tuple[TuneConfig, Optional[EditConfig]]:
    cfg = TuneConfig()
    cfg.model = d.get("pretrained_model_path", cfg.model) or ""
    td = d.get("train_data", {}) or {}
    cfg.data = DataConfig(
        video_path=td.get("video_path", ""), prompt=td.get("prompt", ""),
        n_frames=int(td.get("n_sample_frames", 24)), start=int(td.get("sample_start_idx", 0)),
        stride=int(td.get("sample_frame_rate", 1)), width=int(td.get("width", 512)),
        height=int(td.get("height", 512)))
    cfg.lr = float(d.get("learning_rate", cfg.lr))
    cfg.steps = int(d.get("max_train_steps", cfg.steps))
    cfg.seed = int(d.get("seed", cfg.seed) or cfg.seed)
    cfg.batch_size = int(d.get("train_batch_size", 1))
    cfg.gradient_checkpointing = bool(d.get("gradient_checkpointing", True))
    mp = d.get("mixed_precision", "auto")
    cfg.mixed_precision = {"fp16": "fp16", "bf16": "bf16", "no": "no"}.get(str(mp), "auto")
    if d.get("trainable_modules"):
        # TAV names its temporal layers attn_temp / norm_temp; ours are temporal.attn / .norm
        cfg.trainable = tuple(TAV_MODULE_NAMES.get(m, m) for m in d["trainable_modules"])
    cfg.checkpoint_every = int(d.get("checkpointing_steps", cfg.checkpoint_every))
    cfg.adam_betas = (float(d.get("adam_beta1", cfg.adam_betas[0])),
                      float(d.get("adam_beta2", cfg.adam_betas[1])))
    cfg.weight_decay = float(d.get("adam_weight_decay", cfg.weight_decay))
    cfg.max_grad_norm = float(d.get("max_grad_norm", cfg.max_grad_norm))
    vd = d.get("validation_data")
    edit = None
    if vd:
        prompts = [str(p) for p in (vd.get("prompts") or [])]
        steps = int(vd.get("num_inference_steps", 50))
        guidance = float(vd.get("guidance_scale", 12.5))
        use_inv = bool(vd.get("use_inv_latent", True))
        edit = EditConfig(prompt=prompts[0] if prompts else "", steps=steps, guidance=guidance,
                          use_inversion=use_inv)
        cfg.inversion_steps = int(vd.get("num_inv_steps", cfg.inversion_steps))
        # Tune-A-Video's default validation_steps is 100
        cfg.validation = ValidationConfig(prompts=tuple(prompts),
                                          every=int(d.get("validation_steps", 100) or 0),
                                          steps=steps, guidance=guidance, use_inversion=use_inv)
    return cfg, edit


def is_tuneavideo_config(d: dict) -> bool:
    return "train_data" in d or "pretrained_model_path" in d


def load_tune_config(path: str | Path) -> TuneConfig:
    """Load our YAML or a Tune-A-Video YAML (detected by its ``train_data`` key)."""
    d = read_yaml(path)
    if is_tuneavideo_config(d):
        return _from_tuneavideo(d)[0]
    return from_dict(TuneConfig, d)


def load_run_config(path: str | Path) -> TuneConfig:
    """A run folder's config.yaml (see :func:`run_config_from_dict`)."""
    d = read_yaml(path)
    if is_tuneavideo_config(d):
        return _from_tuneavideo(d)[0]
    return run_config_from_dict(d)
