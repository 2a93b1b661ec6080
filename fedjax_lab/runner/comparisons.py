"""Comparing algorithms over seeds: paired differences and their verdicts.

Two algorithms run with the same seeds give paired results ``a_s`` and ``b_s``. The claim
"B beats A" is judged on ``d_s = b_s - a_s``: its mean ``dbar`` and the 95% t-interval
``dbar +- t_{0.975, n-1} s_d / sqrt(n)`` (``s_d`` the sample standard deviation over the
``n`` seeds), whose half-width every verdict reports. A claim declares the smallest effect
that matters, ``delta`` (half a point of accuracy, say). "B beats A" then **holds** when the
interval lies above 0, **does not hold** when it lies below ``delta`` (no gain worth
having: "no gain above delta"), and is **inconclusive** only when it straddles both 0 and
``delta`` (:func:`verdict`). The claim "B stays close to A" (within a margin ``m``)
**holds** when the whole interval lies inside ``(-m, m)``, **does not hold** when it lies
entirely outside, and is **inconclusive** otherwise (:func:`closeness`).

An inconclusive verdict says how many seeds would decide it: the smallest ``n`` whose
half-width ``t_{0.975, n-1} s_d / sqrt(n)``, with the observed mean and spread, would put
the interval on one side (:func:`seeds_to_decide`).

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
    "half_width",
    "paired_interval",
    "seeds_to_decide",
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
    half = half_width(statistics.stdev(d), len(d))
    return mean, mean - half, mean + half


def half_width(spread: float, n: int) -> float:
    """``t_{0.975, n-1} spread / sqrt(n)``, the 95% interval's half-width over ``n`` seeds."""
    return t_quantile(n - 1) * spread / math.sqrt(n) if n > 1 else math.inf


def verdict(low: float, high: float, smallest_effect: float = 0.0) -> str:
    """ "holds" if the interval lies above 0, "does not hold" if it lies below
    ``smallest_effect`` (0: below 0), else "inconclusive" (the module docstring)."""
    if smallest_effect < 0:
        raise ValueError(f"Expected a smallest effect >= 0, got {smallest_effect!r}.")
    if low > 0:
        return "holds"
    if high < smallest_effect:
        return "does not hold"
    return "inconclusive"


def seeds_to_decide(
    differences: Sequence[float],
    smallest_effect: float = 0.0,
    *,
    margin: float | None = None,
    cap: int = 30,
) -> int | None:
    """The fewest seeds (at most ``cap``) whose interval, with the mean and spread of
    ``differences``, would decide the verdict: above 0 or below ``smallest_effect`` for
    :func:`verdict`; inside or outside ``(-margin, margin)`` for :func:`closeness`. None
    when more than ``cap`` would be needed (or no spread is known, from one seed)."""
    if len(differences) < 2:
        return None
    mean, spread = statistics.mean(differences), statistics.stdev(differences)
    if margin is None:  # reach above 0 (when the mean is), or below the smallest effect
        room = max(mean, smallest_effect - mean)
    else:  # inside (-margin, margin) or outside it
        room = abs(abs(mean) - margin)
    for n in range(2, cap + 1):
        if half_width(spread, n) < room:
            return n
    return None


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
