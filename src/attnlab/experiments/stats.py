"""Summaries over seeds: the mean and a 95% confidence interval from Student's t distribution.

With n seeds, the interval is mean ± t_{0.975, n-1} · s / √n (s: the sample standard deviation).
With one seed there is no spread to estimate, and the interval is reported as unknown (None),
never as zero. The t quantiles are tabulated (no SciPy dependency); beyond 30 degrees of freedom
the normal 1.96 is within 2%.

    >>> summarize([0.80, 0.84, 0.82])
    {'mean': 0.82, 'ci95': 0.0497, 'n': 3, 'values': [0.8, 0.84, 0.82]}
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["t_quantile_975", "summarize", "format_interval"]

_T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
          2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
          2.045, 2.042]


def t_quantile_975(degrees_of_freedom: int) -> float:
    """The 97.5% quantile of Student's t (two-sided 95% interval)."""
    if degrees_of_freedom < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {degrees_of_freedom}")
    return _T_975[degrees_of_freedom - 1] if degrees_of_freedom <= len(_T_975) else 1.96


def summarize(values: Sequence[float | None], digits: int = 4) -> dict:
    """{"mean", "ci95" (half-width, None for n < 2), "n", "values"} over the non-missing values."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return {"mean": None, "ci95": None, "n": 0, "values": []}
    n = len(present)
    mean = sum(present) / n
    half = None
    if n >= 2:
        sd = math.sqrt(sum((v - mean) ** 2 for v in present) / (n - 1))
        half = round(t_quantile_975(n - 1) * sd / math.sqrt(n), digits)
    return {"mean": round(mean, digits), "ci95": half, "n": n, "values": [round(v, digits) for v in present]}


def format_interval(stat: dict | None, digits: int = 3, scale: float = 1.0) -> str:
    """'0.820 ± 0.050', '0.820 (n=1)' or 'n/a' — the one way a summary appears in a report."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    mean = f"{stat['mean'] * scale:.{digits}f}"
    if stat.get("ci95") is None:
        return f"{mean} (n={stat['n']})"
    return f"{mean} ± {stat['ci95'] * scale:.{digits}f}"
