"""Trial random effects (docs/model/calibration.md section 10.5): the marginal likelihood, tau
recovery, predictive intervals and the summary stored with a calibrated set."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import least_squares, minimize_scalar
from scipy.special import ndtr

from bonecast.simulation import default_parameter_set
from bonecast.simulation.calibration.heterogeneity import (
    EffectDesign,
    Heterogeneity,
    TrialEffect,
    effect_group,
    predictive_quantiles,
    predictive_sd,
)
from bonecast.simulation.calibration.targets import Target, TargetLink, TargetRow


def _target(i: int, trial: str, quantity: str = "lumbar_spine", minus: str | None = None):
    site = {"lumbar_spine": "lumbar_spine", "total_hip": "total_hip", "ctx": "CTX"}[quantity]
    row = TargetRow(
        target_id=f"T{i}",
        trial=trial,
        citation="synthetic",
        population="synthetic",
        arm="a",
        regimen="r",
        site_or_marker=site,
        month_from=0,
        month_to=12,
        statistic="mean",
        value_pct=-1.0,
        uncertainty="",
        n=100,
        weight="H",
        verified=True,
        note="",
    )
    return Target(row, TargetLink(trial=trial, arm="a", quantity=quantity, minus=minus))


def test_markers_and_between_arm_differences_carry_no_trial_effect():
    assert effect_group(_target(0, "x")) == ("x", "lumbar_spine")
    assert effect_group(_target(1, "x", "total_hip")) == ("x", "total_hip")
    assert effect_group(_target(2, "x", "ctx")) is None
    assert effect_group(_target(3, "x", minus="b")) is None


@settings(max_examples=40, deadline=None)
@given(
    residuals=st.lists(st.floats(-5, 5), min_size=1, max_size=6),
    sigmas=st.lists(st.floats(0.3, 3.0), min_size=6, max_size=6),
    tau=st.floats(0.05, 5.0),
)
def test_penalised_effects_give_the_exact_marginal_likelihood(residuals, sigmas, tau):
    """Minimising over the effect the penalised sum of squares plus the Laplace term equals
    -2 log of the normal marginal likelihood with the effect integrated out (up to the
    constant sum log sigma^2): r' Sigma^-1 r + log det Sigma, Sigma = D + tau^2 11'."""
    r = np.array(residuals)
    sigma = np.array(sigmas[: len(r)])
    design = EffectDesign.of([_target(i, "x") for i in range(len(r))], sigma)

    def objective(b: float) -> float:
        block = np.array([b, math.log(tau)])
        fit = (r + design.shift(block)) / sigma
        penalty, laplace = design.residuals(block)[:2]
        return float(np.sum(fit**2) + penalty**2 + laplace**2)

    profiled = minimize_scalar(
        objective, bounds=(-50, 50), method="bounded", options={"xatol": 1e-9}
    )
    cov = np.diag(sigma**2) + tau**2
    exact = r @ np.linalg.solve(cov, r) + np.linalg.slogdet(cov)[1] - np.sum(np.log(sigma**2))
    assert profiled.fun == pytest.approx(exact, rel=1e-6, abs=1e-6)


def test_between_trial_sd_is_recovered_from_simulated_trials():
    """40 trials x 3 targets, true tau 2 pp and noise 1 pp: the joint mode of effects and
    log tau (the calibration's objective without a model) finds tau within 25 %, and the
    effects' 95 % intervals cover the true effects about 95 % of the time."""
    rng = np.random.default_rng(7)
    trials, per_trial, tau_true = 40, 3, 2.0
    effects = rng.normal(0.0, tau_true, trials)
    targets = [_target(k * per_trial + j, f"t{k:02d}") for k in range(trials) for j in range(3)]
    sigma = np.ones(len(targets))
    y = np.repeat(effects, per_trial) + rng.normal(0.0, 1.0, len(targets))
    design = EffectDesign.of(targets, sigma)

    def residuals(block):
        return np.concatenate([(design.shift(block) - y) / sigma, design.residuals(block)])

    low, high = design.bounds()
    fit = least_squares(residuals, design.start(), bounds=(low, high))
    covariance = np.linalg.pinv(fit.jac.T @ fit.jac)
    summary = design.summary(fit.x, covariance)
    tau, tau_low, tau_high = summary.tau_pp["lumbar_spine"]
    assert tau == pytest.approx(tau_true, rel=0.25)
    assert tau_low < tau_true < tau_high
    order = [int(e.trial[1:]) for e in summary.effects]
    covered = [
        e.low_pp <= effects[k] <= e.high_pp for e, k in zip(summary.effects, order, strict=True)
    ]
    assert 0.85 <= np.mean(covered) <= 1.0


def test_predictive_quantiles_widen_the_draws_by_the_predictive_sd():
    centres = np.array([-1.0, 0.0, 1.0])
    # no widening: the draws' own percentiles (the plain --uncertainty interval)
    assert predictive_quantiles(centres, 0.0, (0.05, 0.95)) == pytest.approx(
        np.percentile(centres, [5, 95])
    )
    # a single draw widened by s: the normal's quantiles
    low, high = predictive_quantiles(np.array([2.0]), 1.5, (0.05, 0.95))
    assert (low, high) == pytest.approx((2.0 - 1.644854 * 1.5, 2.0 + 1.644854 * 1.5), abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(
    centres=st.lists(st.floats(-10, 10), min_size=1, max_size=20),
    scale=st.floats(0.1, 5.0),
    p=st.floats(0.01, 0.99),
)
def test_predictive_quantile_is_where_the_mixture_cdf_reaches_p(centres, scale, p):
    c = np.array(centres)
    (q,) = predictive_quantiles(c, scale, (p,))
    assert float(np.mean(ndtr((q - c) / scale))) == pytest.approx(p, abs=1e-6)


def test_predictive_sd_adds_between_trial_and_sampling_error():
    assert predictive_sd(1.2, 5.0, 100) == pytest.approx(math.hypot(1.2, 0.5))
    assert predictive_sd(1.2, None, 100) == pytest.approx(1.2)  # a typical patient only
    assert predictive_sd(0.0, 4.0, 16) == pytest.approx(1.0)


def test_shipped_set_has_tau_per_site_and_every_trial_effect():
    het = Heterogeneity.of(default_parameter_set())
    assert {"lumbar_spine", "total_hip"} <= set(het.tau_pp)
    for estimate, low, high in het.tau_pp.values():
        assert 0.0 < low < estimate < high
    for e in het.effects:
        assert e.low_pp < e.estimate_pp < e.high_pp and e.targets >= 1
    # round trip through the provenance block
    again = Heterogeneity.of(
        default_parameter_set().model_copy(
            update={"provenance": {"heterogeneity": het.as_provenance()}}
        )
    )
    assert again == het


def test_a_set_calibrated_without_random_effects_gets_a_clear_message():
    params = default_parameter_set()
    old = params.model_copy(
        update={"provenance": {k: v for k, v in params.provenance.items() if k != "heterogeneity"}}
    )
    with pytest.raises(ValueError, match="calibrated without trial random effects"):
        Heterogeneity.of(old)


def test_report_explains_a_between_trial_sd_above_1_5_pp():
    from bonecast.reports.validation_report import tau_notes

    effects = (
        TrialEffect("sabre", "total_hip", 2.4, 0.5, 4.3, 2),
        TrialEffect("atac", "total_hip", -0.3, -1.0, 0.4, 9),
        TrialEffect("atac", "lumbar_spine", 0.1, -0.5, 0.7, 9),
    )
    het = Heterogeneity({"total_hip": (1.9, 1.1, 3.2), "lumbar_spine": (0.8, 0.3, 1.6)}, effects)
    (note,) = tau_notes(het)
    assert "1.90 pp" in note and "sabre +2.40 pp" in note
    assert "lumbar" not in note.lower()


def test_predictive_interval_and_coverage_of_a_target_check():
    from bonecast.simulation.calibration.validation import TargetCheck

    target = _target(0, "x")  # published -1.0 %
    inside = TargetCheck(target, -2.5, True, predictive_sd_pp=1.0)
    assert inside.predictive_interval == pytest.approx((-2.5 - 1.959964, -2.5 + 1.959964))
    assert inside.covered() is True
    assert TargetCheck(target, -3.5, True, predictive_sd_pp=1.0).covered() is False
    # a set calibrated without random effects: no interval, not counted
    assert TargetCheck(target, -2.5, True).covered() is None
