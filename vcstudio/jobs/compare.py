"""The compare job: several methods / presets / CLWS weightings / seeds on the same clip, prompt
and seed, each tuned, edited with the same seed and scored; one side-by-side video, a metrics
table with the best per column, ``compare.csv`` (one row per variant) and ``compare.json``.

Config: :class:`CompareConfig`. A variant is a method name or a method preset (methods: the
Table 2/3 ablations, by id or label); ``clws`` multiplies the variants that read DCT's settings
by those weightings, ``seeds`` multiplies every variant, and ``control`` (structure settings, each
a list of conditions; ``[]`` = none) multiplies every variant's edit: a variant that differs only
in its control reuses the tune of the one before it. Each variant records a ``tune`` run and
a ``compare`` run (its scored edit: the Compare tab re-opens it as a past run). ``runs`` adds
runs tuned before (vcstudio run folders or Tune-A-Video output folders), edited with the same
prompt, seed and sampling settings and scored beside them. A variant that fails is named in the
result and the others go on.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..config import (DataConfig, EditConfig, FlowEditConfig, Limits, TuneConfig,
                      guidance_scale, inverts_after_tuning, sampling_steps, to_dict)
from ..calibration import format_seconds
from ..errors import CancelledError, InputError, VcsError
from ..settings import check
from .. import validate as v

COMPARE_METRICS = ("clip_text", "consistency_adjacent", "warp_error", "fci", "flicker", "psnr",
                   "vcd")


@dataclass
class CompareConfig:
    video: str = ""
    prompt: str = ""  # what the clip shows
    edit_prompt: str = ""  # what every variant's edit should show
    variants: list[str] = field(default_factory=lambda: ["baseline", "dct"])
    clws: list[str] = field(default_factory=list)  # DCT variants x these weightings
    seeds: list[int] = field(default_factory=lambda: [33])
    model: str = ""
    frames: int = 8
    stride: int = 1
    size: int = 0  # the long side, the clip's aspect kept (as the Edit tab); 0 = the model's
    steps: int = 300  # tuning steps
    lr: float = 3e-5
    edit_steps: int = sampling_steps(50, flag="--edit-steps")  # sampling steps
    # None: each variant's base model's own (5 on Wan2.1)
    guidance: Optional[float] = guidance_scale(12.5, flag="--guidance")
    metrics: list[str] = field(default_factory=lambda: list(COMPARE_METRICS))
    past: list[str] = field(default_factory=list)  # finished compare runs to add to the table
    # structure settings to compare (each a list of ControlConfig or their mappings; [] = none)
    control: list = field(default_factory=list)
    runs: list[str] = field(default_factory=list)  # tuned runs / Tune-A-Video folders to edit


@dataclass
class Variant:
    label: str
    tune: Optional[TuneConfig]  # None: a training-free variant (``flowedit``)
    edit: EditConfig
    flowedit: Optional[FlowEditConfig] = None  # the training-free edit (FlowEdit)


@dataclass
class CompareOutcome:
    out_dir: Path
    montage: Path
    csv: Path
    json: Path
    entries: list[dict]  # {"name", "run_id", "frames", "scores"} per variant / past run
    table: list[list]  # best_table(entries)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (variant, message)
    run_id: Optional[str] = None


def _unique(values) -> list:
    """``values`` in order, each once: a name given twice runs once."""
    return list(dict.fromkeys(values))


def split_variant(text: str) -> tuple[str, str]:
    """``"dct@sd15"`` -> ("dct", the hub id of the alias sd15); after ``@`` a hub id, a folder or
    a picker alias (models/catalog.py ``ALIASES``); without ``@`` the model is "" (the
    comparison's ``model``)."""
    from ..models.catalog import resolve_alias

    name, at, model = str(text).partition("@")
    if at and not model.strip():
        raise InputError(f"Variant {text!r} names no base model after '@'; write e.g. "
                         "baseline@wan-1.3b, or leave '@' out for --model.")
    return name.strip(), resolve_alias(model) if at else ""


def _presets(cfg: CompareConfig) -> list:
    """The distinct (preset, model) pairs ``cfg.variants`` names (a preset named by id and by
    label once per model); a training-free method (FlowEdit) is a preset of its own name."""
    from ..methods.base import Preset
    from ..methods.registry import TRAINING_FREE, find_preset, is_training_free

    out = {}
    for text in _unique(cfg.variants):
        name, model = split_variant(text)
        p = (Preset(name, f"{name} ({TRAINING_FREE[name][1].split(':')[0]})", {})
             if is_training_free(name) else find_preset(name))
        out.setdefault((p.id, model), (p, model))
    return list(out.values())


def _model_label(model: str) -> str:
    """A short name of a variant's model for its label: the alias, else the last path part."""
    from pathlib import PurePath

    from ..models.catalog import ALIASES

    alias = next((k for k, v in ALIASES.items() if v == model), None)
    return alias or PurePath(model).name or model


def variant_count(cfg: CompareConfig) -> int:
    """How many variants and tuned runs ``cfg`` makes (duplicates once), multiplied out
    without building them, so a limit is checked before any work."""
    from ..methods.registry import apply_changes, is_training_free, reads

    seeds, clws = len(_unique(int(s) for s in cfg.seeds)), len(_unique(cfg.clws))
    n = free = 0
    for preset, _model in _presets(cfg):
        if is_training_free(preset.id):  # no tune, no structure control: once per seed
            free += seeds
            continue
        tc = apply_changes(TuneConfig(), preset.changes)
        n += seeds * (clws if clws and reads(tc, "dct") else 1)
    return n * len(control_settings(cfg)) + free + len(_unique(cfg.runs))


def clip_sides(cfg: CompareConfig) -> tuple[int, int]:
    """(width, height) every variant tunes at: ``size`` as the long side with the clip's
    aspect kept, the Edit tab's rule; (0, 0) = decided by the model's native size at tuning
    (also when the clip cannot be read here: the tune reports that). Without a clip yet (an
    estimate before the upload) a square of ``size`` stands in."""
    if not cfg.size:
        return 0, 0
    if not cfg.video:
        return cfg.size, cfg.size
    from ..io import default_size, read_video

    try:
        first = read_video(cfg.video, 0, 1, 1)
    except (VcsError, OSError):
        return 0, 0
    return default_size(first.shape[1:3], cfg.size)


def variants(cfg: CompareConfig) -> list[Variant]:
    """The variants ``cfg`` names, in order: presets x CLWS (where DCT is read) x seeds, each
    distinct one once."""
    from ..io.resize import SIZE_MULTIPLE
    from ..methods.registry import apply_changes, is_training_free, reads
    from ..models.family import backbone_family, default_guidance, rules

    out = []
    for preset, vmodel in _presets(cfg):
        model = vmodel or cfg.model
        at = f" @ {_model_label(vmodel)}" if vmodel else ""
        # a DiT's sides are multiples of 16: its tune fits the clip to --size itself
        # (pipelines/flow/clip.py); SD's are the Edit tab's rule here
        own_size = rules(backbone_family(model)).multiple != SIZE_MULTIPLE
        width, height = (0, 0) if own_size else clip_sides(cfg)
        data = DataConfig(video_path=cfg.video, prompt=cfg.prompt, n_frames=cfg.frames,
                          stride=cfg.stride, width=width, height=height, size=cfg.size)
        for seed in _unique(int(s) for s in cfg.seeds):
            seed_label = f", seed {seed}" if len(cfg.seeds) > 1 else ""
            guidance = cfg.guidance if cfg.guidance is not None else default_guidance(model)
            edit = EditConfig(prompt=cfg.edit_prompt, steps=cfg.edit_steps, guidance=guidance,
                              seed=int(seed))
            if is_training_free(preset.id):
                fe = FlowEditConfig(model=model, data=data, prompt=cfg.edit_prompt,
                                    steps=cfg.edit_steps, seed=int(seed))
                out.append(Variant(preset.label + at + seed_label, None, edit, flowedit=fe))
                continue
            base = TuneConfig(model=model, data=data, steps=cfg.steps, lr=cfg.lr,
                              seed=int(seed), checkpoint_every=0, preview_every=0)
            tc = apply_changes(base, preset.changes)
            weightings = _unique(cfg.clws) if cfg.clws and reads(tc, "dct") else [None]
            for c in weightings:
                t = dataclasses.replace(tc, dct=dataclasses.replace(tc.dct, clws=c)) if c else tc
                label = preset.label + at + (f", CLWS {c}" if c else "") + seed_label
                edit = apply_changes(EditConfig(prompt=cfg.edit_prompt, steps=cfg.edit_steps,
                                                 guidance=guidance, seed=int(seed)),
                                     preset.edit)
                for ctl in control_settings(cfg):
                    out.append(Variant(label + _control_label(ctl, cfg), t,
                                       dataclasses.replace(edit, control=ctl)))
    return out


# seconds to write one frame-pixel of the side-by-side montage (mp4 encode), rewritten after
# each variant with every entry so far: small beside the rest, a constant
MONTAGE_S_PER_PIXEL = 4e-8


def estimate(cfg: CompareConfig, device="cpu", calibration_dir=None,
             model_scale: float = 1.0, probe=None, rate: Optional[float] = None) -> dict:
    """Seconds and peak memory of a comparison, without the device. Each distinct tune once
    (:func:`vcstudio.jobs.tune.estimate`: steps, previews, inversion; ``probe`` measures a
    method's speed at this shape first where none was measured), then each variant's edit
    (:func:`vcstudio.jobs.edit.edit_parts`: ``edit_steps`` sampling steps, two U-Net passes
    under CFG, an inversion when the edit's step count differs from the one the tune cached,
    a decode), the scoring of its frames with ``cfg.metrics`` (jobs/scoring.py) and the
    montage rewritten after it; each tuned run of ``runs`` as
    :func:`vcstudio.jobs.edit.estimate` + its scoring. All at the machine's load now (``rate``,
    vcstudio/loadfactor.py). Memory is the largest tune's (the parts run one after another).

    Returns {"seconds", "low", "high", "gib", "how", "load", "tunes", "edits", "parts",
    "per_variant"} (``per_variant``: each variant's seconds, in order, for the job's ETA)."""
    from . import scoring
    from .edit import EditJobConfig, edit_parts, run_speed
    from .edit import estimate as edit_estimate
    from .estimates import finish, rate_now, worst
    from .tune import estimate as tune_estimate

    rate = rate_now(device, rate)
    gib, hows, tunes, loads = 0.0, [], set(), [1.0]
    parts = {"tunes_s": 0.0, "edits_s": 0.0, "scoring_s": 0.0, "montage_s": 0.0}
    per_variant = []
    vs = variants(cfg)
    pixels, entries = 0, len(_unique(cfg.past))
    for var in vs:
        seconds = 0.0
        if var.flowedit is not None or _is_flow(var.tune.model):  # a video DiT's figures
            e = _flow_estimate(var, device, calibration_dir, rate)
            parts["tunes_s"] += e["tune_s"]
            parts["edits_s"] += e["edit_s"]
            gib = max(gib, e["gib"])
            hows.append(e["how"])
            loads.append(e["load"])
            per_variant.append(round(e["tune_s"] + e["edit_s"], 2))
            continue
        key = repr(to_dict(var.tune))
        if key not in tunes:
            tunes.add(key)
            t = tune_estimate(var.tune, device, model_scale, calibration_dir, probe, rate)
            parts["tunes_s"] += t["seconds"]
            seconds += t["seconds"]
            gib = max(gib, t["gib"])
            hows.append(t["how"])
            loads.append(t["load"])
        d = var.tune.data
        speed, how, load = run_speed(calibration_dir, device, var.tune, d.n_frames, d.width,
                                     d.height, probe, rate, model_scale)
        hows.append(how)
        inverts = var.edit.use_inversion and (var.edit.steps != var.tune.inversion_steps
                                              or not inverts_after_tuning(var.tune))
        edit_s = sum(edit_parts(var.edit, speed, inverts).values())
        score_s, _, _ = scoring.estimate(cfg.metrics, d.n_frames, d.width, d.height, device,
                                         calibration_dir, rate)
        entries += 1
        pixels = d.n_frames * d.width * d.height
        montage_s = entries * pixels * MONTAGE_S_PER_PIXEL
        parts["edits_s"] += edit_s
        parts["scoring_s"] += score_s
        parts["montage_s"] += montage_s
        per_variant.append(round(seconds + edit_s + score_s + montage_s, 2))
    for r in _unique(cfg.runs):
        try:
            ed = edit_estimate(EditJobConfig(run=r, edit=EditConfig(
                prompt=cfg.edit_prompt, steps=cfg.edit_steps,
                guidance=12.5 if cfg.guidance is None else cfg.guidance),
                metrics=tuple(cfg.metrics)), device, calibration_dir, probe, rate)
        except (VcsError, OSError):  # not a run (yet): the job itself will say so
            continue
        parts["edits_s"] += ed["seconds"]
        hows.append(ed["how"])
        loads.append(ed["load"])
        per_variant.append(ed["seconds"])
    load = max(loads, key=lambda f: abs(f - 1.0))
    n_edits = len(vs) + len(_unique(cfg.runs))
    return finish(parts, worst(hows), load, gib=round(gib, 2), tunes=len(tunes),
                  edits=n_edits, per_variant=per_variant)


def _is_flow(model: str) -> bool:
    """Whether ``model``'s family samples by rectified flow (a video DiT: Wan2.1)."""
    from ..models.family import backbone_family, rules

    return rules(backbone_family(model)).parameterization == "flow"


def _flow_estimate(var: Variant, device, calibration_dir=None, rate=None) -> dict:
    """{"tune_s", "edit_s", "gib", "how", "load"} of a Wan variant (jobs/flow_estimates.py:
    calibrated by this device's earlier Wan runs where there are)."""
    from .estimates import worst
    from .flow_estimates import clip_shape, flowedit_estimate, sample_estimate, tune_estimate

    if var.flowedit is not None:
        e = flowedit_estimate(var.flowedit, device, calibration_dir, rate)
        return {"tune_s": 0.0, "edit_s": e["seconds"], "gib": e["gib"], "how": e["how"],
                "load": e["load"]}
    t = tune_estimate(var.tune, device, calibration_dir, rate)
    f, h, w = clip_shape(var.tune.data, var.tune.model)
    e = sample_estimate(var.tune.model, f, h, w, var.edit.steps, var.edit.guidance, device,
                        var.edit.steps if var.edit.use_inversion else 0, calibration_dir, rate)
    return {"tune_s": t["seconds"], "edit_s": e["seconds"], "gib": max(t["gib"], e["gib"]),
            "how": worst([t["how"], e["how"]]), "load": t["load"]}


def estimate_line(est: dict, device="cpu") -> str:
    """The Compare tab's line: what the comparison will take and what it counts."""
    from .estimates import line

    n, m = est["tunes"], est["edits"]
    return line(est, device, [f"{n} tune{'s' * (n != 1)}", f"{m} edit{'s' * (m != 1)}",
                              "scoring", "montage"])


def control_settings(cfg: CompareConfig) -> list[list]:
    """The structure settings of ``cfg.control`` as lists of ControlConfig ([[]] = none)."""
    from ..config import control_list

    if not cfg.control:
        return [[]]
    out = []
    for i, setting in enumerate(cfg.control):
        if isinstance(setting, dict) or not isinstance(setting, (list, tuple)):
            setting = [setting]  # one condition given alone
        out.append(control_list(setting, f"control[{i}]"))
    return out


def _control_label(ctl: list, cfg: CompareConfig) -> str:
    if not cfg.control:
        return ""
    from ..control import describe

    return f", control {describe(ctl)}" if ctl else ", no control"


def validate(cfg: CompareConfig, limits: Limits) -> None:
    from .tune import validate as validate_tune

    if not cfg.variants and not cfg.past and not cfg.runs:
        raise InputError("Pick at least one method (or a past run) to compare.")
    asked = (len(cfg.variants) + len(cfg.seeds) + len(cfg.clws) + len(cfg.runs)
             + len(cfg.past) + len(cfg.control))
    if asked > 4 * limits.max_variants:  # even merged, a request this long is not a plan
        raise InputError(f"The comparison lists {asked} methods, seeds, weightings and runs; "
                         f"this studio compares at most {limits.max_variants} variants.")
    if cfg.variants or cfg.runs:
        n = variant_count(cfg) + len(_unique(cfg.past))
        if n > limits.max_variants:
            raise InputError(f"The comparison makes {n} variants (methods x weightings x seeds, "
                             f"+ tuned and past runs; duplicates count once); this studio "
                             f"compares at most {limits.max_variants}: pick fewer.")
    for c in cfg.clws:  # DCT's weightings, as its section declares them
        check(TuneConfig().dct, "clws", label="clws (--clws)", value=c)
    if cfg.variants or cfg.runs:
        v.text("edit_prompt (--edit-prompt)", cfg.edit_prompt,
               "describe what every variant's edit should show")
        if not cfg.seeds:
            raise InputError("seeds (--seeds) is empty: give at least one seed.")
        check(cfg, "edit_steps", limits)
        if cfg.guidance is not None:  # None: each variant's model's own
            check(cfg, "guidance", limits)
    from ..control import validate_controls

    for var in variants(cfg):
        if var.flowedit is not None:
            from .flowedit import validate as validate_flowedit

            validate_flowedit(var.flowedit, limits)
            continue
        validate_tune(var.tune, limits)
        validate_controls(var.edit.control, "control (--control)")
    for r in cfg.runs:
        v.text("runs (--runs)", r, "give tuned run folders or Tune-A-Video output folders")


def load_entry(store, run_id: str, owner: Optional[str] = None) -> dict:
    """A finished compare run from the store: its label, edit frames and scores (the same
    record for runs made now and runs from past sessions). ``owner``: a public studio's
    visitor may load only their own session's runs."""
    import json

    from ..io import read_video

    run = store.run(run_id)
    if owner is not None and run.config.get("session") != owner:
        raise InputError("That run belongs to another visitor; pick one of yours.")
    arts = dict(store.artifacts(run_id))
    if "mp4" not in arts or "json" not in arts:
        raise InputError(f"Run {run.label or run_id} has no saved edit to compare.")
    scores = json.loads(store.artifact_abspath(arts["json"]).read_text())["metrics"]
    frames = read_video(store.artifact_abspath(arts["mp4"]))
    return {"name": run.label or run.id, "run_id": run.id, "frames": frames, "scores": scores}


def best_table(entries: list[dict], metrics: Optional[list[str]] = None) -> list[list]:
    """Rows per entry over the metrics any of them has; the best value in each column is
    starred (direction from each metric's own higher_is_better)."""
    def ok(e, m):
        s = e["scores"].get(m)
        return s is not None and not s.get("skipped") and s.get("value") is not None

    names = metrics or list(dict.fromkeys(
        [*COMPARE_METRICS, *(m for e in entries for m in e["scores"])]))
    names = [m for m in names if any(ok(e, m) for e in entries)]
    best = {}
    for m in names:
        vals = [(e["scores"][m]["value"], i) for i, e in enumerate(entries) if ok(e, m)]
        hib = next(e["scores"][m].get("higher_is_better") for e in entries if ok(e, m))
        if len(vals) > 1 and hib is not None:
            best[m] = (max if hib else min)(vals)[1]
    rows = []
    for i, e in enumerate(entries):
        row = [e["name"]]
        for m in names:
            cell = f"{e['scores'][m]['value']:.4g}" if ok(e, m) else "–"
            row.append(("★ " + cell) if best.get(m) == i else cell)
        rows.append(row)

    def header(m: str) -> str:
        """A score by the demo model's toy CLIP says so: it is not comparable with CLIP's."""
        from ..models.clip import TOY_CLIP_NAME

        toy = any(ok(e, m) and e["scores"][m].get("model") == TOY_CLIP_NAME for e in entries)
        return f"{m} (toy CLIP)" if toy else m

    return [["method"] + [header(m) for m in names]] + rows


def format_table(rows: list[list]) -> str:
    """The metrics table as aligned text (the CLI prints it)."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows)


def common_length(videos: list) -> list:
    """Each video resampled in time (evenly, first and last frame kept) to the longest's frame
    count: variants on different backbones make different counts (Wan2.1's 4k + 1)."""
    import numpy as np

    n = max(len(v) for v in videos)
    return [v if len(v) == n else v[np.round(np.linspace(0, len(v) - 1, n)).astype(int)]
            for v in videos]


def write_montage(entries: list[dict], path: Path) -> Path:
    """The side-by-side video: every clip at one height (io.montage) and one frame count (the
    montage only: the scores are each variant's own frames')."""
    from ..io import write_mp4
    from ..io.montage import side_by_side

    shown = [e for e in entries if e.get("frames") is not None]
    return write_mp4(side_by_side(common_length([e["frames"] for e in shown]),
                                  [e["name"] for e in shown]), path)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "variant"


def run_variant(var: Variant, ctx, folder: Path, metrics, session: Optional[str],
                tuned_in: Optional[tuple[Path, str]] = None) -> str:
    """Tune, edit with the same seed, score; record the variant's compare run -> its id.
    ``tuned_in``: (run folder, tune run id) of the same tune made for an earlier variant: only
    the edit runs (into ``folder``)."""
    from ..io import read_video
    from ..io.atomic import write_json
    from .edit import EditJobConfig, run_edit
    from .scoring import score, scores_json
    from .tune import run_tune

    if var.flowedit is not None:
        return run_training_free(var, ctx, folder, metrics, session)
    if tuned_in is None:
        tuned = run_tune(var.tune, ctx, run_dir=folder, label=var.label)
        if tuned.stopped:
            ctx.cancel.check()
        run_dir, tune_id = folder, tuned.run_id
    else:
        run_dir, tune_id = tuned_in
        folder.mkdir(parents=True, exist_ok=True)
    edited = run_edit(EditJobConfig(run=str(run_dir), edit=var.edit), ctx,
                      parent=tune_id, out_dir=None if tuned_in is None else folder)
    config = {"tune": to_dict(var.tune), "edit": dataclasses.asdict(var.edit),
              "variant": var.label, "method": var.tune.method, "session": session}
    rid = ctx.open_run("compare", folder, config, seed=var.tune.seed, label=var.label,
                       parent=tune_id)
    source = read_video(Path(run_dir) / "source.mp4")
    results = score(edited.frames, ctx, rid, metrics, prompt=var.edit.prompt, source=source)
    ctx.add_artifact(rid, "mp4", edited.mp4)
    js = write_json(folder / "scores.json", scores_json(results, prompt=var.edit.prompt,
                                                        label=var.label))
    ctx.add_artifact(rid, "json", js)
    ctx.finish_run(rid)
    return rid


def run_training_free(var: Variant, ctx, folder: Path, metrics, session: Optional[str]) -> str:
    """A training-free variant (FlowEdit on a flow model: jobs/flowedit.py): edit the clip,
    score as the tuned variants are scored; record its compare run -> its id."""
    from ..io import read_video
    from ..io.atomic import write_json
    from .flowedit import run_flowedit
    from .scoring import score, scores_json

    edited = run_flowedit(var.flowedit, ctx, out_dir=folder, label=var.label)
    config = {"flowedit": dataclasses.asdict(var.flowedit), "edit": dataclasses.asdict(var.edit),
              "variant": var.label, "method": "flowedit", "session": session}
    rid = ctx.open_run("compare", folder, config, seed=var.flowedit.seed, label=var.label,
                       parent=edited.run_id)
    results = score(edited.frames, ctx, rid, metrics, prompt=var.flowedit.prompt,
                    source=read_video(edited.source))
    ctx.add_artifact(rid, "mp4", edited.mp4)
    js = write_json(folder / "scores.json", scores_json(results, prompt=var.flowedit.prompt,
                                                        label=var.label))
    ctx.add_artifact(rid, "json", js)
    ctx.finish_run(rid)
    return rid


def run_tuned(path: str, cfg: CompareConfig, ctx, folder: Path, session: Optional[str]) -> str:
    """A run tuned before (a vcstudio run or a Tune-A-Video output folder): edit with the
    comparison's prompt, first seed and sampling settings, score; record its compare run."""
    from ..io import read_video
    from ..runs.convert import prepare_run
    from ..io.atomic import write_json
    from .edit import EditJobConfig, run_edit
    from .scoring import score, scores_json

    if ctx.public:  # a public studio's visitor opens only what is in their own folder
        from ..session import safe_path

        if ctx.session is None:
            raise InputError("A public studio compares tuned runs of your own session only.")
        path = str(safe_path(ctx.session, path, must_exist=True))
    rf = prepare_run(path, device=ctx.device)  # a Tune-A-Video folder: its converted run
    label = f"run {Path(path).name}"
    guidance = cfg.guidance
    if guidance is None:  # the run's base model's own
        from ..models.family import default_guidance

        guidance = default_guidance(rf.meta().get("base_model") or rf.config().model)
    ec = EditConfig(prompt=cfg.edit_prompt, steps=cfg.edit_steps, guidance=guidance,
                    seed=int(cfg.seeds[0]) if cfg.seeds else 33)
    folder.mkdir(parents=True, exist_ok=True)
    edited = run_edit(EditJobConfig(run=str(rf.path), edit=ec), ctx, out_dir=folder)
    config = {"run": str(path), "edit": dataclasses.asdict(ec), "variant": label,
              "method": rf.config().method, "session": session}
    rid = ctx.open_run("compare", folder, config, seed=ec.seed, label=label,
                       parent=ctx.find_run(rf.path, "tune"))
    source = read_video(rf.source_path) if rf.source_path.is_file() else None
    results = score(edited.frames, ctx, rid, cfg.metrics, prompt=ec.prompt, source=source)
    ctx.add_artifact(rid, "mp4", edited.mp4)
    js = write_json(folder / "scores.json", scores_json(results, prompt=ec.prompt, label=label))
    ctx.add_artifact(rid, "json", js)
    ctx.finish_run(rid)
    return rid


def run(cfg: CompareConfig, ctx) -> CompareOutcome:
    from ..progress import Event
    from .estimates import EtaClock, announce, base_of

    try:  # the model's own size where none is given, as each variant's tune resolves it
        from ..memory import model_scale

        from .scoring import warm_up

        base = base_of(cfg.model, ctx) if cfg.variants and not _is_flow(cfg.model) else None
        sized = cfg if cfg.size or base is None else dataclasses.replace(
            cfg, size=base.native_size)
        if sized.size:  # the scoring models loaded before the estimate, as the base is
            warm_up(cfg.metrics, sized.size, sized.size, ctx, cfg.edit_prompt)
        est = announce(ctx, estimate, estimate_line, sized,
                       **({"model_scale": model_scale(base.unet)} if base else {})) or {}
    except Exception:  # noqa: BLE001 - the variants report a model they cannot load
        est = {}
    per_variant = list(est.get("per_variant") or [])
    clock = EtaClock(est.get("seconds") or 0.0)
    owner = ctx.session_id if ctx.public else None
    entries = [load_entry(ctx.store, rid, owner) for rid in _unique(cfg.past)]
    out = ctx.run_folder("compare")
    out.mkdir(parents=True, exist_ok=True)
    vs = variants(cfg)
    failed: list[tuple[str, str]] = []
    montage = out / "compare.mp4"
    tunes: dict[str, tuple[Path, str]] = {}  # one tune per distinct TuneConfig
    for i, var in enumerate(vs):
        ctx(Event(i, len(vs), f"variant {i + 1}/{len(vs)}: {var.label}", stage="compare",
                  eta=clock.eta()))
        folder = out / f"{i + 1:02d}-{_slug(var.label)}"
        key = repr(to_dict(var.tune)) if var.tune is not None else None
        try:
            rid = run_variant(var, ctx, folder, cfg.metrics, ctx.session_id, tunes.get(key))
            if key is not None and key not in tunes:
                tunes[key] = (folder, ctx.store.run(rid).parent_run)
        except CancelledError:
            raise
        except VcsError as e:  # one failing variant does not sink the comparison
            failed.append((var.label, str(e)))
            continue
        finally:
            clock.done(per_variant[i] if i < len(per_variant) else 0.0)
        entries.append(load_entry(ctx.store, rid))
        write_montage(entries, montage)
        eta = clock.eta()
        ctx(Event(i + 1, len(vs), f"{var.label} done"
                  + (f", ETA {format_seconds(eta)}" if eta is not None else ""),
                  stage="compare", outputs={"montage": str(montage)}, eta=eta))
    for j, path in enumerate(_unique(cfg.runs)):
        name = f"run {Path(path).name}"
        ctx(Event(j, len(_unique(cfg.runs)), f"tuned run {j + 1}/{len(_unique(cfg.runs))}: {name}",
                  stage="compare", eta=clock.eta()))
        try:
            rid = run_tuned(path, cfg, ctx, out / f"run-{j + 1:02d}-{_slug(Path(path).name)}",
                            ctx.session_id)
        except CancelledError:
            raise
        except VcsError as e:
            failed.append((name, str(e)))
            continue
        finally:
            k = len(vs) + j
            clock.done(per_variant[k] if k < len(per_variant) else 0.0)
        entries.append(load_entry(ctx.store, rid))
        write_montage(entries, montage)
    if not entries:
        raise InputError("No variant finished: " + "; ".join(f"{n}: {m}" for n, m in failed))
    write_montage(entries, montage)
    ids = [e["run_id"] for e in entries]
    csv_path, json_path = out / "compare.csv", out / "compare.json"
    ctx.store.export_csv(ids, csv_path)
    ctx.store.export_json(ids, json_path)
    return CompareOutcome(out, montage, csv_path, json_path, entries, best_table(entries),
                          failed)
