"""Tune-A-Video output folders: recognise them, read their tensors safely, and map their
``UNet3DConditionModel`` onto vcstudio's inflated model tensor by tensor.

A Tune-A-Video run (Wu et al. 2023) ends with ``TuneAVideoPipeline.save_pretrained(output_dir)``:
diffusers' folder layout (model_index.json, text_encoder/, vae/, tokenizer/, scheduler/, unet/
with ``config.json`` + ``diffusion_pytorch_model.bin`` or ``.safetensors``), its own
``config.yaml`` and ``inv_latents/ddim_latent-<step>.pt``. Its U-Net is the 2-D SD U-Net
inflated: the same parameter names (its convolutions are 2-D kernels applied per frame), plus in
every transformer block ``attn_temp`` (attention over frames, after the feed-forward) and its
LayerNorm ``norm_temp``. vcstudio wraps each transformer block (models/temporal.py), so

    ...transformer_blocks.N.attn_temp.X -> unet....transformer_blocks.N.temporal.attn.X
    ...transformer_blocks.N.norm_temp.X -> unet....transformer_blocks.N.temporal.norm.X
    ...transformer_blocks.N.<other>     -> unet....transformer_blocks.N.block.<other>
    everything else (conv_in, time_embedding, resnets, norms, proj_in/out, samplers, conv_out)
                                        -> unet.<same name>

With the clip-wide GroupNorm and no frame positions (models/groupnorm.py, TuneConfig) the
inflated model computes what Tune-A-Video's does. Weights are read only as safetensors or with
``torch.load(weights_only=True)``: a pickle that holds anything but tensors is refused.
"""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Optional

import torch

from ..errors import InputError

TAV_PIPELINE = "TuneAVideoPipeline"
TAV_UNET = "UNet3DConditionModel"
_BLOCKS_2D = {"CrossAttnDownBlock3D": "CrossAttnDownBlock2D", "DownBlock3D": "DownBlock2D",
              "CrossAttnUpBlock3D": "CrossAttnUpBlock2D", "UpBlock3D": "UpBlock2D",
              "UNetMidBlock3DCrossAttn": "UNetMidBlock2DCrossAttn"}
_BLOCK = re.compile(r"^(.*\.transformer_blocks\.\d+)\.(.+)$")


def _json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def is_tav_folder(path: str | Path) -> bool:
    """A Tune-A-Video output folder: model_index.json names TuneAVideoPipeline, or
    unet/config.json names UNet3DConditionModel."""
    p = Path(path)
    if not p.is_dir():
        return False
    return (_json(p / "model_index.json").get("_class_name") == TAV_PIPELINE
            or _json(p / "unet" / "config.json").get("_class_name") == TAV_UNET)


def unet2d_config(folder: str | Path) -> dict:
    """The UNet2DConditionModel config of the folder's UNet3D (block types 3D -> 2D, keys the
    2-D class does not take dropped)."""
    import inspect

    from diffusers import UNet2DConditionModel

    path = Path(folder) / "unet" / "config.json"
    cfg = _json(path)
    if not cfg:
        raise InputError(f"{path} is missing or not JSON; the Tune-A-Video folder is incomplete "
                         "(copy it again).")
    out = {}
    for key in ("down_block_types", "up_block_types"):
        names = []
        for b in cfg.get(key, []):
            if b not in _BLOCKS_2D and b not in _BLOCKS_2D.values():
                raise InputError(f"{path} names a block type {b!r} that is not Tune-A-Video's "
                                 f"({', '.join(_BLOCKS_2D)}); this folder cannot be opened.")
            names.append(_BLOCKS_2D.get(b, b))
        out[key] = tuple(names)
    mid = cfg.get("mid_block_type", "UNetMidBlock3DCrossAttn")
    out["mid_block_type"] = _BLOCKS_2D.get(mid, mid)
    accepted = set(inspect.signature(UNet2DConditionModel.__init__).parameters)
    for k, v in cfg.items():
        if k not in out and k in accepted and not k.startswith("_"):
            out[k] = tuple(v) if isinstance(v, list) else v
    return out


def safe_load(path: str | Path) -> dict:
    """Tensors of a .safetensors file, or of a .bin/.pt through ``torch.load(weights_only=True)``
    (never a general unpickle); anything else is a one-line InputError."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as e:
            raise InputError(f"{path} is not a readable safetensors file "
                             f"({str(e).strip()[:100]}); copy it again.") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, TypeError) as e:
        why = str(e).strip().splitlines()[0][:100] if str(e).strip() else type(e).__name__
        raise InputError(f"{path} holds pickled objects other than tensors ({why}); vcstudio "
                         "loads tensors only (torch.load weights_only), never arbitrary pickles. "
                         "Re-save it with torch.save of a tensor or state dict, or as "
                         "safetensors.") from None
    return obj


def _tensors(obj, path: Path, what: str) -> dict:
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{path} does not hold a {what} of tensors; vcstudio cannot use it.")
    return obj


def read_unet_state(folder: str | Path) -> dict[str, torch.Tensor]:
    """The folder's UNet3D state dict (safetensors preferred over .bin)."""
    unet = Path(folder) / "unet"
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        if (unet / name).is_file():
            return _tensors(safe_load(unet / name), unet / name, "state dict")
    raise InputError(f"{unet} holds no diffusion_pytorch_model.safetensors or .bin; the "
                     "Tune-A-Video folder is incomplete (copy it again).")


def ours(tav_key: str) -> str:
    """The inflated VideoDenoiser parameter name for a Tune-A-Video UNet3D name."""
    m = _BLOCK.match(tav_key)
    if m is None:
        return "unet." + tav_key
    head, rest = m.groups()
    for tav, mine in (("attn_temp.", "temporal.attn."), ("norm_temp.", "temporal.norm.")):
        if rest.startswith(tav):
            return f"unet.{head}.{mine}{rest[len(tav):]}"
    return f"unet.{head}.block.{rest}"


def theirs(our_key: str) -> str:
    """The inverse of :func:`ours` (for messages naming the key a folder lacks)."""
    k = our_key[len("unet."):] if our_key.startswith("unet.") else our_key
    k = k.replace(".temporal.attn.", ".attn_temp.").replace(".temporal.norm.", ".norm_temp.")
    return k.replace(".block.", ".", 1) if ".transformer_blocks." in k else k


def map_state(tav_state: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """Tune-A-Video's UNet3D tensors under ``model``'s (an inflated VideoDenoiser) names.
    A key that maps to nothing, a tensor of another shape, or a parameter of the model's U-Net
    that the folder lacks is an InputError naming it."""
    targets = {n: p for n, p in model.named_parameters() if n.startswith("unet.")}
    out = {}
    for key, value in tav_state.items():
        name = ours(key)
        if name not in targets:
            raise InputError(f"The Tune-A-Video U-Net holds {key}, which maps to no tensor of "
                             f"vcstudio's inflated model (looked for {name}); this folder was "
                             "not written by Tune-A-Video's UNet3DConditionModel.")
        if tuple(targets[name].shape) != tuple(value.shape):
            raise InputError(f"The Tune-A-Video U-Net's {key} has shape {tuple(value.shape)}, "
                             f"vcstudio's {name} {tuple(targets[name].shape)}; the folder's "
                             "unet/config.json does not describe its weights.")
        out[name] = value
    missing = sorted(set(targets) - set(out))
    if missing:
        raise InputError(f"The Tune-A-Video U-Net lacks {theirs(missing[0])} (and "
                         f"{len(missing) - 1} more); the folder is incomplete or not "
                         "Tune-A-Video's.")
    return out


def split_2d(tav_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The 2-D U-Net's part (diffusers UNet2DConditionModel names): all but the temporal
    layers, each transformer block's tensors under their own names."""
    return {k: v for k, v in tav_state.items() if ".attn_temp." not in k
            and ".norm_temp." not in k}


def load_unet2d(folder: str | Path, dtype: torch.dtype = torch.float32):
    """The folder's U-Net without its temporal layers, as a diffusers UNet2DConditionModel."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**unet2d_config(folder))
    sd = split_2d(read_unet_state(folder))
    want = unet.state_dict()
    unknown = sorted(set(sd) - set(want))
    if unknown:
        raise InputError(f"The Tune-A-Video U-Net holds {unknown[0]}, which is no tensor of the "
                         "2-D U-Net its config describes; this folder cannot be opened.")
    lacking = sorted(set(want) - set(sd))
    if lacking:
        raise InputError(f"The Tune-A-Video U-Net lacks {lacking[0]} (and {len(lacking) - 1} "
                         "more); the folder is incomplete.")
    bad = next((k for k in sd if tuple(sd[k].shape) != tuple(want[k].shape)), None)
    if bad is not None:
        raise InputError(f"The Tune-A-Video U-Net's {bad} has shape {tuple(sd[bad].shape)}, not "
                         f"{tuple(want[bad].shape)} as its unet/config.json says.")
    unet.load_state_dict(sd)
    return unet if dtype == torch.float32 else unet.to(dtype)


def load_pipeline_parts(folder: str | Path, dtype: torch.dtype):
    """A diffusers StableDiffusionPipeline over the folder's own components and the 2-D part of
    its U-Net (what models/loading.py makes a BaseModel of)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    for sub in ("vae", "text_encoder", "tokenizer", "scheduler"):
        if not (folder / sub).is_dir():
            raise InputError(f"The Tune-A-Video folder {folder} has no {sub}/; pass --model with "
                             "the base model it was tuned from.")
    vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=dtype)
    text = CLIPTextModel.from_pretrained(folder / "text_encoder", torch_dtype=dtype)
    tok = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    sched = DDIMScheduler.from_pretrained(folder / "scheduler")
    return StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok,
                                   unet=load_unet2d(folder, dtype), scheduler=sched,
                                   safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def inversion_file(folder: str | Path) -> Optional[Path]:
    """The last inverted latents Tune-A-Video saved (inv_latents/ddim_latent-<step>.pt)."""
    inv = Path(folder) / "inv_latents"
    files = []
    for p in inv.glob("ddim_latent-*.pt") if inv.is_dir() else ():
        m = re.fullmatch(r"ddim_latent-(\d+)\.pt", p.name)
        if m:
            files.append((int(m.group(1)), p))
    return max(files)[1] if files else None


def read_latents(path: str | Path) -> torch.Tensor:
    """A (1, 4, F, h, w) latent tensor from a .pt file, loaded with weights_only=True."""
    path = Path(path)
    obj = safe_load(path)
    if isinstance(obj, dict) and len(obj) == 1:
        obj = next(iter(obj.values()))
    if not isinstance(obj, torch.Tensor) or obj.ndim != 5:
        raise InputError(f"{path} does not hold a (batch, channels, frames, height, width) "
                         "latent tensor; delete it to make the inversion again.")
    return obj.float()
