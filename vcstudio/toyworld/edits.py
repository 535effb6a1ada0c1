"""Ground-truth edit cases: a toy source clip and, for an edit that changes one attribute
(colour, shape or background) and keeps everything else -- size, texture, trajectory -- the
exact target clip the renderer draws.

:func:`edit_cases` draws N cases from a seed: sources from the held-out (shape, colour,
background) combinations (a permutation, cycled), the changed attribute cycling colour, shape,
background, and motions cycled so that every 18 cases hold each (motion, attribute) pair once.
The new value is drawn among those that differ and keep the object visible (``valid_combo``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .render import render_clip
from .world import (BACKGROUNDS, COLOURS, MOTIONS, SHAPES, Clip, caption, combos, random_scene,
                    valid_combo, with_)

ATTRIBUTES = ("colour", "shape", "background")  # what an edit case changes, in turn
_VALUES = {"colour": tuple(COLOURS), "shape": SHAPES, "background": tuple(BACKGROUNDS)}


@dataclass(frozen=True)
class EditCase:
    """One edit with its known answer: ``target`` is ``source`` with ``changed`` replaced."""

    source: Clip
    target: Clip
    changed: str | tuple[str, ...]  # one of ATTRIBUTES (a bundled example's edit: several)

    @property
    def source_prompt(self) -> str:
        """What the source clip shows (the tuning prompt)."""
        return caption(self.source.scene, self.source.motion)

    @property
    def edit_prompt(self) -> str:
        """What the edit should show: the target's caption."""
        return caption(self.target.scene, self.target.motion)

    @property
    def changed_attributes(self) -> tuple[str, ...]:
        return (self.changed,) if isinstance(self.changed, str) else tuple(self.changed)

    @property
    def kept(self) -> tuple[str, ...]:
        return tuple(a for a in ATTRIBUTES if a not in self.changed_attributes)

    def expected(self) -> dict[str, str]:
        """The checker's attributes of the target: {"shape", "colour", "background"}."""
        s = self.target.scene
        return {"shape": s.shape, "colour": s.colour, "background": s.background}

    def render(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(source, target) frames, uint8 (F, size, size, 3) each."""
        return render_clip(self.source, size), render_clip(self.target, size)


def _new_value(rng: np.random.Generator, scene, attribute: str) -> str:
    now = getattr(scene, attribute)
    options = []
    for v in _VALUES[attribute]:
        t = with_(scene, **{attribute: v})
        if v != now and valid_combo(t.shape, t.colour, t.background):
            options.append(v)
    return options[int(rng.integers(len(options)))]


def edit_cases(n: int, seed: int = 0, n_frames: int = 8) -> list[EditCase]:
    """``n`` edit cases, the same for the same ``seed`` (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    held = combos("heldout")
    order = rng.permutation(len(held))
    motions = [list(MOTIONS)[int(k)] for k in rng.permutation(len(MOTIONS))]
    out = []
    for i in range(n):
        combo = held[int(order[i % len(held)])]
        # (i + i // 6) % 6 against i % 3: 18 consecutive cases hold every (motion, attribute)
        motion = motions[(i + i // len(motions)) % len(motions)]
        changed = ATTRIBUTES[i % len(ATTRIBUTES)]
        scene = random_scene(rng, combo=combo, motion=motion)
        target = with_(scene, **{changed: _new_value(rng, scene, changed)})
        out.append(EditCase(Clip(scene, motion, n_frames), Clip(target, motion, n_frames),
                            changed))
    return out
