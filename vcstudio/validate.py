"""The shared validate step of the job configs: every surface (UI, CLI, API, sweep) submits a
config through ``Studio.submit``, which validates it before anything starts, so an out-of-range
number is a one-line error naming the setting and its allowed range -- never a silent
substitution (DESIGN: errors).

A setting is named by its config key and, where the CLI has one, its flag:
``data.n_frames (--frames)``.
"""
from __future__ import annotations

from typing import Any

from .errors import InputError
# the range checks themselves are the settings' (vcstudio/settings.py: a config field declares
# its range once; these are what it is checked with); jobs use them as ``v.whole`` etc.
from .settings import MAX_SEED, choice, number, whole  # noqa: F401


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
    """"" (the empty prompt), "source", "target" or a prompt text (--inversion-prompt; what
    each means: pipelines/edit/tuned.py ``inversion_text``)."""
    from .config import check_prompt

    if not isinstance(value, str):
        raise InputError(f"inversion_prompt (--inversion-prompt) must be text: \"\" for the "
                         f"empty prompt, \"source\" for the tuning prompt, \"target\" for the "
                         f"edit's, got {value!r:.40}.")
    if value not in ("", "source", "target"):
        check_prompt(value, "inversion prompt")
