"""The few statistics `compare` reports: Wilson intervals for violation rates,
medians with their spread over repetitions, ratios to the reference arm."""

from __future__ import annotations

import math
import statistics
from typing import Any

Z95 = 1.959964


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n (stays inside [0, 1] and is
    honest at k = 0, where a normal interval collapses to a point)."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def per_1000(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson(k, n)
    return {
        "count": k,
        "states": n,
        "per_1000": round(1000 * k / n, 1) if n else 0.0,
        "ci95": [round(1000 * lo, 1), round(1000 * hi, 1)],
    }


def spread(values: list[float]) -> dict[str, float | int]:
    """Median, quartiles and range of one metric's repetitions."""
    v = sorted(values)
    if len(v) == 1:
        q1 = q3 = v[0]
    else:
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return {
        "median": _round(statistics.median(v)),
        "q1": _round(q1),
        "q3": _round(q3),
        "min": _round(v[0]),
        "max": _round(v[-1]),
        "n": len(v),
    }


def ratio(value: float, reference: float) -> float | None:
    return round(value / reference, 3) if reference else None


def _round(x: float) -> float:
    return round(x, 3) if abs(x) < 1000 else round(x)
