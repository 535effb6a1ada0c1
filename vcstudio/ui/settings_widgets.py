"""Widgets made from a setting's declaration (vcstudio/settings.py): a slider's bounds and step,
a dropdown's or radio's choices, the label and the info text come from the config field, so the
tabs do not restate a range the job checks (``slider(TuneConfig, "steps", tier.steps, lim)``).

A keyword given here wins over the declaration (a tab that shows a narrower range, or its own
wording). A bound naming a Limits attribute reads the studio's ``limits``.
"""
from __future__ import annotations

from typing import Any, Optional

import gradio as gr

from ..settings import bound, choices_of, declared, default_of


def _common(cls, name: str, kw: dict) -> dict:
    """Label (and, asked with ``info=True``, the help as the widget's info) + ``kw``."""
    s = declared(cls, name)
    out = {"label": s.label or name.replace("_", " ")}
    if kw.pop("info", None) is True and s.help:
        out["info"] = s.help
    out.update(kw)
    return out


def _range(cls, name: str, limits) -> tuple:
    """(min, max, step) of a setting's widget: its ``ui`` triple, else its range."""
    s = declared(cls, name)
    lo, hi, step = (tuple(s.ui) + (None, None, None))[:3] if s.ui else (s.lo, s.hi, None)
    lo, hi = bound(lo, None, limits), bound(hi, None, limits)
    return lo, (max(lo, hi) if lo is not None and hi is not None else hi), step


def slider(cls, name: str, value: Any = None, limits=None, **kw) -> gr.Slider:
    lo, hi, step = _range(cls, name, limits)
    step = kw.pop("step", step) or 1
    value = default_of(cls, name) if value is None else value
    return gr.Slider(lo, hi, value=value, step=step, **_common(cls, name, kw))


def number(cls, name: str, value: Any = None, limits=None, **kw) -> gr.Number:
    value = default_of(cls, name) if value is None else value
    return gr.Number(value=value, **_common(cls, name, kw))


def dropdown(cls, name: str, value: Any = None, **kw) -> gr.Dropdown:
    value = default_of(cls, name) if value is None else value
    return gr.Dropdown(list(choices_of(cls, name)), value=value, **_common(cls, name, kw))


def radio(cls, name: str, value: Any = None, **kw) -> gr.Radio:
    value = default_of(cls, name) if value is None else value
    return gr.Radio(list(choices_of(cls, name)), value=value, **_common(cls, name, kw))


def checkbox(cls, name: str, value: Optional[bool] = None, **kw) -> gr.Checkbox:
    value = default_of(cls, name) if value is None else value
    return gr.Checkbox(value=bool(value), **_common(cls, name, kw))


def switch(cls, name: str, **kw):
    """A method's switch as its kind asks: a checkbox (on/off), a dropdown (choices, many),
    a radio (a few choices), else a number."""
    from ..settings import kind_of

    kw.setdefault("info", True)
    choices = choices_of(cls, name)
    if kind_of(cls, name) == "bool":
        return checkbox(cls, name, **kw)
    if choices:
        return (radio if len(choices) <= 4 else dropdown)(cls, name, **kw)
    return number(cls, name, **kw)


def method_panel(methods: Optional[tuple[str, ...]] = None) -> dict[str, dict[str, Any]]:
    """One accordion of switches per method (the registry's pickable methods with switches,
    or ``methods``), each widget made from the method's declaration (methods/<name>.py):
    ``{method: {field: component}}``. Must be called inside a gr.Blocks."""
    from ..methods.registry import pickable, registered

    table = registered()
    names = methods if methods is not None else [n for n in pickable() if n in table]
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        cls = table[name]
        if not cls.switches or cls.config is None:
            continue
        with gr.Accordion(f"{getattr(cls, 'label', '') or name.upper()} switches", open=False):
            out[name] = {f: switch(cls.config, f) for f in cls.switches
                         if declared(cls.config, f).panel}
    return out
