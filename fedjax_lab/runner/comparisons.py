"""Comparing algorithms over seeds: paired differences and their verdicts.

Two algorithms run with the same seeds give paired results ``a_s`` and ``b_s``. The claim
"B beats A" is judged on ``d_s = b_s - a_s``: its mean ``dbar`` and the 95% t-interval
``dbar +- t_{0.975, n-1} s_d / sqrt(n)`` (``s_d`` the sample standard deviation over the
``n`` seeds). The claim **holds** when the interval lies above 0, **does not hold** when it
lies below 0, and is **inconclusive** otherwise. The claim "B stays close to A" (within a
margin ``m``) **holds** when the whole interval lies inside ``(-m, m)``, **does not hold**
when it lies entirely outside, and is **inconclusive** otherwise (:func:`closeness`).

The reproduction suite (:mod:`fedjax_lab.runner.reproduce`) judges the seed papers' claims with
these rules.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

__all__ = [
    "VERDICTS",
    "closeness",
    "paired_interval",
    "t_quantile",
    "verdict",
]

VERDICTS = ("holds", "does not hold", "inconclusive")

# Two-sided 95% t quantiles t_{0.975, dof}, used when scipy is missing.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def t_quantile(dof: int) -> float:
    """``t_{0.975, dof}``, the two-sided 95% quantile of Student's t."""
    try:
        from scipy import stats
    except ImportError:
        if dof not in _T975:
            raise ValueError(
                f"Without scipy only 1 to 9 degrees of freedom are known, got {dof}."
            ) from None
        return _T975[dof]
    return float(stats.t.ppf(0.975, dof))


def paired_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """The mean of ``b - a`` (paired by position) and its 95% t-interval ``(low, high)``;
    infinite with a single pair."""
    if len(a) != len(b) or not a:
        raise ValueError(
            f"Expected two non-empty sequences of one length, got {len(a)} and {len(b)}."
        )
    d = [y - x for x, y in zip(a, b)]
    mean = statistics.mean(d)
    if len(d) < 2:
        return mean, -math.inf, math.inf
    half = t_quantile(len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
    return mean, mean - half, mean + half


def verdict(low: float, high: float) -> str:
    """ "holds" if the interval lies above 0, "does not hold" if below, else "inconclusive"."""
    if low > 0:
        return "holds"
    if high < 0:
        return "does not hold"
    return "inconclusive"


def closeness(low: float, high: float, margin: float) -> str:
    """ "holds" if the interval lies inside ``(-margin, margin)``, "does not hold" if it lies
    entirely outside, else "inconclusive"."""
    if not margin > 0:
        raise ValueError(f"Expected a closeness margin > 0, got {margin!r}.")
    if -margin < low and high < margin:
        return "holds"
    if high < -margin or low > margin:
        return "does not hold"
    return "inconclusive"
