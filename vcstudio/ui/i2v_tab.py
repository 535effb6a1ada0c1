"""I2V Consistency tab: score a video's consistency with its conditioning image (VCD), and
generate base vs VCD-tuned videos with an image-to-video model.

Widgets and formatting only: Score VCD submits the eval job, the A/B the i2v_ab job, reward
tuning the i2v_tune job (vcstudio/jobs)."""
from __future__ import annotations

from typing import Optional

import gradio as gr

from ..errors import InputError
from .common import (IMAGE_TYPES, NO_CLIP, VIDEO_TYPES, Ticker, about, as_float, as_int,
                     device_group, ensure_session, estimate_device, event_status, gr_error,
                     gr_update, job_validator, run_job, series_frame, served, upload,
                     validated)


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


def i2v_estimate_text(studio, model, lora, frames, size, steps, seed, tune_steps) -> str:
    """The I2V panel's lines: the A/B from a LoRA (two videos + their VCD) and the reward tune
    (jobs/i2v_ab.py, jobs/i2v_tune.py ``estimate``: from an earlier run's measured steps)."""
    from ..jobs import i2v_ab, i2v_tune

    if not model:
        return "Give an image-to-video model to see what it takes."
    try:
        dev = estimate_device(studio)
        ab = ab_config(model.strip(), "", "", lora or "x", frames, size, steps, seed)
        rt = reward_config(model.strip(), "", "", frames, size, steps, seed, tune_steps, 2e-4,
                           16)
        a = i2v_ab.estimate_line(i2v_ab.estimate(ab, dev, calibration_dir=studio.data_dir), dev)
        b = i2v_tune.estimate_line(i2v_tune.estimate(rt, dev, calibration_dir=studio.data_dir),
                                   dev)
    except Exception as e:  # an estimate must never block the page
        return f"(no estimate: {e})"
    return f"Base vs tuned — {a}\n\nReward-tune — {b}"


def _check_request(studio, model: str, frames, size) -> str:
    """The model (a hub id, or a folder on a desktop studio) and frames/size within limits."""
    if not model:
        raise InputError("Give an image-to-video model: a Hub id such as "
                         "stabilityai/stable-video-diffusion-img2vid or Lightricks/LTX-Video, "
                         "or a local folder. None ships offline.")
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


def ab_config(model, img, prompt, lora, frames, size, steps, seed):
    """The i2v_ab job's config from the tab's inputs (model and files already resolved)."""
    from ..jobs.i2v_ab import I2VABConfig

    return I2VABConfig(model=model, image=str(img), prompt=prompt or "", lora=str(lora),
                       ab=True, frames=as_int("Frames", frames), size=as_int("Size", size),
                       steps=as_int("Sampling steps", steps), seed=as_int("Seed", seed),
                       name="i2v-tuned.mp4")


def reward_config(model, img, prompt, frames, size, steps, seed, tune_steps, lr, rank):
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
                           eval_every=max(1, tune_steps // 5)))


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
                                 lr, rank)
        return ab_config(model, img, prompt, lora, frames, size, steps, seed)
    return job_validator(studio, "i2v_tune" if tune else "i2v_ab", build)


def generate_ab_stream(studio, sid, image, prompt, model, lora, frames, size, steps, seed,
                       request=None, progress=None):
    """Generator: base vs tuned (a LoRA from `vcstudio i2v-tune` or the tuning below) videos
    from one image, same seed."""
    sid = ensure_session(studio, sid)
    try:
        model = _check_request(studio, model, frames, size)
        if not lora:
            raise InputError(NO_LORA)
        img = upload(studio, sid, image, IMAGE_TYPES)
        lora_path = studio.safe_path(sid, lora, must_exist=True)
        cfg = ab_config(model, img, prompt, lora_path, frames, size, steps, seed)
        res = yield from _stream(run_job(studio, sid, "i2v_ab", cfg, request, progress), 4, 3)
        yield _ab_outputs(studio, res.base_video, res.video, res.scores)
    except Exception as e:
        raise gr_error(e)


def generate_ab(studio, sid, image, prompt, model, lora, frames, size, steps, seed):
    """Base vs tuned videos (the last of :func:`generate_ab_stream`)."""
    out = None
    for out in generate_ab_stream(studio, sid, image, prompt, model, lora, frames, size, steps,
                                  seed):
        pass
    return out


def reward_tune(studio, sid, image, prompt, model, frames, size, steps, seed, tune_steps, lr,
                rank, request=None, progress=None):
    """Generator: VCD reward tuning (VCD paper, eq. 3) on one image with its curves streamed,
    then base vs tuned with the same seed."""
    sid = ensure_session(studio, sid)
    try:
        model = _check_request(studio, model, frames, size)
        img = upload(studio, sid, image, IMAGE_TYPES)
        cfg = reward_config(model, img, prompt, frames, size, steps, seed, tune_steps, lr, rank)
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
        probes = "; ".join(f"step {p['step']}: VCD {p['vcd']:.3g}, fidelity {p['fidelity']:.3g}, "
                           f"motion {p['motion']:.3g}px" for p in log.probe)
        yield (f"Tuned {len(log.step)} steps in {log.seconds:.0f} s. {note}{warn}\n\n"
               f"Probe sample — {probes}", series_frame({"VCD (reward step)": log.vcd}),
               vb, vt, plot, str(res.lora))
    except Exception as e:
        raise gr_error(e)


def build(studio, sid_state, edit_refs):
    group = device_group(studio)
    with gr.Tab("I2V Consistency", elem_id="i2v-tab"):
        gr.Markdown("**Video Consistency Distance** compares each frame's VGG-feature frequency "
                    "spectrum with the conditioning image (lower is more consistent; later "
                    "frames weigh less). Offline, a pretrained EfficientNet-Lite0 stands in "
                    "for VGG19 and the score says so.")
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
        gr.Markdown("### Reward-tune an image-to-video model with VCD (VCD paper, eq. 3)\n"
                    "LoRA on the denoiser's attention, truncated backprop through the last "
                    "denoising step, VCD as the loss. Then base and tuned play side by side from "
                    "the same seed. Needs an I2V model (none ships offline).")
        with gr.Row():
            with gr.Column():
                cond = gr.Image(label="Conditioning image", type="filepath", height=200,
                                image_mode=None)
                iprompt = gr.Textbox(
                    value="", label="Prompt (LTX-Video reads it; SVD uses the image only)")
                model = gr.Textbox(value="", label="I2V model (Hub id or folder)")
                with gr.Row():
                    frames = gr.Number(value=0, precision=0, label="Frames (0 = model's own)")
                    size = gr.Number(value=0, precision=0, label="Size (0 = model's own)")
                    steps = gr.Slider(2, 50, value=25, step=1, label="Sampling steps")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                with gr.Row():
                    tune_steps = gr.Slider(1, 500, value=50, step=1, label="Reward steps")
                    lr = gr.Number(value=2e-4, label="Learning rate (paper: 2e-4)")
                    rank = gr.Slider(1, 64, value=16, step=1, label="LoRA rank")
                i2v_est = gr.Markdown(i2v_estimate_text(studio, "", "", 0, 0, 25, 0, 50),
                                      elem_id="i2v-estimate", label="Estimate")
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
        # -- the named API (API.md)
        def score_vcd_api(session: str, video: Optional[str], image: Optional[str],
                          request: gr.Request, progress=gr.Progress()):
            """Per-frame VCD of the video against the image (default: its first frame)."""
            yield from score_vcd_stream(studio, session, video, image, request, progress)

        def i2v(session: str, image: Optional[str], prompt: str, model: str, lora: str,
                frames: float, size: float, steps: float, seed: float, request: gr.Request,
                progress=gr.Progress()):
            """Base vs LoRA-tuned image-to-video from one image, same seed, VCD-scored."""
            yield from generate_ab_stream(studio, session, image, prompt, model, lora, frames,
                                          size, steps, seed, request, progress)

        def i2v_tune(session: str, image: Optional[str], prompt: str, model: str,
                     frames: float, size: float, steps: float, seed: float,
                     reward_steps: float, lr: float, rank: float, request: gr.Request,
                     progress=gr.Progress()):
            """VCD reward LoRA tuning, then base vs tuned."""
            yield from reward_tune(studio, session, image, prompt, model, frames, size, steps,
                                   seed, reward_steps, lr, rank, request, progress)

        def score_vcd_estimate(session: str, video: Optional[str]) -> str:
            """Time of scoring the video's VCD (never waits for the device)."""
            return vcd_estimate_text(studio, session, video)

        def i2v_estimate(model: str, lora: str, frames: float, size: float, steps: float,
                         seed: float, reward_steps: float) -> str:
            """Time of the A/B and of the reward tune with these settings (from an earlier
            run's measured steps; never waits for the device)."""
            return i2v_estimate_text(studio, model, lora, frames, size, steps, seed,
                                     reward_steps)

        vcd_btn = gr.Button(visible=False)  # the API's /score_vcd_estimate (one public name)
        vcd_btn.click(score_vcd_estimate, [sid_state, video], vcd_est,
                      api_name="score_vcd_estimate", concurrency_id="preview")
        video.change(score_vcd_estimate, [sid_state, video], vcd_est, api_name=False,
                     concurrency_id="preview", trigger_mode="always_last")
        i2v_inputs = [model, lora, frames, size, steps, seed, tune_steps]
        i2v_btn = gr.Button(visible=False)  # the API's /i2v_estimate (one public name)
        i2v_btn.click(i2v_estimate, i2v_inputs, i2v_est, api_name="i2v_estimate",
                      concurrency_id="preview")
        for c in i2v_inputs:
            c.change(i2v_estimate, i2v_inputs, i2v_est, api_name=False,
                     concurrency_id="preview", trigger_mode="always_last")
        score_btn.click(score_vcd_api, [sid_state, video, image], [plot, summary],
                        api_name="score_vcd", concurrency_id=group, concurrency_limit=1)
        ab_inputs = [sid_state, cond, iprompt, model, lora, frames, size, steps, seed]
        gen.click(i2v, ab_inputs, [base_v, tuned_v, ab_plot, tstatus], api_name="i2v",
                  concurrency_id=group, concurrency_limit=1,
                  validator=validated(i2v, i2v_check(studio), ab_inputs))
        reward_inputs = [sid_state, cond, iprompt, model, frames, size, steps, seed,
                         tune_steps, lr, rank]
        tune_btn.click(i2v_tune, reward_inputs, [tstatus, curve, base_v, tuned_v, ab_plot, lora],
                       api_name="i2v_tune", concurrency_id=group, concurrency_limit=1,
                       validator=validated(i2v_tune, i2v_check(studio, True), reward_inputs))
