"""One loader for CLIP image/text embeddings (metrics and DCT's semantic loss share it).

Model specs (``load_clip_encoder(spec)``):

- ``"ViT-B-32/openai"``: open_clip architecture / pretrained tag (downloads once, then cached);
- ``"ViT-B-32:/path/weights.safetensors"`` (or ``.bin``/``.pt``): open_clip architecture with a
  local checkpoint (safetensors, or a torch file read with ``weights_only=True``);
- ``"ViT-B-32/random"``: random weights (tests, benchmarks; numbers then mean nothing);
- a local folder holding a transformers ``CLIPModel`` (``config.json`` + weights + tokenizer),
  e.g. the embedded default's toy CLIP in ``assets/toy-clip``;
- ``"hf:openai/clip-vit-base-patch32"``: a transformers CLIP by hub id.

Every encoder carries ``name`` (which model made the number) and the preprocessing its model
expects, done with torch ops so ``encode_images(..., differentiable=True)`` passes gradients.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..errors import ModelNotFoundError
from .cache import ModelCache, default_cache
from .hub_access import hub_file_cached, hub_online
from .preprocess import OPENAI_MEAN, OPENAI_STD, ImagePreprocess, frames_to_unit

DEFAULT_CLIP = "ViT-B-32/openai"
TOY_CLIP_NAME = "toy-clip (offline demo)"


def toy_clip_dir() -> Path:
    """Where the embedded default model's toy CLIP folder lives (may not exist)."""
    return Path(__file__).resolve().parents[2] / "assets" / "toy-clip"


class ClipEncoder:
    """CLIP image and text towers behind one interface; embeddings are L2-normalised float32."""

    def __init__(self, model: torch.nn.Module, kind: str, tokenizer, preprocess: ImagePreprocess,
                 name: str, device: torch.device, dtype: torch.dtype = torch.float32,
                 batch_size: int = 32) -> None:
        self.model = model.eval().requires_grad_(False)
        self.kind = kind  # "open_clip" | "hf"
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.name = name
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"ClipEncoder({self.name!r}, device={self.device}, dtype={self.dtype})"

    def _autocast(self):
        if self.device.type == "cuda" and self.dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.dtype)
        return contextlib.nullcontext()

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.kind == "open_clip":
            return self.model.encode_image(pixels)
        out = self.model.get_image_features(pixel_values=pixels)
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def encode_images(self, images, differentiable: bool = False,
                      normalize: bool = True) -> torch.Tensor:
        """uint8 (N, H, W, 3) frames or float (N, 3, H, W) in [0, 1] -> (N, D) embeddings.

        ``differentiable=True`` keeps the graph back to a float input (DCT's semantic loss);
        otherwise runs under no_grad in batches.
        """
        x = frames_to_unit(images, self.device)
        grad = torch.enable_grad() if differentiable else torch.no_grad()
        outs = []
        step = x.shape[0] if differentiable else self.batch_size
        with grad, self._autocast():
            for i in range(0, x.shape[0], step):
                feats = self._image_features(self.preprocess(x[i:i + step]))
                outs.append(feats.float())
        feats = torch.cat(outs)
        return torch.nn.functional.normalize(feats, dim=-1) if normalize else feats

    def image_tokens(self, images) -> torch.Tensor:
        """Patch-token grid of the image tower before pooling, differentiable w.r.t. the input.

        uint8 (N, H, W, 3) or float (N, 3, H, W) in [0, 1] -> float32 (N, D, g, g): the last
        transformer block's patch tokens (class token dropped) after the tower's final
        LayerNorm (open_clip ``ln_post`` / transformers ``post_layernorm``), laid out on the
        patch grid. Used by DCT's semantic consistency loss (the DFT of this grid).
        """
        x = self.preprocess(frames_to_unit(images, self.device))
        with self._autocast():
            if self.kind == "open_clip":
                visual = self.model.visual
                if not hasattr(visual, "forward_intermediates") or not hasattr(visual, "ln_post"):
                    raise ModelNotFoundError(
                        f"{self.name} has no ViT patch tokens; DCT's semantic loss needs an "
                        "open_clip ViT (e.g. ViT-B-32).")
                out = visual.forward_intermediates(x.to(self.dtype), indices=1,
                                                   normalize_intermediates=True,
                                                   intermediates_only=True, output_fmt="NCHW")
                grid = out["image_intermediates"][-1]
            else:
                vm = self.model.vision_model
                h = vm(pixel_values=x.to(self.dtype)).last_hidden_state[:, 1:]
                h = vm.post_layernorm(h)
                g = int(round(h.shape[1] ** 0.5))
                grid = h.reshape(h.shape[0], g, g, -1).permute(0, 3, 1, 2)
        return grid.float()

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """list of prompts -> (N, D) embeddings."""
        texts = list(texts)
        with self._autocast():
            if self.kind == "open_clip":
                tokens = self.tokenizer(texts).to(self.device)
                feats = self.model.encode_text(tokens)
            else:
                enc = self.tokenizer(texts, padding="max_length", truncation=True,
                                     max_length=self.tokenizer.model_max_length,
                                     return_tensors="pt").to(self.device)
                out = self.model.get_text_features(input_ids=enc["input_ids"],
                                                   attention_mask=enc["attention_mask"])
                feats = out if isinstance(out, torch.Tensor) else out.pooler_output
        feats = feats.float()
        return torch.nn.functional.normalize(feats, dim=-1) if normalize else feats


def _frozen_dtype(device: torch.device) -> torch.dtype:
    # DESIGN: frozen feature nets run in low precision on the GPU, fp32 on the CPU
    from ..device import precision_for

    return precision_for(device).frozen_dtype


def parse_clip_spec(spec: str) -> tuple[str, str, Optional[str]]:
    """-> (kind, model, weights): kind is "hf_folder", "hf_hub", "open_clip_file", "open_clip"."""
    if spec.startswith("hf:"):
        return "hf_hub", spec[3:], None
    p = Path(spec).expanduser()
    if p.is_dir() or spec.startswith(("/", "./", "../", "~")) and not p.suffix:
        return "hf_folder", str(p), None
    if ":" in spec:
        arch, weights = spec.split(":", 1)
        return "open_clip_file", arch, weights
    if "/" in spec:
        arch, tag = spec.split("/", 1)
        return "open_clip", arch, (None if tag in ("random", "none", "") else tag)
    return "open_clip", spec, "openai"


def load_clip_encoder(spec: str = DEFAULT_CLIP, device=None, cache: ModelCache = default_cache,
                      dtype: Optional[torch.dtype] = None) -> ClipEncoder:
    """Load (once, through ``cache``) the CLIP named by ``spec``; see the module docstring.

    Raises :class:`ModelNotFoundError` naming the model and how to provide it locally.
    """
    from ..device import pick_device

    device = pick_device(device) if not isinstance(device, torch.device) else device
    dtype = dtype or _frozen_dtype(device)
    key = ("clip", spec, str(device), str(dtype))
    return cache.get(key, lambda: _build(spec, device, dtype))


def _build(spec: str, device: torch.device, dtype: torch.dtype) -> ClipEncoder:
    kind, model, weights = parse_clip_spec(spec)
    if kind in ("hf_folder", "hf_hub"):
        enc = _build_hf(model, kind == "hf_hub", device, dtype)
    else:
        enc = _build_open_clip(model, weights, kind == "open_clip_file", device, dtype)
    return enc


def _missing(what: str, why: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"CLIP model {what} is not available here ({why}). Download it once with network "
        "(open_clip and transformers cache it), or point --clip at local weights: an open_clip "
        "checkpoint as 'ARCH:/path/to/weights.safetensors' (e.g. 'ViT-B-32:/models/"
        "open_clip_model.safetensors') or a transformers CLIPModel folder.")


def _build_open_clip(arch: str, weights: Optional[str], local: bool, device, dtype):
    import open_clip

    if arch not in open_clip.list_models():
        raise ModelNotFoundError(f"Unknown open_clip architecture {arch!r}; use one of "
                                 f"open_clip.list_models(), e.g. 'ViT-B-32' or 'ViT-L-14'.")
    if local:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise _missing(f"{arch} from {path}", "file not found")
        model = open_clip.create_model(arch, pretrained=None)
        model.load_state_dict(_read_state_dict(path))
        name = f"open_clip {arch} ({path.name})"
    elif weights is None:
        model = open_clip.create_model(arch, pretrained=None)
        name = f"open_clip {arch} (random weights)"
    else:
        pcfg = open_clip.get_pretrained_cfg(arch, weights) or {}
        cached = _cached_weights(pcfg)
        if cached is None and not hub_online():
            # fail in seconds instead of minutes of hub retries
            raise _missing(f"{arch}/{weights}", "not in the local cache and no network")
        try:
            model = open_clip.create_model(arch, pretrained=cached or weights,
                                           force_quick_gelu=bool(pcfg.get("quick_gelu", False)))
        except Exception as e:  # hub errors come in many types; all mean "not here"
            raise _missing(f"{arch}/{weights}", f"{type(e).__name__}: {str(e)[:160]}") from None
        name = f"open_clip {arch}/{weights}"
    cfg = dict(open_clip.get_model_preprocess_cfg(model))
    if not local and weights is not None:  # the tag's own normalisation, when it has one
        pcfg = open_clip.get_pretrained_cfg(arch, weights) or {}
        cfg.update({k: pcfg[k] for k in ("mean", "std", "interpolation") if k in pcfg})
    size = cfg.get("size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    pre = ImagePreprocess(size=size, crop=size, mean=tuple(cfg.get("mean", OPENAI_MEAN)),
                          std=tuple(cfg.get("std", OPENAI_STD)),
                          interpolation=cfg.get("interpolation", "bicubic"))
    model = model.to(device=device, dtype=dtype)
    return ClipEncoder(model, "open_clip", open_clip.get_tokenizer(arch), pre, name, device, dtype)


def _cached_weights(pretrained_cfg: dict) -> Optional[str]:
    """The hub file open_clip would download for this tag, if it is already in the HF cache."""
    hub = pretrained_cfg.get("hf_hub", "")
    if not hub:
        return None
    from huggingface_hub import try_to_load_from_cache

    model_id, filename = hub.rstrip("/"), "open_clip_pytorch_model.bin"
    if not hub.endswith("/"):
        model_id, filename = hub.rsplit("/", 1)
    for fn in (filename.rsplit(".", 1)[0] + ".safetensors", filename):
        found = try_to_load_from_cache(model_id, fn)
        if isinstance(found, str):
            return found
    return None


def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:  # DESIGN: never unpickle arbitrary objects
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and "state_dict" in sd:
            sd = sd["state_dict"]
    return {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}


def _build_hf(folder_or_id: str, hub: bool, device, dtype):
    from transformers import CLIPModel, CLIPTokenizer

    if not hub and not (Path(folder_or_id) / "config.json").is_file():
        raise _missing(folder_or_id, "no config.json in that folder")
    if hub and not hub_file_cached(folder_or_id) and not hub_online():
        raise _missing(folder_or_id, "not in the local cache and no network")
    try:
        model = CLIPModel.from_pretrained(folder_or_id)
        tok = CLIPTokenizer.from_pretrained(folder_or_id)
    except OSError as e:
        raise _missing(folder_or_id, str(e).splitlines()[0][:160]) from None
    size = crop = model.config.vision_config.image_size
    mean, std = OPENAI_MEAN, OPENAI_STD
    pre_cfg = Path(folder_or_id) / "preprocessor_config.json"
    if pre_cfg.is_file():  # the processor the checkpoint was trained with, when it ships one
        c = json.loads(pre_cfg.read_text())
        s = c.get("size", size)
        size = s.get("shortest_edge", size) if isinstance(s, dict) else int(s)
        cs = c.get("crop_size", crop)
        crop = cs.get("height", crop) if isinstance(cs, dict) else int(cs)
        mean = tuple(c.get("image_mean", mean))
        std = tuple(c.get("image_std", std))
    pre = ImagePreprocess(size=size, crop=crop, mean=mean, std=std, interpolation="bicubic")
    folder = Path(folder_or_id)
    name = (TOY_CLIP_NAME if not hub and folder.resolve() == toy_clip_dir().resolve()
            else f"transformers CLIP {folder.name if not hub else folder_or_id}")
    model = model.to(device=device, dtype=dtype)
    return ClipEncoder(model, "hf", tok, pre, name, device, dtype)


def load_default_clip_encoder(device=None, cache: ModelCache = default_cache,
                              spec: Optional[str] = None) -> ClipEncoder:
    """``spec`` (default open_clip ViT-B-32/openai); offline, the embedded toy CLIP instead.

    The returned encoder's ``name`` says which one answered.
    """
    try:
        return load_clip_encoder(spec or DEFAULT_CLIP, device=device, cache=cache)
    except ModelNotFoundError as first:
        toy = toy_clip_dir()
        if spec is None and (toy / "config.json").is_file():
            return load_clip_encoder(str(toy), device=device, cache=cache)
        raise first
