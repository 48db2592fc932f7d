"""Virtual populations: reproducibility, chunk invariance and variability
(docs/model/numerics.md section 9)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bonecast.simulation import (
    SITES,
    Distribution,
    PopulationSpec,
    parse_trial_spec,
    run_trial,
    sample_population,
)
from bonecast.simulation.drugs import BISPHOSPHONATES

VARIED = PopulationSpec(
    n=100,
    menopausal_status="postmenopausal",
    age_years=Distribution(mean=64, sd=8),
    baseline_t_score={"lumbar_spine": Distribution(mean=-0.8, sd=1.0, min=-2.5, max=2.0)},
    variability=True,
)


def _rows_equal(a, b, start=0, stop=None):
    """Patients a[start:stop] are exactly the patients of b."""
    sl = slice(start, stop)
    np.testing.assert_array_equal(a.patient_ids[sl], b.patient_ids)
    np.testing.assert_array_equal(a.age_years[sl], b.age_years)
    np.testing.assert_array_equal(a.baseline_t_score[:, sl], b.baseline_t_score)
    np.testing.assert_array_equal(a.baseline_bmd_g_cm2[:, sl], b.baseline_bmd_g_cm2)
    assert a.values.keys() == b.values.keys()
    for name in a.values:
        np.testing.assert_array_equal(a.values[name][sl], b.values[name], err_msg=name)


# --------------------------------------------------------------------------------------------
# Reproducibility and chunking
# --------------------------------------------------------------------------------------------


def test_same_seed_same_patients(params):
    _rows_equal(sample_population(VARIED, params, 7), sample_population(VARIED, params, 7))


def test_different_seed_different_patients(params):
    a, b = sample_population(VARIED, params, 7), sample_population(VARIED, params, 8)
    assert not np.array_equal(a.age_years, b.age_years)
    assert not np.array_equal(a.baseline_t_score, b.baseline_t_score)
    assert not np.array_equal(a.values["alpha_L"], b.values["alpha_L"])


def test_chunk_gives_the_same_rows(params):
    whole = sample_population(VARIED, params, 5, 0, 100)
    _rows_equal(whole, sample_population(VARIED, params, 5, 30, 60), 30, 60)


def test_taken_patients_are_the_same_patients(params):
    """Taking patients (with repeats, as resampling does) keeps each one whole, id included."""
    whole = sample_population(VARIED, params, 5)
    taken = whole.take(np.array([7, 7, 3]))
    for row, index in enumerate((7, 7, 3)):
        _rows_equal(taken, sample_population(VARIED, params, 5, index, index + 1), row, row + 1)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**63 - 1),
    bounds=st.tuples(st.integers(0, 99), st.integers(1, 100)).filter(lambda b: b[0] < b[1]),
)
def test_any_chunk_gives_the_same_rows(params, seed, bounds):
    start, stop = bounds
    whole = sample_population(VARIED, params, seed)
    _rows_equal(whole, sample_population(VARIED, params, seed, start, stop), start, stop)


@pytest.mark.parametrize(("start", "stop"), [(-1, 10), (10, 10), (50, 101), (60, 30)])
def test_chunk_outside_the_population_is_refused(params, start, stop):
    with pytest.raises(ValueError, match="outside"):
        sample_population(VARIED, params, 0, start, stop)


TRIAL = {
    "name": "chunking",
    "seed": 3,
    "population": {
        "n": 30,
        "menopausal_status": "postmenopausal",
        "age_years": {"mean": 64, "sd": 8},
        "variability": True,
    },
    "arms": [
        {
            "name": "anastrozole",
            "treatments": [
                {"drug": "anastrozole", "dose_mg": 1, "interval_days": 1, "start_month": 0}
            ],
        },
        {
            "name": "anastrozole + risedronate",
            "treatments": [
                {"drug": "anastrozole", "dose_mg": 1, "interval_days": 1, "start_month": 0},
                {
                    "drug": "risedronate",
                    "dose_mg": 35,
                    "interval_days": 7,
                    "start_month": 0,
                    "adherence": 0.7,
                },
            ],
        },
    ],
    "outputs": {
        "quantities": ["lumbar_spine", "total_hip", "femoral_neck", "ctx", "p1np"],
        "months": [6, 12],
        "intervals": [[6, 12]],
    },
}


def test_trial_results_do_not_depend_on_chunk_size(params):
    spec = parse_trial_spec(TRIAL)
    default = run_trial(spec, params)
    chunked = run_trial(spec, params, chunk_size=7)
    assert len(default.rows) == 2 * 5 * 3
    assert default.rows == chunked.rows
    for arm, bands in default.bands.items():
        for quantity, band in bands.items():
            other = chunked.bands[arm][quantity]
            np.testing.assert_array_equal(band.mean, other.mean)
            np.testing.assert_array_equal(band.p05, other.p05)
            np.testing.assert_array_equal(band.p95, other.p95)


# --------------------------------------------------------------------------------------------
# Between-patient variability (docs/model/numerics.md section 9)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big(params):
    spec = PopulationSpec(
        n=4000,
        menopausal_status="postmenopausal",
        age_years=Distribution(mean=64, sd=8),
        variability=True,
    )
    return sample_population(spec, params, seed=123)


def _lognormal(params):
    return [
        (name, item.cv)
        for item in params.variability
        if item.distribution == "lognormal"
        for name in item.parameters
    ]


def _logitnormal(params):
    return [
        (name, item.sd)
        for item in params.variability
        if item.distribution == "logitnormal"
        for name in item.parameters
    ]


def test_lognormal_parameters_keep_the_typical_value_as_median(params, big):
    """Median = typical value; log-SD = sqrt(ln(1 + CV^2)) (parameter file,
    docs/model/numerics.md section 9)."""
    checked = set()
    for name, cv in _lognormal(params):
        typical = params.parameters[name].value
        logs = np.log(big.values[name] / typical)
        omega = math.sqrt(math.log1p(cv**2))
        # n = 4000: SE of the median of log values ~ 1.25 omega / sqrt(n) ~ 0.02 omega
        assert np.median(logs) == pytest.approx(0.0, abs=0.1 * omega), name
        assert logs.std() == pytest.approx(omega, rel=0.05), name
        assert np.all(big.values[name] > 0), name
        checked.add(name)
    # the lognormal rows of docs/model/numerics.md section 9: E2_base, rho_t/rho_c, alpha_L,
    # delta0_t/c, deltaE_c, EC50_d, oral F_d, theta_D, denosumab CL and Vmax
    assert checked == {
        "e2_post_pg_ml",
        "e2_pre_pg_ml",
        "rho_t_per_year",
        "rho_c_per_year",
        "alpha_L",
        "delta0_t",
        "delta0_c",
        "deltaE_c",
        *(f"bp.{d}.ec50_mg" for d in BISPHOSPHONATES),
        *(f"bp.{d}.f_oral" for d in ("alendronate", "risedronate", "ibandronate")),
        "theta_D_per_nM",
        "den.cl_l_per_day",
        "den.vmax_mg_per_day",
    }


def test_logit_normal_shares_stay_inside_zero_and_one(params, big):
    names = {name for name, _ in _logitnormal(params)}
    # docs/model/numerics.md section 9: s_AI,k per inhibitor and the site trabecular shares f_LS,
    # f_TH, f_FN
    assert names == {
        "ai.anastrozole.suppression",
        "ai.letrozole.suppression",
        "ai.exemestane.suppression",
        *(f"f_{site}" for site in SITES),
    }
    for name, sd in _logitnormal(params):
        values = big.values[name]
        assert np.all((values > 0) & (values < 1)), name
        typical = params.parameters[name].value
        logits = np.log(values / (1 - values)) - math.log(typical / (1 - typical))
        assert np.median(logits) == pytest.approx(0.0, abs=0.1 * sd), name
        assert logits.std() == pytest.approx(sd, rel=0.05), name


def test_correlated_parameters(params, big):
    # rho_t and rho_c: correlation 0.8 on the log scale (docs/model/numerics.md section 9)
    r = np.corrcoef(np.log(big.values["rho_t_per_year"]), np.log(big.values["rho_c_per_year"]))
    assert r[0, 1] == pytest.approx(0.8, abs=0.03)
    # one between-patient factor scales both estradiol levels (correlation 1.0 in the file)
    ratio = big.values["e2_pre_pg_ml"] / big.values["e2_post_pg_ml"]
    np.testing.assert_allclose(ratio, 100.0 / 5.0, rtol=1e-12)


def test_parameters_without_variability_stay_typical(params, big):
    varied = {name for item in params.variability for name in item.parameters}
    for name, entry in params.parameters.items():
        if name not in varied:
            assert np.all(big.values[name] == entry.value), name


def test_no_variability_gives_the_typical_patient(params):
    spec = PopulationSpec(
        n=5,
        menopausal_status="postmenopausal",
        age_years=Distribution(mean=64, sd=8),
        baseline_t_score={"total_hip": Distribution(mean=-1.5, sd=1.0)},
        variability=False,
    )
    population = sample_population(spec, params, seed=9)
    assert population.n == 5
    np.testing.assert_array_equal(population.age_years, 64.0)
    for name, value in params.values().items():
        np.testing.assert_array_equal(population.values[name], value)
    # given site: its mean; sites not given: the module default (-1.0 postmenopausal)
    np.testing.assert_array_equal(population.baseline_t_score[SITES.index("total_hip")], -1.5)
    np.testing.assert_array_equal(population.baseline_t_score[SITES.index("lumbar_spine")], -1.0)


def test_t_score_bounds_and_baseline_bmd(params):
    spec = PopulationSpec(
        n=4000,
        menopausal_status="postmenopausal",
        age_years=Distribution(mean=64, sd=8, min=50, max=75),
        baseline_t_score={
            "lumbar_spine": Distribution(mean=-1.0, sd=1.5, min=-2.5, max=0.5),
            "total_hip": Distribution(mean=-3.0, sd=1.0, max=-2.0),
        },
        variability=True,
    )
    population = sample_population(spec, params, seed=4)
    ls, th, fn = population.baseline_t_score
    assert ls.min() >= -2.5 and ls.max() <= 0.5
    assert th.max() <= -2.0 and th.min() >= -6.0  # default bounds: the accepted range [-6, 6]
    assert fn.min() >= -6.0 and fn.max() <= 6.0  # not given: N(-1, 1) within [-6, 6]
    assert fn.mean() == pytest.approx(-1.0, abs=0.05)
    assert fn.std() == pytest.approx(1.0, rel=0.05)
    assert population.age_years.min() >= 50 and population.age_years.max() <= 75
    # the bounds are really reached (a truncated, not a narrowed, distribution)
    assert ls.min() < -2.45 and ls.max() > 0.45
    # baseline BMD = young-adult reference mean + T x reference SD
    # (docs/model/equations.md section 6.5)
    for k, site in enumerate(SITES):
        ref = params.reference_bmd[site]
        np.testing.assert_allclose(
            population.baseline_bmd_g_cm2[k],
            ref.mean_g_cm2 + population.baseline_t_score[k] * ref.sd_g_cm2,
            rtol=1e-14,
        )
    # site T-scores are positively correlated (shared latent factor, population.py: 0.6)
    assert np.corrcoef(ls, fn)[0, 1] > 0.3


def test_given_fixed_t_score_is_used_exactly(params):
    spec = PopulationSpec(
        n=3,
        menopausal_status="postmenopausal",
        age_years=64,
        baseline_t_score={"lumbar_spine": -2.7, "total_hip": 1.3},
        variability=True,
    )
    population = sample_population(spec, params, seed=1)
    np.testing.assert_array_equal(population.baseline_t_score[0], -2.7)
    np.testing.assert_array_equal(population.baseline_t_score[1], 1.3)


@pytest.mark.parametrize("t_score", [-5.5, 4.5])
def test_accepted_t_score_outside_default_bounds_is_not_altered(params, t_score):
    spec = PopulationSpec(
        n=1,
        menopausal_status="postmenopausal",
        age_years=64,
        baseline_t_score={"lumbar_spine": t_score},
        variability=False,
    )
    population = sample_population(spec, params, seed=1)
    assert population.baseline_t_score[0, 0] == t_score


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"age_years": 10}, "age_years"),
        ({"baseline_t_score": {"lumbar_spine": -7.0}}, "baseline_t_score.lumbar_spine"),
        ({"baseline_t_score": {"spine": -1.0}}, "baseline_t_score"),
        ({"final_menstrual_period_month": 12}, "final_menstrual_period_month"),
        ({"n": 0}, "n"),
        ({"menopausal_status": "perimenopausal"}, "menopausal_status"),
    ],
)
def test_invalid_population_specs_name_the_field(spec, field):
    base = {"n": 10, "menopausal_status": "postmenopausal", "age_years": 64}
    with pytest.raises(ValidationError) as excinfo:
        PopulationSpec(**(base | spec))
    assert field in str(excinfo.value)


def test_distribution_bounds_must_be_ordered():
    with pytest.raises(ValidationError, match="min"):
        Distribution(mean=0, sd=1, min=1, max=0)
