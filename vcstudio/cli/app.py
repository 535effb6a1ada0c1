"""``vcstudio app``: start the Gradio studio."""
from __future__ import annotations


def add(sub) -> None:
    p = sub.add_parser("app", help="start the Gradio studio")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true")
    p.add_argument("--model", default=None,
                   help="the studio's default base model (a hub id, an alias such as sd15, sd21, "
                        "wan-1.3b, demo, or a local folder); as VCSTUDIO_MODEL, it wins over the "
                        "default (SD 1.5 with a GPU and network or in the cache, else the demo "
                        "model). Each tab's picker still offers the others")


def run(a) -> int:
    import os

    from ..ui import launch

    if a.model:  # an alias is resolved already (cli.parse)
        os.environ["VCSTUDIO_MODEL"] = a.model

    launch(host=a.host, port=a.port, share=a.share)
    return 0
