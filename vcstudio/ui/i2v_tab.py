"""I2V Consistency tab: score a video's consistency with its conditioning image (VCD), and
generate base vs VCD-tuned videos with an image-to-video model (SVD, LTX-Video, Wan2.1 I2V:
picked from the known models, cached or not, with their download size), with estimates of time
and peak memory from the backbone's own figures, and evaluate base vs tuned over seeds with
consistency plotted against dynamic degree.

Widgets and formatting only: Score VCD submits the eval job, the A/B the i2v_ab job, reward
tuning the i2v_tune job, the seed evaluation the i2v_eval job (vcstudio/jobs)."""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Optional

import gradio as gr

from ..errors import InputError, VcsError
from .common import (IMAGE_TYPES, NO_CLIP, VIDEO_TYPES, Ticker, about, as_float, as_int,
                     device_group, ensure_session, estimate_device, event_status, gr_error,
                     gr_update, job_validator, run_job, series_frame, served, upload,
                     validated, any_string)


def _stream(items, n_outputs: int, status_at: int):
    """Stream a job's progress as the status output (the others left as they are); the
    result comes back through StopIteration's value, for ``yield from``."""
    res, tick = None, Ticker()
    for item in items:
        if isinstance(item, tuple):
            res = item[1] if item[0] == "result" else res
            continue
        if tick.due(item):
            out = [gr_update()] * n_outputs
            out[status_at] = event_status(item)
            yield tuple(out)
    return res


def score_vcd_stream(studio, sid, video, image, request=None, progress=None):
    """Generator: per-frame VCD of a video against its first frame or a given image."""
    from ..jobs.eval import EvalConfig

    sid = ensure_session(studio, sid)
    try:
        path = upload(studio, sid, video)
        img = upload(studio, sid, image, IMAGE_TYPES) if image else None
        cfg = EvalConfig(video=str(path), what="vcd", image=str(img) if img else "")
        res = (yield from _stream(run_job(studio, sid, "eval", cfg, request, progress), 2,
                                  1)).vcd
        plot = series_frame({f"VCD ({res.encoder})": [float(v) for v in res.per_frame]},
                            x="frame")
        yield plot, (f"Mean VCD {float(res.mean):.4g} (lower = more consistent), encoder "
                     f"{res.encoder}.")
    except Exception as e:
        raise gr_error(e)


def score_vcd(studio, sid, video, image):
    """Per-frame VCD (the last of :func:`score_vcd_stream`)."""
    out = None
    for out in score_vcd_stream(studio, sid, video, image):
        pass
    return out


def vcd_estimate_text(studio, sid, video) -> str:
    """The Score VCD panel's ``Estimate: ...`` line: the video's frames through the feature net
    (jobs/eval.py ``estimate``); never waits for the device, never fails the page."""
    from ..jobs.eval import EvalConfig, estimate, estimate_line

    if not video:
        return "Pick a video to see what scoring it takes."
    try:
        sid = ensure_session(studio, sid)
        path = upload(studio, sid, video)
        dev = estimate_device(studio)
        est = estimate(EvalConfig(video=str(path), what="vcd"), dev,
                       calibration_dir=studio.data_dir)
    except Exception as e:  # an estimate must never block the page
        return f"(no estimate: {e})"
    return estimate_line(est, dev)


def _check_request(studio, model: str, frames, size) -> str:
    """The model (a hub id, or a folder on a desktop studio) and frames/size within limits."""
    if not model:
        raise InputError("Give an image-to-video model: pick one of the known models or type a "
                         "Hub id or a local folder. None ships offline.")
    lim = studio.limits
    frames, size = as_int("Frames", frames), as_int("Size", size)
    if not 0 <= frames <= lim.max_frames or not 0 <= size <= lim.max_side:
        raise InputError(f"Frames must be within 0..{lim.max_frames} and size within "
                         f"0..{lim.max_side} px here (0 = the model's own); got {frames} "
                         f"frames at {size} px.")
    return studio.server_path("I2V model", model.strip())


def _ab_outputs(studio, base_video, tuned_video, scores):
    """Both videos and the plot of their per-frame VCD against the conditioning image."""
    rb, rt = scores
    plot = series_frame({"base": [float(v) for v in rb.per_frame],
                         "VCD-tuned": [float(v) for v in rt.per_frame]}, x="frame")
    note = (f"Mean VCD base {float(rb.mean):.4g} → tuned {float(rt.mean):.4g} (lower = more "
            f"consistent; encoder {rb.encoder}).")
    return served(studio, base_video), served(studio, tuned_video), plot, note


NO_LORA = "Give a tuned LoRA file, or use Reward-tune below to make one."


BACKBONE_CHOICES = ["auto", "svd", "ltx", "wan"]


def step_cache_of(value) -> Optional[float]:
    """The tab's step-cache number -> the jobs' setting: 0 (or empty) = off."""
    v = as_float("Step cache threshold", value or 0)
    return v if v > 0 else None


def ab_config(model, img, prompt, lora, frames, size, steps, seed, backbone="auto",
              step_cache=0):
    """The i2v_ab job's config from the tab's inputs (model and files already resolved)."""
    from ..jobs.i2v_ab import I2VABConfig

    return I2VABConfig(model=model, image=str(img), prompt=prompt or "", lora=str(lora),
                       ab=True, frames=as_int("Frames", frames), size=as_int("Size", size),
                       steps=as_int("Sampling steps", steps), seed=as_int("Seed", seed),
                       name="i2v-tuned.mp4", backbone=backbone or "auto",
                       step_cache=step_cache_of(step_cache))


def reward_config(model, img, prompt, frames, size, steps, seed, tune_steps, lr, rank,
                  backbone="auto", step_cache=0, paper=False):
    """The i2v_tune job's config from the tab's inputs (model and image already resolved)."""
    from ..jobs.i2v_tune import I2VTuneConfig, I2VTuneJobConfig

    size = as_int("Size", size) or None
    tune_steps = as_int("Reward steps", tune_steps)
    return I2VTuneJobConfig(
        model=model, images=[str(img)], prompts=[prompt] if prompt else [],
        tune=I2VTuneConfig(steps=tune_steps, lr=as_float("Learning rate", lr),
                           lora_rank=as_int("LoRA rank", rank),
                           num_frames=as_int("Frames", frames) or None, height=size,
                           width=size, inference_steps=as_int("Sampling steps", steps),
                           encoder="auto", seed=as_int("Seed", seed),
                           eval_every=max(1, tune_steps // 5)),
        backbone=backbone or "auto", step_cache=step_cache_of(step_cache),
        preset="paper" if paper else "")


def eval_config(model, img, prompt, lora, frames, size, steps, seeds, backbone="auto",
                step_cache=0):
    """The i2v_eval job's config: seeds 0..seeds-1, the same for base and tuned."""
    from ..jobs.i2v_eval import I2VEvalConfig

    size = as_int("Size", size)
    k = as_int("Seeds", seeds)
    if not 1 <= k <= 20:
        raise InputError(f"Seeds must be within 1..20 (the paper used 5); got {k}.")
    return I2VEvalConfig(model=model, lora=str(lora), images=[str(img)],
                         prompts=[prompt] if prompt else [], seeds=list(range(k)),
                         backbone=backbone or "auto", frames=as_int("Frames", frames),
                         height=size, width=size, steps=as_int("Sampling steps", steps),
                         step_cache=step_cache_of(step_cache))


def i2v_check(studio, tune: bool = False):
    """The I2V A/B (``tune``: reward-tune) event's validator (common.job_validator): the
    model, the image and LoRA named, and every setting's range, before the device queue."""
    def build(sid, image, prompt, model, *rest):
        if tune:
            frames, size, steps, seed, tune_steps, lr, rank = rest[:7]
        else:
            lora, frames, size, steps, seed = rest[:5]
        model = _check_request(studio, model, frames, size)
        if not tune and not lora:
            raise about("lora", NO_LORA)
        if not image:
            raise about("image", NO_CLIP)
        img = image.get("path") if isinstance(image, dict) else image
        if tune:
            return reward_config(model, img, prompt, frames, size, steps, seed, tune_steps,
                                 lr, rank, *rest[7:10])
        return ab_config(model, img, prompt, lora, frames, size, steps, seed, *rest[5:7])
    return job_validator(studio, "i2v_tune" if tune else "i2v_ab", build)


def eval_check(studio):
    """The seed evaluation's validator (common.job_validator)."""
    def build(sid, image, prompt, model, lora, frames, size, steps, seeds, *rest):
        model = _check_request(studio, model, frames, size)
        if not lora:
            raise about("lora", NO_LORA)
        if not image:
            raise about("image", NO_CLIP)
        img = image.get("path") if isinstance(image, dict) else image
        return eval_config(model, img, prompt, lora, frames, size, steps, seeds, *rest[:2])
    return job_validator(studio, "i2v_eval", build)


def _lora_request(studio, sid, model, frames, size, image, lora):
    """(model, uploaded image, LoRA path) of a base-vs-tuned request: the model and sizes
    within limits, a LoRA given and inside the visitor's session."""
    model = _check_request(studio, model, frames, size)
    if not lora:
        raise InputError(NO_LORA)
    img = upload(studio, sid, image, IMAGE_TYPES)
    return model, img, studio.safe_path(sid, lora, must_exist=True)


def generate_ab_stream(studio, sid, image, prompt, model, lora, frames, size, steps, seed,
                       backbone="auto", step_cache=0, request=None, progress=None):
    """Generator: base vs tuned (a LoRA from `vcstudio i2v-tune` or the tuning below) videos
    from one image, same seed."""
    sid = ensure_session(studio, sid)
    try:
        model, img, lora_path = _lora_request(studio, sid, model, frames, size, image, lora)
        cfg = ab_config(model, img, prompt, lora_path, frames, size, steps, seed, backbone,
                        step_cache)
        res = yield from _stream(run_job(studio, sid, "i2v_ab", cfg, request, progress), 4, 3)
        vb, vt, plot, note = _ab_outputs(studio, res.base_video, res.video, res.scores)
        yield vb, vt, plot, (f"{note} {res.note}" if res.note else note)
    except Exception as e:
        raise gr_error(e)


def generate_ab(studio, sid, image, prompt, model, lora, frames, size, steps, seed,
                backbone="auto", step_cache=0):
    """Base vs tuned videos (the last of :func:`generate_ab_stream`)."""
    out = None
    for out in generate_ab_stream(studio, sid, image, prompt, model, lora, frames, size, steps,
                                  seed, backbone, step_cache):
        pass
    return out


def reward_tune(studio, sid, image, prompt, model, frames, size, steps, seed, tune_steps, lr,
                rank, backbone="auto", step_cache=0, paper=False, request=None, progress=None):
    """Generator: VCD reward tuning (VCD paper, eq. 3) on one image with its curves streamed,
    then base vs tuned with the same seed."""
    sid = ensure_session(studio, sid)
    try:
        model = _check_request(studio, model, frames, size)
        img = upload(studio, sid, image, IMAGE_TYPES)
        cfg = reward_config(model, img, prompt, frames, size, steps, seed, tune_steps, lr, rank,
                            backbone, step_cache, paper)
        curves: dict[str, list] = {}
        res, tick = None, Ticker()
        for item in run_job(studio, sid, "i2v_tune", cfg, request, progress):
            if isinstance(item, tuple):
                res = item[1] if item[0] == "result" else res
                continue
            for k, v in item.metrics.items():
                curves.setdefault(k, []).append(v)
            if tick.due(item):
                yield (f"{item.message}", series_frame({"VCD (reward step)": curves.get("vcd", [])}),
                       None, None, None, None)
        log = res.log
        vb, vt, plot, note = _ab_outputs(studio, res.base_video, res.tuned_video, res.scores)
        warn = (" ⚠ " + log.warnings[-1]) if log.warnings else ""
        warn += f" {res.note}" if res.note else ""
        probes = "; ".join(f"step {p['step']}: VCD {p['vcd']:.3g}, fidelity {p['fidelity']:.3g}, "
                           f"motion {p['motion']:.3g}px" for p in log.probe)
        yield (f"Tuned {len(log.step)} steps in {log.seconds:.0f} s. {note}{warn}\n\n"
               f"Probe sample — {probes}", series_frame({"VCD (reward step)": log.vcd}),
               vb, vt, plot, str(res.lora))
    except Exception as e:
        raise gr_error(e)


def evaluate_stream(studio, sid, image, prompt, model, lora, frames, size, steps, seeds,
                    backbone="auto", step_cache=0, request=None, progress=None):
    """Generator: base vs tuned over ``seeds`` seeds (the paper's protocol), the table of mean
    and 95% interval per column, consistency against dynamic degree per image, the files."""
    sid = ensure_session(studio, sid)
    try:
        model, img, lora_path = _lora_request(studio, sid, model, frames, size, image, lora)
        cfg = eval_config(model, img, prompt, lora_path, frames, size, steps, seeds, backbone,
                          step_cache)
        res = yield from _stream(run_job(studio, sid, "i2v_eval", cfg, request, progress), 5, 0)
        yield eval_outputs(studio, res, len(cfg.seeds))
    except Exception as e:
        raise gr_error(e)


PLOT_HEADERS = ["image", "arm", "metric", "consistency", "dynamic_degree"]


def eval_outputs(studio, res, n_seeds: int):
    """(status, table, consistency-vs-dynamic-degree plot, files, the plot's rows as a table)."""
    import pandas as pd

    from .plots import table_update

    table = table_update(res.table["data"], res.table["headers"])
    pts = [{"dynamic_degree": r["dynamic_degree"], "consistency": r["consistency"],
            "series": f"{r['arm']} · {r['metric']}", "image": r["image"]} for r in res.plot
           if r["consistency"] == r["consistency"] and r["dynamic_degree"] == r["dynamic_degree"]]
    plot = pd.DataFrame(pts) if pts else None
    rows = table_update([[r[k] for k in PLOT_HEADERS] for r in res.plot], PLOT_HEADERS)
    status = (f"{len(res.videos)} videos scored (base and tuned, {n_seeds} seeds per image); "
              "mean ± 95% interval over the seeds. A consistency gain with a lower dynamic "
              "degree is bought with motion.")
    return (f"{status} {res.note}" if res.note else status, table, plot,
            [served(studio, p) for p in res.files], rows)


def model_info(model) -> str:
    """One line on the picked model: cached or its download size (cache reads only)."""
    from ..models.catalog import status

    if not model or not str(model).strip():
        return "Pick a known model or type a Hub id / local folder."
    return status(str(model)).line()


MODEL_HEADERS = ["id", "name", "family", "task", "cached", "download_gb", "size_source", "note"]


def models_table(task: str = "i2v"):
    """The known models with whether each is in the local cache, as a plain table."""
    from ..models.catalog import cached_sizes, known, status

    from .plots import table_update

    sizes = cached_sizes()
    rows = [[m.id, m.name, m.family, m.task, status(m.id, sizes).cached, m.download_gb,
             m.size_source, m.note] for m in known(task or None)]
    return table_update(rows, MODEL_HEADERS)


def i2v_estimate(studio, model, frames, size, steps, reward_steps, backbone="auto",
                 paper=False) -> str:
    """Time and peak memory of a sample and of a reward step from the backbone's own figures,
    the tune's total, and the ZeroGPU call it would ask for."""
    from ..jobs.i2v_tune import estimate
    from ..zerogpu import LOAD_SECONDS, MARGIN, max_call_seconds

    try:
        if not model or not str(model).strip():
            return "Pick a model to see what a tune would take."
        cfg = reward_config(str(model).strip(), "image.png", "", frames, size, steps, 0,
                            reward_steps, 2e-4, 16, backbone, 0, paper)
        from ..calibration import format_seconds

        est = estimate(cfg, estimate_device(studio))
        gpu = math.ceil(est["seconds"] * MARGIN + LOAD_SECONDS)
        cap = max_call_seconds()
        zg = (f"one ZeroGPU call of {gpu:.0f} s" if gpu <= cap else
              f"longer than one {cap:.0f} s ZeroGPU call: fewer reward steps, frames or size")
        return (f"{est['frames']} frames at {est['width']}x{est['height']}: a reward step "
                f"~{est['step_seconds']:g} s, peak ~{est['peak_gib']:g} GiB; "
                f"{cfg.tune.steps} steps with probes and the A/B ~"
                f"{format_seconds(est['seconds'])} ({zg}). {est['how']}.")
    except VcsError as e:
        return str(e)


def build(studio, sid_state, edit_refs):
    group = device_group(studio)
    with gr.Tab("I2V Consistency", elem_id="i2v-tab"):
        gr.Markdown("**Video Consistency Distance** compares each frame's VGG-feature frequency "
                    "spectrum with the conditioning image (lower is more consistent; later "
                    "frames weigh less). Offline, a pretrained EfficientNet-Lite0 stands in "
                    "for VGG19 and the score says so.")
        vcd = _vcd_panel(studio)
        gr.Markdown("### Reward-tune an image-to-video model with VCD (VCD paper, eq. 3)\n"
                    "LoRA on the denoiser's attention, truncated backprop through the last "
                    "denoising step, VCD as the loss. Then base and tuned play side by side from "
                    "the same seed. Needs an I2V model (none ships offline); Wan2.1 I2V is the "
                    "paper's own backbone.")
        with gr.Row():
            with gr.Column():
                cond = gr.Image(label="Conditioning image", type="filepath", height=200,
                                image_mode=None)
                iprompt = gr.Textbox(
                    value="", label="Prompt (LTX-Video and Wan read it; SVD uses the image only)")
                from ..models.catalog import choices as known_models

                with gr.Row():
                    model = any_string(gr.Dropdown(
                        choices=known_models("i2v"), value="", allow_custom_value=True,
                        scale=3, label="I2V model (a known one, a Hub id or a folder)"))
                    backbone = gr.Dropdown(BACKBONE_CHOICES, value="auto", scale=1,
                                           label="Backbone (auto: from the model)")
                model_md = gr.Markdown(model_info(None), label="Model")
                with gr.Row():
                    frames = gr.Number(value=0, precision=0, label="Frames (0 = model's own)")
                    size = gr.Number(value=0, precision=0, label="Size (0 = model's own)")
                    steps = gr.Slider(2, 50, value=25, step=1, label="Sampling steps")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                with gr.Row():
                    tune_steps = gr.Slider(1, 500, value=50, step=1, label="Reward steps")
                    lr = gr.Number(value=2e-4, label="Learning rate (paper: 2e-4)")
                    rank = gr.Slider(1, 64, value=16, step=1, label="LoRA rank")
                with gr.Row():
                    paper = gr.Checkbox(value=False, label="The paper's setting (Wan: 25 frames "
                                        "at 368x272, 30 steps, backprop through the last)")
                    step_cache = gr.Number(value=0, minimum=0, maximum=10, label="Step cache "
                                           "threshold (Wan; 0 = off)")
                est_md = gr.Markdown("Pick a model to see what a tune would take.",
                                     label="Estimate")
                tune_btn = gr.Button("Reward-tune, then compare", variant="primary")
                lora = gr.Textbox(value="", label="Tuned LoRA (written by tuning, or from "
                                        "`vcstudio i2v-tune`)")
                gen = gr.Button("Base vs tuned from this LoRA")
                tstatus = gr.Markdown(label="Status")
            with gr.Column():
                curve = gr.LinePlot(x="step", y="value", color="series",
                                    label="VCD per reward step")
                with gr.Row():
                    base_v = gr.Video(label="Base", height=200, autoplay=True, loop=True)
                    tuned_v = gr.Video(label="VCD-tuned", height=200, autoplay=True, loop=True)
                ab_plot = gr.LinePlot(x="frame", y="value", color="series",
                                      label="Per-frame VCD: base vs tuned")
        gr.Markdown("### Evaluate base vs tuned as the paper does\n"
                    "The same image and seeds through both; per video I2V subject / background, "
                    "subject / background consistency, temporal flickering, motion smoothness, "
                    "dynamic degree, VCD and CLIP text alignment; mean and 95% interval over "
                    "the seeds. Consistency is plotted against dynamic degree: a gain bought "
                    "with less motion shows as a tuned point left of its base.")
        ev = _eval_panel()
        models_df = gr.Dataframe(headers=MODEL_HEADERS, visible=False, label="Known models")
        ab = SimpleNamespace(cond=cond, iprompt=iprompt, model=model, backbone=backbone,
                             model_md=model_md, frames=frames, size=size, steps=steps, seed=seed,
                             tune_steps=tune_steps, lr=lr, rank=rank, paper=paper,
                             step_cache=step_cache, est_md=est_md, tune_btn=tune_btn, lora=lora,
                             gen=gen, tstatus=tstatus, curve=curve, base_v=base_v,
                             tuned_v=tuned_v, ab_plot=ab_plot, models_df=models_df)
        _wire_vcd(studio, sid_state, group, vcd)
        _wire_ab(studio, sid_state, group, ab, ev)


def _vcd_panel(studio) -> SimpleNamespace:
    """Score a video's VCD against a conditioning image: the inputs, estimate and plot."""
    with gr.Row():
        with gr.Column():
            video = gr.File(label="Video to score (mp4, webm, mov, avi, gif, or a zip of "
                                  "images)", file_types=VIDEO_TYPES, type="filepath",
                            height=120)
            # image_mode=None: the handler gets the uploaded file itself (a public
            # studio reads only a visitor's own uploads), not a converted copy
            image = gr.Image(label="Conditioning image (optional: default first frame)",
                             type="filepath", height=200, image_mode=None)
            vcd_est = gr.Markdown(vcd_estimate_text(studio, None, None),
                                  elem_id="vcd-estimate", label="Estimate")
            score_btn = gr.Button("Score VCD", variant="primary")
            summary = gr.Markdown(label="Summary")
        plot = gr.LinePlot(x="frame", y="value", color="series", label="Per-frame VCD")
    return SimpleNamespace(video=video, image=image, vcd_est=vcd_est, score_btn=score_btn,
                           summary=summary, plot=plot)


def _eval_panel() -> SimpleNamespace:
    """Evaluate base vs tuned over seeds: the seeds, the table and the scatter plot."""
    with gr.Row():
        with gr.Column(scale=1):
            seeds = gr.Number(value=5, precision=0, minimum=1, maximum=20,
                              label="Seeds (the paper: 5)")
            eval_btn = gr.Button("Evaluate base vs tuned")
            estatus = gr.Markdown(label="Status")
            efiles = gr.File(label="summary.csv, videos.csv, eval.json, videos",
                             file_count="multiple")
        with gr.Column(scale=2):
            escatter = gr.ScatterPlot(x="dynamic_degree", y="consistency", color="series",
                                      tooltip=["image", "series"],
                                      label="Consistency vs dynamic degree, per image")
    etable = gr.Dataframe(label="Mean ± 95% interval (↑ higher / ↓ lower is better)",
                          interactive=False, wrap=True)
    erows = gr.Dataframe(headers=PLOT_HEADERS, label="The plot's points",
                         interactive=False, visible=False)
    return SimpleNamespace(seeds=seeds, eval_btn=eval_btn, estatus=estatus, efiles=efiles,
                           escatter=escatter, etable=etable, erows=erows)

# ----------------------------------------------------------------------------- events
# The named API (API.md): real functions, their parameter names are the API's.


def _wire_vcd(studio, sid_state, group, v: SimpleNamespace) -> None:
    """Score VCD and its estimate (``v``: the VCD panel's widgets)."""
    def score_vcd_api(session: str, video: Optional[str], image: Optional[str] = None,
                      request: gr.Request = None, progress=gr.Progress()):
        """Per-frame VCD of the video against the image (default: its first frame)."""
        yield from score_vcd_stream(studio, session, video, image, request, progress)

    def score_vcd_estimate(session: str, video: Optional[str]) -> str:
        """Time of scoring the video's VCD (never waits for the device)."""
        return vcd_estimate_text(studio, session, video)

    vcd_btn = gr.Button(visible=False)  # the API's /score_vcd_estimate (one public name)
    vcd_btn.click(score_vcd_estimate, [sid_state, v.video], v.vcd_est,
                  api_name="score_vcd_estimate", concurrency_id="preview")
    v.video.change(score_vcd_estimate, [sid_state, v.video], v.vcd_est, api_name=False,
                   concurrency_id="preview", trigger_mode="always_last")
    v.score_btn.click(score_vcd_api, [sid_state, v.video, v.image], [v.plot, v.summary],
                      api_name="score_vcd", concurrency_id=group, concurrency_limit=1,
                      show_progress_on=[v.summary])


def _wire_ab(studio, sid_state, group, w: SimpleNamespace, ev: SimpleNamespace) -> None:
    """Reward-tune, base vs tuned, the evaluation over seeds, the estimate and the known
    models (``w``: the reward panel's widgets, ``ev``: the evaluation panel's)."""
    def i2v(session: str, image: Optional[str], prompt: str, model: str, lora: str,
            frames: float, size: float, steps: float, seed: float, backbone: str,
            step_cache: float, request: gr.Request, progress=gr.Progress()):
        """Base vs LoRA-tuned image-to-video from one image, same seed, VCD-scored."""
        yield from generate_ab_stream(studio, session, image, prompt, model, lora, frames,
                                      size, steps, seed, backbone, step_cache,
                                      request=request, progress=progress)

    def i2v_tune(session: str, image: Optional[str], prompt: str, model: str,
                 frames: float, size: float, steps: float, seed: float,
                 reward_steps: float, lr: float, rank: float, backbone: str,
                 step_cache: float, paper: bool, request: gr.Request,
                 progress=gr.Progress()):
        """VCD reward LoRA tuning, then base vs tuned."""
        yield from reward_tune(studio, session, image, prompt, model, frames, size, steps,
                               seed, reward_steps, lr, rank, backbone, step_cache, paper,
                               request=request, progress=progress)

    def i2v_eval(session: str, image: Optional[str], prompt: str, model: str, lora: str,
                 frames: float, size: float, steps: float, seeds: float, backbone: str,
                 step_cache: float, request: gr.Request, progress=gr.Progress()):
        """Base vs tuned over seeds: the metrics table, consistency vs dynamic degree."""
        yield from evaluate_stream(studio, session, image, prompt, model, lora, frames,
                                   size, steps, seeds, backbone, step_cache,
                                   request=request, progress=progress)

    def i2v_estimate_api(model: str, frames: float, size: float, steps: float,
                         reward_steps: float, backbone: str, paper: bool) -> str:
        """Time and peak memory of a reward step and of the tune (the backbone's figures)."""
        return i2v_estimate(studio, model, frames, size, steps, reward_steps, backbone,
                            paper)

    def i2v_models() -> object:
        """The known image-to-video models, cached or not, with their download sizes."""
        return models_table("i2v")

    ab_inputs = [sid_state, w.cond, w.iprompt, w.model, w.lora, w.frames, w.size, w.steps,
                 w.seed, w.backbone, w.step_cache]
    w.gen.click(i2v, ab_inputs, [w.base_v, w.tuned_v, w.ab_plot, w.tstatus], api_name="i2v",
                concurrency_id=group, concurrency_limit=1, show_progress_on=[w.tstatus],
                validator=validated(i2v, i2v_check(studio), ab_inputs))
    eval_inputs = [sid_state, w.cond, w.iprompt, w.model, w.lora, w.frames, w.size, w.steps,
                   ev.seeds, w.backbone, w.step_cache]
    ev.eval_btn.click(i2v_eval, eval_inputs,
                      [ev.estatus, ev.etable, ev.escatter, ev.efiles, ev.erows],
                      api_name="i2v_eval", concurrency_id=group, concurrency_limit=1,
                      show_progress_on=[ev.estatus],
                      validator=validated(i2v_eval, eval_check(studio), eval_inputs))
    w.model.change(model_info, w.model, w.model_md, api_name=False, show_progress="hidden")
    est_inputs = [w.model, w.frames, w.size, w.steps, w.tune_steps, w.backbone, w.paper]
    est_btn = gr.Button(visible=False)
    est_btn.click(i2v_estimate_api, est_inputs, w.est_md, api_name="i2v_estimate",
                  concurrency_id="preview")
    for c in est_inputs:
        c.change(i2v_estimate_api, est_inputs, w.est_md, api_name=False,
                 concurrency_id="preview", trigger_mode="always_last",
                 show_progress="hidden")
    models_btn = gr.Button(visible=False)
    models_btn.click(i2v_models, None, w.models_df, api_name="i2v_models",
                     concurrency_id="preview")
    reward_inputs = [sid_state, w.cond, w.iprompt, w.model, w.frames, w.size, w.steps, w.seed,
                     w.tune_steps, w.lr, w.rank, w.backbone, w.step_cache, w.paper]
    w.tune_btn.click(i2v_tune, reward_inputs,
                     [w.tstatus, w.curve, w.base_v, w.tuned_v, w.ab_plot, w.lora],
                     api_name="i2v_tune", concurrency_id=group, concurrency_limit=1,
                     show_progress_on=[w.tstatus],
                     validator=validated(i2v_tune, i2v_check(studio, True), reward_inputs))
