"""AnimateDiff's motion modules as the second temporal route (DESIGN: "two honest routes").

The video U-Net is diffusers' own ``UNetMotionModel.from_unet2d(unet, motion_adapter)``: the 2-D
weights are copied into a U-Net whose every down/mid/up block carries motion modules (temporal
transformers over the frames at each position, sinusoidal frame positions). One-shot tuning can
start from PRETRAINED AnimateDiff motion modules (a ``MotionAdapter`` by hub id or folder) instead
of zeros. An empty source gives a fresh adapter sized to the base U-Net with each motion module's
output projection at zero, so a fresh motion U-Net equals the 2-D model frame by frame, as
AnimateDiff initialises its modules (diffusers' ``MotionAdapter`` constructor leaves them random:
it is meant to be loaded).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..errors import InputError, ModelNotFoundError

MOTION_PATTERN = "motion_modules"  # every motion-module parameter name contains this


def _per_block(value, n: int) -> list:
    return [value] * n if isinstance(value, int) else list(value)


def _heads_for(channels) -> int:
    """AnimateDiff's 8 heads where every block width allows it, else the largest that does."""
    for h in (8, 4, 2, 1):
        if all(c % h == 0 for c in channels):
            return h
    return 1


def fresh_motion_adapter(unet) -> nn.Module:
    """A MotionAdapter laid out for ``unet`` (its blocks, widths, layers and GroupNorm groups);
    zero output projections: the identity until tuned."""
    from diffusers import MotionAdapter
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    c = unet.config
    blocks = tuple(c.block_out_channels)
    adapter = MotionAdapter(block_out_channels=blocks,
                            motion_layers_per_block=_per_block(c.layers_per_block, len(blocks)),
                            motion_norm_num_groups=c.norm_num_groups,
                            motion_num_attention_heads=_heads_for(blocks),
                            motion_max_seq_length=32, use_motion_mid_block=True)
    for m in adapter.modules():
        if isinstance(m, AnimateDiffTransformer3D):
            nn.init.zeros_(m.proj_out.weight)
            nn.init.zeros_(m.proj_out.bias)
    return adapter


def check_layout(adapter, unet, source: str) -> None:
    """A one-line InputError unless ``adapter``'s block layout matches ``unet``'s."""
    a, u = adapter.config, unet.config
    ub, ab = tuple(u.block_out_channels), tuple(a.block_out_channels)
    ul = _per_block(u.layers_per_block, len(ub))
    al = _per_block(a.motion_layers_per_block, len(ab))
    if ub != ab or ul != al:
        raise InputError(
            f"The motion adapter {source} is laid out for U-Net blocks {list(ab)} x {al} layers, "
            f"the base U-Net has {list(ub)} x {ul}: use a motion adapter made for this base "
            "(AnimateDiff's SD 1.5 adapters for SD 1.x) or --motion-adapter '' for fresh ones.")
    if a.get("conv_in_channels"):
        raise InputError(f"The motion adapter {source} replaces the input convolution (PIA); "
                         "use a plain AnimateDiff motion adapter.")


def load_motion_adapter(source: str, unet) -> nn.Module:
    """The MotionAdapter for ``source`` (diffusers folder or hub id; "" = fresh), checked
    against ``unet``'s layout. A hub id is read from the local Hub cache first."""
    if not source:
        return fresh_motion_adapter(unet)
    from diffusers import MotionAdapter

    path = Path(source)
    if path.is_file():
        raise InputError(f"{path.name}: pass the motion adapter as a diffusers folder (with "
                         "config.json) or a hub id, not a single file.")
    if path.is_dir() or source.startswith((".", "/", "~")):
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{source} is not a diffusers MotionAdapter folder (no "
                                     "config.json).")
        try:
            adapter = MotionAdapter.from_pretrained(str(path))
        except (OSError, ValueError, EnvironmentError) as e:
            raise ModelNotFoundError(f"Could not load the motion adapter {source}: "
                                     f"{str(e).splitlines()[0][:200]}") from None
    else:
        try:
            adapter = MotionAdapter.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError, EnvironmentError):
            try:
                adapter = MotionAdapter.from_pretrained(source)
            except (OSError, ValueError, EnvironmentError) as e:
                raise ModelNotFoundError(
                    f"Could not load the motion adapter {source!r} from the Hub "
                    f"({str(e).splitlines()[0][:160]}). Without network, download it elsewhere "
                    f"(`hf download {source} --local-dir DIR`) and pass --motion-adapter DIR.") \
                    from None
    check_layout(adapter, unet, source)
    return adapter


def motion_unet(unet2d, adapter) -> nn.Module:
    """diffusers' UNetMotionModel with ``unet2d``'s weights and ``adapter``'s motion modules, on
    the 2-D U-Net's device and dtype (``unet2d`` itself is left as it is)."""
    from diffusers import UNetMotionModel
    from diffusers.utils import logging as dlog

    check_layout(adapter, unet2d, "given")
    level = dlog.get_verbosity()
    dlog.set_verbosity_error()  # from_unet2d's dtype cast warns about an empty fp32 module list
    try:
        with torch.no_grad():
            model = UNetMotionModel.from_unet2d(unet2d, adapter)  # in unet2d's dtype
    finally:
        dlog.set_verbosity(level)
    return model.to(device=unet2d.device)


def max_frames(unet) -> int:
    """The most frames the motion modules' sinusoidal positions cover."""
    return int(unet.config.motion_max_seq_length)
