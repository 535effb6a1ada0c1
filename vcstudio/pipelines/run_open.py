"""Open a run folder for a job: a vcstudio run, or a Tune-A-Video output folder recognised
first and converted once (pipelines/tav_folder.py). Its own module so that runs.py, which
tav_folder builds on, does not import it back."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .runs import RunFolder


def open_run(path: str | Path, must_be_finished: bool = True, device=None) -> RunFolder:
    """A finished run folder; a Tune-A-Video output folder is recognised first and opens as
    its converted run (pipelines/tav_folder.py; ``device``: where the job will load it, so the
    conversion's base is the one the job then finds in the model cache)."""
    from ..models.tav import is_tav_folder

    if is_tav_folder(path):
        import torch

        from .tav_folder import tav_run

        return RunFolder(tav_run(path, torch.device(device) if device is not None else None))
    rf = RunFolder(Path(path))
    if not rf.path.is_dir() or not rf.config_path.is_file():
        raise InputError(f"{path} is not a vcstudio run folder (no config.yaml), nor a "
                         "Tune-A-Video output folder; pass the folder `vcstudio tune` printed, or "
                         "a Tune-A-Video output_dir.")
    if must_be_finished and not rf.delta_path.is_file():
        raise InputError(f"The run {path} has not finished tuning (no delta.safetensors). Run "
                         "`vcstudio tune --out` on it again to resume.")
    return rf
