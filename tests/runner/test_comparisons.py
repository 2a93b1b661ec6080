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


def test_a_smallest_effect_turns_a_negligible_gain_into_does_not_hold():
    # An interval above 0: a gain, however small.
    assert comparisons.verdict(0.001, 0.004, smallest_effect=0.005) == "holds"
    # Below the smallest effect but straddling 0: no gain worth having.
    assert comparisons.verdict(-0.002, 0.004, smallest_effect=0.005) == "does not hold"
    assert comparisons.verdict(-0.002, 0.004) == "inconclusive"  # without one, undecided
    # Straddling both 0 and the smallest effect: inconclusive.
    assert comparisons.verdict(-0.01, 0.02, smallest_effect=0.005) == "inconclusive"
    with pytest.raises(ValueError, match="smallest effect >= 0"):
        comparisons.verdict(0.0, 1.0, smallest_effect=-1.0)


def test_seeds_to_decide_is_the_first_n_whose_half_width_fits():
    d = [0.0, 0.02, 0.04]  # mean 0.02, spread 0.02: t_{n-1} / sqrt(n) must fall below 1
    assert comparisons.paired_interval([0.0] * 3, d)[1] < 0  # undecided with 3 seeds
    assert comparisons.seeds_to_decide(d) == 7  # t_6 / sqrt(7) = 0.925; t_5 / sqrt(6) = 1.05
    assert comparisons.half_width(0.02, 7) < 0.02 < comparisons.half_width(0.02, 6)
    # Toward "does not hold": two seeds, mean 0, spread 0.014, against a smallest effect of
    # 0.05: the half-width is 0.127 with 2 seeds, 0.035 with 3.
    assert comparisons.seeds_to_decide([-0.01, 0.01], smallest_effect=0.05) == 3
    # Closeness: mean 0.02 against a margin of 0.04 leaves 0.02 of room, as above.
    assert comparisons.seeds_to_decide(d, margin=0.04) == 7
    assert comparisons.seeds_to_decide([-0.45, 0.05, 0.55], cap=10) is None  # far too noisy
    assert comparisons.seeds_to_decide([0.1]) is None  # one seed: no spread known
