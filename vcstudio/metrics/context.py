"""Everything metrics share about one video, computed once and grown frame by frame.

CLIP/DINO embeddings, text and conditioning-image embeddings and optical flows are computed
lazily on first use, only for frames not seen before, so batch evaluation and the streaming
evaluator (frames arriving one at a time) run the same code. Per-pair/per-frame values a metric
derives from them can be memoised with :meth:`VideoContext.memo_each`.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from ..errors import ModelNotFoundError
from ..models.cache import ModelCache, default_cache
from .flow import FlowCache


class VideoContext:
    def __init__(self, frames=None, *, prompt: Optional[str] = None,
                 source: Optional[np.ndarray] = None, image: Optional[np.ndarray] = None,
                 clip=None, dino=None, flow_method: str = "dis", warp_flow: str = "generated",
                 device=None, cache: ModelCache = default_cache,
                 lpips_weights=None, lpips_alexnet=None) -> None:
        """``clip``/``dino``: an encoder object, a model spec string, or None for the defaults
        (open_clip ViT-B-32/openai, falling back to the embedded toy CLIP offline; DINO
        facebook/dino-vitb16). ``warp_flow``: "generated" or "source" (needs ``source``)."""
        from ..device import pick_device

        if warp_flow not in ("generated", "source"):
            raise ValueError("warp_flow must be 'generated' or 'source'")
        self.prompt = prompt
        self.source = None if source is None else np.asarray(source)
        self.image = None if image is None else np.asarray(image)
        self.flow_method = flow_method
        self.warp_flow = warp_flow
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.cache = cache
        self.lpips_weights = lpips_weights
        self.lpips_alexnet = lpips_alexnet
        self._clip_arg, self._dino_arg = clip, dino
        self._encoders: dict[str, object] = {}
        self._frames: list[np.ndarray] = []
        self._array: Optional[np.ndarray] = None
        self._emb: dict[str, list[torch.Tensor]] = {"clip": [], "dino": []}
        self._flows: dict[str, FlowCache] = {}
        self._memo: dict[str, list] = {}
        self._const: dict[str, object] = {}
        for f in (frames if frames is not None else []):
            self.append(f)

    # --- frames ---------------------------------------------------------------------------
    def append(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        if self._frames and frame.shape != self._frames[0].shape:
            raise ValueError("all frames of a video must have the same size")
        self._frames.append(frame)
        self._array = None

    @property
    def n(self) -> int:
        return len(self._frames)

    @property
    def frames(self) -> np.ndarray:
        if self._array is None or len(self._array) != self.n:
            self._array = np.stack(self._frames) if self._frames else np.zeros((0, 1, 1, 3), np.uint8)
        return self._array

    # --- models -----------------------------------------------------------------------------
    def _encoder(self, kind: str):
        """Load once; a failure is remembered so every metric reports the same reason."""
        if kind not in self._encoders:
            arg = self._clip_arg if kind == "clip" else self._dino_arg
            try:
                if arg is not None and not isinstance(arg, str):
                    enc = arg
                elif kind == "clip":
                    from ..models.clip import load_default_clip_encoder

                    enc = load_default_clip_encoder(self.device, self.cache, spec=arg)
                else:
                    from ..models.dino import DEFAULT_DINO, load_dino_encoder

                    enc = load_dino_encoder(arg or DEFAULT_DINO, self.device, self.cache)
            except ModelNotFoundError as e:
                enc = e
            self._encoders[kind] = enc
        enc = self._encoders[kind]
        if isinstance(enc, ModelNotFoundError):
            raise enc
        return enc

    def clip_encoder(self):
        return self._encoder("clip")

    def dino_encoder(self):
        return self._encoder("dino")

    def embeddings(self, kind: str) -> torch.Tensor:
        """(n, D) L2-normalised CPU embeddings of all frames so far ("clip" or "dino")."""
        done = self._emb[kind]
        have = sum(len(e) for e in done)
        if have < self.n:
            done.append(self._encoder(kind).encode_images(self.frames[have:]).cpu())
        return torch.cat(done) if done else torch.zeros(0, 1)

    def text_embedding(self) -> torch.Tensor:
        if "text" not in self._const:
            self._const["text"] = self.clip_encoder().encode_text([self.prompt])[0].cpu()
        return self._const["text"]

    def image_embedding(self, kind: str) -> torch.Tensor:
        key = f"image_{kind}"
        if key not in self._const:
            self._const[key] = self._encoder(kind).encode_images(self.image[None])[0].cpu()
        return self._const[key]

    # --- flows ------------------------------------------------------------------------------
    def flows(self, which: str = "generated") -> FlowCache:
        """Forward/backward flows of the generated video or of the (matched) source, synced to
        the frames seen so far."""
        fc = self._flows.get(which)
        if fc is None:
            fc = self._flows[which] = FlowCache(None, self.flow_method, which)
        target = self.frames if which == "generated" else self.matched_source()
        for t in range(len(fc), len(target)):
            fc.append(target[t])
        return fc

    def matched_source(self) -> np.ndarray:
        from .recon import match_source

        return match_source(self.frames, self.source)

    # --- memo ---------------------------------------------------------------------------------
    def memo_each(self, key: str, count: int, fn: Callable[[int], float]) -> list[float]:
        """``[fn(0), ..., fn(count-1)]``, computing only indices not computed before."""
        vals = self._memo.setdefault(key, [])
        for i in range(len(vals), count):
            vals.append(float(fn(i)))
        return list(vals[:count])
