"""The forecast conditioned on every scan and marker (bonecast.clinical.conditioning; issue 15)."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import lognorm, norm

from bonecast.clinical import parse_patient
from bonecast.clinical.conditioning import (
    Observation,
    fit_levels,
    mixture_quantiles,
    quantile_standard_error,
)
from bonecast.clinical.forecast import Forecast, ForecastPoint, forecast
from bonecast.clinical.forecast_coverage import hidden_scan_coverage
from bonecast.clinical.precision import Lsc, lsc_table


def _woman(scans: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "sex": "female",
        "age_years": 64,
        "menopausal_status": "postmenopausal",
        "scans": scans,
        "treatments": [{"drug": "anastrozole", "start_date": "2024-01-20"}],
        "as_of": "2026-02-01",
        **extra,
    }


ISSUE_EXAMPLE = _woman(
    [
        {
            "date": "2024-01-15",
            "scanner": "hologic",
            "lumbar_spine": {"bmd_g_cm2": 0.950},
            "total_hip": {"bmd_g_cm2": 0.820},
        },
        {
            "date": "2026-01-15",
            "scanner": "hologic",
            "lumbar_spine": {"bmd_g_cm2": 0.880},
            "total_hip": {"bmd_g_cm2": 0.795},
        },
    ]
)


def _now(result: Forecast, site: str, plan: str = "continue_ai") -> ForecastPoint:
    return next(p for p in result.points if p.plan == plan and p.site == site and p.month == 0)


@pytest.fixture(scope="module")
def issue_example() -> Forecast:
    result = forecast(parse_patient(ISSUE_EXAMPLE), [])
    assert result is not None
    return result


def test_the_issue_example_starts_from_her_latest_scan(issue_example: Forecast) -> None:
    """Spine 0.950 (2024-01) and 0.880 (2026-01) on anastrozole: the 2026-02 forecast is within
    one precision SD (ISCD default 1.9 % x 0.880 = 0.017 g/cm2) of 0.880, with 0.880 in its band."""
    spine = _now(issue_example, "lumbar_spine")
    assert spine.date == date(2026, 2, 1)
    sd = 0.880 * 5.3 / 2.77 / 100
    assert abs(spine.bmd_g_cm2 - 0.880) <= sd
    assert spine.bmd_low_g_cm2 <= 0.880 <= spine.bmd_high_g_cm2
    assert issue_example.scans_conditioned_on == 2
    assert set(issue_example.band_narrowing_pct) == {"lumbar_spine", "total_hip"}
    assert all(value >= 0 for value in issue_example.band_narrowing_pct.values())
    for fit in issue_example.fit_to_scans:
        assert abs(fit.bmd_g_cm2 - fit.measured_bmd_g_cm2) <= fit.precision_sd_g_cm2
        assert fit.bmd_low_g_cm2 <= fit.measured_bmd_g_cm2 <= fit.bmd_high_g_cm2


def test_the_t_score_moves_from_her_latest_t_score(issue_example: Forecast) -> None:
    """Her latest spine T-score (0.880 on Hologic) is where the forecast's T-scores start."""
    result = forecast(parse_patient({**ISSUE_EXAMPLE, "as_of": "2026-01-15"}), [])
    assert result is not None
    spine = _now(result, "lumbar_spine")
    latest_t = (0.880 - 1.047) / 0.110  # Hologic spine reference (mean 1.047, SD 0.110 g/cm2)
    assert spine.t_score == pytest.approx(latest_t + (spine.bmd_g_cm2 - 0.880) / 0.110, abs=0.05)


def test_a_scan_on_another_maker_is_not_compared() -> None:
    """A GE Lunar scan then a Hologic scan: BMDs of different makers are not comparable, so the
    forecast starts from the Hologic scan alone and the Lunar scan conditions nothing."""
    data = _woman(
        [
            {"date": "2024-01-15", "scanner": "lunar", "lumbar_spine": {"bmd_g_cm2": 1.060}},
            {"date": "2026-01-15", "scanner": "hologic", "lumbar_spine": {"bmd_g_cm2": 0.880}},
        ]
    )
    result = forecast(parse_patient(data), [])
    assert result is not None
    assert result.scans_conditioned_on == 1
    assert result.band_narrowing_pct == {"lumbar_spine": 0.0}
    spine = _now(result, "lumbar_spine")
    assert abs(spine.bmd_g_cm2 - 0.880) < 0.01


def test_a_facility_precision_study_narrows_the_band() -> None:
    """A precise facility (RMS-SD 0.005 g/cm2 at the spine) knows her BMD better than the ISCD
    default (1.9 %): the band right after her scan is narrower."""
    patient = parse_patient(ISSUE_EXAMPLE)
    precise = {
        **lsc_table(),
        "lumbar_spine": Lsc(
            site="lumbar_spine",
            lsc_pct=1.5,
            lsc_g_cm2=2.77 * 0.005,
            source="facility precision study (30 patients, 30 df)",
            facility_study=True,
        ),
    }
    default = forecast(patient, [])
    facility = forecast(patient, [], precision=precise)
    assert default is not None and facility is not None

    def width(result: Forecast) -> float:
        point = _now(result, "lumbar_spine")
        return point.bmd_high_g_cm2 - point.bmd_low_g_cm2

    assert width(facility) < 0.7 * width(default)
    fits = [f for f in facility.fit_to_scans if f.site == "lumbar_spine"]
    assert {f.precision_sd_g_cm2 for f in fits} == {0.005}


def test_turnover_markers_condition_the_twins() -> None:
    """One scan, and s-CTX at the start and a year into anastrozole: a steep rise (twins with
    high turnover) forecasts more spine loss than a flat one."""

    def with_ctx(rise: float) -> Forecast:
        labs = [
            {"date": "2024-01-15", "test": "ctx", "value": 0.40, "unit": "ng/mL"},
            {"date": "2025-01-15", "test": "ctx", "value": 0.40 * rise, "unit": "ng/mL"},
        ]
        scan = [{"date": "2024-01-15", "scanner": "hologic", "lumbar_spine": {"bmd_g_cm2": 0.95}}]
        result = forecast(parse_patient(_woman(scan, labs=labs, as_of="2025-01-20")), [])
        assert result is not None
        return result

    steep, flat = with_ctx(1.8), with_ctx(1.0)
    assert steep.markers_conditioned_on == flat.markers_conditioned_on == 2
    assert steep.scans_conditioned_on == 1
    year_2 = {
        name: next(
            p.bmd_g_cm2
            for p in result.points
            if p.plan == "continue_ai" and p.site == "lumbar_spine" and p.month == 24
        )
        for name, result in (("steep", steep), ("flat", flat))
    }
    assert year_2["steep"] < year_2["flat"] - 0.005


def test_hidden_scan_coverage_of_the_band_quick() -> None:
    """Simulated women with their last scan hidden: the 5-95 % band one year after the forecast
    holds the hidden scan about 90 % of the time (20 women x 3 sites here, 200 twins; the full
    run of ``benchmarks/bench_forecast_coverage.py`` reports 85-95 %). With 12 women, 6 of 36
    hidden scans below the band (one or two unlucky women's sites) already failed the tails'
    check on the recalibrated set, which gives 89 % inside, 4 % below, 6 % above with 60."""
    coverage = hidden_scan_coverage(20, twins=200)
    assert 75.0 <= coverage.covered_pct < 100.0
    assert coverage.below_pct < 15.0 and coverage.above_pct < 15.0


def _obs(day: int, value: float, sd: float, drift: float = 0.0) -> Observation:
    return Observation(
        date=date.fromordinal(date(2024, 1, 1).toordinal() + day),
        quantity="lumbar_spine",
        name="lumbar_spine",
        value=value,
        sd_log=sd,
        group=("lumbar_spine", "hologic", None, ()),
        drift_per_day=drift,
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0.5, 1.5), min_size=1, max_size=5),
    st.lists(st.floats(0.005, 0.05), min_size=5, max_size=5),
)
def test_without_drift_the_level_is_the_precision_weighted_mean(
    values: list[float], sds: list[float]
) -> None:
    """With no random walk the Kalman update is the precision-weighted mean of her log residuals,
    with variance 1 / sum of precisions, and a twin that reproduces her changes is the likeliest."""
    observations = [_obs(100 * j, v, sds[j]) for j, v in enumerate(values)]
    flat = np.ones((len(values), 1))
    exact = np.array(values)[:, None] / values[0]  # reproduces every change
    levels = fit_levels(observations, np.hstack([flat, exact]))
    w = np.array([s**-2 for s in sds[: len(values)]])
    _, mean, variance = levels.latest[observations[0].group]
    assert mean[0] == pytest.approx(w @ np.log(values) / w.sum(), abs=1e-12)
    assert variance == pytest.approx(1 / w.sum(), rel=1e-9)
    assert mean[1] == pytest.approx(math.log(values[0]), abs=1e-12)
    assert levels.log_likelihood[1] == pytest.approx(0.0, abs=1e-12)
    assert levels.log_likelihood[1] >= levels.log_likelihood[0]
    # the smoothed level is the same at every measurement (a constant level)
    for obs in observations:
        assert levels.at[obs][0][0] == pytest.approx(mean[0], abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.floats(0.5, 1.5), st.floats(0.5, 1.5), st.floats(1e-8, 1e-5))
def test_with_drift_the_latest_scan_weighs_more_and_the_variance_grows(
    first: float, second: float, drift: float
) -> None:
    """With her own random walk the level after two scans lies between them, nearer the later,
    and its variance grows linearly with the days after the latest scan."""
    observations = [_obs(0, first, 0.02, drift), _obs(730, second, 0.02, drift)]
    levels = fit_levels(observations, np.ones((2, 1)))
    group = observations[0].group
    _, mean, variance = levels.latest[group]
    low, high = sorted((math.log(first), math.log(second)))
    assert low - 1e-12 <= mean[0] <= high + 1e-12
    assert abs(mean[0] - math.log(second)) <= abs(mean[0] - math.log(first)) + 1e-12
    assert variance < 0.02**2
    _, later = levels.predict(group, date(2027, 1, 1))
    assert later == pytest.approx(variance + drift * (date(2027, 1, 1) - date(2025, 12, 31)).days)


@settings(max_examples=30, deadline=None)
@given(st.floats(-0.5, 0.5), st.floats(0.005, 0.2), st.sampled_from([0.05, 0.5, 0.95]))
def test_mixture_quantiles_of_one_component_are_the_lognormal_quantiles(
    mu: float, sd: float, q: float
) -> None:
    (value,) = mixture_quantiles(np.array([[mu, mu]]), np.array([sd]), (q,))[:, 0]
    assert value == pytest.approx(lognorm.ppf(q, sd, scale=math.exp(mu)), rel=1e-6)


def test_a_scan_the_model_cannot_follow_is_flagged() -> None:
    """A 9 % total-hip gain in a year on anastrozole alone is beyond the twins and her drift: the
    forecast misses the scans by more than their precision error and says so."""
    data = _woman(
        [
            {"date": "2024-01-15", "scanner": "hologic", "total_hip": {"bmd_g_cm2": 0.820}},
            {"date": "2025-01-15", "scanner": "hologic", "total_hip": {"bmd_g_cm2": 0.895}},
        ],
        as_of="2025-02-01",
    )
    result = forecast(parse_patient(data), [])
    assert result is not None
    missed = [
        f
        for f in result.fit_to_scans
        if abs(f.bmd_g_cm2 - f.measured_bmd_g_cm2) > f.precision_sd_g_cm2
    ]
    assert missed
    for fit in missed:
        assert any(
            f"total_hip {fit.date}" in note and "precision error" in note for note in result.notes
        )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-0.3, 0.3), min_size=2, max_size=40),
    st.floats(0.002, 0.2),
    st.sampled_from([0.05, 0.5, 0.95]),
)
def test_mixture_quantiles_put_the_mixture_cdf_at_q(
    centres: list[float], sd: float, q: float
) -> None:
    """For any mixture (components far apart or close, narrow or wide), the mixture CDF at the
    returned quantile is q to 1e-7."""
    mu = np.array([centres])
    (value,) = mixture_quantiles(mu, np.array([sd]), (q,))[:, 0]
    cdf = float(np.mean(norm.cdf((math.log(value) - mu[0]) / sd)))
    assert cdf == pytest.approx(q, abs=1e-7)


@pytest.mark.parametrize(("spread", "sd"), [(0.05, 0.01), (0.02, 0.02), (0.10, 0.005)])
def test_the_quantile_standard_error_matches_the_spread_between_twin_samples(
    spread: float, sd: float
) -> None:
    """Twins' log-BMD courses drawn again and again from N(0, spread): the 5 %, 50 % and 95 %
    band points of 200 twins scatter between draws as the delta-method standard error says: it
    never understates the scatter by more than 20 % (400 draws), and overstates it by at most
    half when the twins spread 20 times wider than one scan's error (the density between twins
    is then rough), which only makes the forecast double its twins sooner."""
    rng = np.random.default_rng(7)
    levels = (0.05, 0.5, 0.95)
    estimates, errors = [], []
    for _ in range(400):
        mu = rng.normal(0.0, spread, size=(1, 200))
        bands = mixture_quantiles(mu, np.array([sd]), levels)
        estimates.append(np.log(bands[:, 0]))
        errors.append(quantile_standard_error(mu, np.array([sd]), bands, 200.0)[:, 0])
    ratio = np.mean(errors, axis=0) / np.std(estimates, axis=0, ddof=1)
    assert np.all(ratio >= 0.8) and np.all(ratio <= 1.5)
