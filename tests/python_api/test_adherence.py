"""Adherence and persistence models, stop and switch rules, in the API and the trial spec."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bonecast as bc
from bonecast.simulation.trials import parse_trial_spec


def test_discontinuation_hazard_leaves_the_exponential_fraction_on_drug() -> None:
    hazard = 0.7
    regimen = bc.Regimen.standard("anastrozole", adherence={"discontinuation_per_year": hazard})
    result = bc.simulate(bc.Population.sample(400, seed=4), regimen, years=1)
    estradiol = result.values("estradiol")
    on_drug = np.mean(estradiol[-1] < 0.5 * estradiol[0])
    expected = math.exp(-hazard * 1.0)
    assert on_drug == pytest.approx(expected, abs=3 * math.sqrt(expected * (1 - expected) / 400))


def test_missed_oral_doses_give_less_bone_gain() -> None:
    population = bc.Population.sample(60, seed=3)
    full = bc.simulate(population, bc.Regimen.standard("alendronate"), years=1)
    half = bc.simulate(population, bc.Regimen.standard("alendronate", adherence=0.5), years=1)
    gain = full.values("bmd_pct_change_lumbar_spine")[-1].mean()
    assert 0 < half.values("bmd_pct_change_lumbar_spine")[-1].mean() < gain


def test_injection_delays_push_every_later_dose() -> None:
    late = bc.Regimen.standard(
        "denosumab", adherence={"injection_delay_days": {"mean": 120.0, "sd": 0.0}}
    )
    population = bc.Population.sample(1, seed=1, variability=False)
    a = bc.simulate(population, bc.Regimen.standard("denosumab"), days=320, record_every_days=1)
    b = bc.simulate(population, late, days=320, record_every_days=1)
    level = b.values("denosumab")[:, 0]
    # second dose at 182 + 120 = 302 days: no rise before, a jump on the day after
    assert level[190:302].max() <= level[189]
    assert level[303] > 5 * level[301]
    assert a.values("denosumab")[200, 0] > 5 * level[200]


def test_stop_rule_stops_once_the_t_score_has_risen() -> None:
    population = bc.Population.sample(
        1,
        seed=1,
        variability=False,
        baseline_t_score={"lumbar_spine": -2.05, "total_hip": -1.0, "femoral_neck": -1.0},
    )
    stopping = bc.Regimen.standard(
        "denosumab", stop_when={"t_score_above": -2.0, "check_every_months": 3}
    )
    a = bc.simulate(population, bc.Regimen.standard("denosumab"), days=240, record_every_days=1)
    b = bc.simulate(population, stopping, days=240, record_every_days=1)
    assert b.values("denosumab")[200, 0] < 0.2 * a.values("denosumab")[200, 0]


def test_switch_stops_the_first_drug_and_starts_the_second() -> None:
    regimen = bc.Regimen.standard("tamoxifen").switch_to("exemestane", month=24)
    (first, second) = regimen.treatments
    assert (first.drug, first.stop_month) == ("tamoxifen", 24)
    assert (second.drug, second.start_month, second.stop_month) == ("exemestane", 24, None)


def _spec(adherence: object, drug: str = "alendronate", route: str = "oral") -> dict[str, object]:
    return {
        "name": "t",
        "population": {"n": 10, "menopausal_status": "postmenopausal", "age_years": 60},
        "arms": [
            {
                "name": "a",
                "treatments": [
                    {
                        "drug": drug,
                        "dose_mg": 70 if drug == "alendronate" else 60,
                        "route": route,
                        "interval_days": 7 if drug == "alendronate" else 182,
                        "start_month": 0,
                        "adherence": adherence,
                    }
                ],
            }
        ],
        "outputs": {"quantities": ["lumbar_spine"], "months": [12]},
    }


def test_trial_spec_keeps_a_probability_and_accepts_a_model() -> None:
    number = parse_trial_spec(_spec(0.8)).arms[0].treatments[0]
    assert number.adherence == 0.8 and number.adherence_model.take_probability == 0.8
    model = (
        parse_trial_spec(_spec({"take_probability": 0.7, "discontinuation_per_year": 0.2}))
        .arms[0]
        .treatments[0]
    )
    assert model.adherence_model.discontinuation_per_year == 0.2
    delay = {"injection_delay_days": {"mean": 30, "sd": 10}}
    parse_trial_spec(_spec(delay, drug="denosumab", route="sc"))
    with pytest.raises(ValueError, match="injection_delay_days"):
        parse_trial_spec(_spec(delay))  # an oral drug has no injections
    with pytest.raises(ValueError, match="adherence"):
        parse_trial_spec(_spec(1.5))


@settings(max_examples=25, deadline=None)
@given(st.floats(0.01, 1.0), st.floats(0.0, 5.0))
def test_any_valid_adherence_model_round_trips(p: float, hazard: float) -> None:
    model = bc.AdherenceModel(take_probability=p, discontinuation_per_year=hazard)
    treatment = bc.Treatment(
        drug="alendronate", dose_mg=70, interval_days=7, start_month=0, adherence=model
    )
    assert bc.Treatment.model_validate(treatment.model_dump()).adherence_model == model


def test_the_compiled_engine_applies_the_same_adherence_rules() -> None:
    regimen = bc.Regimen.standard(
        "denosumab",
        adherence={"discontinuation_per_year": 0.8, "injection_delay_days": {"mean": 40, "sd": 30}},
        stop_when={"t_score_above": -1.0, "check_every_months": 6},
    ) + bc.Regimen.standard("letrozole", adherence={"discontinuation_per_year": 0.5})
    population = bc.Population.sample(30, seed=8)
    numpy = bc.simulate(population, regimen, years=2, engine="numpy")
    numba = bc.simulate(population, regimen, years=2, engine="numba")
    for quantity in ("bmd_pct_change_lumbar_spine", "denosumab"):
        np.testing.assert_allclose(numba.values(quantity), numpy.values(quantity), atol=0.01)


def test_with_adherence_applies_each_part_where_the_route_allows_it() -> None:
    regimen = (
        bc.Regimen.standard("anastrozole") + bc.Regimen.standard("denosumab")
    ).with_adherence(take_probability=0.8, injection_delay_days={"mean": 10.0, "sd": 5.0})
    oral, injected = (t.adherence_model for t in regimen.treatments)
    assert oral.take_probability == 0.8 and oral.injection_delay_days is None
    assert injected.take_probability == 1.0 and injected.injection_delay_days is not None
