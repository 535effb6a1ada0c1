"""DCT's and APLA's terms on a flow-matching video DiT (Wan2.1 T2V): what carries over, through
the predicted x0 and the velocity, as tuning methods the one-shot LoRA loop drives
(pipelines/flow/tune.py; ``vcstudio tune --method dct|apla|apla+dct`` on a Wan model).

Every loss is the U-Net path's own function, called with the DiT's tensors: DCT's
:meth:`~vcstudio.methods.dct.DCTMethod.consistency` (CLIP + VGG features, eq. 10, CLWS eq. 11),
APLA's :meth:`~vcstudio.methods.apla.APLAMethod.hyper_terms` / ``adversarial_terms`` /
``step_logs`` (eq. 18, the 1x1 discriminator of eqs. 19-20); only what a DiT has in place of
a U-Net's tensors is here. The switches are the same config fields and CLI flags as on SD
(``dct.semantic`` / ``--no-semantic``, ``dct.texture``, ``dct.clws``, ``dct.lam``,
``apla.vgt`` / ``--vgt none``, ``apla.hyper_loss`` / ``--no-hyper-loss``,
``apla.discriminator`` / ``--no-discriminator``).

DCT on a DiT (DCT paper eqs. 7-11; DESIGN "Video DiTs")
--------------------------------------------------------
* Gradient path: x0 = x_s - s v (``backbone.x0``), on the autograd graph, resized to
  ``dct.decode_size`` in latent space (as on SD: the decode's cost grows with its pixels), then
  decoded by the Wan VAE.
* Which frames, how many, why: ``dct.frames_per_step`` (default 2) random LATENT frames per
  step, each decoded ON ITS OWN, as the causal VAE decodes a first frame (one pixel frame per
  latent frame, all in one batch: models/wan/latents.py ``decode_each``). The exact pixel frames
  of latent frame k need the causal prefix 0..k decoded with its graph kept, ~1.1 GiB per pixel
  frame at 368x272 in bf16: two random frames of a 49-frame 480x832 clip would keep ~33 pixel
  frames' decoder activations on average (tens of GiB, and a step's time several times over),
  where a lone frame costs one. The target is the same decode of the clip's own latent frames
  (``dct.target="decoded"``, the default, cached per frame), so the loss is zero exactly when
  x0 is predicted exactly, whatever the lone decode does to frames past the first;
  ``target="frames"`` compares with the real pixel frame 4k that latent frame k ends at.
* CLWS (eqs. 8, 9, 11) schedules over the noise level: the timestep schedules read
  ``t / (T - 1)`` as "1 = noisiest"; a flow model's sigma in [0, 1] is that share directly, so
  the DDPM-scale t = sigma (T - 1) (:func:`sigma_as_timestep`). The stepwise schedule maps the
  same way: the terms run after ``dct.warmup`` of the steps and where t < ``dct.t_max``, i.e.
  sigma < t_max / (T - 1) (0.6 by default; Wan's shifted sigma sampling, shift 3, reaches it on
  a third of the steps). The spectral schedules (Fourier, multi-scale Fourier) read features
  only. Logged per step as on SD: ``l_sem``, ``l_tex``, ``alpha``, ``l_cons``; ``cons`` is lam
  x l_cons as added to the total; ``clws_alpha.png`` at the end.
* The MS-Adapter (eq. 5) is OFF on a DiT (:data:`MS_ADAPTER_ON_DIT`): it is a multi-scale
  bottleneck on a U-Net's convolutional feature maps, and a DiT has one token sequence at one
  scale and no such maps; LoRA on the attention is the trainable set, and ``dct.adapter`` asked
  for on Wan is said in one line (the run's notes) and ignored. (A token-space adapter would be
  a new method, not DCT's.)

APLA on a DiT (APLA paper eqs. 4, 18-20)
-----------------------------------------
* The VGT's output is added to the VELOCITY prediction (eq. 4 adds it to the noise prediction):
  v' = v + VGT(x_s, 1000 s), fed the noisy latents (16 channels) and the timestep the
  transformer sees, at every training and sampling step (``backbone.perturb``); it starts at
  exactly zero, so a fresh VGT changes nothing. It trains with the LoRA (same optimiser).
* The hyper-loss (alpha MSE + beta L1 + gamma perceptual) compares v' with its target eps - x0.
* The 1x1 discriminator (one Conv3d over the 16 latent channels) tells the predicted velocity
  from the true one, eps - x0 (on SD: predicted vs true noise); the generator pays lambda L_g,
  the discriminator takes its own Adam step after the main one.
* The VGT and the discriminator are saved beside the LoRA delta as ``method.safetensors``
  (diffusers' LoRA loader knows no VGT; an edit of the run reinstalls it).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch

from .base import TuneMethod
from .clws import CLWS

MS_ADAPTER_ON_DIT = ("off: the MS-Adapter adapts a U-Net's multi-scale convolutional maps; a "
                     "DiT has none, so Wan tunes LoRA on its attention instead")
ADAPTER_NOTE = ("DCT on Wan2.1: the MS-Adapter is off (it adapts a U-Net's multi-scale "
                "convolutional maps; a DiT has none), so the LoRA on the attention carries DCT's "
                "CLIP and VGG consistency losses.")


def sigma_as_timestep(sigma: float, num_train_timesteps: int = 1000) -> float:
    """The DDPM-scale timestep whose noise share ``t / (T - 1)`` is ``sigma``."""
    return float(sigma) * (num_train_timesteps - 1)


def clws_weights(clws: CLWS, step: int, sigma: float, features=None,
                 num_train_timesteps: int = 1000) -> tuple[float, float]:
    """(w_sem, w_tex) of a CLWS at flow noise level ``sigma`` (eq. 11's alpha)."""
    return clws.weights(step, sigma_as_timestep(sigma, num_train_timesteps), features)


def predicted_frames(backbone, x_s: torch.Tensor, sigma, v: torch.Tensor,
                     frames, size: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """The predicted x0 = x_s - s v (resized in latent space to ``size``) with latent
    ``frames`` each decoded on its own -> (K, 3, H, W) in [0, 1], on the autograd graph
    (DCT's gradient path; module docstring)."""
    from .dct import resize_latents

    idx = list(frames)
    x0 = backbone.x0(x_s, sigma, v)[:, :, idx]  # only the frames decoded are resized
    if size is not None:
        x0 = resize_latents(x0, size)
    return backbone.decode_latent_frames(x0, list(range(len(idx))))


def dct_consistency(method, backbone, x_s: torch.Tensor, sigma, v: torch.Tensor,
                    real: Optional[torch.Tensor] = None, step: int = 0,
                    clip_latents: Optional[torch.Tensor] = None,
                    cache: Optional[dict] = None) -> tuple[torch.Tensor, dict]:
    """DCT's L_consistency (eq. 11) for a flow DiT: ``method`` a DCTMethod (its CLIP / VGG
    nets, frame picker, decode size, CLWS and the loss itself), ``real`` the clip's frames
    (F, 3, H, W) in [0, 1], ``clip_latents`` its normalised latents (the "decoded" target;
    without them the "frames" target). ``cache`` keeps the target features per latent frame
    (they never change). Returns (L_cons, logs); the weight ``lam`` is the caller's."""
    method.load_feature_nets()
    n_lat, h, w = x_s.shape[2], x_s.shape[3], x_s.shape[4]
    idx = method.pick_frames(n_lat)
    size = method.decoded_size(h, w, backbone.r_s)
    pred = predicted_frames(backbone, x_s, sigma, v, idx, size)
    tf = _targets(method, backbone, idx, size, tuple(pred.shape[-2:]), real, clip_latents,
                  {} if cache is None else cache)
    t = sigma_as_timestep(float(torch.as_tensor(sigma).float().mean()),
                          getattr(backbone, "num_train_timesteps", 1000))
    loss, logs = method.consistency(pred, tf, step, t)
    logs["frames"] = list(idx)
    return loss, logs


@torch.no_grad()
def _targets(method, backbone, idx: list[int], size, pixels, real, clip_latents,
             cache: dict) -> dict[str, list[torch.Tensor]]:
    """The real side's features for latent frames ``idx``: the clip's latents through the same
    lone-frame decode ("decoded"), else the real pixel frame 4k at the decoded size."""
    import torch.nn.functional as F

    from .dct import resize_latents

    decoded = method.d.target == "decoded" and clip_latents is not None
    missing = [i for i in idx if i not in cache]
    if missing:
        if decoded:
            z = resize_latents(clip_latents[:, :, missing].float(), size)
            imgs = backbone.decode_latent_frames(z, list(range(len(missing))))
        else:
            if real is None:
                raise ValueError("DCT's 'frames' target needs the clip's frames")
            r_t = getattr(backbone, "r_t", 4)
            pix = [min(i * r_t, real.shape[0] - 1) for i in missing]
            imgs = F.interpolate(real[pix].float(), size=pixels, mode="bilinear",
                                 align_corners=False, antialias=True).clamp(0, 1)
        feats = method.features(imgs.to(backbone.device))
        for j, i in enumerate(missing):
            cache[i] = {k: [m[j:j + 1] for m in v] for k, v in feats.items()}
    keys = cache[idx[0]].keys()
    return {k: [torch.cat([cache[i][k][li] for i in idx])
                for li in range(len(cache[idx[0]][k]))] for k in keys}


class VelocityVGT(torch.nn.Module):
    """APLA eq. 4 on a flow model, as a perturbation of the backbone's velocity
    (``backbone.perturb``): v + VGT(x_s, 1000 s)."""

    def __init__(self, vgt: torch.nn.Module, num_train_timesteps: int = 1000) -> None:
        super().__init__()
        self.vgt = vgt
        self.num_train_timesteps = num_train_timesteps

    def forward(self, x_s: torch.Tensor, sigma, v: torch.Tensor) -> torch.Tensor:
        return vgt_velocity(self.vgt, x_s, sigma, v, self.num_train_timesteps)


def vgt_velocity(vgt: torch.nn.Module, x_s: torch.Tensor, sigma, v: torch.Tensor,
                 num_train_timesteps: int = 1000) -> torch.Tensor:
    """APLA eq. 4 on a flow model: v + VGT(x_s, t) with t = 1000 s, the transformer's timestep."""
    t = torch.as_tensor(sigma, dtype=torch.float32, device=x_s.device).reshape(-1)
    return v + vgt(x_s.float(), t * num_train_timesteps).to(v)


def module_tensors(method) -> dict[str, torch.Tensor]:
    """The method's trained modules (``modules()``: APLA's VGT and discriminator) as one flat
    tensor dict, ``<module>.<param>`` -> CPU tensor (a checkpoint, ``method.safetensors``)."""
    return {f"{name}.{k}": v.detach().cpu().contiguous()
            for name, mod in method.modules().items() for k, v in mod.state_dict().items()}


def load_module_tensors(method, state: dict[str, torch.Tensor]) -> None:
    """Load :func:`module_tensors` back into a set-up method's modules (strict per module)."""
    for name, mod in method.modules().items():
        pre = f"{name}."
        part = {k[len(pre):]: v for k, v in state.items() if k.startswith(pre)}
        if part:
            mod.load_state_dict(part)


# ---------------------------------------------------------------------------------- methods

def _flops_of(vae_pixels: float, frames: int) -> float:
    """FLOPs of decoding ``frames`` pixel frames of ``vae_pixels`` pixels with the Wan VAE,
    forward + backward (~2x forward)."""
    from ..models.wan.estimate import VAE_DECODE_FLOPS_PER_PIXEL

    return 3 * VAE_DECODE_FLOPS_PER_PIXEL * vae_pixels * frames


# the frozen CLIP ViT-B/32 + VGG19 of DCT's losses (bf16) and a margin for their graphs
_DCT_NETS_GIB = 0.6
# VGG19 relu1_1..relu4_1 forward FLOPs per pixel (~16.5 GFLOP at 224^2 for the taps used) and
# CLIP ViT-B/32's per image (~4.4 GFLOP at 224^2); x3 with the backward through them
_VGG_FLOPS_PER_PIXEL = 16.5e9 / 224 ** 2
_CLIP_FLOPS = 4.4e9
# APLA: VGT + discriminator + the perceptual net and its graph on the velocity maps (bf16)
_APLA_GIB = 0.4


class DCTOnDiT(TuneMethod):
    """DCT's CLIP semantic + VGG texture consistency losses with CLWS on a flow DiT (module
    docstring); the MS-Adapter is off."""

    name = "dct"
    sections = ("dct",)

    def __init__(self, cfg) -> None:
        from .dct import DCTMethod

        super().__init__(cfg)
        self.asked_adapter = bool(cfg.dct.adapter)
        # the U-Net method's own instance, adapter off: its nets, frame picker, CLWS, losses
        self.dct = DCTMethod(dataclasses.replace(cfg, dct=dataclasses.replace(cfg.dct,
                                                                                adapter=False)))
        self.plotted = self.dct.plotted
        self.backbone = None
        self._cache: dict = {}
        self._logs: dict = {}

    @classmethod
    def flow_cost(cls, cfg, frames: int, height: int, width: int) -> tuple[float, float]:
        """(extra FLOPs per step, extra GiB) of DCT's terms at this clip shape: the lone-frame
        decodes of ``frames_per_step`` latent frames at the decode size with their backward and
        kept activations (models/wan/estimate.py's VAE figures), CLIP + VGG on them."""
        from ..models.wan.estimate import VAE_GRAD_BYTES_PER_PIXEL

        d = cfg.dct
        if not (d.semantic or d.texture) or d.lam == 0:
            return 0.0, 0.0
        n_lat = (frames - 1) // 4 + 1
        k = min(d.frames_per_step or n_lat, n_lat)
        side = min(height, width)
        f = min(1.0, d.decode_size / side) if d.decode_size else 1.0
        px = height * width * f * f
        flops = _flops_of(px, k)
        if d.texture:
            flops += 3 * _VGG_FLOPS_PER_PIXEL * px * k
        if d.semantic:
            flops += 3 * _CLIP_FLOPS * k
        # the terms run on a share of the steps only (warm-up, sigma < t_max): the time is
        # for a step that has them (the estimate's worst case, as the bench's every-step rows)
        gib = _DCT_NETS_GIB + k * px * VAE_GRAD_BYTES_PER_PIXEL / 2**30
        return flops, gib

    def notes(self) -> list[str]:
        return [ADAPTER_NOTE] if self.asked_adapter else []

    def setup(self, model, base, device: torch.device) -> None:
        """``model`` is the flow backbone (models/wan/t2v.py)."""
        self.backbone = model
        self.dct.device = device

    def summary(self) -> dict[str, Any]:
        out = self.dct.summary()
        out["adapter"] = MS_ADAPTER_ON_DIT if self.asked_adapter else False
        out["decode"] = "each latent frame on its own (one pixel frame each)"
        return out

    def extra_losses(self, s) -> dict[str, torch.Tensor]:
        """``s`` a pipelines/flow/tune.py FlowStep (``step`` 1-based)."""
        self._logs = {}
        bb, d = self.backbone, self.dct.d
        t = sigma_as_timestep(float(s.sigma.float().mean()), bb.num_train_timesteps)
        if not self.dct.warm(s.step - 1, s.total) or t >= d.t_max:
            return {}
        loss, logs = dct_consistency(self.dct, bb, s.noisy, s.sigma, s.velocity, s.frames,
                                     s.step - 1, s.latents, self._cache)
        logs.pop("frames")
        self._logs = logs
        return {"cons": d.lam * loss}

    def after_step(self, s) -> dict[str, float]:
        logs, self._logs = self._logs, {}
        return logs

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.dct.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.dct.load_state_dict(state)

    def finish(self, run_dir, losses: list[dict]) -> None:
        self.dct.finish(run_dir, losses)


class APLAOnDiT(TuneMethod):
    """APLA's VGT on the velocity, hyper-loss and 1x1 discriminator on a flow DiT (module
    docstring)."""

    name = "apla"
    sections = ("apla",)

    def __init__(self, cfg) -> None:
        from .apla import APLAMethod

        super().__init__(cfg)
        self.apla = APLAMethod(cfg)
        self.plotted = self.apla.plotted
        self.replaces_denoise_loss = self.apla.replaces_denoise_loss

    @classmethod
    def flow_cost(cls, cfg, frames: int, height: int, width: int) -> tuple[float, float]:
        """(extra FLOPs per step, extra GiB): the VGT is small next to the transformer (a few
        % of a step at its default width); counted as its parameters x tokens x 6."""
        from .apla import vgt_from_config

        a = cfg.apla
        flops = 0.0
        if a.vgt != "none":
            with torch.device("meta"):  # its size without building its weights
                n = vgt_from_config(a, 16).param_count()
            tokens = ((frames - 1) // 4 + 1) * (height // 8) * (width // 8) / (a.vgt_patch ** 2)
            flops = 6.0 * n * tokens
        return flops, _APLA_GIB

    def setup(self, model, base, device: torch.device) -> None:
        """``model`` is the flow backbone: the VGT joins its velocity (``perturb``)."""
        a = self.apla
        a.build(model.denoiser.config.out_channels, device)
        if a.vgt is not None:
            a.vgt.to(device)
            model.perturb["vgt"] = VelocityVGT(a.vgt, model.num_train_timesteps)
        if a.adv is not None:
            a.adv.disc.to(device)

    def trainables(self) -> list[torch.nn.Parameter]:
        return list(self.apla.vgt.parameters()) if self.apla.vgt is not None else []

    def modules(self) -> dict[str, torch.nn.Module]:
        out = {}
        if self.apla.vgt is not None:
            out["vgt"] = self.apla.vgt
        if self.apla.adv is not None:
            out["discriminator"] = self.apla.adv.disc
        return out

    def summary(self) -> dict[str, Any]:
        return {**self.apla.summary(), "vgt_on": "velocity (v + VGT(x_s, 1000 s))",
                "discriminator_on": "predicted vs true velocity (eps - x0)"}

    def denoise_loss(self, s) -> torch.Tensor:
        return self.apla.hyper_terms(s.pred, s.target)

    def extra_losses(self, s) -> dict[str, torch.Tensor]:
        return self.apla.adversarial_terms(s.pred)

    def after_step(self, s) -> dict[str, float]:
        return self.apla.step_logs(s.target, s.pred.detach(), s.pred)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.apla.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.apla.load_state_dict(state)


__all__ = ["ADAPTER_NOTE", "APLAOnDiT", "DCTOnDiT", "MS_ADAPTER_ON_DIT", "VelocityVGT",
           "clws_weights", "dct_consistency", "load_module_tensors", "module_tensors",
           "predicted_frames", "sigma_as_timestep", "vgt_velocity"]
