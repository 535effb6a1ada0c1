"""The tuning-method interface the one-shot loop drives (baseline = Tune-A-Video).

A method may install modules into the model (adapters, VGT), add trainable name patterns, replace
the denoising loss, add loss terms, and run its own update after each step (a discriminator).

What the rest of vcstudio needs to know about a method lives on its class, so no code outside
methods/ tests a method's name: its named presets (the papers' ablation rows), its share of the
memory/time estimate, whether it replaces the denoising loss, the method underneath it (combined
tuning keeps the tuned run's method), its paper defaults, its benchmark settings, the logged
terms the loss plots draw (``plotted``: each on an axis of its own scale and unit), its config
section (``config``: a dataclass whose fields declare their ranges, choices and help with
vcstudio.settings.setting; a TuneConfig holds it as ``cfg.<name>``) and the fields of it a user
switches (``switches``: the CLI's flags and the UI's method panel are made from them). A new
method is one module with such a class plus ``methods.registry.register(cls)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F

from ..models.diffusion_math import x0_and_eps


@dataclass
class StepState:
    """Everything one training step knows; ``pred_x0`` is computed once, on demand."""

    step: int
    total: int
    model: Any  # VideoDenoiser
    base: Any  # BaseModel
    latents: torch.Tensor  # clean latents x_0 (B, 4, F, h, w)
    noise: torch.Tensor
    noisy: torch.Tensor
    timesteps: torch.Tensor  # (B,)
    alpha_bar: torch.Tensor  # (B,)
    text_emb: torch.Tensor
    pred: torch.Tensor  # model output
    target: torch.Tensor
    frames: torch.Tensor  # real frames, float (F, 3, H, W) in [0, 1]
    prediction_type: str
    generator: torch.Generator
    _x0: Optional[torch.Tensor] = field(default=None, repr=False)

    def pred_x0(self) -> torch.Tensor:
        """Predicted clean latents from the model output at t (on the autograd graph)."""
        if self._x0 is None:
            self._x0 = x0_and_eps(self.pred, self.noisy, self.alpha_bar, self.prediction_type)[0]
        return self._x0


@dataclass(frozen=True)
class Preset:
    """A named variant of a method: ``changes`` are dotted TuneConfig fields -> values
    (``{"method": "dct", "dct.clws": "gaussian"}``), ``edit`` EditConfig fields its samples use
    (``{"guidance": 1.0}``: DCT samples without classifier-free guidance). ``id`` is what the
    CLI and sweep grids type; ``label`` is what the Compare tab shows."""

    id: str
    label: str
    changes: Mapping[str, Any]
    edit: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plotted:
    """A logged term the loss plots draw: ``term`` is its key in the step's logs, ``axis``
    the small multiple it is drawn on (terms of one scale and unit share one; the text is
    the axis' label), ``label`` what the legend says about it."""

    term: str
    axis: str
    label: str = ""


# the axis every method's denoising loss is drawn on; a method that adds weighted terms
# draws their sum ``TOTAL`` beside it
LOSS_AXIS = "denoising loss"
TOTAL = Plotted("total", LOSS_AXIS, "total: loss + the weighted terms")


@dataclass(frozen=True)
class Cost:
    """A method's share of a tuning estimate, at Stable-Diffusion-1.x scale: extra GiB (its
    modules, feature nets, graphs) and the factor on a baseline training step's time."""

    gib: float = 0.0
    time_factor: float = 1.0


class TuneMethod:
    """Tune-A-Video's baseline: epsilon (or v) MSE on the trainable query projections and
    temporal attention."""

    name = "baseline"
    # True when denoise_loss is not the plain MSE (at most one part of a composition may);
    # an instance may narrow it to its switches (APLA without its hyper-loss keeps the MSE)
    replaces_denoise_loss: bool = False
    # the Compare tab's / CLI's named variants (Tune-A-Video has one: itself)
    presets: tuple[Preset, ...] = (Preset("baseline", "baseline (Tune-A-Video)",
                                          {"method": "baseline"}),)
    # TuneConfig fields the CLI takes from the paper when the user leaves them unset
    paper_defaults: Mapping[str, Any] = {}
    # the TuneConfig sections this method reads (a Compare over CLWS weightings varies
    # ``dct.clws`` only for the variants that read ``dct``)
    sections: tuple[str, ...] = ()
    # the logged terms the loss plots draw, each on its axis (methods/registry.plotted_terms)
    plotted: tuple[Plotted, ...] = (Plotted("loss", LOSS_AXIS, "loss"),)
    # the method's own settings: a dataclass, held by a TuneConfig as cfg.<name> (None: none)
    config: Optional[type] = None
    # the fields of ``config`` a user switches (CLI flags, the UI's method panel), in order
    switches: tuple[str, ...] = ()

    def __init__(self, cfg=None) -> None:
        self.cfg = cfg

    # ------------------------------------------------------------------ class-level knowledge
    @classmethod
    def underlying(cls, cfg) -> str:
        """The method whose modules a run tuned with ``cfg`` holds (a wrapper such as combined
        tuning names the method underneath it)."""
        return str(cfg.method)

    @classmethod
    def cost(cls, cfg) -> Cost:
        """Extra memory and time of this method's parts for ``cfg`` (estimate, not a promise)."""
        return Cost()

    @classmethod
    def bench_config(cls, cfg, **opts):
        """``(cfg, label)``: the config ``vcstudio bench`` times for this method, and what the
        table's row says about it (e.g. DCT's decoded frames); ``opts`` are bench flags."""
        return cfg, ""

    def setup(self, model, base, device: torch.device) -> None:
        """Install modules into ``model`` before the trainable tensors are chosen."""

    def trainable_patterns(self) -> tuple[str, ...]:
        return ()

    def trainables(self) -> list[torch.nn.Parameter]:
        """Parameters of modules the method trains outside the denoiser's own names (a DiT's
        VGT: methods/dit.py); a U-Net's are found by ``trainable_patterns``."""
        return []

    def modules(self) -> dict[str, torch.nn.Module]:
        """Trained modules a DiT run saves beside its LoRA delta (``method.safetensors``:
        APLA's VGT and discriminator), by name; a U-Net's live in its delta."""
        return {}

    def notes(self) -> list[str]:
        """One-line notes for the run (e.g. a part that does not apply on this backbone)."""
        return []

    def summary(self) -> dict[str, Any]:
        """What the method set up (switches, parameter counts as ``*_params``, which feature
        nets answered), for meta.json's ``method_summary``, the log and the bench table."""
        return {}

    def denoise_loss(self, s: StepState) -> torch.Tensor:
        return F.mse_loss(s.pred.float(), s.target.float())

    def extra_losses(self, s: StepState) -> dict[str, torch.Tensor]:
        """Weighted loss terms added to the total; each is logged under its key."""
        return {}

    def after_step(self, s: StepState) -> dict[str, float]:
        """Runs after the main optimiser step (e.g. a discriminator update); returns logs."""
        return {}

    def finish(self, run_dir, losses: list[dict]) -> None:
        """Runs once when tuning has finished, with the run folder and the per-step logs
        (e.g. to write a plot of a logged term)."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Extra optimiser state to checkpoint (tensors only)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass
