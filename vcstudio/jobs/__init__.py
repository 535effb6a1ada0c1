"""One module per job, each a config dataclass + ``run(cfg, ctx)``; the registry every surface
(UI, CLI, API, sweep) submits them through: ``studio.submit(name, cfg)``.

    tune      TuneConfig            one-shot tuning of one clip (stoppable, resumable)
    edit      EditJobConfig         an edit of a tuned run (+ its scores)
    long      LongJobConfig         a long video from a tuned run
    compare   CompareConfig         methods / presets / CLWS / seeds side by side
    sweep     SweepConfig           a grid of tunes (+ edits) as Ray tasks
    i2v_tune  I2VTuneJobConfig      VCD reward LoRA tuning of an image-to-video model
    i2v_ab    I2VABConfig           image-to-video, base vs LoRA-tuned, VCD-scored
    eval      EvalConfig            metrics or VCD of a video
    push      PushConfig            a tuned run to the Hub in one commit (or to a folder)
    open_hub  OpenHubConfig         a pushed run from the Hub as a run folder to edit
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from .registry import REGISTRY


def studio(data_dir=None, **kw):
    """A Studio handed the job registry (the CLI's; tests build their own)."""
    from ..session import Studio

    return Studio(data_dir, jobs=REGISTRY, **kw)


def default_studio():
    """The process's Studio (the app's), with the job registry."""
    from .. import session

    return session.default(REGISTRY)


def load_config(name: str, source: Any):
    """Job ``name``'s config from a YAML file, a dict or an instance."""
    if isinstance(source, (str, Path)):
        from ..config import read_yaml
        from ..runs.tav_import import load_tune_config

        if name == "tune":  # our YAML or Tune-A-Video's
            return load_tune_config(source)
        source = read_yaml(source)
    return REGISTRY[name].load(source)


def resume_plan(store, job_id: str) -> tuple[str, Any, Optional[str]]:
    """(job name, config, run folder) that continue an interrupted or stopped job; a job
    that is unknown, finished, live, already resumed or not resumable is a one-line
    InputError (nothing is started)."""
    from ..errors import InputError

    job = store.job(job_id)  # unknown: "No job ... in the run store."
    spec = REGISTRY.get(job.kind)
    if spec is None or not spec.resumable:
        raise InputError(f"Job {job_id} is a {job.kind} job; only tunes resume. List them with "
                         "`vcstudio runs --resumable`.")
    if job.resumed_by:
        raise InputError(f"Job {job_id} was resumed already, by {job.resumed_by}; resume that "
                         "one if it was cut short.")
    if job.status == "done":
        raise InputError(f"Job {job_id} finished; there is nothing to resume. Edit its run, or "
                         "tune again.")
    if job.status in ("queued", "running"):
        raise InputError(f"Job {job_id} is still {job.status} in a live process ({job.owner}); "
                         "stop it first, or wait for it.")
    if job.status in ("failed", "cancelled") and not job.checkpoint:
        raise InputError(f"Job {job_id} {job.status} without a checkpoint; tune again instead "
                         f"({job.error or 'no error recorded'}).")
    params = job.params or {}
    config = params.get("config", params)
    folder = str(store.run_dir(job.run_id)) if job.run_id else params.get("out")
    if not folder:
        raise InputError(f"Job {job_id} recorded no run folder to continue; tune again.")
    return job.kind, spec.load(config), folder


def resumed_losses(folder) -> list[dict]:
    """The per-step logs a tune resumed in run folder ``folder`` starts from (its losses.json,
    written with every checkpoint): a resumed tune's loss plot draws them before its own."""
    from ..runs.folder import RunFolder

    return RunFolder(Path(folder)).losses() if folder else []
