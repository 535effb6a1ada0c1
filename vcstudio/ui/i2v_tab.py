"""I2V Consistency tab: score a video's consistency with its conditioning image (VCD), and
generate base vs VCD-tuned videos with an image-to-video model."""
from __future__ import annotations

import torch

from ..errors import InputError
from .common import IMAGE_TYPES, Ticker, ensure_session, gr_error, run_job, series_frame, upload


def score_vcd(studio, sid, video, image):
    """Per-frame VCD of a video against its first frame or a given image."""
    from ..io import read_image, read_video
    from ..methods.vcd import vcd

    sid = ensure_session(studio, sid)
    try:
        frames = read_video(upload(studio, sid, video))
        img = read_image(upload(studio, sid, image, IMAGE_TYPES)) if image else None
        res = vcd(frames, image=img, encoder=_vcd_encoder(studio)[1])
        plot = series_frame({f"VCD ({res.encoder})": list(res.per_frame)}, x="frame")
        return plot, f"Mean VCD {res.mean:.4g} (lower = more consistent), encoder {res.encoder}."
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


def _vcd_encoder(studio) -> tuple[str, object]:
    """(encoder name, encoder): VGG19 as the paper, else the offline stand-in."""
    from ..models.vgg import load_encoder

    try:
        return "vgg19", load_encoder("vgg19", cache=studio.cache)
    except Exception:  # offline: the pretrained EfficientNet-Lite0 shipped in its wheel
        return "efficientnet-lite0", load_encoder("efficientnet-lite0", cache=studio.cache)


def _ab_job(model, img, prompt, lora_path, frames, size, steps, seed, encoder, tune_cfg=None,
            out=None, progress=None, cancel=None):
    """(Reward-tune, then) base vs tuned from one image and seed, both scored with VCD, all
    under the device lock. A fresh model cache: LoRA is injected into the denoiser in place, so
    it must not leak into other jobs' models."""
    from ..methods.vcd import VCD
    from ..models.cache import ModelCache
    from ..pipelines.i2v import build_backbone
    from ..pipelines.i2v_tune import ab_sample, tune_i2v

    bb = build_backbone(model, None, "auto", cache=ModelCache())
    vcd_fn = VCD(encoder) if tune_cfg is None else VCD(encoder, size=tune_cfg.vcd_size,
                                                       num_proj=tune_cfg.vcd_num_proj)
    log = None
    if tune_cfg is not None:
        log = tune_i2v(bb, [img], tune_cfg, prompts=[prompt] if prompt else None, vcd_fn=vcd_fn,
                       progress=progress, cancel=cancel, out=out)
    elif lora_path:
        from ..models.lora import load_lora

        load_lora(lora_path, bb.denoiser)
    size = int(size) or None
    base, tuned = ab_sample(bb, img, int(seed), int(steps), int(frames) or None, size, size,
                            prompt=prompt or None)
    with torch.no_grad():
        scores = vcd_fn(base, img), vcd_fn(tuned, img)
    return log, base, tuned, scores


def _ab_outputs(studio, sid, base, tuned, scores):
    """Write both videos and plot their per-frame VCD against the conditioning image."""
    from ..io import write_mp4

    out = studio.session(sid).outputs
    rb, rt = scores
    plot = series_frame({"base": rb.per_frame.tolist(), "VCD-tuned": rt.per_frame.tolist()},
                        x="frame")
    note = (f"Mean VCD base {float(rb.mean):.4g} → tuned {float(rt.mean):.4g} (lower = more "
            f"consistent; encoder {rb.encoder}).")
    return (str(write_mp4(base, out / "i2v-base.mp4")), str(write_mp4(tuned, out / "i2v-tuned.mp4")),
            plot, note)


def generate_ab(studio, sid, image, prompt, model, lora, frames, size, steps, seed):
    """Base vs tuned (a LoRA from `vcstudio i2v-tune`) videos from one image, same seed."""
    sid = ensure_session(studio, sid)
    try:
        model = _check_request(studio, model, frames, size)
        if not lora:
            raise InputError("Give a tuned LoRA file, or use Reward-tune below to make one.")
        from ..io import read_image

        img = read_image(upload(studio, sid, image, IMAGE_TYPES))
        lora_path = studio.safe_path(sid, lora, must_exist=True)
        res = None
        for item in run_job(studio, sid, "i2v", _ab_job, model, img, prompt, lora_path, frames,
                            size, steps, seed, _vcd_encoder(studio)[1]):
            if isinstance(item, tuple) and item[0] == "result":
                res = item[1]
        return _ab_outputs(studio, sid, *res[1:])
    except Exception as e:
        raise gr_error(e)


def reward_tune(studio, sid, image, prompt, model, frames, size, steps, seed, tune_steps, lr,
                rank):
    """Generator: VCD reward tuning (seed 002 eq. 3) on one image with its curves streamed,
    then base vs tuned with the same seed."""
    from ..pipelines.i2v_tune import I2VTuneConfig

    sid = ensure_session(studio, sid)
    try:
        model = _check_request(studio, model, frames, size)
        from ..io import read_image

        img = read_image(upload(studio, sid, image, IMAGE_TYPES))
        enc_name, enc = _vcd_encoder(studio)
        size = int(size) or None
        cfg = I2VTuneConfig(steps=int(tune_steps), lr=float(lr), lora_rank=int(rank),
                            num_frames=int(frames) or None, height=size, width=size,
                            inference_steps=int(steps), encoder=enc_name, seed=int(seed),
                            eval_every=max(1, int(tune_steps) // 5))
        out = studio.session(sid).outputs / "i2v-tune"
        out.mkdir(parents=True, exist_ok=True)
        curves: dict[str, list] = {}
        res, tick = None, Ticker()
        for item in run_job(studio, sid, "i2v", _ab_job, model, img, prompt, None, frames,
                            size or 0, steps, seed, enc, tune_cfg=cfg, out=out):
            if isinstance(item, tuple):
                res = item[1] if item[0] == "result" else res
                continue
            for k, v in item.metrics.items():
                curves.setdefault(k, []).append(v)
            if tick.due(item):
                yield (f"{item.message}", series_frame({"VCD (reward step)": curves.get("vcd", [])}),
                       None, None, None, None)
        log, base, tuned, scores = res
        vb, vt, plot, note = _ab_outputs(studio, sid, base, tuned, scores)
        warn = (" ⚠ " + log.warnings[-1]) if log.warnings else ""
        probes = "; ".join(f"step {p['step']}: VCD {p['vcd']:.3g}, fidelity {p['fidelity']:.3g}, "
                           f"motion {p['motion']:.3g}px" for p in log.probe)
        yield (f"Tuned {len(log.step)} steps in {log.seconds:.0f} s. {note}{warn}\n\n"
               f"Probe sample — {probes}", series_frame({"VCD (reward step)": log.vcd}),
               vb, vt, plot, str(out / "lora.safetensors"))
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
