"""Edit-from-Video tab: clip -> frame preview -> tune (live loss + previews) -> edits + metrics.

Widgets and formatting only: Tune, Resume, Edit and Push submit the tune, edit and push jobs
(vcstudio/jobs) and render their events and results."""
from __future__ import annotations

import dataclasses
import json
import os
import secrets
from types import SimpleNamespace
from typing import Optional

import gradio as gr

from ..config import DataConfig, EditConfig, TuneConfig
from ..errors import InputError
from ..methods.registry import pickable, plotted_terms
from .common import (EXAMPLES, about, NO_CLIP, VIDEO_TYPES, Ticker, as_float, as_int,
                     device_group, ensure_session, estimate_device, event_status, frame_strip,
                     gr_error,
                     gr_update, bounds_of, check_bounds, job_validator, last_result, run_job,
                     served, ui_tier, uncalibrated_scale, upload, validated, any_string)
from . import model_picker
from .settings_widgets import method_panel, number, radio, slider
from .plots import (StepSeries, StreamView, figure_of, metric_axis, plot_update,
                    rows_update, table_update, table_widths)



def inversion_steps(studio) -> int:
    """The tier's inversion steps = its edits' default sampling steps (config.TierDefaults),
    so a first edit reuses the tune's inversion."""
    return ui_tier(studio).edit_steps


def _previews(steps: int) -> dict:
    """The tab's preview request: every fifth of the tune (the tune always shows the first of
    them and its last step, and spaces the others so they cost at most ~10% of tuning)."""
    return {"preview_every": max(1, int(steps) // 5), "preview_steps": 10}


def tune_config(video: str, prompt: str, frames: int, stride: int, start: int, width: int,
                height: int, resize: str, position: str, method: str, steps: int, lr: float,
                seed: int, adapter: bool = True, semantic: bool = True, texture: bool = True,
                clws: str = "mul-fourier", vgt: str = "pure", disc: bool = True,
                hyper: bool = True, model: str = "",
                inversion_steps: int = 50) -> TuneConfig:
    """The UI's controls -> the same TuneConfig the CLI builds. Numbers must be whole where
    the setting counts something (a fraction is an error, not rounded away); the ranges are
    the job's own validate step (Studio.submit)."""
    steps = as_int("Tuning steps", steps)
    return TuneConfig(
        model=model or "", data=DataConfig(video_path=str(video), prompt=prompt,
                                           n_frames=as_int("Frames", frames),
                                           start=as_int("Start frame", start),
                                           stride=as_int("Stride", stride),
                                           width=as_int("Width", width),
                                           height=as_int("Height", height), resize=resize,
                                           crop=position or "center"),
        method=method, steps=steps, lr=as_float("Learning rate", lr),
        seed=as_int("Seed", seed),
        checkpoint_every=max(25, steps // 4), **_previews(steps),
        inversion_steps=int(inversion_steps),
        dct=dataclasses.replace(TuneConfig().dct, adapter=bool(adapter), semantic=bool(semantic),
                                texture=bool(texture), clws=clws),
        apla=dataclasses.replace(TuneConfig().apla, vgt=vgt, discriminator=bool(disc),
                                 hyper_loss=bool(hyper)))


def default_long_side(studio) -> int:
    """The longest side a new clip is fitted to: the largest this tier allows, at most the
    model's own size (512 for SD; the embedded demo model is a 64 px model)."""
    return min(studio.limits.max_side, ui_tier(studio).side)


def clip_size(studio, sid, video) -> tuple[str, int, int]:
    """(session, width, height): the clip's aspect at the largest size allowed (multiples
    of 8). The upload is read as this session's (a public studio's visitor claims it)."""
    from ..io import default_size, read_video

    sid = ensure_session(studio, sid)
    try:
        path = upload(studio, sid, video)
        first = read_video(path, 0, 1, 1, limits=studio.limits)
        w, h = default_size(first.shape[1:3], default_long_side(studio),
                            min_side=studio.limits.min_side)
        return sid, w, h
    except Exception as e:
        raise gr_error(e)


def clip_player(studio, sid, video):
    """The uploaded clip as a player (the upload box shows only a file name; a gif or a zip
    of images plays too): its first frames as an mp4 in the session's folder, served."""
    from ..io import read_video, resize_frames, write_mp4

    if not video:
        return None
    try:
        sid = ensure_session(studio, sid)
        path = upload(studio, sid, video)
        try:  # its first 48 frames ...
            frames = read_video(path, 0, 1, 48, limits=studio.limits)
        except InputError:  # ... or all of a shorter clip
            frames = read_video(path, 0, 1, None, limits=studio.limits)
        h, w = frames.shape[1:3]
        scale = min(1.0, 320 / max(h, w))
        frames = resize_frames(frames, max(16, int(w * scale) // 8 * 8),
                               max(16, int(h * scale) // 8 * 8), "pad")
        out = studio.session(sid).outputs / "previews" / f"clip-{secrets.token_hex(4)}.mp4"
        return served(studio, write_mp4(frames, out))
    except Exception:  # the preview's own message says what is wrong with the clip
        return None
def footage_notice(studio, sid, video, model: str = "") -> str:
    """The notice a new clip gets before any tune: the demo-model warning
    (:func:`vcstudio.jobs.tune.real_footage_notice`) when the picked base ``model`` (default:
    this studio's) is the embedded demo model and the clip's first frame is no toy scene; ""
    otherwise, and for no clip or one that cannot be read (the preview says what is wrong)."""
    from ..jobs.tune import real_footage_notice

    pick = model_picker.value_of(model) if (model or "").strip() else ""
    if not video or (pick != model_picker.DEMO if pick else not studio.embedded):
        return ""
    try:
        path = upload(studio, ensure_session(studio, sid), video)
    except Exception:
        return ""
    return real_footage_notice(path, True, studio.limits) or ""


def preview_frames(studio, sid, video, frames, stride, start, width, height, resize,
                   position="center"):
    """Frame-strip preview of exactly what tuning will see: the same DataConfig the tune
    job gets, checked by the same validate step, read by io.preview_clip."""
    from ..io import preview_clip
    from ..jobs.tune import validate

    sid = ensure_session(studio, sid)
    try:
        path = upload(studio, sid, video)
        cfg = tune_config(path, "preview", frames, stride, start, width, height, resize,
                          position, "baseline", 10, 3e-5, 0)
        validate(cfg, studio.limits)
        clip = preview_clip(cfg.data, studio.limits)
    except Exception as e:
        raise gr_error(e)
    f, h, w = clip.shape[:3]
    return sid, frame_strip(clip), f"{f} frames at {w}x{h} will be tuned on."


def estimate_text(studio, frames, width, height, steps, method: str = "baseline",
                  model: str = "") -> str:
    """The tune's estimate line: measured speeds of earlier tunes on this device and the
    picked base ``model`` (the picker's value, "" = the studio's default; a pick the public
    studio refuses is refused here too, model_picker.job_model), else labelled uncalibrated,
    counting previews and the inversion; never waits for the device."""
    from ..jobs.tune import estimate, estimate_line

    try:
        steps = as_int("Tuning steps", steps)
        cfg = TuneConfig(model=model_picker.job_model(studio, model),
                         data=DataConfig(n_frames=as_int("Frames", frames),
                                         width=as_int("Width", width),
                                         height=as_int("Height", height)),
                         steps=steps, method=method or "baseline", **_previews(steps),
                         inversion_steps=inversion_steps(studio))
        dev = estimate_device(studio)
        scale = uncalibrated_scale(cfg.data.width, cfg.data.height)
        est = estimate(cfg, dev, model_scale=scale, calibration_dir=studio.data_dir)
    except Exception as e:  # an estimate must never block the page
        return f"(no estimate: {e})"
    return estimate_line(est, dev)


def loss_rows(losses: StepSeries, terms: dict):
    """The LinePlot update of a tune's logged terms: rows (step, value, raw, series = the
    term, axis, earlier) API clients read, each term on the axis its method declares
    (methods/registry.plotted_terms); a resumed tune's earlier steps first."""
    return rows_update(losses.rows({k: p.axis for k, p in terms.items()}), "step", "loss term")


def loss_figure(rows):
    """The page's figure of the loss rows: one panel per axis, real values, each term's
    legend text from its method; a dashed line where a resumed tune went on."""
    return figure_of(rows, {k: p.label for k, p in plotted_terms().items()},
                     title="Loss terms by step: real values, one panel per axis")


def metric_figure(rows):
    """The page's figure of per-frame metric rows: one panel per metric, its own unit."""
    return figure_of(rows, title="Per-frame metrics of the edit: one panel per metric")


# How far behind the tune its page may fall: a slow reader (one loaded core; each update a
# loss figure and a preview) with 64 unread events showed step 50 of a tune that had ended,
# and Stop found nothing to stop; with 4 it is at most 4 events behind when it gets the CPU.
# The steps a page skips are in the store: the stream redraws the curve from it at the end.
TUNE_BACKLOG = 4


def _tune_stream(studio, sid, items, terms: dict, earlier=()):
    """Render a tune job's events: (session, job id, status, loss rows, preview, run dir).
    ``terms``: the logged terms drawn ({key: Plotted}); ``earlier``: a resumed tune's logs
    before its checkpoint, drawn first. A stopped tune ends like a finished one, with its
    loss curves, preview and run folder kept."""
    losses = StepSeries(list(terms))
    losses.extend(earlier)
    preview = None
    tick = Ticker()
    jid = None
    for item in items:
        if isinstance(item, tuple):
            if item[0] == "job":
                jid = item[1]
                yield sid, jid, "Queued…", loss_rows(losses, terms), None, None
            else:
                res = item[1]
                for rec in studio.store.events(jid) if jid else ():  # steps a slow page skipped
                    if rec["stage"] == "tune":
                        losses.add(rec["step"], rec["metrics"])
                msg = (f"{res.message}" if res.stopped else
                       f"Tuned {res.steps} steps in {res.seconds:.0f} s. Now type an edit "
                       "prompt below.")
                yield sid, jid, msg, loss_rows(losses, terms), preview, str(res.run_dir)
            continue
        ev = item
        if ev.stage == "tune":
            losses.add(ev.step, ev.metrics)
        if ev.preview is not None:
            preview = frame_strip(ev.preview)
        if tick.due(ev):
            msg = event_status(ev)
            yield sid, jid, msg, loss_rows(losses, terms), preview, None


def tune_job_config(studio, path, prompt, *settings, model: str = "") -> TuneConfig:
    """The tune job's config from the tab's inputs (``settings``: tune_config's, from frames
    on; ``model``: the visitor's pick, ui/model_picker.py): what the handler submits and the
    validator checks."""
    if not prompt or not prompt.strip():
        raise about("prompt", "Describe the clip in the source prompt, e.g. 'a red circle "
                    "moving right on the beach'.")
    return tune_config(path, prompt, *settings, model=model_picker.job_model(studio, model),
                       inversion_steps=inversion_steps(studio))


def tune_check(studio):
    """The Tune event's validator (common.job_validator): the clip, the prompt and every
    setting's range, answered before the event waits for the device."""
    def build(sid, video, prompt, *rest):
        *settings, model = rest  # the picker is the event's last input
        if not video:
            raise about("clip", NO_CLIP)
        return tune_job_config(studio, _path_of(video), prompt, *settings, model=model)
    return job_validator(studio, "tune", build)


def _path_of(video) -> str:
    return str(video.get("path") or "") if isinstance(video, dict) else str(video)


def tune_handler(studio, sid, video, prompt, frames, stride, start, width, height, resize,
                 position, method, steps, lr, seed, adapter, semantic, texture, clws, vgt, disc,
                 hyper, request=None, progress=None, model: str = ""):
    """Generator: (session, job id, status, loss rows, preview, run dir). ``model``: the
    picked base model ("" = the studio's default)."""
    sid = ensure_session(studio, sid)
    try:
        path = upload(studio, sid, video)
        cfg = tune_job_config(studio, path, prompt, frames, stride, start, width, height,
                              resize, position, method, steps, lr, seed, adapter, semantic,
                              texture, clws, vgt, disc, hyper, model=model)
        yield from _tune_stream(studio, sid, run_job(studio, sid, "tune", cfg, request,
                                                     progress, backlog=TUNE_BACKLOG),
                                plotted_terms(cfg))
    except Exception as e:
        raise gr_error(e)


def stop_handler(studio, sid, job_id) -> str:
    """Stop a tune (or any job) of this session: it ends at its next step, a tune with its
    checkpoint kept as a usable delta. A public studio stops only the caller's own jobs."""
    try:
        if not job_id:
            return "Nothing is running."
        if studio.cancel(job_id, sid or ""):
            return "Stopping at the next step (its checkpoint is kept as a usable delta)…"
        return "Nothing is running."
    except Exception as e:
        raise gr_error(e)


def resumable_choices(studio, sid) -> list[tuple[str, str]]:
    """(label, job id) of the interrupted or stopped tunes this page may resume: a public
    studio's visitor their own session's; on a desktop every one (a reloaded page is a new
    session, and its owner owns them all, from the app and the CLI alike)."""
    owner = studio.owner(sid)
    if studio.public and not owner:
        return []
    out = []
    for j in studio.store.resumable_jobs(kinds=("tune",)):
        if not studio.public or j.session_id == owner:
            prompt = ((j.params or {}).get("config") or {}).get("data", {}).get("prompt", "")
            out.append((f"{prompt[:40] or 'tune'} · step {j.step}/{j.total} · {j.status}", j.id))
    return out


def resume_handler(studio, sid, job_id, request=None, progress=None):
    """Generator: continue this visitor's interrupted or stopped tune from its checkpoint; its
    loss plot starts with the steps tuned before (the run folder's losses.json)."""
    from ..jobs import resume_plan, resumed_losses

    sid = ensure_session(studio, sid)
    try:
        if not job_id:
            raise InputError("Pick a stopped or interrupted tune to resume.")
        if studio.public and studio.store.job(job_id).session_id != studio.owner(sid):
            raise InputError("That tune belongs to another visitor; pick one of yours.")
        name, cfg, folder = resume_plan(studio.store, job_id)
        earlier = resumed_losses(folder)
        yield from _tune_stream(studio, sid, run_job(studio, sid, name, cfg, request, progress,
                                                     backlog=TUNE_BACKLOG, out=folder,
                                                     resume_of=job_id),
                                plotted_terms(cfg), earlier)
    except Exception as e:
        raise gr_error(e)


# the edit's inversion prompt: the run's setting (Tune-A-Video's empty prompt by default)
INVERSION_PROMPTS = [("the run's setting", "run"), ("the empty prompt (Tune-A-Video)", "empty"),
                     ("the source prompt", "source"), ("the edit prompt", "target")]


def edit_handler(studio, sid, run_dir, prompt, negative, steps, guidance, seed, inversion,
                 inversion_prompt="run", request=None, progress=None, control=None,
                 model: str = ""):
    """Generator: (video, gif, status, per-frame metric rows, metric table). ``control``: the
    Structure panel's values (ui/structure.py); ``model``: the base to load the run onto ("" =
    the one it was tuned on). The page draws the rows' figure."""
    from .structure import control_configs

    sid = ensure_session(studio, sid)
    try:
        if not run_dir:
            raise InputError("Tune on a clip first (the Tune button above).")
        run = studio.safe_path(sid, run_dir, must_exist=True)
        cfg = edit_job_config(run, prompt, negative, steps, guidance, seed, inversion,
                              inversion_prompt, control_configs(studio, sid, control or []),
                              model_picker.run_model(studio, model))
        # streamed: x0 previews, then the frames as they decode, in the video's slot (the
        # final video replaces them); per-frame metrics as each frame is scored
        view = StreamView(studio.session(sid).outputs / "previews" / secrets.token_hex(4))
        res, gif, tick = None, None, Ticker()
        # before submitting: the job's events stream from when the page subscribes
        queued = edit_estimate_text(studio, cfg)
        try:
            for item in run_job(studio, sid, "edit", cfg, request, progress):
                if isinstance(item, tuple):
                    if item[0] == "result":
                        res = item[1]
                    else:  # queued: say what it will take (never waits for the device);
                        # the last edit stays on screen until this one has frames to show,
                        # so an edit that fails early leaves it in place
                        yield gr_update(), gr_update(), queued, gr_update(), gr_update()
                    continue
                changed = view.update(item)
                if "mp4" in item.outputs:  # the video is written; its frames are being scored
                    view.video, gif = item.outputs["mp4"], item.outputs["gif"]
                    changed.add("video")
                if changed or tick.due(item):
                    status = (event_status(item) if item.stage == "estimate"
                              else event_status(item, view.status(item)))
                    shown = view.video is not None  # frames of this edit, else keep the last
                    yield (served(studio, view.video) if shown else gr_update(),
                           served(studio, gif) if gif else gr_update(), status,
                           plot_update(view.metrics.series, "frame", "metric", metric_axis)
                           if "metrics" in changed else gr_update(), gr_update())
            plot, table = score_view(res.scores)
            yield served(studio, res.mp4), served(studio, res.gif), "Done.", plot, table
        finally:
            view.close()
    except Exception as e:
        raise gr_error(e)


def edit_job_config(run, prompt, negative, steps, guidance, seed, inversion,
                    inversion_prompt="run", control=(), model: str = ""):
    """The edit job's config from the tab's inputs (``control``: built ControlConfigs;
    ``model``: model_picker.run_model's)."""
    from ..jobs.edit import STREAM_METRICS, EditJobConfig

    return EditJobConfig(run=str(run), metrics=STREAM_METRICS, model=model, edit=EditConfig(
        prompt=prompt, negative=negative or "", steps=as_int("Sampling steps", steps),
        guidance=as_float("Guidance", guidance), seed=as_int("Seed", seed),
        use_inversion=bool(inversion),
        inversion_prompt={"run": None, "empty": ""}.get(inversion_prompt, inversion_prompt),
        control=list(control)))


def edit_check(studio):
    """The Edit event's validator: the run named, the prompts and every setting's range (the
    run folder itself and the Structure panel are checked by the handler, in the session)."""
    def build(sid, run_dir, prompt, negative, steps, guidance, seed, inversion,
              inversion_prompt="run", *rest):
        if not run_dir:
            raise about("run_dir", "Tune on a clip first (the Tune button above).")
        controls = []
        if rest:
            from .structure import check_structure

            controls = check_structure(rest[0])
        model = model_picker.run_model(studio, rest[1]) if len(rest) > 1 else ""
        return edit_job_config(run_dir, prompt, negative, steps, guidance, seed, inversion,
                               inversion_prompt, controls, model)
    return job_validator(studio, "edit", build)


def edit_estimate_text(studio, cfg) -> str:
    """"Queued… Estimate: ~12 s on cpu (inversion cached, ...; calibrated)" from the speeds
    measured at the run's shape (jobs/edit.py ``estimate``; never waits for the device)."""
    from ..jobs.edit import estimate, estimate_line

    try:
        dev = estimate_device(studio)
        est = estimate(cfg, dev, calibration_dir=studio.data_dir)
    except Exception:  # an estimate must never block the edit
        return "Queued…"
    return f"Queued… {estimate_line(est, dev)}"


def open_tav_handler(studio, sid, folder):
    """A Tune-A-Video output folder on this machine as a run of this session (the convert-tav
    job) -> (session, status, run dir); a public studio reads no server folders."""
    from ..jobs.convert_tav import ConvertTavConfig

    sid = ensure_session(studio, sid)
    try:
        if not folder or not folder.strip():
            raise InputError("Give the path of a Tune-A-Video output folder (its output_dir).")
        studio.server_path("Tune-A-Video folder", folder.strip())
        if studio.public:
            raise InputError("This public studio does not read server folders; convert the "
                             "folder with `vcstudio convert-tav` and push the run instead.")
        res = None
        for item in run_job(studio, sid, "convert_tav", ConvertTavConfig(folder=folder.strip())):
            if isinstance(item, tuple) and item[0] == "result":
                res = item[1]
        note = "".join(f" Note: {n}" for n in res.notes[:3])
        return sid, f"Opened {folder.strip()} as a run: edit it below.{note}", str(res.run_dir)
    except Exception as e:
        raise gr_error(e)


SCORE_HEADERS = ["metric", "value", "model", "skipped"]


def score_view(results: dict):
    """(per-frame rows, per-video table) of an edit's scores: each metric's real values by
    frame, with its own axis and unit (metrics/registry.axis_label); the page draws the rows
    as small multiples (:func:`vcstudio.ui.plots.figure_of`)."""
    series = {name: r.per_frame for name, r in results.items() if not r.skipped}
    rows = [[name, None if r.skipped else round(float(r.value), 4), r.model or "",
             r.skipped or ""] for name, r in results.items()]
    return (plot_update(series, "frame", "metric", metric_axis),
            table_update(rows, SCORE_HEADERS))


def push_handler(studio, sid, run_dir, repo_id, token, public=False, oauth_token=None):
    """Upload the run to the Hub in one commit, private unless ``public`` (the push job); the
    token is the logged-in visitor's (OAuth on a Space) or the one typed in."""
    from ..jobs.push import PushConfig

    sid = ensure_session(studio, sid)
    try:
        if not run_dir:
            raise InputError("Tune first: there is no delta to push yet.")
        run = studio.safe_path(sid, run_dir, must_exist=True)
        tok = token or (getattr(oauth_token, "token", None) or "")
        if not tok and studio.public:  # a Space never falls back to the server's own login
            raise InputError("Log in with the Hugging Face button (or paste a write token) to "
                             "push.")
        res = last_result(run_job(studio, sid, "push", PushConfig(str(run), repo_id or "", tok,
                                                                  private=not public)))
        return (f"Pushed {len(res.files)} files in one commit to {res.url} "
                f"({'private' if res.private else 'public'}).")
    except Exception as e:
        raise gr_error(e)


def open_hub_handler(studio, sid, ref, oauth_token=None):
    """Open a pushed run from the Hub as this session's run folder -> (session, status, run
    dir); edits then start from its inverted clip."""
    from ..jobs.open_hub import OpenHubConfig

    sid = ensure_session(studio, sid)
    try:
        tok = getattr(oauth_token, "token", None) or ""
        res = last_result(run_job(studio, sid, "open_hub", OpenHubConfig((ref or "").strip(),
                                                                         tok)))
        return sid, res.message, str(res.run_dir)
    except Exception as e:
        raise gr_error(e)


def _oauth_available() -> bool:
    """Whether a public studio offers "Sign in with Hugging Face": gr.LoginButton needs
    gradio's oauth extra (authlib, itsdangerous: a Space with ``hf_oauth: true`` installs it)
    and, with SPACE_ID set, the OAUTH_CLIENT_ID such a Space is given (Gradio refuses to start
    without it, so a public studio run elsewhere with the extra installed would not start).
    Otherwise the push takes a typed token only."""
    import importlib.util

    return (all(importlib.util.find_spec(m) is not None for m in ("authlib", "itsdangerous"))
            and bool(os.environ.get("OAUTH_CLIENT_ID")))


def example_labels() -> list[str]:
    """One readable line per example ("a red circle ... -> a blue square ..."): the examples
    table's columns cut the prompts."""
    return [f"{p} → {e}" for _, p, e in _examples()]


def _examples() -> list[list]:
    path = EXAMPLES / "prompts.json"
    if not path.is_file():
        return []
    return [[str(EXAMPLES / e["video"]), e["prompt"], e["edits"][0]]
            for e in json.loads(path.read_text())]


# ----------------------------------------------------------------------------- the tab's panels
# Each panel builds its widgets where the layout puts it and returns the ones the events need;
# the _wire_* functions below then connect them (the named API lives there: API.md).


def _clip_panel(studio) -> SimpleNamespace:
    """The clip, its source prompt and what tuning sees of it (frames, size, fit), with the
    frame strip of exactly those frames."""
    lim = studio.limits
    # the demo model, or a CPU-sized Space: small defaults that finish in minutes
    tier = ui_tier(studio)
    side0 = default_long_side(studio)
    lo_side = -(-lim.min_side // 8) * 8
    # a File box, not gr.Video: the browser's video picker refuses gif and zip
    video = gr.File(label="Clip (mp4, webm, mov, avi, gif, or a zip of images)",
                    file_types=VIDEO_TYPES, type="filepath", height=120,
                    elem_id="edit-clip")
    player = gr.Video(label="The clip", height=160, interactive=False,
                      autoplay=True, loop=True, elem_id="edit-player")
    # the demo model on real footage: said on upload, before any tune (one may go on)
    notice = gr.Markdown(visible=False, elem_id="edit-footage-notice",
                         elem_classes=["vcs-banner"])
    prompt = gr.Textbox(value="", label="Source prompt: what the clip shows",
                        placeholder="a red circle moving right on the beach")
    with gr.Row():
        frames = slider(DataConfig, "n_frames", tier.frames, lim)
        stride = slider(DataConfig, "stride", tier.stride, lim)
        start = number(DataConfig, "start", 0, precision=0, minimum=0)
    with gr.Row():
        width = gr.Slider(lo_side, lim.max_side, value=side0, step=8,
                          label="Width (px)")
        height = gr.Slider(lo_side, lim.max_side, value=side0, step=8,
                           label="Height (px)")
    with gr.Row():
        resize = radio(DataConfig, "resize")
        position = radio(DataConfig, "crop", label="Keep (crop) / place (pad)")
    strip = gr.Image(label="Frames that will be tuned on", height=110,
                     interactive=False, elem_id="edit-strip")
    strip_info = gr.Markdown(elem_id="edit-strip-info", label="Preview info")
    return SimpleNamespace(video=video, player=player, notice=notice, prompt=prompt,
                           frames=frames, stride=stride, start=start, width=width,
                           height=height, resize=resize, position=position, strip=strip,
                           strip_info=strip_info)


def _tune_panel(studio) -> SimpleNamespace:
    """The method and its switches, the tune's settings and estimate, Tune / Stop, the
    stopped tunes to resume, and the tune's status, loss figure and preview."""
    tier = ui_tier(studio)
    side0 = default_long_side(studio)
    model = model_picker.build(studio)
    method = gr.Radio(list(pickable()), value="baseline", label="Method",
                      info="baseline = Tune-A-Video; DCT = + adapter and "
                           "CLIP/VGG consistency; APLA = + VGT perturbation; "
                           "apla+dct = both")
    switches = method_panel(("dct", "apla"))  # from the methods' declarations
    adapter, semantic, texture, clws = switches["dct"].values()
    vgt, disc, hyper = switches["apla"].values()
    with gr.Row():
        steps = slider(TuneConfig, "steps", tier.steps, studio.limits)
        lr = number(TuneConfig, "lr", tier.lr)
        seed = number(TuneConfig, "seed", tier.seed, precision=0)
    est = gr.Markdown(estimate_text(studio, tier.frames, side0, side0, tier.steps),
                      label="Estimate")
    with gr.Row():
        tune_btn = gr.Button("Tune", variant="primary")
        stop_btn = gr.Button("Stop", variant="stop")
    resume = _resume_row()
    status = gr.Markdown("Ready.", elem_id="edit-status", label="Status")
    # the page shows the figure (one panel per axis, real values), drawn from
    # the rows API clients get (API.md: loss) in the visually hidden LinePlot
    loss_fig = gr.Plot(label="Loss terms by step (each on its own axis)",
                       show_label=False, format="png", elem_id="edit-loss-figure",
                       elem_classes=["vcs-figure"])  # titled in the figure
    loss_plot = gr.LinePlot(x="step", y="value", color="series", label="Loss",
                            elem_id="edit-loss-plot", visible="hidden")
    tune_preview = gr.Image(label="Preview while tuning", height=110,
                            interactive=False, elem_id="edit-tune-preview")
    return SimpleNamespace(model=model, method=method, adapter=adapter, semantic=semantic,
                           texture=texture, clws=clws, vgt=vgt, disc=disc, hyper=hyper,
                           steps=steps, lr=lr, seed=seed, est=est, tune_btn=tune_btn,
                           stop_btn=stop_btn, resume=resume, status=status,
                           loss_fig=loss_fig, loss_plot=loss_plot, tune_preview=tune_preview)


def _resume_row() -> SimpleNamespace:
    """The runs panel: this visitor's stopped or interrupted tunes, to resume."""
    with gr.Row():
        picked = any_string(gr.Dropdown([], label="Your stopped or interrupted "
                                              "tunes", scale=4))
        refresh = gr.Button("↻", scale=0, min_width=40)
        button = gr.Button("Resume", scale=1)
    return SimpleNamespace(picked=picked, refresh=refresh, button=button)


def _tav_panel() -> SimpleNamespace:
    """Open a Tune-A-Video output folder on this machine as a run."""
    with gr.Accordion("Open a Tune-A-Video folder", open=False):
        with gr.Row():
            folder = gr.Textbox(value="", scale=4,
                                label="Tune-A-Video output folder (its output_dir)")
            button = gr.Button("Open", scale=1)
        status = gr.Markdown(label="Open status")
    return SimpleNamespace(folder=folder, button=button, status=status)


def _edit_panel(studio, sid_state, run_dir) -> SimpleNamespace:
    """The edit's prompts and settings, its structure conditions, Generate, the edited video
    and the per-frame and per-video metrics."""
    from .structure import build as structure_panel

    tier = ui_tier(studio)
    with gr.Row():
        with gr.Column(scale=1):
            prompt = gr.Textbox(value="", label="Edit prompt: what the video should show",
                                placeholder="a blue square moving right on the beach")
            negative = gr.Textbox(value="", label="Negative prompt (optional)")
            with gr.Row():
                steps = slider(EditConfig, "steps", tier.edit_steps)
                guidance = slider(EditConfig, "guidance", tier.guidance)
                seed = number(EditConfig, "seed", tier.seed, precision=0)
            inversion = gr.Checkbox(True, label="Start from the inverted clip (keeps its "
                                                "motion)")
            inv_prompt = gr.Dropdown(INVERSION_PROMPTS, value="run",
                                     label="Invert the clip under")
            control = structure_panel(studio, sid_state, run_dir)
            button = gr.Button("Generate edit", variant="primary")
            status = gr.Markdown(elem_id="edit-estatus", label="Edit status")
        with gr.Column(scale=1):
            video = gr.Video(label="Edited video", height=240, autoplay=True, loop=True,
                             elem_id="edit-video")
            gif = gr.File(label="GIF")
    with gr.Row():
        metric_fig = gr.Plot(label="Per-frame metrics (each on its own axis)",
                             show_label=False, format="png", elem_id="edit-metric-figure",
                             elem_classes=["vcs-figure"])  # titled in the figure
        metric_plot = gr.LinePlot(x="frame", y="value", color="series",
                                  label="Per-frame metrics", elem_id="edit-metric-plot",
                                  visible="hidden")
        metric_table = gr.Dataframe(headers=SCORE_HEADERS, label="Per-video metrics",
                                    elem_classes=["vcs-table"],
                                    interactive=False, wrap=True,
                                    column_widths=table_widths(SCORE_HEADERS))
    return SimpleNamespace(prompt=prompt, negative=negative, steps=steps, guidance=guidance,
                           seed=seed, inversion=inversion, inv_prompt=inv_prompt,
                           control=control, button=button, status=status, video=video,
                           gif=gif, metric_fig=metric_fig, metric_plot=metric_plot,
                           metric_table=metric_table)


def _hub_panel(oauth: bool) -> SimpleNamespace:
    """Push this run to the Hugging Face Hub, or open a pushed one."""
    with gr.Accordion("Share on the Hugging Face Hub: push this run, or open one",
                      open=False):
        if oauth:  # a Space: the visitor's own login (README's hf_oauth)
            gr.LoginButton()
        with gr.Row():
            repo = gr.Textbox(value="", label="Repo id (user/name)")
            token = gr.Textbox(value="", label="Write token (or log in)", type="password")
            public = gr.Checkbox(False, label="Public (default: private)")
        push_btn = gr.Button("Push run (one commit)")
        push_status = gr.Markdown(label="Push status")
        with gr.Row():
            ref = gr.Textbox(value="", label="Open from Hub",
                             placeholder="hf://user/my-run", scale=4)
            open_btn = gr.Button("Open", scale=1)
        status = gr.Markdown(label="Open status")
    return SimpleNamespace(repo=repo, token=token, public=public, push_btn=push_btn,
                           push_status=push_status, ref=ref, open_btn=open_btn, status=status)


def build(studio, sid_state):
    group = device_group(studio)
    with gr.Tab("Edit from Video", elem_id="edit-tab"):
        gr.Markdown("**1. Pick a clip** and describe it. **2. Tune** the model on it (a few "
                    "minutes). **3. Edit**: describe what the video should show instead.")
        with gr.Row():
            with gr.Column(scale=1):
                clip = _clip_panel(studio)
            with gr.Column(scale=1):
                tune = _tune_panel(studio)
        run_dir = gr.Textbox(value="", label="Run folder (this session's)", interactive=False)
        tav = _tav_panel()
        job_id = gr.Textbox(value="", visible=False, label="Job id")
        model_picker.follow(studio, sid_state, run_dir, tune.model)  # edits load the run's base
        gr.Markdown("### Edit")
        edit = _edit_panel(studio, sid_state, run_dir)
        oauth = studio.public and _oauth_available()
        hub = _hub_panel(oauth)
        if _examples():
            gr.Examples(_examples(), inputs=[clip.video, clip.prompt, edit.prompt],
                        label="Examples", example_labels=example_labels())
        _wire_clip(studio, sid_state, clip, tune)
        _wire_tune(studio, sid_state, clip, tune, run_dir, job_id, group)
        _wire_edit(studio, sid_state, edit, run_dir, group, tune.model)
        _wire_tav(studio, sid_state, tav, run_dir, group)
        _wire_hub(studio, sid_state, hub, run_dir, oauth)
    return {"run_dir": run_dir, "video": clip.video, "prompt": clip.prompt}


# ----------------------------------------------------------------------------- events
# The named API (API.md): real functions, their parameter names are the API's.


def _wire_clip(studio, sid_state, c: SimpleNamespace, t: SimpleNamespace) -> None:
    """A new clip sizes the sliders to its aspect, then previews, plays and is checked; a
    setting the user changes previews again; the estimate follows the settings (``c``: the
    clip panel's widgets, ``t``: the tune panel's)."""
    def preview(session: str, clip: Optional[str], frames: float, stride: float,
                start: float, width: float, height: float, fit: str, position: str):
        """The frames tuning will see, as a strip (outside the device queue)."""
        if not clip:
            return session, None, ""
        return preview_frames(studio, session, clip, frames, stride, start, width, height,
                              fit, position)

    def clip_notice(session: str, clip: Optional[str], model: str = ""):
        """A warning toast and a notice under the clip when the demo model meets real
        footage (the user may still tune)."""
        text = footage_notice(studio, session, clip, model)
        if text:
            gr.Warning(text)
        return gr_update(value=f"⚠️ {text}" if text else "", visible=bool(text))

    def clip_dims(session: str, clip: Optional[str]):
        """The clip's aspect at the largest size this tier allows."""
        if not clip:
            return session, gr_update(), gr_update()
        return clip_size(studio, session, clip)

    def estimate(frames: float, width: float, height: float, steps: float,
                 method: str, model: str = "") -> str:
        """Memory and time of a tune with these settings on the picked base ``model`` ("" =
        the studio's default; never waits for the device)."""
        check_bounds(est_bounds, (frames, width, height, steps))
        try:  # the sides the tune would refuse are refused here too
            from .. import validate as v

            for name, side in (("Width", width), ("Height", height)):
                v.side(name, as_int(name, side), studio.limits)
        except InputError as e:
            raise gr_error(e) from None
        return estimate_text(studio, frames, width, height, steps, method, model)

    fit_inputs = [sid_state, c.video, c.frames, c.stride, c.start, c.width, c.height, c.resize,
                  c.position]
    fit_outputs = [sid_state, c.strip, c.strip_info]
    # a new clip: size the sliders to its aspect, then preview; user edits of a setting
    # preview again (``input``: not the sliders' programmatic updates, so one preview)
    sized = c.video.change(clip_dims, [sid_state, c.video], [sid_state, c.width, c.height],
                           api_name="clip_size", concurrency_id="preview",
                           concurrency_limit=4)
    sized.then(preview, fit_inputs, fit_outputs, api_name=False, concurrency_id="preview")
    sized.then(lambda session, clip: clip_player(studio, session, clip), [sid_state, c.video],
               c.player, api_name=False, concurrency_id="preview", show_progress="hidden")
    sized.then(clip_notice, [sid_state, c.video, t.model], c.notice, api_name=False,
               concurrency_id="preview")
    for w in (c.frames, c.stride, c.start, c.width, c.height, c.resize, c.position):
        w.input(preview, fit_inputs, fit_outputs, api_name=False, concurrency_id="preview",
                trigger_mode="always_last")
    # the API's /preview and /estimate, on hidden buttons: the page's own preview and
    # estimate events above are internal (one public name each)
    strip_btn = gr.Button(visible=False)
    strip_btn.click(preview, fit_inputs, fit_outputs, api_name="preview",
                    concurrency_id="preview", concurrency_limit=4)
    est_btn = gr.Button(visible=False)
    est_inputs = [c.frames, c.width, c.height, t.steps, t.method, t.model]
    est_bounds = bounds_of(est_inputs[:4])
    est_btn.click(estimate, est_inputs, t.est, api_name="estimate",
                  concurrency_id="preview")
    for w in est_inputs:
        w.change(estimate, est_inputs, t.est, api_name=False,
                 concurrency_id="preview", trigger_mode="always_last")


def _wire_tune(studio, sid_state, c: SimpleNamespace, t: SimpleNamespace, run_dir, job_id,
               group) -> None:
    """Tune, Stop and Resume; the list of tunes to resume follows the session and each tune;
    the loss figure is drawn from the rows the hidden plot holds."""
    def tune(session: str, clip: Optional[str], prompt: str, frames: float, stride: float,
             start: float, width: float, height: float, fit: str, position: str,
             method: str, steps: float, lr: float, seed: float, adapter: bool,
             semantic: bool, texture: bool, clws: str, vgt: str, discriminator: bool,
             hyper_loss: bool, model: str = "", request: gr.Request = None,
             progress=gr.Progress()):
        """One-shot tune on the clip; streams status, loss curve and previews. ``model``:
        the base model (a listed one, an alias such as sd15, a Hub id; "" = default)."""
        yield from tune_handler(studio, session, clip, prompt, frames, stride, start, width,
                                height, fit, position, method, steps, lr, seed, adapter,
                                semantic, texture, clws, vgt, discriminator, hyper_loss,
                                request, progress, model)

    def stop(session: str, job_id: str) -> str:
        """Stop this session's job at its next step (a tune keeps its checkpoint)."""
        return stop_handler(studio, session, job_id)

    def resume(session: str, job_id: str, request: gr.Request, progress=gr.Progress()):
        """Continue a stopped or interrupted tune from its checkpoint."""
        yield from resume_handler(studio, session, job_id, request, progress)

    def refresh_resumable(session: str, picked: Optional[str] = None):
        """The list anew; the pick kept only while it is still in it (a job id left
        over would show as a bare id instead of its label)."""
        choices = resumable_choices(studio, session)
        ids = [job for _, job in choices]
        return gr_update(choices=choices, value=picked if picked in ids else None)

    r = t.resume
    listed = [sid_state, r.picked]
    # a page's session is set when it loads: list the tunes it may resume (any tab's, on
    # a desktop; this browser's own on a public Space)
    sid_state.change(refresh_resumable, listed, r.picked, api_name=False,
                     show_progress="hidden")
    tune_inputs = [sid_state, c.video, c.prompt, c.frames, c.stride, c.start, c.width,
                   c.height, c.resize, c.position, t.method, t.steps, t.lr, t.seed, t.adapter,
                   t.semantic, t.texture, t.clws, t.vgt, t.disc, t.hyper, t.model]
    tune_outputs = [sid_state, job_id, t.status, t.loss_plot, t.tune_preview, run_dir]
    tune_ev = t.tune_btn.click(
        tune, tune_inputs, tune_outputs, api_name="tune",
        concurrency_id=group, concurrency_limit=1, show_progress_on=[t.status],
        validator=validated(tune, tune_check(studio), tune_inputs))
    tune_ev.then(refresh_resumable, listed, r.picked, api_name=False)
    t.stop_btn.click(stop, [sid_state, job_id], t.status, api_name="stop",
                     concurrency_id="control", concurrency_limit=None)
    r.button.click(resume, listed, tune_outputs, api_name="resume",
                   concurrency_id=group, concurrency_limit=1,
                   show_progress_on=[t.status]).then(
        refresh_resumable, listed, r.picked, api_name=False)
    r.refresh.click(refresh_resumable, listed, r.picked, api_name=False)
    # the figure the page shows, drawn from the rows the plot holds (the newest only)
    t.loss_plot.change(loss_figure, t.loss_plot, t.loss_fig, api_name=False,
                       concurrency_id="figure", concurrency_limit=2,
                       trigger_mode="always_last", show_progress="hidden")


def _wire_edit(studio, sid_state, e: SimpleNamespace, run_dir, group, model) -> None:
    """Generate edit, and the metric figure drawn from the rows the hidden plot holds
    (``model``: the picker, which follows the run's base)."""
    def edit(session: str, run_dir: str, prompt: str, negative: str, steps: float,
             guidance: float, seed: float, inversion: bool, inversion_prompt: str,
             structure: Optional[list], model: str = "", request: gr.Request = None,
             progress=gr.Progress()):
        """An edit of the tuned run; streams status, then video, gif and scores.
        ``inversion_prompt``: "run" (the run's setting), "empty" or "source"; ``model``:
        the base to load the run onto ("" = the one it was tuned on)."""
        yield from edit_handler(studio, session, run_dir, prompt, negative, steps, guidance,
                                seed, inversion, inversion_prompt, request, progress,
                                structure, model)

    edit_inputs = [sid_state, run_dir, e.prompt, e.negative, e.steps, e.guidance, e.seed,
                   e.inversion, e.inv_prompt, e.control, model]
    e.button.click(edit, edit_inputs, [e.video, e.gif, e.status, e.metric_plot,
                                          e.metric_table],
                   api_name="edit", concurrency_id=group, concurrency_limit=1,
                   show_progress_on=[e.status],
                   validator=validated(edit, edit_check(studio), edit_inputs))
    e.metric_plot.change(metric_figure, e.metric_plot, e.metric_fig, api_name=False,
                         concurrency_id="figure", trigger_mode="always_last",
                         show_progress="hidden")


def _wire_tav(studio, sid_state, tav, run_dir, group) -> None:
    def open_tav(session: str, folder: str):
        """A Tune-A-Video output folder on this machine as a run of this session."""
        return open_tav_handler(studio, session, folder)

    tav.button.click(open_tav, [sid_state, tav.folder], [sid_state, tav.status, run_dir],
                     api_name="open_tav", concurrency_id=group, concurrency_limit=1,
                     show_progress_on=[tav.status])


def _wire_hub(studio, sid_state, hub, run_dir, oauth: bool) -> None:
    def push(session: str, run_dir: str, repo_id: str, token: str, public: bool = False,
             oauth_token=None) -> str:
        """Upload the run to the Hub in one commit (private unless ``public``): delta,
        clip latents, inversions, config, meta, preview GIF, model card."""
        return push_handler(studio, session, run_dir, repo_id, token, public, oauth_token)

    def open_hub(session: str, ref: str, oauth_token=None):
        """A pushed run (hf://user/name) as a run of this session, to edit."""
        return open_hub_handler(studio, session, ref, oauth_token)

    for fn in (push, open_hub) if oauth else ():  # Gradio fills OAuthToken parameters
        fn.__annotations__["oauth_token"] = Optional[gr.OAuthToken]
    hub.push_btn.click(push, [sid_state, run_dir, hub.repo, hub.token, hub.public],
                       hub.push_status, api_name="push", concurrency_id="control")
    hub.open_btn.click(open_hub, [sid_state, hub.ref], [sid_state, hub.status, run_dir],
                       api_name="open_hub", concurrency_id="control",
                       show_progress_on=[hub.status])
