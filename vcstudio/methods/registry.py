"""Method name -> TuneMethod. Methods register themselves here by name."""
from __future__ import annotations

from ..errors import InputError
from .base import TuneMethod


def _fgbg(cfg) -> TuneMethod:
    from .fgbg_method import FgBgMethod  # combined tuning, seed 001 eq. 20

    return FgBgMethod(cfg)


METHODS = {"baseline": lambda cfg: TuneMethod(cfg), "fgbg": _fgbg}


def get_method(cfg) -> TuneMethod:
    """cfg is a TuneConfig; its ``method`` names the method."""
    if cfg.method == "dct":
        from .dct import DCTMethod

        return DCTMethod(cfg)
    if cfg.method == "apla":
        from .apla import APLAMethod

        return APLAMethod(cfg)
    try:
        return METHODS[cfg.method](cfg)
    except KeyError:
        raise InputError(f"Unknown method {cfg.method!r}; choose baseline, dct, apla or fgbg.") from None
