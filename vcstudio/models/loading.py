"""Load Stable Diffusion 1.x/2.x parts from a hub id, a local diffusers folder or one file.

The default model (no ``--model``) is the first of: ``$VCSTUDIO_MODEL``; Stable Diffusion 1.5
(:data:`DEFAULT_MODEL`) when its weights are in the local Hugging Face cache (a Space preloads
them through README.md's ``preload_from_hub``; a desktop has them after one download); the
embedded offline demo model in ``assets/toy-sd``. Choosing it reads the cache only: no network
probe. The studio's default adds one case (:func:`default_base`: a GPU and the Hub at hand also
mean SD 1.5), probed once when the app starts. Loading never trusts remote code and never
unpickles (single .ckpt files go through diffusers, which loads them with
``weights_only=True``).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from ..errors import ModelNotFoundError
from .cache import ModelCache, default_cache

ASSETS = Path(__file__).resolve().parents[2] / "assets"
EMBEDDED_MODEL = ASSETS / "toy-sd"
EMBEDDED_NOTICE = ("Using the embedded offline demo model (a tiny model trained on vcstudio's toy "
                   "world of shapes, 64x64). For real footage pass --model with a Stable Diffusion "
                   "hub id (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5), a local diffusers "
                   "folder or a .safetensors file, or set VCSTUDIO_MODEL.")
# said before a tune when the model is the demo model and the clip is no toy scene
# (jobs/tune.py real_footage_notice: the CLI's tune and the Edit tab show it; one may go on)
REAL_FOOTAGE_NOTICE = ("This clip does not look like a toy-world scene, and the model in use is "
                       "the embedded demo model, which only knows the toy world (coloured shapes "
                       "on plain backgrounds, 64x64): tuned on real footage it edits into "
                       "blobs. Real footage needs a real Stable Diffusion 1.x/2.x model: pass "
                       "--model with a hub id (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5),"
                       " a local diffusers folder or a .safetensors file, or set VCSTUDIO_MODEL "
                       "to one before starting the app. You may still go on with the demo model.")

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
# the files that tell DEFAULT_MODEL was downloaded (README.md's preload_from_hub lists these,
# with the tokenizer and scheduler files, whose names vary between tokenizer formats)
DEFAULT_MODEL_FILES = ("model_index.json", "text_encoder/config.json",
                       "text_encoder/model.safetensors", "unet/config.json",
                       "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                       "vae/diffusion_pytorch_model.safetensors")


def default_model_cached(repo_id: str = DEFAULT_MODEL) -> bool:
    """Are all files :data:`DEFAULT_MODEL` loads in the local Hub cache? (cache lookups only)"""
    from huggingface_hub import try_to_load_from_cache

    try:
        return all(isinstance(try_to_load_from_cache(repo_id, f), str)
                   for f in DEFAULT_MODEL_FILES)
    except Exception:  # an unreadable cache is no cache
        return False


@dataclass
class BaseModel:
    """The frozen parts of a text-to-image model, on one device, plus what identifies them."""

    model_id: str
    unet: Any  # UNet2DConditionModel (the 2-D original; callers inflate a copy)
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict
    fingerprint: str
    is_embedded: bool = False
    # fingerprints of the same weights under earlier formulas, so older runs still load
    legacy_fingerprints: tuple[str, ...] = ()
    # a few values of the fingerprinted tensors: the same weights loaded in another precision
    # (fp16 vs fp32 or bf16) hash differently, but these agree to rounding (see matches)
    signature: tuple[float, ...] = ()
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32

    def matches(self, fingerprint: Optional[str], signature=None) -> bool:
        """Whether a run's recorded base names these weights: the same fingerprint, or (a run
        that recorded its base's signature) the same values to the rounding of another
        precision: a base loaded in fp16 (a Tune-A-Video config's mixed_precision) hashes
        differently from the same weights in fp32 or bf16."""
        if fingerprint == self.fingerprint or fingerprint in self.legacy_fingerprints:
            return True
        return signatures_match(signature, self.signature)

    @property
    def prediction_type(self) -> str:
        return self.scheduler_config.get("prediction_type", "epsilon")

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_scaling(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def native_size(self) -> int:
        return int(self.unet.config.sample_size) * self.vae_scale


@dataclass(frozen=True)
class DefaultBase:
    """The base model a studio starts on when none is named, and why (the banner says both)."""

    model: str
    embedded: bool
    why: str


def default_base(gpu: bool, online: bool, sd15_cached: bool,
                 demo_present: bool = True) -> DefaultBase:
    """The default base model (DESIGN "Models and weights"), from what the machine has:
    Stable Diffusion 1.5 (:data:`DEFAULT_MODEL`) when its weights are in the local Hugging Face
    cache, or when a GPU and the Hub are both at hand (it is downloaded by the first job that
    needs it); else the embedded demo model. A pure function of its inputs; callers probe them
    (:func:`probed_default_base`) or pass what they know."""
    if sd15_cached:
        return DefaultBase(DEFAULT_MODEL, False, "Stable Diffusion 1.5 is in the local Hugging "
                                                 "Face cache")
    if gpu and online:
        return DefaultBase(DEFAULT_MODEL, False, "a GPU and the Hugging Face Hub are at hand "
                                                 "(the first job downloads it)")
    if not demo_present:
        raise ModelNotFoundError(
            "No model given and the embedded demo model is missing from assets/toy-sd. Pass "
            "--model with a Stable Diffusion hub id or local folder, or train the demo model "
            "with `vcstudio toyworld train`.")
    why = ("there is no GPU and Stable Diffusion 1.5 is not in the local cache" if not gpu else
           "the Hugging Face Hub cannot be reached and Stable Diffusion 1.5 is not in the "
           "local cache")
    return DefaultBase(str(EMBEDDED_MODEL), True, why)


def probed_default_base() -> DefaultBase:
    """:func:`default_base` on this machine: the cache read first; the Hub is probed (at most
    ~2 s, at once under HF_HUB_OFFLINE) only on a GPU machine without SD 1.5 cached, so a
    CPU machine or an offline one starts without waiting."""
    cached = default_model_cached()
    gpu = torch.cuda.is_available()
    online = False
    if gpu and not cached:
        from .hub_access import hub_online

        online = hub_online()
    return default_base(gpu, online, cached, (EMBEDDED_MODEL / "model_index.json").is_file())


def is_embedded_path(model: str) -> bool:
    """Whether ``model`` names the embedded demo model's folder (however it is written)."""
    try:
        return Path(model).expanduser().resolve() == EMBEDDED_MODEL.resolve()
    except (OSError, ValueError):
        return False


def resolve_model(model: Optional[str]) -> tuple[str, bool]:
    """-> (model id or path, is_embedded). No model: ``$VCSTUDIO_MODEL``, else
    :func:`default_base` from the cache alone (no GPU or network probe: the CLI and every
    job's "" read it; a studio probes once at start and passes its pick on)."""
    if model:
        return model, is_embedded_path(model)
    env = os.environ.get("VCSTUDIO_MODEL")
    if env:
        return env, False
    d = default_base(False, False, default_model_cached(),
                     (EMBEDDED_MODEL / "model_index.json").is_file())
    return d.model, d.embedded


def _fingerprint_tensors(unet, vae, text_encoder) -> list[torch.Tensor]:
    return [unet.conv_in.weight, unet.conv_out.weight, vae.decoder.conv_out.weight,
            text_encoder.get_input_embeddings().weight[:64]]


def signature(unet, vae, text_encoder) -> tuple[float, ...]:
    """Per fingerprinted tensor: its mean, its mean absolute value and its first 8 values, in
    float (rounding a value to fp16 or bf16 moves it by at most 2^-8 of itself)."""
    out: list[float] = []
    for t in _fingerprint_tensors(unet, vae, text_encoder):
        t = t.detach().float().cpu().reshape(-1)
        out += [float(t.mean()), float(t.abs().mean()), *map(float, t[:8])]
    return tuple(round(v, 7) for v in out)


def signatures_match(a, b, rtol: float = 1e-2, atol: float = 1e-4) -> bool:
    """Whether two base signatures are the same weights up to precision rounding."""
    if not a or not b or len(a) != len(b):
        return False
    import numpy as np

    return bool(np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=rtol, atol=atol))


def _fingerprint(model_id: str, unet, vae, text_encoder, legacy: bool = False) -> str:
    """Identifies the base weights a delta was tuned on: config + a few weight tensors.

    The tensors are hashed rounded to bfloat16, so the same base loaded in fp32 (CPU) or bf16
    (CUDA) gives the same fingerprint: a run tuned on a GPU Space edits on a laptop. ``legacy``
    is the earlier formula (full precision of the loaded dtype), kept so older runs load."""
    h = hashlib.sha256()
    h.update(json.dumps(dict(unet.config), sort_keys=True, default=str).encode())
    for t in _fingerprint_tensors(unet, vae, text_encoder):
        t = t.detach().float().cpu()
        data = t.numpy() if legacy else t.to(torch.bfloat16).view(torch.int16).numpy()
        h.update(data.tobytes())
    return h.hexdigest()[:16]


def _from_pipeline(model: str, dtype: torch.dtype):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as dlog

    dlog.disable_progress_bar()  # our own progress protocol reports loading

    kw: dict[str, Any] = dict(dtype=dtype, safety_checker=None, feature_extractor=None,
                              requires_safety_checker=False)
    path = Path(model)
    if path.is_file():
        if path.suffix.lower() not in (".safetensors", ".ckpt"):
            raise ModelNotFoundError(f"{path.name}: single-file models must be .safetensors or "
                                     ".ckpt.")
        try:
            return StableDiffusionPipeline.from_single_file(str(path), **kw)
        except Exception as e:  # needs its original config, which may need the network
            raise ModelNotFoundError(
                f"Could not load the single-file checkpoint {path.name} ({_short(e)}). diffusers "
                "needs the matching model config; with no network, convert it once on a machine "
                "with network and pass the resulting diffusers folder.") from None
    if path.is_dir():
        from .tav import is_tav_folder, load_pipeline_parts

        if is_tav_folder(path):  # its own components + the 2-D part of its UNet3D
            return load_pipeline_parts(path, dtype)
        if not (path / "model_index.json").is_file():
            raise ModelNotFoundError(f"{path} is not a diffusers model folder (no "
                                     "model_index.json).")
        try:
            return StableDiffusionPipeline.from_pretrained(str(path), **kw)
        except Exception as e:
            raise ModelNotFoundError(f"Could not load the model folder {path}: {_short(e)}") from None
    if "/" not in model or model.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"Model {model!r} is neither an existing path nor a hub id "
                                 "(owner/name).")
    try:  # local Hub cache first: works offline once downloaded
        return StableDiffusionPipeline.from_pretrained(model, local_files_only=True, **kw)
    except Exception:
        pass
    from .hub_access import hub_online

    if not hub_online():  # at once, not after the client's retries
        raise ModelNotFoundError(
            f"{model!r} is not in the local Hugging Face cache and the Hub cannot be reached "
            f"(no network, or HF_HUB_OFFLINE is set). Download it where there is network "
            f"(`hf download {model} --local-dir DIR`) and pass --model DIR, or run without "
            "--model to use the embedded demo model.")
    try:
        return StableDiffusionPipeline.from_pretrained(model, **kw)
    except Exception as e:
        raise ModelNotFoundError(
            f"Could not load {model!r} from the Hugging Face Hub ({_short(e)}). Without network, "
            f"download it elsewhere (`huggingface-cli download {model} --local-dir DIR`) and pass "
            "--model DIR, or run without --model to use the embedded demo model.") from None


def _short(e: Exception) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else type(e).__name__)[:240]


def load_base(model: Optional[str] = None, device: Optional[torch.device] = None,
              dtype: torch.dtype = torch.float32, cache: ModelCache = default_cache) -> BaseModel:
    """Load (or fetch from ``cache``) the frozen base parts on ``device`` in ``dtype``.

    The U-Net stays as loaded; tuning inflates a deep copy so cached weights are never modified.
    """
    model_id, embedded = resolve_model(model)
    device = device or torch.device("cpu")
    key = ("sd", str(Path(model_id).resolve()) if Path(model_id).exists() else model_id,
           str(device), str(dtype))

    def factory() -> BaseModel:
        pipe = _from_pipeline(model_id, dtype)
        for m in (pipe.unet, pipe.vae, pipe.text_encoder):
            m.to(device)
            m.requires_grad_(False)
            m.eval()
        return base_from_parts(model_id, pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer,
                               dict(pipe.scheduler.config), device, dtype, embedded)

    return cache.get(key, factory)


def base_from_parts(model_id: str, unet, vae, text_encoder, tokenizer, scheduler_config: dict,
                    device: torch.device, dtype: torch.dtype,
                    is_embedded: bool = False) -> BaseModel:
    """A BaseModel over parts already loaded (they are used as they are), fingerprinted."""
    return BaseModel(model_id=model_id, unet=unet, vae=vae, text_encoder=text_encoder,
                     tokenizer=tokenizer, scheduler_config=scheduler_config,
                     fingerprint=_fingerprint(model_id, unet, vae, text_encoder),
                     legacy_fingerprints=(_fingerprint(model_id, unet, vae, text_encoder,
                                                       legacy=True),),
                     signature=signature(unet, vae, text_encoder),
                     is_embedded=is_embedded, device=device, dtype=dtype)
