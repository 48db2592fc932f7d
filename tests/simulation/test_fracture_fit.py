"""Fracture targets and the fit of the fracture model's parameters (fracture model v4)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bonecast.simulation.calibration.fracture_fit import (
    SHIPPED_STRUCTURE,
    STRUCTURES,
    Evaluator,
    FractureTarget,
    fit_fracture_model,
    interval95,
    load_fracture_fit,
    load_fracture_targets,
    predictive_interval,
    shrunken_effect,
    simulate_target_arms,
    target_value,
)
from bonecast.simulation.fracture import FITTED_PARAMETERS, default_fracture_model
from bonecast.simulation.trials import load_trial_spec

TRIALS = Path(__file__).resolve().parents[2] / "examples" / "trials" / "calibration"


def test_every_target_is_sourced_and_runs_on_its_trials_spec():
    targets = load_fracture_targets()
    assert len({t.target_id for t in targets}) == len(targets)
    for t in targets:
        spec = load_trial_spec(TRIALS / f"{t.spec}.yaml")
        arms = {arm.name for arm in spec.arms}
        assert t.citation and t.trial
        assert t.arm in arms and (t.comparator_arm in arms or not t.comparator_arm)
        assert (t.month_from, t.month_to) in set(spec.output_pairs()), t.target_id
    # one spec per trial, and one trial per spec (the random effect is by trial)
    assert len({(t.trial, t.spec) for t in targets}) == len({t.trial for t in targets})
    assert len({t.trial for t in targets}) == len({t.spec for t in targets})
    # not tuned to one trial: at least three trials calibrate, and each ascertainment appears
    calibration = [t for t in targets if t.role == "calibration"]
    assert len({t.trial for t in calibration}) >= 3
    settings = {load_trial_spec(TRIALS / f"{t.spec}.yaml").fracture.ascertainment for t in targets}
    assert settings == {"adverse_events", "prespecified"}


@given(
    p=st.floats(min_value=0.5, max_value=60.0),
    n=st.integers(min_value=50, max_value=20_000),
)
def test_wilson_interval_holds_the_incidence_and_shrinks_with_n(p, n):
    target = FractureTarget(
        target_id="X",
        trial="T",
        spec="fractures/t",
        citation="c",
        population="p",
        arm="a",
        regimen="r",
        quantity="clinical_fracture",
        month_from=0,
        month_to=12,
        statistic="cumulative_incidence",
        value=p,
        n=n,
        role="validation",
        verified="yes",
    )
    low, high = interval95(target, [target])
    assert 0.0 <= low < p < high <= 100.0
    if n * p / 100 >= 50:  # many events: Wilson's interval is close to the Wald interval
        wald = 2 * 1.959964 * math.sqrt(p / 100 * (1 - p / 100) / n) * 100
        assert high - low == pytest.approx(wald, rel=0.1)
    larger = target.model_copy(update={"n": 4 * n})
    low4, high4 = interval95(larger, [larger])
    assert high4 - low4 < high - low


def test_ratio_without_ci_borrows_its_trials_width():
    targets = load_fracture_targets()
    during = next(t for t in targets if t.statistic == "hazard_ratio" and t.ci_low is not None)
    after = during.model_copy(
        update={"target_id": "X", "ci_low": None, "ci_high": None, "value": 1.0}
    )
    listed = [*targets, after]
    low, high = interval95(after, listed)
    assert during.ci_high is not None and during.ci_low is not None
    assert math.log(high / low) == pytest.approx(math.log(during.ci_high / during.ci_low))
    assert low < after.value < high
    alone = after.model_copy(update={"trial": "a trial without a CI"})
    with pytest.raises(ValueError, match="no CI"):
        interval95(alone, [alone])


@given(
    own=st.floats(min_value=0.5, max_value=50.0),
    comparator=st.floats(min_value=0.5, max_value=50.0),
)
def test_ratios_of_two_arms_follow_their_definitions(own, comparator):
    """A hazard ratio is the ratio of the arms' cumulative hazards -ln(1 - p); an odds ratio
    the ratio of their odds p / (1 - p); both are 1 for equal arms and order like the arms."""
    incidences = {"a": own, "b": comparator}

    def incidence(arm: str, month_from: float, month_to: float) -> float:
        return incidences[arm]

    row = next(t for t in load_fracture_targets() if t.statistic == "odds_ratio")
    odds = target_value(row.model_copy(update={"arm": "a", "comparator_arm": "b"}), incidence)
    hazard = target_value(
        row.model_copy(update={"arm": "a", "comparator_arm": "b", "statistic": "hazard_ratio"}),
        incidence,
    )
    p, q = own / 100, comparator / 100
    assert odds == pytest.approx(p / (1 - p) / (q / (1 - q)))
    assert hazard == pytest.approx(math.log1p(-p) / math.log1p(-q))
    # the odds ratio lies further from 1 than the hazard ratio, which lies further than the
    # risk ratio (a rarer event makes them alike)
    risk = p / q
    assert (odds - 1) * (risk - 1) >= 0 and abs(math.log(odds)) >= abs(math.log(hazard)) - 1e-12
    assert abs(math.log(hazard)) >= abs(math.log(risk)) - 1e-12


def test_invalid_targets_are_refused():
    row = load_fracture_targets()[0].model_dump()
    with pytest.raises(ValueError, match="comparator_arm"):
        FractureTarget.model_validate({**row, "statistic": "hazard_ratio", "comparator_arm": ""})
    with pytest.raises(ValueError, match="month_to"):
        FractureTarget.model_validate({**row, "month_from": 40, "month_to": 35})


@given(
    residual=st.floats(min_value=-1.0, max_value=1.0),
    variance=st.floats(min_value=1e-4, max_value=0.5),
    tau=st.floats(min_value=0.01, max_value=1.0),
)
def test_one_rows_trial_effect_is_its_residual_shrunk_by_tau(residual, variance, tau):
    mean, sd = shrunken_effect([residual], [variance], tau)
    weight = tau**2 / (tau**2 + variance)
    assert mean == pytest.approx(weight * residual, abs=1e-9)
    assert sd == pytest.approx(math.sqrt(weight * variance), rel=1e-6)
    # more rows with the same residual: less shrinkage, a narrower interval
    mean4, sd4 = shrunken_effect([residual] * 4, [variance] * 4, tau)
    assert abs(mean4) >= abs(mean) - 1e-12 and sd4 <= sd + 1e-12


@given(
    p=st.floats(min_value=1.0, max_value=40.0),
    n=st.integers(min_value=100, max_value=10_000),
    tau=st.floats(min_value=0.0, max_value=0.8),
)
def test_predictive_interval_holds_the_model_and_widens_with_tau_and_small_n(p, n, tau):
    target = load_fracture_targets()[0].model_copy(update={"value": p, "n": n})
    low, high = predictive_interval(target, p, tau, [target])
    assert low < p < high
    wider_tau = predictive_interval(target, p, tau + 0.1, [target])
    smaller_n = predictive_interval(target.model_copy(update={"n": n // 2}), p, tau, [target])
    assert wider_tau[1] > high and smaller_n[1] > high
    # on the log scale: sqrt(tau^2 + (1 - q) / (n q)) either side
    sd = math.sqrt(tau**2 + (1 - p / 100) / (n * p / 100))
    assert math.log(high / p) == pytest.approx(1.959964 * sd)


def test_shipped_fit_file_matches_the_model_and_checks_every_structure():
    fit = load_fracture_fit()
    model = default_fracture_model()
    for name in FITTED_PARAMETERS:
        assert fit.parameters[name]["value"] == getattr(model, name).value
    targets = load_fracture_targets()
    assert [r.structure for r in fit.leave_one_trial_out] == list(STRUCTURES)
    for result in fit.leave_one_trial_out:
        assert result.total == len(targets) == len(result.rows)
        assert result.inside == sum(r.inside for r in result.rows)
    assert {e.trial for e in fit.trial_effects} == {
        t.trial for t in targets if t.statistic == "cumulative_incidence"
    }
    # the random effects are centred: their mean is well inside tau
    effects = [e.effect for e in fit.trial_effects]
    assert abs(sum(effects) / len(effects)) < model.trial_sd.value


def test_shipped_fracture_parameters_are_the_fits_within_sampling_error():
    """A quick check of the shipped fit (its full run, 1000 women per arm: ``python -m
    bonecast.simulation.calibration.fracture_fit``): refit on the first 300 women of the same
    virtual populations. The simulated incidences move a few % with the sample (age and
    T-score spread), so the incidence scale may move about 10 % and the ridge between the
    turnover exponent and the loss weight lets those two trade off."""
    targets = load_fracture_targets()
    evaluator = Evaluator(simulate_target_arms(targets, TRIALS, n=300), default_fracture_model())
    fit = fit_fracture_model(evaluator, targets, STRUCTURES[SHIPPED_STRUCTURE]).values
    shipped = default_fracture_model()
    assert fit["incidence_scale"] == pytest.approx(shipped.incidence_scale.value, rel=0.12)
    assert fit["ascertainment_ratio"] == pytest.approx(shipped.ascertainment_ratio.value, rel=0.15)
    assert fit["turnover_exponent"] == pytest.approx(shipped.turnover_exponent.value, abs=0.08)
    assert fit["suppression_exponent"] == pytest.approx(shipped.suppression_exponent.value, abs=0.3)
    assert fit["loss_weight"] == pytest.approx(shipped.loss_weight.value, abs=0.2)
    assert fit["trial_sd"] == pytest.approx(shipped.trial_sd.value, rel=0.3)
