"""Inflate a diffusers ``UNet2DConditionModel`` to a video model without forking its code.

* frames are folded into the batch: (B, C, F, H, W) -> (B*F, C, H, W) and back;
* every self-attention (attn1) gets the sparse-causal processor (keys/values of the first and the
  previous frame) through diffusers' attention-processor API;
* every transformer block is wrapped so a zero-initialised temporal attention follows it;
* ``groupnorm="clip"`` (the default, Tune-A-Video's): the ResNet blocks' norm1/norm2 and
  conv_norm_out normalise over all frames of each clip (models/groupnorm.py); ``"frame"`` keeps
  the 2-D model's per-frame statistics (how runs were tuned before the option existed);
* ``frame_positions``: a sinusoidal frame-position code in the temporal attention (off, as in
  Tune-A-Video; models/temporal.py).

:class:`VideoDenoiser` adds what methods plug in: ``perturb`` modules whose outputs are ADDED to
the noise prediction (APLA's VGT, eq. 4) and ``aux`` modules trained beside the model but not used
in its forward pass (APLA's discriminator). Only parameters matching the trainable patterns (plus
all of ``perturb``/``aux``) train and make up the saved delta.

The second temporal route (``motion_adapter=``, models/motion.py) builds the video U-Net with
diffusers' ``UNetMotionModel.from_unet2d`` instead of wrapping blocks; sparse-causal attention is
the same processor on its spatial attn1, and everything above (perturb, aux, trainables, the
(B, C, F, H, W) call) is the same, so no pipeline forks on the route. That U-Net is diffusers'
UNetMotionModel as it is: its GroupNorms stay per frame and its motion modules carry their own
positions, so ``groupnorm``/``frame_positions`` apply to the vcstudio route only.
"""
from __future__ import annotations

import copy
from typing import Iterable, Optional

import torch
import torch.nn as nn

from ..errors import InputError
from .attention import FrameContext, SparseCausalAttnProcessor
from .groupnorm import GROUPNORM_MODES, clip_groupnorm
from .temporal import TemporalBlock


def inflate_unet(unet: nn.Module, ctx: FrameContext, temporal: bool = True,
                 groupnorm: str = "frame", frame_positions: bool = False) -> nn.Module:
    """In place: sparse-causal attn1 processors, temporal blocks and (``groupnorm="clip"``)
    clip-wide ResNet GroupNorms. Returns ``unet``."""
    if groupnorm not in GROUPNORM_MODES:
        raise InputError(f"Unknown groupnorm {groupnorm!r}; use clip (statistics over the "
                         "clip's frames, as Tune-A-Video) or frame.")
    from diffusers.models.attention import BasicTransformerBlock

    procs = {}
    for name in unet.attn_processors:
        if "motion_modules" in name:  # AnimateDiff's temporal attention keeps plain attention
            from diffusers.models.attention_processor import AttnProcessor2_0

            procs[name] = AttnProcessor2_0()
        elif ".attn1." in name or name.endswith("attn1.processor"):
            procs[name] = SparseCausalAttnProcessor(ctx)
        else:
            from diffusers.models.attention_processor import AttnProcessor2_0

            procs[name] = AttnProcessor2_0()
    unet.set_attn_processor(procs)
    if temporal:
        for module in list(unet.modules()):
            blocks = getattr(module, "transformer_blocks", None)
            if isinstance(blocks, nn.ModuleList):
                for i, blk in enumerate(blocks):
                    if isinstance(blk, BasicTransformerBlock):
                        blocks[i] = TemporalBlock(blk, ctx, frame_positions)
    if groupnorm == "clip":
        clip_groupnorm(unet, ctx)
    return unet


class VideoDenoiser(nn.Module):
    """The inflated U-Net as a video noise predictor on (B, C, F, H, W) latents."""

    def __init__(self, unet2d: nn.Module, copy_unet: bool = True, temporal: bool = True,
                 motion_adapter: Optional[nn.Module] = None, groupnorm: str = "clip",
                 frame_positions: bool = False) -> None:
        """``motion_adapter``: the AnimateDiff route -- a UNetMotionModel built from ``unet2d``
        (always a new model, ``unet2d`` untouched) with these motion modules as the temporal
        layers; ``temporal``, ``groupnorm`` and ``frame_positions`` then do not apply.
        Defaults are Tune-A-Video's: clip-wide ResNet GroupNorm, no frame positions."""
        super().__init__()
        self.ctx = FrameContext()
        if motion_adapter is not None:
            from .motion import motion_unet

            self.route = "animatediff"
            self.unet = inflate_unet(motion_unet(unet2d, motion_adapter), self.ctx, temporal=False)
        else:
            self.route = "vcstudio"
            unet = copy.deepcopy(unet2d) if copy_unet else unet2d
            self.unet = inflate_unet(unet, self.ctx, temporal=temporal, groupnorm=groupnorm,
                                     frame_positions=frame_positions)
        self.perturb = nn.ModuleDict()
        self.aux = nn.ModuleDict()
        self._compiled: Optional[nn.Module] = None

    @property
    def _unet_call(self):
        return self._compiled if self._compiled is not None else self.unet

    def compile_unet(self) -> None:
        """torch.compile the U-Net (Inductor fuses norms/activations around the matmuls).

        Measured on an H100 at 24 frames 512x512: the 2-D SD-1.5 CFG call went 0.173 -> 0.098 s
        and a checkpointed training step 0.29 -> 0.185 s. Costs a minute or two of compilation
        on first use, which the session's model cache then keeps.
        """
        self._compiled = torch.compile(self.unet)

    @property
    def config(self):
        return self.unet.config

    def unet_forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                     ) -> torch.Tensor:
        b, c, f, h, w = sample.shape
        if self.route == "animatediff":
            return self._motion_forward(sample, timestep, encoder_hidden_states)
        x = sample.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        t = torch.as_tensor(timestep, device=sample.device)
        if t.numel() == 1:
            t = t.reshape(()).expand(b)
        t = t.repeat_interleave(f)
        ehs = encoder_hidden_states.repeat_interleave(f, dim=0)
        self.ctx.num_frames = f
        out = self._unet_call(x, t, ehs, return_dict=False)[0]
        return out.reshape(b, f, -1, h, w).permute(0, 2, 1, 3, 4)

    def _motion_forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                        ) -> torch.Tensor:
        """UNetMotionModel on (B, C, F, H, W) with a timestep per video; diffusers 0.42 hands
        ``encoder_hidden_states`` to its per-frame blocks as they are, so they go in per frame
        (B*F, tokens, dim), as AnimateDiffPipeline repeats them."""
        from .motion import max_frames

        b, f = sample.shape[0], sample.shape[2]
        t = torch.as_tensor(timestep, device=sample.device)
        if t.numel() == 1:
            t = t.reshape(()).expand(b)
        ehs = encoder_hidden_states.repeat_interleave(f, dim=0)
        self.ctx.num_frames = f
        if f > max_frames(self.unet):
            from ..errors import InputError

            raise InputError(f"These motion modules know {max_frames(self.unet)} frame positions; "
                             f"use at most that many frames (got {f}) or windows of that length.")
        return self._unet_call(sample, t, ehs, return_dict=False)[0]

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                ) -> torch.Tensor:
        pred = self.unet_forward(sample, timestep, encoder_hidden_states)
        for mod in self.perturb.values():
            pred = pred + mod(sample, timestep)  # APLA eq. 4: eps = eps_unet + VGT(z_t, t)
        return pred

    # ------------------------------------------------------------------ trainable tensors
    def mark_trainable(self, patterns: Iterable[str]) -> list[str]:
        """Only names containing one of ``patterns`` (and all perturb/aux params) train.

        ``"temporal"`` names the temporal layers of either route (``"temporal.attn"``, the
        default, is Tune-A-Video's ``attn_temp`` without its LayerNorm ``norm_temp``): on the
        AnimateDiff route either selects the motion modules."""
        pats = tuple(patterns)
        if self.route == "animatediff" and any(p.startswith("temporal") for p in pats):
            from .motion import MOTION_PATTERN

            pats = pats + (MOTION_PATTERN,)
        names = []
        for name, p in self.named_parameters():
            train = name.startswith(("perturb.", "aux.")) or any(s in name for s in pats)
            p.requires_grad_(train)
            if train:
                names.append(name)
        return names

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    def cast_frozen(self, dtype: torch.dtype) -> None:
        """Frozen weights in low precision, trainable ones stay fp32 (DESIGN: precision)."""
        for p in self.parameters():
            if not p.requires_grad:
                p.data = p.data.to(dtype)
