"""I2V Consistency tab: score a video's consistency with its conditioning image (VCD), and
generate base vs VCD-tuned videos with an image-to-video model."""
from __future__ import annotations


from ..errors import InputError
from .common import IMAGE_TYPES, ensure_session, gr_error, series_frame, upload


def score_vcd(studio, sid, video, image):
    """Per-frame VCD of a video against its first frame or a given image."""
    from ..io import read_image, read_video
    from ..methods.vcd import vcd
    from ..models.vgg import load_encoder

    sid = ensure_session(studio, sid)
    try:
        frames = read_video(upload(studio, sid, video))
        img = read_image(upload(studio, sid, image, IMAGE_TYPES)) if image else None
        try:
            enc = load_encoder("vgg19", cache=studio.cache)
        except Exception:  # offline: the pretrained EfficientNet-Lite0 shipped in its wheel
            enc = load_encoder("efficientnet-lite0", cache=studio.cache)
        res = vcd(frames, image=img, encoder=enc)
        plot = series_frame({f"VCD ({res.encoder})": list(res.per_frame)}, x="frame")
        return plot, f"Mean VCD {res.mean:.4g} (lower = more consistent), encoder {res.encoder}."
    except Exception as e:
        raise gr_error(e)


def generate_ab(studio, sid, image, model, lora, frames, steps, seed):
    """Base vs tuned (LoRA) videos from one image, same seed."""
    sid = ensure_session(studio, sid)
    try:
        if not model:
            raise InputError("Give an image-to-video model: a Hub id such as "
                             "stabilityai/stable-video-diffusion-img2vid or a local folder. "
                             "None ships offline.")
        from ..io import read_image, write_mp4
        from ..pipelines.i2v import build_backbone, sample_i2v
        from ..pipelines.i2v_tune import ab_sample

        img = read_image(upload(studio, sid, image, IMAGE_TYPES))
        bb = build_backbone(model, None, "auto")
        out = studio.session(sid).outputs
        if lora:
            from ..models.lora import load_lora

            load_lora(bb.denoiser, studio.safe_path(sid, lora, must_exist=True))
            base, tuned = ab_sample(bb, img, int(seed), int(steps))
            return (str(write_mp4(base, out / "i2v-base.mp4")),
                    str(write_mp4(tuned, out / "i2v-tuned.mp4")))
        vid = sample_i2v(bb, img, int(frames), img.shape[0] // 8 * 8, img.shape[1] // 8 * 8,
                         int(steps), int(seed))
        return str(write_mp4(vid, out / "i2v-base.mp4")), None
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
        with gr.Accordion("Generate base vs VCD-tuned (needs an image-to-video model)",
                          open=False):
            with gr.Row():
                model = gr.Textbox(label="I2V model (Hub id or folder)")
                lora = gr.Textbox(label="Tuned LoRA (from `vcstudio i2v-tune`), optional")
            with gr.Row():
                frames = gr.Slider(2, 25, value=14, step=1, label="Frames")
                steps = gr.Slider(2, 50, value=25, step=1, label="Steps")
                seed = gr.Number(value=0, precision=0, label="Seed")
            gen = gr.Button("Generate")
            with gr.Row():
                base_v = gr.Video(label="Base")
                tuned_v = gr.Video(label="VCD-tuned")
        score_btn.click(lambda *a: score_vcd(studio, *a), [sid_state, video, image],
                        [plot, summary])
        gen.click(lambda *a: generate_ab(studio, *a),
                  [sid_state, image, model, lora, frames, steps, seed], [base_v, tuned_v])
