"""Converting a Tune-A-Video output folder into a vcstudio run: the explicit step a job takes
when it starts (``prepare_run``), and ``vcstudio convert-tav``. It loads the folder's base model
(or ``--model``) and builds the tuned video model (pipelines/edit/video_model.py), so nothing that
only reads a run (runs/open.py: estimates, argument parsing) imports it.

The run's base is the folder's own components with the 2-D part of its UNet3D (models/tav.py),
or ``--model`` when it is the model the folder was tuned from (checked tensor by tensor: every
2-D tensor outside the trainable set must match); the delta holds the trainable set (Tune-A-
Video's ``trainable_modules`` from its config.yaml) plus every tensor the 2-D U-Net has not got
(``attn_temp``, ``norm_temp``); the model is built with Tune-A-Video's clip-wide GroupNorm and no
frame positions, so it computes what Tune-A-Video's U-Net does. ``inv_latents/ddim_latent-<step>
.pt`` becomes the run's inversion at ``validation_data.num_inv_steps``; the clip (when its
``train_data.video_path`` can be read) becomes the run's clip latents and source.mp4.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import torch

from ..config import to_dict
from ..errors import InputError
from ..models.cache import ModelCache, default_cache
from ..models.delta import save_tensors
from ..models.tav import (inversion_file, is_tav_folder, map_state, ours, read_latents,
                          read_unet_state, split_2d)
from .folder import RunFolder, versions
from .open import open_run
from .tav_folder import converted_dir, tav_config


def _check_same_base(tav_state: dict, base, trainable: set[str], folder: Path) -> None:
    """--model must be the model the folder was tuned from: its 2-D tensors outside the
    trainable set equal (to the precision the base is loaded in)."""
    want = base.unet.state_dict()
    for key, value in split_2d(tav_state).items():
        if ours(key) in trainable:
            continue
        b = want.get(key)
        if b is None or tuple(b.shape) != tuple(value.shape):
            raise InputError(f"The Tune-A-Video folder {folder} was not tuned from {base.model_id}"
                             f" (its U-Net's {key} has no counterpart there); pass the model it "
                             "was tuned from as --model, or leave --model out to use the "
                             "folder's own components.")
        a, b = value.float().cpu(), b.float().cpu()
        if float((a - b).abs().max()) > 1e-2 * float(b.abs().max()) + 1e-6:
            raise InputError(f"The Tune-A-Video folder {folder} was tuned from another base than "
                             f"{base.model_id} ({key} differs); pass the model it was tuned from "
                             "as --model, or leave --model out to use the folder's own "
                             "components.")


def _empty_prompt_inversion(rf: RunFolder, steps: int) -> Path:
    """Where the run keeps an inversion made under the empty prompt, as Tune-A-Video's are:
    where RunFolder keys inversions by prompt (the inversion_prompt setting, issue 15) that
    key, else the one inversion file per step count."""
    import inspect

    if "prompt" in inspect.signature(rf.inversion_path).parameters:
        return rf.inversion_path(steps, "")
    return rf.inversion_path(steps)


def convert_tav(folder: str | Path, out: str | Path, model: Optional[str] = None,
                device: Optional[torch.device] = None, cache: ModelCache = default_cache,
                base=None) -> Path:
    """Write the vcstudio run of a Tune-A-Video output folder into ``out``; returns ``out``."""
    from ..device import pick_device, precision_for
    from ..io import clip_hash, fit_frames, read_video, write_mp4
    from ..models.loading import load_base
    from ..models.encode import encode_video
    from ..pipelines.edit.video_model import build_video_model

    folder = Path(folder).resolve()
    if not is_tav_folder(folder):
        raise InputError(f"{folder} is not a Tune-A-Video output folder (no model_index.json "
                         "naming TuneAVideoPipeline, no unet/config.json naming "
                         "UNet3DConditionModel).")
    cfg, notes = tav_config(folder)
    cfg = dataclasses.replace(cfg, model=str(model) if model else str(folder))
    device = device or pick_device()
    prec = precision_for(device, cfg.mixed_precision)
    if base is None:
        base = load_base(cfg.model, device, prec.frozen_dtype, cache)
    tav_state = read_unet_state(folder)
    vm, _, names = build_video_model(base, dataclasses.replace(cfg, compile="no"), prec)
    mapped = map_state(tav_state, vm)  # every key lands somewhere, every parameter is given
    if model:
        _check_same_base(tav_state, base, set(names), folder)
    keep = set(names) | {n for n in mapped if ".temporal." in n}
    tensors = {n: mapped[n].float() for n in sorted(keep)}

    rf = RunFolder(Path(out))
    rf.path.mkdir(parents=True, exist_ok=True)
    d = cfg.data
    meta = dict(base_model=base.model_id, base_fingerprint=base.fingerprint,
                embedded_model=base.is_embedded, versions=versions(), device=str(device),
                seed=cfg.seed, method=cfg.method, status="done", steps_done=cfg.steps,
                converted_from={"tuneavideo": str(folder)}, notes=notes,
                n_frames=d.n_frames, height=d.height, width=d.width, clip_hash=None)
    inv = inversion_file(folder)
    if inv is not None:
        lat = read_latents(inv)
        meta.update(n_frames=int(lat.shape[2]), height=int(lat.shape[3]) * base.vae_scale,
                    width=int(lat.shape[4]) * base.vae_scale)
        save_tensors(_empty_prompt_inversion(rf, cfg.inversion_steps), {"latents": lat},
                     {"steps": cfg.inversion_steps, "source": str(inv)})
    if d.video_path and Path(d.video_path).exists():
        raw = read_video(d.video_path, d.start, d.stride, d.n_frames)
        frames = fit_frames(raw, meta["width"], meta["height"], "crop", "center")
        write_mp4(frames, rf.source_path)
        with torch.no_grad():
            save_tensors(rf.path / "clip-latents.safetensors",
                         {"latents": encode_video(base, frames)})
        meta.update(clip_hash=clip_hash(frames), n_frames=int(frames.shape[0]))
    elif inv is None:
        meta["notes"] = notes + [f"neither inv_latents/ nor the clip {d.video_path or '(none)'} "
                                 "is here: edits start from noise (--no-inversion)"]
    rf.save_config(cfg)
    save_tensors(rf.delta_path, tensors,
                 {"base_fingerprint": base.fingerprint, "base_model": base.model_id,
                  "base_signature": list(base.signature),
                  "clip_hash": meta["clip_hash"], "config": to_dict(cfg),
                  "format": "vcstudio-delta-1", "converted_from": str(folder)})
    rf.update_meta(**meta)
    return rf.path


def tav_run(folder: str | Path, device: Optional[torch.device] = None,
            cache: ModelCache = default_cache, base=None) -> Path:
    """The vcstudio run of a Tune-A-Video folder, converted on first use into the data folder
    (``tav-runs/<name>-<key>``) and reused after; ``base``: convert onto this loaded base."""
    from ..device import pick_device, precision_for
    from ..models.loading import load_base

    folder = Path(folder).resolve()
    if base is None:
        device = device or pick_device()
        cfg, _ = tav_config(folder)
        base = load_base(str(folder), device, precision_for(device, cfg.mixed_precision)
                         .frozen_dtype, cache)
    out = converted_dir(folder, base.fingerprint)
    rf = RunFolder(out)
    if rf.delta_path.is_file() and rf.meta().get("status") == "done":
        return out
    return convert_tav(folder, out, device=base.device, cache=cache, base=base)


def prepare_run(path: str | Path, must_be_finished: bool = True, device=None,
                base=None) -> RunFolder:
    """:func:`open_run`, after converting a Tune-A-Video folder into a run once (that loads its
    base model, onto ``base`` when given, on ``device``): the explicit step a job takes when it
    starts."""
    if is_tav_folder(path):
        return RunFolder(tav_run(path, torch.device(device) if device is not None else None,
                                 base=base))
    return open_run(path, must_be_finished)
