"""Control models (diffusers' own classes) and the residuals they feed the inflated video U-Net.

* ``ControlNetModel`` (Zhang et al. 2023, eq. 2-4: a trainable copy of the U-Net encoder whose
  zero convolutions add ``down_block_additional_residuals`` / ``mid_block_additional_residual``
  to the U-Net's skip connections); several become one ``MultiControlNetModel`` whose residuals
  are summed, each with its own scale and start/end share of the steps;
* ``T2IAdapter`` (Mou et al. 2023, eq. 3: F_c features added to the encoder's intermediate
  features, ``down_intrablock_additional_residuals``), several as one ``MultiAdapter`` whose
  features are the weighted sum.

Frames are folded into the batch exactly as the video U-Net folds them ((B, C, F, H, W) ->
(B*F, C, H, W), video-major), so frame j of video b is row b*F + j for the control model too and
the residuals enter the very calls diffusers' StableDiffusionControlNetPipeline /
StableDiffusionAdapterPipeline make on a 2-D U-Net: no forked U-Net code.

:class:`StructureControl` is what :class:`~vcstudio.models.inflate.VideoDenoiser` calls
(``denoiser.controlled(ctrl)``): ``ctrl(x, t, ehs, b, f) -> unet kwargs``. It is a plain object,
not an nn.Module, so the control models never join the tuned delta or the trainable set.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..models.encode import frames_to_unit
from ..errors import InputError, ModelNotFoundError

CONTROLNET, ADAPTER = "controlnet", "adapter"


def _class_name(source: str) -> Optional[str]:
    """The diffusers class a folder or cached hub repo holds (its config.json), if readable."""
    p = Path(source)
    cfg = p / "config.json" if p.is_dir() else None
    if cfg is None:
        try:
            from huggingface_hub import hf_hub_download

            cfg = Path(hf_hub_download(source, "config.json", local_files_only=True))
        except Exception:  # noqa: BLE001 - not in the local cache: reported by the caller
            return None
    try:
        return json.loads(cfg.read_text()).get("_class_name")
    except (OSError, ValueError):
        return None


def control_kind(source: str) -> str:
    """"controlnet" or "adapter" from the model's config.json where it can be read locally;
    an unknown model counts as a ControlNet (the dearer one: estimates stay on the safe side)."""
    return ADAPTER if _class_name(source) == "T2IAdapter" else CONTROLNET


def load_control_model(source: str, device=None, dtype: torch.dtype = torch.float32):
    """A ControlNetModel or T2IAdapter by hub id (from the local cache) or local folder
    -> (kind, model) with kind "controlnet" or "adapter", frozen, in eval mode."""
    from diffusers import ControlNetModel, T2IAdapter

    if not source:
        raise InputError("Give the control model: a ControlNet or T2I-Adapter hub id or folder "
                         "(--control-model ID).")
    name = _class_name(source)
    if name is None:
        raise ModelNotFoundError(
            f"The control model {source} is not on this machine: download it with `hf download "
            f"{source}` (or give a local diffusers folder holding config.json).")
    classes = {"ControlNetModel": (CONTROLNET, ControlNetModel),
               "T2IAdapter": (ADAPTER, T2IAdapter)}
    if name not in classes:
        raise InputError(f"{source} holds a {name}, not a ControlNetModel or T2IAdapter; give a "
                         "ControlNet or T2I-Adapter for Stable Diffusion 1.x/2.x.")
    kind, cls = classes[name]
    local = not Path(source).is_dir()
    try:
        model = cls.from_pretrained(source, torch_dtype=dtype, local_files_only=local)
    except OSError as e:
        raise ModelNotFoundError(f"Could not load the control model {source} ({str(e)[:80]}); "
                                 f"download it with `hf download {source}`.") from None
    model.requires_grad_(False)
    return kind, model.to(device or "cpu").eval()


def check_compatible(kind: str, model, unet_config, source: str = "") -> None:
    """A control model made for another base is one line, not a shape error deep in the U-Net."""
    ucfg = unet_config
    name = source or type(model).__name__
    if kind == CONTROLNET:
        mine, base = model.config.cross_attention_dim, ucfg.cross_attention_dim
        if mine != base:
            raise InputError(
                f"The ControlNet {name} has cross-attention width {mine}, the base model {base}: "
                "use a ControlNet made for this base (SD 1.x = 768, SD 2.x = 1024).")
        if tuple(model.config.block_out_channels) != tuple(ucfg.block_out_channels):
            mine = list(model.config.block_out_channels)
            raise InputError(f"The ControlNet {name} has blocks {mine}, the base U-Net "
                             f"{list(ucfg.block_out_channels)}: use a ControlNet made for this "
                             "base.")
    else:
        chans = tuple(model.config.channels)
        want = tuple(ucfg.block_out_channels)[:len(chans)]
        if chans != want:
            raise InputError(f"The T2I-Adapter {name} has feature widths {list(chans)}, the base "
                             f"U-Net's blocks {list(want)}: use an adapter made for this base.")


@dataclass
class Unit:
    """One condition: its model, its frames (L, 3, H, W) in [0, 1] and when it acts."""

    kind: str  # controlnet | adapter
    model: torch.nn.Module
    frames: torch.Tensor
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0
    label: str = ""


def keep(i: int, n: int, start: float, end: float) -> float:
    """diffusers' controlnet_keep: 1 while step i of n lies within [start, end] of the steps."""
    return 1.0 - float(i / n < start or (i + 1) / n > end)


class StructureControl:
    """Residuals of one or more control units for the folded frames of a U-Net call.

    ``window_index``: None (each video in the batch is the whole condition clip), or an int
    tensor (n, K) of condition frames per video for co-denoised windows; a batch of k*n videos
    (CFG stacks [uncond; cond]) repeats it k times, as the videos were repeated.
    ``timesteps``: the sampling schedule, to turn a timestep into step i for start/end; without
    it every unit acts at every step (tuning).
    """

    def __init__(self, units: Sequence[Unit], timesteps: Optional[Sequence] = None) -> None:
        if not units:
            raise InputError("No structure condition given.")
        n = {int(u.frames.shape[0]) for u in units}
        if len(n) != 1:
            raise InputError(f"The conditions have different frame counts {sorted(n)}; give "
                             "each one the clip's frames.")
        self.units = list(units)
        self.length = n.pop()
        self.window_index: Optional[torch.Tensor] = None
        self.set_timesteps(timesteps)
        self._adapter_cache: Optional[tuple] = None
        self.calls = 0  # control-model calls made (benchmarks, tests)

    def set_timesteps(self, timesteps: Optional[Sequence]) -> None:
        self.timesteps = None if timesteps is None else [int(t) for t in timesteps]

    def _step_scales(self, t: torch.Tensor) -> list[float]:
        if self.timesteps is None:
            return [u.scale for u in self.units]
        tv = int(t.reshape(-1)[0])
        n = len(self.timesteps)
        i = self.timesteps.index(tv) if tv in self.timesteps else 0
        return [u.scale * keep(i, n, u.start, u.end) for u in self.units]

    def _rows(self, b: int, f: int, device) -> torch.Tensor:
        """Condition-frame index of every folded row (video-major)."""
        if self.window_index is None:
            if f != self.length:
                raise InputError(f"The conditions have {self.length} frames, the video {f}; "
                                 "give conditions for every frame.")
            return torch.arange(f, device=device).repeat(b)
        idx = self.window_index.to(device)
        if b % idx.shape[0] or idx.shape[1] != f:
            raise ValueError(f"window index {tuple(idx.shape)} does not fit {b} videos of {f}")
        return idx.repeat(b // idx.shape[0], 1).reshape(-1)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, ehs: torch.Tensor, b: int,
                 f: int) -> dict:
        """U-Net keyword arguments for the folded call ``unet(x, t, ehs)``."""
        from diffusers.models.adapter import MultiAdapter
        from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

        scales = self._step_scales(t)
        rows = self._rows(b, f, x.device)
        kw: dict = {}
        nets = [(u, s) for u, s in zip(self.units, scales) if u.kind == CONTROLNET and s != 0]
        if nets:
            conds = [u.frames.to(x.device)[rows].to(x.dtype) for u, _ in nets]
            if len(nets) == 1:
                net, cond, scale = nets[0][0].model, conds[0], nets[0][1]
            else:  # summed residuals, one scale each (diffusers' Multi-ControlNet)
                net = MultiControlNetModel([u.model for u, _ in nets])
                cond, scale = conds, [s for _, s in nets]
            down, mid = net(x, t, encoder_hidden_states=ehs, controlnet_cond=cond,
                            conditioning_scale=scale, return_dict=False)
            kw["down_block_additional_residuals"] = down
            kw["mid_block_additional_residual"] = mid
            self.calls += 1
        ads = [(u, s) for u, s in zip(self.units, scales) if u.kind == ADAPTER and s != 0]
        if ads:
            # adapter features do not depend on the timestep: computed once per rows and scales
            key = (tuple(rows.tolist()), tuple(s for _, s in ads), x.device, x.dtype)
            if self._adapter_cache is None or self._adapter_cache[0] != key:
                if len(ads) == 1:
                    u, s = ads[0]
                    feats = [v * s for v in u.model(u.frames.to(x.device)[rows].to(x.dtype))]
                else:  # channel-stacked inputs, weighted sum of features (diffusers' MultiAdapter)
                    multi = MultiAdapter([u.model for u, _ in ads])
                    xs = torch.cat([u.frames.to(x.device)[rows].to(x.dtype) for u, _ in ads], 1)
                    feats = multi(xs, [s for _, s in ads])
                self._adapter_cache = (key, feats)
                self.calls += 1
            # the U-Net pops from this list: hand it a fresh one each call
            kw["down_intrablock_additional_residuals"] = [v.clone() for v in
                                                          self._adapter_cache[1]]
        return kw


def build_units(specs, conditions: Sequence[np.ndarray], unet_config, device=None,
                dtype: torch.dtype = torch.float32, loaded: Optional[dict] = None) -> list[Unit]:
    """ControlConfigs + their condition frames (uint8 F,H,W,3) -> Units (models loaded, checked
    against the base U-Net). ``loaded`` maps a source to an already loaded (kind, model)."""
    units = []
    for spec, cond in zip(specs, conditions):
        if loaded is not None and spec.model in loaded:
            kind, model = loaded[spec.model]
        else:
            kind, model = load_control_model(spec.model, device, dtype)
            if loaded is not None:
                loaded[spec.model] = (kind, model)
        check_compatible(kind, model, unet_config, spec.model)
        units.append(Unit(kind, model, frames_to_unit(cond, device or "cpu"), float(spec.scale),
                          float(spec.start), float(spec.end), f"{spec.kind}:{spec.model}"))
    return units
