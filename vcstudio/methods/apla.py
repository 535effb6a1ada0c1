"""APLA as a tuning method (APLA paper): VGT perturbation + hyper-loss + 1x1 adversarial training.

Parts, each switchable (``APLAConfig``; Table 3's ablations are :data:`TABLE3`):

* ``vgt`` pure | hyper | none: a VGT installed as ``model.perturb["vgt"]``, its output added to
  the U-Net's noise prediction (eq. 4) at every training AND sampling step; it starts at zero;
* ``hyper_loss``: the denoising loss becomes alpha MSE + beta L1 + gamma perceptual (eq. 18);
  off: Tune-A-Video's MSE (eq. 6);
* ``discriminator``: a 1x1 convolution as ``model.aux["discriminator"]`` (saved in the delta,
  not in the forward pass); the generator pays lambda * L_g (eq. 20) and the discriminator takes
  its own Adam step after the main one (alternate updates).

The optimisation objective is min_theta (L_hyper + lambda L_g) + max_D L_g (eq. 20).

Every part lives in its own module and exposes plain calls (``vgt_from_config``, ``HyperLoss``,
``AdversarialTrainer``), so another method (e.g. DCT with a VGT, or DCT's consistency losses on
top of APLA's hyper-loss) can reuse them without inheriting from this class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..models.diffusion_math import x0_and_eps
from ..models.vgt import VGT_PRESETS, VideoGenerationTransformer, build_vgt
from ..settings import setting
from .base import TOTAL, Cost, Plotted, Preset, StepState, TuneMethod
from .discriminator import AdversarialTrainer, NoiseDiscriminator
from .hyper_loss import HyperLoss, perceptual_encoder

VGT_KINDS = ("pure", "hyper", "none")  # VGT-Pure, VGT-Hyper (Table 1), no VGT


@dataclass
class APLAConfig:
    """APLA switches (APLA paper, Table 3 ablations)."""

    vgt: str = setting("pure", choices=VGT_KINDS, flag="--vgt", label="VGT",
                       help="the video generation transformer added to the noise prediction "
                       "(eq. 4): Pure, Hyper or none")
    discriminator: bool = setting(True, flag="--no-discriminator", label="Discriminator",
                                  help="the 1x1 discriminator's adversarial loss (eq. 20)")
    hyper_loss: bool = setting(True, flag="--no-hyper-loss", label="Hyper-loss",
                               help="alpha MSE + beta L1 + gamma perceptual (eq. 18); off: MSE")
    alpha: float = 1.0  # MSE weight (eq. 18)
    beta: float = 0.5  # L1 weight
    gamma: float = 0.1  # perceptual weight
    lam: float = 0.05  # adversarial weight lambda (eq. 20)
    # "" = the vgt_* sizes below; "small" or "paper" (D 768, 4+4 layers, 60.5M Pure / 97.1M
    # Hyper) replace vgt_dim, vgt_layers, vgt_temporal_layers, vgt_heads and vgt_patch
    vgt_preset: str = setting("", choices=("",) + tuple(VGT_PRESETS), flag="--vgt-preset",
                              help="VGT size: paper = D 768, 4+4 layers (60.5M Pure, 97.1M "
                              "Hyper)", panel=False)
    vgt_dim: int = 256
    vgt_layers: int = 2  # spatial decoder layers (L)
    vgt_temporal_layers: int = 2  # temporal decoder layers (M)
    vgt_heads: int = 4
    vgt_patch: int = 2
    vgt_mlp_ratio: float = 4.0
    vgt_mask: bool = True  # False = the paper's "-EN" encoder variant (no attention masks)
    perceptual: str = "auto"  # auto (vgg19 if its weights are at hand, else efficientnet-lite0)
    perceptual_layers: tuple[str, ...] = ()  # () = the encoder's first three taps
    perceptual_random_weights: bool = False  # benchmarks only: speed does not depend on weights
    disc_lr: float = 1e-4
    disc_betas: tuple[float, float] = (0.5, 0.999)



# Table 3's rows -> (vgt, discriminator, hyper_loss); VGT-Pure is what the paper ran.
TABLE3 = {
    "full": ("pure", True, True),
    "w/o discriminator": ("pure", False, True),
    "w/o VGT & discriminator": ("none", False, True),
    "w/o hyper-loss & discriminator": ("pure", False, False),
    "w/o VGT & hyper-loss": ("none", True, False),
}
_PRESET_IDS = {"full": "apla", "w/o discriminator": "apla-no-disc",
               "w/o VGT & discriminator": "apla-no-vgt-disc",
               "w/o hyper-loss & discriminator": "apla-no-hyper-disc",
               "w/o VGT & hyper-loss": "apla-no-vgt-hyper"}
_PRESET_LABELS = {"full": "APLA full (VGT-Pure)", "w/o discriminator": "APLA, no discriminator"}


def _presets() -> tuple[Preset, ...]:
    """Table 3's rows (VGT-Pure, as the paper ran them), then the full method with VGT-Hyper."""
    out = [Preset(_PRESET_IDS[row], _PRESET_LABELS.get(row, f"APLA {row}"),
                  {"method": "apla", "apla.vgt": vgt, "apla.discriminator": disc,
                   "apla.hyper_loss": hyper})
           for row, (vgt, disc, hyper) in TABLE3.items()]
    out.append(Preset("apla-hyper", "APLA full (VGT-Hyper)", {"method": "apla",
                                                              "apla.vgt": "hyper"}))
    # sec. 5: "train the models for 750 steps and 1500 steps" (Table 3's long columns)
    out.append(Preset("apla-1500", "APLA full, 1500 steps (long setting)",
                      {"method": "apla", "steps": APLA_LONG_STEPS}))
    return tuple(out)


APLA_STEPS = 750  # APLA paper sec. 5 / Table 3 "750 epochs (default)"
APLA_LONG_STEPS = 1500  # its long setting


# Memory/time of APLA's parts at SD-1.x scale (VGT + discriminator + perceptual net; rough)
_GIB = 0.4
_TIME_FACTOR = 1.2


def vgt_from_config(acfg: APLAConfig, channels: int) -> VideoGenerationTransformer:
    """A preset, if named, fixes the sizes; otherwise the vgt_* fields do."""
    if acfg.vgt not in ("pure", "hyper"):
        raise InputError(f"Unknown VGT variant {acfg.vgt!r}; choose pure, hyper or none.")
    sizes = {} if acfg.vgt_preset else dict(
        dim=acfg.vgt_dim, spatial_layers=acfg.vgt_layers, temporal_layers=acfg.vgt_temporal_layers,
        heads=acfg.vgt_heads, patch=acfg.vgt_patch)
    try:
        return build_vgt(acfg.vgt, channels, acfg.vgt_preset, mlp_ratio=acfg.vgt_mlp_ratio,
                         mask=acfg.vgt_mask, **sizes)
    except ValueError as e:
        raise InputError(f"Bad VGT settings: {e}.") from None


def predicted_noise(s: StepState, detach: bool = False) -> torch.Tensor:
    """eps_hat from the model output (= the output for an epsilon model; derived for v)."""
    pred = s.pred.detach() if detach else s.pred
    return x0_and_eps(pred, s.noisy, s.alpha_bar, s.prediction_type)[1]


def vgt_ratio(vgt_out: torch.Tensor | None, pred: torch.Tensor) -> float | None:
    """||VGT output|| / ||U-Net prediction|| (the paper's Fig. 5b), from the VGT's output and
    the summed prediction eps_unet + VGT (eq. 4)."""
    if vgt_out is None:
        return None
    with torch.no_grad():
        unet = (pred.float() - vgt_out.float()).norm().clamp_min(1e-12)
        return float(vgt_out.float().norm() / unet)


class APLAMethod(TuneMethod):
    name = "apla"
    sections = ("apla",)
    config = APLAConfig
    switches = ("vgt", "discriminator", "hyper_loss", "vgt_preset")
    replaces_denoise_loss = True  # the hyper-loss (eq. 18); an instance without it keeps MSE
    presets = _presets()
    # the paper tunes 750 steps (Tune-A-Video / DCT: 500); `vcstudio tune --method apla` without
    # --steps uses it. Compare presets keep the comparison's own step count (a fair comparison
    # at equal steps), except apla-1500.
    paper_defaults = {"steps": APLA_STEPS}
    # "loss" is the hyper-loss alpha MSE + beta L1 + gamma perceptual (eq. 18) when it is on
    plotted = (TOTAL,
               Plotted("mse", "APLA hyper-loss parts (unweighted)", "MSE"),
               Plotted("l1", "APLA hyper-loss parts (unweighted)", "L1"),
               Plotted("perceptual", "APLA hyper-loss parts (unweighted)", "perceptual"),
               Plotted("adv_g", "APLA adversarial losses", "adv_g: generator (x lambda)"),
               Plotted("disc_loss", "APLA adversarial losses", "disc_loss: discriminator"),
               Plotted("disc_acc", "APLA ratios: discriminator accuracy, |VGT| / |U-Net|",
                       "disc_acc"),
               Plotted("vgt_ratio", "APLA ratios: discriminator accuracy, |VGT| / |U-Net|",
                       "|VGT| / |U-Net| (Fig. 5b)"))

    @classmethod
    def cost(cls, cfg) -> Cost:
        return Cost(_GIB, _TIME_FACTOR)

    def __init__(self, cfg=None) -> None:
        super().__init__(cfg)
        self.acfg: APLAConfig = cfg.apla if cfg is not None else APLAConfig()
        if self.acfg.vgt not in VGT_KINDS:
            raise InputError(f"Unknown VGT variant {self.acfg.vgt!r}; choose pure, hyper or none.")
        self.replaces_denoise_loss = bool(self.acfg.hyper_loss)
        self._vgt_out: torch.Tensor | None = None  # the VGT's output of the last training step
        self.vgt: VideoGenerationTransformer | None = None
        self.adv: AdversarialTrainer | None = None
        self.hyper: HyperLoss | None = None
        self._device: torch.device | None = None
        self._model = None
        self._logs: dict[str, float] = {}

    def build(self, channels: int, device: torch.device) -> None:
        """The parts the switches ask for, for a denoiser of ``channels`` output channels: the
        VGT (hooked to keep its output for the |VGT| / |U-Net| log) and the discriminator with
        its trainer. Where they are installed is the caller's: a U-Net's ``perturb`` / ``aux``
        (:meth:`setup`), a DiT's velocity (methods/dit.py)."""
        a = self.acfg
        if a.vgt != "none":
            self.vgt = vgt_from_config(a, channels)
            self.vgt.register_forward_hook(self._keep_vgt_out)
        if a.discriminator:
            self.adv = AdversarialTrainer(NoiseDiscriminator(channels), a.disc_lr, a.disc_betas)
        self._device = device  # the hyper-loss (and its perceptual net) is built on first use:
        # sampling from a tuned run (load_tuned -> setup) never needs it

    def setup(self, model, base, device: torch.device) -> None:
        self._model = model
        self.build(model.config.out_channels, device)
        if self.vgt is not None:
            model.perturb["vgt"] = self.vgt  # eq. 4: added to the noise prediction
        if self.adv is not None:
            model.aux["discriminator"] = self.adv.disc

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"vgt": self.acfg.vgt, "discriminator": self.adv is not None,
                               "hyper_loss": bool(self.acfg.hyper_loss)}
        if self.vgt is not None:
            out["vgt_params"] = self.vgt.param_count()
            out["vgt_spec"] = dict(self.vgt.spec.__dict__)
        if self.adv is not None:
            out["discriminator_params"] = sum(p.numel() for p in self.adv.disc.parameters())
        if self.hyper is not None and self.hyper.encoder is not None:
            out["perceptual"] = self.hyper.encoder.name
        return out

    def _keep_vgt_out(self, module, args, out) -> None:
        if module.training:  # for the ||VGT|| / ||U-Net|| log; sampling keeps nothing
            self._vgt_out = out.detach()

    def hyper_loss(self) -> HyperLoss | None:
        a = self.acfg
        if a.hyper_loss and self.hyper is None:
            enc = (perceptual_encoder(a.perceptual, a.perceptual_layers, self._device,
                                      a.perceptual_random_weights) if a.gamma > 0 else None)
            self.hyper = HyperLoss(a.alpha, a.beta, a.gamma, enc)
        return self.hyper

    def denoise_loss(self, s: StepState) -> torch.Tensor:
        return self.hyper_terms(s.pred, s.target)

    def extra_losses(self, s: StepState) -> dict[str, torch.Tensor]:
        return self.adversarial_terms(predicted_noise(s)) if self.adv is not None else {}

    def after_step(self, s: StepState) -> dict[str, float]:
        return self.step_logs(s.noise, predicted_noise(s, detach=True) if self.adv is not None
                              else None, s.pred)

    # the terms on plain tensors: a U-Net's noise (above) or a DiT's velocity (methods/dit.py)
    def hyper_terms(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The denoising loss: the hyper-loss of the prediction vs its target (eq. 18; its
        parts logged), or plain MSE with the hyper-loss off (eq. 6)."""
        hyper = self.hyper_loss()
        if hyper is None:
            return F.mse_loss(pred.float(), target.float())
        loss, parts = hyper(pred, target)
        self._logs.update(parts)
        return loss

    def adversarial_terms(self, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """lambda L_g (eq. 20) of the predicted quantity the discriminator judges."""
        if self.adv is None:
            return {}
        return {"adv_g": self.acfg.lam * self.adv.generator_loss(fake)}

    def step_logs(self, real: torch.Tensor, fake: torch.Tensor | None,
                  pred: torch.Tensor) -> dict[str, float]:
        """After the main step: the discriminator's own update on (true, detached predicted),
        the step's logged parts and |VGT| / |prediction| (``pred``: the summed prediction)."""
        logs, self._logs = self._logs, {}
        if self.adv is not None and fake is not None:
            logs.update(self.adv.update(real, fake))
        ratio = vgt_ratio(self._vgt_out, pred)
        if ratio is not None:
            logs["vgt_ratio"] = ratio
        self._vgt_out = None  # do not keep the step's tensors alive
        return logs

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.adv.state_dict() if self.adv is not None else {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.adv is not None:
            self.adv.load_state_dict(state)
