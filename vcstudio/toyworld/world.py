"""The toy world: what a scene is made of, how it is captioned, and the held-out split.

A scene is one object (shape, colour, size, texture) on one background; a clip moves it
(left/right/up/down, bouncing, growing). Geometry is stored in units of the image side so the
same scene renders at any resolution. Everything random is drawn from a seeded generator.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

# Names and their RGB. Object colours are chromatic only: white/black objects would vanish on
# the snow / night-sky backgrounds and make the checker's job ill-posed.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (245, 215, 40),
    "green": (50, 170, 70),
    "cyan": (40, 200, 215),
    "blue": (40, 80, 225),
    "purple": (140, 60, 190),
    "pink": (245, 120, 190),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")
# Radius of the object in units of the image side (shapes are drawn inside ~1.2 radii).
SIZES: dict[str, float] = {"small": 0.13, "medium": 0.18, "large": 0.24}
TEXTURES = ("solid", "striped", "dotted")
# Background name -> caption phrase.
BACKGROUNDS: dict[str, str] = {
    "white": "on a white background",
    "gray": "on a gray background",
    "black": "on a black background",
    "sky": "in the blue sky",
    "sunset": "at sunset",
    "beach": "on the beach",
    "grass": "on the grass",
    "snow": "in the snow",
    "night": "in the night sky",
}
# Motion name -> caption phrase (clips only).
MOTIONS: dict[str, str] = {
    "left": "moving left",
    "right": "moving right",
    "up": "moving up",
    "down": "moving down",
    "bouncing": "bouncing",
    "growing": "growing",
}
# How far past its radius a shape reaches (star / triangle / diamond tips), used for margins.
EXTENT = 1.2
MARGIN = 0.07  # object keeps this far from the image edge (the checker reads the borders)
TRAVEL = 0.35  # a moving object crosses at most this share of the image in one clip
GROW = (0.6, 1.3)  # a growing object scales its radius from 0.6x to 1.3x
STRIPE_SHADE = 0.55  # stripes are the colour times this
DOT_TINT = 0.6  # dots are the colour blended this far toward white
MIN_CONTRAST = 60.0  # RGB distance an object colour (and its stripe shade) keeps from its background


@dataclass(frozen=True)
class Scene:
    """One object on one background. ``cx, cy`` are the object's centre in units of the side."""

    shape: str
    colour: str
    background: str
    size: str = "medium"
    texture: str = "solid"
    cx: float = 0.5
    cy: float = 0.5
    seed: int = 0  # places the background's stars / snowflakes

    def __post_init__(self) -> None:
        for value, allowed, what in ((self.shape, SHAPES, "shape"), (self.colour, COLOURS, "colour"),
                                     (self.background, BACKGROUNDS, "background"),
                                     (self.size, SIZES, "size"), (self.texture, TEXTURES, "texture")):
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r}; choose one of {sorted(allowed)}")

    @property
    def radius(self) -> float:
        return SIZES[self.size]


@dataclass(frozen=True)
class Clip:
    """A scene whose object moves; ``scene.cx, cy`` is where the motion starts."""

    scene: Scene
    motion: str
    n_frames: int = 8

    def __post_init__(self) -> None:
        if self.motion not in MOTIONS:
            raise ValueError(f"unknown motion {self.motion!r}; choose one of {sorted(MOTIONS)}")


def caption(scene: Scene, motion: Optional[str] = None, *, size_word: bool = True,
            texture_word: bool = True) -> str:
    """Plain English: 'a large red striped circle moving right on the beach'.

    Medium size and solid texture are never spoken (they are the defaults a caption implies).
    """
    words = ["a"]
    if size_word and scene.size != "medium":
        words.append(scene.size)
    words.append(scene.colour)
    if texture_word and scene.texture != "solid":
        words.append(scene.texture)
    words.append(scene.shape)
    if motion:
        words.append(MOTIONS[motion])
    words.append(BACKGROUNDS[scene.background])
    return " ".join(words)


def short_caption(shape: str, colour: str, background: str, motion: Optional[str] = None) -> str:
    """The evaluation form: only the attributes the checker reads."""
    return caption(Scene(shape, colour, background), motion)


def all_captions() -> list[str]:
    """Every caption the world can produce (every attribute word spoken or not)."""
    out = []
    for s in SHAPES:
        for c in COLOURS:
            for b in BACKGROUNDS:
                for z in SIZES:
                    for t in TEXTURES:
                        for m in (None, *MOTIONS):
                            out.append(caption(Scene(s, c, b, z, t), m))
    return out


def vocabulary() -> list[str]:
    """Every word (as CLIP's pre-tokeniser splits it) that a world caption can contain."""
    from ..models.tokenizer import words_of

    return words_of(all_captions())


def background_rows(size: int) -> np.ndarray:
    """float32 (n_backgrounds, size, 3) RGB per image row: every background varies only by row.

    Keeping backgrounds row-wise (gradients top->bottom, horizon bands) lets the checker read the
    background from the left/right image borders. Stars and snowflakes are added on top.
    """
    y = (np.arange(size, dtype=np.float32) + 0.5) / size
    rows = []

    def flat(rgb):
        return np.broadcast_to(np.asarray(rgb, np.float32), (size, 3))

    def grad(top, bottom):
        t = y[:, None]
        return (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)

    def bands(edges_colours):
        out = np.zeros((size, 3), np.float32)
        lo = 0.0
        for hi, rgb in edges_colours:
            out[(y >= lo) & (y < hi)] = rgb
            lo = hi
        return out

    for name in BACKGROUNDS:
        if name == "white":
            rows.append(flat((240, 240, 240)))
        elif name == "gray":
            rows.append(flat((128, 128, 128)))
        elif name == "black":
            rows.append(flat((18, 18, 18)))
        elif name == "sky":
            rows.append(grad((80, 140, 225), (195, 222, 250)))
        elif name == "sunset":
            rows.append(grad((60, 30, 90), (250, 150, 80)))
        elif name == "beach":  # sky, sea, sand
            rows.append(bands([(0.3, (160, 205, 240)), (0.55, (30, 105, 160)), (1.01, (228, 205, 150))]))
        elif name == "grass":  # sky, grass
            rows.append(bands([(0.4, (160, 205, 240)), (1.01, (70, 140, 50))]))
        elif name == "snow":  # pale sky, snow field (+ flakes)
            rows.append(bands([(0.45, (195, 205, 220)), (1.01, (248, 248, 252))]))
        elif name == "night":  # (+ stars)
            rows.append(grad((8, 10, 35), (25, 30, 70)))
        else:  # pragma: no cover - BACKGROUNDS and this table are edited together
            raise AssertionError(name)
    return np.stack(rows).astype(np.float32)


def _contrast(colour: str, background: str) -> float:
    rows = background_rows(64)[list(BACKGROUNDS).index(background)]
    base = np.asarray(COLOURS[colour], np.float32)
    return float(min(np.linalg.norm(rows - c, axis=1).min() for c in (base, base * STRIPE_SHADE)))


_VALID = {(c, b): _contrast(c, b) >= MIN_CONTRAST for c in COLOURS for b in BACKGROUNDS}


def valid_combo(shape: str, colour: str, background: str) -> bool:
    """An object colour must stand out from every row of its background (else nobody can see it)."""
    return _VALID[(colour, background)]


def is_held_out(shape: str, colour: str, background: str) -> bool:
    """The fixed held-out rule: about 1 in 8 (shape, colour, background) combinations.

    (i_shape + 2 i_colour + 3 i_background) mod 8 == 0 leaves every (shape, colour) pair with
    7-8 training backgrounds, so a held-out combination is new only as a combination.
    """
    i_s, i_c, i_b = SHAPES.index(shape), list(COLOURS).index(colour), list(BACKGROUNDS).index(background)
    return (i_s + 2 * i_c + 3 * i_b) % 8 == 0


def combos(split: str = "train") -> list[tuple[str, str, str]]:
    """Valid (shape, colour, background) triples of a split: 'train', 'heldout' or 'all'."""
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"split must be train, heldout or all, not {split!r}")
    out = []
    for s in SHAPES:
        for c in COLOURS:
            for b in BACKGROUNDS:
                if not valid_combo(s, c, b):
                    continue
                h = is_held_out(s, c, b)
                if split == "all" or (split == "heldout") == h:
                    out.append((s, c, b))
    return out


MOTION_INDEX = {m: i for i, m in enumerate(MOTIONS)}  # -1 = a still image


def motion_geometry(radius, motion, sx, sy, t):
    """Vectorised geometry of the world: start box, then position at time t in [0, 1].

    radius (N,) base radius; motion (N,) int index into MOTIONS or -1 (still); sx, sy (N,) in
    [0, 1) place the start inside the box that keeps the whole motion within the margins.
    Returns cx, cy, r (N,) in units of the side. (Scene placement, clips and training batches
    all go through here, so a training frame is exactly a clip frame.)
    """
    radius, motion, sx, sy, t = (np.asarray(a, np.float64) for a in (radius, motion, sx, sy, t))
    m = {name: motion == i for name, i in MOTION_INDEX.items()}
    r_max = radius * np.where(m["growing"], GROW[1], 1.0)
    lo, hi = MARGIN + EXTENT * r_max, 1.0 - MARGIN - EXTENT * r_max
    d = np.clip(np.minimum(TRAVEL, hi - lo), 0.0, None)
    lx = np.where(m["left"], lo + d, lo)
    hx = np.where(m["right"], hi - d, hi)
    ly = np.where(m["up"] | m["bouncing"], lo + d, lo)  # a bounce rises from its start by d
    hy = np.where(m["down"], hi - d, hi)
    x0, y0 = lx + sx * (hx - lx), ly + sy * (hy - ly)
    cx = x0 + d * t * (m["right"].astype(float) - m["left"])
    cy = y0 + d * t * (m["down"].astype(float) - m["up"])
    cy = cy - np.where(m["bouncing"], d * np.abs(np.sin(2 * np.pi * t)), 0.0)  # two hops
    r = radius * np.where(m["growing"], GROW[0] + (GROW[1] - GROW[0]) * t, 1.0)
    return cx, cy, r


def place(rng: np.random.Generator, radius: float, motion: Optional[str] = None) -> tuple[float, float]:
    """A start centre that keeps the whole motion inside the margins."""
    mi = MOTION_INDEX[motion] if motion else -1
    cx, cy, _ = motion_geometry([radius], [mi], [rng.uniform()], [rng.uniform()], [0.0])
    return float(cx[0]), float(cy[0])


def _start_fraction(scene: Scene, mi: int) -> tuple[float, float]:
    """Invert the start box: where in it ``scene.cx, cy`` lies (so trajectories replay)."""
    c0x, c0y, _ = motion_geometry([scene.radius], [mi], [0.0], [0.0], [0.0])
    c1x, c1y, _ = motion_geometry([scene.radius], [mi], [1.0], [1.0], [0.0])
    fx = (scene.cx - c0x[0]) / max(c1x[0] - c0x[0], 1e-9)
    fy = (scene.cy - c0y[0]) / max(c1y[0] - c0y[0], 1e-9)
    return fx, fy


def trajectory(clip: Clip) -> np.ndarray:
    """float (F, 3): centre x, centre y and radius per frame, in units of the side."""
    s, f = clip.scene, clip.n_frames
    t = np.linspace(0.0, 1.0, f) if f > 1 else np.zeros(1)
    mi = MOTION_INDEX[clip.motion]
    fx, fy = _start_fraction(s, mi)
    cx, cy, r = motion_geometry(np.full(f, s.radius), np.full(f, mi), np.full(f, fx),
                                np.full(f, fy), t)
    return np.stack([cx, cy, r], 1).astype(np.float32)


def random_scene(rng: np.random.Generator, split: str = "train",
                 combo: Optional[tuple[str, str, str]] = None, motion: Optional[str] = None) -> Scene:
    """A random scene of a split (or of one given combination), placed to fit ``motion``."""
    if combo is None:
        options = combos(split)
        combo = options[int(rng.integers(len(options)))]
    shape, colour, bg = combo
    size = list(SIZES)[int(rng.integers(len(SIZES)))]
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    cx, cy = place(rng, SIZES[size], motion)
    return Scene(shape, colour, bg, size, texture, cx, cy, int(rng.integers(2**31 - 1)))


def random_clip(rng: np.random.Generator, split: str = "train", n_frames: int = 8,
                motion: Optional[str] = None, combo=None) -> Clip:
    motion = motion or list(MOTIONS)[int(rng.integers(len(MOTIONS)))]
    return Clip(random_scene(rng, split, combo, motion), motion, n_frames)


def with_(scene: Scene, **changes) -> Scene:
    """A copy of ``scene`` with some attributes changed (e.g. an edit's target)."""
    return dataclasses.replace(scene, **changes)


def held_out_prompts(n: int = 200, motion: Optional[str] = None) -> list[tuple[str, tuple[str, str, str]]]:
    """``n`` (caption, combo) pairs cycling over the held-out combinations (fixed order)."""
    held = combos("heldout")
    return [(short_caption(*held[i % len(held)], motion=motion), held[i % len(held)]) for i in range(n)]


def words_in(texts: Iterable[str]) -> set[str]:
    from ..models.tokenizer import words_of

    return set(words_of(texts))
