"""Distributions as the report shows them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Summary = dict[str, float]


def summarize(values: Sequence[float]) -> Summary:
    """p50, p95, p99, max (rounded to 0.01) and n; zeros with n = 0 when there is nothing."""
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "n": 0}
    data = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = (float(np.percentile(data, q)) for q in (50, 95, 99))
    return {
        "p50": round(p50, 2),
        "p95": round(p95, 2),
        "p99": round(p99, 2),
        "max": round(float(data.max()), 2),
        "n": len(values),
    }
