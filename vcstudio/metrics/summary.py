"""Mean and confidence interval over repeated runs (seeds), as papers report them.

The VCD paper reports each Table 2 entry over five runs; vcstudio reports the mean and the
two-sided ``level`` (95%) Student-t interval of the mean, mean +- t_{(1+level)/2, n-1} s / sqrt(n)
with s the sample standard deviation. One run has no interval (NaN half-width).
"""
from __future__ import annotations

import math
from typing import Iterable


def mean_ci(values: Iterable[float], level: float = 0.95) -> tuple[float, float]:
    """(mean, half-width of the ``level`` interval) of the finite ``values``; NaNs are dropped,
    none left gives (NaN, NaN)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(vals)
    if n == 0:
        return math.nan, math.nan
    m = sum(vals) / n
    if n == 1:
        return m, math.nan
    from scipy.stats import t

    s = math.sqrt(sum((v - m) ** 2 for v in vals) / (n - 1))
    return m, float(t.ppf((1 + level) / 2, n - 1)) * s / math.sqrt(n)
