"""What every command shares: the Studio it runs jobs on (the job registry, the run store of
``--data`` / ``$VCSTUDIO_DATA``), running a job with tqdm progress, and the ``--json [PATH]``
convention (JSON to PATH, or to stdout without one; the human-readable lines then go to
stderr so stdout stays parseable)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

from ..errors import VcsError


def add_json_arg(p, what: str = "the results") -> None:
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help=f"write {what} as JSON to PATH (stdout without one)")


def add_setting_flags(p, cls, *names: str) -> None:
    """:func:`add_setting_flag` for each of ``names``, defaulting to the config's values."""
    from ..settings import default_of

    for name in names:
        add_setting_flag(p, cls, name, default=default_of(cls, name))


def add_setting_flag(p, cls, name: str, flag: str = "", **kw):
    """A flag made from a config field's declaration (vcstudio/settings.py): its flag name,
    type, choices and help. Not given, it reads None (the config's own value stays); a switch
    that is on by default is a ``--no-...`` flag that turns it off, one off by default a flag
    that turns it on. A range is the job's to check (one message on every surface)."""
    from ..settings import choices_of, declared, default_of, kind_of

    s = declared(cls, name)
    flag = flag or s.flag or "--" + name.replace("_", "-")
    kind = kind_of(cls, name)
    opts: dict = {"default": None, "help": s.help or None}
    if kind == "bool":
        opts.update(action="store_const", const=not default_of(cls, name))
    else:
        choices = [c for c in choices_of(cls, name) if c != ""]
        if choices:
            opts["choices"] = choices
        else:
            opts["metavar"] = name.split("_")[-1].upper()
            if kind in ("int", "float"):
                opts["type"] = int if kind == "int" else float
    opts.update(kw)
    return p.add_argument(flag, **opts)


def add_method_flags(p) -> None:
    """Every registered method's switches as flags (methods/<name>.py declares them), one
    argument group per method; :func:`method_overrides` applies what was given."""
    from ..methods.registry import registered

    for name, cls in registered().items():
        if cls.config is None or not cls.switches:
            continue
        g = p.add_argument_group(f"{name} switches")
        for f in cls.switches:
            add_setting_flag(g, cls.config, f, _method_flag(name, cls.config, f),
                             dest=f"method__{name}__{f}")


def _method_flag(method: str, cls, field: str) -> str:
    from ..settings import declared

    return declared(cls, field).flag or f"--{method}-{field.replace('_', '-')}"


def method_overrides(cfg, a):
    """``cfg`` with the method switches given on the command line set in their sections."""
    import dataclasses

    from ..methods.registry import registered

    for name, cls in registered().items():
        given = {f: getattr(a, f"method__{name}__{f}", None) for f in cls.switches}
        given = {f: v for f, v in given.items() if v is not None}
        if given:
            cfg = dataclasses.replace(cfg, **{name: dataclasses.replace(getattr(cfg, name),
                                                                        **given)})
    return cfg


def add_temporal_args(p) -> None:
    """--temporal/--motion-adapter (tune and bench): the two temporal-layer routes."""
    from ..config import TuneConfig

    add_setting_flag(p, TuneConfig, "temporal")
    p.add_argument("--motion-adapter", metavar="ID_OR_FOLDER",
                   help="with --temporal animatediff: a diffusers MotionAdapter (hub id or "
                   "folder) to start from; default: fresh motion modules")


def temporal_overrides(a) -> dict:
    return {k: v for k, v in (("temporal", a.temporal), ("motion_adapter", a.motion_adapter))
            if v is not None}


def add_control_args(p, what: str = "the edit") -> None:
    """--control/--control-model/--control-video (edit, long, tune, bench): structure
    conditions, each paired in order with its model and (optional) video."""
    p.add_argument("--control", action="append", default=[], metavar="KIND[:SCALE[:START:END]]",
                   help=f"a structure condition steering {what}: canny (OpenCV), depth "
                   "(transformers depth model), pose (needs controlnet-aux) or video (uploaded "
                   "condition frames); SCALE multiplies it, START/END are shares of the steps. "
                   "Repeatable")
    p.add_argument("--control-model", action="append", default=[], metavar="ID_OR_FOLDER",
                   help="a ControlNet or T2I-Adapter (hub id or folder) per --control, in order "
                   "(one given = for all)")
    p.add_argument("--control-video", action="append", default=[], metavar="PATH",
                   help="per --control: the condition video (kind video) or the clip to extract "
                   "from (default: the tuned clip); one given goes to the video kinds (to all "
                   "when there are none)")
    p.add_argument("--depth-model", default="", metavar="ID_OR_FOLDER",
                   help="the transformers depth-estimation model for depth conditions")


def control_from_args(a) -> list:
    """The ControlConfigs the --control flags describe (one-line errors on a count mismatch)."""
    from ..control import parse_control
    from ..errors import InputError

    kinds = list(getattr(a, "control", None) or [])
    models = list(getattr(a, "control_model", None) or [])
    videos = list(getattr(a, "control_video", None) or [])
    if not kinds:
        if models or videos:
            raise InputError("--control-model/--control-video need a --control KIND (e.g. "
                             "--control canny).")
        return []

    def paired(values, flag):
        if len(values) in (0, 1):
            return values * len(kinds) if values else [""] * len(kinds)
        if len(values) != len(kinds):
            raise InputError(f"{len(values)} {flag} for {len(kinds)} --control: give one for "
                             "all, or one per --control in the same order.")
        return values

    parsed = [parse_control(t) for t in kinds]
    if len(videos) == 1 and len(kinds) > 1:
        # one video: the uploaded-condition ("video") entries take it; with none of those,
        # every condition is extracted from it (a long video's source clip)
        has_video_kind = any(c.kind == "video" for c in parsed)
        videos = [videos[0] if (c.kind == "video" or not has_video_kind) else ""
                  for c in parsed]
    out = []
    for c, model, video in zip(parsed, paired(models, "--control-model"),
                               paired(videos, "--control-video")):
        c.model, c.video = model, video
        c.depth_model = getattr(a, "depth_model", "") or ""
        out.append(c)
    return out


def text_out(args):
    """Where human-readable lines go: stderr when --json writes to stdout."""
    return sys.stderr if getattr(args, "json", None) == "-" else sys.stdout


def write_json(dest: Optional[str], obj: Any) -> None:
    """``--json`` output: to stdout for "-", else atomically to the file."""
    if dest is None:
        return
    text = json.dumps(obj, indent=1, default=str)
    if dest == "-":
        print(text)
        return
    from ..io.atomic import atomic_path

    path = Path(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def make_studio(args=None):
    """The CLI's Studio: the job registry, the data folder's store, desktop limits (the CLI's
    user owns the machine: the Space tiers are the app's), the given device."""
    from ..config import Limits
    from ..jobs import studio

    return studio(getattr(args, "data", None), limits=Limits(),
                  device=getattr(args, "device", None) or None)


def run_job(name: str, cfg: Any, args=None, *, out=None, resume_of: Optional[str] = None,
            studio=None):
    """Run job ``name`` in this process through ``Studio.run`` (same recording as the app),
    with tqdm bars on stderr; returns its result."""
    from ..progress import TqdmProgress

    own = studio is None
    studio = studio or make_studio(args)
    bar = TqdmProgress(stream=sys.stderr)
    try:
        return studio.run(name, cfg, progress=bar, out=out, resume_of=resume_of,
                          device=getattr(args, "device", None) or None)
    finally:
        bar.close()
        if own:
            studio.close()


def notice_if_embedded(model: Optional[str]) -> None:
    from ..models.loading import EMBEDDED_NOTICE

    if is_embedded(model):
        print(EMBEDDED_NOTICE, file=sys.stderr)


def is_embedded(model: Optional[str]) -> bool:
    from ..models.loading import resolve_model

    try:
        return resolve_model(model)[1]
    except VcsError:
        return False
