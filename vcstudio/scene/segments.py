"""Timed segment prompts: the prompt timeline of a long video.

A :class:`Segment` is one prompt over a half-open frame range ``[start, end)``. The scene parser,
the CLI (``--prompts``) and YAML timelines all produce lists of them; the co-denoising window
layout (``vcstudio.pipelines.long.windows``) maps them onto windows.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from ..errors import InputError


@dataclass(frozen=True)
class Segment:
    """One prompt for frames ``start .. end-1`` (half-open, like Python slices)."""

    prompt: str
    start: int
    end: int

    @property
    def frames(self) -> int:
        return self.end - self.start

    def to_dict(self) -> dict:
        return asdict(self)


def split_evenly(n_items: int, n_frames: int) -> list[tuple[int, int]]:
    """Frame ranges of ``n_items`` near-equal parts of ``n_frames`` (sizes differ by <= 1)."""
    if n_items < 1:
        raise InputError("Give at least one prompt.")
    if n_frames < n_items:
        raise InputError(f"{n_items} segments do not fit in {n_frames} frames: give at least "
                         f"one frame per segment (raise --frames or use fewer prompts).")
    bounds = [round(i * n_frames / n_items) for i in range(n_items + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def even_segments(prompts: Sequence[str], n_frames: int) -> list[Segment]:
    """``prompts`` split over ``n_frames`` in order, each getting an equal share."""
    prompts = [p.strip() for p in prompts]
    if any(not p for p in prompts):
        raise InputError("A segment prompt is empty; give text for every segment.")
    return [Segment(p, a, b) for p, (a, b) in zip(prompts, split_evenly(len(prompts), n_frames))]


def segments_from(items: Sequence, what: str = "the timeline") -> list[Segment]:
    """Segments written out: each item a mapping with ``prompt`` and either ``start`` / ``end``
    (end exclusive), or ``frames`` (consecutive, in order) -- all items the same way."""
    if not all(isinstance(it, dict) and "prompt" in it for it in items):
        raise InputError(f"Every segment in {what} needs a 'prompt' (and start/end or frames).")
    try:
        if all("start" in it and "end" in it for it in items):
            return [Segment(str(it["prompt"]), int(it["start"]), int(it["end"])) for it in items]
        if all("frames" in it for it in items):
            segs, t = [], 0
            for it in items:
                segs.append(Segment(str(it["prompt"]), t, t + int(it["frames"])))
                t += int(it["frames"])
            return segs
    except (TypeError, ValueError):
        raise InputError(f"A segment's start, end or frames in {what} is not a whole "
                         "number.") from None
    raise InputError(f"Segments in {what} must all give start/end, or all give frames.")


def timeline(n_frames: int, segments: Sequence = (), story: str = "",
             prompts: Sequence[str] = ()) -> list[Segment]:
    """The one timeline parser (the long job, its plan, the CLI's flags and YAML files): the
    ``segments`` written out (:func:`segments_from`), else the ``story`` read by the scene
    parser, else ``prompts`` split evenly; checked against ``n_frames``."""
    if segments:
        segs = segments_from(list(segments))
    elif story and story.strip():
        from .parser import story_segments

        segs = story_segments(story, n_frames)
    elif prompts:
        segs = even_segments(list(prompts), n_frames)
    else:
        raise InputError("Give the long video some prompts: a story, or one prompt per segment.")
    return check_segments(segs, n_frames)


def check_segments(segments: Iterable[Segment], n_frames: int) -> list[Segment]:
    """Validate a timeline: ranges inside ``[0, n_frames)``, non-empty prompts, every frame covered.

    Overlapping segments are allowed (interpolating windows blend them); gaps are not, because a
    frame without a prompt has nothing to be denoised towards. Returns the segments sorted by start.
    """
    segs = sorted(segments, key=lambda s: (s.start, s.end))
    if not segs:
        raise InputError("The timeline has no segments; give --prompts, --story or --timeline.")
    covered = [False] * n_frames
    for s in segs:
        if not s.prompt.strip():
            raise InputError(f"Segment {s.start}-{s.end} has an empty prompt.")
        if not (0 <= s.start < s.end <= n_frames):
            raise InputError(f"Segment '{s.prompt}' spans frames {s.start}-{s.end}, outside "
                             f"0-{n_frames} (end is exclusive); fix its range or --frames.")
        for f in range(s.start, s.end):
            covered[f] = True
    missing = [f for f, c in enumerate(covered) if not c]
    if missing:
        raise InputError(f"Frames {_ranges(missing)} have no prompt; extend a segment over them.")
    return segs


def _ranges(idx: list[int]) -> str:
    out, a = [], idx[0]
    for p, q in zip(idx, idx[1:] + [None]):
        if q != p + 1:
            out.append(f"{a}" if a == p else f"{a}-{p}")
            a = q
    return ", ".join(out)
