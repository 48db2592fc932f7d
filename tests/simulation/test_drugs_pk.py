"""Drug catalogue and pharmacokinetics: denosumab serum PK, bisphosphonate bone pools."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from bonecast.simulation import (
    DAYS_PER_YEAR,
    DRUGS,
    DrugClass,
    PopulationSpec,
    Route,
    Treatment,
    month_to_day,
    sample_population,
    simulate,
    simulate_reference,
)
from bonecast.simulation.drugs import AROMATASE_INHIBITORS, BISPHOSPHONATES, get_drug

TEN_YEARS = round(10 * DAYS_PER_YEAR)

# --------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------


def test_catalogue_classes_and_routes():
    assert set(AROMATASE_INHIBITORS) == {"anastrozole", "letrozole", "exemestane"}
    assert set(BISPHOSPHONATES) == {"zoledronic_acid", "alendronate", "risedronate", "ibandronate"}
    assert DRUGS["denosumab"].drug_class is DrugClass.RANKL_ANTIBODY
    assert DRUGS["zoledronic_acid"].default_route is Route.IV
    assert DRUGS["ibandronate"].routes == (Route.ORAL, Route.IV)
    for name in ("anastrozole", "letrozole", "exemestane", "tamoxifen", "goserelin"):
        assert DRUGS[name].is_exposure, name
    for name in (*BISPHOSPHONATES, "denosumab"):
        assert not DRUGS[name].is_exposure, name
        assert DRUGS[name].regimens, name


def test_every_bisphosphonate_has_its_parameters(params):
    for drug in BISPHOSPHONATES:
        for key in ("f_oral", "f_bone", "ec50_mg"):
            assert f"bp.{drug}.{key}" in params.parameters
    for drug in AROMATASE_INHIBITORS:
        assert f"ai.{drug}.suppression" in params.parameters


def test_unknown_drug_lists_the_accepted_names():
    with pytest.raises(KeyError, match="zoledronic_acid"):
        get_drug("zoledronate")


# --------------------------------------------------------------------------------------------
# Denosumab 60 mg SC (docs/model/equations.md section 6.7)
# --------------------------------------------------------------------------------------------

# Prolia (denosumab) US prescribing information, section 12.3, as recalled -- UNVERIFIED here
# (the label text could not be retrieved in this session): after 60 mg SC, mean Cmax
# 6.75 mcg/mL (SD 1.89), reached in a median of 10 days (range 3-21 days); concentrations then
# decline over 4-5 months (mean half-life 25.4 days). A single-dose study in healthy Chinese
# volunteers (Chen 2018, PLoS One 13:e0197984, abstract) also reports a peak near day 10.
LABEL_CMAX_MG_L = 6.75
LABEL_CMAX_SD_MG_L = 1.89
LABEL_TMAX_RANGE_DAYS = (3, 21)
# docs/model/equations.md section 6.7: the OpenBoneMin values give Cmax ~8.7 ug/mL near day 14 and
# ~5 ng/mL at day 180
MODEL_MD_CMAX_MG_L = 8.7


@pytest.fixture(scope="module")
def one_denosumab_dose(typical_patient, tx):
    plan = [tx("denosumab", 60.0, 182.0, 0, 1)]  # a single dose on day 0
    return (
        simulate(typical_patient, plan, 200).denosumab_mg_l[:, 0],
        simulate_reference(typical_patient, plan, 200).denosumab_mg_l[:, 0],
    )


def _independent_denosumab_pk(v: dict[str, float], days: int) -> np.ndarray:
    """docs/model/equations.md section 6.7 integrated directly (depot, central, peripheral),
    concentration in mg/L."""
    vc, vp = v["den.vc_l"], v["den.vp_l"]

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        depot, central, peripheral = y
        conc = central / vc
        exchange = v["den.q_l_per_day"] * (conc - peripheral / vp)
        elim = v["den.cl_l_per_day"] * conc + v["den.vmax_mg_per_day"] * conc / (
            v["den.km_mg_l"] + conc
        )
        absorbed = v["den.ka_per_day"] * depot
        return np.array([-absorbed, absorbed - elim - exchange, exchange])

    sol = solve_ivp(
        rhs,
        (0, days),
        [60.0 * v["den.f_sc"], 0.0, 0.0],
        method="LSODA",
        rtol=1e-10,
        atol=1e-14,
        t_eval=np.arange(days + 1.0),
    )
    assert sol.success
    return sol.y[1] / vc


@pytest.mark.parametrize("path", ["fast", "reference"])
def test_denosumab_peak_against_the_label(one_denosumab_dose, path):
    conc = one_denosumab_dose[0 if path == "fast" else 1]
    cmax, tmax = conc.max(), int(conc.argmax())
    # within 2 SD of the label mean (6.75 +- 2 x 1.89 mcg/mL)
    assert (
        LABEL_CMAX_MG_L - 2 * LABEL_CMAX_SD_MG_L <= cmax <= LABEL_CMAX_MG_L + 2 * LABEL_CMAX_SD_MG_L
    )
    # and within 5 % of what docs/model/equations.md section 6.7 says these PK values give
    assert cmax == pytest.approx(MODEL_MD_CMAX_MG_L, rel=0.05)
    assert LABEL_TMAX_RANGE_DAYS[0] <= tmax <= LABEL_TMAX_RANGE_DAYS[1]


@pytest.mark.parametrize("path", ["fast", "reference"])
def test_denosumab_is_nearly_gone_at_six_months(one_denosumab_dose, path):
    conc = one_denosumab_dose[0 if path == "fast" else 1]
    assert conc[180] < 0.01 * conc.max()
    # docs/model/equations.md section 6.7 expects ~5 ng/mL at day 180; the same equations integrated
    # here give ~6.8
    assert 0.002 <= conc[180] <= 0.010
    # after the peak the concentration only falls
    assert np.all(np.diff(conc[int(conc.argmax()) :]) <= 0)


def test_denosumab_pk_matches_an_independent_solve(params, one_denosumab_dose):
    fast, _ = one_denosumab_dose
    expected = _independent_denosumab_pk(params.values(), 200)
    # fast path (second-order PK step at dt = 1 d): 1 % of the peak throughout, 3 % at day 180
    assert np.max(np.abs(fast - expected)) < 0.01 * expected.max()
    assert fast[180] == pytest.approx(expected[180], rel=0.03)
    assert int(fast.argmax()) == int(expected.argmax())


def test_denosumab_suppresses_ctx_within_a_month(typical_patient, tx):
    """docs/model/index.md section 3: 'deep, fast CTX suppression (about -85 % within a month)'.

    FREEDOM (Cummings 2009 NEJM, calibration target D5_M1, UNVERIFIED): -86 % at 1 month.
    Uncalibrated parameters: a loose band of +-10 pp.
    """
    result = simulate(typical_patient, [tx("denosumab", 60.0, 182.0, 0, 12)], 60)
    ctx_pct = 100.0 * (result.osteoclasts[30, 0] - 1.0)
    assert -96.0 <= ctx_pct <= -76.0


# --------------------------------------------------------------------------------------------
# Bisphosphonate bone pools (docs/model/equations.md section 6.6)
# --------------------------------------------------------------------------------------------

ZOL_F_BONE = (
    0.6  # docs/model/parameters.md section 7.4, from the 40-50 % urinary recovery (Zometa label)
)


def _single_zol(tx, dose=4.0):
    return [tx("zoledronic_acid", dose, 182.0, 0, 1)]  # one dose on day 0


def test_iv_dose_puts_dose_times_f_bone_on_bone(typical_patient, tx, params):
    result = simulate(typical_patient, _single_zol(tx), 10)
    amount = result.bp_bone_mg["zoledronic_acid"][:, 0]
    assert amount[0] == 0.0  # recorded before the day's dose
    # day 1: 4 mg x 0.6 less at most one day of surface loss, k_s (1 - f_bur) = ln2/t_s x 0.2
    half_life = params.parameters["bp.zoledronic_acid.t_s_days"].value
    one_day_loss = math.log(2) / half_life * (1.0 - params.parameters["bp_burial_share"].value)
    assert 4.0 * ZOL_F_BONE * (1 - one_day_loss) <= amount[1] <= 4.0 * ZOL_F_BONE
    # surface drug, not yet buried, is nearly all of it
    surface = result.bp_surface_mg["zoledronic_acid"][1, 0]
    assert surface == pytest.approx(4.0 * ZOL_F_BONE, rel=0.02)


@settings(max_examples=25, deadline=None)
@given(dose=st.floats(0.01, 50.0), drug=st.sampled_from(["zoledronic_acid", "ibandronate"]))
def test_any_iv_dose_lands_on_bone_in_proportion(make_patient, params, dose, drug):
    """With no loss path (f_bur = 1, f_bone = 1) the day-1 bone amount is exactly the dose."""
    closed = params.with_values(**{"bp_burial_share": 1.0, f"bp.{drug}.f_bone": 1.0})
    patient = make_patient(parameter_set=closed)
    plan = [Treatment(drug=drug, dose_mg=dose, interval_days=365, start_month=0, route="iv")]
    amount = simulate(patient, plan, 2).bp_bone_mg[drug][:, 0]
    assert amount[1] == pytest.approx(dose, rel=1e-12)
    # and with the default f_bone the dose lands in proportion (loss-free path, f_bur = 1)
    f_bone = params.parameters[f"bp.{drug}.f_bone"].value
    partly = make_patient(parameter_set=params.with_values(bp_burial_share=1.0))
    amount = simulate(partly, plan, 1).bp_bone_mg[drug][:, 0]
    # buried drug is released at 0.1/y and only f_bone of it re-deposits: < 1e-6 in one day
    assert amount[1] == pytest.approx(dose * f_bone, rel=1e-6)


@pytest.fixture(scope="module")
def closed_zol(make_patient, params, tx):
    """One 4 mg dose with no elimination path: f_bur = 1 and f_bone = 1."""
    closed = params.with_values(**{"bp_burial_share": 1.0, "bp.zoledronic_acid.f_bone": 1.0})
    return make_patient(parameter_set=closed), _single_zol(tx)


def test_bone_drug_is_conserved_without_elimination(closed_zol):
    patient, plan = closed_zol
    total = simulate(patient, plan, TEN_YEARS).bp_bone_mg["zoledronic_acid"][1:, 0]
    assert np.max(np.abs(total / 4.0 - 1.0)) < 1e-9


def test_reference_conserves_bone_drug_too(closed_zol):
    patient, plan = closed_zol
    days = list(range(0, TEN_YEARS + 1, 30))
    result = simulate_reference(patient, plan, TEN_YEARS, record_days=days)
    total = result.bp_bone_mg["zoledronic_acid"][1:, 0]
    assert np.max(np.abs(total / 4.0 - 1.0)) < 1e-6


@pytest.fixture(scope="module")
def zol_q6m(typical_patient, tx):
    plan = [tx("anastrozole", 1.0, 1.0, 0, 60), tx("zoledronic_acid", 4.0, 182.0, 0, 60)]
    horizon = month_to_day(84)
    return (
        simulate(typical_patient, plan, horizon),
        simulate_reference(typical_patient, plan, horizon),
    )


def test_bone_drug_never_increases_between_doses(zol_q6m):
    fast, _ = zol_q6m
    total = fast.bp_bone_mg["zoledronic_acid"][:, 0]
    rises = np.flatnonzero(np.diff(total) > 0)
    np.testing.assert_array_equal(rises, np.arange(0, 1821, 182))  # only the 11 dose days
    # each rise is one dose, 4 mg x 0.6, less under one day of loss
    jumps = np.diff(total)[rises]
    np.testing.assert_allclose(jumps, 4.0 * ZOL_F_BONE, rtol=5e-3)


def test_buried_share_grows_after_a_dose(typical_patient, tx):
    result = simulate(typical_patient, _single_zol(tx), TEN_YEARS)
    total = result.bp_bone_mg["zoledronic_acid"][1:, 0]
    surface = result.bp_surface_mg["zoledronic_acid"][1:, 0]
    buried_share = 1.0 - surface / total
    # burial under new bone (t_s = 147 d, f_bur = 0.8) outruns release (0.1/y): the buried
    # share rises month by month over the first three years...
    assert np.all(np.diff(buried_share[: 3 * 365 : 30]) > 0)
    # ...to a plateau near 1 (it dips by < 0.1 pp later, as osteoclasts and release recover)
    assert buried_share[0] < 0.01
    assert np.all(buried_share[5 * 365 :] > 0.95)
    # total bone drug after a single dose only falls
    assert np.all(np.diff(total) <= 0)


def test_reference_agrees_on_bone_drug(zol_q6m):
    """Total bone drug within 0.1 % and surface drug within 0.5 % of their peaks (7 years)."""
    fast, ref = zol_q6m
    for key, tolerance in (("bp_bone_mg", 1e-3), ("bp_surface_mg", 5e-3)):
        a = getattr(fast, key)["zoledronic_acid"][:, 0]
        b = getattr(ref, key)["zoledronic_acid"][:, 0]
        assert np.max(np.abs(a - b)) < tolerance * b.max(), key


def test_bone_drug_error_shrinks_with_the_step(typical_patient, tx):
    """The surface pool sees b and c frozen over a step: a first-order error that dt removes."""
    plan = [tx("anastrozole", 1.0, 1.0, 0, 24), tx("zoledronic_acid", 4.0, 182.0, 0, 24)]
    horizon = month_to_day(24)
    ref = simulate_reference(typical_patient, plan, horizon).bp_surface_mg["zoledronic_acid"]
    errors = [
        np.max(
            np.abs(
                simulate(typical_patient, plan, horizon, dt_days=dt).bp_surface_mg[
                    "zoledronic_acid"
                ]
                - ref
            )
        )
        for dt in (1.0, 0.1)
    ]
    assert errors[1] < 0.2 * errors[0]


# Alendronate 70 mg weekly: F = 0.0064 (Gertz 1995, docs/model/parameters.md section 7.4) x f_bone =
# 0.5 (docs/model/parameters.md section 7.4)
ALENDRONATE_ON_BONE_MG = 70.0 * 0.0064 * 0.5


@pytest.mark.parametrize("adherence", [1.0, 0.6])
def test_typical_patient_takes_the_expected_oral_dose(typical_patient, tx, params, adherence):
    """Variability off: each weekly dose puts adherence x 70 x 0.0064 x 0.5 mg on bone.

    regimens.py (CompiledRegimen, stochastic=False): a typical patient's oral dose is its
    expected value (dose x adherence, mean absorption factor 1), not a random draw.
    """
    plan = [tx("alendronate", 70.0, 7.0, 0, 1, adherence=adherence)]
    bone = simulate(typical_patient, plan, 30).bp_bone_mg["alendronate"][:, 0]
    rises = np.flatnonzero(np.diff(bone) > 0)
    np.testing.assert_array_equal(rises, [0, 7, 14, 21, 28])
    half_life = params.parameters["bp.alendronate.t_s_days"].value
    one_day_loss = math.log(2) / half_life * (1.0 - params.parameters["bp_burial_share"].value)
    expected = adherence * ALENDRONATE_ON_BONE_MG
    assert expected * (1 - one_day_loss) <= bone[1] <= expected


def test_varied_patients_take_the_expected_oral_dose_on_average(params, tx):
    """Variability on: Bernoulli(adherence) x lognormal(mean 1, CV 0.6) per dose
    (docs/model/equations.md section 5 and docs/model/numerics.md section 9).

    Normalised by each patient's own bioavailability (between-patient lognormal F), the mean
    amount on bone per planned dose is adherence x 70 x 0.5 mg.
    """
    spec = PopulationSpec(
        n=3000, menopausal_status="postmenopausal", age_years=64, variability=True
    )
    population = sample_population(spec, params, seed=5)
    plan = [tx("alendronate", 70.0, 7.0, 0, 1, adherence=0.7)]
    first = simulate(population, plan, 1, seed=2).bp_bone_mg["alendronate"][1]
    per_f = first / (70.0 * population.values["bp.alendronate.f_oral"] * 0.5)
    taken = per_f > 0
    # 3000 patients: SE of the taken fraction 0.008, of the mean ~0.015 (CV 0.6 x sqrt(0.7))
    assert taken.mean() == pytest.approx(0.7, abs=0.03)
    assert per_f.mean() == pytest.approx(0.7, rel=0.06)
    assert per_f[taken].std() == pytest.approx(0.6, rel=0.1)
