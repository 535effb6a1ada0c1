"""The video model a tune trains: the base U-Net inflated along the config's temporal route,
the method's modules installed, the trainables picked. Its own module so that what converts a
Tune-A-Video folder (runs/convert.py) builds the same model without importing the tuning loop."""
from __future__ import annotations

from ...config import TuneConfig
from ...device import Precision
from ...errors import InputError
from ...methods.base import TuneMethod
from ...methods.registry import get_method
from ...models.inflate import VideoDenoiser
from ...models.loading import BaseModel

TEMPORAL_ROUTES = ("vcstudio", "animatediff")  # TuneConfig.temporal (models/inflate.py)


def build_video_model(base: BaseModel, cfg: TuneConfig, precision: Precision,
                      ) -> tuple[VideoDenoiser, TuneMethod, list[str]]:
    """Inflate a copy of the base U-Net (the config's temporal route: vcstudio's temporal
    attention, or AnimateDiff's motion modules through diffusers' UNetMotionModel), let the
    method install its modules, pick trainables."""
    if cfg.temporal not in TEMPORAL_ROUTES:
        raise InputError(f"Unknown temporal layer type {cfg.temporal!r}; use one of "
                         f"{', '.join(TEMPORAL_ROUTES)}.")
    adapter = None
    if cfg.temporal == "animatediff":
        from ...models.motion import load_motion_adapter

        adapter = load_motion_adapter(cfg.motion_adapter, base.unet)
    elif cfg.motion_adapter:
        raise InputError("A motion adapter needs the AnimateDiff route: add --temporal animatediff.")
    model = VideoDenoiser(base.unet, copy_unet=True, motion_adapter=adapter,
                          groupnorm=cfg.groupnorm, frame_positions=bool(cfg.frame_positions))
    method = get_method(cfg)
    method.setup(model, base, precision.device)
    model.to(precision.device)
    names = model.mark_trainable(tuple(cfg.trainable) + method.trainable_patterns())
    if not names:
        raise InputError(f"No parameter matches the trainable patterns {list(cfg.trainable)}.")
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    if precision.autocast_dtype is not None:
        model.cast_frozen(precision.frozen_dtype)
    c = {True: "yes", False: "no"}.get(cfg.compile, cfg.compile)  # YAML reads yes/no as bools
    if c == "yes" or (c == "auto" and precision.device.type == "cuda"):
        model.compile_unet()
    return model, method, names
