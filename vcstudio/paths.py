"""Where vcstudio keeps its data: ``$VCSTUDIO_DATA`` or the user data dir."""
from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    env = os.environ.get("VCSTUDIO_DATA")
    if env:
        p = Path(env)
    else:
        from platformdirs import user_data_dir

        p = Path(user_data_dir("vcstudio", appauthor=False))
    p.mkdir(parents=True, exist_ok=True)
    return p
