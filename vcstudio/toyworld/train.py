"""`vcstudio toyworld train`: the embedded demo model, trained on the toy world on a CPU, in
resumable chunks.

The recipe (sizes in models.py; figures and reasons in assets/toy-sd/README.md):

1. ``vae``: AutoencoderKL (4x, 16x16x4 latents) on rendered scenes: L1 + L2 with the object and
   its edge weighted x5 (the renderer gives its coverage: the object is ~10% of the pixels and
   all that the checker reads), an L1 on image gradients (sharp edges: corners tell a square
   from a circle) and LDM's 1e-6 KL. Being purely convolutional it trains on 32x32 crops
   (4x the images per second) and finishes on whole images (the backgrounds' row structure).
2. ``scale``: ``scaling_factor`` = 1 / std of sampled latents (LDM sec. 4.3, SD's 0.18215).
3. ``clip``: a small transformers CLIPModel, contrastive (InfoNCE; identical captions in a batch
   share the positive) -> ``toy-clip``; its text tower is the U-Net's text encoder: frozen, as
   SD keeps its own, or (``text_lr``) trained on with the U-Net, as GLIDE trains its text
   transformer (Nichol et al. 2022, sec. 2.2); the toy CLIP keeps the tower as it was.
4. ``encode``: a fixed set of training scenes rendered and encoded ONCE (the VAE costs as much
   as a U-Net step per image: encoding on the fly would halve the U-Net's share of the budget);
   their attributes are kept so captions are spoken differently each time a latent is drawn.
5. ``unet``: UNet2DConditionModel, epsilon prediction with min-SNR-5 loss weights (Hang et al.
   2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy": w_t = min(SNR_t, 5) /
   SNR_t for epsilon-prediction), which moves the weight from the easy low-noise steps to the
   high-noise ones where colour and shape are decided; SD's DDPM betas; 10% empty captions for
   classifier-free guidance; EMA weights saved (of the text encoder too when it trains).
   ``--init-from`` starts a new work folder at this phase's encoded set from a finished
   model's VAE and CLIP.
6. ``save`` and ``eval``: the two folders, the log and `vcstudio toyworld eval`'s figures.

Chunks: the state (weights, AdamW moments, EMA, data and RNG positions, the encoded set) is
checkpointed into the work folder every few minutes and at the end of each phase; ``resume``
continues exactly where it stopped, so two chunks of k steps equal one run of 2k steps. The
log keeps, per chunk, its wall and CPU time (``resource.getrusage``: user + system of the
training process, all threads, summed over the processes of ``--workers``: parallel.py) and
what it did; ``cpu_seconds`` is their sum (a chunk killed
between checkpoints counts up to its last checkpoint: at most ``checkpoint_minutes`` of work
is lost, and not counted).
"""
from __future__ import annotations

import json
import math
import platform
import resource
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io.atomic import write_json
from ..progress import CancelToken, Event, ProgressFn, null_progress
from .data import BatchSampler, CaptionPolicy, LatentSet, TokenCache
from .parallel import Group, GlooGroup, start_helpers, stop_helpers
from .models import (SD_BETAS, ModelSizes, build_clip, build_tokenizer, build_unet, build_vae,
                     clip_processor, folder_mb, save_clip, save_pipeline,
                     text_encoder_from_clip)

PHASES = ("vae", "scale", "clip", "encode", "unet", "save", "eval")
# the phases whose steps --workers splits; the others run on rank 0 alone (parallel.py)
SPLIT_PHASES = ("vae", "unet")
_FROM_UNET = PHASES[PHASES.index("unet"):] + ("done",)  # the U-Net phase and all after it


@dataclass
class ToyTrainConfig:
    out: str = "assets/toy-sd"
    clip_out: str = "assets/toy-clip"
    work: str = ""  # checkpoint folder ("" = <data folder>/toyworld-train)
    seed: int = 0
    vae_steps: int = 6000
    vae_batch: int = 32
    vae_crop: int = 32  # train on crops of this side (0 = whole images) ...
    vae_full_share: float = 0.15  # ... but whole images for this last share of the steps
    vae_lr: float = 2e-3
    vae_object_weight: float = 4.0  # extra weight of the object's pixels (+ a 1 px rim)
    vae_edge_weight: float = 0.5  # L1 on horizontal/vertical image differences
    kl_weight: float = 1e-6
    scale_samples: int = 2048
    clip_steps: int = 1500
    clip_batch: int = 64
    clip_lr: float = 1e-3
    dataset: int = 100_000  # scenes encoded once for the U-Net
    unet_steps: int = 8000
    unet_batch: int = 64
    unet_lr: float = 5e-4
    # the text encoder's peak learning rate when it trains with the U-Net (0 = frozen, SD's
    # arrangement). The toy CLIP's text tower, trained to tell captions apart only among
    # random others, hardly separates circle, square and diamond (centred over the six shape
    # captions, their last hidden states point the same way: cosine 0.93-0.96); trained with
    # the U-Net, as GLIDE trains its text transformer (Nichol et al. 2022, sec. 2.2), the
    # encoder learns what the drawing needs.
    text_lr: float = 0.0
    min_snr: float = 5.0  # 0 = plain epsilon MSE
    unet_object_weight: float = 0.0  # extra weight of the latent cells the object touches
    unet_focus_share: float = 0.0  # share of a batch's timesteps drawn from unet_focus_range
    unet_focus_range: tuple[int, int] = (400, 1000)  # where the shape is decided (train.py)
    cfg_dropout: float = 0.1
    ema_decay: float = 0.999
    warmup: int = 200
    checkpoint_minutes: float = 5.0
    eval_n: int = 200
    eval_steps: int = 50
    eval_guidance: float = 5.0
    threads: int = 0  # torch threads (0 = leave torch's choice; with workers > 1: one each)
    # data-parallel processes sharing each step's batch (parallel.py: two single-thread
    # processes keep this 2-core CPU busier than one process with two threads)
    workers: int = 1
    sizes: ModelSizes = field(default_factory=ModelSizes)


@dataclass
class ChunkResult:
    done: bool  # every phase finished
    phase: str  # where the chunk stopped
    step: int
    log: dict


# ----------------------------------------------------------------------------- losses

def vae_loss(rec: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor, kl: torch.Tensor,
             cfg: ToyTrainConfig) -> torch.Tensor:
    """Reconstruction with the object weighted (coverage ``alpha`` dilated by one pixel, so its
    rim counts too), an L1 on image gradients, and the KL term of LDM (weight 1e-6)."""
    w = 1 + cfg.vae_object_weight * F.max_pool2d(alpha, 3, 1, 1)
    err = rec - x
    loss = (w * err.abs()).mean() + (w * err.pow(2)).mean()
    if cfg.vae_edge_weight:
        for d in (2, 3):
            loss = loss + cfg.vae_edge_weight * (rec.diff(dim=d) - x.diff(dim=d)).abs().mean()
    return loss + cfg.kl_weight * kl.mean()


def clip_loss(logits_per_image: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP eq.); identical captions in the batch share the positive mass."""
    ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    lab = torch.tensor([ids[c] for c in captions], device=logits_per_image.device)
    same = (lab[:, None] == lab[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    li = logits_per_image.float()
    return 0.5 * (F.cross_entropy(li, target) + F.cross_entropy(li.t(), target))


def min_snr_weights(alpha_bar: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weights for epsilon-prediction (Hang et al. 2023, eq. 7 with the epsilon
    target): SNR_t = a_t / (1 - a_t), w_t = min(SNR_t, gamma) / SNR_t; gamma 0 = all ones."""
    if not gamma:
        return torch.ones_like(alpha_bar)
    snr = alpha_bar / (1 - alpha_bar)
    return snr.clamp(max=gamma) / snr


def sample_timesteps(n: int, cfg: ToyTrainConfig, g: torch.Generator) -> torch.Tensor:
    """DDPM's uniform timesteps, with ``unet_focus_share`` of them drawn from
    ``unet_focus_range`` instead: more of the training where the object's shape is decided
    (timestep importance sampling, as SD3's logit-normal (Esser et al. 2024, sec. 3.1) and
    EDM's log-normal (Karras et al. 2022) put theirs in the middle). Measured on the demo model
    (renders noised to t, denoised back, read by the checker): the shape survives from t = 400
    in 68% of cases, from t = 850 in 32%; below 400 it is mostly kept."""
    total = SD_BETAS["num_train_timesteps"]
    t = torch.randint(0, total, (n,), generator=g)
    k = round(n * cfg.unet_focus_share)
    if k:
        lo, hi = cfg.unet_focus_range
        t[:k] = torch.randint(lo, hi, (k,), generator=g)
    return t


def unet_loss(pred: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor,
              cfg: ToyTrainConfig, cells: Optional[torch.Tensor] = None) -> torch.Tensor:
    """DDPM's simple epsilon loss (Ho et al. 2020, eq. 14) with min-SNR weights per sample;
    with ``cells`` (B, 1, h, w: the latent cells the object touches) those cells weigh
    1 + ``unet_object_weight``. The object is a tenth of the image, and all its shape is drawn
    there: unweighted, the backgrounds' stars, snowflakes and bands own most of the gradient.
    Per cell this leaves the optimum (the conditional mean of the noise) where it was; it moves
    capacity, not the target."""
    err = (pred - noise).pow(2)
    if cells is not None and cfg.unet_object_weight:
        err = err * (1 + cfg.unet_object_weight * cells)
    return (min_snr_weights(alpha_bar, cfg.min_snr) * err.mean(dim=(1, 2, 3))).mean()


class EMA:
    """Exponential moving average of parameters, with the usual (1+n)/(10+n) warm start."""

    def __init__(self, model, decay: float) -> None:
        import copy

        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.n = 0

    @torch.no_grad()
    def update(self, model) -> None:
        self.n += 1
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        torch._foreach_lerp_(list(self.model.parameters()),
                             [p.detach() for p in model.parameters()], 1 - d)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine down to 10% of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    frac = min((step - warmup) / max(total - warmup, 1), 1.0)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))


# ----------------------------------------------------------------------------- state on disk

def _flat_optimizer(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict, dict]:
    """AdamW state as tensors (safetensors; never pickle) + its scalars as JSON."""
    sd = opt.state_dict()
    tensors, scalars = {}, {"param_groups": sd["param_groups"], "steps": {}}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if k == "step":
                scalars["steps"][str(pid)] = float(v)
            else:
                tensors[f"{prefix}/{pid}/{k}"] = v
    return tensors, scalars


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict, scalars: dict, prefix: str) -> None:
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "/"):
            _, pid, k = key.split("/", 2)
            state.setdefault(int(pid), {})[k] = v
    for pid, step in scalars["steps"].items():
        state.setdefault(int(pid), {})["step"] = torch.tensor(step)
    opt.load_state_dict({"state": state, "param_groups": scalars["param_groups"]})


class Work:
    """The work folder: ``state.json`` (phase, step, RNG and data positions, the log) and
    ``state.safetensors`` (weights, optimizer moments, EMA, RNG states), written atomically
    together; ``dataset.safetensors`` (the encoded scenes) once."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def json_path(self) -> Path:
        return self.folder / "state.json"

    def exists(self) -> bool:
        return self.json_path.is_file()

    def load(self) -> tuple[dict, dict]:
        from ..models.delta import load_tensors

        meta = json.loads(self.json_path.read_text())
        tensors = load_tensors(self.folder / "state.safetensors")[0] \
            if (self.folder / "state.safetensors").is_file() else {}
        return meta, tensors

    def save(self, meta: dict, tensors: dict) -> None:
        from ..models.delta import save_tensors

        save_tensors(self.folder / "state.safetensors", tensors)  # first: json names its step
        write_json(self.json_path, meta)


def _sizes_json(sizes: ModelSizes) -> dict:
    """Sizes as state.json holds them (tuples read back as lists), to compare with a saved run."""
    return json.loads(json.dumps(asdict(sizes)))


def _saved_sizes(state_or_log: dict) -> dict:
    """The sizes a work folder's state (or a finished model's log) was built with; a knob added
    after it was written reads as its default, which is what such a run was built with
    (unet_text_in_time: off)."""
    return {**_sizes_json(ModelSizes()), **(state_or_log.get("config", {}).get("sizes") or {})}


def _split_chunks(chunks: list[dict]) -> tuple[list[dict], list[dict]]:
    """(kept, dropped) for a new U-Net: a chunk that began in the U-Net phase or after it
    trained only the old U-Net; one that began earlier (VAE, CLIP, the encoded set) stays
    counted whole."""
    keep, drop = [], []
    for c in chunks:
        (drop if c.get("start", {}).get("phase") in _FROM_UNET else keep).append(c)
    return keep, drop


def _without_unet(sizes: dict) -> dict:
    """The VAE's and CLIP's sizes only (what a new U-Net on them must agree with)."""
    return {k: v for k, v in sizes.items() if not k.startswith("unet_")}


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ----------------------------------------------------------------------------- the trainer

class Trainer:
    """Runs the phases from wherever the work folder says, until done or the chunk's budget
    (minutes or optimizer steps) is used; checkpoints as it goes."""

    def __init__(self, cfg: ToyTrainConfig, progress: ProgressFn = null_progress,
                 cancel: Optional[CancelToken] = None, group: Optional[Group] = None,
                 started: Optional[tuple[float, float]] = None) -> None:
        """``group``: the data-parallel ranks (parallel.py; none = one process); ``started``:
        (monotonic time, CPU seconds) the chunk's clocks count from (default: now)."""
        if cfg.sizes.size % cfg.sizes.vae_scale:
            raise InputError(f"The toy model's image size must be a multiple of "
                             f"{cfg.sizes.vae_scale} (the VAE's downsampling).")
        if cfg.vae_crop and (cfg.vae_crop > cfg.sizes.size or cfg.vae_crop % cfg.sizes.vae_scale):
            raise InputError(f"--vae-crop must be 0 or a multiple of {cfg.sizes.vae_scale} up to "
                             f"{cfg.sizes.size}.")
        self.cfg, self.progress, self.cancel = cfg, progress, cancel
        self.group = group or Group()
        # model building counts too
        self._t0, self._cpu0 = started or (time.monotonic(), _cpu_seconds())
        self._others_cpu = 0.0  # the other ranks' CPU time at the last collective checkpoint
        from ..paths import data_dir

        self.work = Work(Path(cfg.work) if cfg.work else data_dir() / "toyworld-train")
        self.dev = torch.device("cpu")
        tok_dir = self.work.folder / "tokenizer"
        self.tok = build_tokenizer(tok_dir, cfg.sizes.max_length)
        torch.manual_seed(cfg.seed)  # the same initial weights on every start
        s = cfg.sizes
        self.vae, self.clip, self.unet = build_vae(s), build_clip(s, self.tok), build_unet(s)
        self.ema: Optional[EMA] = None
        self.text_encoder = None
        self.ema_text: Optional[EMA] = None  # the trained text encoder's average (text_lr > 0)
        self.data: Optional[LatentSet] = None
        self.state = {"phase": PHASES[0], "step": 0, "chunks": [], "rng": {},
                      "scaling_factor": None, "losses": {p: [] for p in PHASES},
                      "config": self._config_dict(), "eval": None}
        self.opt: Optional[torch.optim.Optimizer] = None
        self.gens: dict[str, torch.Generator] = {}
        self.samplers: dict = {}  # name -> object with an ``rng`` (numpy Generator)
        self._restored: dict = {}
        self._phase_start = 0

    def _config_dict(self) -> dict:
        d = {f.name: getattr(self.cfg, f.name) for f in fields(self.cfg) if f.name != "sizes"}
        d["sizes"] = asdict(self.cfg.sizes)
        return d

    # -- state --------------------------------------------------------------------------
    def _tensors(self) -> dict:
        t = {f"vae/{k}": v for k, v in self.vae.state_dict().items()}
        t.update({f"clip/{k}": v for k, v in self.clip.state_dict().items()})
        t.update({f"unet/{k}": v for k, v in self.unet.state_dict().items()})
        if self.ema is not None:
            t.update({f"ema/{k}": v for k, v in self.ema.model.state_dict().items()})
        if self.ema_text is not None:
            t.update({f"text/{k}": v for k, v in self.text_encoder.state_dict().items()})
            t.update({f"ema_text/{k}": v for k, v in self.ema_text.model.state_dict().items()})
        for name, g in self.gens.items():
            t[f"gen/{name}"] = g.get_state()
        if self.opt is not None:
            ot, os_ = _flat_optimizer(self.opt, "opt")
            t.update(ot)
            self.state["opt"] = os_
        else:
            self.state.pop("opt", None)
        return t

    def checkpoint(self) -> None:
        """Every rank calls this at the same point (its CPU time is summed); rank 0 writes."""
        self.state["rng"] = {k: s.rng.bit_generator.state for k, s in self.samplers.items()}
        if self.ema is not None:
            self.state["ema_n"] = self.ema.n
        self._note_chunk()
        if self.group.rank == 0:
            self.work.save(self.state, self._tensors())
        self._last_ckpt = time.monotonic()

    def _reload(self) -> None:
        """A rank other than 0 after a phase rank 0 ran alone: its checkpoint's state, VAE and
        CLIP (the U-Net is not touched by those phases; the encoded set is read when the
        U-Net phase begins)."""
        meta, t = self.work.load()
        self.state = meta
        self._load_modules(t, ("vae", "clip"))

    def _load_modules(self, tensors: dict, names) -> None:
        """The named modules' weights from a checkpoint's ``<name>/...`` tensors."""
        for name in names:
            getattr(self, name).load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items()
                                                 if k.startswith(name + "/")})

    def restore(self, restart_unet: bool = False) -> bool:
        if not self.work.exists():
            return False
        meta, t = self.work.load()
        saved = _saved_sizes(meta)
        want = _sizes_json(self.cfg.sizes)
        if restart_unet:  # the U-Net is built anew: only the VAE's and CLIP's sizes must agree
            saved, want = _without_unet(saved), _without_unet(want)
        if saved != want:
            raise InputError(f"The work folder {self.work.folder} holds a run with other model "
                             "sizes; give another --work, or the same sizes.")
        self.state = meta
        if restart_unet:
            t = self._restart_unet(t)
        # the recipe in effect from now on: a later chunk may set the step counts (of a phase
        # under way too: its cosine then runs to the new total from where it is, a small jump
        # once past the warm-up); each chunk records the counts it ran with
        self.state["config"] = self._config_dict()
        # a restarted U-Net stays the seeded fresh one built in __init__
        self._load_modules(t, ("vae", "clip") if restart_unet else ("vae", "clip", "unet"))
        self._restored = t
        self._extend_unet()
        return True

    def _restart_unet(self, t: dict) -> dict:
        """A new U-Net (a new architecture or loss) trained from step 0 on the work folder's
        VAE, CLIP and encoded set, which cost a quarter of the budget and stay as they are.
        The chunks that trained only the old U-Net leave the log's sum for ``dropped_chunks``
        (kept, with their CPU time, for the record): they are not part of the new model. A
        chunk that built the encoded set and then began the old U-Net stays counted whole."""
        if self.state["phase"] in PHASES[:PHASES.index("unet")]:
            raise InputError(f"{self.work.folder} has not reached the U-Net phase yet (it is at "
                             f"{self.state['phase']}): --restart-unet needs its VAE, CLIP and "
                             "encoded set; continue with --resume.")
        keep, drop = _split_chunks(self.state["chunks"])
        self.state["chunks"] = keep
        self.state.setdefault("dropped_chunks", []).extend(drop)
        self.state.update(phase="unet", step=0)
        for key in ("unet_restart", "eval", "ema_n", "opt", "mb"):
            self.state.pop(key, None)
        self.state["losses"]["unet"] = []
        self.state["rng"] = {}
        return {k: v for k, v in t.items()
                if not k.startswith(("unet/", "ema/", "text/", "ema_text/", "opt", "gen/"))}

    def start_from(self, model, clip) -> None:
        """A new run on a finished model's VAE and toy CLIP (``model``: its diffusers folder
        with train_log.json, ``clip``: its CLIP folder): the run starts at the encoded set,
        then trains a U-Net from step 0. The finished run's chunks that trained the VAE and
        CLIP (and built its encoded set) count in this run's CPU sum, as --restart-unet keeps
        them; the chunks that trained only its U-Net are listed under ``dropped_chunks``.
        For a U-Net recipe tried on a model whose work folder is gone."""
        from diffusers import AutoencoderKL
        from transformers import CLIPModel

        model, clip = Path(model), Path(clip)
        log_path = model / "train_log.json"
        if not (model / "vae").is_dir() or not log_path.is_file() or not clip.is_dir():
            raise InputError(f"--init-from needs a demo model folder with vae/ and "
                             f"train_log.json ({model}) and its toy CLIP folder ({clip}).")
        log = json.loads(log_path.read_text())
        if _without_unet(_saved_sizes(log)) != _without_unet(_sizes_json(self.cfg.sizes)):
            raise InputError(f"{model} was trained with other VAE or CLIP sizes than asked.")
        vae = AutoencoderKL.from_pretrained(model / "vae", dtype=torch.float32)
        self.vae.load_state_dict(vae.state_dict())
        self.clip.load_state_dict(CLIPModel.from_pretrained(clip, dtype=torch.float32)
                                  .state_dict())
        keep, drop = _split_chunks(log["chunks"])
        self.state.update(phase="encode", step=0, chunks=keep,
                          dropped_chunks=drop + list(log.get("dropped_chunks") or []),
                          scaling_factor=float(vae.config.scaling_factor),
                          init_from={"model": str(model), "clip": str(clip)})

    def _extend_unet(self) -> None:
        """A finished run given more U-Net steps goes back to the U-Net phase from its weights,
        EMA and data position. AdamW's moments were dropped when the phase ended, so the added
        steps are a warm restart (SGDR, Loshchilov & Hutter 2017): a new warm-up, then a cosine
        over the added steps only (``unet_restart`` records where they begin)."""
        done = self.state["losses"].get("unet") or []
        trained = done[-1][0] if done else 0
        after_unet = self.state["phase"] in _FROM_UNET[1:]
        if after_unet and self.cfg.unet_steps > trained > 0:
            self.state["phase"], self.state["step"] = "unet", trained
            self.state["unet_restart"] = trained
            self.state.pop("eval", None)

    def _resuming(self) -> bool:
        """Whether the current phase continues from a checkpoint taken inside it."""
        return self.state["step"] > 0 and bool(getattr(self, "_restored", None))

    def _rng_gen(self, name: str) -> torch.Generator:
        """A phase's torch generator: where the checkpoint left it, else seeded."""
        g = torch.Generator().manual_seed(self.cfg.seed * 1000 + PHASES.index(name) + 1)
        saved = self._restored.get(f"gen/{name}") if self._resuming() else None
        if saved is not None:
            g.set_state(saved)
        self.gens = {name: g}
        return g

    def _numpy_rng(self, name: str, seed: int, holder) -> None:
        """Register ``holder.rng`` (a BatchSampler's) for checkpoints; restore it if resuming."""
        saved = self.state.get("rng", {}).get(name) if self._resuming() else None
        if saved is not None:
            holder.rng.bit_generator.state = saved
        self.samplers = {name: holder}

    def _sampler(self, name: str, seed: int,
                 policy: Optional[CaptionPolicy] = None) -> BatchSampler:
        s = BatchSampler(seed, self.cfg.sizes.size, "cpu", policy=policy)
        self._numpy_rng(name, seed, s)
        return s

    def _optimizer(self, params, lr: float, betas=(0.9, 0.99)) -> torch.optim.Optimizer:
        """AdamW over ``params`` (a list of tensors, or of param groups that may name their
        own ``peak_lr``; the schedule scales each group's peak)."""
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        groups = [{**g, "peak_lr": g.get("peak_lr", lr)} for g in groups]
        opt = torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=0.0)
        scalars = self.state.get("opt")
        if scalars is not None and self._resuming():
            if len(scalars["param_groups"]) != len(groups):
                raise InputError("This run's text encoder was trained (--text-lr) in one chunk "
                                 "and frozen in another: resume with the setting it began "
                                 "with.")
            _load_optimizer(opt, self._restored, scalars, "opt")
            for g, want in zip(opt.param_groups, groups):  # this chunk's peaks rule
                g["peak_lr"] = want["peak_lr"]
        self.opt = opt
        return opt

    def _note_chunk(self) -> None:
        c = self.state["chunks"][-1]
        c["wall_s"] = round(time.monotonic() - self._t0, 1)
        mine = _cpu_seconds() - self._cpu0
        if self.group.world > 1:
            total = self.group.sum(mine)
            self._others_cpu = total - mine
        else:  # one process, or rank 0 inside a phase it runs alone
            total = mine + self._others_cpu
        c["cpu_s"] = round(total, 1)
        c["end"] = {"phase": self.state["phase"], "step": self.state["step"]}
        self.state["cpu_seconds"] = round(sum(ch.get("cpu_s", 0) for ch in self.state["chunks"]),
                                          1)
        self.state["wall_seconds"] = round(sum(ch.get("wall_s", 0)
                                               for ch in self.state["chunks"]), 1)

    # -- the chunk ----------------------------------------------------------------------
    def run(self, max_minutes: Optional[float] = None, max_steps: Optional[int] = None,
            resume: bool = True, restart_unet: bool = False,
            init_from: Optional[tuple[str, str]] = None) -> ChunkResult:
        """One chunk; ``init_from`` = (model folder, CLIP folder) starts a new work folder
        from a finished model's VAE and CLIP (:meth:`start_from`)."""
        if self.group.world > 1:
            torch.set_num_threads(1)
        elif self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        if restart_unet and not self.work.exists():
            raise InputError(f"--restart-unet needs a work folder with a trained VAE and CLIP; "
                             f"{self.work.folder} holds none.")
        if init_from and self.work.exists():
            raise InputError(f"{self.work.folder} holds a run already: --init-from starts a "
                             "new one (give a new --work; --resume continues that one).")
        if init_from:
            self.start_from(*init_from)
        elif (resume or restart_unet) and self.restore(restart_unet):
            pass
        elif self.work.exists() and not resume:
            raise InputError(f"{self.work.folder} holds an earlier training run: pass --resume "
                             "to continue it, or give a new --work folder.")
        self.group.barrier()  # every rank has set up before rank 0 writes anything
        self._last_ckpt = time.monotonic()
        self.state["chunks"].append({"start": {"phase": self.state["phase"],
                                               "step": self.state["step"]},
                                     "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                                     "host": platform.node(),
                                     "threads": torch.get_num_threads(),
                                     "workers": self.group.world,
                                     "steps": {p: getattr(self.cfg, f"{p}_steps")
                                               for p in ("vae", "clip", "unet")},
                                     "unet_object_weight": self.cfg.unet_object_weight,
                                     "unet_focus_share": self.cfg.unet_focus_share,
                                     "unet_lr": self.cfg.unet_lr,
                                     "text_lr": self.cfg.text_lr})
        self._budget = (self._t0 + 60 * max_minutes) if max_minutes else None
        self._steps_left = max_steps
        while self.state["phase"] in PHASES:
            phase = self.state["phase"]
            alone = self.group.world > 1 and phase not in SPLIT_PHASES
            finished = self._alone(phase) if alone else getattr(self, f"_phase_{phase}")()
            if not finished:
                self.checkpoint()
                return ChunkResult(False, phase, self.state["step"], self.state)
            nxt = PHASES.index(phase) + 1
            self.state["phase"], self.state["step"] = (PHASES[nxt] if nxt < len(PHASES)
                                                       else "done"), 0
            self.opt, self._restored = None, {}
            self.checkpoint()
            if alone:
                self.group.barrier()  # rank 0 has written what the phase made
                if self.group.rank:
                    self._reload()
        return ChunkResult(True, "done", 0, self.state)

    def _alone(self, phase: str) -> bool:
        """A phase --workers does not split: rank 0 runs it with one thread per worker while
        the other ranks wait; every rank learns whether it finished."""
        group = self.group
        finished = False
        if group.rank == 0:
            self.group = Group()
            torch.set_num_threads(group.world)
            try:
                finished = getattr(self, f"_phase_{phase}")()
            finally:
                self.group = group
                torch.set_num_threads(1)
        return group.agree(finished)[0]

    def _out_of_budget(self) -> bool:
        if self.cancel is not None and self.cancel.cancelled:
            return True
        if self._steps_left is not None and self._steps_left <= 0:
            return True
        return self._budget is not None and time.monotonic() >= self._budget

    def _loop(self, phase: str, total: int, lr: float, params, step_fn: Callable[[], torch.Tensor],
              after: Optional[Callable[[], None]] = None) -> bool:
        """Optimizer steps of a phase from the saved step to ``total``; False when the chunk's
        budget ran out first (the state is checkpointed by the caller)."""
        opt = self._optimizer(params, lr)
        trained = [p for g in opt.param_groups for p in g["params"]]
        losses = self.state["losses"][phase]
        t_phase = time.monotonic()
        start = self.state.get("unet_restart", 0) if phase == "unet" else 0
        while self.state["step"] < total:
            # rank 0's clock and budget rule every rank
            stop, due = self.group.agree(self._out_of_budget(), time.monotonic() - self._last_ckpt
                                         > 60 * self.cfg.checkpoint_minutes)
            if stop:
                return False
            if due:
                self.checkpoint()
            k = self.state["step"]
            span = total - start
            f = lr_factor(k - start, span, min(self.cfg.warmup, max(1, span // 10)))
            for g in opt.param_groups:
                g["lr"] = g["peak_lr"] * f
            opt.zero_grad(set_to_none=True)
            loss = self.group.average_grads(trained, step_fn())
            opt.step()
            if after is not None:
                after()
            self.state["step"] = k + 1
            if self._steps_left is not None:
                self._steps_left -= 1
            losses.append([k + 1, round(float(loss), 6)])
            if (k + 1) % 25 == 0 or k + 1 == total:
                done = max(1, k + 1 - (self._phase_start or 0))
                eta = (time.monotonic() - t_phase) / done * (total - k - 1)
                self.progress(Event(k + 1, total, f"{phase} step {k + 1}", stage=phase,
                                    metrics={"loss": float(loss)}, eta=eta))
        return True

    # -- phases ---------------------------------------------------------------------------
    def _phase_vae(self) -> bool:
        cfg, s = self.cfg, self.cfg.sizes
        g = self._rng_gen("vae")
        sampler = self._sampler("vae", cfg.seed + 1, CaptionPolicy(motion_p=0.25))
        from .render import render

        self.vae.train().requires_grad_(True)
        full_from = int(cfg.vae_steps * (1 - cfg.vae_full_share))
        self._phase_start = self.state["step"]

        def step():
            crop = cfg.vae_crop if cfg.vae_crop and self.state["step"] < full_from else 0
            # a whole-image step holds as many pixels as a step of crops
            n = cfg.vae_batch if crop else max(1, round(cfg.vae_batch
                                                         * crop_area(cfg.vae_crop, s.size)))
            batch, _, _ = sampler.draw(n)
            mine = self.group.part(n)  # every rank draws the batch, renders its rows
            x, a = render(batch.select(mine), s.size, with_alpha=True)
            x = x * 2 - 1
            if crop:
                i, j = (torch.randint(0, (s.size - crop) // s.vae_scale + 1, (2,), generator=g)
                        * s.vae_scale).tolist()
                x, a = x[..., i:i + crop, j:j + crop], a[..., i:i + crop, j:j + crop]
            post = self.vae.encode(x).latent_dist
            # the posterior's sample (DiagonalGaussianDistribution.sample) with the whole
            # batch's noise drawn, so the generator stays in step on every rank
            eps = torch.randn((n,) + tuple(post.mean.shape[1:]), generator=g)[mine]
            rec = self.vae.decode(post.mean + post.std * eps).sample
            loss = vae_loss(rec, x, a, post.kl(), cfg)
            loss.backward()
            return loss.detach()

        return self._loop("vae", cfg.vae_steps, cfg.vae_lr, list(self.vae.parameters()), step)

    def _phase_scale(self) -> bool:
        """1 / std of sampled latents over ``scale_samples`` fresh images."""
        cfg = self.cfg
        sampler = BatchSampler(cfg.seed + 7, cfg.sizes.size)
        g = torch.Generator().manual_seed(cfg.seed + 8)
        self.vae.eval()
        zs = []
        with torch.no_grad():
            for _ in range(max(1, cfg.scale_samples // 256)):
                x, _ = sampler(min(256, cfg.scale_samples))
                zs.append(self.vae.encode(x).latent_dist.sample(generator=g))
        self.state["scaling_factor"] = float(1.0 / torch.cat(zs).std())
        return True

    def _phase_clip(self) -> bool:
        cfg = self.cfg
        self._rng_gen("clip")
        sampler = self._sampler("clip", cfg.seed + 2)
        tokens = TokenCache(self.tok)
        self.clip.train().requires_grad_(True)
        self._phase_start = self.state["step"]

        def step():
            x, caps = sampler(cfg.clip_batch)
            out = self.clip(input_ids=tokens(caps, "cpu"), pixel_values=x)
            loss = clip_loss(out.logits_per_image, caps)
            loss.backward()
            return loss.detach()

        return self._loop("clip", cfg.clip_steps, cfg.clip_lr, list(self.clip.parameters()), step)

    def _phase_encode(self) -> bool:
        """Render and encode ``dataset`` training scenes once (resumable by batch)."""
        cfg = self.cfg
        path = self.work.folder / "dataset.safetensors"
        self.vae.eval()
        self.data = LatentSet.resume(path, cfg.dataset, cfg.seed + 5, cfg.sizes)
        sf = self.state["scaling_factor"]
        batch = 256
        while self.data.n_done < cfg.dataset:
            if self._out_of_budget():
                self.data.save(path)
                return False
            n = self.data.encode_next(self.vae, batch, sf)
            if self._steps_left is not None:
                self._steps_left -= 1
            self.state["step"] = self.data.n_done
            self.progress(Event(self.data.n_done, cfg.dataset, "encoding the training scenes",
                                stage="encode"))
            if n == 0:
                break
            if time.monotonic() - self._last_ckpt > 60 * self.cfg.checkpoint_minutes:
                self.data.save(path)
                self.checkpoint()
        self.data.save(path)
        return True

    def _unet_parts(self, data: bool = True):
        if self.text_encoder is None:
            self.text_encoder = text_encoder_from_clip(self.clip).eval().requires_grad_(False)
            # a text encoder trained with the U-Net (--text-lr) continues from its checkpoint
            # (the same tower as the CLIP's until the U-Net phase began)
            saved = {k[5:]: v for k, v in self._restored.items() if k.startswith("text/")}
            if saved:
                self.text_encoder.load_state_dict(saved)
            if self.cfg.text_lr or saved:
                self.ema_text = EMA(self.text_encoder, self.cfg.ema_decay)
                ema = {k[9:]: v for k, v in self._restored.items() if k.startswith("ema_text/")}
                if ema:
                    self.ema_text.model.load_state_dict(ema)
                    self.ema_text.n = int(self.state.get("ema_n", 0))
        if data and self.data is None:
            self.data = LatentSet.resume(self.work.folder / "dataset.safetensors",
                                         self.cfg.dataset, self.cfg.seed + 5, self.cfg.sizes)

    def _phase_unet(self) -> bool:
        from diffusers import DDPMScheduler

        cfg = self.cfg
        self._unet_parts()
        g = self._rng_gen("unet")
        holder = _RngHolder(np.random.default_rng(cfg.seed + 3))
        self._numpy_rng("unet-captions", cfg.seed + 3, holder)
        caps = holder.rng
        sched = DDPMScheduler(**SD_BETAS, prediction_type="epsilon")
        alphas = sched.alphas_cumprod
        tokens = TokenCache(self.tok)
        emb_cache: dict[str, torch.Tensor] = {}
        policy = CaptionPolicy(empty_p=cfg.cfg_dropout)
        self.unet.train().requires_grad_(True)
        self.ema = EMA(self.unet, cfg.ema_decay)
        ema_saved = {k[4:]: v for k, v in self._restored.items() if k.startswith("ema/")}
        if ema_saved and self._resuming():
            self.ema.model.load_state_dict(ema_saved)
            self.ema.n = int(self.state.get("ema_n", self.state["step"]))
        self._phase_start = self.state["step"]

        train_text = cfg.text_lr > 0
        self.text_encoder.train(train_text).requires_grad_(train_text)

        def embed(captions: list[str]) -> torch.Tensor:
            if train_text:  # the encoder changes every step: nothing to cache
                return self.text_encoder(tokens(captions, "cpu"))[0]
            missing = [c for c in dict.fromkeys(captions) if c not in emb_cache]
            if missing:
                with torch.no_grad():
                    out = self.text_encoder(tokens(missing, "cpu"))[0]
                emb_cache.update(zip(missing, out))
            return torch.stack([emb_cache[c] for c in captions])

        def step():
            idx = torch.randint(0, len(self.data), (cfg.unet_batch,), generator=g)
            captions = self.data.captions(idx.numpy(), caps, policy)
            noise = torch.randn((cfg.unet_batch,) + self.data.latents.shape[1:], generator=g)
            t = sample_timesteps(cfg.unet_batch, cfg, g)
            # every rank draws the whole batch (the RNGs stay in step), computes its rows
            mine = self.group.part(cfg.unet_batch)
            idx, captions, noise, t = idx[mine], captions[mine], noise[mine], t[mine]
            lat = self.data.latents[idx].float()
            emb = embed(captions)
            a = alphas[t].view(-1, 1, 1, 1)
            noisy = a.sqrt() * lat + (1 - a).sqrt() * noise  # q(x_t | x_0), DDPM eq. 4
            pred = self.unet(noisy, t, encoder_hidden_states=emb).sample
            cells = (self.data.object_mask(idx.numpy(), cfg.sizes.vae_scale)
                     if cfg.unet_object_weight else None)
            loss = unet_loss(pred, noise, alphas[t], cfg, cells)
            loss.backward()
            return loss.detach()

        params = [{"params": list(self.unet.parameters())}]
        if train_text:
            params.append({"params": list(self.text_encoder.parameters()),
                           "peak_lr": cfg.text_lr})

        def after():
            self.ema.update(self.unet)
            if self.ema_text is not None:
                self.ema_text.update(self.text_encoder)

        return self._loop("unet", cfg.unet_steps, cfg.unet_lr, params, step, after=after)

    def _phase_save(self) -> bool:
        self._unet_parts(data=False)
        if self.ema is None:  # restored after the U-Net phase: its EMA is in the checkpoint
            self.ema = EMA(self.unet, self.cfg.ema_decay)
            self.ema.model.load_state_dict({k[4:]: v for k, v in self._restored.items()
                                            if k.startswith("ema/")})
        self.vae.register_to_config(scaling_factor=self.state["scaling_factor"])
        text = self.ema_text.model if self.ema_text is not None else self.text_encoder
        save_pipeline(self.cfg.out, self.vae, self.ema.model, text.eval(), self.tok)
        save_clip(self.cfg.clip_out, self.clip, self.tok, self.cfg.sizes.size)
        self.state["mb"] = {"sd": round(folder_mb(self.cfg.out), 2),
                            "clip": round(folder_mb(self.cfg.clip_out), 2)}
        return True

    def _phase_eval(self) -> bool:
        from .evaluate import run_evaluation

        cfg = self.cfg
        res = run_evaluation(cfg.out, cfg.clip_out, cfg.out, cfg.eval_n, cfg.eval_steps,
                             cfg.eval_guidance, 0, "cpu", self.progress)
        # and at the sampling settings users pick (30 DDIM steps, guidance 5)
        fast = run_evaluation(cfg.out, cfg.clip_out, None, cfg.eval_n, 30, 5.0, 0, "cpu",
                              self.progress, clip=False)
        res["at_30_steps"] = {k: fast[k] for k in ("colour_acc", "shape_acc", "background_acc")}
        self.state["eval"] = res
        return True


class _RngHolder:
    """Lets a bare numpy Generator be checkpointed like a BatchSampler's."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng


def crop_area(crop: int, size: int) -> float:
    """The share of a whole image a crop covers (a whole-image batch holds that many fewer
    images, so each step costs about the same)."""
    return (crop / size) ** 2 if crop else 1.0


# ----------------------------------------------------------------------------- the command

def train_log(state: dict) -> dict:
    """The log written beside the model (assets/toy-sd/train_log.json)."""
    return {
        "device": "cpu", "torch": torch.__version__, "seed": state["config"]["seed"],
        "cpu_seconds": state.get("cpu_seconds"), "wall_seconds": state.get("wall_seconds"),
        "cpu": platform.processor() or platform.machine(),
        "chunks": state["chunks"], "scaling_factor": state.get("scaling_factor"),
        "final_loss": {p: (float(np.mean([v for _, v in state["losses"][p][-10:]]))
                           if state["losses"].get(p) else None) for p in ("vae", "clip", "unet")},
        "config": state["config"], "mb": state.get("mb"), "eval": state.get("eval"),
        "dropped_chunks": state.get("dropped_chunks", []),
        "init_from": state.get("init_from"),
        "rerun": "vcstudio toyworld train --work DIR [--resume] [--chunk-minutes M]",
    }


def _run_parallel(cfg, progress, cancel, resume, max_minutes, max_steps, restart_unet,
                  init_from) -> ChunkResult:
    """One chunk on ``cfg.workers`` processes: this one is rank 0 (progress, budget, files);
    the others are spawned here and end with the chunk. Its clocks start before the spawn, so
    their start-up counts in the chunk's wall time."""
    started = (time.monotonic(), _cpu_seconds())
    port, procs = start_helpers(cfg.workers, cfg, dict(resume=resume, restart_unet=restart_unet,
                                                       init_from=init_from))
    group = None
    try:
        group = GlooGroup(0, cfg.workers, port)
        return Trainer(cfg, progress, cancel, group=group, started=started).run(
            max_minutes, max_steps, resume, restart_unet, init_from)
    finally:
        if group is not None:
            group.close()
        stop_helpers(procs)


def train_toyworld(cfg: ToyTrainConfig, progress: ProgressFn = null_progress,
                   cancel: Optional[CancelToken] = None, resume: bool = True,
                   max_minutes: Optional[float] = None,
                   max_steps: Optional[int] = None, restart_unet: bool = False,
                   init_from: Optional[tuple[str, str]] = None) -> ChunkResult:
    """One chunk of training (all of it without limits). When every phase is done, the log
    goes into ``cfg.out/train_log.json`` and the evaluation into ``cfg.out/eval.json``.
    ``restart_unet``: a fresh U-Net on the work folder's VAE, CLIP and encoded set."""
    if cfg.workers > 1:
        res = _run_parallel(cfg, progress, cancel, resume, max_minutes, max_steps, restart_unet,
                            init_from)
    else:
        res = Trainer(cfg, progress, cancel).run(max_minutes, max_steps, resume, restart_unet,
                                                 init_from)
    if res.done:
        log = train_log(res.log)
        write_json(Path(cfg.out) / "train_log.json", log)
        res.log = log
    return res


__all__ = ["ModelSizes", "ToyTrainConfig", "Trainer", "clip_loss", "clip_processor",
           "min_snr_weights", "sample_timesteps", "train_toyworld", "unet_loss", "vae_loss"]
