"""``vcstudio toyworld``: the embedded demo model: train, eval, examples."""
from __future__ import annotations


def add(sub) -> None:
    from ..toyworld.command import add_toyworld_args

    add_toyworld_args(sub.add_parser("toyworld", help="the embedded demo model: train, eval, "
                                                      "examples"))


def run(a) -> int:
    from ..toyworld.command import run_toyworld

    return run_toyworld(a)
