"""The 95 % CI of a target that reports only the range of the women's changes (targets.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bonecast.simulation.calibration.targets import (
    ci_half_width_from_p_value,
    ci_half_width_from_range,
    load_targets,
)


@pytest.mark.parametrize("n", [10, 25, 50, 150])
def test_range_gives_the_sd_of_normal_samples(n):
    """Wan 2014: the expected range of n normal values divided by xi(n) is the SD (within 3 %)."""
    rng = np.random.default_rng(n)
    samples = rng.normal(0.0, 4.0, size=(20_000, n))
    ranges = samples.max(axis=1) - samples.min(axis=1)
    sd_from_range = ci_half_width_from_range(float(ranges.mean()), n, "mean") * np.sqrt(n) / 1.96
    assert sd_from_range == pytest.approx(4.0, rel=0.03)


@pytest.mark.parametrize("statistic", ["mean", "median"])
def test_interval_covers_the_true_value_95_percent_of_the_time(statistic):
    """Sample statistic +/- the half-width from the sample's own range covers the truth ~95 %."""
    n, rng = 50, np.random.default_rng(7)
    samples = rng.normal(-3.0, 5.0, size=(4_000, n))
    centre = samples.mean(axis=1) if statistic == "mean" else np.median(samples, axis=1)
    width = samples.max(axis=1) - samples.min(axis=1)
    half = np.array([ci_half_width_from_range(float(w), n, statistic) for w in width])
    coverage = float(np.mean(np.abs(centre + 3.0) <= half))
    assert 0.93 <= coverage <= 0.97


@given(
    width=st.floats(0.1, 100.0),
    n=st.integers(2, 5000),
    statistic=st.sampled_from(["mean", "median"]),
)
def test_interval_widens_with_the_range_and_narrows_with_n(width, n, statistic):
    half = ci_half_width_from_range(width, n, statistic)
    assert half > 0
    assert ci_half_width_from_range(2 * width, n, statistic) == pytest.approx(2 * half)
    assert ci_half_width_from_range(width, n + 1, statistic) < half
    assert ci_half_width_from_range(width, n, "median") >= ci_half_width_from_range(
        width, n, "mean"
    )


def test_one_woman_has_no_range():
    with pytest.raises(ValueError, match="n: 1"):
        ci_half_width_from_range(5.0, 1, "median")


def test_aribon_rows_get_a_ci_from_their_range_and_reported_cis_are_kept():
    targets = {t.target_id: t for t in load_targets().targets}
    # ARIBON B1_LS: median of 50 women, range -8.9 to +19.9 (28.8 pp wide)
    assert targets["B1_LS"].ci_half_width_pp == pytest.approx(
        ci_half_width_from_range(28.8, 50, "median")
    )
    assert targets["B1_LS"].tolerance_pp(True) > 1.0
    # IBIS-II I9 reports its CI (0.73 to 1.77): kept as reported
    assert targets["I9"].ci_half_width_pp == pytest.approx(0.52)
    # a row with no uncertainty has none
    assert targets["A1"].ci_half_width_pp is None


def test_p_value_gives_back_the_interval_it_came_from():
    """A mean change of -2.1 with SE 0.825 has z = 2.545, P = 0.0109 (SABRE B12_LS): the CI
    from that P is +/- 1.96 x 0.825."""
    assert ci_half_width_from_p_value(-2.1, 0.0109) == pytest.approx(1.96 * 0.825, rel=0.01)


@given(value=st.floats(0.01, 50.0), p=st.floats(1e-6, 0.999))
def test_interval_from_p_value_touches_zero_exactly_at_p_005(value, p):
    half = ci_half_width_from_p_value(value, p)
    # a significant change (P < 0.05) has a CI that excludes 0, a non-significant one includes it
    assert (half < value) == (p < 0.05) or abs(half - value) < 1e-9 * value
    assert ci_half_width_from_p_value(-value, p) == pytest.approx(half)


@pytest.mark.parametrize("p", [0.0, 1.0, 1.5])
def test_p_value_outside_zero_one_is_refused(p):
    with pytest.raises(ValueError, match="p_value"):
        ci_half_width_from_p_value(1.0, p)


def test_rows_with_an_exact_p_value_get_its_ci_and_inequalities_do_not():
    targets = {t.target_id: t for t in load_targets().targets}
    # SABRE lower-risk spine: -2.1 %, P = .0109 (note column)
    assert targets["B12_LS"].ci_half_width_pp == pytest.approx(
        ci_half_width_from_p_value(-2.1, 0.0109)
    )
    # SABRE B10_LS's note carries P < .0001 for the between-arm ratio: no CI for the arm
    assert targets["B10_LS"].ci_half_width_pp is None
