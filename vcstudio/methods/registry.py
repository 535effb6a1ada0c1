"""Method name -> TuneMethod class and instance; ``a+b`` composes methods (methods/compose.py).

Everything outside methods/ asks this module about methods (names, presets, the parts a config
tunes, their cost, paper defaults, benchmark settings, their config sections and switches)
instead of testing a method's name. The built-in methods register themselves below with
:func:`register`, as a new method does (one module + one ``register`` call).
Imports point one way: the method modules never import this registry (combined tuning gets
its base method's instance handed in), so there is no import cycle here.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ..errors import InputError
from .base import Cost, Plotted, Preset, TuneMethod


def _dit_dct() -> type[TuneMethod]:
    from .dit import DCTOnDiT

    return DCTOnDiT


def _dit_apla() -> type[TuneMethod]:
    from .dit import APLAOnDiT

    return APLAOnDiT


# each method's variant on a flow DiT (methods/dit.py); the baseline needs none (LoRA + MSE)
_DIT_CLASSES = {"baseline": lambda: TuneMethod, "dct": _dit_dct, "apla": _dit_apla}
# methods that edit a clip without tuning: name -> (families, what it is)
TRAINING_FREE = {"flowedit": (("wan",), "FlowEdit (Kulikov et al. 2024): inversion-free, no "
                              "tuning, on a flow-matching model")}
_CLASSES: dict[str, type[TuneMethod]] = {}
_PICKABLE: list[str] = []  # what the method pickers offer, in order
_COMBINABLE: list[str] = []  # parts that stack in one run (see methods/compose.py)
# the backbone families (models/family.py) each method runs on
BACKBONES: dict[str, tuple[str, ...]] = {}


def register(cls: type[TuneMethod], *, pickable: bool = True, combinable: bool = False,
             backbones: tuple[str, ...] = ("sd",)) -> type[TuneMethod]:
    """Make ``cls`` a method named ``cls.name``: its config section joins TuneConfig
    (``cfg.<name>``), its switches the CLI's flags and the UI's method panel, its presets
    Compare's variants. ``pickable``: the method pickers offer it (a wrapper needing extra
    inputs, as combined tuning's masks, is left to the surfaces that give them);
    ``combinable``: it stacks with the others (``apla+dct``)."""
    from ..config import register_section

    name = cls.name
    if name in TRAINING_FREE or "+" in name or not name.strip():
        raise ValueError(f"{name!r} cannot name a tuning method")
    _CLASSES[name] = cls
    BACKBONES[name] = tuple(backbones)
    if cls.config is not None:
        register_section(name, cls.config)
    if pickable and name not in _PICKABLE:
        combo = [i for i, n in enumerate(_PICKABLE) if "+" in n]  # combinations stay last
        _PICKABLE.insert(combo[0] if combo else len(_PICKABLE), name)
    if combinable and name not in _COMBINABLE:
        _COMBINABLE.append(name)
    return cls


def unregister(name: str) -> None:
    """Forget a method :func:`register` added (a test's toy method)."""
    from ..config import unregister_section

    _CLASSES.pop(name, None)
    BACKBONES.pop(name, None)
    unregister_section(name)
    for table in (_PICKABLE, _COMBINABLE):
        if name in table:
            table.remove(name)


def _register_builtins() -> None:
    from .apla import APLAMethod  # APLA paper
    from .dct import DCTMethod  # DCT paper
    from .fgbg_method import FgBgMethod  # combined tuning, consistency-tuning paper eq. 20

    # On a video DiT (Wan2.1) the baseline is one-shot LoRA tuning with the rectified-flow loss
    # (pipelines/flow/run.py); DCT's and APLA's DiT terms exist as parts (methods/dit.py) but no
    # Wan tune drives them yet
    register(TuneMethod, backbones=("sd", "wan"))
    # on a video DiT (Wan2.1) the baseline is one-shot LoRA tuning with the rectified-flow
    # loss (pipelines/flow/run.py), and DCT / APLA add their terms to it (methods/dit.py; the
    # MS-Adapter is off there); fg/bg stays Stable-Diffusion-only
    register(DCTMethod, combinable=True, backbones=("sd", "wan"))
    register(APLAMethod, combinable=True, backbones=("sd", "wan"))
    _PICKABLE.append("apla+dct")
    # fgbg needs masks: the CLI and Long Video offer it
    register(FgBgMethod, pickable=False)


def pickable() -> tuple[str, ...]:
    """What the method pickers offer, in order (the combination last)."""
    return tuple(_PICKABLE)


def combinable() -> tuple[str, ...]:
    return tuple(_COMBINABLE)


def registered() -> dict[str, type[TuneMethod]]:
    """Every tuning method by name, in registration order."""
    return dict(_CLASSES)


_FAMILY_LABEL = {"sd": "Stable Diffusion", "wan": "Wan2.1"}


def is_training_free(name: str) -> bool:
    """Whether ``name`` edits without tuning (FlowEdit): no tune job runs for it."""
    return str(name).strip() in TRAINING_FREE


def all_method_names() -> tuple[str, ...]:
    """Every name a method picker offers: the tuned methods and the training-free ones."""
    return method_names() + tuple(TRAINING_FREE)


def check_backbone(name: str, family: str) -> str:
    """``name`` if it runs on a ``family`` base model, else a one-line InputError saying what
    runs there."""
    if is_training_free(name):
        fams = TRAINING_FREE[str(name).strip()][0]
    else:
        fams = tuple(set.intersection(*(set(BACKBONES.get(n, ("sd",))) for n in
                                        _split(check_name(name)))))
    if family in fams:
        return name
    label = _FAMILY_LABEL.get(family, family)
    here = [n for n in all_method_names() if family in
            (TRAINING_FREE[n][0] if n in TRAINING_FREE else
             set.intersection(*(set(BACKBONES.get(p, ("sd",))) for p in _split(n))))]
    where = " or ".join(_FAMILY_LABEL.get(f, f) for f in fams)
    raise InputError(f"Method {name} runs on {where} base models, not on {label}; on {label} "
                     f"pick {', '.join(here)}.")


def method_names(include_wrappers: bool = True) -> tuple[str, ...]:
    """Every name ``TuneConfig.method`` accepts (combinations as written, e.g. apla+dct);
    ``include_wrappers``: the ones the pickers leave out too (fgbg)."""
    rest = tuple(n for n in _CLASSES if n not in _PICKABLE) if include_wrappers else ()
    return pickable() + rest


def _split(name: str) -> list[str]:
    return [n.strip() for n in str(name).split("+")]


def check_name(name: str) -> str:
    """``name`` if it is a method (or a valid combination), else an InputError naming the
    choices."""
    names = _split(name)
    if len(names) > 1:
        bad = [n for n in names if n not in combinable()] or (
            [names[0]] if len(set(names)) < len(names) else [])
        if bad:
            raise InputError(f"Cannot combine {name!r}: only {' and '.join(combinable())} "
                             "stack, each once (e.g. apla+dct).")
        return name
    if names[0] in TRAINING_FREE:
        raise InputError(f"{name} needs no tuning: edit with it directly (`vcstudio edit --video "
                         f"CLIP --model WAN --method {name} --source-prompt ... --prompt ...`).")
    if names[0] not in _CLASSES:
        raise InputError(f"Unknown method {name!r}; choose {', '.join(method_names())}.")
    return name


def method_class(name: str) -> type[TuneMethod]:
    """The class of a single method name (not a combination)."""
    check_name(name)
    if "+" in str(name):
        raise InputError(f"{name!r} is a combination; ask for its parts.")
    return _CLASSES[_split(name)[0]]


def part_classes(cfg) -> list[type[TuneMethod]]:
    """The classes whose modules and losses a run tuned with ``cfg`` holds: the parts of a
    combination, and under a wrapper (combined tuning) the method it wraps."""
    names = _split(check_name(cfg.method))
    if len(names) > 1:
        return [method_class(n) for n in names]
    cls = method_class(names[0])
    inner = _inner(cls, cfg)
    if inner is not None:
        return [cls, *part_classes(dataclasses.replace(cfg, method=inner))]
    return [cls]


def underlying(cfg) -> str:
    """The method whose modules a run tuned with ``cfg`` holds (combined tuning keeps the
    tuned run's method underneath it)."""
    if "+" in str(cfg.method):
        return str(cfg.method)
    return _inner(method_class(cfg.method), cfg) or str(cfg.method)


def cost(cfg) -> Cost:
    """The summed extra memory and the product of the time factors of ``cfg``'s parts."""
    gib, factor = 0.0, 1.0
    for cls in part_classes(cfg):
        c = cls.cost(cfg)
        gib, factor = gib + c.gib, factor * c.time_factor
    return Cost(gib, factor)


def reads(cfg, section: str) -> bool:
    """Whether a run tuned with ``cfg`` reads the TuneConfig section ``section`` ("dct")."""
    return any(section in cls.sections for cls in part_classes(cfg))


def paper_defaults(name: str) -> Mapping[str, Any]:
    """TuneConfig fields a method takes from its paper when the user leaves them unset."""
    return {} if "+" in str(name) else method_class(name).paper_defaults


def bench_config(cfg, **opts):
    """``(cfg, label)`` for ``vcstudio bench``: each part's benchmark settings applied."""
    labels = []
    for cls in part_classes(cfg):
        cfg, label = cls.bench_config(cfg, **opts)
        if label:
            labels.append(label)
    return cfg, "; ".join(labels)


def plotted_terms(cfg=None) -> dict[str, Plotted]:
    """The logged terms a loss plot draws, by log key, in drawing order (the denoising loss
    first): what the methods of a run tuned with ``cfg`` declare in their ``plotted`` (every
    method's when ``cfg`` is None). A term no part declares (grad_norm, the weighted copies,
    the baseline's total, which is its loss) is not drawn."""
    classes = [TuneMethod, *part_classes(cfg)] if cfg is not None else [
        TuneMethod, *_CLASSES.values()]
    out: dict[str, Plotted] = {}
    for cls in classes:
        for p in cls.plotted:
            out.setdefault(p.term, p)
    return out


def presets() -> dict[str, Preset]:
    """Every method's named presets by id, in picker order (baseline, DCT's Table 2/3 rows,
    APLA's Table 3 rows, the combination)."""
    from .compose import ComposedMethod

    out: dict[str, Preset] = {}
    for name, cls in [*_CLASSES.items(), ("", ComposedMethod)]:
        if name and name not in _PICKABLE:
            continue
        # a method that declares no presets of its own is its own preset (the baseline's
        # would otherwise be inherited)
        own = cls.__dict__.get("presets")
        for p in own if own is not None else (Preset(name, name, {"method": name}),):
            out[p.id] = p
    return out


def find_preset(key: str) -> Preset:
    """A preset by id or label; a bare method name is its own preset."""
    table = presets()
    if key in table:
        return table[key]
    for p in table.values():
        if p.label == key:
            return p
    try:
        check_name(key)
    except InputError:
        raise InputError(f"Unknown method or preset {key!r}; choose one of "
                         f"{', '.join(table)}.") from None
    return Preset(key, key, {"method": key})


def apply_changes(cfg, changes: Mapping[str, Any]):
    """A copy of ``cfg`` with dotted fields set (``{"dct.clws": "gaussian"}``)."""
    for key, value in changes.items():
        cfg = _set(cfg, key.split("."), value)
    return cfg


def _set(obj, path: list[str], value):
    names = {f.name for f in dataclasses.fields(obj)} | set(getattr(obj, "sections", {}))
    if path[0] not in names:
        raise InputError(f"Unknown setting {'.'.join(path)!r} in {type(obj).__name__}.")
    if len(path) == 1:
        return dataclasses.replace(obj, **{path[0]: value})
    return dataclasses.replace(obj, **{path[0]: _set(getattr(obj, path[0]), path[1:], value)})


def get_method(cfg) -> TuneMethod:
    """cfg is a TuneConfig; its ``method`` names the method, or ``apla+dct`` for both."""
    names = _split(check_name(cfg.method))
    if len(names) > 1:
        from .compose import ComposedMethod

        return ComposedMethod(cfg, [get_method(dataclasses.replace(cfg, method=n))
                                    for n in names])
    cls = method_class(names[0])
    inner = _inner(cls, cfg)
    if inner is None:
        return cls(cfg)
    # a wrapper (combined tuning) over the run's own method, built first and handed in
    return cls(cfg, inner=get_method(dataclasses.replace(cfg, method=inner)))


def get_flow_method(cfg) -> TuneMethod:
    """The method of ``cfg`` for a flow DiT's LoRA tune (methods/dit.py): its parts' DiT
    variants, composed as on SD (``apla+dct``); a method with no DiT variant is an
    InputError saying what runs there."""
    names = _split(check_name(cfg.method))
    bad = [n for n in names if n not in _DIT_CLASSES]
    if bad:
        check_backbone(cfg.method, "wan")  # the one-line refusal naming what runs on Wan2.1
    if len(names) > 1:
        from .compose import ComposedMethod

        return ComposedMethod(cfg, [get_flow_method(dataclasses.replace(cfg, method=n))
                                    for n in names])
    return _DIT_CLASSES[names[0]]()(cfg)


def flow_cost(cfg, frames: int, height: int, width: int) -> tuple[float, float]:
    """(extra FLOPs per training step, extra GiB) of ``cfg``'s parts on a flow DiT at this clip
    shape (each DiT variant's ``flow_cost``; 0 for the baseline)."""
    flops = gib = 0.0
    for n in _split(check_name(cfg.method)):
        cls = _DIT_CLASSES.get(n, lambda: TuneMethod)()
        f, g = cls.flow_cost(cfg, frames, height, width) if hasattr(cls, "flow_cost") \
            else (0.0, 0.0)
        flops, gib = flops + f, gib + g
    return flops, gib


def _inner(cls: type[TuneMethod], cfg) -> str | None:
    """The method ``cls`` wraps for ``cfg`` (None: it wraps nothing); a wrapper of itself is
    an InputError."""
    inner = cls.underlying(cfg)
    if inner == str(cfg.method):
        return None
    if inner == cls.name:
        raise InputError(f"{cls.name}.base_method must be the run's own method "
                         f"({', '.join(pickable())}).")
    check_name(inner)
    return inner


_register_builtins()
