"""Edit-from-Video tab: clip -> frame preview -> tune (live loss + previews) -> edits + metrics.

Widgets and formatting only: Tune, Resume, Edit and Push submit the tune, edit and push jobs
(vcstudio/jobs) and render their events and results."""
from __future__ import annotations

import dataclasses
import json

from ..config import DataConfig, DCTConfig, APLAConfig, EditConfig, TuneConfig
from ..errors import InputError
from ..methods.registry import PICKABLE
from .common import (EXAMPLES, Ticker, ensure_session, frame_strip, gr_error, gr_update,
                     run_job, series_frame, upload)

METHODS = list(PICKABLE)
CLWS = ["mul-fourier", "fourier", "exponential", "gaussian", "linear", "constant"]

# logged terms drawn on the live loss plot: the denoising loss, DCT's (l_sem, l_tex, l_cons,
# alpha) and APLA's (hyper-loss parts, adversarial terms, ||VGT|| / ||U-Net||)
PLOTTED = ("loss", "l_sem", "l_tex", "l_cons", "alpha", "perceptual", "adv_g", "disc_loss",
           "disc_acc", "vgt_ratio")


def tune_config(video: str, prompt: str, frames: int, stride: int, start: int, size: int,
                resize: str, method: str, steps: int, lr: float, seed: int, adapter: bool = True,
                semantic: bool = True, texture: bool = True, clws: str = "mul-fourier",
                vgt: str = "pure", disc: bool = True, hyper: bool = True,
                model: str = "") -> TuneConfig:
    """The UI's controls -> the same TuneConfig the CLI builds."""
    return TuneConfig(
        model=model or "", data=DataConfig(video_path=str(video), prompt=prompt,
                                           n_frames=int(frames), start=int(start),
                                           stride=int(stride), width=int(size),
                                           height=int(size), resize=resize),
        method=method, steps=int(steps), lr=float(lr), seed=int(seed),
        checkpoint_every=max(25, int(steps) // 4), preview_every=max(10, int(steps) // 5),
        preview_steps=10,
        dct=dataclasses.replace(DCTConfig(), adapter=adapter, semantic=semantic,
                                texture=texture, clws=clws),
        apla=dataclasses.replace(APLAConfig(), vgt=vgt, discriminator=disc, hyper_loss=hyper))


def preview_frames(studio, sid, video, frames, stride, start, size, resize):
    """Frame-strip preview of exactly what tuning will see."""
    from ..io import load_clip

    sid = ensure_session(studio, sid)
    try:
        path = upload(studio, sid, video)
        clip = load_clip(path, int(frames), int(start), int(stride), int(size), int(size), resize,
                         limits=studio.limits)
    except Exception as e:
        raise gr_error(e)
    return sid, frame_strip(clip), f"{len(clip)} frames at {size}x{size} will be tuned on."


def estimate_text(studio, frames, size, steps, method: str = "baseline") -> str:
    from ..jobs.tune import estimate

    cfg = TuneConfig(data=DataConfig(n_frames=int(frames), width=int(size), height=int(size)),
                     steps=int(steps), method=method or "baseline")
    try:
        import torch

        dev = "cuda" if torch.cuda.is_available() else "cpu"
        scale = 1.0 if int(size) > 128 else 0.02  # the embedded demo model is ~1/50 of SD
        est = estimate(cfg, dev, model_scale=scale)
    except Exception as e:  # an estimate must never block the page
        return f"(no estimate: {e})"
    fits = "" if est.get("fits") in (None, True) else " — may NOT fit this GPU: lower frames/size"
    return f"Estimate: ~{est['gib']:.1f} GiB, ~{est['seconds'] / 60:.1f} min on {dev}{fits}."


def _tune_stream(studio, sid, items):
    """Render a tune job's events: (session, job id, status, loss plot, preview, run dir). A
    stopped tune ends like a finished one, with its loss curve, preview and run folder kept."""
    losses: dict[str, list] = {}
    preview = None
    tick = Ticker()
    jid = None
    for item in items:
        if isinstance(item, tuple):
            if item[0] == "job":
                jid = item[1]
                yield sid, jid, "Queued…", None, None, None
            else:
                res = item[1]
                msg = (f"{res.message}" if res.stopped else
                       f"Tuned {res.steps} steps in {res.seconds:.0f} s. Now type an edit "
                       "prompt below.")
                yield sid, jid, msg, series_frame(losses), preview, str(res.run_dir)
            continue
        ev = item
        if ev.stage == "tune":
            for k in PLOTTED:
                if k in ev.metrics:  # None-padded: terms that skip steps (DCT's stepwise
                    s = losses.setdefault(k, [])  # schedule) stay at their own step
                    s.extend([None] * (ev.step - 1 - len(s)))
                    s.append(ev.metrics[k])
        if ev.preview is not None:
            preview = frame_strip(ev.preview)
        if tick.due(ev):
            msg = f"{ev.stage}: {ev.message or f'{ev.step}/{ev.total}'}"
            yield sid, jid, msg, series_frame(losses), preview, None


def tune_handler(studio, sid, video, prompt, frames, stride, start, size, resize, method,
                 steps, lr, seed, adapter, semantic, texture, clws, vgt, disc, hyper):
    """Generator: (session, job id, status, loss plot, preview, run dir)."""
    sid = ensure_session(studio, sid)
    try:
        path = upload(studio, sid, video)
        if not prompt or not prompt.strip():
            raise InputError("Describe the clip in the source prompt, e.g. 'a red circle moving "
                             "right on the beach'.")
        cfg = tune_config(path, prompt, frames, stride, start, size, resize, method, steps, lr,
                          seed, adapter, semantic, texture, clws, vgt, disc, hyper,
                          model=studio.model or "")
        yield from _tune_stream(studio, sid, run_job(studio, sid, "tune", cfg))
    except Exception as e:
        raise gr_error(e)


def resumable_choices(studio, sid) -> list[tuple[str, str]]:
    """(label, job id) of the interrupted or stopped tunes this page may resume: a public
    studio's visitor their own session's; on a desktop every one (a reloaded page is a new
    session, and its owner owns them all, from the app and the CLI alike)."""
    if studio.public and not sid:
        return []
    out = []
    for j in studio.store.resumable_jobs(kinds=("tune",)):
        if not studio.public or j.session_id == sid:
            prompt = ((j.params or {}).get("config") or {}).get("data", {}).get("prompt", "")
            out.append((f"{prompt[:40] or 'tune'} · step {j.step}/{j.total} · {j.status}", j.id))
    return out


def resume_handler(studio, sid, job_id):
    """Generator: continue this visitor's interrupted or stopped tune from its checkpoint."""
    from ..jobs import resume_plan

    sid = ensure_session(studio, sid)
    try:
        if not job_id:
            raise InputError("Pick a stopped or interrupted tune to resume.")
        if studio.public and studio.store.job(job_id).session_id != sid:
            raise InputError("That tune belongs to another visitor; pick one of yours.")
        name, cfg, folder = resume_plan(studio.store, job_id)
        yield from _tune_stream(studio, sid, run_job(studio, sid, name, cfg, out=folder,
                                                     resume_of=job_id))
    except Exception as e:
        raise gr_error(e)


def edit_handler(studio, sid, run_dir, prompt, negative, steps, guidance, seed, inversion,
                 control=None):
    """Generator: (video, gif, status, per-frame metric plot, metric table). ``control``: the
    Structure panel's values (ui/structure.py)."""
    from .structure import control_configs

    from ..jobs.edit import STREAM_METRICS, EditJobConfig

    sid = ensure_session(studio, sid)
    try:
        if not run_dir:
            raise InputError("Tune on a clip first (the Tune button above).")
        run = studio.safe_path(sid, run_dir, must_exist=True)
        cfg = EditJobConfig(run=str(run), metrics=STREAM_METRICS, edit=EditConfig(
            prompt=prompt, negative=negative or "", steps=int(steps), guidance=float(guidance),
            seed=int(seed), use_inversion=bool(inversion),
            control=control_configs(studio, sid, control or [])))
        res, shown = None, None
        for item in run_job(studio, sid, "edit", cfg):
            if isinstance(item, tuple):
                if item[0] == "result":
                    res = item[1]
                continue
            if "mp4" in item.outputs:  # the video is written; its frames are being scored
                shown = item.outputs["mp4"], item.outputs["gif"]
                yield shown[0], shown[1], "Scoring frames…", None, None
            else:
                yield (*(shown or (None, None)), f"{item.stage}: {item.step}/{item.total}",
                       None, None)
        plot, table = score_view(res.scores)
        yield str(res.mp4), str(res.gif), "Done.", plot, table
    except Exception as e:
        raise gr_error(e)


def score_view(results: dict):
    """Per-frame plot and per-video table of an edit's scores."""
    series = {name: r.per_frame for name, r in results.items() if not r.skipped}
    rows = [[name, None if r.skipped else round(float(r.value), 4), r.model or "",
             r.skipped or ""] for name, r in results.items()]
    return series_frame(series, x="frame"), rows


def push_handler(studio, sid, run_dir, repo_id, token):
    """Upload the delta + config + a model card to the Hub (the push job)."""
    from ..jobs.push import PushConfig

    sid = ensure_session(studio, sid)
    try:
        if not run_dir:
            raise InputError("Tune first: there is no delta to push yet.")
        run = studio.safe_path(sid, run_dir, must_exist=True)
        res = None
        for item in run_job(studio, sid, "push", PushConfig(str(run), repo_id or "",
                                                            token or "")):
            if isinstance(item, tuple) and item[0] == "result":
                res = item[1]
        return f"Pushed to {res.url}"
    except Exception as e:
        raise gr_error(e)


def _examples() -> list[list]:
    path = EXAMPLES / "prompts.json"
    if not path.is_file():
        return []
    return [[str(EXAMPLES / e["video"]), e["prompt"], e["edits"][0]]
            for e in json.loads(path.read_text())]


def build(studio, sid_state):
    import gradio as gr

    lim = studio.limits
    # the demo model, or a CPU-sized Space: small defaults that finish in minutes
    small = studio.embedded or studio.limits.max_frames <= 8
    with gr.Tab("Edit from Video", elem_id="edit-tab"):
        gr.Markdown("**1. Pick a clip** and describe it. **2. Tune** the model on it (a few "
                    "minutes). **3. Edit**: describe what the video should show instead.")
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(label="Clip (mp4, webm, mov, avi, gif)", sources=["upload"],
                                 height=220)
                prompt = gr.Textbox(label="Source prompt: what the clip shows",
                                    placeholder="a red circle moving right on the beach")
                with gr.Row():
                    frames = gr.Slider(1, lim.max_frames, value=8 if small else 24, step=1,
                                       label="Frames")
                    stride = gr.Slider(1, 8, value=1 if small else 2, step=1, label="Stride")
                    start = gr.Number(value=0, precision=0, label="Start frame", minimum=0)
                with gr.Row():
                    size = gr.Slider(64, min(1024, lim.max_side), value=64 if small else 512,
                                     step=64, label="Size (px)")
                    resize = gr.Radio(["crop", "pad"], value="crop", label="Fit")
                strip = gr.Image(label="Frames that will be tuned on", height=110,
                                 interactive=False)
                strip_info = gr.Markdown()
            with gr.Column(scale=1):
                method = gr.Radio(METHODS, value="baseline", label="Method",
                                  info="baseline = Tune-A-Video; DCT = + adapter and "
                                       "CLIP/VGG consistency; APLA = + VGT perturbation; "
                                       "apla+dct = both")
                with gr.Accordion("DCT switches", open=False):
                    with gr.Row():
                        adapter = gr.Checkbox(True, label="MS-Adapter")
                        semantic = gr.Checkbox(True, label="Semantic (CLIP)")
                        texture = gr.Checkbox(True, label="Texture (VGG)")
                    clws = gr.Dropdown(CLWS, value="mul-fourier", label="Loss weighting (CLWS)")
                with gr.Accordion("APLA switches", open=False):
                    vgt = gr.Radio(["pure", "hyper", "none"], value="pure", label="VGT")
                    with gr.Row():
                        disc = gr.Checkbox(True, label="Discriminator")
                        hyper = gr.Checkbox(True, label="Hyper-loss")
                with gr.Row():
                    steps = gr.Slider(10, lim.max_steps, value=100 if small else 500, step=10,
                                      label="Tuning steps")
                    lr = gr.Number(value=3e-5, label="Learning rate")
                    seed = gr.Number(value=33, precision=0, label="Seed")
                est = gr.Markdown(estimate_text(studio, 8 if small else 24, 64 if small else 512,
                                                100 if small else 500))
                with gr.Row():
                    tune_btn = gr.Button("Tune", variant="primary")
                    stop_btn = gr.Button("Stop", variant="stop")
                with gr.Row():
                    resumable = gr.Dropdown([], label="Your stopped or interrupted tunes",
                                            scale=4)
                    resume_refresh = gr.Button("↻", scale=0, min_width=40)
                    resume_btn = gr.Button("Resume", scale=1)
                status = gr.Markdown("Ready.")
                loss_plot = gr.LinePlot(x="step", y="value", color="series", label="Loss",
                                        height=200)
                preview = gr.Image(label="Preview while tuning", height=110, interactive=False)
        run_dir = gr.Textbox(label="Run folder (this session's)", interactive=False)
        job_id = gr.Textbox(visible=False)
        gr.Markdown("### Edit")
        with gr.Row():
            with gr.Column(scale=1):
                eprompt = gr.Textbox(label="Edit prompt: what the video should show",
                                     placeholder="a blue square moving right on the beach")
                negative = gr.Textbox(label="Negative prompt (optional)")
                with gr.Row():
                    esteps = gr.Slider(5, 100, value=50, step=1, label="Sampling steps")
                    guidance = gr.Slider(1, 20, value=5.0 if small else 12.5, step=0.5,
                                         label="Guidance")
                    eseed = gr.Number(value=33, precision=0, label="Seed")
                inversion = gr.Checkbox(True, label="Start from the inverted clip (keeps its "
                                                    "motion)")
                from .structure import build as structure_panel

                control = structure_panel(studio, sid_state, run_dir)
                edit_btn = gr.Button("Generate edit", variant="primary")
                estatus = gr.Markdown()
            with gr.Column(scale=1):
                out_video = gr.Video(label="Edited video", height=240, autoplay=True, loop=True)
                out_gif = gr.File(label="GIF")
        with gr.Row():
            metric_plot = gr.LinePlot(x="frame", y="value", color="series",
                                      label="Per-frame metrics", height=220)
            metric_table = gr.Dataframe(headers=["metric", "value", "model", "skipped"],
                                        label="Per-video metrics", interactive=False)
        with gr.Accordion("Push the tuned delta to the Hugging Face Hub", open=False):
            with gr.Row():
                repo = gr.Textbox(label="Repo id (user/name)")
                token = gr.Textbox(label="Write token", type="password")
            push_btn = gr.Button("Push delta")
            push_status = gr.Markdown()
        if _examples():
            gr.Examples(_examples(), inputs=[video, prompt, eprompt], label="Examples")

        def _prev(sid, v, f, s, st, sz, rs):
            if not v:
                return sid, None, ""
            return preview_frames(studio, sid, v, f, s, st, sz, rs)

        for c in (video, frames, stride, start, size, resize):
            c.change(_prev, [sid_state, video, frames, stride, start, size, resize],
                     [sid_state, strip, strip_info])
        for c in (frames, size, steps, method):
            c.change(lambda f, sz, st, m: estimate_text(studio, f, sz, st, m),
                     [frames, size, steps, method], est)
        tune_btn.click(
            lambda *a: (yield from tune_handler(studio, *a)),
            [sid_state, video, prompt, frames, stride, start, size, resize, method, steps, lr,
             seed, adapter, semantic, texture, clws, vgt, disc, hyper],
            [sid_state, job_id, status, loss_plot, preview, run_dir],
            api_name="tune").then(lambda s: gr_update(choices=resumable_choices(studio, s)),
                                  sid_state, resumable, api_name=False)
        stop_btn.click(lambda j: (studio.cancel(j) if j else False) and "Stopping at the next "
                       "step (its checkpoint is kept as a usable delta)…" or "Nothing is running.",
                       job_id, status)
        refresh = lambda s: gr_update(choices=resumable_choices(studio, s))  # noqa: E731
        resume_btn.click(lambda *a: (yield from resume_handler(studio, *a)),
                         [sid_state, resumable],
                         [sid_state, job_id, status, loss_plot, preview, run_dir],
                         api_name="resume").then(refresh, sid_state, resumable, api_name=False)
        resume_refresh.click(refresh, sid_state, resumable, api_name=False)
        edit_btn.click(lambda *a: (yield from edit_handler(studio, *a)),
                       [sid_state, run_dir, eprompt, negative, esteps, guidance, eseed,
                        inversion, control], [out_video, out_gif, estatus, metric_plot,
                                              metric_table],
                       api_name="edit")
        push_btn.click(lambda *a: push_handler(studio, *a), [sid_state, run_dir, repo, token],
                       push_status)
    return {"run_dir": run_dir, "video": video, "prompt": prompt}
