"""A tuned run as a model to sample: its delta read onto a base (fingerprint checked), the
video model rebuilt as its config says, and its DDIM inversions (cached per step count and
prompt). Below both the tuning loop (pipelines/tune/loop.py) and the samplers (edit, validation,
long video), so neither imports the other to reach a tuned model."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ...config import TuneConfig, to_dict
from ...device import Precision, pick_device, precision_for
from ...errors import InputError
from ...io import clip_hash
from ...methods.base import TuneMethod
from ...models.cache import ModelCache, default_cache
from ...models.delta import load_tensors, save_tensors
from ...models.inflate import VideoDenoiser
from ...models.loading import BaseModel, load_base
from ...progress import CancelToken, ProgressFn, null_progress
from ...models.encode import encode_prompts
from .invert import ddim_invert
from ...runs.folder import RunFolder
from .video_model import build_video_model


@dataclass
class TunedModel:
    """A base model + its inflated, tuned video denoiser, ready to sample."""

    base: BaseModel
    model: VideoDenoiser
    method: TuneMethod
    cfg: TuneConfig
    precision: Precision
    run: Optional[RunFolder] = None



def read_delta(rf: RunFolder, base: BaseModel) -> dict[str, torch.Tensor]:
    """A run's tuned tensors, refused unless they were tuned on this very base model."""
    tensors, meta = load_tensors(rf.delta_path, base.device)
    if not base.matches(meta.get("base_fingerprint"), meta.get("base_signature")):
        raise InputError(
            f"The run {rf.path} was tuned on a different base model ({meta.get('base_model')}, "
            f"fingerprint {meta.get('base_fingerprint')}) than {base.model_id} "
            f"({base.fingerprint}). Use it with --model pointing at that model.")
    return tensors


def apply_delta(model: VideoDenoiser, tensors: dict[str, torch.Tensor], rf: RunFolder) -> None:
    """Copy tuned tensors into ``model``; names or shapes it lacks (another method, VGT size or
    adapter ratio) are a clear error, not a traceback."""
    named = dict(model.named_parameters())
    bad = sorted(k for k, v in tensors.items() if k not in named or named[k].shape != v.shape)
    if bad:
        raise InputError(f"The run {rf.path} holds {len(bad)} tensors this model has not got in "
                         f"that shape (e.g. {bad[0]}); use the method and settings it was tuned "
                         "with.")
    with torch.no_grad():
        for k, v in tensors.items():
            named[k].copy_(v)


def init_from_run(model: VideoDenoiser, run_dir: str | Path, base: BaseModel) -> list[str]:
    """Start from another run's tuned tensors (combined tuning fine-tunes the separately tuned
    model D into D', consistency-tuning paper eq. 13). Its base fingerprint must match; returns
    the names set."""
    from ...runs.open import open_run

    rf = open_run(run_dir)
    tensors = read_delta(rf, base)
    apply_delta(model, tensors, rf)
    return sorted(tensors)


def save_delta(rf: RunFolder, model: VideoDenoiser, cfg: TuneConfig, base: BaseModel,
               frames: np.ndarray) -> Path:
    """Only the trained tensors + what identifies base and clip (DESIGN: deltas)."""
    return save_tensors(rf.delta_path, model.trainable_state(),
                        {"base_fingerprint": base.fingerprint, "base_model": base.model_id,
                         "base_signature": list(base.signature),
                         "clip_hash": clip_hash(frames), "config": to_dict(cfg),
                         "format": "vcstudio-delta-1"})


def tuned_on_base(rf: RunFolder, base: BaseModel, precision: Precision) -> TunedModel:
    """The run's video model on an already loaded ``base`` (its fingerprint must match the one
    the delta was tuned on): build the model as the run's config says, copy the delta in."""
    cfg = rf.config()
    tensors = read_delta(rf, base)
    torch.manual_seed(cfg.seed)
    vm, method, names = build_video_model(base, cfg, precision)
    missing = set(names) - set(tensors)
    if missing:
        raise InputError(f"The delta in {rf.path} lacks {len(missing)} tensors the method "
                         f"needs (e.g. {sorted(missing)[0]}); it was saved by another version.")
    apply_delta(vm, tensors, rf)
    vm.eval()
    return TunedModel(base, vm, method, cfg, precision, rf)


def load_tuned(run_dir: str | Path, cache: ModelCache = default_cache,
               device: Optional[torch.device] = None, model: Optional[str] = None) -> TunedModel:
    """Base model + delta -> TunedModel (cached per run and device).

    The base weights' fingerprint must match the one the delta was tuned on.
    """
    from ...runs.open import open_run

    rf = open_run(run_dir)
    cfg = rf.config()
    device = device or pick_device()
    prec = precision_for(device, cfg.mixed_precision)
    key = ("tuned", str(rf.path.resolve()), rf.delta_path.stat().st_mtime_ns, str(device))

    if not model and cfg.model and _local_and_missing(cfg.model):
        # a run from elsewhere (a pushed one) tuned on a base that is a path there
        raise InputError(
            f"The run {rf.path} was tuned on the local base model {cfg.model}, which is not on "
            f"this machine; pass --model with a copy of it (fingerprint "
            f"{rf.meta().get('base_fingerprint')}).")

    def factory() -> TunedModel:
        base = load_base(model or cfg.model or None, device, prec.frozen_dtype, cache)
        return tuned_on_base(rf, base, prec)

    return cache.get(key, factory)


def _local_and_missing(model: str) -> bool:
    """A base model named by a path (not a Hub id) that does not exist here."""
    p = Path(model).expanduser()
    if p.exists():
        return False
    return (p.is_absolute() or model.startswith((".", "~")) or model.count("/") != 1
            or p.suffix.lower() in (".safetensors", ".ckpt"))


def inversion_text(cfg: TuneConfig, setting: Optional[str] = None,
                   target: Optional[str] = None) -> Optional[str]:
    """The text the clip is inverted under for an ``inversion_prompt`` setting (None = the run's
    ``cfg.inversion_prompt``): "" -> the empty prompt, "source" -> None (the tuning prompt, the
    cache key of runs that predate the setting), "target" -> ``target``, the edit's own prompt
    (with none at hand -- the tune's validation samples -- the empty prompt), other text ->
    itself.

    Why "target": DDIM inversion under prompt c finds the noise from which c's own denoising
    ODE returns the clip; sampling the edit under c then stays nearer that path, with guidance
    adding the edit. On the demo model's bundled examples (shape and colour changed at once)
    it keeps the object where the empty prompt's inversion lost it in some frames; on
    held-out single-attribute edits it tracked the motion a little worse (figures in
    assets/toy-sd/README.md), so it is an option, not the default."""
    setting = cfg.inversion_prompt if setting is None else setting
    if setting == "target":
        return target if target is not None else ""
    return None if setting == "source" else setting


def inversion_latents(tuned: TunedModel, steps: int, progress: ProgressFn = null_progress,
                      cancel: Optional[CancelToken] = None,
                      latents0: Optional[torch.Tensor] = None,
                      prompt: Optional[str] = None,
                      target: Optional[str] = None) -> torch.Tensor:
    """DDIM-inverted clip latents (Tune-A-Video's ``ddim_inversion``), cached in the run folder
    per step count and prompt. ``prompt`` is an ``inversion_prompt`` setting (None = the run's):
    by default the empty prompt, as Tune-A-Video inverts; "source" = the tuning prompt;
    "target" = ``target``, the edit's prompt."""
    rf = tuned.run
    text = inversion_text(tuned.cfg, prompt, target)
    path = rf.inversion_path(steps, text) if rf is not None else None
    if path is not None and path.is_file():
        return load_tensors(path, tuned.base.device)[0]["latents"]
    base = tuned.base
    if latents0 is None:
        # the exact clip latents saved at tuning time (the mp4 beside them is lossy)
        latents0 = load_tensors(rf.path / "clip-latents.safetensors", base.device)[0]["latents"]
    cond = encode_prompts(base, [tuned.cfg.data.prompt if text is None else text])
    inv = ddim_invert(tuned.model, base.scheduler_config, latents0, cond, steps, progress, cancel,
                      autocast=tuned.precision.autocast(),
                      fixed_point_iters=tuned.cfg.inversion_fixed_point)
    if path is not None:
        save_tensors(path, {"latents": inv},
                     {"steps": steps, "prompt": tuned.cfg.data.prompt if text is None else text})
    return inv
