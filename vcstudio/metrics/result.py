"""The one result type every metric returns: per-frame values, a per-video summary, provenance."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class MetricResult:
    """``per_frame[t]`` belongs to frame t; pair metrics put the pair (t-1, t) at t and NaN at 0.

    ``value`` is the per-video summary (NaN when skipped); ``model`` names what made the number
    (a CLIP checkpoint, "OpenCV DIS medium", ...); ``definition`` says which reference the number
    follows; ``skipped`` holds the reason when the metric could not run.
    """

    name: str
    value: float = math.nan
    per_frame: list[float] = field(default_factory=list)
    model: str = ""
    definition: str = ""
    higher_is_better: Optional[bool] = None
    skipped: Optional[str] = None
    extra: dict = field(default_factory=dict)
    label: str = ""  # "reconstructed", "stand-in ...": shown next to the number everywhere

    @classmethod
    def skip(cls, name: str, reason: str, definition: str = "") -> "MetricResult":
        return cls(name=name, skipped=reason, definition=definition)

    @classmethod
    def too_few(cls, name: str, k: int, definition: str = "") -> "MetricResult":
        """Skipped because the video (or the stream so far) has fewer than ``k`` frames."""
        return cls(name=name, skipped=f"needs at least {k} frames", definition=definition,
                   extra={"min_frames": k})

    def to_dict(self) -> dict:
        def clean(v):
            return None if isinstance(v, float) and not math.isfinite(v) else v

        d = {"value": clean(float(self.value)), "per_frame": [clean(float(v)) for v in self.per_frame],
             "model": self.model, "definition": self.definition,
             "higher_is_better": self.higher_is_better}
        if self.label:
            d["label"] = self.label
        if self.skipped:
            d = {"skipped": self.skipped, "definition": self.definition}
        if self.extra:
            d["extra"] = self.extra
        return d


def pad_front(values, n_frames: int) -> list[float]:
    """Values for the last ``len(values)`` frames -> a per-frame list of length ``n_frames``.

    Pair metrics give T-1 values (pair (t-1, t) at frame t); NaN fills the frames before.
    """
    values = [float(v) for v in values]
    return [math.nan] * max(0, n_frames - len(values)) + values
