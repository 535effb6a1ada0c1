"""Dataclasses for every job, loaded from / saved to YAML.

Tune-A-Video's own YAML configs (pretrained_model_path, train_data, validation_data, ...) load
as-is through :func:`load_tune_config`, which recognises their keys.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import InputError

# Tune-A-Video's trainable modules (its trainable_modules: attn1.to_q, attn2.to_q, attn_temp): the
# query projections of both attentions + the temporal attention, its LayerNorm (norm_temp, ours
# "temporal.norm") frozen as there. "temporal.attn" / "temporal" name either route's temporal
# layers: on the AnimateDiff route they select the motion modules.
DEFAULT_TRAINABLE = ("attn1.to_q", "attn2.to_q", "temporal.attn")
# Tune-A-Video module names -> ours (its attn_temp / norm_temp are our temporal.attn / .norm)
TAV_MODULE_NAMES = {"attn_temp": "temporal.attn", "norm_temp": "temporal.norm"}
GROUPNORM_MODES = ("clip", "frame")  # TuneConfig.groupnorm (models/groupnorm.py)
# what a run config that predates a field was tuned with (load_run_config): per-frame GroupNorm,
# frame positions on, and inversion under the source prompt
LEGACY_RUN_DEFAULTS = {"groupnorm": "frame", "frame_positions": True,
                       "inversion_prompt": "source"}


@dataclass
class Limits:
    """Bounds on user input; a Space lowers them for its hardware."""

    max_frames: int = 128
    max_side: int = 1024
    min_side: int = 16
    max_source_frames: int = 20000
    max_upload_mb: float = 200.0
    max_steps: int = 5000
    max_long_frames: int = 10000  # length of a long video (co-denoised windows)
    # fan-out: how many things one request may start, checked before any of them runs
    max_variants: int = 64  # compare: distinct variants + tuned runs (duplicates count once)
    max_sweep_cells: int = 4096  # a sweep's grid, even with --yes (counted before it is built)
    max_windows: int = 1000  # long video: co-denoised windows
    max_candidates: int = 16  # long video: candidate clips at step k (masks + fusion)
    max_hub_run_mb: float = 8192.0  # open_hub: a pushed run's download


# the most sampling / inversion / preview steps any sampler takes: the training schedule's
# length (SD's and Wan's num_train_timesteps), past which DDIM / flow steps stop being distinct
TRAIN_TIMESTEPS = 1000
MAX_SAMPLING_STEPS = TRAIN_TIMESTEPS
MAX_PROMPT_CHARS = 10000  # far past CLIP's 77 tokens; bounds what a client can send


def check_prompt(text: Optional[str], what: str = "prompt", required: bool = True,
                 hint: str = "describe what the video should show",
                 max_chars: int = MAX_PROMPT_CHARS) -> str:
    """A prompt every job can use, or an InputError saying what to fix; returns ``text``.

    Text must be valid Unicode that encodes as UTF-8: a terminal in another encoding hands
    Python undecodable bytes as lone surrogates (``vcstudio edit --prompt $'\\xff'`` gives
    '\\udcff'), which the tokenizer and every file write would fail on later.
    """
    text = "" if text is None else text
    if not isinstance(text, str):
        raise InputError(f"The {what} must be text, got {type(text).__name__}.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        code = ord(text[e.start])
        bad = (f"the byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF
               else f"an unpaired surrogate U+{code:04X}")
        raise InputError(f"The {what} is not valid UTF-8 text ({bad} at character "
                         f"{e.start + 1}); retype it in a UTF-8 terminal or editor (e.g. with "
                         "LANG=C.UTF-8).") from None
    if "\x00" in text:
        raise InputError(f"The {what} holds a NUL character (at character "
                         f"{text.index(chr(0)) + 1}); retype it.")
    if required and not text.strip():
        raise InputError(f"The {what} is empty: {hint}.")
    if len(text) > max_chars:
        raise InputError(f"The {what} is {len(text)} characters long; keep it under {max_chars} "
                         "(the text encoder reads only its first 77 tokens).")
    return text


@dataclass
class DataConfig:
    """Which frames of which clip, at what size (Tune-A-Video ``train_data``)."""

    video_path: str = ""
    prompt: str = ""
    n_frames: int = 24
    start: int = 0
    stride: int = 2
    width: int = 512
    height: int = 512
    # the long side when width and/or height are 0: the other side follows the clip's aspect,
    # rounded to the model's multiple (the app's rule: a 480x240 clip at 64 -> 64x32); 0 with
    # width and height 0 = the model's native size as the long side
    size: int = 0
    resize: str = "crop"  # "crop" (cut the excess) or "pad" (letterbox); never stretch
    crop: str = "center"  # center | top | bottom | left | right: the part kept (crop), or where
    #                       the frame sits (pad); see vcstudio/io/resize.py


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

    adapter: bool = True
    semantic: bool = True
    texture: bool = True
    clws: str = "mul-fourier"  # mul-fourier | fourier | exponential | gaussian | linear | constant
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
    t_max: int = 600  # and only for timesteps t < t_max (1000 = all)


@dataclass
class APLAConfig:
    """APLA switches (APLA paper, Table 3 ablations)."""

    vgt: str = "pure"  # pure | hyper | none
    discriminator: bool = True
    hyper_loss: bool = True
    alpha: float = 1.0  # MSE weight (eq. 18)
    beta: float = 0.5  # L1 weight
    gamma: float = 0.1  # perceptual weight
    lam: float = 0.05  # adversarial weight lambda (eq. 20)
    # "" = the vgt_* sizes below; "small" or "paper" (D 768, 4+4 layers, 60.5M Pure / 97.1M
    # Hyper) replace vgt_dim, vgt_layers, vgt_temporal_layers, vgt_heads and vgt_patch
    vgt_preset: str = ""
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


@dataclass
class FgBgConfig:
    """Combined tuning (consistency-tuning paper, sec. 3.3): the fg/bg-weighted loss of eq. 20 on
    the fused clip.

    ``masks``: a file with the clip's foreground masks, bool/uint8 (F, H, W) at frame resolution
    (.npy, .npz with a ``masks`` array, or a folder of PNGs); they are brought to latent
    resolution when tuning. ``base_method`` is the method whose modules and extra losses are kept
    (the run being fine-tuned was tuned with it). The paper's lr 2e-6 / 250 steps are the
    defaults of ``vcstudio long --masks`` and of ``vcstudio tune --method fgbg``.
    """

    masks: str = ""
    l1: float = 1.0  # lambda_1: plain denoising loss L
    l2: float = 1.0  # lambda_2: foreground L_fg
    l3: float = 0.5  # lambda_3: background L_bg
    reduction: str = "all"  # all | masked (see methods/fgbg.py)
    threshold: Optional[float] = None  # binarise the latent masks at this value (None = soft)
    base_method: str = "baseline"


@dataclass
class ControlConfig:
    """One structure condition (ControlNet, Zhang et al. 2023; T2I-Adapter, Mou et al. 2023).

    ``kind``: where the condition frames come from -- ``canny`` (OpenCV edges), ``depth``
    (a transformers depth-estimation model, ``depth_model``), ``pose`` (an OpenPose-style
    detector from the optional ``controlnet_aux`` package) or ``video`` (``video`` holds the
    condition frames themselves, e.g. pose frames made elsewhere, as seed 001 feeds its adapter).
    ``model``: a ControlNetModel or T2IAdapter by hub id or local folder (its class decides which).
    ``video`` for the other kinds: the clip to extract from ("" = the tuned clip; a long video
    needs one as long as it). ``scale`` multiplies the residuals; they act from ``start`` to
    ``end`` (shares of the sampling steps, diffusers' control_guidance_start/end).
    """

    kind: str = "canny"  # canny | depth | pose | video
    model: str = ""
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0
    video: str = ""
    depth_model: str = ""  # "" = controls.DEFAULT_DEPTH_MODEL
    low: int = 100  # canny thresholds (OpenCV's hysteresis)
    high: int = 200


@dataclass
class ValidationConfig:
    """Samples made while tuning (Tune-A-Video ``validation_data`` + ``validation_steps``).

    Every ``every`` steps (0 = never) and at the end, each prompt is sampled with ``steps`` DDIM
    steps at ``guidance``, from the clip's DDIM inversion at the tune's ``inversion_steps``
    (``use_inversion``, Tune-A-Video's ``use_inv_latent``) or from seeded noise, into
    ``RUN/samples/sample-<step>/<prompt>.gif`` (Tune-A-Video's layout), listed in meta.json."""

    prompts: tuple[str, ...] = ()
    every: int = 0
    steps: int = 50
    guidance: float = 12.5
    use_inversion: bool = True
    fps: float = 8.0


@dataclass
class TuneConfig:
    """One-shot tuning of an inflated text-to-image model on one clip."""

    model: str = ""  # hub id, local diffusers folder or single checkpoint; "" = default
    data: DataConfig = field(default_factory=DataConfig)
    method: str = "baseline"  # baseline | dct | apla
    # "vcstudio": zero-init temporal attention after each transformer block; "animatediff":
    # diffusers' UNetMotionModel.from_unet2d with a MotionAdapter (models/motion.py)
    temporal: str = "vcstudio"
    motion_adapter: str = ""  # animatediff: hub id or folder; "" = fresh (identity) motion modules
    # vcstudio route: "clip" = ResNet GroupNorm statistics over all frames of the clip, as
    # Tune-A-Video's inflated ResNets compute them; "frame" = per frame (models/groupnorm.py)
    groupnorm: str = "clip"
    frame_positions: bool = False  # sinusoidal frame positions in temporal attention (TAV: none)
    steps: int = 500
    lr: float = 3e-5
    seed: int = 33
    batch_size: int = 1
    trainable: tuple[str, ...] = DEFAULT_TRAINABLE
    mixed_precision: str = "auto"  # auto | bf16 | fp16 | no
    gradient_checkpointing: bool = True
    compile: str = "auto"  # auto (CUDA only) | yes | no: torch.compile the U-Net
    max_grad_norm: float = 1.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-2
    checkpoint_every: int = 100
    preview_every: int = 0  # 0 = no previews
    preview_steps: int = 20
    inversion_steps: int = 50
    inversion_fixed_point: int = 0  # extra noise re-evaluations per inversion step (invert.py)
    # the prompt the clip is DDIM-inverted under: "" = the empty prompt (Tune-A-Video inverts
    # with prompt=""), "source" = the tuning prompt (data.prompt), any other text = that text
    inversion_prompt: str = ""
    dct: DCTConfig = field(default_factory=DCTConfig)
    apla: APLAConfig = field(default_factory=APLAConfig)
    fgbg: FgBgConfig = field(default_factory=FgBgConfig)
    init_from: str = ""  # a run folder whose delta initialises the trainable tensors
    # a video DiT (Wan2.1) tunes LoRA on its attention (q, k, v, out) instead of the U-Net's
    # trainables above: its rank (alpha = rank); unused on Stable Diffusion
    lora_rank: int = 16
    # structure conditions while tuning (seed 001 tunes with a T2I-Adapter fed pose frames);
    # frozen, they only shape what the trainable tensors learn
    control: list[ControlConfig] = field(default_factory=list)
    validation: ValidationConfig = field(default_factory=ValidationConfig)


def guided_passes(guidance: float) -> int:
    """U-Net passes per sampling step at this guidance scale: classifier-free guidance (two
    passes, conditional and unconditional) runs whenever the scale is not 1 (0 too) -- the
    rule the samplers follow (pipelines/sample.py, VideoEditPipeline) and the estimates count."""
    return 1 if float(guidance) == 1.0 else 2


@dataclass
class EditConfig:
    """Sampling an edit from a tuned run (Tune-A-Video ``validation_data``)."""

    prompt: str = ""
    negative: str = ""
    steps: int = 50
    guidance: float = 12.5
    seed: int = 33
    use_inversion: bool = True
    eta: float = 0.0
    control: list[ControlConfig] = field(default_factory=list)  # structure conditions
    # the inversion's prompt for this edit ("", "source" or text, as TuneConfig.inversion_prompt);
    # None = the run's own setting
    inversion_prompt: Optional[str] = None


@dataclass
class FlowEditConfig:
    """FlowEdit of a clip on a flow-matching model (Kulikov et al. 2024, "FlowEdit:
    Inversion-Free Text-Based Editing Using Pre-Trained Flow Models", Alg. 1): no inversion, no
    tuning. ``data`` picks the frames and size as a tune does (``data.prompt`` is the SOURCE
    prompt: what the clip shows); ``prompt`` is the target."""

    model: str = ""  # a Wan2.1 T2V folder or hub id
    data: DataConfig = field(default_factory=lambda: DataConfig(n_frames=17, stride=1, width=0,
                                                                height=0))
    prompt: str = ""  # the target: what the edit should show
    negative: str = ""
    steps: int = 50  # N
    n_max: int = 0  # steps taken, from the N-th noise level down; 0 = 2/3 of N (paper: 33/50)
    n_min: int = 0  # the last n_min steps sample plainly under the target
    n_avg: int = 1  # noises averaged per step
    source_guidance: float = 3.5
    target_guidance: float = 7.0
    seed: int = 33
    fps: float = 8.0
    metrics: tuple[str, ...] = ()


@dataclass(frozen=True)
class TierDefaults:
    """The settings a new tune and its edits start from on one tier: ``DEMO_TIER`` (the
    embedded demo model, or a CPU-sized Space: a 64 px model and settings that finish in
    minutes on a CPU) or ``FULL_TIER`` (Stable Diffusion: Tune-A-Video's 24 frames at stride 2,
    512 px, 500 steps, guidance 12.5). The Edit tab's widgets, the CLI's tune/compare defaults
    and ``vcstudio bench toy-edit`` read them from here. The tab inverts the clip at
    ``edit_steps`` DDIM steps, so a first edit reuses the tune's inversion (the demo tier's 20:
    a tune + edit of a bundled example in ~2 minutes on a 2-core CPU); inversion under the
    empty prompt (``TuneConfig.inversion_prompt``)."""

    frames: int
    stride: int
    side: int  # the long side a clip is fitted to (the model's own size)
    steps: int  # tuning steps
    lr: float
    seed: int
    edit_steps: int  # sampling steps of an edit
    guidance: float  # an edit's classifier-free guidance


DEMO_TIER = TierDefaults(frames=8, stride=1, side=64, steps=100, lr=3e-5, seed=33,
                         edit_steps=20, guidance=5.0)
FULL_TIER = TierDefaults(frames=24, stride=2, side=512, steps=500, lr=3e-5, seed=33,
                         edit_steps=50, guidance=12.5)


def tier_defaults(demo: bool) -> TierDefaults:
    """``DEMO_TIER`` if ``demo`` else ``FULL_TIER``."""
    return DEMO_TIER if demo else FULL_TIER


@dataclass
class MaskConfig:
    """Masks + average fusion at step k (consistency-tuning paper, secs. 3.1-3.2) and combined
    tuning (3.3).

    n candidate clips of ``window`` frames are sampled with the first segment's prompt down to the
    first schedule timestep <= ``k_step`` (paper: n = 5 at t = 995), their x0 is predicted and
    decoded, SAM (or GrabCut) masks them, eq. 11 fuses them and the fused clip is denoised to the
    end (eq. 12). ``tune_steps`` > 0 then fine-tunes the run on it with eq. 20 before the long
    video is generated from the fine-tuned model.
    """

    method: str = "sam"  # sam | grabcut (classical fallback, labelled as such)
    fallback: bool = False  # sam without a checkpoint falls back to grabcut instead of failing
    sam_model: str = "vit_b"  # vit_b | vit_l | vit_h
    sam_checkpoint: str = ""  # "" = $VCSTUDIO_SAM_DIR/<official file name>
    point: Optional[tuple[float, float]] = None  # (x, y) on the foreground object
    box: Optional[tuple[float, float, float, float]] = None  # (x0, y0, x1, y1)
    n_candidates: int = 5
    k_step: int = 995
    w1: float = 1.0  # background weight of eq. 11
    w2: float = 1.0  # foreground weight of eq. 11
    # eq. 11's region rule (methods/fusion.py): paper | normalised keep a step-k latent's unit
    # variance; literal = the formula as printed (an average of n noises has std 1/sqrt(n))
    fusion_mode: str = "paper"
    fusion_space: str = "latent"  # latent | x0 (fuse predicted x0, re-noise to step k)
    fg_index: int = 0  # the candidate whose foreground is kept
    tune_steps: int = 250
    tune_lr: float = 2e-6
    lambdas: tuple[float, float, float] = (1.0, 1.0, 0.5)


@dataclass
class LongConfig:
    """A long video from a tuned run: segment prompts, temporal co-denoising (eqs. 18-19), optional
    masks + average fusion + combined tuning, optional progressive refinement (MOV AI paper).

    The timeline comes from ``segments`` ([{prompt, start, end}], end exclusive), else ``story``
    (scene parser), else ``prompts`` (split evenly over ``frames``).
    """

    prompts: list[str] = field(default_factory=list)
    story: str = ""
    segments: list[dict] = field(default_factory=list)
    frames: int = 120
    window: int = 16
    stride: int = 8
    fusion: str = "pyramid"  # uniform | pyramid | gaussian (CLI, API and app alike)
    fusion_sigma: Optional[float] = None
    prompt_mode: str = "majority"  # majority | interpolate (blend embeddings at seams)
    steps: int = 50
    guidance: float = 12.5
    seed: int = 33
    negative: str = ""
    eta: float = 0.0
    batch_windows: int = 0  # windows per U-Net call; 0 = as many as fit (halved on OOM)
    size: int = 0  # square generation size; 0 = the tuned clip's (ignored when refine is set)
    masks: bool = False
    mask: MaskConfig = field(default_factory=MaskConfig)
    refine: tuple[int, ...] = ()  # sizes low -> high, e.g. (256, 512)
    refine_strength: float = 0.5
    refine_mode: str = "latent"  # latent (upsample latents) | pixel (decode-resize-encode)
    fps: float = 8.0
    decode_chunk: int = 8  # frames per VAE decode call
    out: str = ""  # output mp4; "" = RUN/long/<prompt>-s<seed>-<frames>f.mp4
    control: list[ControlConfig] = field(default_factory=list)  # over the whole long clip


# ----------------------------------------------------------------------------- (de)serialisation

def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict/list tree (tuples become lists) for YAML/JSON."""
    if is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls, data: Optional[dict]):
    """Plain dict -> dataclass ``cls``; unknown keys are an error that names them."""
    if data is not None and not isinstance(data, dict):
        raise InputError(f"{cls.__name__} must be a mapping of keys to values, got "
                         f"{type(data).__name__} {data!r}.")
    data = dict(data or {})
    kwargs = {}
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InputError(f"Unknown {cls.__name__} keys: {', '.join(unknown)}. "
                         f"Known keys: {', '.join(known)}.")
    for name, f in known.items():
        if name not in data:
            continue
        value = data[name]
        default = (f.default_factory() if f.default_factory is not dataclasses.MISSING
                   else f.default)
        if is_dataclass(default):
            if not isinstance(value, dict):
                raise InputError(f"{cls.__name__}.{name} must be a mapping of keys to values, "
                                 f"got {type(value).__name__} {value!r:.40}.")
            value = from_dict(type(default), value)
        elif isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        elif name == "control" and cls.__name__ in ("TuneConfig", "EditConfig", "LongConfig"):
            value = control_list(value, f"{cls.__name__}.control")
        kwargs[name] = value
    return cls(**kwargs)


def control_list(value, where: str = "control") -> list:
    """A list of ControlConfig (or of their mappings) -> list[ControlConfig]."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise InputError(f"{where} must be a list of conditions (kind, model, scale, ...), got "
                         f"{type(value).__name__}.")
    return [v if isinstance(v, ControlConfig) else from_dict(ControlConfig, v) for v in value]


def save_yaml(obj: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A parser error in one line: where and what (PyYAML's own text spans several lines)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    what = getattr(e, "problem", None) or getattr(e, "context", None) or type(e).__name__
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return " ".join(f"{where}{what}".split())


def read_text_file(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file's content; a missing or non-UTF-8 file is a one-line InputError."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"The {what} {path} was not found.") from None
    except IsADirectoryError:
        raise InputError(f"The {what} {path} is a folder, not a file.") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"The {what} {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at "
                         f"offset {e.start}); save it as UTF-8.") from None


def read_yaml(path: str | Path, what: str = "config file",
              expect: str = "a mapping of keys to values", lists: bool = False):
    """The one YAML reader: the file's mapping (or, with ``lists``, a list too); a missing,
    unreadable, non-UTF-8 or malformed file, or one holding something else, is a one-line
    InputError naming the ``what`` and the line at fault (config files, sweep grids, long-video
    timelines)."""
    try:
        text = read_text_file(path, what)
    except OSError as e:
        raise InputError(f"The {what} {path} cannot be read ({type(e).__name__}).") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InputError(f"The {what} {path} is not valid YAML ({_yaml_problem(e)}); fix that "
                         "line.") from None
    if not isinstance(data, dict) and not (lists and isinstance(data, list)):
        raise InputError(f"The {what} {path} must hold {expect}.")
    return data



# the local folders Tune-A-Video's README downloads base models into -> the hub ids they are
TAV_HUB_IDS = {
    "stable-diffusion-v1-4": "CompVis/stable-diffusion-v1-4",
    "stable-diffusion-v1-5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "stable-diffusion-2-1": "stabilityai/stable-diffusion-2-1",
    "stable-diffusion-2-1-base": "stabilityai/stable-diffusion-2-1-base",
}

# keys of Tune-A-Video's train script vcstudio has no use for -> (the value that needs no note,
# what vcstudio does instead)
_TAV_IGNORED = {
    "use_8bit_adam": (False, "vcstudio tunes with torch's AdamW (fused on CUDA), not 8-bit Adam"),
    "enable_xformers_memory_efficient_attention":
        (False, "vcstudio's attention always runs through torch SDPA (memory-efficient kernels "
                "where the device has them); xformers is not used"),
    "scale_lr": (False, "vcstudio uses learning_rate as given (one process, no accumulation)"),
    "lr_scheduler": ("constant", "vcstudio keeps the learning rate constant"),
    "lr_warmup_steps": (0, "vcstudio has no learning-rate warm-up"),
    "gradient_accumulation_steps": (1, "vcstudio takes one optimiser step per batch"),
    "adam_epsilon": (1e-8, "vcstudio's AdamW uses eps 1e-8"),
    "resume_from_checkpoint": (None, "vcstudio resumes from its own checkpoints: run the same "
                                     "command with the same --out, or `vcstudio resume JOB`"),
}
_TAV_KNOWN = {"pretrained_model_path", "output_dir", "train_data", "validation_data",
              "validation_steps", "trainable_modules", "train_batch_size", "max_train_steps",
              "learning_rate", "adam_beta1", "adam_beta2", "adam_weight_decay", "max_grad_norm",
              "gradient_checkpointing", "checkpointing_steps", "mixed_precision", "seed"}
_TAV_TRAIN_DATA = {"video_path", "prompt", "n_sample_frames", "width", "height",
                   "sample_start_idx", "sample_frame_rate"}
_TAV_VALIDATION = {"prompts", "video_length", "width", "height", "num_inference_steps",
                   "guidance_scale", "use_inv_latent", "num_inv_steps"}


@dataclass
class TuneAVideoImport:
    """A Tune-A-Video-format config read as ours: the TuneConfig, where its run goes
    (``output_dir``), where its base model came from, and one-line notes on what was mapped or
    ignored."""

    cfg: TuneConfig
    notes: list[str] = field(default_factory=list)
    output_dir: str = ""
    model_path: str = ""  # pretrained_model_path as written
    hub_id: str = ""  # the hub id it was mapped to ("" = used as written)
    video_path: str = ""  # train_data.video_path as written


def _same(value, default) -> bool:
    """YAML reads 1e-08 as text (PyYAML wants a dot in floats): compare numbers as numbers."""
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            return float(value) == float(default)
        except (TypeError, ValueError):
            return False
    return value == default


def tav_hub_id(path: str) -> str:
    """The hub id a missing local Tune-A-Video checkpoint folder stands for ("" = none)."""
    name = Path(str(path).rstrip("/\\")).name.lower()
    return TAV_HUB_IDS.get(name, "")


def _find_beside(path: str, config_file: Optional[Path]) -> str:
    """A relative path as Tune-A-Video reads it (from the current folder), else found beside
    the config or one folder up (configs/x.yaml of a repository checkout); as written when
    found nowhere (the tune then says it is missing)."""
    if not path or Path(path).is_absolute() or Path(path).exists() or config_file is None:
        return path
    for root in (config_file.parent, config_file.parent.parent):
        if (root / path).exists():
            return str(root / path)
    return path


def read_tuneavideo(d: dict, config_file: Optional[str | Path] = None) -> TuneAVideoImport:
    """Map a Tune-A-Video config (configs/*.yaml of its repository, also the peers' releases
    that reuse the format, e.g. DCT's) onto ours, with a note for every key vcstudio does
    differently or does not know."""
    cf = Path(config_file) if config_file else None
    notes: list[str] = []
    cfg, _ = _from_tuneavideo(d)
    imp = TuneAVideoImport(cfg, notes, output_dir=str(d.get("output_dir") or ""),
                           model_path=str(d.get("pretrained_model_path") or ""))
    if imp.model_path and not Path(imp.model_path).exists():
        found = _find_beside(imp.model_path, cf)
        if found != imp.model_path:
            cfg.model = found
        elif tav_hub_id(imp.model_path):
            imp.hub_id = tav_hub_id(imp.model_path)
            cfg.model = imp.hub_id
            notes.append(f"pretrained_model_path {imp.model_path} is not here: using the model "
                         f"it is a download of, {imp.hub_id} (--model overrides).")
    imp.video_path = cfg.data.video_path
    cfg.data.video_path = _find_beside(cfg.data.video_path, cf)
    for key in sorted(d):
        if key in _TAV_IGNORED:
            default, what = _TAV_IGNORED[key]
            if not _same(d[key], default):
                notes.append(f"{key}: {d[key]!r} is not used; {what}.")
        elif key not in _TAV_KNOWN:
            notes.append(f"{key} is not a Tune-A-Video key vcstudio knows; ignored.")
    for section, known in (("train_data", _TAV_TRAIN_DATA), ("validation_data", _TAV_VALIDATION)):
        sub = d.get(section) or {}
        if isinstance(sub, dict):
            for key in sorted(set(sub) - known):
                notes.append(f"{section}.{key} is not a Tune-A-Video key vcstudio knows; ignored.")
    vd = d.get("validation_data") or {}
    if isinstance(vd, dict):
        td = d.get("train_data") or {}
        for key, train in (("video_length", "n_sample_frames"), ("width", "width"),
                           ("height", "height")):
            if key in vd and vd[key] != td.get(train, vd[key]):
                notes.append(f"validation_data.{key} {vd[key]} differs from train_data.{train} "
                             f"{td.get(train)}: vcstudio samples validation videos at the tuned "
                             "clip's frames and size.")
    return imp


def _from_tuneavideo(d: dict) -> tuple[TuneConfig, Optional[EditConfig]]:
    """Map a Tune-A-Video config (configs/*.yaml of its repository) onto ours; a value of the
    wrong kind (``learning_rate: fast``) is a one-line InputError."""
    try:
        return _map_tuneavideo(d)
    except (TypeError, ValueError, AttributeError) as e:
        raise InputError(f"The Tune-A-Video config holds a value of the wrong kind ({e}); fix "
                         "it (numbers for steps, rates and sizes, a list for prompts).") from None


def _map_tuneavideo(d: dict) -> tuple[TuneConfig, Optional[EditConfig]]:
    cfg = TuneConfig()
    cfg.model = d.get("pretrained_model_path", cfg.model) or ""
    td = d.get("train_data", {}) or {}
    cfg.data = DataConfig(
        video_path=td.get("video_path", ""), prompt=td.get("prompt", ""),
        n_frames=int(td.get("n_sample_frames", 24)), start=int(td.get("sample_start_idx", 0)),
        stride=int(td.get("sample_frame_rate", 1)), width=int(td.get("width", 512)),
        height=int(td.get("height", 512)))
    cfg.lr = float(d.get("learning_rate", cfg.lr))
    cfg.steps = int(d.get("max_train_steps", cfg.steps))
    cfg.seed = int(d.get("seed", cfg.seed) or cfg.seed)
    cfg.batch_size = int(d.get("train_batch_size", 1))
    cfg.gradient_checkpointing = bool(d.get("gradient_checkpointing", True))
    mp = d.get("mixed_precision", "auto")
    cfg.mixed_precision = {"fp16": "fp16", "bf16": "bf16", "no": "no"}.get(str(mp), "auto")
    if d.get("trainable_modules"):
        # TAV names its temporal layers attn_temp / norm_temp; ours are temporal.attn / .norm
        cfg.trainable = tuple(TAV_MODULE_NAMES.get(m, m) for m in d["trainable_modules"])
    cfg.checkpoint_every = int(d.get("checkpointing_steps", cfg.checkpoint_every))
    cfg.adam_betas = (float(d.get("adam_beta1", cfg.adam_betas[0])),
                      float(d.get("adam_beta2", cfg.adam_betas[1])))
    cfg.weight_decay = float(d.get("adam_weight_decay", cfg.weight_decay))
    cfg.max_grad_norm = float(d.get("max_grad_norm", cfg.max_grad_norm))
    vd = d.get("validation_data")
    edit = None
    if vd:
        prompts = [str(p) for p in (vd.get("prompts") or [])]
        steps = int(vd.get("num_inference_steps", 50))
        guidance = float(vd.get("guidance_scale", 12.5))
        use_inv = bool(vd.get("use_inv_latent", True))
        edit = EditConfig(prompt=prompts[0] if prompts else "", steps=steps, guidance=guidance,
                          use_inversion=use_inv)
        cfg.inversion_steps = int(vd.get("num_inv_steps", cfg.inversion_steps))
        # Tune-A-Video's default validation_steps is 100
        cfg.validation = ValidationConfig(prompts=tuple(prompts),
                                          every=int(d.get("validation_steps", 100) or 0),
                                          steps=steps, guidance=guidance, use_inversion=use_inv)
    return cfg, edit


def is_tuneavideo_config(d: dict) -> bool:
    return "train_data" in d or "pretrained_model_path" in d


def load_tune_config(path: str | Path) -> TuneConfig:
    """Load our YAML or a Tune-A-Video YAML (detected by its ``train_data`` key)."""
    d = read_yaml(path)
    if is_tuneavideo_config(d):
        return _from_tuneavideo(d)[0]
    return from_dict(TuneConfig, d)


def run_config_from_dict(d: dict) -> TuneConfig:
    """A run's recorded TuneConfig: a field the record lacks gets the behaviour the run was
    tuned with before the field existed (:data:`LEGACY_RUN_DEFAULTS`: per-frame GroupNorm, frame
    positions on, inversion under the source prompt), not today's default."""
    d = dict(d)
    for k, v in LEGACY_RUN_DEFAULTS.items():
        d.setdefault(k, v)
    return from_dict(TuneConfig, d)


def load_run_config(path: str | Path) -> TuneConfig:
    """A run folder's config.yaml (see :func:`run_config_from_dict`)."""
    d = read_yaml(path)
    if is_tuneavideo_config(d):
        return _from_tuneavideo(d)[0]
    return run_config_from_dict(d)
