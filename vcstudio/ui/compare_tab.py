"""Compare Methods tab: several methods / CLWS weightings / ablations on the same clip and seed,
run one after another, videos side by side, a metrics table with the best per column marked,
per-frame plots and CSV/JSON export through the run store."""
from __future__ import annotations

import dataclasses

from ..config import EditConfig, to_dict
from ..errors import InputError
from .common import ensure_session, gr_error, gr_update, run_job, series_frame, upload
from .edit_tab import tune_config

# name -> changes to the UI's default TuneConfig
VARIANTS = {
    "baseline (Tune-A-Video)": dict(method="baseline"),
    "DCT full (mul-Fourier CLWS)": dict(method="dct"),
    "DCT, CLWS Gaussian": dict(method="dct", clws="gaussian"),
    "DCT, no adapter": dict(method="dct", adapter=False),
    "APLA full (VGT-Pure)": dict(method="apla"),
    "APLA, no discriminator": dict(method="apla", disc=False),
    "APLA + DCT": dict(method="apla+dct"),
}
COMPARE_METRICS = ["clip_text", "consistency_adjacent", "warp_error", "fci", "flicker", "psnr",
                   "vcd"]


def _run_variant(studio, sid, path, prompt, edit_prompt, name, frames, size, steps, seed,
                 progress=None, cancel=None, cache=None) -> str:
    """One variant: tune, edit, score, record in the run store -> the store run id (runs inside
    the job runner)."""
    from ..io import read_video, write_mp4
    from ..metrics import evaluate
    from ..metrics.registry import results_to_json
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
    store = studio.store
    run = store.create_run("compare", config={**to_dict(cfg), "session": sid}, seed=int(seed),
                           label=name)
    store.add_video_metrics(run.id, {k: float(r.value) for k, r in scores.items()
                                     if not r.skipped})
    for k, r in scores.items():
        if not r.skipped:
            store.add_frame_metrics(run.id, k, r.per_frame)
    store.write_artifact(run.id, "mp4", "edit.mp4", lambda p: write_mp4(out.frames, p))
    store.write_artifact_json(run.id, "scores.json",
                              results_to_json(scores, prompt=edit_prompt, label=name))
    store.finish_run(run.id)
    return run.id


def _owner(studio, sid):
    """Whose past runs a page may list and load: a public studio's visitor only their own
    session's; on a desktop every past comparison (None = no filter)."""
    return sid if studio.public else None


def load_entry(store, run_id: str, owner=None) -> dict:
    """A finished compare run from the store: its label, edit frames and scores (the same
    record for runs made now and runs from past sessions)."""
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


def past_choices(store, owner=None) -> list[tuple[str, str]]:
    """(label shown, run id) of finished compare runs (of ``owner``'s session when given),
    newest first."""
    import time

    runs = store.list_runs(kind="compare", finished=True, limit=50, text=owner)
    return [(f"{r.label} · seed {r.seed} · {time.strftime('%m-%d %H:%M', time.localtime(r.created))}",
             r.id) for r in runs if owner is None or r.config.get("session") == owner]


def compare_handler(studio, sid, video, prompt, edit_prompt, names, past, frames, size, steps,
                    seed):
    sid = ensure_session(studio, sid)
    try:
        names, past = list(names or []), list(past or [])
        if not names and not past:
            raise InputError("Tick at least one method (or a past run) to compare.")
        if names and (not edit_prompt or not prompt):
            raise InputError("Give both the source prompt and the edit prompt.")
        path = upload(studio, sid, video) if names else None
        owner = _owner(studio, sid)
        entries = [load_entry(studio.store, rid, owner) for rid in past]
        for i, name in enumerate(names):
            status = f"Running {name} ({i + 1}/{len(names)})…"
            yield status, None, None, None, None, gr_update()
            try:
                rid = None
                for item in run_job(studio, sid, "compare", _run_variant, studio, sid, path,
                                    prompt, edit_prompt, name, frames, size, steps, seed,
                                    cache=studio.cache):
                    if isinstance(item, tuple) and item[0] == "result":
                        rid = item[1]
            except Exception as e:  # one failing variant does not sink the comparison
                import gradio as gr

                gr.Warning(f"{name}: {e}")
                continue
            entries.append(load_entry(studio.store, rid, owner))
            yield status, _montage(studio, sid, entries), None, None, None, gr_update()
        if not entries:
            raise InputError("No method finished; see the warnings.")
        ids = [e["run_id"] for e in entries]
        out = studio.session(sid).outputs
        csv_path, json_path = out / "compare.csv", out / "compare.json"
        studio.store.export_csv(ids, csv_path)
        studio.store.export_json(ids, json_path)
        series = {f"{e['name']} · {m}": e["scores"][m]["per_frame"] for e in entries
                  for m in ("clip_text", "warp_error")
                  if m in e["scores"] and not e["scores"][m].get("skipped")}
        yield ("Done: best per column marked with ★.", _montage(studio, sid, entries),
               _frame(best_table(entries)), series_frame(series, x="frame"),
               [str(csv_path), str(json_path)],
               gr_update(choices=past_choices(studio.store, owner)))  # the new runs join
    except Exception as e:
        raise gr_error(e)


def _montage(studio, sid, entries: list[dict]) -> str:
    from ..io import write_mp4
    from ..io.montage import side_by_side

    path = studio.session(sid).outputs / "compare.mp4"
    write_mp4(side_by_side([e["frames"] for e in entries], [e["name"] for e in entries]), path)
    return str(path)


def _frame(rows: list[list]):
    import pandas as pd

    return pd.DataFrame(rows[1:], columns=rows[0])


def best_table(entries: list[dict]) -> list[list]:
    """Rows per method over the metrics any of them has; the best value in each column is
    starred (direction from each metric's own higher_is_better)."""
    def ok(e, m):
        s = e["scores"].get(m)
        return s is not None and not s.get("skipped") and s.get("value") is not None

    metrics = [m for m in COMPARE_METRICS if any(ok(e, m) for e in entries)]
    best = {}
    for m in metrics:
        vals = [(e["scores"][m]["value"], i) for i, e in enumerate(entries) if ok(e, m)]
        hib = next(e["scores"][m].get("higher_is_better") for e in entries if ok(e, m))
        if len(vals) > 1 and hib is not None:
            best[m] = (max if hib else min)(vals)[1]
    rows = []
    for i, e in enumerate(entries):
        row = [e["name"]]
        for m in metrics:
            cell = f"{e['scores'][m]['value']:.4g}" if ok(e, m) else "–"
            row.append(("★ " + cell) if best.get(m) == i else cell)
        rows.append(row)
    return [["method"] + metrics] + rows


def build(studio, sid_state, edit_refs):
    import gradio as gr

    from .edit_tab import _examples

    # the demo model, or a CPU-sized Space: small defaults that finish in minutes
    small = studio.embedded or studio.limits.max_frames <= 8
    with gr.Tab("Compare Methods", elem_id="compare-tab"):
        gr.Markdown("Run several methods on the **same clip, prompt and seed**, then compare "
                    "the edits and their scores. Each method tunes once, so this takes "
                    "a while. Past comparisons stay in the run store: tick them to add them "
                    "to the table.")
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Clip", sources=["upload"], height=200)
                prompt = gr.Textbox(label="Source prompt")
                edit_prompt = gr.Textbox(label="Edit prompt")
                if _examples():
                    gr.Examples(_examples(), inputs=[video, prompt, edit_prompt],
                                label="Examples")
                names = gr.CheckboxGroup(list(VARIANTS), value=list(VARIANTS)[:2],
                                         label="Methods")
                with gr.Row():
                    past = gr.CheckboxGroup([] if studio.public else past_choices(studio.store),
                                            label="Past runs",
                                            scale=4)
                    refresh = gr.Button("↻", scale=0, min_width=40)
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
                montage = gr.Video(label="Edits side by side (in sync)", height=260,
                                   autoplay=True, loop=True)
                table = gr.Dataframe(label="Metrics (★ = best)", interactive=False)
        with gr.Row():
            plot = gr.LinePlot(x="frame", y="value", color="series",
                               label="Per-frame CLIP alignment and warp error", height=240)
            files = gr.File(label="Export (CSV, JSON)", file_count="multiple")
        refresh.click(lambda s: gr.update(choices=past_choices(studio.store,
                                                               _owner(studio, s))),
                      sid_state, past, api_name=False)
        btn.click(lambda *a: (yield from compare_handler(studio, *a)),
                  [sid_state, video, prompt, edit_prompt, names, past, frames, size, steps,
                   seed], [status, montage, table, plot, files, past], api_name="compare")
