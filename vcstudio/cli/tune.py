"""``vcstudio tune``: one-shot tune on a clip (the tune job, run in this process and recorded
in the run store); prints the run folder last. Ctrl-C stops it cleanly at the next step (its
checkpoint is a usable delta; ``vcstudio resume JOB_ID`` continues it)."""
from __future__ import annotations

import dataclasses
import sys

from .common import (add_method_flags, add_setting_flag, add_temporal_args, method_overrides,
                     temporal_overrides)


def add(sub) -> None:
    from ..config import DataConfig, TuneConfig
    from ..methods.registry import all_method_names

    p = sub.add_parser("tune", help="one-shot tune a text-to-image model on a clip")
    p.add_argument("--video", help="clip: mp4/webm/mov/avi/gif or a folder of frames")
    p.add_argument("--prompt", help="what the clip shows, e.g. 'a man is skiing'")
    p.add_argument("--model", help="hub id, diffusers folder or .safetensors, or an alias: sd15, "
                   "sd21, wan-1.3b, demo (default: $VCSTUDIO_MODEL, else SD 1.5 when cached, "
                   "else the embedded demo model)")
    p.add_argument("--config", help="our YAML or a Tune-A-Video YAML config")
    for name in ("n_frames", "stride", "start"):
        add_setting_flag(p, DataConfig, name)
    p.add_argument("--size", type=int, help="the long side; the other follows the clip's "
                   "aspect, as in the app (default: the model's native size)")
    p.add_argument("--width", type=int, help="exact width (with --height: the clip is cropped "
                   "or padded to it, and the CLI says so)")
    p.add_argument("--height", type=int)
    add_setting_flag(p, DataConfig, "resize")
    add_setting_flag(p, DataConfig, "crop")
    for name in ("steps", "lr", "seed"):
        add_setting_flag(p, TuneConfig, name)
    p.add_argument("--method", choices=all_method_names(),
                   help="fgbg = combined tuning (eq. 20) on --fg-masks, usually with --init-from "
                   "a tuned run; its defaults are the paper's lr 2e-6 and 250 steps")
    add_setting_flag(p, TuneConfig, "checkpoint_every")
    add_setting_flag(p, TuneConfig, "inversion_steps")
    p.add_argument("--inversion-prompt", metavar="TEXT",
                   help='the prompt the clip is DDIM-inverted under: "" (default) = the empty '
                   'prompt, as Tune-A-Video inverts; "source" = the tuning prompt; "target" = '
                   "each edit's own prompt (no inversion after tuning); other text = that text")
    p.add_argument("--no-checkpointing", action="store_true", help="no gradient checkpointing")
    add_setting_flag(p, TuneConfig, "lora_rank")
    add_temporal_args(p)
    # each method's switches, from its declaration (DCT: Table 3 / Table 2; APLA: Table 3;
    # combined tuning: its masks)
    add_method_flags(p)
    p.add_argument("--lambdas", metavar="L1,L2,L3", help="weights of L, L_fg, L_bg (eq. 20)")
    p.add_argument("--init-from", metavar="RUN", help="start from this run's tuned tensors")
    p.add_argument("--out", help="run folder (default: a new folder under the data folder)")
    p.add_argument("--device")
    from .common import add_control_args

    add_control_args(p.add_argument_group("structure while tuning (seed 001: a T2I-Adapter fed "
                                          "pose frames; frozen, optional)"), "the tuning")


def _given(*values):
    """The first value that was given (None = not given; 0 and negatives are given)."""
    for v in values:
        if v is not None:
            return v
    return None


def _fgbg_args(cfg, a):
    """--method fgbg: masks, lambdas, the run's own method kept underneath, paper defaults."""
    from ..methods.registry import paper_defaults, underlying
    from .long import parse_pair_list

    fg = cfg.fgbg
    lam = parse_pair_list(getattr(a, "lambdas", None), 3, "--lambdas")
    if lam:
        fg = dataclasses.replace(fg, l1=lam[0], l2=lam[1], l3=lam[2])
    upd = {"fgbg": fg}
    if getattr(a, "init_from", None):
        upd["init_from"] = a.init_from
    if not a.config:  # the method's paper defaults for what the user left unset
        for k, v in paper_defaults(cfg.method).items():
            if getattr(a, k, None) is None:
                upd[k] = v
    cfg = dataclasses.replace(cfg, **upd)
    if upd.get("init_from") and cfg.method != underlying(cfg) and fg.base_method == "baseline":
        from ..runs.open import open_run

        src = open_run(upd["init_from"]).config()  # keep the tuned run's own method under it
        cfg = dataclasses.replace(cfg, fgbg=dataclasses.replace(fg,
                                                                base_method=underlying(src)))
    return cfg


def read_config(path):
    """(TuneConfig, TuneAVideoImport or None) of ``--config``: our YAML or Tune-A-Video's."""
    from ..config import read_yaml, from_dict, TuneConfig
    from ..runs.tav_import import is_tuneavideo_config, read_tuneavideo

    d = read_yaml(path)
    if is_tuneavideo_config(d):
        imp = read_tuneavideo(d, path)
        return imp.cfg, imp
    return from_dict(TuneConfig, d), None


def tune_config_from_args(a):
    """The TuneConfig the tune flags describe (over --config when given). Values are taken as
    given: out-of-range ones are the tune job's errors, not replaced by defaults."""
    return _config_and_import(a)[0]


def _config_and_import(a):
    from ..config import DataConfig, TuneConfig, tier_defaults
    from .common import is_embedded

    if a.config:
        cfg, imp = read_config(a.config)
    else:
        cfg, imp = TuneConfig(data=DataConfig(width=0, height=0)), None
    d = cfg.data
    # defaults: the tier's (Tune-A-Video's 24 frames / stride 2; 8 / 1 for the demo model);
    # from --config: its own
    tier = tier_defaults(is_embedded(a.model))
    frames_default = d.n_frames if a.config else tier.frames
    stride_default = d.stride if a.config else tier.stride
    d = dataclasses.replace(
        d, video_path=a.video or d.video_path, prompt=_given(a.prompt, d.prompt),
        n_frames=_given(a.frames, frames_default), stride=_given(a.stride, stride_default),
        start=_given(a.start, d.start),
        width=_given(a.width, 0 if a.size is not None else None, d.width),
        height=_given(a.height, 0 if a.size is not None else None, d.height),
        size=_given(a.size, d.size), resize=a.resize or d.resize,
        crop=a.crop or d.crop)
    upd = {k: v for k, v in dict(model=a.model, steps=a.steps, lr=a.lr, seed=a.seed,
                                 method=a.method, checkpoint_every=a.checkpoint_every,
                                 inversion_steps=a.inversion_steps,
                                 inversion_prompt=a.inversion_prompt).items()
           if v is not None}
    if getattr(a, "lora_rank", None) is not None:
        upd["lora_rank"] = a.lora_rank
    upd.update(temporal_overrides(a))
    if not a.config:  # the base model's family's defaults for what the user left unset
        upd.update(_family_defaults(a))
    cfg = dataclasses.replace(cfg, data=d, **upd)
    if a.no_checkpointing:
        cfg = dataclasses.replace(cfg, gradient_checkpointing=False)
    from .common import control_from_args

    control = control_from_args(a)
    if control:
        cfg = dataclasses.replace(cfg, control=control)
    return _fgbg_args(method_overrides(cfg, a), a), imp


def _family_defaults(a) -> dict:
    """The learning rate and steps of the model's family (models/family.py: LoRA on Wan2.1
    at 1e-4 for 300 steps) where the flags leave them unset; {} on Stable Diffusion (the
    TuneConfig's own) and for a model whose family cannot be read (the tune says why)."""
    from ..errors import VcsError
    from ..models.family import backbone_family, rules

    try:
        r = rules(backbone_family(a.model))
    except VcsError:
        return {}
    return {k: v for k, v in (("lr", r.lr), ("steps", r.steps))
            if v is not None and getattr(a, k, None) is None}


def report(res, out=None) -> int:
    """The tune outcome on stderr, the run folder LAST on stdout; 130 when it was stopped."""
    out = out or sys.stderr
    for note in getattr(res, "notes", []):
        print(f"note: {note}", file=out)
    if res.stopped:
        print(res.message, file=out)
    else:
        last = res.losses[-1] if res.losses else {}
        print(f"tuned {res.steps} steps in {res.seconds:.1f} s; final loss "
              f"{last.get('loss', float('nan')):.4f}", file=out)
    print_method_summary(res.run_dir)
    print(res.run_dir)
    return 130 if res.stopped else 0


def print_method_summary(run_dir) -> None:
    """The method's module sizes (e.g. APLA's VGT parameter count) from meta.json."""
    from ..runs.folder import RunFolder

    info = RunFolder(run_dir).meta().get("method_summary") or {}
    counts = [f"{k[:-len('_params')]} {v:,}" for k, v in info.items() if k.endswith("_params")]
    if counts:
        print("parameters: " + ", ".join(counts), file=sys.stderr)


def _check_tav_inputs(cfg, imp, a) -> None:
    """A Tune-A-Video config's video and base model, checked before anything loads: each a
    one-line error saying what to do (never the demo model in place of the one it names)."""
    from pathlib import Path

    from ..errors import InputError, ModelNotFoundError

    if not a.video and cfg.data.video_path and not Path(cfg.data.video_path).exists():
        raise InputError(f"The config's train_data.video_path {imp.video_path} was not found "
                         "(read from the current folder, as Tune-A-Video does, or beside the "
                         "config); fix the path or pass --video.")
    if not a.model and not imp.hub_id and imp.model_path and not Path(cfg.model).exists():
        raise ModelNotFoundError(
            f"The config's pretrained_model_path {imp.model_path} does not exist and is no "
            "Stable Diffusion folder name vcstudio knows the hub id of; pass --model with a hub "
            "id or a local diffusers folder.")


def _reason(e: Exception) -> str:
    import re

    m = re.search(r"Hub \((.*)\)\. Without", str(e))
    return (m.group(1) if m else str(e))[:100]


def run(a) -> int:
    from ..errors import ModelNotFoundError
    from ..jobs.tune import real_footage_notice
    from .common import is_embedded, notice_if_embedded, run_job

    cfg, imp = _config_and_import(a)
    out = a.out
    if imp is not None:
        for note in imp.notes:
            print(f"note: {note}", file=sys.stderr)
        _check_tav_inputs(cfg, imp, a)
        out = out or imp.output_dir or None  # Tune-A-Video's output_dir is the run folder
    notice_if_embedded(cfg.model or None)
    note = real_footage_notice(cfg.data.video_path, is_embedded(cfg.model or None))
    if note:
        print(f"note: {note}", file=sys.stderr)
    try:
        return report(run_job("tune", cfg, a, out=out))
    except ModelNotFoundError as e:
        if imp is None or not imp.hub_id or a.model:
            raise
        raise ModelNotFoundError(
            f"The config's pretrained_model_path {imp.model_path} is not here and its hub id "
            f"{imp.hub_id} cannot be loaded (not in the local Hugging Face cache, and no "
            f"download: {_reason(e)}); download it "
            f"(`hf download {imp.hub_id} --local-dir {imp.model_path}`) or pass --model with a "
            "local Stable Diffusion folder.") from None


