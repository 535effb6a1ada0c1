"""The Structure panel (Edit and Long tabs): ControlNet / T2I-Adapter conditions from the clip.

Widgets and formatting only: up to :data:`SLOTS` conditions, each a kind (canny, depth, pose or
an uploaded condition video), a control model (hub id; a folder on a desktop studio), a scale and
the share of the steps it acts in; a preview strip of the condition frames (the
``control_preview`` job) before generating. The tabs turn the panel's values into ControlConfigs
with :func:`control_configs` and hand them to the edit / long job.
"""
from __future__ import annotations

import math

from typing import Optional, Sequence

from ..config import ControlConfig
from ..control.conditions import DEFAULT_DEPTH_MODEL, KINDS, LABELS
from ..errors import InputError
from .common import about, ensure_session, frame_strip, gr_error, run_job, upload

SLOTS = 2
PER_SLOT = 6  # kind, model, scale, start, end, video
NONE = "none"
CHOICES = [("none", NONE)] + [(LABELS[k], k) for k in KINDS]


VALUE_NAMES = [f"{n}_{i + 1}" for i in range(SLOTS)
               for n in ("kind", "model", "scale", "start", "end", "video")] + ["depth_model"]


def _check_values(values) -> list:
    """The ``structure`` list an API client sent: the /control_preview parameters after
    ``frames``, in order (API.md); a one-line message naming what is wrong."""
    usage = ("structure must be a list of the " + str(len(VALUE_NAMES)) + " values "
             + ", ".join(VALUE_NAMES) + " (as /control_preview takes them), or [] for none")
    if not isinstance(values, (list, tuple)) or len(values) not in (0, len(VALUE_NAMES),
                                                                     len(VALUE_NAMES) - 1):
        raise InputError(f"{usage}; got {str(values)[:80]!r}.")
    values = list(values)
    for i, v in enumerate(values):
        name = VALUE_NAMES[i]
        if name.startswith(("scale", "start", "end")):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InputError(f"structure's {name} must be a number; got {v!r}.")
        elif name.startswith("video"):
            if isinstance(v, dict):  # a FileData an API client sent
                values[i] = v.get("path")
            elif v is not None and not isinstance(v, str):
                raise InputError(f"structure's {name} must be an uploaded file or null.")
        elif v is not None and not isinstance(v, str):
            raise InputError(f"structure's {name} must be text; got {v!r}.")
    return values


def check_structure(values) -> list[ControlConfig]:
    """The validators' check of the ``structure`` input (its message on that input): the
    conditions it sets, as ControlConfigs a job's validate checks (uploads are not copied
    here: a given video stands as its name)."""
    try:
        values = _check_values(values if values is not None else [])
    except InputError as e:
        raise about("structure", str(e)) from None
    return _configs(values, lambda video: str(video), lambda what, model: model)


def _configs(values: list, video_path, server_path) -> list[ControlConfig]:
    """The panel's flat values (PER_SLOT per slot, then the depth model) -> ControlConfigs;
    ``video_path`` and ``server_path`` resolve its files and model names."""
    if not values:
        return []
    depth_model = (values[SLOTS * PER_SLOT] if len(values) > SLOTS * PER_SLOT else "") or ""
    out = []
    for i in range(SLOTS):
        kind, model, scale, start, end, video = values[i * PER_SLOT:(i + 1) * PER_SLOT]
        if not kind or kind == NONE:
            continue
        out.append(ControlConfig(
            kind=kind, model=server_path("control model", (model or "").strip()),
            scale=float(scale), start=float(start), end=float(end),
            video=video_path(video) if video else "",
            depth_model=server_path("depth model", depth_model.strip())))
    return out


def control_configs(studio, sid: str, values: Sequence) -> list[ControlConfig]:
    """The panel's flat values (PER_SLOT per slot, then the depth model) -> ControlConfigs.
    Uploads are copied into the session; a public studio takes control models as hub ids only."""
    values = _check_values(values if values is not None else [])
    return _configs(values, lambda video: str(upload(studio, sid, video)), studio.server_path)


def preview(studio, sid, run_dir, frames, *values):
    """-> (gallery of condition strips, status): what each condition will feed its model."""
    from ..jobs.control import ControlPreviewConfig

    sid = ensure_session(studio, sid)
    try:
        if not run_dir:
            raise InputError("Tune a clip first: conditions are taken from the tuned clip.")
        run = studio.safe_path(sid, run_dir, must_exist=True)
        controls = control_configs(studio, sid, values)
        cfg = ControlPreviewConfig(run=str(run), control=controls, frames=int(frames or 0))
        res = None
        for item in run_job(studio, sid, "control_preview", cfg):
            if isinstance(item, tuple) and item[0] == "result":
                res = item[1]
        items = [(frame_strip(c, 12), label) for c, label in zip(res.conditions, res.labels)]
        n = len(res.conditions[0])
        return items, f"{len(items)} condition(s), {n} frames each, at the tuned size and crop."
    except Exception as e:
        raise gr_error(e)


def build(studio, sid_state, run_dir, frames=None, api_name: str = "control_preview"):
    """The panel inside the current tab; returns a hidden ``gr.JSON`` holding its values in
    the order :func:`control_configs` reads them (:data:`VALUE_NAMES`): pass it as a handler's
    ``structure`` input. Being a component (not a gr.State), it is an API parameter too, so
    API clients run structure-controlled edits and long videos (API.md)."""
    import gradio as gr

    inputs = []
    with gr.Accordion("Structure: hold the output to the clip's motion and layout "
                      "(ControlNet / T2I-Adapter)", open=False):
        gr.Markdown("Conditions are taken from the tuned clip, frame by frame, at its size and "
                    "crop. Canny works offline; depth needs a transformers depth model, pose "
                    "the optional `controlnet-aux` package; or upload condition frames made "
                    "elsewhere (e.g. pose). Scale 0 = off.")
        for i in range(SLOTS):
            with gr.Row():
                kind = gr.Dropdown(CHOICES, value=NONE, label=f"Condition {i + 1}", scale=1)
                model = gr.Textbox(value="", label="ControlNet or T2I-Adapter (hub id)", scale=2,
                                   placeholder="lllyasviel/sd-controlnet-canny")
                scale = gr.Slider(0, 2, value=1.0, step=0.05, label="Scale", scale=1)
            with gr.Row():
                start = gr.Slider(0, 1, value=0.0, step=0.05, label="From (share of steps)")
                end = gr.Slider(0, 1, value=1.0, step=0.05, label="To")
                video = gr.Video(label="Condition video (uploaded kind, or the clip to "
                                       "extract from)", sources=["upload"], height=110)
            inputs += [kind, model, scale, start, end, video]
        depth = gr.Textbox(value=DEFAULT_DEPTH_MODEL, label="Depth model (transformers "
                                                            "depth-estimation, hub id)")
        inputs.append(depth)
        btn = gr.Button("Preview conditions")
        strip = gr.Gallery(label="What the control models will see", columns=1, height=200)
        status = gr.Markdown(label="Conditions status")
    length = frames if frames is not None else gr.Number(value=0, visible=False)
    assert SLOTS == 2  # the named API below spells out both slots

    def control_preview(session: str, run_dir: str, frames: float = 0, kind_1: str = NONE,
                        model_1: str = "", scale_1: float = 1.0, start_1: float = 0.0,
                        end_1: float = 1.0, video_1: Optional[str] = None, kind_2: str = NONE,
                        model_2: str = "", scale_2: float = 1.0, start_2: float = 0.0,
                        end_2: float = 1.0, video_2: Optional[str] = None,
                        depth_model: str = DEFAULT_DEPTH_MODEL):
        """The condition frames each control model will see (the tuned clip's, at its size and
        crop); ``frames`` 0 = the tuned clip's length (Long: the long video's)."""
        return preview(studio, session, run_dir, frames, kind_1, model_1, scale_1, start_1,
                       end_1, video_1, kind_2, model_2, scale_2, start_2, end_2, video_2,
                       depth_model)

    btn.click(control_preview, [sid_state, run_dir, length] + inputs, [strip, status],
              api_name=api_name)
    state = gr.JSON(value=[c.value for c in inputs], visible=False, label="Structure")
    for c in inputs:  # raw values only: uploads are copied when a job is submitted
        c.change(lambda *v: list(v), inputs, state, api_name=False, show_progress="hidden")
    return state
