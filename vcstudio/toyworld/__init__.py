"""The toy world: procedurally drawn captioned scenes and clips, their checker, and the embedded
default model trained on them (``vcstudio toyworld train|eval|examples``)."""
from .checker import Detection, detect, detect_clip, track, track_correlation
from .render import render_clip, render_image, render_images
from .world import (BACKGROUNDS, COLOURS, MOTIONS, SHAPES, SIZES, TEXTURES, Clip, Scene, caption,
                    combos, held_out_prompts, random_clip, random_scene, vocabulary)

__all__ = ["BACKGROUNDS", "COLOURS", "MOTIONS", "SHAPES", "SIZES", "TEXTURES", "Clip", "Detection",
           "Scene", "caption", "combos", "detect", "detect_clip", "held_out_prompts", "random_clip",
           "random_scene", "render_clip", "render_image", "render_images", "track",
           "track_correlation", "vocabulary"]
