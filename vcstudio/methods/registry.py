"""Method name -> TuneMethod. ``a+b`` composes methods (methods/compose.py)."""
from __future__ import annotations

import dataclasses

from ..errors import InputError
from .base import TuneMethod


def _dct(cfg) -> TuneMethod:
    from .dct import DCTMethod  # seed 000

    return DCTMethod(cfg)


def _apla(cfg) -> TuneMethod:
    from .apla import APLAMethod  # seed 003

    return APLAMethod(cfg)


def _fgbg(cfg) -> TuneMethod:
    from .fgbg_method import FgBgMethod  # combined tuning, seed 001 eq. 20

    return FgBgMethod(cfg)


METHODS = {"baseline": lambda cfg: TuneMethod(cfg), "dct": _dct, "apla": _apla, "fgbg": _fgbg}
COMBINABLE = ("dct", "apla")  # parts that stack in one run (see methods/compose.py)


def get_method(cfg) -> TuneMethod:
    """cfg is a TuneConfig; its ``method`` names the method, or ``apla+dct`` for both."""
    names = [n.strip() for n in str(cfg.method).split("+")]
    if len(names) > 1:
        bad = [n for n in names if n not in COMBINABLE] or (
            [names[0]] if len(set(names)) < len(names) else [])
        if bad:
            raise InputError(f"Cannot combine {cfg.method!r}: only {' and '.join(COMBINABLE)} "
                             "stack, each once (e.g. apla+dct).")
        from .compose import ComposedMethod

        return ComposedMethod(cfg, [get_method(dataclasses.replace(cfg, method=n))
                                    for n in names])
    try:
        return METHODS[names[0]](cfg)
    except KeyError:
        raise InputError(f"Unknown method {cfg.method!r}; choose baseline, dct, apla, apla+dct "
                         "or fgbg.") from None
