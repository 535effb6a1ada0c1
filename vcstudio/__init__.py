"""vcstudio: temporally consistent video generation with diffusion models."""
import os as _os

# torch's OpenMP threads wait for each other at the end of every parallel region; by default
# they spin while waiting, and on a shared CPU a spinning thread holds the core its descheduled
# partner needs: a 2-thread tune step of the demo model took 56-89 s at a load average of 13 on
# 2 cores, 0.4-1.0 s with passive waiting (and 3-5 s single-threaded). Read by libgomp when
# torch loads, so only where vcstudio is imported first (the CLI, the app); an explicit
# OMP_WAIT_POLICY wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from .config import DataConfig, EditConfig, Limits, LongConfig, MaskConfig, TuneConfig
from .errors import VcsError

__version__ = "0.1.0"
__all__ = ["APLAConfig", "DataConfig", "DCTConfig", "EditConfig", "FgBgConfig", "Limits",
           "LongConfig", "MaskConfig", "TuneConfig", "VcsError", "VideoEditPipeline",
           "__version__"]


# each method's config section is the method's own (methods/<name>.py); read when asked for
_METHOD_CONFIGS = {"DCTConfig": "dct", "APLAConfig": "apla", "FgBgConfig": "fgbg_method"}


def __getattr__(name: str):
    if name in _METHOD_CONFIGS:
        import importlib

        return getattr(importlib.import_module(f".methods.{_METHOD_CONFIGS[name]}", __name__),
                       name)
    # the diffusers pipeline loads diffusers: only when asked for, so `import vcstudio` stays light
    if name == "VideoEditPipeline":
        from .pipelines.edit.video_pipeline import VideoEditPipeline

        return VideoEditPipeline
    raise AttributeError(f"module 'vcstudio' has no attribute {name!r}")
