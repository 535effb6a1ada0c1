"""Compare Methods tab: several methods / CLWS weightings / ablations on the same clip and seed,
run one after another, videos side by side, a metrics table with the best per column marked,
per-frame plots and CSV/JSON export through the run store."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..config import EditConfig
from ..errors import InputError
from .common import ensure_session, frame_strip, gr_error, run_job, series_frame, upload
from .edit_tab import tune_config

# name -> changes to the UI's default TuneConfig
VARIANTS = {
    "baseline (Tune-A-Video)": dict(method="baseline"),
    "DCT full (mul-Fourier CLWS)": dict(method="dct"),
    "DCT, CLWS Gaussian": dict(method="dct", clws="gaussian"),
    "DCT, no adapter": dict(method="dct", adapter=False),
    "APLA full (VGT-Pure)": dict(method="apla"),
    "APLA, no discriminator": dict(method="apla", disc=False),
}
COMPARE_METRICS = ["clip_text", "consistency_adjacent", "warp_error", "fci", "flicker", "psnr",
                   "vcd"]


def _run_variant(studio, sid, path, prompt, edit_prompt, name, frames, size, steps, seed,
                 progress=None, cancel=None, cache=None):
    """One variant: tune, edit, score -> dict (runs inside the job runner)."""
    from ..io import read_video
    from ..metrics import evaluate
    from ..pipelines.edit import edit
    from ..pipelines.tune import tune

    kw = dict(VARIANTS[name])
    method = kw.pop("method")
    cfg = tune_config(path, prompt, frames, 1, 0, size, "crop", method, steps, 3e-5, seed,
                      model=studio.model or "", **kw)
    cfg = dataclasses.replace(cfg, preview_every=0)
    run_dir = studio.session(sid).outputs / f"cmp-{abs(hash((name, seed))) % 10**8}"
    res = tune(cfg, run_dir, progress=progress, cancel=cancel, cache=cache)
    out = edit(res.run_dir, EditConfig(prompt=edit_prompt, seed=int(seed),
                                       guidance=5.0 if studio.embedded else 12.5),
               progress=progress, cancel=cancel, cache=cache)
    source = read_video(res.run_dir / "source.mp4")
    scores = evaluate(out.frames, prompt=edit_prompt, source=source, metrics=COMPARE_METRICS,
                      cache=cache)
    return {"name": name, "frames": out.frames, "mp4": str(out.mp4), "scores": scores,
            "config": cfg}


def compare_handler(studio, sid, video, prompt, edit_prompt, names, frames, size, steps, seed):
    sid = ensure_session(studio, sid)
    try:
        if not names:
            raise InputError("Tick at least one method to compare.")
        if not edit_prompt or not prompt:
            raise InputError("Give both the source prompt and the edit prompt.")
        path = upload(studio, sid, video)
        results, rows, strips = [], [], []
        for i, name in enumerate(names):
            status = f"Running {name} ({i + 1}/{len(names)})…"
            yield status, None, None, None, None
            try:
                res = None
                for item in run_job(studio, sid, "compare", _run_variant, studio, sid, path,
                                    prompt, edit_prompt, name, frames, size, steps, seed,
                                    cache=studio.cache):
                    if isinstance(item, tuple) and item[0] == "result":
                        res = item[1]
            except Exception as e:  # one failing variant does not sink the comparison
                import gradio as gr

                gr.Warning(f"{name}: {e}")
                continue
            results.append(res)
            run = studio.store.create_run("compare", config=res["config"], seed=int(seed),
                                          label=name)
            vals = {k: float(r.value) for k, r in res["scores"].items() if not r.skipped}
            studio.store.add_video_metrics(run.id, vals)
            for k, r in res["scores"].items():
                if not r.skipped:
                    studio.store.add_frame_metrics(run.id, k, r.per_frame)
            studio.store.finish_run(run.id)
            res["run_id"] = run.id
            strips.append((frame_strip(res["frames"], 8), name))
            yield status, strips, None, None, None
        if not results:
            raise InputError("No method finished; see the warnings.")
        table = _table(results)
        series = {f"{r['name']} · {m}": r["scores"][m].per_frame for r in results
                  for m in ("clip_text", "warp_error") if not r["scores"][m].skipped}
        csv_path = studio.session(sid).outputs / "compare.csv"
        studio.store.export_csv([r["run_id"] for r in results], csv_path)
        yield ("Done: best per column marked with ★.", strips, table,
               series_frame(series, x="frame"), str(csv_path))
    except Exception as e:
        raise gr_error(e)


def _table(results: list[dict]) -> list[list]:
    """Rows per method; the best value in each metric column is starred."""
    metrics = [m for m in COMPARE_METRICS
               if any(not r["scores"][m].skipped for r in results if m in r["scores"])]
    best = {}
    for m in metrics:
        vals = [(r["scores"][m].value, i) for i, r in enumerate(results)
                if not r["scores"][m].skipped]
        hib = next(r["scores"][m].higher_is_better for r in results)
        if vals and hib is not None:
            best[m] = (max if hib else min)(vals)[1]
    rows = []
    for i, r in enumerate(results):
        row = [r["name"]]
        for m in metrics:
            s = r["scores"][m]
            cell = "skipped" if s.skipped else f"{s.value:.4g}"
            row.append(("★ " + cell) if best.get(m) == i else cell)
        rows.append(row)
    return [["method"] + metrics] + rows


def build(studio, sid_state, edit_refs):
    import gradio as gr

    # the demo model, or a CPU-sized Space: small defaults that finish in minutes
    small = studio.embedded or studio.limits.max_frames <= 8
    with gr.Tab("Compare Methods"):
        gr.Markdown("Run several methods on the **same clip, prompt and seed**, then compare "
                    "the edits and their scores. Each method tunes once, so this takes "
                    "a while.")
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Clip", sources=["upload"], height=200)
                prompt = gr.Textbox(label="Source prompt")
                edit_prompt = gr.Textbox(label="Edit prompt")
                names = gr.CheckboxGroup(list(VARIANTS), value=list(VARIANTS)[:2],
                                         label="Methods")
                with gr.Row():
                    frames = gr.Slider(2, 24, value=8, step=1, label="Frames")
                    size = gr.Slider(64, 512, value=64 if small else 512, step=64,
                                     label="Size")
                    steps = gr.Slider(10, 500, value=60 if small else 300, step=10,
                                      label="Tuning steps")
                    seed = gr.Number(value=33, precision=0, label="Seed")
                btn = gr.Button("Compare", variant="primary")
                status = gr.Markdown()
            with gr.Column():
                gallery = gr.Gallery(label="Edits side by side (one row per method)",
                                     columns=1, height=320)
                table = gr.Dataframe(label="Metrics (★ = best)", interactive=False)
        with gr.Row():
            plot = gr.LinePlot(x="frame", y="value", color="series",
                               label="Per-frame CLIP alignment and warp error", height=240)
            csv = gr.File(label="CSV export")
        btn.click(lambda *a: (yield from compare_handler(studio, *a)),
                  [sid_state, video, prompt, edit_prompt, names, frames, size, steps, seed],
                  [status, gallery, table, plot, csv], api_name="compare")
