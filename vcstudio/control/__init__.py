"""Structure control: ControlNet / T2I-Adapter conditions taken from the source clip.

Layering: between pipelines and models (it imports models, io and config; pipelines and jobs
import it). ``conditions``: condition frames per frame (canny, depth, pose, uploaded video);
``models``: the control models (diffusers' ControlNetModel / T2IAdapter, Multi-*) and
:class:`~vcstudio.control.models.StructureControl`, the residuals the inflated U-Net adds.
"""
from __future__ import annotations

from ..errors import InputError
from .conditions import DEFAULT_DEPTH_MODEL, KINDS, LABELS, check_kind, conditions_for

# a ControlNet call costs about a third of a U-Net call (its encoder copy + middle block:
# ~361 M of SD-1.5's 860 M parameters, no decoder); an adapter's few convolutions, once per run
CONTROLNET_UNET_SHARE = 1 / 3
CONTROLNET_GIB = 0.72  # ~361 M parameters in bf16
ADAPTER_GIB = 0.16  # ~77 M (a full T2I-Adapter)


def control_cost(controls) -> dict:
    """What a job's conditions add, in U-Net calls and weights: ``unet_share`` (extra U-Net
    calls per U-Net call: each ControlNet runs beside it on the same batch; an adapter runs once
    per job, ~0) and ``gib`` (their weights)."""
    from .models import ADAPTER, control_kind

    kinds = [control_kind(c.model) for c in controls]
    nets = sum(k != ADAPTER for k in kinds)
    return {"controlnets": nets, "adapters": len(kinds) - nets,
            "unet_share": nets * CONTROLNET_UNET_SHARE,
            "gib": nets * CONTROLNET_GIB + (len(kinds) - nets) * ADAPTER_GIB}


def parse_control(text: str):
    """``canny``, ``canny:0.8`` or ``depth:0.5:0.0:0.6`` (kind[:scale[:start[:end]]]) ->
    ControlConfig (model and video are set by the caller)."""
    from ..config import ControlConfig

    parts = [p.strip() for p in str(text).split(":")]
    kind = parts[0]
    check_kind(kind)
    try:
        nums = [float(p) for p in parts[1:4]]
    except ValueError:
        raise InputError(f"--control {text!r}: write kind[:scale[:start[:end]]], e.g. "
                         "canny:0.8") from None
    c = ControlConfig(kind=kind)
    for name, value in zip(("scale", "start", "end"), nums):
        setattr(c, name, value)
    return c


def validate_controls(controls, where: str = "control") -> None:
    """One-line errors naming the condition and the setting (before anything loads)."""
    for i, c in enumerate(controls):
        at = f"{where}[{i}] ({c.kind})"
        check_kind(c.kind)
        if not c.model:
            raise InputError(f"{at} needs a control model: a ControlNet or T2I-Adapter hub id or "
                             "folder (--control-model ID).")
        if not 0 <= float(c.scale) <= 5:
            raise InputError(f"{at}: scale must be within 0..5, got {c.scale}.")
        if not 0 <= float(c.start) < float(c.end) <= 1:
            raise InputError(f"{at}: need 0 <= start < end <= 1 (shares of the steps), got "
                             f"{c.start} and {c.end}.")
        if c.kind == "video" and not c.video:
            raise InputError(f"{at} needs its condition video: --control-video PATH.")


def describe(controls) -> str:
    """A short label, e.g. ``canny:1.0 (lllyasviel/sd-controlnet-canny)``."""
    return ", ".join(f"{c.kind}:{c.scale:g} ({c.model})" for c in controls)


__all__ = ["CONTROLNET_UNET_SHARE", "control_cost", "DEFAULT_DEPTH_MODEL", "KINDS", "LABELS", "conditions_for",
           "describe", "parse_control", "validate_controls"]
