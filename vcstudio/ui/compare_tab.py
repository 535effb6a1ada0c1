"""Compare Methods tab: several methods / presets (the papers' ablations) / CLWS weightings on
the same clip and seed, videos side by side, a metrics table with the best per column marked,
per-frame plots and CSV/JSON export through the run store; a finished sweep opens here too.

Widgets and formatting only: Compare submits the compare job (vcstudio/jobs/compare.py), which
tunes, edits, scores and records each variant."""
from __future__ import annotations

import secrets
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import gradio as gr

from ..errors import InputError, VcsError
from ..jobs.compare import COMPARE_METRICS, best_table, load_entry
from ..config import TuneConfig
from .settings_widgets import number, slider
from .common import (NO_CLIP, VIDEO_TYPES, about, as_int, bounds_of, check_bounds,
                     device_group, ensure_session, estimate_device, event_status, gr_error,
                     gr_update, job_validator, run_job, served, ui_tier, uncalibrated_scale,
                     upload, validated, any_string, demo_tier)
from . import model_picker
from .plots import (StreamView, figure_of, metric_axis, plot_update, rows_frame,
                    table_update)

# what the Compare job computes, re-exported for the tab's callers
__all__ = ["COMPARE_METRICS", "best_table", "load_entry", "past_choices", "compare_handler",
           "open_sweep_handler", "build"]


def variant_labels() -> list[str]:
    """The method presets the Compare tab offers (methods own them: DCT's Tables 2/3, APLA's
    Table 3, apla+dct), by label."""
    from ..methods.registry import presets

    return [p.label for p in presets().values()]


def _owner(studio, sid):
    """Whose past runs a page may list and load: a public studio's visitor only their own
    session's; on a desktop every past comparison (None = no filter)."""
    return (studio.owner(sid) or "") if studio.public else None  # "": nobody's runs


def past_choices(store, owner=None) -> list[tuple[str, str]]:
    """(label shown, run id) of finished compare runs (of ``owner``'s session when given),
    newest first."""
    import time

    runs = store.list_runs(kind="compare", finished=True, limit=50, text=owner)
    return [(f"{r.label} · seed {r.seed} · {time.strftime('%m-%d %H:%M', time.localtime(r.created))}",
             r.id) for r in runs if owner is None or r.config.get("session") == owner]


def tuned_choices(studio, sid) -> list[tuple[str, str]]:
    """(label shown, run folder) of the tuned runs a comparison can edit beside its methods,
    newest first: this session's tunes (all a public studio's visitor may pick) and, on a
    desktop, every finished tune in the store. A desktop also takes any folder typed in (a
    Tune-A-Video output folder)."""
    import time

    seen, out = set(), []

    def add(path: Path, label: str) -> None:
        key = str(path.resolve())
        if key not in seen and (path / "delta.safetensors").is_file():
            seen.add(key)
            out.append((label, key))

    try:
        outputs = studio.session(sid).outputs if sid else None
    except VcsError:
        outputs = None
    if outputs is not None and outputs.is_dir():
        for d in sorted(outputs.iterdir(), key=lambda d: d.stat().st_mtime, reverse=True):
            add(d, f"this session · {d.name}")
    if not studio.public:
        for r in studio.store.list_runs(kind="tune", finished=True, limit=50):
            path = studio.store.abspath(r.run_dir)
            add(path, f"{r.label or path.name} · {r.config.get('method', '')} · "
                      f"{time.strftime('%m-%d %H:%M', time.localtime(r.created))}")
    return out


def _check_choice(names, past, prompt, edit_prompt, runs=()) -> None:
    if not names and not past and not runs:
        raise about("methods", "Tick at least one method (or a past run, or a tuned run) to "
                               "compare.")
    if (names or runs) and not edit_prompt:
        raise about("edit_prompt", "Give the edit prompt.")
    if names and not prompt:
        raise about("prompt", "Give both the source prompt and the edit prompt.")


def compare_config(studio, path, prompt, edit_prompt, names, past, frames, size, steps, seed,
                   runs=(), model: str = ""):
    """The compare job's config from the tab's inputs (the clip already resolved; ``model``:
    the picked base of the variants that name none after ``@``, "" = the studio's default)."""
    from ..jobs.compare import CompareConfig

    return CompareConfig(video=str(path or ""), prompt=prompt or "",
                         edit_prompt=edit_prompt or "", variants=list(names or []),
                         past=list(past or []), runs=[str(r) for r in runs or []],
                         seeds=[as_int("Seed", seed)],
                         model=model_picker.job_model(studio, model),
                         frames=as_int("Frames", frames),
                         size=as_int("Size", size), steps=as_int("Tuning steps", steps),
                         guidance=ui_tier(studio).guidance)


def compare_estimate_text(studio, names, runs, frames, size, steps) -> str:
    """The Compare tab's estimate line (never waits for the device): each method's tune and
    edit, each tuned run's edit (vcstudio/jobs/compare.py ``estimate``)."""
    from ..jobs.compare import estimate, estimate_line

    names, runs = list(names or []), [r for r in (runs or []) if r]
    if not names and not runs:
        return "Tick methods (or pick tuned runs) to see what the comparison takes."
    try:
        cfg = compare_config(studio, "", "", "", names, [], frames, size, steps, 33, runs)
        dev = estimate_device(studio)
        est = estimate(cfg, dev, calibration_dir=studio.data_dir,
                       model_scale=uncalibrated_scale(cfg.size, cfg.size))
    except Exception as e:  # an estimate must never block the page
        return f"(no estimate: {e})"
    return estimate_line(est, dev)


def compare_check(studio):
    """The Compare event's validator (common.job_validator): the methods, the prompts, the
    clip and every variant's tune settings, before the device queue (a past run's owner: the
    handler, in the session)."""
    def build(sid, video, prompt, edit_prompt, names, past, runs, frames, size, steps, seed,
              model=""):
        names, past, runs = list(names or []), list(past or []), list(runs or [])
        _check_choice(names, past, prompt, edit_prompt, runs)
        if names and not video:
            raise about("clip", NO_CLIP)
        path = (video.get("path") if isinstance(video, dict) else video) if names else None
        return compare_config(studio, path, prompt, edit_prompt, names, past, frames, size,
                              steps, seed, runs, model)
    return job_validator(studio, "compare", build)


def compare_handler(studio, sid, video, prompt, edit_prompt, names, past, frames, size, steps,
                    seed, request=None, progress=None, runs=(), model: str = ""):
    """``runs``: tuned run folders (or Tune-A-Video folders, on a desktop) edited beside the
    methods with the same edit prompt and seed."""
    sid = ensure_session(studio, sid)
    try:
        runs = [r for r in (runs or []) if r]
        _check_choice(names, past, prompt, edit_prompt, runs)
        path = upload(studio, sid, video) if names else None
        cfg = compare_config(studio, path, prompt, edit_prompt, names, past, frames, size,
                             steps, seed, runs, model)
        res, variant, streamed = None, "", {}
        view = StreamView(studio.session(sid).outputs / "previews" / secrets.token_hex(4))
        try:
            for item in run_job(studio, sid, "compare", cfg, request, progress):
                if isinstance(item, tuple):
                    res = item[1] if item[0] == "result" else res
                    continue
                if item.stage == "estimate":  # the comparison's estimate, measured at its start
                    yield (item.message, gr_update(), gr_update(), gr_update(), gr_update(),
                           gr_update())
                    continue
                if item.stage == "compare":
                    montage = item.outputs.get("montage")
                    if not montage:  # "variant i/n: <label>": what the next events are about
                        variant = item.message.split(": ", 1)[-1]
                    yield (event_status(item, item.message),
                           served(studio, montage) if montage else gr_update(),
                           gr_update(),
                           gr_update(), gr_update(), gr_update())
                    continue
                # each variant's edit previews in the video slot while it denoises and
                # decodes, and its per-frame scores join the plot as they come
                changed = view.update(item)
                if "metrics" in changed:
                    for m, v in item.metrics.items():
                        s_ = streamed.setdefault(f"{variant} · {m}", [])
                        s_.extend([None] * (item.frame + 1 - len(s_)))
                        s_[item.frame] = v
                if changed:
                    yield (f"{variant}: {view.status(item)}",
                           served(studio, view.video) if "video" in changed else gr_update(),
                           gr_update(),
                           _rows(streamed) if "metrics" in changed else gr_update(),
                           gr_update(), gr_update())
        finally:
            view.close()
        for name, msg in res.failed:  # one failing variant does not sink the comparison
            gr.Warning(f"{name}: {msg}")
        series = {f"{e['name']} · {m}": e["scores"][m]["per_frame"] for e in res.entries
                  for m in ("clip_text", "warp_error")
                  if m in e["scores"] and not e["scores"][m].get("skipped")}
        yield ("Done: best per column marked with ★.", served(studio, res.montage),
               _frame(res.table), _rows(series),
               [served(studio, res.csv), served(studio, res.json)],
               gr_update(choices=past_choices(studio.store, _owner(studio, sid))))
    except Exception as e:
        raise gr_error(e)


def _rows(series: dict):
    """The per-frame rows of ``{"run · metric": values}`` (API clients read them): the real
    values, each with its metric's axis."""
    return plot_update(series, "frame", "run · metric", metric_axis)


def compare_figure(rows):
    """The page's figure of the per-frame rows: one panel per metric (its own axis and
    unit), one line per run."""
    df = rows_frame(rows)
    return None if df is None else figure_of(
        df, {name: name.rsplit(" · ", 1)[0] for name in df["series"]},
        title="Per-frame CLIP alignment and warp error, by run")


def open_sweep_handler(studio, sid, sweep_id):
    """A finished sweep's runs side by side: montage of the cells' edits, metrics table with
    the best per column, cells.csv (videos from outside the data folder are copied into the
    session folder first)."""
    import shutil

    from ..jobs.compare import write_montage
    from ..jobs.sweep import open_sweep

    sid = ensure_session(studio, sid)
    try:
        if not sweep_id:
            raise InputError("Pick a sweep (run one with `vcstudio sweep grid.yaml`).")
        if studio.public:
            raise InputError("This public studio opens no sweeps.")
        out = studio.session(sid).outputs / f"sweep-{sweep_id}"
        entries = open_sweep(studio.store, sweep_id, copy_to=out)
        if not entries:
            raise InputError("That sweep has no finished cells yet.")
        montage = None
        if any(e["frames"] is not None for e in entries):
            out.mkdir(parents=True, exist_ok=True)
            montage = str(write_montage(entries, out / "sweep.mp4"))
        files = []
        for kind, rel in studio.store.artifacts(sweep_id):
            if kind == "csv":
                out.mkdir(parents=True, exist_ok=True)
                files.append(str(shutil.copyfile(studio.store.abspath(rel), out / "cells.csv")))
        return (f"Sweep with {len(entries)} cells: best per column marked with ★.", montage,
                _frame(best_table(entries)), None, files)
    except Exception as e:
        raise gr_error(e)


def _frame(rows: list[list]):
    """The metrics table, wrapping and with column widths so every column fits."""
    return table_update([list(r) for r in rows[1:]], list(rows[0]))


def build(studio, sid_state, edit_refs):
    from .edit_tab import _examples, example_labels

    # the demo model, or a CPU-sized Space: small defaults that finish in minutes
    small = demo_tier(studio)
    tier = ui_tier(studio)
    lim = studio.limits
    group = device_group(studio)
    with gr.Tab("Compare Methods", elem_id="compare-tab") as tab:
        gr.Markdown("Run several methods on the **same clip, prompt and seed**, then compare "
                    "the edits and their scores. Each method tunes once, so this takes "
                    "a while. Past comparisons stay in the run store: tick them to add them "
                    "to the table.")
        with gr.Row():
            with gr.Column():
                model = model_picker.build(studio)  # a variant's "@model" names its own
                video = gr.File(label="Clip (mp4, webm, mov, avi, gif, or a zip of images)",
                                file_types=VIDEO_TYPES, type="filepath", height=120)
                prompt = gr.Textbox(value="", label="Source prompt")
                edit_prompt = gr.Textbox(value="", label="Edit prompt")
                if _examples():
                    gr.Examples(_examples(), inputs=[video, prompt, edit_prompt],
                                label="Examples", example_labels=example_labels())
                labels = variant_labels()
                names = gr.CheckboxGroup(labels, value=labels[:2], label="Methods")
                with gr.Row():
                    past = any_string(gr.CheckboxGroup([], label="Past runs", scale=4))
                    refresh = gr.Button("↻", scale=0, min_width=40)
                runs = any_string(gr.Dropdown(
                    [], value=[],
                    # a custom value is a run_dir an API client sends (the job checks whose
                    # it is): Gradio's own choice check would answer it with a bare HTTP 400
                    multiselect=True, allow_custom_value=True,
                    label="Tuned runs to edit beside them (this session's tunes"
                          + ("" if studio.public else "; or type a run folder or a "
                             "Tune-A-Video output folder") + ")"))
                with gr.Row():
                    frames = gr.Slider(2, max(2, lim.max_frames), value=min(8, lim.max_frames),
                                       step=1, label="Frames")
                    size = gr.Slider(64, max(64, lim.max_side), value=tier.side,
                                     step=8, label="Size (long side)",
                                     info="the other side follows the clip's aspect, as in "
                                          "the Edit tab")
                    steps = slider(TuneConfig, "steps", 60 if small else 300, lim)
                    seed = number(TuneConfig, "seed", tier.seed, precision=0)
                est = gr.Markdown(compare_estimate_text(
                    studio, labels[:2], [], min(8, lim.max_frames), tier.side,
                    60 if small else 300), elem_id="compare-estimate", label="Estimate")
                btn = gr.Button("Compare", variant="primary")
                with gr.Row():
                    sweeps = any_string(gr.Dropdown([], label="Sweeps (vcstudio sweep)",
                                                    scale=4))
                    sweep_refresh = gr.Button("↻", scale=0, min_width=40)
                    sweep_btn = gr.Button("Open sweep", scale=1)
                status = gr.Markdown(label="Status")
            with gr.Column():
                montage = gr.Video(label="Edits side by side (in sync)", height=260,
                                   autoplay=True, loop=True)
                table = gr.Dataframe(label="Metrics (★ = best)", interactive=False, wrap=True,
                                     elem_classes=["vcs-table"],
                                     headers=["method", *COMPARE_METRICS])  # not "1 2 3"
        with gr.Row():
            # the page shows the figure of the rows API clients read (API.md: plot) in the
            # visually hidden LinePlot
            figure = gr.Plot(label="Per-frame CLIP alignment and warp error, by run",
                             show_label=False, format="png", elem_id="compare-figure",
                             elem_classes=["vcs-figure"])  # titled in the figure
            plot = gr.LinePlot(x="frame", y="value", color="series",
                               label="Per-frame CLIP alignment and warp error",
                               visible="hidden")
            files = gr.File(label="Export (CSV, JSON)", file_count="multiple")
        w = SimpleNamespace(model=model, tab=tab, video=video, prompt=prompt, edit_prompt=edit_prompt,
                            names=names, past=past, refresh=refresh, runs=runs, frames=frames,
                            size=size, steps=steps, seed=seed, est=est, btn=btn, sweeps=sweeps,
                            sweep_refresh=sweep_refresh, sweep_btn=sweep_btn, status=status,
                            montage=montage, table=table, figure=figure, plot=plot, files=files)
        _wire(studio, sid_state, group, w)


def _wire(studio, sid_state, group, w: SimpleNamespace) -> None:
    """The tab's events and its named API (API.md); ``w``: the tab's widgets."""
    from ..jobs.sweep import finished_sweeps

    def refresh_past(session: str):
        return (gr_update(choices=past_choices(studio.store, _owner(studio, session))),
                gr_update(choices=tuned_choices(studio, session)))

    def refresh_sweeps():
        return gr_update(choices=[] if studio.public else finished_sweeps(studio.store))

    def open_sweep(session: str, sweep_id: str):
        """A finished sweep's cells side by side (desktop only)."""
        return open_sweep_handler(studio, session, sweep_id)

    def compare(session: str = "", clip: Optional[str] = None, prompt: str = "",
                edit_prompt: str = "", methods: Optional[list[str]] = None,
                past_runs: Optional[list[str]] = None, runs: Optional[list[str]] = None,
                frames: float = 8, size: float = 64, steps: float = 60, seed: float = 33,
                model: str = "", request: gr.Request = None, progress=gr.Progress()):
        """Several methods on the same clip, prompt and seed, and tuned runs edited with
        the same prompt and seed; metrics table and plots. ``model``: the base the methods
        tune (a variant "dct@sd21" names its own; "" = the studio's default)."""
        yield from compare_handler(studio, session, clip, prompt, edit_prompt, methods,
                                   past_runs, frames, size, steps, seed, request, progress,
                                   runs, model)

    def compare_estimate(methods: list[str], runs: list[str], frames: float, size: float,
                         steps: float) -> str:
        """Memory and time of a comparison with these settings (never waits for the
        device)."""
        check_bounds(est_bounds, (frames, size, steps))
        return compare_estimate_text(studio, methods, runs, frames, size, steps)

    est_bounds = bounds_of([w.frames, w.size, w.steps])
    est_inputs = [w.names, w.runs, w.frames, w.size, w.steps]
    est_btn = gr.Button(visible=False)  # the API's /compare_estimate (one public name)
    est_btn.click(compare_estimate, est_inputs, w.est, api_name="compare_estimate",
                  concurrency_id="preview")
    for c in est_inputs:
        c.change(compare_estimate, est_inputs, w.est, api_name=False,
                 concurrency_id="preview", trigger_mode="always_last")
    w.refresh.click(refresh_past, sid_state, [w.past, w.runs], api_name=False)
    # opening the tab lists what this session (a desktop: the store) has now
    w.tab.select(refresh_past, sid_state, [w.past, w.runs], api_name=False,
                 show_progress="hidden").then(refresh_sweeps, None, w.sweeps, api_name=False,
                                              show_progress="hidden")
    # opening the list shows this session's newest tunes (made in the Edit tab meanwhile)
    w.runs.focus(lambda session: gr_update(choices=tuned_choices(studio, session)),
                 sid_state, w.runs, api_name=False, show_progress="hidden")
    w.sweep_refresh.click(refresh_sweeps, None, w.sweeps, api_name=False)
    w.sweep_btn.click(open_sweep, [sid_state, w.sweeps],
                      [w.status, w.montage, w.table, w.plot, w.files],
                      api_name="open_sweep", concurrency_id="control",
                      show_progress_on=[w.status])
    w.plot.change(compare_figure, w.plot, w.figure, api_name=False, concurrency_id="figure",
                  concurrency_limit=2, trigger_mode="always_last", show_progress="hidden")
    compare_inputs = [sid_state, w.video, w.prompt, w.edit_prompt, w.names, w.past, w.runs,
                      w.frames, w.size, w.steps, w.seed, w.model]
    w.btn.click(compare, compare_inputs, [w.status, w.montage, w.table, w.plot, w.files, w.past],
                api_name="compare", concurrency_id=group, concurrency_limit=1,
                show_progress_on=[w.status],
                validator=validated(compare, compare_check(studio), compare_inputs))
