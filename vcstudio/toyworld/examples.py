"""The example clips the app offers with the toy model: rendered clips + prompts that the toy
model knows (its vocabulary is the world's)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..io import write_mp4
from .edits import ATTRIBUTES, EditCase
from .render import render_clip
from .world import Clip, Scene, caption, with_

# (scene, motion, edit targets as attribute changes)
EXAMPLES = [
    (Scene("circle", "red", "beach", "medium", "solid", 0.25, 0.7), "right",
     [dict(shape="square", colour="blue"), dict(colour="yellow", shape="star")]),
    (Scene("square", "blue", "grass", "medium", "striped", 0.7, 0.7), "left",
     [dict(shape="triangle", colour="red"), dict(texture="dotted", colour="pink")]),
    (Scene("star", "yellow", "night", "medium", "solid", 0.5, 0.75), "bouncing",
     [dict(shape="circle", colour="cyan"), dict(colour="red")]),
    (Scene("triangle", "green", "snow", "small", "solid", 0.5, 0.5), "growing",
     [dict(shape="diamond", colour="purple"), dict(colour="orange", shape="cross")]),
    (Scene("diamond", "pink", "sky", "medium", "dotted", 0.5, 0.72), "up",
     [dict(shape="circle", colour="red"), dict(shape="star", colour="purple")]),
]


def example_clips(n_frames: int = 8) -> list[tuple[str, Clip, list[str]]]:
    """(name, clip, edit prompts) for every example."""
    out = []
    for scene, motion, edits in EXAMPLES:
        clip = Clip(scene, motion, n_frames)
        name = f"{scene.colour}_{scene.shape}_{motion}_{scene.background}"
        out.append((name, clip, [caption(with_(scene, **e), motion) for e in edits]))
    return out


def example_cases(n_frames: int = 8) -> list[EditCase]:
    """The app's bundled examples and their suggested edits as ground-truth cases (what a new
    user tries first): each changes the shape or texture and the colour at once. The checker
    scores shape, colour and background; a texture change shows only in PSNR / SSIM."""
    out = []
    for scene, motion, edits in EXAMPLES:
        for e in edits:
            changed = tuple(a for a in ATTRIBUTES if a in e)
            out.append(EditCase(Clip(scene, motion, n_frames),
                                Clip(with_(scene, **e), motion, n_frames),
                                changed[0] if len(changed) == 1 else changed))
    return out


def write_examples(out_dir: str | Path = "assets/examples", size: int = 64, n_frames: int = 8,
                   fps: float = 8.0) -> Path:
    """Write ``<name>.mp4`` per example and ``prompts.json`` ([{video, prompt, edits}])."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for name, clip, edits in example_clips(n_frames):
        frames = render_clip(clip, size)
        write_mp4(frames, out / f"{name}.mp4", fps=fps)
        index.append({"video": f"{name}.mp4", "prompt": caption(clip.scene, clip.motion),
                      "edits": edits, "frames": n_frames, "size": size, "fps": fps})
    (out / "prompts.json").write_text(json.dumps(index, indent=1))
    return out


def test_clip(motion: str = "right", shape: str = "circle", colour: str = "red",
              background: str = "beach", n_frames: int = 8, size: int = 64) -> np.ndarray:
    """A fixed clip for tests (uint8 (F, H, W, 3)): default 'a red circle moving right on the beach'."""
    start = {"right": (0.25, 0.6), "left": (0.75, 0.6), "up": (0.5, 0.75), "down": (0.5, 0.25),
             "bouncing": (0.5, 0.75), "growing": (0.5, 0.5)}[motion]
    return render_clip(Clip(Scene(shape, colour, background, "medium", "solid", *start), motion, n_frames), size)
