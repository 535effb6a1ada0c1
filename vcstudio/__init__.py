"""vcstudio: temporally consistent video generation with diffusion models."""
from .config import (APLAConfig, DataConfig, DCTConfig, EditConfig, FgBgConfig, Limits,
                     LongConfig, MaskConfig, TuneConfig)
from .errors import VcsError

__version__ = "0.1.0"
__all__ = ["APLAConfig", "DataConfig", "DCTConfig", "EditConfig", "FgBgConfig", "Limits",
           "LongConfig", "MaskConfig", "TuneConfig", "VcsError", "__version__"]
