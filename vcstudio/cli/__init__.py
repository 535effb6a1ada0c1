"""The same jobs headless: tune, edit, long, compare, sweep, i2v, eval, push, runs, resume,
bench, convert-tav (one module per command).

Every job command runs its job in this process through ``Studio.run`` (the job registry, the
run store: a CLI run is listed by ``vcstudio runs`` beside the app's and the API's). Progress
bars go to stderr; the path a job wrote is the LAST line of stdout, so scripts can chain
``run=$(vcstudio tune ... | tail -n1)``. User errors print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from ..errors import VcsError

# command -> module (each has add(subparsers) and run(args) -> int); i2v's three commands share
# one module
COMMANDS = ("tune", "edit", "long", "compare", "sweep", "eval", "push", "runs", "resume", "i2v",
            "toyworld", "bench", "app", "convert-tav")
_I2V = {"i2v": "run_i2v", "i2v-tune": "run_i2v_tune", "i2v-eval": "run_i2v_eval",
        "eval-vcd": "run_eval_vcd"}


def tune_config_from_args(a):
    """The TuneConfig the tune flags describe (see cli/tune.py)."""
    from .tune import tune_config_from_args as f

    return f(a)


def _module(name: str):
    return importlib.import_module(f"{__name__}.{name.replace('-', '_')}")


def _add_i2v(sub) -> None:
    from . import i2v

    i2v.add_i2v_args(sub.add_parser("i2v", help="image-to-video generation (SVD, LTX-Video, "
                                                 "Wan2.1 I2V)"))
    i2v.add_i2v_tune_args(sub.add_parser("i2v-tune", help="VCD reward LoRA tuning"))
    i2v.add_i2v_eval_args(sub.add_parser("i2v-eval", help="base vs VCD-tuned over seeds: "
                                         "VBench-I2V columns, VCD, CLIP, 95%% intervals"))
    i2v.add_eval_vcd_args(sub.add_parser("eval-vcd", help="Video Consistency Distance"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vcstudio", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        if name == "i2v":
            _add_i2v(sub)
        else:
            _module(name).add(sub)
    return parser


def _handler(command: str):
    if command in _I2V:
        return getattr(_module("i2v"), _I2V[command])
    return _module(command).run


def parse(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The parsed command line; ``--model`` takes the app's picker aliases too (sd15, sd21,
    wan-1.3b, demo: models/catalog.py ``resolve_alias``), so every command sees a hub id or a
    path."""
    a = build_parser().parse_args(argv)
    if isinstance(getattr(a, "model", None), str) and a.model:
        from ..models.catalog import resolve_alias

        a.model = resolve_alias(a.model)
    return a


def main(argv: Optional[Sequence[str]] = None) -> int:
    a = parse(argv)
    try:
        return _handler(a.command)(a)
    except VcsError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
