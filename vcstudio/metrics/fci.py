"""FCI (APLA, "flow consistency index") / OF-Consistency (DCT Table 2) — RECONSTRUCTED.

Neither paper gives a formula. APLA says it computes the flow between adjacent frames and
averages the changes of the flow field; we implement: for each t, the mean over pixels of
|w_{t+1->t+2}(x) - w_{t->t+1}(x)| (Euclidean norm, pixels), averaged over the T-2 flow pairs.
Lower is better; a static video and a constant-velocity video score 0. Numbers are not
comparable to the papers' tables.
"""
from __future__ import annotations

import numpy as np

from .flow import FlowCache
from .result import MetricResult, pad_front

LABEL = "reconstructed (no published formula)"
DEFINITION = ("FCI / OF-Consistency, RECONSTRUCTED (no published formula): mean over t of the "
              "mean per-pixel norm of w(t+1->t+2) - w(t->t+1), pixels; lower is better")


def flow_change(fw_a: np.ndarray, fw_b: np.ndarray) -> float:
    """Mean per-pixel Euclidean norm of the change between two consecutive flow fields."""
    d = fw_b.astype(np.float64) - fw_a.astype(np.float64)
    return float(np.sqrt((d ** 2).sum(-1)).mean())


def flow_consistency_index(frames: np.ndarray, flows: FlowCache | None = None) -> MetricResult:
    n = len(frames)
    if n < 3:
        return MetricResult.too_few("fci", 3, DEFINITION)
    flows = flows or FlowCache(frames)
    vals = [flow_change(flows.forward(t - 1), flows.forward(t)) for t in range(1, n - 1)]
    return MetricResult("fci", float(np.mean(vals)), pad_front(vals, n), flows.model,
                        DEFINITION, False, label=LABEL)
