"""`vcstudio toyworld train`: the embedded default model, trained on the toy world.

Same classes as Stable Diffusion, small configs:
1. AutoencoderKL (4 blocks: 8x downsampling, 4 latent channels; 64x64 -> 8x8), trained on
   reconstruction (MSE + L1) + a 1e-6 KL term as in LDM; then ``scaling_factor`` = 1 / std of
   sampled latents (LDM sec. 4.3 / SD's 0.18215), written into the VAE config.
2. A small transformers CLIPModel trained contrastively (InfoNCE; identical captions in a batch
   count as positives) -> ``toy-clip``, so CLIP metrics mean something offline.
3. UNet2DConditionModel (SD block types, epsilon prediction, DDPM schedule: 1000 steps,
   scaled-linear betas 0.00085..0.012), 10% empty captions for classifier-free guidance, EMA
   weights saved. Text encoder: by default the toy CLIP's text tower, frozen - the arrangement
   of SD (a contrastively trained CLIP text encoder, frozen), which puts word meaning in the
   embeddings before the U-Net sees them and keeps the U-Net's gradient out of a tiny encoder
   (``text_encoder="joint"`` trains it with the U-Net instead).
Saved as a StableDiffusionPipeline folder (DDIM scheduler config, no safety checker) in fp16
safetensors. Reproducible from the seed and the step counts; with a time budget the step counts
come from a speed probe and are written to ``train_log.json`` so a rerun can pin them.
"""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..device import pick_device, precision_for
from ..errors import InputError
from ..models.tokenizer import build_clip_tokenizer
from ..progress import CancelToken, Event, ProgressFn, null_progress
from .data import BatchSampler, CaptionPolicy, TokenCache
from .world import vocabulary

SD_BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                beta_schedule="scaled_linear")


@dataclass
class ModelSizes:
    """Architecture knobs. The default keeps the SD folder ~25 MB in fp16."""

    size: int = 64
    vae_channels: tuple[int, ...] = (32, 64, 64, 64)  # 4 blocks = 8x downsampling
    vae_layers: int = 2
    vae_groups: int = 32
    unet_channels: tuple[int, ...] = (64, 128, 128)
    unet_layers: int = 2
    unet_heads: int = 8
    unet_groups: int = 32
    text_width: int = 192
    text_layers: int = 4
    text_heads: int = 4
    vision_width: int = 192
    vision_layers: int = 4
    vision_heads: int = 4
    patch: int = 8
    projection_dim: int = 192
    max_length: int = 77  # SD pads prompts to the tokenizer's model_max_length

    @classmethod
    def tiny(cls) -> "ModelSizes":
        """For tests: seconds on a CPU."""
        return cls(size=32, vae_channels=(8, 16, 16, 16), vae_layers=1, vae_groups=8,
                   unet_channels=(16, 32, 32), unet_layers=1, unet_heads=2, unet_groups=8,
                   text_width=32, text_layers=1, text_heads=2, vision_width=32, vision_layers=1,
                   vision_heads=2, patch=8, projection_dim=32, max_length=16)


@dataclass
class ToyTrainConfig:
    out: str = "assets/toy-sd"
    clip_out: str = "assets/toy-clip"
    seed: int = 0
    minutes: float = 8.0  # total budget when step counts are not given
    shares: tuple[float, float, float] = (0.2, 0.12, 0.68)  # vae, clip, unet
    vae_steps: Optional[int] = None
    clip_steps: Optional[int] = None
    unet_steps: Optional[int] = None
    batch: Optional[int] = None  # None: 256 on CUDA, 16 on CPU
    vae_lr: float = 1e-3
    clip_lr: float = 1e-3
    unet_lr: float = 4e-4
    kl_weight: float = 1e-6
    cfg_dropout: float = 0.1
    ema_decay: float = 0.999
    scale_samples: int = 2048  # images whose latents set the VAE scaling factor
    text_encoder: str = "clip"  # "clip": toy CLIP text tower, frozen; "joint": trained with the U-Net
    device: Optional[str] = None
    mixed_precision: str = "auto"
    sizes: ModelSizes = field(default_factory=ModelSizes)


# ----------------------------------------------------------------------------- model builders

def build_tokenizer(folder):
    """The world's CLIPTokenizer: each world word is one token."""
    return build_clip_tokenizer(vocabulary(), folder)


def build_vae(s: ModelSizes):
    from diffusers import AutoencoderKL

    n = len(s.vae_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=s.vae_channels,
                         layers_per_block=s.vae_layers, latent_channels=4, norm_num_groups=s.vae_groups,
                         sample_size=s.size)


def build_unet(s: ModelSizes):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=s.size // 8, in_channels=4, out_channels=4, block_out_channels=s.unet_channels,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=s.unet_layers, cross_attention_dim=s.text_width,
        attention_head_dim=s.unet_heads, norm_num_groups=s.unet_groups)


def _special_ids(tok) -> dict:
    return dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)


def build_clip(s: ModelSizes, tok):
    from transformers import CLIPConfig, CLIPModel

    text = dict(hidden_size=s.text_width, intermediate_size=4 * s.text_width,
                num_hidden_layers=s.text_layers, num_attention_heads=s.text_heads,
                max_position_embeddings=s.max_length, projection_dim=s.projection_dim, **_special_ids(tok))
    vision = dict(hidden_size=s.vision_width, intermediate_size=4 * s.vision_width,
                  num_hidden_layers=s.vision_layers, num_attention_heads=s.vision_heads,
                  image_size=s.size, patch_size=s.patch, projection_dim=s.projection_dim)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=s.projection_dim))


def text_encoder_from_clip(clip):
    """A CLIPTextModel holding the CLIP model's text tower (what SD's text encoder is)."""
    from transformers import CLIPTextModel

    te = CLIPTextModel(clip.config.text_config)
    te.load_state_dict(clip.text_model.state_dict())  # transformers 5: CLIPTextModel is the tower itself
    return te


def build_text_encoder(s: ModelSizes, tok):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        hidden_size=s.text_width, intermediate_size=4 * s.text_width, num_hidden_layers=s.text_layers,
        num_attention_heads=s.text_heads, max_position_embeddings=s.max_length, **_special_ids(tok)))


def clip_processor(tok, size: int):
    """Processor for the toy CLIP: resize + centre crop to ``size``, pixels mapped to [-1, 1]."""
    from transformers import CLIPImageProcessor, CLIPProcessor

    ip = CLIPImageProcessor(do_resize=True, size={"shortest_edge": size}, do_center_crop=True,
                            crop_size={"height": size, "width": size}, image_mean=[0.5] * 3,
                            image_std=[0.5] * 3)
    return CLIPProcessor(image_processor=ip, tokenizer=tok)


# ----------------------------------------------------------------------------- the loop

@dataclass
class PhaseResult:
    steps: int
    seconds: float
    losses: list[float]


def _lr_lambda(total: Callable[[], int], warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        n = max(total() - warmup, 1)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min((step - warmup) / n, 1.0)))
    return f


def run_phase(step_fn: Callable[[], float], params, lr: float, steps: Optional[int], budget_s: float,
              stage: str, progress: ProgressFn, cancel: Optional[CancelToken],
              on_step: Optional[Callable[[], None]] = None, probe: int = 20) -> PhaseResult:
    """AdamW + warmup/cosine over ``steps``; with ``steps=None`` the count fills ``budget_s``
    after timing the first ``probe`` steps (the count is returned so a rerun can pin it)."""
    fused = any(p.is_cuda for p in params)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, fused=fused or None)
    state = {"total": steps if steps is not None else 10**9}
    warmup = min(50, max(1, state["total"] // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(lambda: state["total"], warmup))
    losses: list = []  # loss tensors; read back (a device sync) only every 25 steps
    t0 = time.perf_counter()
    step = 0
    while step < state["total"]:
        if cancel is not None:
            cancel.check()
        opt.zero_grad(set_to_none=True)
        loss = step_fn()
        opt.step()
        sched.step()
        if on_step is not None:
            on_step()
        losses.append(loss)
        step += 1
        if steps is None and step == probe:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            per = (time.perf_counter() - t0) / probe
            state["total"] = max(probe, int(budget_s / per))
        if step % 25 == 0 or step == state["total"]:
            progress(Event(step, state["total"], f"{stage} step {step}", stage=stage,
                           metrics={"loss": float(loss)}))
    losses = [float(x) for x in losses]
    return PhaseResult(step, time.perf_counter() - t0, losses)


def _batch(cfg: ToyTrainConfig, dev) -> int:
    return cfg.batch or (256 if dev.type == "cuda" else 16)


def train_vae(vae, cfg: ToyTrainConfig, dev, prec, progress=null_progress, cancel=None) -> PhaseResult:
    sampler = BatchSampler(cfg.seed + 1, cfg.sizes.size, dev, policy=CaptionPolicy(motion_p=0.25))
    n = _batch(cfg, dev)
    vae.train().requires_grad_(True)

    def step():
        x, _ = sampler(n)
        with prec.autocast():
            post = vae.encode(x).latent_dist
            rec = vae.decode(post.sample()).sample
        rec = rec.float()
        loss = F.mse_loss(rec, x) + 0.1 * F.l1_loss(rec, x) + cfg.kl_weight * post.kl().float().mean()
        loss.backward()
        return loss.detach()

    budget = cfg.minutes * 60 * cfg.shares[0]
    return run_phase(step, list(vae.parameters()), cfg.vae_lr, cfg.vae_steps, budget, "vae",
                     progress, cancel)


@torch.no_grad()
def latent_scaling_factor(vae, cfg: ToyTrainConfig, dev, prec, n: Optional[int] = None) -> float:
    """1 / std of sampled latents over ``n`` fresh images (LDM's rescaling, SD's 0.18215)."""
    sampler = BatchSampler(cfg.seed + 7, cfg.sizes.size, dev)
    vae.eval()
    zs = []
    n = n or cfg.scale_samples
    per = min(n, max(_batch(cfg, dev), 256))  # no_grad encode: big chunks are cheap
    for _ in range(max(1, n // per)):
        x, _ = sampler(per)
        with prec.autocast():
            zs.append(vae.encode(x).latent_dist.sample().float())
    return float(1.0 / torch.cat(zs).std())


def clip_loss(logits_per_image: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP eq.); identical captions in the batch share the positive mass."""
    ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    lab = torch.tensor([ids[c] for c in captions], device=logits_per_image.device)
    same = (lab[:, None] == lab[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    li = logits_per_image.float()
    return 0.5 * (F.cross_entropy(li, target) + F.cross_entropy(li.t(), target))


def train_clip(clip, tok, cfg: ToyTrainConfig, dev, prec, progress=null_progress, cancel=None) -> PhaseResult:
    sampler = BatchSampler(cfg.seed + 2, cfg.sizes.size, dev)
    tokens = TokenCache(tok)
    n = _batch(cfg, dev)
    clip.train().requires_grad_(True)

    def step():
        x, caps = sampler(n)
        ids = tokens(caps, dev)
        with prec.autocast():
            out = clip(input_ids=ids, pixel_values=x)  # processor maps pixels to [-1, 1] too
        loss = clip_loss(out.logits_per_image, caps)
        loss.backward()
        return loss.detach()

    budget = cfg.minutes * 60 * cfg.shares[1]
    return run_phase(step, list(clip.parameters()), cfg.clip_lr, cfg.clip_steps, budget, "clip",
                     progress, cancel)


class EMA:
    """Exponential moving average of parameters, with the usual (1+n)/(10+n) warm start."""

    def __init__(self, model, decay: float) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.n = 0

    @torch.no_grad()
    def update(self, model) -> None:
        self.n += 1
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        ema_p = list(self.model.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1 - d)


def train_unet(unet, vae, text_encoder, tok, cfg: ToyTrainConfig, dev, prec, progress=null_progress,
               cancel=None) -> tuple[PhaseResult, object]:
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(**SD_BETAS, prediction_type="epsilon")
    alphas = sched.alphas_cumprod.to(dev)
    sampler = BatchSampler(cfg.seed + 3, cfg.sizes.size, dev,
                           policy=CaptionPolicy(empty_p=cfg.cfg_dropout))
    tokens = TokenCache(tok)
    n = _batch(cfg, dev)
    sf = vae.config.scaling_factor
    vae.eval().requires_grad_(False)
    joint = cfg.text_encoder == "joint"
    text_encoder.train(joint).requires_grad_(joint)
    unet.train().requires_grad_(True)
    ema = EMA(unet, cfg.ema_decay)
    gen = torch.Generator(dev).manual_seed(cfg.seed + 4)

    def step():
        x, caps = sampler(n)
        ids = tokens(caps, dev)
        with torch.no_grad(), prec.autocast():
            lat = vae.encode(x).latent_dist.sample(generator=gen).float() * sf
        with torch.set_grad_enabled(joint), prec.autocast():
            emb = text_encoder(ids)[0]
        noise = torch.randn(lat.shape, generator=gen, device=dev)
        t = torch.randint(0, sched.config.num_train_timesteps, (lat.shape[0],), generator=gen, device=dev)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * lat + (1 - a).sqrt() * noise  # DDPM forward process q(x_t | x_0)
        with prec.autocast():
            pred = unet(noisy, t, encoder_hidden_states=emb).sample
        loss = F.mse_loss(pred.float(), noise)
        loss.backward()
        return loss.detach()

    params = list(unet.parameters()) + (list(text_encoder.parameters()) if joint else [])
    budget = cfg.minutes * 60 * cfg.shares[2]
    res = run_phase(step, params, cfg.unet_lr, cfg.unet_steps, budget, "unet", progress, cancel,
                    on_step=lambda: ema.update(unet))
    return res, ema.model


# ----------------------------------------------------------------------------- saving

def _atomic_dir(out: Path, write: Callable[[Path], None]) -> None:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def save_pipeline(out, vae, unet, text_encoder, tok, log: Optional[dict] = None) -> Path:
    """A standard diffusers StableDiffusionPipeline folder in safetensors: U-Net and VAE in fp16
    (diffusers loads them in the pipeline's dtype, fp32 by default), the text encoder in fp32
    (transformers keeps a checkpoint's dtype, so an fp16 encoder would break a plain
    ``StableDiffusionPipeline.from_pretrained(folder)`` on CPU with a Half/Float mismatch) with
    fp16-rounded values, as the toy CLIP folder holds the same tower."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    scheduler = DDIMScheduler(**SD_BETAS, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                              prediction_type="epsilon")
    pipe = StableDiffusionPipeline(vae=copy.deepcopy(vae).cpu(), text_encoder=copy.deepcopy(text_encoder).cpu(),
                                   tokenizer=tok, unet=copy.deepcopy(unet).cpu(), scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.unet.to(torch.float16)
    pipe.vae.to(torch.float16)
    # fp16-rounded like save_clip's copy of the same (frozen) text tower, stored as fp32
    pipe.text_encoder.to(torch.float16).to(torch.float32)
    out = Path(out)

    def write(d: Path) -> None:
        pipe.save_pretrained(d, safe_serialization=True)
        if log is not None:
            (d / "train_log.json").write_text(json.dumps(log, indent=1))
            (d / "README.md").write_text(_model_card(log))

    _atomic_dir(out, write)
    return out


def save_clip(out, clip, tok, size: int) -> Path:
    out = Path(out)
    model = copy.deepcopy(clip).cpu().to(torch.float16)

    def write(d: Path) -> None:
        model.save_pretrained(d, safe_serialization=True)
        clip_processor(tok, size).save_pretrained(d)

    _atomic_dir(out, write)
    return out


def _model_card(log: dict) -> str:
    return (
        "# vcstudio toy-sd (offline demo model)\n\n"
        "A tiny Stable-Diffusion-architecture model (AutoencoderKL + UNet2DConditionModel + "
        "CLIPTextModel) trained by `vcstudio toyworld train` on procedurally drawn toy scenes "
        "(coloured shapes on simple backgrounds). It only knows the toy world's words "
        "(see tokenizer/vocab.json). Use a real Stable Diffusion checkpoint for real images.\n\n"
        f"Training log: seed {log.get('seed')}, steps {log.get('steps')}, device {log.get('device')}.\n"
        + USAGE)


USAGE = """
Load it with plain diffusers (CPU, fp32; the U-Net and VAE are stored in fp16, the text encoder
in fp32):

```python
from diffusers import StableDiffusionPipeline

pipe = StableDiffusionPipeline.from_pretrained("assets/toy-sd")
image = pipe("a red circle on the beach", num_inference_steps=25, height=64, width=64).images[0]
```
"""


def folder_mb(path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


# ----------------------------------------------------------------------------- the job

def train_toyworld(cfg: ToyTrainConfig, progress: ProgressFn = null_progress,
                   cancel: Optional[CancelToken] = None) -> dict:
    """Train VAE -> toy CLIP -> U-Net and save both folders. Returns the training log."""
    if cfg.text_encoder not in ("clip", "joint"):
        raise InputError("text_encoder must be 'clip' (frozen toy-CLIP text tower) or 'joint'.")
    if cfg.sizes.size % 8:
        raise InputError("The toy model's image size must be a multiple of 8 (8x VAE downsampling).")
    dev = pick_device(cfg.device)
    prec = precision_for(dev, cfg.mixed_precision)
    torch.manual_seed(cfg.seed)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    t_start = time.perf_counter()
    tok_dir = Path(cfg.out).with_name(Path(cfg.out).name + ".tokenizer")
    tok = build_clip_tokenizer(vocabulary(), tok_dir, model_max_length=cfg.sizes.max_length)
    shutil.rmtree(tok_dir, ignore_errors=True)

    vae = build_vae(cfg.sizes).to(dev)
    r_vae = train_vae(vae, cfg, dev, prec, progress, cancel)
    sf = latent_scaling_factor(vae, cfg, dev, prec)
    vae.register_to_config(scaling_factor=sf)

    clip = build_clip(cfg.sizes, tok).to(dev)
    r_clip = train_clip(clip, tok, cfg, dev, prec, progress, cancel)
    clip.eval().requires_grad_(False)

    if cfg.text_encoder == "clip":
        text_encoder = text_encoder_from_clip(clip).to(dev)
    else:
        text_encoder = build_text_encoder(cfg.sizes, tok).to(dev)
    unet = build_unet(cfg.sizes).to(dev)
    r_unet, ema_unet = train_unet(unet, vae, text_encoder, tok, cfg, dev, prec, progress, cancel)

    def tail(r: PhaseResult) -> float:
        vals = [x for x in r.losses[-50:] if math.isfinite(x)]
        return float(sum(vals) / max(len(vals), 1))

    log = {
        "seed": cfg.seed, "device": str(dev), "torch": torch.__version__,
        "steps": {"vae": r_vae.steps, "clip": r_clip.steps, "unet": r_unet.steps},
        "seconds": {"vae": r_vae.seconds, "clip": r_clip.seconds, "unet": r_unet.seconds,
                    "total": time.perf_counter() - t_start},
        "final_loss": {"vae": tail(r_vae), "clip": tail(r_clip), "unet": tail(r_unet)},
        "scaling_factor": sf, "batch": _batch(cfg, dev),
        "config": {k: v for k, v in asdict(cfg).items() if k != "sizes"}, "sizes": asdict(cfg.sizes),
        "rerun": (f"vcstudio toyworld train --seed {cfg.seed} --vae-steps {r_vae.steps} "
                  f"--clip-steps {r_clip.steps} --unet-steps {r_unet.steps} --batch {_batch(cfg, dev)}"),
    }
    save_pipeline(cfg.out, vae, ema_unet, text_encoder, tok, log)
    save_clip(cfg.clip_out, clip, tok, cfg.sizes.size)
    log["mb"] = {"sd": folder_mb(cfg.out), "clip": folder_mb(cfg.clip_out)}
    (Path(cfg.out) / "train_log.json").write_text(json.dumps(log, indent=1))
    log["losses"] = {"vae": r_vae.losses, "clip": r_clip.losses, "unet": r_unet.losses}
    return log
