"""The base-model picker of the Edit, Long and Compare tabs (DESIGN "Models and weights"): the
embedded demo model, the known text-to-image and text-to-video models of models/catalog.py
(Stable Diffusion 1.5 and 2.1, Wan2.1-T2V-1.3B) and any Hub id or local folder typed in, with one
line beside it: cached (its size on disk) or its download size, and the family that runs it
(models/family.py, from its model_index.json).

A pick is the visitor's own: it travels in the job's config (``model``), never into the shared
``studio.model`` -- the studio's default, which an empty pick means. A public studio takes the
listed models and Hub ids only; a typed server path is refused (:func:`job_model`), so no
stranger makes the server read its folders. A job downloads a model not cached yet, with a
progress bar of bytes and ETA (models/catalog.py ``fetch``); offline, a missing model is one
line saying what to do.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from ..errors import InputError, VcsError
from ..models.loading import is_embedded_path

DEMO = "demo"  # the picker's value of the embedded demo model (catalog.resolve_alias knows it)
# a Hub repo id: owner/name of letters, digits, "-", "_" and "." (no path parts)
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _looks_local(model: str) -> bool:
    """A path on this machine, or text written as one (an id never starts so)."""
    return (model.startswith(("/", ".", "~", "\\")) or ":" in model
            or Path(model).expanduser().exists())


def value_of(model: Optional[str]) -> str:
    """The picker's value naming ``model``: "demo" for the embedded demo model, else as is."""
    text = (model or "").strip()
    if text and (text.lower() == DEMO or is_embedded_path(text)):
        return DEMO
    return text


def default_label(studio, of_run: bool = False) -> str:
    """The label of the empty pick: the studio's default base model (ui._model_notice), or
    (``of_run``: a tab that only uses tuned runs) the base the run was tuned on."""
    if of_run:
        return "The tuned run's own base model"
    own = value_of(studio.model)
    name = "the embedded demo model" if own == DEMO else (own or "none")
    return f"Default: {name}"


def choices(studio, of_run: bool = False) -> list[tuple[str, str]]:
    """(label, value) of the dropdown: the default ("", :func:`default_label`), the demo
    model, the known text-to-image / text-to-video models with their family and cached or
    download size (cache reads only), and the studio's own default where it is none of them
    ($VCSTUDIO_MODEL)."""
    from ..models.catalog import cached_sizes, known, status

    sizes = cached_sizes()
    out = [(default_label(studio, of_run), ""),
           ("Embedded demo model [sd; built in, the toy world only]", DEMO)]
    for m in known("t2i") + known("t2v"):
        tag = "cached" if status(m.id, sizes).cached else f"~{m.download_gb:g} GB download"
        out.append((f"{m.name} [{m.family}; {tag}]", m.id))
    own = value_of(studio.model)
    if own and own not in {v for _, v in out}:
        out.append((f"{own} [this studio's default]", own))
    return out


def job_model(studio, pick: Optional[str]) -> str:
    """The base model a new job's config names for a visitor's pick: "" = the studio's default
    (``studio.model``); "demo" and the aliases (sd15, sd21, wan-1.3b) their folder or Hub id; a
    Hub id, or on a desktop a folder or checkpoint file, as typed. A public studio refuses a
    server path and anything that is no Hub id: a stranger's pick must not make the server read
    its files (the demo model and the studio's own default are no stranger's choice)."""
    from ..models.catalog import resolve_alias

    text = (pick or "").strip()
    if not text:
        return studio.model or ""
    model = resolve_alias(text)
    if value_of(model) == DEMO or model == studio.model:
        return model
    if studio.public:
        if _looks_local(model):
            raise InputError("This public studio does not read server folders or files; pick a "
                             "listed base model or give a Hugging Face Hub id (owner/name).")
        if not _REPO_ID.match(model):
            raise InputError(f"{model!r} is no Hugging Face Hub id (owner/name); this public "
                             "studio takes the listed base models and Hub ids.")
        from ..models.catalog import find, status

        # nor make it download any repo a stranger names (disk, bandwidth): a Hub id that is
        # not listed runs only where it is in the cache already
        if find(model) is None and not status(model).cached:
            raise InputError(f"This public studio downloads only the listed base models; "
                             f"{model} is not one of them (nor in its cache). Pick a listed "
                             "model, or run vcstudio on your own machine for any Hub id.")
    return model


def run_model(studio, pick: Optional[str]) -> str:
    """The base an edit or long video loads a tuned run onto: "" (no pick) = the one the run
    records (meta.json ``base_model``); else as :func:`job_model` (the loader checks the
    weights' fingerprint and says in one line when they are not the run's)."""
    return job_model(studio, pick) if (pick or "").strip() else ""


def info_line(studio, pick: Optional[str], of_run: bool = False) -> str:
    """The line beside the picker: what the pick is, cached (size on disk) or its download
    size, the family that runs it; a refused or unusable pick as one line. Cache reads only.
    ``of_run``: the empty pick is the tuned run's own base."""
    from ..models.catalog import status
    from ..models.family import backbone_family, rules
    from ..models.hub_access import offline_mode

    if of_run and not (pick or "").strip():
        return "A long video loads the tuned run onto the base model it was tuned on."
    try:
        model = job_model(studio, pick)
        if value_of(model) == DEMO:
            return ("The embedded demo model: built in, no download; it knows only the toy "
                    "world (coloured shapes on plain backgrounds, 64x64).")
        if _looks_local(model) and not Path(model).expanduser().exists():
            return f"⚠️ {model}: no such folder or file on this machine."
        family = rules(backbone_family(model)).label
    except VcsError as e:
        return f"⚠️ {e}"
    st = status(model)
    if st.local_folder or Path(model).expanduser().is_file():
        return f"{model}: on this machine; runs as {family}."
    # an id neither known nor cached: its family is the name's guess until its index is here
    runs = (f"runs as {family}" if st.cached or st.known else
            f"runs as {family} (a guess from the name until its model_index.json is here)")
    line = f"{st.line()[:-1]}; {runs}."
    if not st.cached and offline_mode():
        line += (" This studio is offline (HF_HUB_OFFLINE), so no job can download it" +
                 (": pick a cached one." if studio.public else
                  ": download it where there is network and give its folder."))
    return line


def follow_run(studio, sid: str, run_dir: str):
    """The picker's update when the tab's run folder changes: the base that run was tuned on
    (so an edit or a long video loads it onto the same weights); no change where that base is
    unknown, or one this studio would refuse to read."""
    from .common import gr_update

    try:
        if not run_dir:
            return gr_update()
        from ..jobs.edit import run_base

        value = value_of(run_base(studio.safe_path(sid, run_dir, must_exist=True)))
        job_model(studio, value)
    except Exception:  # an unreadable run says so when it is used, not here
        return gr_update()
    return gr_update(value=value) if value else gr_update()


def build(studio, label: str = "Base model", of_run: bool = False):
    """The picker and its line in the current layout block; returns the dropdown, the
    ``model`` input of the tab's job events. Its value starts empty (the API's default too):
    the studio's default base, or with ``of_run`` the tuned run's own."""
    import gradio as gr

    from .common import any_string, gr_update

    with gr.Row():
        picker = any_string(gr.Dropdown(
            choices(studio, of_run), value="", allow_custom_value=True, scale=2, label=label,
            info="a listed model, or type a Hub id (owner/name)"
                 + ("" if studio.public else " or a local folder")))
        line = gr.Markdown(info_line(studio, "", of_run), label="Base model status")
    picker.change(lambda m: info_line(studio, m, of_run), picker, line, api_name=False,
                  show_progress="hidden", concurrency_id="preview")
    # the labels say cached or not: read anew when the list opens (a job may have downloaded)
    picker.focus(lambda: gr_update(choices=choices(studio, of_run)), None, picker,
                 api_name=False, show_progress="hidden")
    return picker


def follow(studio, sid_state, run_dir, picker) -> None:
    """Wire ``picker`` to follow the tuned run shown in ``run_dir`` (:func:`follow_run`)."""
    run_dir.change(lambda sid, run: follow_run(studio, sid, run), [sid_state, run_dir], picker,
                   api_name=False, show_progress="hidden")
