"""The shared validate step of the job configs: every surface (UI, CLI, API, sweep) submits a
config through ``Studio.submit``, which validates it before anything starts, so an out-of-range
number is a one-line error naming the setting and its allowed range -- never a silent
substitution (DESIGN: errors).

A setting is named by its config key and, where the CLI has one, its flag:
``data.n_frames (--frames)``.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional

from .errors import InputError

MAX_SEED = 2**63 - 1


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def whole(name: str, value: Any, lo: int, hi: Optional[int] = None, hint: str = "") -> int:
    """``value`` as an int within ``lo..hi`` (``hi`` None: no upper bound)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_int(value):
        raise InputError(f"{name} must be a whole number, got {value!r}.")
    if value < lo or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise InputError(f"{name} must be within {rng}{hint}; got {value}.")
    return value


def number(name: str, value: Any, lo: float, hi: float, *, open_lo: bool = False,
           open_hi: bool = False, hint: str = "") -> float:
    """``value`` as a finite float within [lo, hi] (ends opened as asked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{name} must be a number, got {value!r}.")
    v = float(value)
    ok = math.isfinite(v) and (v > lo if open_lo else v >= lo) and (v < hi if open_hi else v <= hi)
    if not ok:
        rng = f"{'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
        raise InputError(f"{name} must be within {rng}{hint}; got {value}.")
    return v


def choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}.")
    return value


def text(name: str, value: Any, what: str) -> str:
    """A non-empty string (``what`` says what to write there)."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{name} is empty: {what}.")
    return value


def side(name: str, value: Any, limits, zero_means: str = "") -> int:
    """A frame side in pixels: ``limits.min_side..limits.max_side``, a multiple of 8 (the VAE's
    scale); 0 allowed when ``zero_means`` says what it means."""
    v = whole(name, value, 0 if zero_means else limits.min_side, limits.max_side,
              f" (0 = {zero_means})" if zero_means else "")
    if v and v < limits.min_side:
        raise InputError(f"{name} must be 0 ({zero_means}) or within {limits.min_side}.."
                         f"{limits.max_side}; got {v}.")
    if v % 8:
        raise InputError(f"{name} must be a multiple of 8 (the VAE's scale); got {v}.")
    return v


def seed(name: str, value: Any) -> int:
    return whole(name, value, 0, MAX_SEED)


def check_inversion_prompt(value) -> None:
    """"" (the empty prompt), "source" or a prompt text (--inversion-prompt; what each means:
    pipelines/tuned.py ``inversion_text``)."""
    from .config import check_prompt

    if not isinstance(value, str):
        raise InputError(f"inversion_prompt (--inversion-prompt) must be text: \"\" for the "
                         f"empty prompt, \"source\" for the tuning prompt, got {value!r:.40}.")
    if value not in ("", "source"):
        check_prompt(value, "inversion prompt")
