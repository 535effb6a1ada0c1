"""Long Video tab: prompt timeline or story -> scene graph, window layout picture, generation."""
from __future__ import annotations

import importlib

from ..errors import InputError
from .common import ensure_session, gr_error, run_job


def plan(story: str, prompts: str, frames: int, window: int, stride: int, fusion: str):
    """-> (scene graph JSON, segments table, layout picture). Pure and fast: no model."""
    from ..pipelines.windows import layout_image, layout_table, make_layout
    from ..scene import parse_story, story_segments
    from ..scene.segments import even_segments

    try:
        frames, window, stride = int(frames), int(window), int(stride)
        if window > frames:
            raise InputError(f"The window ({window}) is longer than the video ({frames}).")
        if stride > window:
            raise InputError(f"The stride ({stride}) must not exceed the window ({window}).")
        graph = None
        if story and story.strip():
            graph = parse_story(story).to_dict()
            segs = story_segments(story, frames)
        else:
            lines = [p.strip() for p in (prompts or "").splitlines() if p.strip()]
            if not lines:
                raise InputError("Write a story, or one prompt per line.")
            segs = even_segments(lines, frames)
        layout = make_layout(frames, window, stride, fusion)
        rows = [[s.prompt, s.start, s.end - 1] for s in segs]
        table = layout_table(layout, segs)
        return graph, rows, layout_image(layout, segs), table
    except Exception as e:
        raise gr_error(e)


def generate(studio, sid, run_dir, story, prompts, frames, window, stride, fusion, steps, seed):
    sid = ensure_session(studio, sid)
    try:
        if not run_dir:
            raise InputError("Tune a clip in the Edit-from-Video tab first: long videos are "
                             "generated from a tuned run.")
        try:
            lv = importlib.import_module("vcstudio.pipelines.longvideo")
        except ImportError:
            raise InputError("Long-video generation is not installed in this build.") from None
        run = studio.safe_path(sid, run_dir, must_exist=True)
        from ..config import LongConfig  # lands with the long-video pipeline

        segs_prompts = [p.strip() for p in (prompts or "").splitlines() if p.strip()]
        cfg = LongConfig(prompts=segs_prompts, story=story or "", frames=int(frames),
                         window=int(window), stride=int(stride), fusion=fusion,
                         steps=int(steps), seed=int(seed))
        res = None
        for item in run_job(studio, sid, "long", lv.long_video, run, cfg, cache=studio.cache):
            if isinstance(item, tuple):
                res = item[1] if item[0] == "result" else res
                continue
            yield None, f"{item.stage}: {item.step}/{item.total}"
        yield str(res.mp4), "Done."
    except Exception as e:
        raise gr_error(e)


def build(studio, sid_state, edit_refs):
    import gradio as gr

    with gr.Tab("Long Video"):
        gr.Markdown("Longer than the tuned clip, a prompt per segment: overlapping windows are "
                    "denoised together and blended, so segments join without seams. Tune a "
                    "clip in the first tab, then plan and generate here.")
        with gr.Row():
            with gr.Column():
                story = gr.Textbox(label="Story (parsed into timed segments)", lines=2,
                                   placeholder="a red circle moves right on the beach, then a "
                                               "blue square moves left on the snow")
                prompts = gr.Textbox(label="…or one prompt per segment (one per line)", lines=3)
                with gr.Row():
                    frames = gr.Slider(8, 240, value=32, step=1, label="Frames")
                    window = gr.Slider(2, 32, value=8, step=1, label="Window K")
                    stride = gr.Slider(1, 32, value=4, step=1, label="Stride S")
                fusion = gr.Radio(["uniform", "pyramid", "gaussian"], value="pyramid",
                                  label="Blend weights")
                with gr.Row():
                    steps = gr.Slider(5, 100, value=30, step=1, label="Sampling steps")
                    seed = gr.Number(value=33, precision=0, label="Seed")
                plan_btn = gr.Button("Plan")
                gen_btn = gr.Button("Generate long video", variant="primary")
                status = gr.Markdown()
            with gr.Column():
                layout = gr.Image(label="Windows (rows) over frames, and per-frame weights",
                                  interactive=False)
                segs = gr.Dataframe(headers=["prompt", "first frame", "last frame"],
                                    label="Timeline", interactive=False)
                graph = gr.JSON(label="Scene graph")
                video = gr.Video(label="Long video", height=240)
        windows = gr.JSON(label="Windows and their prompts")
        plan_btn.click(lambda *a: plan(*a), [story, prompts, frames, window, stride, fusion],
                       [graph, segs, layout, windows], api_name="plan")
        gen_btn.click(lambda *a: (yield from generate(studio, *a)),
                      [sid_state, edit_refs["run_dir"], story, prompts, frames, window, stride,
                       fusion, steps, seed], [video, status])
