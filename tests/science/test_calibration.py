"""The calibrated parameter set against the published trials (issue 3;
docs/model/calibration.md section 10)."""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import yaml

from bonecast.simulation import default_parameter_set
from bonecast.simulation.calibration.fit import EXTERNAL_CHECKS, calibrate, free_parameters
from bonecast.simulation.calibration.fracture_fit import SHIPPED_STRUCTURE
from bonecast.simulation.calibration.targets import load_targets
from bonecast.simulation.calibration.validation import validate
from bonecast.simulation.parameters import posterior_draws, start_parameter_set

TRIALS = Path(__file__).resolve().parents[2] / "examples" / "trials" / "calibration"
SHARED_TARGETS = (
    Path(__file__).resolve().parents[3] / "shared" / "science" / "calibration_targets.csv"
)
N_TARGETS = 146
"""Rows of the shipped target file."""


@pytest.fixture(scope="module")
def report():
    return validate(default_parameter_set(), load_targets(), TRIALS, external=EXTERNAL_CHECKS)


def test_every_target_has_a_trial_spec_and_is_simulated(report):
    ids = {c.target.target_id for c in report.checks}
    assert len(ids) == N_TARGETS
    assert all(np.isfinite(c.model_pct) for c in report.checks)


def test_fit_quality_does_not_regress(report):
    """Issue 3 asks for >= 90 % of high-weight targets within max(CI half-width, 1.0 pp) and
    >= 80 % of all within max(CI half-width, 1.5 pp). The all-target rule is met; the
    high-weight rule is not (33 of 38, 87 %: the trials disagree with one another, see the
    misses and validation_notes.yaml; 34 before the long-term targets of issue 14, whose refit
    moved SABRE's risedronate spine B9_LS below; the refit on issue 14's 43 after-stopping and
    AI-setting rows keeps it there, 1.30 pp below). This guards what has been reached: 123 of
    146 overall (with the osteomorph reservoir and the DEFEND rows), every long-term and
    after-stopping bisphosphonate target (D6, F1, HORIZON-PFT extensions, VERT-MN) among them."""
    head = report.headline()
    assert head["high_weight_total"] == 38
    assert head["all_pass"] / head["all_total"] >= 0.80
    assert head["all_pass"] >= 123
    assert head["high_weight_pass"] >= 33
    long_term = [
        c for c in report.checks if c.target.target_id.startswith(("D6", "F1", "HZ", "VM"))
    ]
    assert len(long_term) == 17 and all(c.passes(high_weight_rule=False) for c in long_term)


def test_targets_lie_in_their_predictive_intervals_and_tau_is_reported(report):
    """Issue 14 item 1: each target's 95 % predictive interval for a new trial (fixed-effect
    prediction +/- 1.96 sqrt(tau^2 + sigma^2)) holds it about 95 % of the time (every row but
    the two direction-only ones has one); tau per BMD site with its interval, and an effect for
    every trial with a BMD target at that site."""
    head = report.headline()
    assert head["covered_total"] == N_TARGETS - 2
    assert head["covered"] / head["covered_total"] >= 0.90
    het = report.heterogeneity
    assert het is not None
    assert set(het.tau_pp) == {"lumbar_spine", "total_hip", "femoral_neck"}
    for estimate, low, high in het.tau_pp.values():
        assert low < estimate < high
    trials = {(e.trial, e.site) for e in het.effects}
    assert {("sabre", "total_hip"), ("atac", "lumbar_spine"), ("swan", "femoral_neck")} <= trials
    # the effects are centred: a random effect's BLUPs average near 0 for each site
    for site in het.tau_pp:
        values = [e.estimate_pp for e in het.effects if e.site == site]
        assert abs(np.mean(values)) < het.tau(site)


def test_validation_reports_the_fracture_outcomes(report):
    """Fracture model v4 in the validation report: every row of the fracture target file, each
    on its own trial's spec, with its source, 95 % interval and the model's predictive
    interval; ATAC's anastrozole/tamoxifen ratio falls after stopping and denosumab on an AI
    lowers incidence (ABCSG-18); sizes are tested in tests/simulation/test_fracture_outcomes.py."""
    checks = {f.target.target_id: f for f in report.fractures}
    assert len(checks) == 17 and all(f.target.citation for f in checks.values())
    assert checks["F11"].passes  # ATAC 1.49 (1.25-1.77) during treatment
    assert checks["F11"].model > checks["F12"].model > 1.0
    assert checks["F3"].model < checks["F4"].model  # ABCSG-18 denosumab vs placebo at 3 years
    # measured: 12 of 17 inside; outside: ABCSG-18's placebo arm (3 and 7 years), BIG 1-98's
    # letrozole, MA.17's placebo and HORIZON-RFT's ratio (docs/model/calibration.md 10.6)
    inside = {i for i, f in checks.items() if f.passes}
    assert {"F1", "F2", "F3", "F5", "F8", "F9", "F11", "F12", "F13", "F16", "F17"} <= inside
    assert checks["F13"].model < checks["F14"].model  # zoledronic acid after a hip fracture
    # the predictive interval (tau and binomial error) covers all but ABCSG-18's placebo arm at
    # 7 years and HORIZON-RFT's ratio
    assert sum(f.covered for f in checks.values()) >= 15
    # the leave-one-trial-out check of the shipped structure is reported with the fit
    assert report.fracture_fit is not None
    shipped = next(
        r for r in report.fracture_fit.leave_one_trial_out if r.structure == SHIPPED_STRUCTURE
    )
    assert shipped.total == 17 and shipped.inside >= 8
    best = min(r.log_score for r in report.fracture_fit.leave_one_trial_out)
    assert shipped.log_score == best  # the structure is chosen by its leave-one-out log score


def test_every_miss_has_a_recorded_reason(report):
    missing = [
        c.target.target_id for c in report.misses() if c.target.target_id not in report.miss_reasons
    ]
    assert missing == []


def test_published_directions_hold(report):
    model = {c.target.target_id: c.model_pct for c in report.checks}
    # ATAC (Eastell 2008): loss on anastrozole, gain on tamoxifen at 5 years, both sites
    assert model["A6"] < -4 and model["A7"] < -4
    assert model["A8"] > 0 and model["A9"] > 0
    # IBIS-II (Sestak 2021): the spine recovers after anastrozole stops; the hip does not fall
    assert model["I9"] > model["I10"] + 0.5
    assert model["I11"] > model["I12"]
    # risedronate prevents anastrozole loss (IBIS-II stratum II, SABRE)
    assert model["I5_LS"] > model["I6_LS"] + 2 and model["B9_LS"] > model["B10_LS"] + 2
    # denosumab: FREEDOM total hip gains rise over 3 years
    assert model["D4_M12"] < model["D4_M24"] < model["D4_M36"]


def _shipped_targets_text() -> str:
    return (
        resources.files("bonecast.simulation")
        .joinpath("data")
        .joinpath("calibration_targets.csv")
        .read_text(encoding="utf-8")
    )


def test_shipped_parameter_set_was_fitted_to_the_shipped_targets():
    digest = hashlib.sha256(_shipped_targets_text().encode("utf-8")).hexdigest()
    assert default_parameter_set().provenance["targets_sha256"] == digest


def test_shipped_targets_are_the_shared_file():
    text = _shipped_targets_text()
    if SHARED_TARGETS.exists():
        # the package's file keeps every shared row, in order, and may add its own after them
        # (issue 14: the long-term and after-stopping targets)
        assert text.startswith(SHARED_TARGETS.read_text(encoding="utf-8"))


def test_default_parameter_set_is_the_calibrated_one_with_provenance():
    params = default_parameter_set()
    prov = params.provenance
    assert prov["calibrated"] is True and prov["mode"] == "full"
    assert {"date", "objective", "stages", "posterior_file"} <= set(prov)
    assert [s["name"] for s in prov["stages"]][:5] == [
        "A natural progression",
        "B estrogen deprivation and tamoxifen",
        "C bisphosphonates",
        "D denosumab",
        "E long-term antiresorptive response",
    ]
    fitted = {p.name for p in free_parameters(start_parameter_set())}
    for name, entry in params.parameters.items():
        if name in fitted:
            assert entry.source.startswith("cal: bonecast calibrate")
        else:
            assert entry == start_parameter_set().parameters[name]


def test_posterior_sample_is_centred_on_the_map():
    params = default_parameter_set()
    draws = posterior_draws(params)
    assert len(draws) == 200
    fitted = {p.name: p for p in free_parameters(start_parameter_set())}
    assert set(draws[0]) == set(fitted)
    for name, p in fitted.items():
        transformed = np.array([p.forward(d[name]) for d in draws])
        centre = p.forward(params.parameters[name].value)
        # the sample mean sits within 3 standard errors of the MAP (Laplace: normal at the MAP)
        assert abs(transformed.mean() - centre) <= 3 * transformed.std() / np.sqrt(200) + 1e-9


def test_quick_calibration_lowers_the_objective_and_records_provenance(tmp_path):
    result = calibrate(
        start_parameter_set(), load_targets(), TRIALS, quick=True, posterior_draws=20
    )
    for stage in result.stages:
        assert stage.objective_end <= stage.objective_start + 1e-9
    assert result.parameter_set.provenance["mode"] == "quick"
    assert len(result.posterior) == 20
    stored = result.parameter_set.provenance["heterogeneity"]
    assert set(stored["tau_pp"]) == {"lumbar_spine", "total_hip", "femoral_neck"}
    assert len(stored["trial_effects"]) == len(result.heterogeneity.effects) > 20
    assert result.stages[-1].objective_end < result.stages[-1].objective_start


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("BONECAST_FULL_CALIBRATION"),
    reason="the full fit (about 10 minutes on 2 cores) runs from its own command: "
    "BONECAST_FULL_CALIBRATION=1 pytest tests/science/test_calibration.py -k full_calibration",
)
def test_full_calibration_reproduces_the_shipped_parameter_set():
    """`bonecast calibrate` from scratch gives the shipped default (about 10 minutes on 2 cores,
    so outside `make test`: the shipped set's targets hash and the quick calibration are checked
    there)."""
    result = calibrate(start_parameter_set(), load_targets(), TRIALS, posterior_draws=2)
    shipped = default_parameter_set()
    for name, entry in result.parameter_set.parameters.items():
        assert entry.value == pytest.approx(shipped.parameters[name].value, rel=1e-4), name


def test_shipped_yaml_names_its_posterior_file():
    text = (
        resources.files("bonecast.simulation")
        .joinpath("data")
        .joinpath("aibl2c_calibrated.yaml")
        .read_text(encoding="utf-8")
    )
    assert yaml.safe_load(text)["provenance"]["posterior_file"] == "aibl2c_calibrated_posterior.csv"
