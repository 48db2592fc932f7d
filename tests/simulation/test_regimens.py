"""Treatment plans: validation, dose days, exposures, start rules and adherence (regimens.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from bonecast.simulation import (
    DAYS_PER_MONTH,
    PopulationSpec,
    StartRule,
    Treatment,
    month_to_day,
    sample_population,
    simulate,
)
from bonecast.simulation.drugs import DrugClass
from bonecast.simulation.model import ModelConstants, ModelState
from bonecast.simulation.regimens import CompiledRegimen, check_premenopausal_plan


def compile_plan(population, treatments, horizon_days, seed=0):
    """The regimen compiler as simulate() sets it up for one arm (AI suppression, CV, draws)."""
    bp_drugs = tuple(
        dict.fromkeys(t.drug for t in treatments if t.drug_class is DrugClass.BISPHOSPHONATE)
    )
    const = ModelConstants.from_values(
        population.values, population.n, population.fmp_day, bp_drugs, population.age_years
    )
    ai = {k.split(".")[1]: v for k, v in population.values.items() if k.startswith("ai.")}
    cv = population.parameter_set.within_subject["oral_absorption_cv"].value
    regimen = CompiledRegimen(
        treatments,
        const,
        ai,
        population.patient_ids,
        seed,
        horizon_days,
        cv,
        stochastic=population.variability,
    )
    return regimen, const


def dose_events(population, treatments, horizon_days, seed=0):
    """{day: amount added per patient} for the bisphosphonate surface or denosumab depot."""
    regimen, const = compile_plan(population, treatments, horizon_days, seed)
    events = {}
    for day in range(horizon_days):
        if regimen.has_dose(day):
            state = ModelState.baseline(const)
            regimen.apply_doses(day, state)
            events[day] = state.bp_surface_mg.sum(axis=0) + state.den_depot_mg
    return events


def dose_days_from_simulation(result, drug):
    """Days on which bone drug jumps up (recorded state is before that day's dose)."""
    return np.flatnonzero(np.diff(result.bp_bone_mg[drug][:, 0]) > 0).tolist()


# --------------------------------------------------------------------------------------------
# Calendar
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("month", "day"),
    # round(month * 365.25 / 12): regimens.py module docstring
    [(0, 0), (1, 30), (3, 91), (6, 183), (12, 365), (24, 730), (60, 1826), (84, 2557)],
)
def test_month_to_day(month, day):
    assert month_to_day(month) == day
    assert pytest.approx(365.25 / 12) == DAYS_PER_MONTH


def test_zoledronic_acid_every_182_days_until_month_60(typical_patient, tx):
    """4 mg IV every 182 days from month 0, stopped at month 60 (day 1826): 11 doses."""
    plan = [tx("zoledronic_acid", 4.0, 182.0, 0, 60)]
    result = simulate(typical_patient, plan, month_to_day(72))
    assert dose_days_from_simulation(result, "zoledronic_acid") == list(range(0, 1821, 182))
    # each dose adds 4 mg x f_bone (0.6, docs/model/parameters.md section 7.4) to bone
    events = dose_events(typical_patient, plan, month_to_day(72))
    assert sorted(events) == list(range(0, 1821, 182))
    for amount in events.values():
        assert amount[0] == pytest.approx(4.0 * 0.6, rel=1e-15)


@pytest.mark.parametrize(
    ("drug", "dose", "interval", "start", "stop", "route", "days"),
    [
        # start day round(3 * 30.4375) = 91, stop day round(15 * 30.4375) = 457
        ("ibandronate", 150.0, 30.0, 3, 15, "oral", list(range(91, 457, 30))),
        # start day 183 (month 6), stop day 913 (month 30): doses strictly before the stop day
        ("denosumab", 60.0, 182.0, 6, 30, "sc", [183, 365, 547, 729, 911]),
        # a non-integer interval: dose j on round(j * 30.4375), half-to-even (243.5 -> 244)
        (
            "ibandronate",
            3.0,
            30.4375,
            0,
            12,
            "iv",
            [0, 30, 61, 91, 122, 152, 183, 213, 244, 274, 304, 335],
        ),
    ],
)
def test_dose_days(typical_patient, tx, drug, dose, interval, start, stop, route, days):
    plan = [tx(drug, dose, interval, start, stop, route=route)]
    events = dose_events(typical_patient, plan, month_to_day(48))
    assert sorted(events) == days


def test_open_ended_treatment_doses_until_the_horizon(typical_patient, tx):
    plan = [tx("zoledronic_acid", 4.0, 182.0, 0, None)]
    assert sorted(dose_events(typical_patient, plan, 730)) == [0, 182, 364, 546, 728]


def daily_inputs(regimen, horizon_days):
    """Exposures day by day, in order, as the integrators ask for them (inputs() caches the
    exposures between the days they change)."""
    days = [regimen.inputs(day) for day in range(horizon_days)]
    return {
        "ai": np.array([d.ai_suppression[0] for d in days]),
        "ofs": np.array([d.ovarian_suppression[0] for d in days]),
        "tam": np.array([d.tamoxifen[0] for d in days]),
    }


def test_exposures_are_on_from_start_day_to_the_day_before_stop(typical_patient, tx):
    """Aromatase inhibitor suppression, goserelin and tamoxifen flags
    (docs/model/equations.md section 5)."""
    plan = [
        tx("anastrozole", 1.0, 1.0, 2, 14),  # days 61 .. 425
        tx("tamoxifen", 20.0, 1.0, 14, 20),  # days 426 .. 608
    ]
    regimen, _ = compile_plan(typical_patient, plan, 800)
    exposure = daily_inputs(regimen, 800)
    days = np.arange(800)
    # anastrozole removes 85 % of estradiol (docs/model/parameters.md section 7.1, s_AI,anastrozole
    # = 0.85)
    ai_on = (days >= 61) & (days < 426)
    np.testing.assert_allclose(exposure["ai"], np.where(ai_on, 0.85, 0.0), rtol=1e-15)
    tam_on = (days >= 426) & (days < 609)
    np.testing.assert_array_equal(exposure["tam"], np.where(tam_on, 1.0, 0.0))
    np.testing.assert_array_equal(exposure["ofs"], 0.0)


def test_exposures_do_not_depend_on_the_order_days_are_asked(typical_patient, tx):
    """Exposures are cached between change days; asking out of order must not reuse them."""
    regimen, _ = compile_plan(typical_patient, [tx("anastrozole", 1.0, 1.0, 2, 14)], 800)
    assert regimen.inputs(700).ai_suppression[0] == 0.0  # after the stop (day 426)
    assert regimen.inputs(100).ai_suppression[0] == pytest.approx(0.85)
    assert regimen.inputs(30).ai_suppression[0] == 0.0  # before the start (day 61)
    assert regimen.inputs(425).ai_suppression[0] == pytest.approx(0.85)


def test_adherence_scales_a_daily_exposure(make_patient, tx):
    """regimens.py: for a daily exposure drug adherence scales the exposure."""
    patient = make_patient(menopausal_status="premenopausal", age_years=40)
    plan = [
        tx("goserelin", 3.6, 28.0, 0, 24),
        tx("anastrozole", 1.0, 1.0, 0, 24, adherence=0.8),
    ]
    regimen, _ = compile_plan(patient, plan, 800)
    exposure = daily_inputs(regimen, 800)
    on = np.arange(800) < month_to_day(24)
    np.testing.assert_allclose(exposure["ai"], np.where(on, 0.8 * 0.85, 0.0), rtol=1e-14)
    np.testing.assert_array_equal(exposure["ofs"], np.where(on, 1.0, 0.0))


# --------------------------------------------------------------------------------------------
# Start rules
# --------------------------------------------------------------------------------------------


def _patient_with_t_scores(params, **t_scores):
    spec = PopulationSpec(
        n=1,
        menopausal_status="postmenopausal",
        age_years=64,
        variability=False,
        baseline_t_score=t_scores,
    )
    return sample_population(spec, params, seed=0)


def _rule_plan(tx, threshold=-2.0, every=6.0, first=0.0):
    return [
        tx("anastrozole", 1.0, 1.0, 0, 36),
        tx(
            "zoledronic_acid",
            4.0,
            182.0,
            None,
            36,
            start_when=StartRule(
                t_score_below=threshold, check_every_months=every, first_check_month=first
            ),
        ),
    ]


def test_start_rule_fires_at_day_zero_when_already_below(params, tx):
    patient = _patient_with_t_scores(params, lumbar_spine=-2.5, total_hip=0.0, femoral_neck=0.0)
    result = simulate(patient, _rule_plan(tx), month_to_day(36))
    # fires at the first check (day 0), then every 182 days before the stop (month 36 = day 1096)
    assert dose_days_from_simulation(result, "zoledronic_acid") == list(range(0, 1096, 182))


def test_start_rule_waits_for_its_first_check(params, tx):
    patient = _patient_with_t_scores(params, lumbar_spine=-2.5, total_hip=0.0, femoral_neck=0.0)
    result = simulate(patient, _rule_plan(tx, every=12.0, first=12.0), month_to_day(36))
    assert dose_days_from_simulation(result, "zoledronic_acid") == list(range(365, 1096, 182))


def test_start_rule_does_not_fire_above_the_threshold(params, tx):
    patient = _patient_with_t_scores(params, lumbar_spine=0.0, total_hip=0.0, femoral_neck=0.0)
    result = simulate(patient, _rule_plan(tx), month_to_day(36))
    assert np.all(result.bp_bone_mg["zoledronic_acid"] == 0.0)


def test_start_rule_fires_at_the_first_check_below_the_threshold(params, tx):
    """The lowest T-score crosses -2.0 during anastrozole: the drug starts at the next check."""
    patient = _patient_with_t_scores(params, lumbar_spine=0.0, total_hip=-1.95, femoral_neck=-1.0)
    plan = _rule_plan(tx, threshold=-2.0, every=6.0)
    horizon = month_to_day(36)
    # independent expectation: the anastrozole-only trajectory up to the start is the same
    alone = simulate(patient, plan[:1], horizon)
    lowest = alone.t_scores()[:, :, 0].min(axis=1)
    checks = [month_to_day(6.0 * k) for k in range(7) if month_to_day(6.0 * k) < horizon]
    expected = next(day for day in checks if lowest[day] < -2.0)
    assert expected > 0  # the rule really had to wait
    with_rule = simulate(patient, plan, horizon)
    days = dose_days_from_simulation(with_rule, "zoledronic_acid")
    assert days[0] == expected
    assert np.diff(days).tolist() == [182] * (len(days) - 1)


# --------------------------------------------------------------------------------------------
# Oral dosing: adherence and absorption (docs/model/equations.md section 5 and
# docs/model/numerics.md section 9)
# --------------------------------------------------------------------------------------------

# Alendronate 70 mg weekly: F = 0.0064 (Gertz 1995, docs/model/parameters.md section 7.4) and f_bone
# = 0.5 (docs/model/parameters.md section 7.4)
ALENDRONATE_ON_BONE_MG = 70.0 * 0.0064 * 0.5
# within-subject absorption CV 0.60 (docs/model/numerics.md section 9): log-SD sqrt(ln(1 + 0.6^2))
ABSORPTION_LOG_SD = math.sqrt(math.log1p(0.6**2))


@pytest.fixture(scope="module")
def many_varied(params):
    spec = PopulationSpec(
        n=4000, menopausal_status="postmenopausal", age_years=64, variability=True
    )
    return sample_population(spec, params, seed=21)


@pytest.mark.parametrize("adherence", [1.0, 0.8, 0.5])
def test_oral_doses_reaching_bone(many_varied, tx, adherence):
    """Varied patients: each planned dose is taken with probability ``adherence`` and absorbed
    with a lognormal factor of mean 1 (docs/model/equations.md section 5 and
    docs/model/numerics.md section 9), on top of the patient's own F."""
    plan = [tx("alendronate", 70.0, 7.0, 0, 3, adherence=adherence)]  # 13 weekly doses
    events = dose_events(many_varied, plan, 91, seed=4)
    assert sorted(events) == list(range(0, 91, 7))
    # amount per planned dose relative to dose x (this patient's F) x f_bone: 13 x 4000 doses
    own_f = many_varied.values["bp.alendronate.f_oral"]
    ratio = np.concatenate([amount / (70.0 * own_f * 0.5) for amount in events.values()])
    taken = ratio > 0
    # Bernoulli(adherence) per dose; 52 000 draws -> SE of the fraction <= 0.0022
    assert taken.mean() == pytest.approx(adherence, abs=0.01)
    # mean over all planned doses, taken or not: proportional to adherence (SE < 0.4 %)
    assert ratio.mean() == pytest.approx(adherence, rel=0.03)
    # taken doses: lognormal with the within-subject CV and mean 1
    logs = np.log(ratio[taken])
    assert logs.std() == pytest.approx(ABSORPTION_LOG_SD, rel=0.03)
    assert logs.mean() == pytest.approx(-0.5 * ABSORPTION_LOG_SD**2, abs=0.02)


@pytest.mark.parametrize("adherence", [1.0, 0.5])
def test_typical_patients_take_the_expected_dose(params, tx, adherence):
    """Variability off: every dose is the expected amount, adherence x dose x F x f_bone."""
    spec = PopulationSpec(n=50, menopausal_status="postmenopausal", age_years=64, variability=False)
    population = sample_population(spec, params, seed=21)
    plan = [tx("alendronate", 70.0, 7.0, 0, 3, adherence=adherence)]
    events = dose_events(population, plan, 91, seed=4)
    assert sorted(events) == list(range(0, 91, 7))
    for amount in events.values():
        np.testing.assert_allclose(amount, adherence * ALENDRONATE_ON_BONE_MG, rtol=1e-14)


def test_oral_dose_draws_are_keyed_by_patient_and_dose(many_varied, tx):
    """The same seed gives the same doses; another seed gives other doses."""
    plan = [tx("risedronate", 35.0, 7.0, 0, 1, adherence=0.7)]
    a = dose_events(many_varied, plan, 28, seed=1)
    b = dose_events(many_varied, plan, 28, seed=1)
    c = dose_events(many_varied, plan, 28, seed=2)
    for day in a:
        np.testing.assert_array_equal(a[day], b[day])
        assert not np.array_equal(a[day], c[day])
    # successive doses of one patient are independent draws, not one repeated factor
    assert not np.array_equal(a[0], a[7])


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

GOOD = dict(drug="zoledronic_acid", dose_mg=4.0, interval_days=182.0, start_month=0)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"drug": "aspirin"}, "drug"),
        ({"dose_mg": -4.0}, "dose_mg"),
        ({"dose_mg": 0.0}, "dose_mg"),
        ({"dose_mg": float("nan")}, "dose_mg"),
        ({"interval_days": 0.0}, "interval_days"),
        ({"start_month": -1.0}, "start_month"),
        ({"start_month": 12.0, "stop_month": 6.0}, "stop_month"),
        ({"start_month": 12.0, "stop_month": 12.0}, "stop_month"),
        ({"adherence": 0.8}, "adherence"),  # zoledronic acid is IV
        ({"adherence": 1.5}, "adherence"),
        ({"route": "oral"}, "route"),  # zoledronic acid is IV only
        (
            {"drug": "anastrozole", "dose_mg": 10.0, "interval_days": 1.0},
            "dose_mg/interval_days",
        ),
        ({"drug": "tamoxifen", "dose_mg": 20.0, "interval_days": 7.0}, "dose_mg/interval_days"),
        (
            {"start_when": {"t_score_below": -2.0, "check_every_months": 12}},
            "start_month",
        ),  # both a start month and a start rule
        ({"start_month": None}, "start_month"),  # neither
        ({"dosage": 4.0}, "dosage"),  # unknown key
    ],
)
def test_invalid_treatments_name_the_field(changes, field):
    with pytest.raises(ValidationError) as excinfo:
        Treatment(**(GOOD | changes))
    assert field in str(excinfo.value)


def test_adherence_on_an_sc_drug_is_refused():
    with pytest.raises(ValidationError, match="adherence"):
        Treatment(drug="denosumab", dose_mg=60, interval_days=182, start_month=0, adherence=0.9)


@pytest.mark.parametrize(
    "treatment",
    [
        dict(drug="anastrozole", dose_mg=1, interval_days=1),
        dict(drug="letrozole", dose_mg=2.5, interval_days=1),
        dict(drug="exemestane", dose_mg=25, interval_days=1),
        dict(drug="tamoxifen", dose_mg=20, interval_days=1, adherence=0.9),
        dict(drug="goserelin", dose_mg=10.8, interval_days=84),
        dict(drug="ibandronate", dose_mg=3, interval_days=91, route="iv"),
        dict(drug="zoledronic_acid", dose_mg=0.5, interval_days=365),  # any dose of a dosed drug
        dict(drug="alendronate", dose_mg=70, interval_days=7, adherence=0.6),
    ],
)
def test_standard_and_dose_ranging_treatments_are_accepted(treatment):
    t = Treatment(**treatment, start_month=0)
    assert t.given_route.value in {"oral", "iv", "sc"}


def test_start_rule_bounds():
    with pytest.raises(ValidationError, match="check_every_months"):
        StartRule(t_score_below=-2.0, check_every_months=0)
    with pytest.raises(ValidationError, match="t_score_below"):
        StartRule(t_score_below=-7.0, check_every_months=6)


def test_premenopausal_aromatase_inhibitor_needs_ovarian_suppression(tx):
    """docs/model/equations.md section 5: an AI without OFS in a premenopausal patient is
    refused."""
    ai = tx("anastrozole", 1.0, 1.0, 0, 36)
    with pytest.raises(ValueError, match="goserelin"):
        check_premenopausal_plan([ai], 36)
    # goserelin must cover the whole AI period
    with pytest.raises(ValueError, match="goserelin"):
        check_premenopausal_plan([tx("goserelin", 3.6, 28.0, 0, 24), ai], 36)
    check_premenopausal_plan([tx("goserelin", 3.6, 28.0, 0, 36), ai], 36)
    check_premenopausal_plan([tx("tamoxifen", 20.0, 1.0, 0, 60)], 60)
