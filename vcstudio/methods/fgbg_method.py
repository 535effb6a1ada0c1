"""Combined tuning as a TuneMethod (consistency-tuning paper, sec. 3.3, eqs. 13-16 and 20).

The denoising loss becomes L_total = l1 L + l2 L_fg + l3 L_bg (methods/fgbg.py) with the clip's
foreground masks brought to latent resolution. Everything else (installed modules, trainable
patterns, extra losses, after-step updates) is delegated to ``cfg.fgbg.base_method``, so a run
tuned with DCT or APLA keeps its adapters / VGT while it is fine-tuned on the fused frames.

Masks are read lazily on the first training step: loading a finished fgbg run to sample from it
does not need the mask file any more.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from ..errors import InputError
from ..settings import setting
from .base import LOSS_AXIS, Cost, Plotted, StepState, TuneMethod
from .fgbg import FgBgWeights, fgbg_losses, latent_mask

log = logging.getLogger(__name__)


@dataclass
class FgBgConfig:
    """Combined tuning (consistency-tuning paper, sec. 3.3): the fg/bg-weighted loss of eq. 20 on
    the fused clip.

    ``masks``: a file with the clip's foreground masks, bool/uint8 (F, H, W) at frame resolution
    (.npy, .npz with a ``masks`` array, or a folder of PNGs); they are brought to latent
    resolution when tuning. ``base_method`` is the method whose modules and extra losses are kept
    (the run being fine-tuned was tuned with it). The paper's lr 2e-6 / 250 steps are the
    defaults of ``vcstudio long --masks`` and of ``vcstudio tune --method fgbg``.
    """

    masks: str = setting("", flag="--fg-masks",
                         help="foreground masks of the clip's frames: .npy/.npz (frames, H, W) "
                         "or a folder of one PNG per frame (method fgbg)")
    l1: float = 1.0  # lambda_1: plain denoising loss L
    l2: float = 1.0  # lambda_2: foreground L_fg
    l3: float = 0.5  # lambda_3: background L_bg
    reduction: str = "all"  # all | masked (see methods/fgbg.py)
    threshold: Optional[float] = None  # binarise the latent masks at this value (None = soft)
    base_method: str = "baseline"



def load_mask_file(path: Union[str, Path]) -> np.ndarray:
    """bool (F, H, W) foreground masks from .npy, .npz (array ``masks`` or the only array) or a
    folder of PNG/JPG images (sorted by name; non-zero = foreground)."""
    try:
        return _read_masks(Path(path))
    except InputError:
        raise
    except Exception as e:  # corrupt array/zip, unreadable image, images of different sizes
        raise InputError(f"Could not read the masks in {path} ({type(e).__name__}: {e}).") from None


def _read_masks(p: Path) -> np.ndarray:
    if p.is_dir():
        from PIL import Image

        files = sorted(f for f in p.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not files:
            raise InputError(f"The mask folder {p} holds no PNG/JPG images.")
        return np.stack([np.asarray(Image.open(f).convert("L")) > 127 for f in files])
    if not p.is_file():
        raise InputError(f"Mask file not found: {p}. Give a .npy/.npz of (frames, H, W) masks "
                         "or a folder of one PNG per frame.")
    if p.suffix == ".npy":
        arr = np.load(p, allow_pickle=False)
    elif p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            keys = list(z.keys())
            if "masks" not in keys and len(keys) != 1:
                raise InputError(f"{p} holds {keys}; name the mask array 'masks'.")
            arr = z["masks" if "masks" in keys else keys[0]]
    else:
        raise InputError(f"Masks must be .npy, .npz or a folder of images (got {p.name}).")
    if arr.ndim != 3:
        raise InputError(f"Masks in {p} must be (frames, H, W); got shape {arr.shape}.")
    return arr  # latent_mask scales uint8 0..255 itself


class FgBgMethod(TuneMethod):
    """Eq. 20 as the denoising loss; the base method's modules and terms are kept.

    ``inner`` is the base method's instance (methods/registry.py builds it from
    ``cfg.fgbg.base_method``); left out, the base method must be the baseline."""

    name = "fgbg"
    sections = ("fgbg",)
    config = FgBgConfig
    switches = ("masks",)
    replaces_denoise_loss = True
    presets = ()
    paper_defaults = {"lr": 2e-6, "steps": 250}  # consistency-tuning paper, sec. 4
    # "loss" is eq. 20's l1 L + l2 L_fg + l3 L_bg; its parts on the same (MSE) scale
    plotted = (Plotted("l", LOSS_AXIS, "L: whole frame"),
               Plotted("l_fg", LOSS_AXIS, "L_fg: foreground"),
               Plotted("l_bg", LOSS_AXIS, "L_bg: background"))

    @classmethod
    def underlying(cls, cfg) -> str:
        return str(cfg.fgbg.base_method)

    @classmethod
    def cost(cls, cfg) -> Cost:
        return Cost()  # the masks are tiny; the base method's parts are counted for it

    def __init__(self, cfg=None, masks: Optional[Union[np.ndarray, torch.Tensor]] = None,
                 inner: Optional[TuneMethod] = None) -> None:
        super().__init__(cfg)
        fc = cfg.fgbg
        if fc.base_method == "fgbg":
            raise InputError("fgbg.base_method must be the run's own method (baseline, dct, apla).")
        if inner is None:
            if fc.base_method != "baseline":
                raise ValueError("build FgBgMethod over another method with "
                                 "methods.registry.get_method (it passes inner=)")
            inner = TuneMethod(cfg)
        self.inner = inner
        if self.inner.replaces_denoise_loss:  # eq. 20 is the denoising loss: say what it displaces
            log.warning("Combined tuning replaces %s's own denoising loss (e.g. APLA's hyper-loss) "
                        "with eq. 20; its other terms stay.", self.inner.name)
        self.weights = FgBgWeights(fc.l1, fc.l2, fc.l3, fc.reduction)
        if masks is None and not fc.masks:  # fail before the model loads, not at step 1
            raise InputError("Combined tuning (method fgbg) needs foreground masks: set "
                             "fgbg.masks (tune --fg-masks FILE) to a .npy/.npz or a folder of "
                             "PNGs.")
        self._masks = masks  # pixel masks (F, H, W); None = read cfg.fgbg.masks on first use
        self._latent: Optional[torch.Tensor] = None
        self.last: dict[str, float] = {}

    # delegated hooks
    def setup(self, model, base, device) -> None:
        self.inner.setup(model, base, device)

    def trainable_patterns(self) -> tuple[str, ...]:
        return self.inner.trainable_patterns()

    def extra_losses(self, s: StepState) -> dict[str, torch.Tensor]:
        return self.inner.extra_losses(s)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.inner.load_state_dict(state)

    def after_step(self, s: StepState) -> dict[str, float]:
        return {**self.last, **self.inner.after_step(s)}

    def summary(self) -> dict:
        return {"base_method": self.inner.name, **self.inner.summary()}

    def finish(self, run_dir, losses: list[dict]) -> None:
        self.inner.finish(run_dir, losses)

    # the loss
    def latent_masks(self, like: torch.Tensor) -> torch.Tensor:
        """(1, 1, F, h, w) foreground masks at the latents' resolution, cached."""
        if self._latent is None or self._latent.device != like.device:
            masks = self._masks
            if masks is None:
                if not self.cfg.fgbg.masks:
                    raise InputError("Combined tuning (method fgbg) needs foreground masks: set "
                                     "fgbg.masks (tune --fg-masks FILE) to a .npy/.npz or a "
                                     "folder of PNGs.")
                masks = load_mask_file(self.cfg.fgbg.masks)
            m = latent_mask(masks, tuple(like.shape[-2:]), self.cfg.fgbg.threshold)
            if m.shape[2] != like.shape[2]:
                raise InputError(f"{m.shape[2]} mask frames for a clip of {like.shape[2]} frames; "
                                 "give one mask per frame.")
            self._latent = m.to(like.device)
        return self._latent

    def denoise_loss(self, s: StepState) -> torch.Tensor:
        """l1 L + l2 L_fg + l3 L_bg on the model output vs its target (eps, or v)."""
        out = fgbg_losses(s.pred, s.target, self.latent_masks(s.pred), weights=self.weights)
        self.last = {k: float(out[k].detach()) for k in ("l", "l_fg", "l_bg")}
        return out["total"]
