"""I2V Consistency tab: score a video's consistency with its conditioning image (VCD), and
generate base vs VCD-tuned videos with an image-to-video model.

Widgets and formatting only: Score VCD submits the eval job, the A/B the i2v_ab job, reward
tuning the i2v_tune job (vcstudio/jobs)."""
from __future__ import annotations

from ..errors import InputError
from .common import IMAGE_TYPES, Ticker, ensure_session, gr_error, run_job, series_frame, upload


def _result(items):
    res = None
    for item in items:
        if isinstance(item, tuple) and item[0] == "result":
            res = item[1]
    return res


def score_vcd(studio, sid, video, image):
    """Per-frame VCD of a video against its first frame or a given image."""
    from ..jobs.eval import EvalConfig

    sid = ensure_session(studio, sid)
    try:
        path = upload(studio, sid, video)
        img = upload(studio, sid, image, IMAGE_TYPES) if image else None
        cfg = EvalConfig(video=str(path), what="vcd", image=str(img) if img else "")
        res = _result(run_job(studio, sid, "eval", cfg)).vcd
        plot = series_frame({f"VCD ({res.encoder})": [float(v) for v in res.per_frame]},
                            x="frame")
        return plot, (f"Mean VCD {float(res.mean):.4g} (lower = more consistent), encoder "
                      f"{res.encoder}.")
    except Exception as e:
        raise gr_error(e)


def _check_request(studio, model: str, frames, size) -> str:
    """The model (a hub id, or a folder on a desktop studio) and frames/size within limits."""
    if not model:
        raise InputError("Give an image-to-video model: a Hub id such as "
                         "stabilityai/stable-video-diffusion-img2vid or Lightricks/LTX-Video, "
                         "or a local folder. None ships offline.")
    lim = studio.limits
    if int(frames) > lim.max_frames or int(size) > lim.max_side:
        raise InputError(f"At most {lim.max_frames} frames and {lim.max_side} px here "
                         "(0 = the model's own).")
    return studio.server_path("I2V model", model.strip())


def _ab_outputs(base_video, tuned_video, scores):
    """Both videos and the plot of their per-frame VCD against the conditioning image."""
    rb, rt = scores
    plot = series_frame({"base": [float(v) for v in rb.per_frame],
                         "VCD-tuned": [float(v) for v in rt.per_frame]}, x="frame")
    note = (f"Mean VCD base {float(rb.mean):.4g} → tuned {float(rt.mean):.4g} (lower = more "
            f"consistent; encoder {rb.encoder}).")
    return str(base_video), str(tuned_video), plot, note


def generate_ab(studio, sid, image, prompt, model, lora, frames, size, steps, seed):
    """Base vs tuned (a LoRA from `vcstudio i2v-tune` or the tuning below) videos from one
    image, same seed."""
    from ..jobs.i2v_ab import I2VABConfig

    sid = ensure_session(studio, sid)
    try:
        model = _check_request(studio, model, frames, size)
        if not lora:
            raise InputError("Give a tuned LoRA file, or use Reward-tune below to make one.")
        img = upload(studio, sid, image, IMAGE_TYPES)
        lora_path = studio.safe_path(sid, lora, must_exist=True)
        cfg = I2VABConfig(model=model, image=str(img), prompt=prompt or "", lora=str(lora_path),
                          ab=True, frames=int(frames), size=int(size), steps=int(steps),
                          seed=int(seed), name="i2v-tuned.mp4")
        res = _result(run_job(studio, sid, "i2v_ab", cfg))
        return _ab_outputs(res.base_video, res.video, res.scores)
    except Exception as e:
        raise gr_error(e)


def reward_tune(studio, sid, image, prompt, model, frames, size, steps, seed, tune_steps, lr,
                rank):
    """Generator: VCD reward tuning (seed 002 eq. 3) on one image with its curves streamed,
    then base vs tuned with the same seed."""
    from ..jobs.i2v_tune import I2VTuneConfig, I2VTuneJobConfig

    sid = ensure_session(studio, sid)
    try:
        model = _check_request(studio, model, frames, size)
        img = upload(studio, sid, image, IMAGE_TYPES)
        size = int(size) or None
        cfg = I2VTuneJobConfig(
            model=model, images=[str(img)], prompts=[prompt] if prompt else [],
            tune=I2VTuneConfig(steps=int(tune_steps), lr=float(lr), lora_rank=int(rank),
                               num_frames=int(frames) or None, height=size, width=size,
                               inference_steps=int(steps), encoder="auto", seed=int(seed),
                               eval_every=max(1, int(tune_steps) // 5)))
        curves: dict[str, list] = {}
        res, tick = None, Ticker()
        for item in run_job(studio, sid, "i2v_tune", cfg):
            if isinstance(item, tuple):
                res = item[1] if item[0] == "result" else res
                continue
            for k, v in item.metrics.items():
                curves.setdefault(k, []).append(v)
            if tick.due(item):
                yield (f"{item.message}", series_frame({"VCD (reward step)": curves.get("vcd", [])}),
                       None, None, None, None)
        log = res.log
        vb, vt, plot, note = _ab_outputs(res.base_video, res.tuned_video, res.scores)
        warn = (" ⚠ " + log.warnings[-1]) if log.warnings else ""
        probes = "; ".join(f"step {p['step']}: VCD {p['vcd']:.3g}, fidelity {p['fidelity']:.3g}, "
                           f"motion {p['motion']:.3g}px" for p in log.probe)
        yield (f"Tuned {len(log.step)} steps in {log.seconds:.0f} s. {note}{warn}\n\n"
               f"Probe sample — {probes}", series_frame({"VCD (reward step)": log.vcd}),
               vb, vt, plot, str(res.lora))
    except Exception as e:
        raise gr_error(e)


def build(studio, sid_state, edit_refs):
    import gradio as gr

    with gr.Tab("I2V Consistency"):
        gr.Markdown("**Video Consistency Distance** compares each frame's VGG-feature frequency "
                    "spectrum with the conditioning image (lower is more consistent; later "
                    "frames weigh less). Offline, a pretrained EfficientNet-Lite0 stands in "
                    "for VGG19 and the score says so.")
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Video to score", sources=["upload"], height=200)
                image = gr.Image(label="Conditioning image (optional: default first frame)",
                                 type="filepath", height=200)
                score_btn = gr.Button("Score VCD", variant="primary")
                summary = gr.Markdown()
            plot = gr.LinePlot(x="frame", y="value", color="series", label="Per-frame VCD",
                               height=260)
        gr.Markdown("### Reward-tune an image-to-video model with VCD (seed 002, eq. 3)\n"
                    "LoRA on the denoiser's attention, truncated backprop through the last "
                    "denoising step, VCD as the loss. Then base and tuned play side by side from "
                    "the same seed. Needs an I2V model (none ships offline).")
        with gr.Row():
            with gr.Column():
                cond = gr.Image(label="Conditioning image", type="filepath", height=200)
                iprompt = gr.Textbox(label="Prompt (LTX-Video reads it; SVD uses the image only)")
                model = gr.Textbox(label="I2V model (Hub id or folder)")
                with gr.Row():
                    frames = gr.Number(value=0, precision=0, label="Frames (0 = model's own)")
                    size = gr.Number(value=0, precision=0, label="Size (0 = model's own)")
                    steps = gr.Slider(2, 50, value=25, step=1, label="Sampling steps")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                with gr.Row():
                    tune_steps = gr.Slider(1, 500, value=50, step=1, label="Reward steps")
                    lr = gr.Number(value=2e-4, label="Learning rate (paper: 2e-4)")
                    rank = gr.Slider(1, 64, value=16, step=1, label="LoRA rank")
                tune_btn = gr.Button("Reward-tune, then compare", variant="primary")
                lora = gr.Textbox(label="Tuned LoRA (written by tuning, or from "
                                        "`vcstudio i2v-tune`)")
                gen = gr.Button("Base vs tuned from this LoRA")
                tstatus = gr.Markdown()
            with gr.Column():
                curve = gr.LinePlot(x="step", y="value", color="series",
                                    label="VCD per reward step", height=200)
                with gr.Row():
                    base_v = gr.Video(label="Base", height=200, autoplay=True, loop=True)
                    tuned_v = gr.Video(label="VCD-tuned", height=200, autoplay=True, loop=True)
                ab_plot = gr.LinePlot(x="frame", y="value", color="series",
                                      label="Per-frame VCD: base vs tuned", height=200)
        score_btn.click(lambda *a: score_vcd(studio, *a), [sid_state, video, image],
                        [plot, summary])
        gen.click(lambda *a: generate_ab(studio, *a),
                  [sid_state, cond, iprompt, model, lora, frames, size, steps, seed],
                  [base_v, tuned_v, ab_plot, tstatus], api_name="i2v_ab")
        tune_btn.click(lambda *a: (yield from reward_tune(studio, *a)),
                       [sid_state, cond, iprompt, model, frames, size, steps, seed, tune_steps,
                        lr, rank], [tstatus, curve, base_v, tuned_v, ab_plot, lora],
                       api_name="i2v_tune")
