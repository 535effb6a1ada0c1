"""``vcstudio app``: start the Gradio studio."""
from __future__ import annotations


def add(sub) -> None:
    p = sub.add_parser("app", help="start the Gradio studio")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true")


def run(a) -> int:
    from ..ui import launch

    launch(host=a.host, port=a.port, share=a.share)
    return 0
