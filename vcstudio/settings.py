"""Each setting's range, choices and help, declared once on its config field (DESIGN: config).

A config dataclass declares a setting with :func:`setting`, which returns a
``dataclasses.field`` carrying a :class:`Setting` in its metadata::

    steps: int = setting(50, lo=1, hi=MAX_SAMPLING_STEPS, flag="--steps", label="Sampling steps")

Everything that needs the range, the choices or the help reads them from there: the jobs'
validate steps and the pipelines' input checks (:func:`check`), the CLI's flags
(cli/common.add_setting_flag) and the UI's widgets (ui/settings_widgets.py). A bound may be a
number, the name of a :class:`~vcstudio.config.Limits` attribute (``"max_frames"``: the studio's
own limit, lowered on a Space) or a callable ``(obj, limits) -> number`` (a bound that depends
on another field, e.g. a window at most the video's frames).

:class:`Limits` lives here for that reason (config.py re-exports it).

This module sits below config.py and imports nothing of vcstudio's but the errors.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Union

from .errors import InputError

Bound = Union[int, float, str, Callable[[Any, Any], Any], None]
MAX_SEED = 2**63 - 1


@dataclass
class Limits:
    """Bounds on user input; a Space lowers them for its hardware (a setting's bound may name
    one of these: the studio's own value is read when the setting is checked)."""

    max_frames: int = 128
    max_side: int = 1024
    min_side: int = 16
    max_source_frames: int = 20000
    max_upload_mb: float = 200.0
    max_steps: int = 5000
    max_long_frames: int = 10000  # length of a long video (co-denoised windows)
    # fan-out: how many things one request may start, checked before any of them runs
    max_variants: int = 64  # compare: distinct variants + tuned runs (duplicates count once)
    max_sweep_cells: int = 4096  # a sweep's grid, even with --yes (counted before it is built)
    max_windows: int = 1000  # long video: co-denoised windows
    max_candidates: int = 16  # long video: candidate clips at step k (masks + fusion)
    max_hub_run_mb: float = 8192.0  # open_hub: a pushed run's download


@dataclass(frozen=True)
class Setting:
    """One setting's declaration: ``lo``/``hi`` its allowed range (``open_lo``/``open_hi``
    exclude the ends; ``None``: unbounded), ``hint`` what the range error adds (``" (0 = no
    previews)"``), ``choices`` its allowed values (a tuple, or a callable returning one, read
    when asked: method names come from the registry), ``help`` the CLI's help and the UI's
    info, ``label`` the UI's label, ``flag`` how a user names it outside the config (the CLI
    flag, ``--steps``, or a Tune-A-Video key) -- errors name the setting by both --, ``ui``
    the slider's (min, max, step) where the widget offers less than the job accepts (the
    Edit tab's 5..100 sampling steps of a job that takes 1..1000), ``panel`` whether a
    method's switch shows in the UI's method panel."""

    lo: Bound = None
    hi: Bound = None
    open_lo: bool = False
    open_hi: bool = False
    hint: str = ""
    choices: Union[tuple, Callable[[], Iterable], None] = None
    help: str = ""
    label: str = ""
    flag: str = ""
    ui: tuple = ()
    panel: bool = True  # a method's switch the UI's method panel shows (False: the CLI's only)


def setting(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
            **declaration) -> Any:
    """A dataclass field with its :class:`Setting` declaration in its metadata."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"setting": Setting(**declaration)})


def declared(cls_or_obj: Any, name: str) -> Setting:
    """The :class:`Setting` declared on field ``name`` of a config class (or instance)."""
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    f = _field(cls, name)
    s = f.metadata.get("setting")
    if s is None:
        raise KeyError(f"{cls.__name__}.{name} declares no range or choices")
    return s


def _field(cls: type, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def default_of(cls: type, name: str) -> Any:
    """A field's default value (its factory's product for a mutable default)."""
    f = _field(cls, name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def kind_of(cls: type, name: str) -> str:
    """"int", "float", "bool", "str" or "" (anything else), from the field's annotation."""
    t = _field(cls, name).type
    t = t if isinstance(t, str) else getattr(t, "__name__", "")
    if t.startswith("Optional[") and t.endswith("]"):  # None is the caller's to allow
        t = t[len("Optional["):-1]
    return t if t in ("int", "float", "bool", "str") else ""


def choices_of(cls_or_obj: Any, name: str) -> tuple:
    """The declared choices of a setting (``()``: none)."""
    c = declared(cls_or_obj, name).choices
    return tuple(c() if callable(c) else (c or ()))


def bound(value: Bound, obj: Any = None, limits: Any = None) -> Any:
    """A declared bound's number: a Limits attribute's value (the default Limits without
    ``limits``), a callable's result, or the number itself."""
    if isinstance(value, str):
        return getattr(limits if limits is not None else Limits(), value)
    if callable(value):
        return value(obj, limits)
    return value


def bounds(cls_or_obj: Any, name: str, limits: Any = None, obj: Any = None) -> tuple:
    """``(lo, hi)`` of a setting, bounds resolved against ``limits`` (and ``obj``)."""
    s = declared(cls_or_obj, name)
    obj = obj if obj is not None else (None if isinstance(cls_or_obj, type) else cls_or_obj)
    return bound(s.lo, obj, limits), bound(s.hi, obj, limits)


def label_of(cls_or_obj: Any, name: str, prefix: str = "") -> str:
    """How errors name a setting: its config key and, where it has one, its flag
    (``data.n_frames (--frames)``)."""
    s = declared(cls_or_obj, name)
    return f"{prefix}{name}" + (f" ({s.flag})" if s.flag else "")


def check(obj: Any, name: str, limits: Any = None, prefix: str = "", *,
          label: Optional[str] = None, value: Any = dataclasses.MISSING) -> Any:
    """``obj.name`` (or ``value``, with ``obj`` an instance or the config class) checked against the field's declaration: within its range
    (a whole number for an int field) or among its choices; else a one-line InputError naming
    the setting (``label``, default :func:`label_of`) and what it allows. Returns the value."""
    s = declared(obj, name)
    v = getattr(obj, name) if value is dataclasses.MISSING else value
    label = label or label_of(obj, name, prefix)
    if s.choices is not None:
        return choice(label, v, choices_of(obj, name))
    lo, hi = bounds(obj, name, limits)
    kind = kind_of(obj if isinstance(obj, type) else type(obj), name)
    if kind == "int":
        return whole(label, v, lo if lo is not None else -(2**63), hi, s.hint)
    if kind == "float":
        return number(label, v, -math.inf if lo is None else lo,
                      math.inf if hi is None else hi, open_lo=s.open_lo, open_hi=s.open_hi,
                      hint=s.hint)
    return v


# ----------------------------------------------------------------------------- the checks

def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def whole(name: str, value: Any, lo: int, hi: Optional[int] = None, hint: str = "") -> int:
    """``value`` as an int within ``lo..hi`` (``hi`` None: no upper bound)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_int(value):
        raise InputError(f"{name} must be a whole number, got {value!r}.")
    value = int(value)
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
