"""The verdict rule of paired comparisons over seeds."""

import math
import statistics

import pytest

from fedjax_lab.runner import comparisons


def test_paired_interval_is_the_t_interval_of_the_differences():
    a, b = [0.50, 0.60, 0.55], [0.56, 0.65, 0.62]
    d = [0.06, 0.05, 0.07]
    mean, low, high = comparisons.paired_interval(a, b)
    half = 4.303 * statistics.stdev(d) / math.sqrt(3)  # t_{0.975, 2}
    assert mean == pytest.approx(0.06)
    assert (low, high) == pytest.approx((0.06 - half, 0.06 + half), abs=1e-3)


def test_verdicts_follow_the_sign_of_the_interval():
    better, worse, noisy = [0.6, 0.7, 0.8], [0.5, 0.6, 0.7], [0.7, 0.5, 0.8]
    base = [0.55, 0.65, 0.75]
    assert comparisons.verdict(*comparisons.paired_interval(base, better)[1:]) == "holds"
    assert comparisons.verdict(*comparisons.paired_interval(base, worse)[1:]) == "does not hold"
    assert comparisons.verdict(*comparisons.paired_interval(base, noisy)[1:]) == "inconclusive"
    # One seed gives no interval: never a verdict either way.
    assert comparisons.verdict(*comparisons.paired_interval([0.1], [0.9])[1:]) == "inconclusive"
    with pytest.raises(ValueError, match="one length"):
        comparisons.paired_interval([0.1, 0.2], [0.3])


def test_closeness_needs_the_whole_interval_inside_the_margin():
    assert comparisons.closeness(-0.02, 0.03, 0.05) == "holds"
    assert comparisons.closeness(-0.08, 0.03, 0.05) == "inconclusive"
    assert comparisons.closeness(0.06, 0.09, 0.05) == "does not hold"
    assert comparisons.closeness(-0.2, -0.07, 0.05) == "does not hold"
    with pytest.raises(ValueError, match="margin > 0"):
        comparisons.closeness(0.0, 0.0, 0.0)
