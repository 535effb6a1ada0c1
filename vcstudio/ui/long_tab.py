"""Long Video tab: prompt timeline or story -> scene graph, window layout picture, generation.

Widgets and formatting only: Plan shows the long job's model-free plan, Preview masks and
Generate submit the long job (vcstudio/jobs/long.py)."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

import gradio as gr

from ..config import LongConfig, MaskConfig
from ..errors import InputError
from . import model_picker
from .settings_widgets import number, radio, slider
from .common import (Ticker, about, as_int, demo_tier, device_group, ensure_session,
                     estimate_device, event_status, frame_strip, gr_error, gr_update,
                     job_validator, run_job, served, validated)


def plan(story: str, prompts: str, frames: int, window: int, stride: int, fusion: str,
         temporal: int = 1):
    """-> (scene graph JSON, segments table, plan picture, window table). Pure and fast. The
    picture: the timeline figure (ui/figures.plan_timeline) as an image. ``temporal``: frames
    per latent frame of the model that will run it (Wan2.1: 4, whose windows are laid out in
    latent frames; the table then says which video frames each covers)."""
    from ..jobs.long import plan as long_plan
    from .figures import figure_image, plan_timeline

    try:
        p = long_plan(story, (prompts or "").splitlines(), as_int("Frames", frames),
                      as_int("Window K", window), as_int("Stride S", stride), fusion,
                      temporal=temporal)
        rows = [[s.prompt, s.start, s.end - 1] for s in p["segments"]]
        t = p["grid"].temporal  # the figure in the units the windows are laid out in
        units = dict(unit="latent frame", note=f"{t} video frames each after the first") \
            if t > 1 else {}
        image = figure_image(plan_timeline(p["layout"], p["latent_segments"], p["prompts"],
                                           **units))
        return p["graph"], rows, image, p["table"]
    except Exception as e:
        raise gr_error(e)


def plan_temporal(studio, sid: str, run_dir: str, pick: str) -> int:
    """Frames per latent frame of the model a long video would run on: the session's tuned run
    (its meta.json; the same rule as the job, jobs/long.family), else the picked base model.
    Reads only what the job would read (studio.safe_path: the visitor's own runs; the picker's
    public-studio gate, model_picker.job_model); anything unreadable plans in video frames."""
    from ..jobs.long import LongJobConfig, family
    from ..models.family import rules

    try:
        run = str(studio.safe_path(sid, run_dir, must_exist=True)) if sid and run_dir else ""
        model = model_picker.run_model(studio, pick) if run else model_picker.job_model(studio,
                                                                                        pick)
        return rules(family(LongJobConfig(run, model=model))).temporal
    except Exception:  # the plan never fails on the model; the job says what is wrong
        return 1


def long_config(story, prompts, frames, window, stride, fusion, steps, seed, use_masks=False,
                mask_method="grabcut", sam_checkpoint="", candidates=5, tune_steps=0):
    """The UI's controls -> LongConfig (masks: SAM, or GrabCut labelled as the fallback)."""
    from ..config import MaskConfig

    lines = [p.strip() for p in (prompts or "").splitlines() if p.strip()]
    if mask_method not in ("sam", "grabcut"):
        raise InputError(f"Masks by must be sam or grabcut, got {mask_method!r}.")
    mask = MaskConfig(method=mask_method, fallback=True,
                      sam_checkpoint=sam_checkpoint or "",
                      n_candidates=as_int("Candidates n", candidates),
                      tune_steps=as_int("Combined tuning steps", tune_steps))
    return LongConfig(prompts=lines, story=story or "", frames=as_int("Frames", frames),
                      window=as_int("Window K", window), stride=as_int("Stride S", stride),
                      fusion=fusion, steps=as_int("Sampling steps", steps),
                      seed=as_int("Seed", seed), masks=bool(use_masks), mask=mask)


NO_RUN = ("Tune a clip in the Edit-from-Video tab first: long videos are generated from a "
          "tuned run.")


def _run(studio, sid, run_dir):
    if not run_dir:
        raise InputError(NO_RUN)
    return studio.safe_path(sid, run_dir, must_exist=True)


def long_estimate_text(studio, sid, run_dir, frames, window, stride, fusion, steps,
                       use_masks=False, mask_method="grabcut", candidates=5,
                       tune_steps=0) -> str:
    """The Long tab's ``Estimate: ...`` line (jobs/long.py ``estimate``: windows x steps x
    passes, the mask stage, the decode, from the tuned run's measured speed); never waits for
    the device, never fails the page."""
    from ..jobs.long import LongJobConfig, estimate, estimate_line

    if not run_dir or not sid:
        return "Tune a clip first: the estimate reads the speed its tune measured."
    try:
        run = studio.safe_path(sid, run_dir, must_exist=True)
        cfg = long_config("", "estimate", frames, window, stride, fusion, steps, 0, use_masks,
                          mask_method, "", candidates, tune_steps)
        dev = estimate_device(studio)
        est = estimate(LongJobConfig(str(run), cfg), dev, calibration_dir=studio.data_dir)
    except Exception as e:  # an estimate must never block the page
        return f"(no estimate: {e})"
    return estimate_line(est, dev)


def long_check(studio, masks_only: bool = False):
    """The Long and Mask-preview events' validator (common.job_validator): the run named,
    the prompts, the frame/window/stride plan and every setting's range, answered before the
    event waits for the device (the run folder and the Structure panel: the handler)."""
    from ..jobs.long import LongJobConfig

    def build(sid, run_dir, story, prompts, frames, window, stride, fusion, steps, seed, *rest):
        if not run_dir:
            raise about("run_dir", NO_RUN)
        *rest, model = rest  # the picker is the event's last input
        if masks_only:
            mask_method, sam, candidates = rest[:3]
            use_masks, tune_steps = True, 0
        else:
            use_masks, mask_method, sam, candidates, tune_steps = rest[:5]
        cfg = long_config(story, prompts, frames, window, stride, fusion, steps, seed,
                          use_masks, mask_method, studio.server_path("SAM checkpoint", sam),
                          candidates, tune_steps)
        if not masks_only and len(rest) > 5:
            from .structure import check_structure

            cfg.control = check_structure(rest[5])  # a condition without a model: refused now
        return LongJobConfig(str(run_dir), cfg, masks_only=masks_only,
                             model=model_picker.run_model(studio, model))
    return job_validator(studio, "long", build)


def mask_gallery(candidates, candidate_masks, fused, masks) -> list:
    """Gallery items: each candidate's x0 at step k with its background dimmed, then the fused
    clip r' (eq. 11-12) the same way."""
    from ..jobs.long import dim_background

    def dim(frames, m):
        return frame_strip(dim_background(frames, m), 8)

    items = [(dim(c, m), f"candidate {i + 1}: x0 at step k, background dimmed")
             for i, (c, m) in enumerate(zip(candidates, candidate_masks))]
    return items + [(dim(fused, masks), "fused clip r' (eq. 11), denoised to the end (eq. 12)")]


def preview_masks(studio, sid, run_dir, story, prompts, frames, window, stride, fusion, steps,
                  seed, mask_method, sam_checkpoint, candidates, request=None, progress=None,
                  model: str = ""):
    """Generator: the mask stage alone, so the masks are checked before the expensive steps.
    ``model``: the base to load the run onto ("" = the one it was tuned on)."""
    from ..jobs.long import LongJobConfig

    sid = ensure_session(studio, sid)
    try:
        run = _run(studio, sid, run_dir)
        cfg = long_config(story, prompts, frames, window, stride, fusion, steps, seed, True,
                          mask_method, studio.server_path("SAM checkpoint", sam_checkpoint),
                          candidates)
        res = None
        job = LongJobConfig(str(run), cfg, masks_only=True,
                            model=model_picker.run_model(studio, model))
        for item in run_job(studio, sid, "long", job, request, progress):
            if isinstance(item, tuple):
                res = item[1] if item[0] == "result" else res
                continue
            yield None, f"{item.stage}: {item.step}/{item.total}"
        yield (mask_gallery(res.candidates, res.candidate_masks, res.frames, res.masks),
               f"Masks by **{res.method}** at t = {res.k_timestep}. Generate when they look "
               "right.")
    except Exception as e:
        raise gr_error(e)


def generate(studio, sid, run_dir, story, prompts, frames, window, stride, fusion, steps, seed,
             use_masks=False, mask_method="grabcut", sam_checkpoint="", candidates=5,
             tune_steps=0, request=None, progress=None, control=None, model: str = ""):
    """Generator: (video, status, frames so far, mask gallery). ``control``: the Structure
    panel's values (ui/structure.py); each window takes its frames' conditions. ``model``: the
    base to load the run onto ("" = the one it was tuned on)."""
    from .structure import control_configs

    from ..jobs.long import LongJobConfig

    sid = ensure_session(studio, sid)
    try:
        run = _run(studio, sid, run_dir)
        cfg = long_config(story, prompts, frames, window, stride, fusion, steps, seed, use_masks,
                          mask_method, studio.server_path("SAM checkpoint", sam_checkpoint),
                          candidates, tune_steps)
        cfg.control = control_configs(studio, sid, control or [])
        res, tick = None, Ticker()
        job = LongJobConfig(str(run), cfg, model=model_picker.run_model(studio, model))
        for item in run_job(studio, sid, "long", job, request, progress):
            if isinstance(item, tuple):
                res = item[1] if item[0] == "result" else res
                continue
            strip = frame_strip(item.preview, 12) if item.preview is not None else None
            if strip is not None or tick.due(item):
                yield (None, event_status(item, f"{item.stage}: {item.step}/{item.total}"),
                       strip if strip is not None else gr_update(), gr_update())
        gallery = (mask_gallery(res.candidates, res.candidate_masks, res.fused, res.masks)
                   if res.fused is not None else None)
        note = f" Masks by **{res.mask_method}**." if res.mask_method else ""
        yield (served(studio, res.mp4), f"Done in {res.seconds:.0f} s: {len(res.frames)} frames.{note}",
               frame_strip(res.frames, 12), gallery)
    except Exception as e:
        raise gr_error(e)


def build(studio, sid_state, edit_refs):
    group = device_group(studio)
    long_max = max(8, studio.limits.max_long_frames)
    with gr.Tab("Long Video", elem_id="long-tab"):
        gr.Markdown("Longer than the tuned clip, a prompt per segment: overlapping windows are "
                    "denoised together and blended, so segments join without seams. Tune a "
                    "clip in the first tab, then plan and generate here.")
        with gr.Row():
            with gr.Column():
                model = model_picker.build(studio, of_run=True)  # "": the run's own base
                story = gr.Textbox(value="", label="Story (parsed into timed segments)", lines=2,
                                   placeholder="a red circle moves right on the beach, then a "
                                               "blue square moves left on the snow")
                prompts = gr.Textbox(value="", lines=3,
                                     label="…or one prompt per segment (one per line)")
                with gr.Row():
                    frames = gr.Slider(8, long_max, value=min(32, long_max), step=1,
                                       label="Frames")
                    window = slider(LongConfig, "window", 8)
                    stride = slider(LongConfig, "stride", 4)
                fusion = radio(LongConfig, "fusion", label="Blend weights")
                with gr.Row():
                    steps = slider(LongConfig, "steps", 30)
                    seed = number(LongConfig, "seed", precision=0)
                m = _masks_panel(studio)
                from .structure import build as structure_panel

                control = structure_panel(studio, sid_state, edit_refs["run_dir"], frames,
                                          api_name="long_control_preview")
                plan_btn = gr.Button("Plan")
                est = gr.Markdown(long_estimate_text(studio, None, "", 0, 0, 0, "", 0),
                                  elem_id="long-estimate", label="Estimate")
                gen_btn = gr.Button("Generate long video", variant="primary")
                status = gr.Markdown(label="Status")
            with gr.Column():
                segs = gr.Dataframe(headers=["prompt", "first frame", "last frame"],
                                    elem_classes=["vcs-table"],
                                    label="Timeline", interactive=False)
                graph = gr.JSON(label="Scene graph")
                video = gr.Video(label="Long video", height=240, autoplay=True, loop=True)
                so_far = gr.Image(label="Frames (as they are decoded)", interactive=False,
                                  height=90)
                masks_view = gr.Gallery(label="Mask stage: candidates and the fused clip",
                                        columns=1, height=260)
        # full width, its own title (the figure's): a readable timeline, no label over it
        layout = gr.Image(label="Plan: prompts and windows over the frames", show_label=False,
                          interactive=False, elem_id="long-plan", buttons=["download",
                                                                           "fullscreen"])
        windows = gr.JSON(label="Windows and their prompts")
        w = SimpleNamespace(model=model, story=story, prompts=prompts, frames=frames, window=window,
                            stride=stride, fusion=fusion, steps=steps, seed=seed, masks=m,
                            control=control, plan_btn=plan_btn, est=est, gen_btn=gen_btn,
                            status=status, segs=segs, graph=graph, video=video, so_far=so_far,
                            masks_view=masks_view, layout=layout, windows=windows)
        _wire(studio, sid_state, edit_refs["run_dir"], group, w)


def _masks_panel(studio) -> SimpleNamespace:
    """Masks + average fusion: the settings of the mask stage and its preview button."""
    with gr.Accordion("Masks + average fusion (consistency-tuning paper): keep one subject across "
                      "segments", open=False):
        use_masks = gr.Checkbox(False, label="Use masks when generating")
        with gr.Row():
            mask_method = radio(MaskConfig, "method", "grabcut",
                                label="Masks by (GrabCut = classical fallback)")
            candidates = slider(MaskConfig, "n_candidates", label="Candidates n (paper: 5)")
        sam_ckpt = gr.Textbox(value="",
                              label="SAM checkpoint (.pth; empty = the cache folder; "
                                    "missing = GrabCut)")
        tune_steps = slider(MaskConfig, "tune_steps", 0 if demo_tier(studio) else 250,
                            label="Combined tuning steps (paper: 250; 0 = off)")
        mask_btn = gr.Button("Preview masks")
    return SimpleNamespace(use_masks=use_masks, mask_method=mask_method, candidates=candidates,
                           sam_ckpt=sam_ckpt, tune_steps=tune_steps, mask_btn=mask_btn)


def _wire(studio, sid_state, run_dir, group, w: SimpleNamespace) -> None:
    """The tab's events and its named API (API.md); ``w``: the tab's widgets."""
    m = w.masks
    story, prompts, frames, window, stride, fusion = (w.story, w.prompts, w.frames, w.window,
                                                      w.stride, w.fusion)
    steps, seed, est, status = w.steps, w.seed, w.est, w.status
    use_masks, mask_method, candidates, sam_ckpt, tune_steps = (
        m.use_masks, m.mask_method, m.candidates, m.sam_ckpt, m.tune_steps)

    def long_plan(story: str, prompts: str, frames: float, window: float, stride: float,
                  fusion: str, session: str = "", run_dir: str = "", model: str = ""):
        """Timeline, scene graph and window layout (instant; loads no model). The windows are
        laid out as the model that would run them counts frames: the session's tuned run
        ``run_dir``, else the picked base ``model`` (Wan2.1: in latent frames of 4)."""
        from gradio.components.number import Number

        # the sliders' bounds (left to the Long event's validator, common.validated): a
        # plan of 10^8 frames would not be instant
        for comp, val in ((frames_in, frames), (window_in, window), (stride_in, stride)):
            Number.raise_if_out_of_bounds(val, comp.minimum, comp.maximum)
        return plan(story, prompts, frames, window, stride, fusion,
                    plan_temporal(studio, session, run_dir, model))

    def long(session: str, run_dir: str, story: str, prompts: str, frames: float,
             window: float, stride: float, fusion: str, steps: float, seed: float,
             use_masks: bool, mask_method: str, sam_checkpoint: str, candidates: float,
             tune_steps: float, structure: Optional[list], model: str = "",
             request: gr.Request = None, progress=gr.Progress()):
        """A long video from the tuned run; streams frames as they decode. ``model``: the
        base to load the run onto ("" = the one it was tuned on)."""
        yield from generate(studio, session, run_dir, story, prompts, frames, window,
                            stride, fusion, steps, seed, use_masks, mask_method,
                            sam_checkpoint, candidates, tune_steps, request, progress,
                            structure, model)

    def mask_preview(session: str, run_dir: str, story: str, prompts: str, frames: float,
                     window: float, stride: float, fusion: str, steps: float, seed: float,
                     mask_method: str, sam_checkpoint: str, candidates: float,
                     model: str = "", request: gr.Request = None,
                     progress=gr.Progress()):
        """The mask stage alone: candidates, masks and the fused clip."""
        yield from preview_masks(studio, session, run_dir, story, prompts, frames, window,
                                 stride, fusion, steps, seed, mask_method, sam_checkpoint,
                                 candidates, request, progress, model)

    def long_estimate(session: str, run_dir: str, frames: float, window: float,
                      stride: float, fusion: str, steps: float, use_masks: bool,
                      mask_method: str, candidates: float, tune_steps: float) -> str:
        """Time of a long video with these settings from the tuned run (never waits for
        the device)."""
        return long_estimate_text(studio, session, run_dir, frames, window, stride, fusion,
                                  steps, use_masks, mask_method, candidates, tune_steps)

    est_inputs = [sid_state, run_dir, frames, window, stride, fusion, steps, use_masks,
                  mask_method, candidates, tune_steps]
    est_btn = gr.Button(visible=False)  # the API's /long_estimate (one public name)
    est_btn.click(long_estimate, est_inputs, est, api_name="long_estimate",
                  concurrency_id="preview")
    for c in est_inputs[1:]:
        c.change(long_estimate, est_inputs, est, api_name=False, concurrency_id="preview",
                 trigger_mode="always_last")
    frames_in, window_in, stride_in = frames, window, stride
    w.plan_btn.click(long_plan, [story, prompts, frames, window, stride, fusion, sid_state,
                                 run_dir, w.model],
                     [w.graph, w.segs, w.layout, w.windows], api_name="long_plan",
                     concurrency_id="preview")
    common = [sid_state, run_dir, story, prompts, frames, window, stride, fusion, steps, seed]
    long_inputs = common + [use_masks, mask_method, sam_ckpt, candidates, tune_steps,
                            w.control, w.model]
    w.gen_btn.click(long, long_inputs, [w.video, status, w.so_far, w.masks_view],
                    api_name="long", concurrency_id=group, concurrency_limit=1,
                    show_progress_on=[status],
                    validator=validated(long, long_check(studio), long_inputs))
    mask_inputs = common + [mask_method, sam_ckpt, candidates, w.model]
    m.mask_btn.click(mask_preview, mask_inputs, [w.masks_view, status],
                     api_name="mask_preview", concurrency_id=group, concurrency_limit=1,
                     show_progress_on=[status],
                     validator=validated(mask_preview, long_check(studio, True), mask_inputs))
