"""``vcstudio bench toy-edit``: tuning methods scored against a known answer in the toy world.

For N edit cases (toyworld/edits.py: a held-out toy source clip and the exact target clip of an
edit that changes its colour, shape or background and keeps its motion), each method -- a method
name or preset, as Compare takes them (jobs/compare.py ``variants``) -- tunes on the rendered
source with the tier's defaults (config.TierDefaults; the UI's demo tier unless ``--tier
full``), inverts and edits to the target's caption. It runs the tune and edit jobs' own run
functions on a detached context, so it measures what users get and records nothing in the run
store. The source is handed over as lossless PNG frames at the tier's side, stride 1 (the
rendered clip is the sampled clip); previews and checkpoints are off and the clip is inverted
at the edit's step count (as the Edit tab's defaults: the first edit reuses that inversion).

``--cases examples`` runs the app's bundled examples with their suggested edits instead
(toyworld/examples.py: each changes two attributes at once, what a new user tries first).

toyworld/scoring.py scores each edit; a method's row is the mean over its cases, plus the mean
wall seconds of a tune + edit (loading the model counts, on the first; scoring does not). Writes
``toy-edit.csv`` (a row per method), ``cases.csv`` (a row per case and method) and
``toy-edit.json`` ({"rows", "cases", "failed", "settings", "report"}) into the output folder.
``report_line`` checks issue 29's targets for the demo model (baseline, demo tier, N >= 20).
"""
from __future__ import annotations

import csv
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import CancelledError, VcsError
from ..progress import Event, ProgressFn, null_progress
from ..toyworld.scoring import SCORES

COLUMNS = (*SCORES, "seconds")
LOWER_IS_BETTER = ("track_error_pct", "seconds")
TIERS = ("demo", "full")
CASE_SETS = ("heldout", "examples")  # edit_cases(n, seed) / example_cases()
# issue 29, part 4: what the demo model must reach (baseline method, demo tier, N >= MIN_CASES)
TARGETS = (("changed_attribute_acc", ">=", 0.70, "changed attribute"),
           ("kept_attribute_acc", ">=", 0.85, "kept attributes"),
           ("track_error_pct", "<=", 10.0, "track error %"),
           ("max_seconds", "<=", 120.0, "slowest tune+edit s"))
MIN_CASES = 20


@dataclass
class ToyEditConfig:
    methods: list[str] = field(default_factory=lambda: ["baseline"])
    n: int = 20  # edit cases
    seed: Optional[int] = None  # picks the cases and seeds every tune and edit; None = tier's
    model: str = ""  # "" = the embedded demo model (assets/toy-sd)
    tier: str = "demo"  # whose defaults: demo (the UI's with the demo model) or full
    steps: int = 0  # tuning steps; 0 = the tier's
    edit_steps: int = 0  # sampling (and inversion) steps; 0 = the tier's
    device: str = ""  # "" = CUDA if present, else the CPU
    cases: str = "heldout"  # which edits (CASE_SETS); examples: the first n of the 10
    inversion_prompt: Optional[str] = None  # None = the tune's default, the empty prompt


@dataclass
class ToyEditResult:
    out_dir: Path
    rows: list[dict]  # per method: method, label, n, COLUMNS, max_seconds
    cases: list[dict]  # per case and method: the scores, seconds, prompts, changed attribute
    failed: list[dict]  # {"method", "case", "message"}
    settings: dict
    table: list[list]  # header + a row per method, best per column starred
    csv: Path
    json: Path


def settings_of(cfg: ToyEditConfig) -> dict:
    """The settings every tune and edit of the run uses: the tier's, with the overrides."""
    from ..config import tier_defaults
    from ..models.loading import EMBEDDED_MODEL

    t = tier_defaults(cfg.tier == "demo")
    inv = "" if cfg.inversion_prompt is None else cfg.inversion_prompt
    return {"model": cfg.model or str(EMBEDDED_MODEL), "tier": cfg.tier, "frames": t.frames,
            "size": t.side, "steps": cfg.steps or t.steps, "lr": t.lr,
            "seed": t.seed if cfg.seed is None else int(cfg.seed),
            "edit_steps": cfg.edit_steps or t.edit_steps, "guidance": t.guidance,
            "n": cfg.n, "methods": list(cfg.methods), "cases": cfg.cases,
            "inversion_prompt": inv,
            "tier_defaults": not (cfg.steps or cfg.edit_steps) and inv == ""}


def validate(cfg: ToyEditConfig) -> None:
    """One-line errors before anything loads: the counts, the tier, every method's name."""
    from ..config import MAX_SAMPLING_STEPS
    from ..errors import InputError
    from .. import validate as v
    from ..methods.registry import find_preset

    v.whole("n (--n)", cfg.n, 1, 10000)
    v.choice("tier (--tier)", cfg.tier, TIERS)
    v.choice("cases (--cases)", cfg.cases, CASE_SETS)
    v.whole("steps (--steps)", cfg.steps, 0, None, " (0 = the tier's)")
    v.whole("edit_steps (--edit-steps)", cfg.edit_steps, 0, MAX_SAMPLING_STEPS,
            " (0 = the tier's)")
    if cfg.seed is not None:
        v.seed("seed (--seed)", cfg.seed)
    if cfg.inversion_prompt is not None:
        v.check_inversion_prompt(cfg.inversion_prompt)
    if not cfg.methods:
        raise InputError("methods (--methods) is empty: name at least one method or preset.")
    for m in cfg.methods:
        find_preset(m)


def _variant(method: str, case, video: Path, s: dict):
    """The tune and edit configs of ``method`` on one case, as Compare builds them."""
    from ..jobs.compare import CompareConfig, variants

    var = variants(CompareConfig(
        video=str(video), prompt=case.source_prompt, edit_prompt=case.edit_prompt,
        variants=[method], seeds=[s["seed"]], model=s["model"], frames=s["frames"], stride=1,
        size=s["size"], steps=s["steps"], lr=s["lr"], edit_steps=s["edit_steps"],
        guidance=s["guidance"]))[0]
    # invert at the edit's step count, so the edit starts from the tune's own inversion
    return var, dataclasses.replace(var.tune, inversion_steps=var.edit.steps,
                                    inversion_prompt=s["inversion_prompt"])


class _Bar:
    """The jobs' events as one bar over the whole benchmark, in units of U-Net steps: per case
    and method its tuning steps, inversion steps and sampling steps."""

    def __init__(self, progress: ProgressFn, pairs: int, s: dict) -> None:
        self.progress = progress
        self.phases = {"tune": (0, s["steps"]), "invert": (s["steps"], s["edit_steps"]),
                       "sample": (s["steps"] + s["edit_steps"], s["edit_steps"])}
        self.unit = s["steps"] + 2 * s["edit_steps"]
        self.total = pairs * self.unit
        self.k, self.label, self.done = 0, "", 0

    def start(self, k: int, label: str) -> None:
        self.k, self.label = k, label
        self.done = k * self.unit
        self.progress(Event(self.done, self.total, label, stage="toy-edit"))

    def __call__(self, ev: Event) -> None:
        if ev.stage in self.phases and ev.total:
            off, size = self.phases[ev.stage]
            frac = min(ev.step, ev.total) / ev.total
            self.done = max(self.done, self.k * self.unit + off + round(frac * size))
        self.progress(Event(min(self.done, self.total - 1), self.total,
                            f"{self.label}: {ev.stage} {ev.step}/{ev.total}", stage="toy-edit"))

    def finish(self) -> None:
        self.progress(Event(self.total, self.total, "done", stage="toy-edit"))


def _encoder(device, cache):
    """The CLIP encoder of the consistency score (offline: the toy CLIP); False if none."""
    from ..models.clip import load_default_clip_encoder

    try:
        return load_default_clip_encoder(device, cache)
    except VcsError:
        return False


def _nanmean(values) -> Optional[float]:
    """The mean of the values that are there (not None, not NaN); None if none is."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else None


def _no_nan(v):
    """NaN (a score not computed, a frame without a pair) as None: JSON has no NaN."""
    return None if isinstance(v, float) and math.isnan(v) else v


def summarise(cases: list[dict], methods: list[str], labels: dict[str, str]) -> list[dict]:
    """A row per method: the mean of each score over its scored cases, the mean and the
    largest seconds."""
    rows = []
    for m in methods:
        mine = [c for c in cases if c["method"] == m]
        row = {"method": m, "label": labels.get(m, m), "n": len(mine)}
        for col in COLUMNS:
            row[col] = _nanmean(c[col] for c in mine)
        row["max_seconds"] = max((c["seconds"] for c in mine), default=None)
        rows.append(row)
    return rows


def table_of(rows: list[dict]) -> list[list]:
    """Header + a row per method, the best value of each column starred (higher is better,
    but for track error and seconds; nothing is starred with one method)."""
    from ..jobs.compare import best_table

    entries = [{"name": r["method"],
                "scores": {c: {"value": r[c], "higher_is_better": c not in LOWER_IS_BETTER}
                           for c in COLUMNS if r[c] is not None}} for r in rows]
    return best_table(entries, list(COLUMNS))


def report_line(rows: list[dict], settings: dict) -> str:
    """Issue 29's part-4 targets, each with its value and pass/FAIL: the baseline row's
    changed / kept attribute accuracy, track error and slowest tune + edit, and whether the
    run qualifies (demo tier at its defaults, N >= MIN_CASES)."""
    row = next((r for r in rows if r["method"] in ("baseline", "baseline (Tune-A-Video)")), None)
    if row is None or not row["n"]:
        return "report: no baseline row (add baseline to --methods) -- targets not checked"
    parts = []
    for key, op, goal, name in TARGETS:
        val = row[key]
        ok = val is not None and (val >= goal if op == ">=" else val <= goal)
        shown = "–" if val is None else f"{val:.4g}"
        parts.append(f"{name} {shown} ({op} {goal:g}) {'pass' if ok else 'FAIL'}")
    qual = settings["tier"] == "demo" and settings["tier_defaults"]
    parts.append(f"demo-tier defaults {'pass' if qual else 'FAIL'}")
    held = settings.get("cases", "heldout") == "heldout"  # the targets are set on held-out ones
    parts.append(f"held-out cases {'pass' if held else 'FAIL'}")
    parts.append(f"N {row['n']} (>= {MIN_CASES}) {'pass' if row['n'] >= MIN_CASES else 'FAIL'}")
    return f"report (baseline, {Path(settings['model']).name}): " + "; ".join(parts)


def _write_csv(path: Path, records: list[dict], columns: list[str]) -> Path:
    from ..io.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(records)
    return path


def run_toy_edit(cfg: ToyEditConfig, out_dir, progress: ProgressFn = null_progress,
                 cache=None, cancel=None) -> ToyEditResult:
    """Run the benchmark into ``out_dir`` (see the module's docstring). A method that fails on
    a case is named in ``failed`` and the others go on."""
    import json

    from ..config import Limits
    from ..device import pick_device
    from ..io import write_frames, write_mp4
    from ..io.atomic import atomic_path
    from ..jobs.edit import EditJobConfig, run_edit
    from ..pipelines.edit.edits import validate_edit
    from ..jobs.tune import run_tune
    from ..jobs.tune import validate as validate_tune
    from ..methods.registry import find_preset
    from ..models.cache import default_cache
    from ..session import DetachedContext
    from ..toyworld.edits import edit_cases
    from ..toyworld.examples import example_cases
    from ..toyworld.scoring import score_edit

    validate(cfg)
    s = settings_of(cfg)
    cache = cache if cache is not None else default_cache
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases = (edit_cases(cfg.n, s["seed"], s["frames"]) if cfg.cases == "heldout"
             else example_cases(s["frames"])[:cfg.n])
    labels = {m: find_preset(m).label for m in cfg.methods}
    # every setting checked before the first tune (the jobs' own validate steps)
    for m in cfg.methods:
        var, tune = _variant(m, cases[0], out / "check", s)
        validate_tune(tune, Limits())
        validate_edit(var.edit)
    device = str(pick_device(cfg.device or None))
    bar = _Bar(progress, len(cases) * len(cfg.methods), s)
    ctx = DetachedContext(out, device=device, cache=cache, cancel=cancel, progress=bar,
                          stoppable=True)
    encoder = _encoder(device, cache)
    records, failed = [], []
    for i, case in enumerate(cases):
        folder = out / f"case-{i + 1:02d}"
        source, target = case.render(s["size"])
        video = write_frames(source, folder / "source")
        write_mp4(target, folder / "target.mp4")
        for j, m in enumerate(cfg.methods):
            bar.start(i * len(cfg.methods) + j, f"case {i + 1}/{len(cases)} {m}")
            var, tune = _variant(m, case, video, s)
            run_dir = folder / _slug(m)
            try:
                t0 = time.perf_counter()
                tuned = run_tune(tune, ctx, run_dir=run_dir, label=var.label)
                if tuned.stopped:
                    ctx.cancel.check()
                edited = run_edit(EditJobConfig(run=str(run_dir), edit=var.edit), ctx,
                                  out_dir=run_dir / "edit")
                seconds = time.perf_counter() - t0
            except CancelledError:
                raise
            except VcsError as e:  # one failing method does not sink the benchmark
                failed.append({"method": m, "case": i + 1, "message": str(e)})
                continue
            sc = score_edit(edited.frames, source, target, case.expected(),
                            case.changed_attributes, encoder)
            records.append({"case": i + 1, "method": m,
                            **{k: _no_nan(v) for k, v in sc.summary().items()},
                            "seconds": round(seconds, 2),
                            "changed": "+".join(case.changed_attributes),
                            "source_prompt": case.source_prompt,
                            "edit_prompt": case.edit_prompt, "motion": case.source.motion,
                            "edit": str(edited.mp4),
                            "per_frame": {k: [_no_nan(x) for x in v]
                                          for k, v in sc.per_frame.items()}})
    bar.finish()
    rows = summarise(records, list(cfg.methods), labels)
    report = report_line(rows, s)
    csv_path = _write_csv(out / "toy-edit.csv", rows,
                          ["method", "label", "n", *COLUMNS, "max_seconds"])
    _write_csv(out / "cases.csv", records,
               ["case", "method", "changed", *COLUMNS, "motion", "source_prompt",
                "edit_prompt", "edit"])
    json_path = out / "toy-edit.json"
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps({"rows": rows, "cases": records, "failed": failed,
                                   "settings": s, "report": report}, indent=1, default=str))
    return ToyEditResult(out, rows, records, failed, s, table_of(rows), csv_path, json_path)


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "method"
