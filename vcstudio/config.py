"""Dataclasses for every job, loaded from / saved to YAML.

Every setting a user sets declares its range, choices and help once, on its field
(:func:`vcstudio.settings.setting`); the jobs' validators, the pipelines' input checks, the CLI's
flags and the UI's widgets read them from there. Each tuning method's own section (``dct``,
``apla``, ``fgbg``) is the method's (methods/<name>.py), registered here by the method registry
(:func:`register_section`). Tune-A-Video's own YAML configs load through
vcstudio/runs/tav_import.py.
"""
from __future__ import annotations

import dataclasses
import importlib
import sys
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import InputError
from .settings import MAX_SEED, Limits, setting  # noqa: F401  (Limits: config's name too)

# Tune-A-Video's trainable modules (its trainable_modules: attn1.to_q, attn2.to_q, attn_temp): the
# query projections of both attentions + the temporal attention, its LayerNorm (norm_temp, ours
# "temporal.norm") frozen as there. "temporal.attn" / "temporal" name either route's temporal
# layers: on the AnimateDiff route they select the motion modules.
DEFAULT_TRAINABLE = ("attn1.to_q", "attn2.to_q", "temporal.attn")
GROUPNORM_MODES = ("clip", "frame")  # TuneConfig.groupnorm (models/groupnorm.py)
POSITIONS = ("center", "top", "bottom", "left", "right")  # DataConfig.crop (io/resize.py)
RESIZE_MODES = ("crop", "pad")  # DataConfig.resize
FUSIONS = ("uniform", "pyramid", "gaussian")  # LongConfig.fusion (pipelines/long/windows.py)
PROMPT_MODES = ("majority", "interpolate")  # LongConfig.prompt_mode
# what a run config that predates a field was tuned with (load_run_config): per-frame GroupNorm,
# frame positions on, and inversion under the source prompt
LEGACY_RUN_DEFAULTS = {"groupnorm": "frame", "frame_positions": True,
                       "inversion_prompt": "source"}


# the most sampling / inversion / preview steps any sampler takes: the training schedule's
# length (SD's and Wan's num_train_timesteps), past which DDIM / flow steps stop being distinct
TRAIN_TIMESTEPS = 1000
MAX_SAMPLING_STEPS = TRAIN_TIMESTEPS
MAX_PROMPT_CHARS = 10000  # far past CLIP's 77 tokens; bounds what a client can send
MAX_GUIDANCE = 50.0  # classifier-free guidance scales past this only burn the frames
MAX_FPS = 240.0


# the shared declarations: one range for every sampling-step count, guidance scale, seed and fps
def sampling_steps(default: int, **kw) -> Any:
    """Sampling / inversion steps: 1..MAX_SAMPLING_STEPS."""
    return setting(default, lo=1, hi=MAX_SAMPLING_STEPS, **kw)


def guidance_scale(default: float, **kw) -> Any:
    """A classifier-free guidance scale: [0, MAX_GUIDANCE] (see :func:`guided_passes`)."""
    return setting(default, lo=0, hi=MAX_GUIDANCE, **kw)


def seed_setting(default: int = 33, **kw) -> Any:
    return setting(default, lo=0, hi=MAX_SEED, **kw)


def fps_setting(default: float = 8.0, **kw) -> Any:
    return setting(default, lo=0, hi=MAX_FPS, open_lo=True, **kw)


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
    n_frames: int = setting(24, lo=1, hi="max_frames", flag="--frames", label="Frames",
                            help="frames sampled from the clip")
    start: int = setting(0, lo=0, hi=lambda obj, lim: lim.max_source_frames - 1,
                         flag="--start", label="Start frame", help="the clip's first frame used")
    stride: int = setting(2, lo=1, hi="max_source_frames", flag="--stride", label="Stride",
                          ui=(1, 8, 1), help="take every n-th frame of the clip")
    width: int = 512
    height: int = 512
    # the long side when width and/or height are 0: the other side follows the clip's aspect,
    # rounded to the model's multiple (the app's rule: a 480x240 clip at 64 -> 64x32); 0 with
    # width and height 0 = the model's native size as the long side
    size: int = 0
    resize: str = setting("crop", choices=RESIZE_MODES, flag="--resize", label="Fit",
                          help="crop (cut the excess) or pad (letterbox); never stretch")
    crop: str = setting("center", choices=POSITIONS,
                        flag="--crop", label="Position",
                        help="the part of the frame kept (crop), or where it sits (pad); see "
                        "vcstudio/io/resize.py")


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
    every: int = setting(0, lo=0, hint=" (0 = at the end only)", flag="validation_steps")
    steps: int = sampling_steps(50, flag="num_inference_steps")
    guidance: float = guidance_scale(12.5, flag="guidance_scale")
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
    temporal: str = setting("vcstudio", choices=("vcstudio", "animatediff"), flag="--temporal",
                            help="temporal layers: vcstudio's zero-init temporal attention "
                            "(default) or AnimateDiff's motion modules (diffusers' "
                            "UNetMotionModel)")
    motion_adapter: str = ""  # animatediff: hub id or folder; "" = fresh (identity) motion modules
    # vcstudio route: "clip" = ResNet GroupNorm statistics over all frames of the clip, as
    # Tune-A-Video's inflated ResNets compute them; "frame" = per frame (models/groupnorm.py)
    groupnorm: str = setting("clip", choices=GROUPNORM_MODES)
    frame_positions: bool = False  # sinusoidal frame positions in temporal attention (TAV: none)
    steps: int = setting(500, lo=1, hi="max_steps", flag="--steps", label="Tuning steps",
                         ui=(10, "max_steps", 10))
    lr: float = setting(3e-5, lo=0, hi=1, open_lo=True, open_hi=True, flag="--lr",
                        label="Learning rate")
    seed: int = seed_setting(33, flag="--seed", label="Seed")
    batch_size: int = setting(1, lo=1, hi=64)
    trainable: tuple[str, ...] = DEFAULT_TRAINABLE
    mixed_precision: str = "auto"  # auto | bf16 | fp16 | no
    gradient_checkpointing: bool = True
    compile: str = "auto"  # auto (CUDA only) | yes | no: torch.compile the U-Net
    max_grad_norm: float = setting(1.0, lo=0, open_lo=True)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-2
    checkpoint_every: int = setting(100, lo=0, hint=" (0 = no checkpoints)",
                                    flag="--checkpoint-every")
    preview_every: int = setting(0, lo=0, hint=" (0 = no previews)")
    preview_steps: int = sampling_steps(20)
    inversion_steps: int = sampling_steps(50, flag="--inversion-steps",
                                          help="DDIM inversion steps after tuning (default 50; "
                                          "edits at another step count invert again)")
    inversion_fixed_point: int = 0  # extra noise re-evaluations per inversion step (edit/invert.py)
    # the prompt the clip is DDIM-inverted under: "" = the empty prompt (Tune-A-Video inverts
    # with prompt=""), "source" = the tuning prompt (data.prompt), "target" = each edit's own
    # prompt (pipelines/edit/tuned.py inversion_text), other text = that text
    inversion_prompt: str = ""
    # the tuning methods' own sections (cfg.dct, cfg.apla, cfg.fgbg, ...: see register_section)
    sections: dict = field(default_factory=lambda: {n: c() for n, c in _sections().items()},
                           repr=False)
    init_from: str = ""  # a run folder whose delta initialises the trainable tensors
    # a video DiT (Wan2.1) tunes LoRA on its attention (q, k, v, out) instead of the U-Net's
    # trainables above: its rank (alpha = rank); unused on Stable Diffusion
    lora_rank: int = setting(16, lo=1, hi=1024, flag="--lora-rank",
                             help="Wan2.1: the LoRA's rank on the transformer's attention "
                             "(default 16)")
    # structure conditions while tuning (seed 001 tunes with a T2I-Adapter fed pose frames);
    # frozen, they only shape what the trainable tensors learn
    control: list[ControlConfig] = field(default_factory=list)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    # a method's section reads and writes as an attribute (cfg.dct.clws); TuneConfig(dct=...)
    # and dataclasses.replace(cfg, dct=...) take it as a keyword (see _init_with_sections)
    def __getattr__(self, name: str):
        if not name.startswith("__"):
            secs = self.__dict__.get("sections")
            if secs is not None:
                if name in secs:
                    return secs[name]
                cls = _sections().get(name)
                if cls is not None:  # a method registered after this config was made
                    secs[name] = cls()
                    return secs[name]
        raise AttributeError(f"TuneConfig has no setting or method section {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if name != "sections" and name in _sections():
            self.sections[name] = value
        else:
            object.__setattr__(self, name, value)


# ----------------------------------------------------------------------------- method sections
# Each tuning method owns its config section (DCTConfig in methods/dct.py, APLAConfig in
# methods/apla.py, FgBgConfig in methods/fgbg_method.py, ...); the method registry
# (methods/registry.py) registers it here under the method's name. A TuneConfig holds one of each
# registered section and saves it as a top-level key of its YAML (``dct: {...}``), as run
# folders always held them. config.py imports no method: the registry is found by name the first
# time a section is asked for (as a plugin table is), and registers the built-in methods then.
_SECTIONS: dict[str, type] = {}
_METHOD_REGISTRY = "vcstudio.methods.registry"


def _sections() -> dict[str, type]:
    if _METHOD_REGISTRY not in sys.modules:
        importlib.import_module(_METHOD_REGISTRY)
    return _SECTIONS


def register_section(name: str, cls: type) -> None:
    """Make ``cls`` (a dataclass of a method's settings) the TuneConfig section ``name``."""
    if name in {f.name for f in fields(TuneConfig)}:
        raise ValueError(f"{name!r} is a TuneConfig setting, not a free section name")
    _SECTIONS[name] = cls


def unregister_section(name: str) -> None:
    _SECTIONS.pop(name, None)


def section_classes() -> dict[str, type]:
    """The registered method sections by name, in registration order."""
    return dict(_sections())


def _init_with_sections(cls):
    init = cls.__init__

    def __init__(self, *args, **kwargs):
        table = _sections()
        given = {k: kwargs.pop(k) for k in list(kwargs) if k in table}
        init(self, *args, **kwargs)
        # a copy: dataclasses.replace hands the old config's dict in
        object.__setattr__(self, "sections", {**self.sections, **given})

    __init__.__doc__ = init.__doc__
    cls.__init__ = __init__
    return cls


_init_with_sections(TuneConfig)


def inverts_after_tuning(cfg: "TuneConfig") -> bool:
    """Whether a tune caches the DDIM inversion its edits start from: not when each edit
    inverts under its own prompt (``inversion_prompt`` "target")."""
    return cfg.inversion_prompt != "target"


def guided_passes(guidance: float) -> int:
    """U-Net passes per sampling step at this guidance scale: classifier-free guidance (two
    passes, conditional and unconditional) runs whenever the scale is not 1 (0 too) -- the
    rule the samplers follow (pipelines/edit/sample.py, VideoEditPipeline) and the estimates
    count."""
    return 1 if float(guidance) == 1.0 else 2


@dataclass
class EditConfig:
    """Sampling an edit from a tuned run (Tune-A-Video ``validation_data``)."""

    prompt: str = ""
    negative: str = ""
    steps: int = sampling_steps(50, flag="--steps", label="Sampling steps", ui=(5, 100, 1))
    guidance: float = guidance_scale(12.5, flag="--guidance", label="Guidance",
                                     ui=(1, 20, 0.5))
    seed: int = seed_setting(33, flag="--seed", label="Seed")
    use_inversion: bool = True
    eta: float = setting(0.0, lo=0, hi=1)
    control: list[ControlConfig] = field(default_factory=list)  # structure conditions
    # the inversion's prompt for this edit ("", "source", "target" or text, as
    # TuneConfig.inversion_prompt);
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
    steps: int = sampling_steps(50, flag="--steps")  # N
    n_max: int = 0  # steps taken, from the N-th noise level down; 0 = 2/3 of N (paper: 33/50)
    n_min: int = 0  # the last n_min steps sample plainly under the target
    n_avg: int = setting(1, lo=1, hi=16)  # noises averaged per step
    source_guidance: float = guidance_scale(3.5)
    target_guidance: float = guidance_scale(7.0)
    seed: int = seed_setting(33, flag="--seed")
    fps: float = fps_setting(8.0, flag="--fps")
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

    method: str = setting("sam", choices=("sam", "grabcut"), flag="--mask-method",
                          help="grabcut = classical OpenCV fallback, no weights needed")
    fallback: bool = False  # sam without a checkpoint falls back to grabcut instead of failing
    sam_model: str = "vit_b"  # vit_b | vit_l | vit_h
    sam_checkpoint: str = ""  # "" = $VCSTUDIO_SAM_DIR/<official file name>
    point: Optional[tuple[float, float]] = None  # (x, y) on the foreground object
    box: Optional[tuple[float, float, float, float]] = None  # (x0, y0, x1, y1)
    n_candidates: int = setting(5, lo=1, hi="max_candidates", flag="--candidates",
                                label="Candidates n", ui=(1, 8, 1),
                                help="n candidate sets for eq. 11")
    k_step: int = 995
    w1: float = 1.0  # background weight of eq. 11
    w2: float = 1.0  # foreground weight of eq. 11
    # eq. 11's region rule (methods/fusion.py): paper | normalised keep a step-k latent's unit
    # variance; literal = the formula as printed (an average of n noises has std 1/sqrt(n))
    fusion_mode: str = "paper"
    fusion_space: str = "latent"  # latent | x0 (fuse predicted x0, re-noise to step k)
    fg_index: int = 0  # the candidate whose foreground is kept
    tune_steps: int = setting(250, lo=0, hi="max_steps", hint=" (0 = no combined tuning)",
                              flag="--tune-steps", ui=(0, 500, 10),
                              help="combined tuning steps on the fused clip (0 = skip combined "
                              "tuning)")
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
    frames: int = setting(120, lo=1, hi="max_long_frames", flag="--frames", label="Frames")
    window: int = setting(16, lo=1, hi=lambda obj, lim: obj.frames,
                          hint=" (at most the video's frames)", flag="--window",
                          label="Window K", ui=(2, 32, 1), help="window length K in frames")
    stride: int = setting(8, lo=1, hi=lambda obj, lim: obj.window, hint=" (at most the window)",
                          flag="--stride", label="Stride S", ui=(1, 32, 1),
                          help="stride S between windows (<= K)")
    fusion: str = setting("pyramid", choices=FUSIONS, flag="--fusion", label="Fusion weights",
                          help="per-position weights for fusing overlapping windows")
    fusion_sigma: Optional[float] = None
    # majority | interpolate (blend embeddings at seams)
    prompt_mode: str = setting("majority", choices=PROMPT_MODES, flag="--prompt-mode",
                               help="window prompt: the segment with most frames, or a blend of "
                               "the overlapping segments' embeddings")
    steps: int = sampling_steps(50, flag="--steps", label="Sampling steps", ui=(5, 100, 1))
    guidance: float = guidance_scale(12.5, flag="--guidance")
    seed: int = seed_setting(33, flag="--seed", label="Seed")
    negative: str = ""
    eta: float = 0.0
    # windows per U-Net call; 0 = as many as fit (halved on OOM)
    batch_windows: int = setting(0, lo=0, hint=" (0 = as many as fit)", flag="--window-batch",
                                 help="windows denoised per U-Net call (0 = as many as memory "
                                 "allows)")
    # square generation size; 0 = the tuned clip's (ignored when refine is set)
    size: int = setting(0, lo=0, hi="max_side", hint=" (0 = the tuned clip's)", flag="--size",
                        help="square size to generate at (default: the tuned clip's; --refine "
                        "wins)")
    masks: bool = False
    mask: MaskConfig = field(default_factory=MaskConfig)
    refine: tuple[int, ...] = ()  # sizes low -> high, e.g. (256, 512)
    refine_strength: float = 0.5
    # latent (upsample latents) | pixel (decode-resize-encode)
    refine_mode: str = setting("latent", choices=("latent", "pixel"), flag="--refine-mode",
                               help="upsample the latents, or decode-resize-encode the frames")
    fps: float = fps_setting(8.0, flag="--fps")
    decode_chunk: int = setting(8, lo=1)  # frames per VAE decode call
    out: str = ""  # output mp4; "" = RUN/long/<prompt>-s<seed>-<frames>f.mp4
    control: list[ControlConfig] = field(default_factory=list)  # over the whole long clip


# ----------------------------------------------------------------------------- (de)serialisation

def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict/list tree (tuples become lists) for YAML/JSON."""
    if is_dataclass(obj):
        out = {}
        for f in fields(obj):
            if f.name == "sections" and isinstance(obj, TuneConfig):
                out.update({k: to_dict(v) for k, v in obj.sections.items()})
            else:
                out[f.name] = to_dict(getattr(obj, f.name))
        return out
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def field_defaults(cls) -> dict[str, Any]:
    """A config class's keys -> their default values, as its YAML spells them (a TuneConfig's
    method sections as keys of their own)."""
    out = {}
    for f in fields(cls):
        if f.name == "sections" and cls is TuneConfig:
            out.update({n: c() for n, c in _sections().items()})
        else:
            out[f.name] = (f.default_factory() if f.default_factory is not dataclasses.MISSING
                           else f.default)
    return out


def from_dict(cls, data: Optional[dict]):
    """Plain dict -> dataclass ``cls``; unknown keys are an error that names them."""
    if data is not None and not isinstance(data, dict):
        raise InputError(f"{cls.__name__} must be a mapping of keys to values, got "
                         f"{type(data).__name__} {data!r}.")
    data = dict(data or {})
    kwargs = {}
    known = field_defaults(cls)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InputError(f"Unknown {cls.__name__} keys: {', '.join(unknown)}. "
                         f"Known keys: {', '.join(known)}.")
    for name, default in known.items():
        if name not in data:
            continue
        value = data[name]
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


def run_config_from_dict(d: dict) -> TuneConfig:
    """A run's recorded TuneConfig: a field the record lacks gets the behaviour the run was
    tuned with before the field existed (:data:`LEGACY_RUN_DEFAULTS`: per-frame GroupNorm, frame
    positions on, inversion under the source prompt), not today's default."""
    d = dict(d)
    for k, v in LEGACY_RUN_DEFAULTS.items():
        d.setdefault(k, v)
    return from_dict(TuneConfig, d)
