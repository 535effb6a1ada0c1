"""Dual Consistency Training (DCT paper, Secs. 3.3-4) as a tuning method.

    total = L_denoise + lam * L_consistency,  L_consistency = alpha L_sem + (1 - alpha) L_tex (eq. 11)

* MS-Adapter (eq. 5) in every transformer block, trainable (``models/adapter.py``);
* semantic features: the patch-token grid of a frozen CLIP image tower (open_clip, ViT-B/32 by
  default); texture features: frozen VGG19 relu1_1..relu4_1 (torchvision; offline the
  EfficientNet-Lite0 stand-in, labelled so in the run's meta.json);
* both compared with the real clip's features in the frequency domain (eqs. 7, 10,
  ``freq_loss.py``), weighted by a CLWS (eqs. 6, 8, 9, ``clws.py``).

The gradient path the paper needs (DESIGN "Method notes"): x0 predicted from the model output at
t (on the autograd graph) -> VAE decode of a random subset of frames at reduced size -> feature
nets -> loss. Nothing here runs under no_grad except the targets, so the consistency terms move the
trainable weights (tests/test_dct.py checks that they do).

Every part has a switch (Table 3: ``adapter``, ``semantic``, ``texture``; Table 2: ``clws``); with
all three off the method is the Tune-A-Video baseline. Each term is logged per step (``l_sem``,
``l_tex``, ``alpha``, ``l_cons``; ``cons`` is lam * l_cons as added to the total) and alpha is
plotted to ``clws_alpha.png`` in the run folder at the end.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F

from ..config import TRAIN_TIMESTEPS
from ..errors import InputError, ModelNotFoundError
from ..models.adapter import ADAPTER_PATTERN, SITES, install_ms_adapters
from .base import TOTAL, Cost, Plotted, Preset, StepState, TuneMethod
from .clws import CLWS_NAMES, make_clws
from ..settings import setting
from .freq_loss import feature_loss

@dataclass
class DCTConfig:
    """Dual Consistency Training switches (DCT paper, Table 3 ablations; Table 2 CLWS).

    The consistency losses need a gradient path (DESIGN "Method notes"): at each active step the
    predicted clean latents x0 of ``frames_per_step`` random frames are decoded by the VAE at
    ``decode_size`` (the latents are resized first: decode memory grows with its pixels), fed to
    CLIP and the texture net, and compared in the frequency domain with the same features of the
    real clip (eq. 10), weighted by CLWS (eq. 11). The defaults keep that cost small next to a
    24-frame 512x512 step: 2 frames at 256 px decode ~1/48 of the clip's pixels.

    Stepwise (the paper says the training is "stepwise"/"progressive" and gives no numbers): the
    consistency losses start after ``warmup`` x steps (the temporal layers and adapters first
    learn the clip by denoising alone) and only at timesteps t < ``t_max``: x0 predicted at
    very noisy t is a blur whose decode carries little semantics or texture, and its gradient
    through x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) grows like 1/sqrt(a) (x15 at t = 999).
    """

    adapter: bool = setting(True, flag="--no-adapter", label="MS-Adapter",
                            help="the MS-Adapter in every transformer block (eq. 5)")
    semantic: bool = setting(True, flag="--no-semantic", label="Semantic (CLIP)",
                             help="the semantic (CLIP) consistency loss")
    texture: bool = setting(True, flag="--no-texture", label="Texture (VGG)",
                            help="the texture (VGG) consistency loss")
    clws: str = setting("mul-fourier", choices=CLWS_NAMES, flag="--clws",
                        label="Loss weighting (CLWS)",
                        help="how alpha weighs the semantic vs texture loss over t (Table 2)")
    lam: float = 0.1  # total = denoise + lam * L_consistency
    adapter_ratios: tuple[float, float] = (0.25, 0.0625)  # bottleneck widths / block width (eq. 5)
    adapter_sites: tuple[str, ...] = ("attn1", "ff")  # after spatial attention, beside the FF
    clip_model: str = "ViT-B-32"  # any open_clip architecture, or a full spec (models/clip.py)
    clip_pretrained: str = "openai"  # open_clip tag; "random" for benchmarks/tests
    texture_model: str = "vgg19"  # or "efficientnet-lite0" (offline stand-in, labelled so)
    vgg_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    random_feature_weights: bool = False  # texture net with random weights: benchmarks/tests only
    frames_per_step: int = 2  # random subset of frames decoded per step (0 = all)
    decode_size: int = 256  # short side the predicted frames are decoded at (0 = full size)
    target: str = "decoded"  # "decoded": real clip latents through the same decode; "frames"
    phase_weight: float = 1.0  # phase vs amplitude term of eq. 10 split by eq. 7 (1 = eq. 10)
    clws_scales: tuple[int, ...] = (1, 2, 4)  # mul-fourier downsampling factors s (eq. 6)
    clws_cutoff: float = 0.5  # low/high frequency split, share of Nyquist
    warmup: float = 0.1  # consistency losses start after this share of steps
    t_max: int = 600  # and only for timesteps t < t_max (TRAIN_TIMESTEPS = all)



# VGG19 relu{k}_1 -> the EfficientNet-Lite0 tap at the same stride (models/vgg.py)
_VGG_TO_EFFNET = {"relu1": "stem", "relu2": "stage2", "relu3": "stage3", "relu4": "stage5",
                  "relu5": "stage7"}


# Table 3 of the DCT paper: which parts each ablation row keeps -> (adapter, semantic, texture)
TABLE3 = {"MS": (True, False, False), "S": (False, True, False), "T": (False, False, True),
          "MS+S": (True, True, False), "MS+T": (True, False, True), "S+T": (False, True, True),
          "DCT": (True, True, True)}
_CLWS_LABEL = {"fourier": "Fourier", "exponential": "exponential", "gaussian": "Gaussian",
               "linear": "linear", "constant": "constant"}


def _presets() -> tuple[Preset, ...]:
    """DCT full; DCT as published (its samples without classifier-free guidance, sec. 4:
    "we use the DDIM sampler and do not use classifier guidance"); Table 2's CLWS weightings;
    Table 3's ablations (the parts each row keeps). The other presets sample at the comparison's
    guidance, so a Compare row differs from the baseline's by the tuning alone."""
    out = [Preset("dct", "DCT full (mul-Fourier CLWS)", {"method": "dct"}),
           Preset("dct-paper", "DCT as published (no CFG)", {"method": "dct"},
                  {"guidance": 1.0})]
    out += [Preset(f"dct-clws-{c}", f"DCT, CLWS {label}", {"method": "dct", "dct.clws": c})
            for c, label in _CLWS_LABEL.items()]
    out.append(Preset("dct-no-adapter", "DCT, no adapter", {"method": "dct", "dct.adapter": False}))
    for row, (ms, sem, tex) in TABLE3.items():
        if row == "DCT" or row == "S+T":  # DCT = the full preset; S+T = "no adapter" above
            continue
        out.append(Preset(f"dct-table3-{row.lower().replace('+', '-')}", f"DCT ablation {row}",
                          {"method": "dct", "dct.adapter": ms, "dct.semantic": sem,
                           "dct.texture": tex}))
    return tuple(out)


# Memory/time of DCT's parts at SD-1.x scale (rough, to be calibrated by `vcstudio bench`):
# CLIP + VGG weights, and the VAE decode graph per decoded 512^2 frame
_FEATURE_NET_GIB = 0.6
_DECODE_GIB_PER_FRAME = 2.2
_TIME_FACTOR = 1.35


def bench_dct_config(frames_per_step: Optional[int] = None, decode_size: Optional[int] = None,
                     every_step: bool = True):
    """DCT with random-weight CLIP ViT-B/32 and VGG19 (the real architectures; speed does not
    depend on weight values). ``every_step``: the consistency terms run on every step (no
    warm-up, all t) -- the worst case; otherwise the default stepwise schedule."""
    import dataclasses

    d = DCTConfig(clip_pretrained="random", random_feature_weights=True)
    if frames_per_step is not None:
        d = dataclasses.replace(d, frames_per_step=frames_per_step)
    if decode_size is not None:
        d = dataclasses.replace(d, decode_size=decode_size)
    if every_step:
        d = dataclasses.replace(d, warmup=0.0, t_max=10 ** 9)
    return d


def clip_spec(d) -> str:
    """DCTConfig -> a models/clip.py spec: ``clip_model`` alone if it is already a full spec."""
    m = d.clip_model
    if "/" in m or ":" in m or Path(m).expanduser().is_dir():
        return m
    return f"{m}/{d.clip_pretrained}"


def load_semantic_net(d, device: torch.device):
    """The frozen CLIP the semantic loss uses. The default (ViT-B-32/openai) falls back offline
    to the embedded toy CLIP; the encoder's ``name`` says which one answered."""
    from ..models.clip import DEFAULT_CLIP, load_clip_encoder, load_default_clip_encoder

    spec = clip_spec(d)
    if spec == DEFAULT_CLIP:
        return load_default_clip_encoder(device)
    return load_clip_encoder(spec, device)


def load_texture_net(d, device: torch.device):
    """The frozen texture net: VGG19 at ``vgg_layers``; where its weights are missing and it is
    the default, the pretrained EfficientNet-Lite0 at the same strides stands in (labelled)."""
    from ..device import precision_for
    from ..models.vgg import load_encoder

    dtype = precision_for(device).frozen_dtype
    name = d.texture_model.lower().replace("_", "-")
    rnd = bool(d.random_feature_weights)
    if name == "vgg19":
        try:
            return load_encoder("vgg19", d.vgg_layers, device, dtype, random_weights=rnd)
        except ModelNotFoundError as e:
            print(f"DCT texture loss: {e} Using the offline stand-in EfficientNet-Lite0.",
                  file=sys.stderr)
    layers = _effnet_layers(d.vgg_layers)
    return load_encoder("efficientnet-lite0", layers, device, dtype, random_weights=rnd)


def _effnet_layers(layers) -> tuple[str, ...]:
    out = []
    for n in layers:
        out.append(_VGG_TO_EFFNET.get(n.split("_")[0], n))
    return tuple(dict.fromkeys(out))


def resize_latents(lat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Latents (B, C, n, h, w) resized per frame to ``size`` (bilinear, antialiased) before a
    decode at reduced size: the decode's memory and time grow with its pixels, and resizing
    the 4- or 16-channel latents costs next to nothing."""
    b, c, n, h, w = lat.shape
    if tuple(size) == (h, w):
        return lat
    z = lat.permute(0, 2, 1, 3, 4).reshape(b * n, c, h, w)
    z = F.interpolate(z, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return z.reshape(b, n, c, *size).permute(0, 2, 1, 3, 4)


# DCT's consistency losses share one axis (the same frequency-domain feature distance, eq. 10)
CONS_AXIS = "DCT consistency losses (frequency-domain feature distance)"


class DCTMethod(TuneMethod):
    """MS-Adapter + CLIP semantic + VGG texture frequency-domain consistency + CLWS."""

    name = "dct"
    sections = ("dct",)
    config = DCTConfig
    switches = ("adapter", "semantic", "texture", "clws")
    presets = _presets()
    plotted = (TOTAL,
               Plotted("l_sem", CONS_AXIS, "l_sem: semantic (CLIP)"),
               Plotted("l_tex", CONS_AXIS, "l_tex: texture (VGG)"),
               Plotted("l_cons", CONS_AXIS, "l_cons: CLWS-weighted (eq. 11)"),
               Plotted("alpha", "DCT CLWS weight alpha (semantic share, 0-1)",
                       "alpha (w_sem)"))

    @classmethod
    def cost(cls, cfg) -> Cost:
        """CLIP + VGG weights, and the decode graph of ``frames_per_step`` frames at
        ``decode_size`` (it keeps activations for the backward pass)."""
        d, dc = cfg.data, cfg.dct
        n = min(dc.frames_per_step or d.n_frames, d.n_frames)
        side = min(d.width, d.height) or 512
        k = min(1.0, dc.decode_size / side) if dc.decode_size else 1.0
        decode = _DECODE_GIB_PER_FRAME * n * k * k * (d.width * d.height) / (512 * 512)
        return Cost(_FEATURE_NET_GIB + decode, _TIME_FACTOR)

    @classmethod
    def bench_config(cls, cfg, frames_per_step=None, decode_size=None, every_step=True, **_):
        import dataclasses

        d = bench_dct_config(frames_per_step, decode_size, every_step)
        n, size = cfg.data.n_frames, cfg.data.width
        label = (f"{min(d.frames_per_step or n, n)} fr @ {min(d.decode_size or size, size)} px, "
                 f"{'every step' if d.warmup == 0 and d.t_max > TRAIN_TIMESTEPS else 'stepwise'}")
        return dataclasses.replace(cfg, dct=d), label

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        d = self.d = cfg.dct
        if d.clws not in CLWS_NAMES:
            raise InputError(f"Unknown CLWS {d.clws!r}; choose one of {', '.join(CLWS_NAMES)}.")
        if d.target not in ("decoded", "frames"):
            raise InputError(f"DCT target must be 'decoded' or 'frames', got {d.target!r}.")
        if d.lam < 0 or not 0 <= d.warmup <= 1 or d.frames_per_step < 0 or d.decode_size < 0:
            raise InputError("DCT: lam, frames_per_step and decode_size must be >= 0 and warmup "
                             "a share of the steps in [0, 1].")
        bad = [x for x in d.adapter_sites if x not in SITES]
        if d.adapter and (bad or not d.adapter_sites or not d.adapter_ratios
                          or not all(0 < r <= 1 for r in d.adapter_ratios)):
            raise InputError(f"DCT adapter: sites must be among {list(SITES)} (got "
                             f"{list(d.adapter_sites)}) and ratios in (0, 1] (got "
                             f"{list(d.adapter_ratios)}).")
        self.clws = make_clws(d.clws, scales=d.clws_scales, cutoff=d.clws_cutoff)
        self.frame_gen = torch.Generator().manual_seed(int(cfg.seed) + 1)  # own stream
        self.semantic = None  # ClipEncoder, loaded on first use (not needed for sampling)
        self.texture = None  # FeatureEncoder
        self.adapters: list = []
        self.device: Optional[torch.device] = None
        self._targets: dict[int, dict[str, list[torch.Tensor]]] = {}
        self._logs: dict[str, float] = {}

    # ------------------------------------------------------------------ model surgery
    def setup(self, model, base, device: torch.device) -> None:
        self.device = device
        if self.d.adapter:
            self.adapters = install_ms_adapters(model.unet, self.d.adapter_ratios,
                                                self.d.adapter_sites)

    def trainable_patterns(self) -> tuple[str, ...]:
        return (ADAPTER_PATTERN,) if self.d.adapter else ()

    @property
    def consistency_on(self) -> bool:
        return bool(self.d.semantic or self.d.texture)

    def load_feature_nets(self) -> None:
        """Load the frozen CLIP / texture nets the switches ask for (once)."""
        dev = self.device or torch.device("cpu")
        if self.d.semantic and self.semantic is None:
            self.semantic = load_semantic_net(self.d, dev)
        if self.d.texture and self.texture is None:
            self.texture = load_texture_net(self.d, dev)

    def summary(self) -> dict[str, Any]:
        """The switches, and which feature nets answered once they have loaded (tuning loads
        them at its first consistency step and records the summary again at the end)."""
        return {
            "adapter": bool(self.d.adapter), "semantic": bool(self.d.semantic),
            "texture": bool(self.d.texture), "clws": self.d.clws, "lam": self.d.lam,
            "adapters": len(self.adapters),
            "adapter_params": sum(p.numel() for a in self.adapters for p in a.parameters()),
            "semantic_net": getattr(self.semantic, "name", None),
            "texture_net": getattr(self.texture, "name", None),
            "frames_per_step": self.d.frames_per_step, "decode_size": self.d.decode_size,
            "warmup": self.d.warmup, "t_max": self.d.t_max}

    # ------------------------------------------------------------------ the consistency terms
    def warm(self, step: int, total: int) -> bool:
        """Whether the consistency terms run at all at ``step`` of ``total`` (switches, lam and
        the warm-up of the stepwise schedule); the noise level is the caller's test
        (``t < t_max``; on a flow DiT t = sigma (T - 1): methods/dit.py)."""
        return bool(self.consistency_on and self.d.lam != 0
                    and step >= math.ceil(self.d.warmup * total))

    def active(self, s: StepState) -> torch.Tensor | None:
        """Batch indices whose consistency terms run this step (stepwise schedule), or None."""
        if not self.warm(s.step, s.total):
            return None
        keep = (s.timesteps < self.d.t_max).nonzero().flatten()
        return keep if keep.numel() else None

    def pick_frames(self, n_frames: int) -> list[int]:
        n = self.d.frames_per_step or n_frames
        if n >= n_frames:
            return list(range(n_frames))
        return sorted(torch.randperm(n_frames, generator=self.frame_gen)[:n].tolist())

    def decoded_size(self, h: int, w: int, vae_scale: int) -> tuple[int, int]:
        """Latent (h, w) to decode at so the short image side is ``decode_size`` (never up)."""
        side = self.d.decode_size
        if not side or side >= min(h, w) * vae_scale:
            return h, w
        k = side / (min(h, w) * vae_scale)
        return max(1, round(h * k)), max(1, round(w * k))

    def decode(self, base, lat: torch.Tensor, grad: bool) -> torch.Tensor:
        """Latents (B, 4, n, h, w) -> images (B*n, 3, H, W) in [0, 1] at the decode size."""
        from ..models.encode import decode_latents

        b, c, n, h, w = lat.shape
        lat = resize_latents(lat, self.decoded_size(h, w, base.vae_scale))
        x = decode_latents(base, lat, grad=grad)  # (B, 3, n, H, W) in [-1, 1]
        x = x.permute(0, 2, 1, 3, 4).reshape(b * n, 3, x.shape[-2], x.shape[-1])
        return ((x + 1) / 2).clamp(0, 1)

    def features(self, images: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Semantic (CLIP patch-token grid) and texture (VGG maps) features, float32."""
        out: dict[str, list[torch.Tensor]] = {}
        if self.semantic is not None:
            out["sem"] = [self.semantic.image_tokens(images)]
        if self.texture is not None:
            out["tex"] = [f.float() for f in self.texture(images.to(self.texture.dtype))]
        return out

    @torch.no_grad()
    def targets(self, s: StepState, idx: list[int], size: tuple[int, int]
                ) -> dict[str, list[torch.Tensor]]:
        """Features of the real frames ``idx``, cached per frame (they never change).

        ``target="decoded"``: the clip's own latents through the same (resized) decode as the
        prediction, so the loss is zero exactly when x0 is predicted exactly; ``"frames"``: the
        real frames resized to the decoded size.
        """
        missing = [i for i in idx if i not in self._targets]
        if missing:
            if self.d.target == "decoded":
                imgs = self.decode(s.base, s.latents[:1, :, missing].float(), grad=False)
            else:
                imgs = F.interpolate(s.frames[missing].float(), size=size, mode="bilinear",
                                     align_corners=False, antialias=True).clamp(0, 1)
            feats = self.features(imgs)
            for j, i in enumerate(missing):
                self._targets[i] = {k: [m[j:j + 1] for m in v] for k, v in feats.items()}
        return {k: [torch.cat([self._targets[i][k][li] for i in idx])
                    for li in range(len(self._targets[idx[0]][k]))]
                for k in self._targets[idx[0]]}

    def extra_losses(self, s: StepState) -> dict[str, torch.Tensor]:
        self._logs = {}
        keep = self.active(s)
        if keep is None:
            return {}
        self.load_feature_nets()
        x0 = s.pred_x0()[keep]  # (b, 4, F, h, w), on the autograd graph
        b = x0.shape[0]
        idx = self.pick_frames(x0.shape[2])
        pred_img = self.decode(s.base, x0[:, :, idx], grad=True)
        tf = self.targets(s, idx, tuple(pred_img.shape[-2:]))
        t = float(s.timesteps[keep].float().mean())
        l_cons, self._logs = self.consistency(pred_img, tf, s.step, t, repeat=b)
        return {"cons": self.d.lam * l_cons}

    def consistency(self, pred_img: torch.Tensor, tf: dict[str, list[torch.Tensor]], step: int,
                    t: float, repeat: int = 1) -> tuple[torch.Tensor, dict[str, float]]:
        """L_consistency (eq. 11) of decoded predicted frames ``pred_img`` (N, 3, H, W) in
        [0, 1] against the real frames' features ``tf`` (repeated ``repeat`` times: the same
        clip for every batch item), the CLWS weight at step ``step`` and DDPM-scale timestep
        ``t`` -> (L_cons, logs ``alpha``, ``l_cons``, ``l_sem``, ``l_tex``). The one home of the
        term: the U-Net path above and the DiT path (methods/dit.py) both call it."""
        pf = self.features(pred_img)
        rep = lambda maps: [m.repeat(repeat, 1, 1, 1) for m in maps]  # noqa: E731
        l_sem = feature_loss(pf["sem"], rep(tf["sem"]), self.d.phase_weight) if "sem" in pf \
            else None
        l_tex = feature_loss(pf["tex"], rep(tf["tex"]), self.d.phase_weight) if "tex" in pf \
            else None
        if l_sem is not None and l_tex is not None:
            w_sem, w_tex = self.clws.weights(step, t, {k: [m.detach() for m in v]
                                                       for k, v in pf.items()})
            l_cons = w_sem * l_sem + w_tex * l_tex  # eq. 11
        else:  # one term switched off (Table 3 "S" / "T"): the other takes the whole weight
            w_sem = 1.0 if l_sem is not None else 0.0
            l_cons = l_sem if l_sem is not None else l_tex
        logs = {"alpha": float(w_sem), "l_cons": float(l_cons.detach())}
        if l_sem is not None:
            logs["l_sem"] = float(l_sem.detach())
        if l_tex is not None:
            logs["l_tex"] = float(l_tex.detach())
        return l_cons, logs

    def after_step(self, s: StepState) -> dict[str, float]:
        logs, self._logs = self._logs, {}
        return logs

    # ------------------------------------------------------------------ resume + report
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"frame_rng": self.frame_gen.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if "frame_rng" in state:
            self.frame_gen.set_state(state["frame_rng"].to(torch.uint8).cpu())

    def finish(self, run_dir, losses: list[dict]) -> None:
        """``clws_alpha.png``: the CLWS alpha of every step the consistency terms ran."""
        pts = [(r["step"], r["alpha"], r.get("t")) for r in losses if "alpha" in r]
        if self.consistency_on and pts:
            plot_alpha(pts, Path(run_dir) / "clws_alpha.png", self.d.clws)


def plot_alpha(points: list[tuple], path: Path, clws: str) -> Path:
    """Scatter of alpha per step (colour = timestep t), PNG through the Agg canvas, atomically."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state in a server

    from ..io.atomic import atomic_path

    steps = [p[0] for p in points]
    alpha = [p[1] for p in points]
    ts = [p[2] if p[2] is not None else 0 for p in points]
    fig = Figure(figsize=(6, 3), dpi=100)
    ax = fig.subplots()
    sc = ax.scatter(steps, alpha, c=ts, cmap="viridis", s=12, vmin=0, vmax=1000)
    ax.plot(steps, alpha, lw=0.6, color="gray", alpha=0.6)
    fig.colorbar(sc, ax=ax, label="timestep t")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("alpha (semantic weight)")
    ax.set_title(f"CLWS {clws}: L_cons = alpha L_sem + (1 - alpha) L_tex")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
