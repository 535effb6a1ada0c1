"""Combined tuning (consistency-tuning paper, sec. 3.3, eq. 13: D' = F4(D, r', h)).

Fine-tunes the separately tuned run D on the fused clip r' and its prompt with the fg/bg-weighted
loss of eq. 20 (method "fgbg"), starting from D's tensors (``init_from``). The result is an ordinary
run folder, so ``load_tuned`` reloads D' like any other run.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ...config import MaskConfig, TuneConfig
from ...methods.fgbg_method import FgBgConfig
from ...errors import InputError
from ...run_context import RunContext
from ...io.atomic import write_json


def save_masks(masks: np.ndarray, path: Path) -> Path:
    """bool (F, H, W) -> .npz (array ``masks``), the format FgBgConfig.masks reads."""
    from ...io.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, masks=np.asarray(masks, dtype=bool))
    return path


def combined_config(tuned_cfg: TuneConfig, run_dir: Path, prompt: str, frames: np.ndarray,
                    masks_path: Path, mcfg: MaskConfig) -> TuneConfig:
    """The run's own config turned into eq. 20 fine-tuning on ``frames`` from the run's tensors."""
    from ...methods.registry import underlying

    base_method = underlying(tuned_cfg)  # fine-tuning an fgbg run again keeps its own method
    l1, l2, l3 = mcfg.lambdas
    d = dataclasses.replace(tuned_cfg.data, video_path="", prompt=prompt,
                            n_frames=int(frames.shape[0]), height=int(frames.shape[1]),
                            width=int(frames.shape[2]))
    return dataclasses.replace(
        tuned_cfg, data=d, method="fgbg", steps=int(mcfg.tune_steps), lr=float(mcfg.tune_lr),
        init_from=str(run_dir), checkpoint_every=0, preview_every=0,
        fgbg=FgBgConfig(masks=str(masks_path), l1=l1, l2=l2, l3=l3, base_method=base_method))


def combined_tune(tuned, frames: np.ndarray, masks: np.ndarray, prompt: str, mcfg: MaskConfig,
                  out_dir: Path, run: RunContext = RunContext()) -> Path:
    """Eq. 13 on the fused clip; returns the new run folder (D'). ``run``'s progress, cancel
    token and cache serve the nested tune; it runs on the tuned model's device."""
    from ..tune.loop import tune

    if tuned.run is None:
        raise InputError("Combined tuning starts from a saved run; tune a clip first.")
    if mcfg.tune_steps < 1:
        raise InputError("Combined tuning needs at least 1 step (tune_steps).")
    out_dir.mkdir(parents=True, exist_ok=True)
    masks_path = save_masks(masks, out_dir / "fused-masks.npz")
    cfg = combined_config(tuned.cfg, tuned.run.path, prompt, frames, masks_path, mcfg)
    res = tune(cfg, out_dir / "combined-run", run=run.with_(device=tuned.base.device),
               frames=frames, invert=False, base=tuned.base)
    write_json(out_dir / "combined-losses.json", res.losses)
    return res.run_dir
