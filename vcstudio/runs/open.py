"""Open a run folder: a vcstudio run, or a Tune-A-Video output folder's converted run.
Opening is pure file reading (:func:`open_run`); converting a Tune-A-Video folder loads its base
model and is the separate step a job takes when it starts (runs/convert.py
:func:`prepare_run`), which nothing here imports."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .folder import RunFolder


def open_run(path: str | Path, must_be_finished: bool = True) -> RunFolder:
    """A finished run folder, by reading files only (estimates and argument parsing use it): a
    Tune-A-Video output folder opens as its converted run once a job has converted it
    (:func:`prepare_run`); before that it is a one-line error that says so."""
    from ..models.tav import is_tav_folder

    if is_tav_folder(path):
        from .tav_folder import converted_tav_run

        done = converted_tav_run(path)
        if done is None:
            raise InputError(f"{path} is a Tune-A-Video output folder not converted yet: a job "
                             "that uses it (edit, long video, compare) converts it when it "
                             f"starts, or run `vcstudio convert-tav {path} --out RUN` first.")
        return RunFolder(done)
    rf = RunFolder(Path(path))
    if not rf.path.is_dir() or not rf.config_path.is_file():
        raise InputError(f"{path} is not a vcstudio run folder (no config.yaml), nor a "
                         "Tune-A-Video output folder; pass the folder `vcstudio tune` printed, or "
                         "a Tune-A-Video output_dir.")
    if must_be_finished and not rf.delta_path.is_file():
        raise InputError(f"The run {path} has not finished tuning (no delta.safetensors). Run "
                         "`vcstudio tune --out` on it again to resume.")
    return rf
