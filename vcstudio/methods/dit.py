"""DCT's and APLA's terms on a flow-matching video DiT (Wan2.1): what carries over, through the
predicted x0 and the velocity.

* DCT's consistency losses (DCT paper eqs. 7-11) need a gradient path from the model's output
  to decoded frames. On a flow model x0 = x_s - s v (``backbone.x0``); the frames are decoded
  through the causal Wan VAE for a random subset of pixel frames (exact: the prefix up to the
  last one, ``backbone.decode``), then CLIP / VGG features against the real frames' and the
  frequency-domain loss, as :class:`~vcstudio.methods.dct.DCTMethod` computes them (its feature
  nets, frame picker and CLWS are reused, not rewritten).
* CLWS (eqs. 8, 9, 11) schedules over the noise level: the timestep schedules read
  ``t / (T - 1)`` as "1 = noisiest"; a flow model's sigma in [0, 1] is that share directly, so
  :func:`clws_weights` passes t = sigma (T - 1). The spectral schedules read features only.
* APLA's VGT (eq. 4: its output is added to the U-Net's noise prediction) is added to the
  velocity instead (:func:`vgt_velocity`), fed the noisy latents and the timestep 1000 s the
  transformer sees; it still starts at exactly zero, so a fresh VGT changes nothing. Its
  hyper-loss and discriminator act on the prediction vs its target, here v vs eps - x0.
* The MS-Adapter (eq. 5) is a multi-scale bottleneck on a U-Net's convolutional feature maps;
  a DiT has a single-scale token sequence and no such maps, so on Wan it is OFF: LoRA on the
  attention is the trainable set. (A token-space adapter would be a new method, not DCT's.)
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .clws import CLWS
from .freq_loss import feature_loss

MS_ADAPTER_ON_DIT = ("off: the MS-Adapter adapts a U-Net's multi-scale convolutional maps; a "
                     "DiT has none, so Wan tunes LoRA on its attention instead")


def sigma_as_timestep(sigma: float, num_train_timesteps: int = 1000) -> float:
    """The DDPM-scale timestep whose noise share ``t / (T - 1)`` is ``sigma``."""
    return float(sigma) * (num_train_timesteps - 1)


def clws_weights(clws: CLWS, step: int, sigma: float, features=None,
                 num_train_timesteps: int = 1000) -> tuple[float, float]:
    """(w_sem, w_tex) of a CLWS at flow noise level ``sigma`` (eq. 11's alpha)."""
    return clws.weights(step, sigma_as_timestep(sigma, num_train_timesteps), features)


def predicted_frames(backbone, x_s: torch.Tensor, sigma, v: torch.Tensor,
                     frames: Sequence[int]) -> torch.Tensor:
    """The predicted x0 = x_s - s v decoded for 0-based pixel ``frames`` -> (K, 3, H, W) in
    [0, 1], on the autograd graph (DCT's gradient path)."""
    return backbone.decode(backbone.x0(x_s, sigma, v), list(frames))


def dct_consistency(method, backbone, x_s: torch.Tensor, sigma, v: torch.Tensor,
                    real: torch.Tensor, step: int = 0,
                    decode_size: Optional[int] = None) -> tuple[torch.Tensor, dict]:
    """DCT's L_consistency (eq. 11) for a flow DiT: ``method`` a DCTMethod (its CLIP / VGG
    nets, frame picker and CLWS), ``real`` the clip's frames (F, 3, H, W) in [0, 1]. Returns
    (w_sem L_sem + w_tex L_tex, logs); the weight ``lam`` is the caller's (as in DCTMethod)."""
    method.load_feature_nets()
    idx = method.pick_frames(real.shape[0])
    pred = predicted_frames(backbone, x_s, sigma, v, idx)
    target = real[idx].to(pred)
    if decode_size and decode_size < min(pred.shape[-2:]):  # both at the reduced size
        k = decode_size / min(pred.shape[-2:])
        size = (max(1, round(pred.shape[-2] * k)), max(1, round(pred.shape[-1] * k)))
        pred = F.interpolate(pred, size=size, mode="bilinear", antialias=True,
                             align_corners=False)
        target = F.interpolate(target, size=size, mode="bilinear", antialias=True,
                               align_corners=False)
    pf = method.features(pred)
    with torch.no_grad():
        tf = method.features(target.clamp(0, 1))
    l_sem = feature_loss(pf["sem"], tf["sem"], method.d.phase_weight) if "sem" in pf else None
    l_tex = feature_loss(pf["tex"], tf["tex"], method.d.phase_weight) if "tex" in pf else None
    if l_sem is not None and l_tex is not None:
        w_sem, w_tex = clws_weights(method.clws, step, float(sigma),
                                    {k: [m.detach() for m in maps] for k, maps in pf.items()})
        loss = w_sem * l_sem + w_tex * l_tex
    else:
        w_sem = 1.0 if l_sem is not None else 0.0
        loss = l_sem if l_sem is not None else l_tex
    logs = {"alpha": float(w_sem), "l_cons": float(loss.detach()), "frames": list(idx)}
    return loss, logs


def vgt_velocity(vgt: torch.nn.Module, x_s: torch.Tensor, sigma, v: torch.Tensor,
                 num_train_timesteps: int = 1000) -> torch.Tensor:
    """APLA eq. 4 on a flow model: v + VGT(x_s, t) with t = 1000 s, the transformer's timestep."""
    t = torch.as_tensor(sigma, dtype=torch.float32, device=x_s.device).reshape(-1)
    return v + vgt(x_s.float(), t * num_train_timesteps).to(v)


__all__ = ["MS_ADAPTER_ON_DIT", "clws_weights", "dct_consistency", "predicted_frames",
           "sigma_as_timestep", "vgt_velocity"]
