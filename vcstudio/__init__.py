"""vcstudio: temporally consistent video generation with diffusion models."""
from .config import (APLAConfig, DataConfig, DCTConfig, EditConfig, FgBgConfig, Limits,
                     LongConfig, MaskConfig, TuneConfig)
from .errors import VcsError

__version__ = "0.1.0"
__all__ = ["APLAConfig", "DataConfig", "DCTConfig", "EditConfig", "FgBgConfig", "Limits",
           "LongConfig", "MaskConfig", "TuneConfig", "VcsError", "VideoEditPipeline",
           "__version__"]


def __getattr__(name: str):
    # the diffusers pipeline loads diffusers: only when asked for, so `import vcstudio` stays light
    if name == "VideoEditPipeline":
        from .pipelines.video_pipeline import VideoEditPipeline

        return VideoEditPipeline
    raise AttributeError(f"module 'vcstudio' has no attribute {name!r}")
