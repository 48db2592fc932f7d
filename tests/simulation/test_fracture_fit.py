"""Fracture targets and the fit of the fracture model's three parameters (fracture model v2)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bonecast.simulation.calibration.fracture_fit import (
    FractureTarget,
    fit_fracture_model,
    interval95,
    load_fracture_targets,
    simulate_arms,
)
from bonecast.simulation.fracture import default_fracture_model
from bonecast.simulation.trials import load_trial_spec

FRACTURE_SPEC = (
    Path(__file__).resolve().parents[2]
    / "examples"
    / "trials"
    / "calibration"
    / "fracture_outcomes.yaml"
)


def test_every_target_is_sourced_and_runs_on_the_shipped_trial():
    targets = load_fracture_targets()
    spec = load_trial_spec(FRACTURE_SPEC)
    arms = {arm.name for arm in spec.arms}
    pairs = set(spec.output_pairs())
    assert len({t.target_id for t in targets}) == len(targets)
    for t in targets:
        assert t.citation and t.trial
        assert t.arm in arms and (t.comparator_arm in arms or not t.comparator_arm)
        assert (t.month_from, t.month_to) in pairs, t.target_id
    calibration = [t for t in targets if t.role == "calibration"]
    # not tuned to one trial: at least three trials calibrate, and rows are left to check it
    assert len({t.trial for t in calibration}) >= 3
    assert any(t.role == "validation" for t in targets)


@given(
    p=st.floats(min_value=0.5, max_value=60.0),
    n=st.integers(min_value=50, max_value=20_000),
)
def test_wilson_interval_holds_the_incidence_and_shrinks_with_n(p, n):
    target = FractureTarget(
        target_id="X",
        trial="T",
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


def test_hazard_ratio_without_ci_borrows_its_trials_width():
    targets = load_fracture_targets()
    after = next(t for t in targets if t.statistic == "hazard_ratio" and t.ci_low is None)
    during = next(
        t for t in targets if t.trial == after.trial and t.ci_low is not None and t.ci_high
    )
    low, high = interval95(after, targets)
    assert during.ci_high is not None and during.ci_low is not None
    assert math.log(high / low) == pytest.approx(math.log(during.ci_high / during.ci_low))
    assert low < after.value < high


def test_invalid_targets_are_refused():
    row = load_fracture_targets()[0].model_dump()
    with pytest.raises(ValueError, match="comparator_arm"):
        FractureTarget.model_validate({**row, "statistic": "hazard_ratio", "comparator_arm": ""})
    with pytest.raises(ValueError, match="month_to"):
        FractureTarget.model_validate({**row, "month_from": 40, "month_to": 35})


def test_shipped_fracture_parameters_are_the_fits_within_sampling_error():
    """A quick check of the shipped fit (its full run, 1000 women per arm: ``python -m
    bonecast.simulation.calibration.fracture_fit``): refit on the first 300 women of the same
    virtual population. The simulated incidences move a few % with the sample (age and T-score
    spread), so the incidence scale may move about 10 % and the ridge between the turnover
    exponent and the loss weight lets those two trade off."""
    spec = load_trial_spec(FRACTURE_SPEC)
    fit = fit_fracture_model(simulate_arms(spec, n=300), load_fracture_targets())
    shipped = default_fracture_model()
    assert fit.incidence_scale == pytest.approx(shipped.incidence_scale.value, rel=0.12)
    assert fit.turnover_exponent == pytest.approx(shipped.turnover_exponent.value, abs=0.05)
    assert fit.loss_weight == pytest.approx(shipped.loss_weight.value, abs=0.15)
    # the split between BMD and turnover is not all-or-nothing: both terms act
    assert fit.turnover_exponent > 0.0 and fit.loss_weight < 1.0
