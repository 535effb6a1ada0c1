"""One-shot LoRA tuning of a flow-matching video model (Wan2.1 T2V) on one clip: the pieces a
tune job drives (DESIGN "Video DiTs": LoRA on the transformer's attention, saved in diffusers'
layout).

The loss is rectified flow's (the model's own training objective) on the clip's cached latents:

    x_s = (1 - s) x0 + s eps,   L = || v_theta(x_s, s, c) - (eps - x0) ||^2

with s drawn as the backbone's scheduler shifts its sigmas (``backbone.train_sigmas``). The clip
and the prompt are encoded once; the text encoder is freed after (``free_text_encoder``).
Precision follows the device policy through the backbone (bf16 autocast on CUDA, fp32 on the
CPU; LoRA parameters in fp32); AdamW (fused on CUDA), gradient clipping, gradient checkpointing
switchable. A tuning method (DCT / APLA on a DiT: methods/dit.py, composed as on SD) plugs in
through ``method``: its modules and trainables at set-up, its denoising loss (APLA's
hyper-loss), its weighted extra terms (DCT's consistency, APLA's adversarial term) and its
after-step update (APLA's discriminator), each seeing the step's :class:`FlowStep`; its
modules and state go into the checkpoint, so a resumed tune is the same tune.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ...device import synchronize
from ...errors import InputError
from ...progress import CancelToken, Event, ProgressFn, null_progress
from ...settings import check, setting


@dataclass
class FlowTuneConfig:
    steps: int = setting(300, lo=1, flag="--steps")
    lr: float = setting(1e-4, lo=0, hi=1, open_lo=True, open_hi=True, flag="--lr")
    lora_rank: int = 16
    lora_alpha: Optional[float] = None  # None = rank (scale 1)
    lora_targets: Optional[tuple[str, ...]] = None  # None = q, k, v, out of every attention
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = True
    free_text_encoder: bool = True  # drop UMT5 once the prompt is encoded
    seed: int = 0


@dataclass
class FlowStep:
    """One training step's tensors (for a method's terms; ``pred`` / ``target`` as a U-Net
    step names them)."""

    step: int  # 1-based
    latents: torch.Tensor  # x0 (1, C, f, h, w), the clip's normalised latents
    noise: torch.Tensor
    sigma: torch.Tensor  # (1,)
    noisy: torch.Tensor  # x_s
    velocity: torch.Tensor  # v_theta(x_s, s, c) (+ a method's perturbation), on the graph
    embeds: torch.Tensor
    total: int = 0  # the tune's steps
    target: Optional[torch.Tensor] = None  # eps - x0
    frames: Optional[torch.Tensor] = None  # the clip's frames (F, 3, H, W) in [0, 1], on CPU

    @property
    def pred(self) -> torch.Tensor:
        return self.velocity


@dataclass
class FlowTuneResult:
    losses: list[dict] = field(default_factory=list)  # {"step", "loss", "sigma", ...extras}
    latents: Optional[torch.Tensor] = None  # the clip's latents (cached once)
    embeds: Optional[torch.Tensor] = None  # the prompt's embeddings
    lora: Optional[Path] = None
    seconds: float = 0.0
    step_times: list[float] = field(default_factory=list)  # each step's seconds (this call)
    paused: bool = False  # ``step_budget`` used up before the last step
    # () -> the training state after the last step done (:func:`training_state`): what a
    # checkpoint holds to resume from
    state: Optional[Callable[[], dict]] = None


def training_state(backbone, opt: torch.optim.Optimizer, gen: torch.Generator,
                   step: int, method=None) -> dict[str, torch.Tensor]:
    """Everything a resumed tune needs, as tensors (a safetensors checkpoint): the LoRA
    (``lora/<peft key>``), a method's modules (``module/...``) and state (``method/...``: its
    discriminator's Adam, its frame generator), AdamW's moments and step per parameter
    (``opt/<i>/...``), the noise generator's state and the step."""
    from ...methods.dit import module_tensors
    from ...models.lora import lora_state_dict

    out = {f"lora/{k}": v for k, v in lora_state_dict(backbone.denoiser).items()}
    if method is not None:
        out.update({f"module/{k}": v for k, v in module_tensors(method).items()})
        out.update({f"method/{k}": torch.as_tensor(v).detach().cpu().contiguous()
                    for k, v in method.state_dict().items()})
    for i, p in enumerate(opt.param_groups[0]["params"]):
        for k, v in opt.state.get(p, {}).items():
            out[f"opt/{i}/{k}"] = torch.as_tensor(v).detach().float().cpu().contiguous()
    out["rng"] = gen.get_state()
    out["step"] = torch.tensor(int(step))
    return out


def restore_state(backbone, params: list, opt: torch.optim.Optimizer, gen: torch.Generator,
                  state: dict[str, torch.Tensor], method=None) -> int:
    """Load a :func:`training_state` into a freshly LoRA-injected backbone (and set-up
    ``method``), its optimizer and generator -> the step it was saved at."""
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(backbone.denoiser, {k[5:]: v for k, v in state.items()
                                                  if k.startswith("lora/")})
    if method is not None:
        from ...methods.dit import load_module_tensors

        load_module_tensors(method, {k[7:]: v for k, v in state.items()
                                     if k.startswith("module/")})
        method.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("method/")})
    fused = bool(opt.defaults.get("fused"))
    for i, p in enumerate(params):
        st = {}
        for k in ("exp_avg", "exp_avg_sq"):
            if f"opt/{i}/{k}" in state:
                st[k] = state[f"opt/{i}/{k}"].to(p)
        if f"opt/{i}/step" in state:
            st["step"] = state[f"opt/{i}/step"].float().to(p.device if fused else "cpu")
        if st:
            opt.state[p] = st
    gen.set_state(state["rng"])
    return int(state["step"])


def flow_loss(backbone, latents: torch.Tensor, embeds: torch.Tensor, sigma: torch.Tensor,
              noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rectified-flow MSE, x_s, v) at noise levels ``sigma`` (B,) for clean ``latents``."""
    x_s = backbone.add_noise(latents, noise, sigma)
    v = backbone.predict(x_s, sigma, embeds)
    return torch.nn.functional.mse_loss(v, backbone.target(latents, noise)), x_s, v


@torch.no_grad()
def held_out_loss(backbone, latents: torch.Tensor, embeds: torch.Tensor, draws: int = 8,
                  seed: int = 1234) -> float:
    """The loss averaged over ``draws`` fixed (noise, sigma) pairs: a deterministic measure of
    how well the model fits the clip, comparable before and after tuning."""
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(draws):
        s = backbone.train_sigmas(1, g)
        eps = torch.randn(latents.shape, generator=g).to(latents)
        total += float(flow_loss(backbone, latents, embeds, s, eps)[0])
    return total / draws


def tune_lora(backbone, frames: np.ndarray, prompt: str, cfg: FlowTuneConfig,
              progress: ProgressFn = null_progress, cancel: Optional[CancelToken] = None,
              out: Optional[str | Path] = None,
              extra: Optional[Callable[[FlowStep], dict[str, torch.Tensor]]] = None,
              latents: Optional[torch.Tensor] = None,
              after_step: Optional[Callable[[int, FlowTuneResult], None]] = None,
              resume: Optional[dict] = None, losses: Optional[list] = None,
              step_budget: Optional[int] = None, method=None) -> FlowTuneResult:
    """LoRA-tune ``backbone`` on uint8 ``frames`` (F, H, W, 3) under ``prompt``.

    ``method`` (methods/registry.py ``get_flow_method``: DCT / APLA on a DiT) is set up on the
    backbone after the LoRA (its trainables join the optimiser) and drives the step (module
    docstring); ``extra(step) -> {name: weighted loss}`` adds further terms (each logged). With
    ``out``
    the LoRA is written to ``out/lora.safetensors`` (diffusers' layout). ``latents`` skips
    encoding (a clip encoded before). ``after_step(step, result)`` runs after each step's
    progress event (a job writes its checkpoints there: ``result.state()``). ``resume`` (a
    :func:`training_state`) continues from its step, with ``losses`` the logs of the steps
    before it: the same noise, sigmas and AdamW state as an uninterrupted tune. ``step_budget``
    ends after at most that many steps (``paused``). Cancelling ends after the current step;
    the result holds the steps done.
    """
    check(cfg, "steps")
    check(cfg, "lr")
    if not prompt or not prompt.strip():
        raise InputError("Give the prompt that describes the clip.")
    t0 = time.time()
    res = FlowTuneResult()
    res.latents = backbone.encode_clip(frames) if latents is None else latents
    res.embeds = backbone.encode_prompts([prompt])
    if cfg.free_text_encoder:
        backbone.free_text_encoder()
    with torch.random.fork_rng(devices=[]):  # LoRA's A matrices start random: from the seed
        torch.manual_seed(int(cfg.seed))
        params = backbone.add_lora(cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets)
        if method is not None:  # its modules start from the seed too (a VGT's own init)
            method.setup(backbone, None, backbone.device)
            for p in method.trainables():
                params.append(p.requires_grad_(True))
    backbone.gradient_checkpointing(cfg.gradient_checkpointing)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=backbone.device.type == "cuda")
    gen = torch.Generator().manual_seed(int(cfg.seed))
    start = (restore_state(backbone, params, opt, gen, resume, method) if resume is not None
             else 0)
    res.losses = [r for r in (losses or []) if r.get("step", 0) <= start]
    done = [start]  # the last step done
    res.state = lambda: training_state(backbone, opt, gen, done[0], method)
    x0 = res.latents
    real = None
    if method is not None and frames is not None:  # DCT's "frames" target (on the CPU)
        from ...models.preprocess import frames_to_unit

        real = frames_to_unit(np.asarray(frames))
    times = res.step_times
    for step in range(start + 1, cfg.steps + 1):
        if cancel is not None and cancel.cancelled:
            break
        if step_budget is not None and step - start > step_budget:
            res.paused = True
            break
        synchronize(backbone.device)
        t_step = time.perf_counter()
        sigma = backbone.train_sigmas(1, gen)
        noise = torch.randn(x0.shape, generator=gen).to(x0)
        with backbone.training():
            loss, x_s, v = flow_loss(backbone, x0, res.embeds, sigma, noise)
            fs = FlowStep(step, x0, noise, sigma, x_s, v, res.embeds, cfg.steps,
                          backbone.target(x0, noise), real)
            if method is not None and method.replaces_denoise_loss:
                loss = method.denoise_loss(fs)  # APLA's hyper-loss (eq. 18)
            logs = {"step": step, "loss": float(loss.detach()), "sigma": float(sigma)}
            total = loss
            terms = dict(method.extra_losses(fs)) if method is not None else {}
            if extra is not None:
                terms.update(extra(fs))
            for k, term in terms.items():
                total = total + term
                logs[k] = float(term.detach())
            if terms:
                logs["total"] = float(total.detach())
            if method is not None:  # the DDPM-scale timestep (DCT's alpha plot colours by it)
                logs["t"] = int(float(sigma) * backbone.num_train_timesteps)
            opt.zero_grad(set_to_none=True)
            total.backward()
            if cfg.max_grad_norm:
                logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
            opt.step()
            if method is not None:  # e.g. the discriminator's own step (after the main one)
                logs.update(method.after_step(fs))
        res.losses.append(logs)
        done[0] = step
        synchronize(backbone.device)
        times.append(time.perf_counter() - t_step)
        recent = times[1:] if len(times) > 3 else times  # the first step warms up kernels
        progress(Event(step, cfg.steps, f"LoRA step {step}/{cfg.steps}", stage="tune",
                       metrics={k: v for k, v in logs.items() if k != "step"},
                       eta=(cfg.steps - step) * sum(recent) / len(recent)))
        if after_step is not None:
            after_step(step, res)
    res.seconds = time.time() - t0
    if out is not None:
        res.lora = backbone.save_lora(Path(out) / "lora.safetensors",
                                      {"tune": asdict(cfg), "prompt": prompt,
                                       "clip_shape": None if frames is None else
                                       list(np.asarray(frames).shape)})
    return res


__all__ = ["FlowStep", "FlowTuneConfig", "FlowTuneResult", "flow_loss", "held_out_loss",
           "restore_state", "training_state", "tune_lora"]
