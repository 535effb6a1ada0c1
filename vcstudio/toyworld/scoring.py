"""Per-frame scores of an edited toy clip against the known answer (``vcstudio bench toy-edit``).

Given the edit, the source clip, the rendered target clip, the attributes the target shows and
the attribute(s) the edit changes, the classical checker (checker.py) reads every frame:

- ``changed_attribute_acc``: share of frames where the changed attribute reads as the
  target's value (a frame with no object found reads as nothing: wrong); for an edit that
  changes several (the bundled examples change shape and colour at once), the share of
  (frame, changed attribute) pairs;
- ``kept_attribute_acc``: share of (frame, kept attribute) pairs that read as the target's
  value, which is the source's (the background is read even where no object is found);
- ``track_error_pct``: mean over frames of the distance between the edit's object centroid
  and the source's, in % of the image side; a frame where either has no object scores 100;
- ``psnr`` / ``ssim``: against the rendered target (metrics/recon.py: PSNR in dB, Gaussian
  SSIM; mean over frames);
- ``consistency``: CLIP frame consistency of the edit, adjacent frames (metrics/clip_scores.py:
  100 x mean cosine, what Compare reports), with the given encoder (None: the default one,
  offline the embedded toy CLIP; ``False``: not computed, NaN).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .checker import Detection, detect_clip

SCORES = ("changed_attribute_acc", "kept_attribute_acc", "track_error_pct", "psnr", "ssim",
          "consistency")
LOWER_IS_BETTER = ("track_error_pct",)
MISSING_TRACK_PCT = 100.0  # a frame whose object is lost


@dataclass
class EditScores:
    changed_attribute_acc: float
    kept_attribute_acc: float
    track_error_pct: float
    psnr: float
    ssim: float
    consistency: float
    per_frame: dict[str, list[float]] = field(default_factory=dict)  # score -> one per frame

    def summary(self) -> dict[str, float]:
        """The per-clip numbers, by name (SCORES)."""
        return {k: float(getattr(self, k)) for k in SCORES}


def _reads(d: Detection, attribute: str):
    if attribute == "background":
        return d.background
    return getattr(d, attribute) if d.found else None


def attribute_agreement(detections: list[Detection], expected: Mapping[str, str],
                        attributes) -> np.ndarray:
    """float (F,): per frame, the share of ``attributes`` read as ``expected``."""
    attributes = tuple(attributes)
    return np.array([np.mean([_reads(d, a) == expected[a] for a in attributes])
                     for d in detections], np.float64)


def track_error_pct(edited: list[Detection], source: list[Detection]) -> np.ndarray:
    """float (F,): centroid distance edit vs source per frame, % of the side (lost: 100)."""
    out = []
    for e, s in zip(edited, source):
        if not (e.found and s.found):
            out.append(MISSING_TRACK_PCT)
            continue
        dx, dy = e.centre[0] - s.centre[0], e.centre[1] - s.centre[1]
        out.append(min(MISSING_TRACK_PCT, 100.0 * float(np.hypot(dx, dy))))
    return np.asarray(out, np.float64)


def score_edit(edited: np.ndarray, source: np.ndarray, target: np.ndarray,
               expected: Mapping[str, str], changed: str | Sequence[str],
               encoder=None) -> EditScores:
    """Score ``edited`` (uint8 (F, H, W, 3)) against ``source`` and the rendered ``target``
    (same shape); ``expected`` = the target's {"shape", "colour", "background"}, ``changed`` =
    the attribute the edit changes, or several (see the module's docstring for each score)."""
    from ..metrics.recon import match_source, psnr_frames, ssim_frames

    changed = (changed,) if isinstance(changed, str) else tuple(changed)
    if not changed or any(c not in expected for c in changed):
        raise ValueError(f"changed must be among {sorted(expected)}, got {changed!r}")
    edited = np.asarray(edited)
    source, target = match_source(edited, source), match_source(edited, target)
    det, det_src = detect_clip(edited), detect_clip(source)
    kept = [a for a in ("shape", "colour", "background") if a not in changed]
    per = {"changed_attribute_acc": attribute_agreement(det, expected, changed),
           "kept_attribute_acc": attribute_agreement(det, expected, kept),
           "track_error_pct": track_error_pct(det, det_src),
           "psnr": psnr_frames(edited, target),
           "ssim": ssim_frames(edited, target)}
    if encoder is False or len(edited) < 2:
        cons, per["consistency"] = float("nan"), np.full(len(edited), np.nan)
    else:
        from ..metrics.clip_scores import frame_consistency

        res = frame_consistency(edited, "adjacent", encoder)
        cons, per["consistency"] = float(res.value), np.asarray(res.per_frame, np.float64)
    means = {k: float(np.mean(v)) for k, v in per.items() if k != "consistency"}
    return EditScores(**means, consistency=cons,
                      per_frame={k: [float(x) for x in v] for k, v in per.items()})
