"""Fracture outcomes of virtual trials (bonecast.simulation.fracture; issue 3 item 5)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from bonecast.simulation import parse_trial_spec, run_trial
from bonecast.simulation.fracture import (
    FractureModel,
    FractureSetting,
    default_fracture_model,
    fracture_incidence,
)

ANASTROZOLE = {
    "drug": "anastrozole",
    "dose_mg": 1,
    "interval_days": 1,
    "start_month": 0,
    "stop_month": 60,
}


FRACTURE_SPEC = (
    Path(__file__).resolve().parents[2]
    / "examples"
    / "trials"
    / "calibration"
    / "fracture_outcomes.yaml"
)
"""The shipped fracture trial (bonecast validate runs it too): the arms of every fracture
target (anastrozole, tamoxifen, letrozole, exemestane, placebo, anastrozole with zoledronic acid
or denosumab, tamoxifen then letrozole) in an ATAC-like population, followed to month 90."""


@pytest.fixture(scope="module")
def result():
    spec = parse_trial_spec(yaml.safe_load(FRACTURE_SPEC.read_text(encoding="utf-8")))
    rows = run_trial(spec).rows
    return {(r.arm, r.quantity, r.month_from, r.month): r for r in rows}


def _hazard(pct: float) -> float:
    return -math.log(1.0 - pct / 100.0)


def test_fracture_rows_report_only_the_mean_incidence(result):
    row = result[("anastrozole", "clinical_fracture", 0.0, 60.0)]
    assert 0 < row.mean_pct_change < 100
    assert row.median_pct_change is None and row.sd is None and row.p05 is None
    assert row.as_csv()[6:10] == ["", "", "", ""]


def test_clinical_fracture_is_at_least_each_of_its_types(result):
    for arm in ("anastrozole", "tamoxifen"):
        clinical = result[(arm, "clinical_fracture", 0.0, 60.0)].mean_pct_change
        for kind in ("hip_fracture", "vertebral_fracture"):
            assert clinical > result[(arm, kind, 0.0, 60.0)].mean_pct_change


def test_anastrozole_fractures_exceed_tamoxifen_during_and_after_treatment(result):
    """ATAC: fracture hazard ratio anastrozole/tamoxifen 1.49 (1.25-1.77) over 5 years of
    treatment (Eastell 2006 J Bone Miner Res 21:1215); pooled risk ratio 1.33 during and 0.99
    (0.72-1.37) after treatment (Tseng 2018 Ther Adv Musculoskelet Dis 10:71). Measured with
    the shipped fit (v4: version 3's structure, chosen by leave-one-trial-out, refitted on 17
    results): 1.49 during, 1.33 after (years 5-7; v3: 1.49 and 1.32; v2: 1.26 and 1.23;
    v1: 1.53 and 1.30): the turnover term's share ends when anastrozole stops, but tamoxifen's
    BMD gain still protects after it stops and the BMD lost on anastrozole keeps its risk
    (weight w), so the ratio falls only a little: inside the published interval after stopping
    (0.72-1.37), above its point estimate (a known miss, reported by bonecast validate)."""
    during = _hazard(result[("anastrozole", "clinical_fracture", 0.0, 60.0)].mean_pct_change) / (
        _hazard(result[("tamoxifen", "clinical_fracture", 0.0, 60.0)].mean_pct_change)
    )
    after = _hazard(result[("anastrozole", "clinical_fracture", 60.0, 84.0)].mean_pct_change) / (
        _hazard(result[("tamoxifen", "clinical_fracture", 60.0, 84.0)].mean_pct_change)
    )
    assert 1.25 <= during <= 1.77
    assert 0.72 <= after < during


def test_zoledronic_acid_lowers_five_year_fracture_incidence(result):
    """Adjuvant zoledronic acid on top of anastrozole: 5-year fracture incidence about 5.9 % ->
    3.8 % (ratio 0.64; issue 3). Here total-hip BMD at 60 months is about +1.5 % with zoledronic
    acid against -6.3 % without; the gain acts on hip and vertebral fractures through the
    treatment-related gradient of Bouxsein et al. 2019 (J Bone Miner Res 34:632; vertebral RR
    0.72 and 0.34, hip RR 0.84 and 0.60 for 2 % and 6 % more total-hip BMD); other fractures
    keep the cross-sectional gradient (Marshall 1996; Bouxsein found no association for
    nonvertebral fractures). Measured with the shipped fit (v4: v3's structure): clinical
    0.66, hip 0.59, vertebral 0.44 (with v4's suppressed-resorption term: clinical 0.68, hip
    0.70; v3: 0.66, 0.60, 0.44; v2: 0.74, 0.66, 0.47; v1: 0.75, 0.67, 0.47)."""

    def ratio(kind: str) -> float:
        with_za = result[("anastrozole + zoledronic acid", kind, 0.0, 60.0)].mean_pct_change
        return with_za / result[("anastrozole", kind, 0.0, 60.0)].mean_pct_change

    assert 0.6 <= ratio("clinical_fracture") <= 0.78
    # the treatment-related gradient is steeper for vertebral than for hip fractures
    assert ratio("vertebral_fracture") < ratio("hip_fracture") < ratio("clinical_fracture")


def test_denosumab_on_an_aromatase_inhibitor_lowers_fractures_more_than_zoledronic_acid(result):
    """ABCSG-18 (Gnant 2015 Lancet 386:433): denosumab 60 mg every 6 months on an aromatase
    inhibitor, first clinical fracture at 36 months 5.0 % vs 9.6 % on placebo (HR 0.50).
    Measured: 0.62 (denosumab gains more BMD than zoledronic acid; 0.66 at 5 years)."""
    arm = result[("anastrozole + denosumab", "clinical_fracture", 0.0, 36.0)].mean_pct_change
    ratio = arm / result[("anastrozole", "clinical_fracture", 0.0, 36.0)].mean_pct_change
    assert 0.45 <= ratio <= 0.7


def test_letrozole_and_exemestane_carry_about_anastrozoles_excess(result):
    """BIG 1-98 letrozole/tamoxifen 9.3 % / 6.5 % over 5 years (Rabaglio 2009 Ann Oncol
    20:1489), close to ATAC's anastrozole/tamoxifen ratio: no AI has a much larger excess.
    Measured: letrozole 1.045 and exemestane 1.021 times anastrozole at 5 years (letrozole's
    deeper estradiol suppression gives it more loss and turnover in the model; against BIG 1-98
    its incidence is over-predicted, docs/model/calibration.md section 10.6)."""
    anastrozole = result[("anastrozole", "clinical_fracture", 0.0, 60.0)].mean_pct_change
    for arm in ("letrozole", "exemestane"):
        other = result[(arm, "clinical_fracture", 0.0, 60.0)].mean_pct_change
        assert other / anastrozole == pytest.approx(1.0, abs=0.06)


def test_hazard_rises_with_age_and_falls_with_t_score():
    model = default_fracture_model()
    months = np.arange(0, 61, dtype=float)
    baseline_turnover = np.ones((months.size, 1))

    def incidence(age, t_score):
        t = np.full((3, months.size, 1), t_score)
        ratio = np.ones((3, months.size, 1))
        return fracture_incidence(
            model, months, np.array([age]), t, ratio, baseline_turnover
        ).incidence_pct("hip_fracture", 0.0, 60.0)[0]

    assert incidence(75, -1.0) > incidence(65, -1.0)
    assert incidence(65, -2.5) > incidence(65, -1.0)
    # one SD lower baseline hip T-score multiplies the hip hazard by the gradient, 2.6
    # (Marshall 1996)
    ratio = _hazard(incidence(65, -2.0)) / _hazard(incidence(65, -1.0))
    assert ratio == pytest.approx(2.6, rel=1e-6)


def _hazard_ratio_of_gain(kind: str, gain_pct: float) -> float:
    """Hazard of ``kind`` with ``gain_pct`` % more BMD at every site than with none, all else
    equal (same age, time, baseline and current T-scores, turnover at baseline)."""
    model = default_fracture_model()
    args = (np.array([65.0]), np.array([[2.0]]), np.full((3, 1), -1.0), np.full((3, 1, 1), -1.0))
    turnover = np.ones((1, 1))
    gained = model.hazards_per_year(*args, np.full((3, 1, 1), gain_pct), turnover)[kind]
    none = model.hazards_per_year(*args, np.zeros((3, 1, 1)), turnover)[kind]
    return float(gained[0, 0] / none[0, 0])


# Bouxsein et al. 2019 (J Bone Miner Res 34:632, abstract): for a 2 % or 6 % improvement in
# total-hip BMD, a 28 % or 66 % reduction in vertebral and a 16 % or 40 % reduction in hip
# fracture risk.
BOUXSEIN = {"vertebral_fracture": (0.72, 0.34), "hip_fracture": (0.84, 0.60)}


@pytest.mark.parametrize("kind", sorted(BOUXSEIN))
def test_change_term_follows_the_treatment_related_gradient(kind):
    at_2, at_6 = BOUXSEIN[kind]
    # the slope: going from a 2 % to a 6 % gain
    assert _hazard_ratio_of_gain(kind, 6.0) / _hazard_ratio_of_gain(kind, 2.0) == pytest.approx(
        at_6 / at_2, abs=0.01
    )
    # the points, up to the regression's intercept a (log RR at no BMD difference), which the
    # model leaves out: a = -0.006 for hip fractures, so the hazard ratios are the published
    # ones; a = +0.047 for vertebral fractures, so they are 0.69 and 0.32 for 0.72 and 0.34
    change = default_fracture_model().types[kind].bmd_change
    assert change is not None
    intercept = change.intercept
    assert intercept == pytest.approx(math.log(at_2) - 2.0 * math.log(at_6 / at_2) / 4.0)
    for gain, expected in ((2.0, at_2), (6.0, at_6)):
        ratio = _hazard_ratio_of_gain(kind, gain)
        assert ratio * math.exp(intercept) == pytest.approx(expected, abs=0.01)
        assert ratio == pytest.approx(expected, abs=0.035)
    if kind == "hip_fracture":
        assert _hazard_ratio_of_gain(kind, 2.0) == pytest.approx(at_2, abs=0.01)
        assert _hazard_ratio_of_gain(kind, 6.0) == pytest.approx(at_6, abs=0.01)


def _hip_hazard(
    model,
    t_score: float,
    change_pct: float,
    turnover: float = 1.0,
    setting: FractureSetting | None = None,
    kind: str = "hip_fracture",
) -> float:
    """Hazard of ``kind`` (default hip) of a woman of 65 at T = -1 after 2 years at ``t_score``
    (sites alike)."""
    args = (np.array([65.0]), np.array([[2.0]]), np.full((3, 1), -1.0))
    current, change = np.full((3, 1, 1), t_score), np.full((3, 1, 1), change_pct)
    hazards = model.hazards_per_year(*args, current, change, np.full((1, 1), turnover), setting)
    return float(hazards[kind][0, 0])


def test_a_loss_acts_through_the_weighted_cross_sectional_gradient():
    """A fall of the hip T-score by one SD relative to the average woman multiplies the hip
    hazard by Marshall's 2.6 to the loss weight w (a fitted 0..1; checked here at 0.5),
    whatever the BMD change (the treatment-related gradient is for gains only)."""
    model = default_fracture_model().with_fit("w=0.5", loss_weight=0.5)
    w = model.loss_weight.value
    average_fall = model.population_t_score.per_year * 2.0
    on_course = _hip_hazard(model, -1.0 + average_fall, -1.2)
    lost = _hip_hazard(model, -2.0 + average_fall, -9.0)
    assert lost / on_course == pytest.approx(2.6**w, rel=1e-9)
    full = model.with_fit("w=1", loss_weight=1.0)
    assert _hip_hazard(full, -2.0 + average_fall, -9.0) / _hip_hazard(
        full, -1.0 + average_fall, -1.2
    ) == pytest.approx(2.6, rel=1e-9)
    # a gain above the average woman's course never raises the hazard of a patient on course
    assert _hip_hazard(model, -1.0 + average_fall, +3.0) < on_course


def test_turnover_term_scales_every_hazard_by_osteoclast_activity_to_gamma():
    """Osteoclast activity 40 % above baseline (about what an aromatase inhibitor gives in the
    model) multiplies the hazard by 1.4^gamma; back at baseline the term is 1 again, so the
    excess it carries reverses when turnover normalises (checked at gamma 0.5: the shipped
    structure may hold it at 0, chosen by leave-one-trial-out)."""
    model = default_fracture_model().with_fit("gamma=0.5", turnover_exponent=0.5)
    gamma = model.turnover_exponent.value
    at_baseline = _hip_hazard(model, -1.0, 0.0)
    assert _hip_hazard(model, -1.0, 0.0, 1.4) / at_baseline == pytest.approx(1.4**gamma)
    # for hip (and vertebral) fractures resorption suppressed below baseline acts through BMD
    # only (the treatment-related gradient of Bouxsein 2019 already carries an antiresorptive's
    # benefit there; fracture model v3)
    assert _hip_hazard(model, -1.0, 0.0, 0.3) == pytest.approx(at_baseline)
    assert _hip_hazard(model, -1.0, 0.0, 0.3, kind="vertebral_fracture") == pytest.approx(
        _hip_hazard(model, -1.0, 0.0, kind="vertebral_fracture")
    )


@pytest.mark.parametrize("turnover", [0.1, 0.4, 0.7, 0.99])
def test_suppressed_resorption_lowers_other_fractures(turnover):
    """Other (nonvertebral, non-hip) fractures, whose BMD gains carry no treatment-related
    gradient (Bouxsein 2019): resorption suppressed to a fraction OC of baseline multiplies
    their hazard by OC^gamma_s (fracture model v4; checked at gamma_s 0.36, its fit in the v4
    structure, as the shipped structure may hold it at 0); above baseline the AI's term
    applies as for every type, so one exponent each side of baseline."""
    model = default_fracture_model().with_fit(
        "v4 structure", suppression_exponent=0.36, turnover_exponent=0.17
    )
    gamma_s = model.suppression_exponent.value

    def other(oc: float) -> float:
        return _hip_hazard(model, -1.0, 0.0, oc, kind="other_fracture")

    assert other(turnover) / other(1.0) == pytest.approx(turnover**gamma_s)
    # deeper suppression, lower hazard; no suppression term without the fitted exponent
    assert other(turnover * 0.5) < other(turnover)
    none = model.with_fit("no term", suppression_exponent=0.0)
    assert _hip_hazard(none, -1.0, 0.0, turnover, kind="other_fracture") == pytest.approx(
        _hip_hazard(none, -1.0, 0.0, kind="other_fracture")
    )
    gamma = model.turnover_exponent.value
    assert other(1.4) / other(1.0) == pytest.approx(1.4**gamma)


def test_trial_covariates_scale_every_hazard():
    """Fractures recorded as a pre-specified endpoint: every hazard times the fitted
    ascertainment ratio; a prior-fracture share p: (1 + p (RR - 1)) / (1 + p_ref (RR - 1)),
    RR 1.86 (Kanis 2004), 1 when p is the reference share or not stated."""
    model = default_fracture_model()
    prior = model.prior_fracture
    assert prior.relative_risk == 1.86
    plain = _hip_hazard(model, -1.0, 0.0)
    stated = FractureSetting(ascertainment="prespecified")
    assert _hip_hazard(model, -1.0, 0.0, setting=stated) / plain == pytest.approx(
        model.ascertainment_ratio.value
    )
    assert _hip_hazard(
        model, -1.0, 0.0, setting=FractureSetting(prior_fracture_pct=prior.reference_pct)
    ) == pytest.approx(plain)
    everyone = FractureSetting(prior_fracture_pct=100)
    expected = 1.86 / (1 + prior.reference_pct / 100 * 0.86)
    assert _hip_hazard(model, -1.0, 0.0, setting=everyone) / plain == pytest.approx(expected)


def test_trial_spec_states_fracture_covariates_with_clear_errors():
    base = {
        "name": "covariates",
        "population": {"n": 10, "menopausal_status": "postmenopausal", "age_years": 64},
        "arms": [{"name": "anastrozole", "treatments": [ANASTROZOLE]}],
        "outputs": {"quantities": ["clinical_fracture"], "months": [12]},
    }
    assert parse_trial_spec(base).fracture == FractureSetting()
    for bad, field in (
        ({"prior_fracture_pct": 120}, "fracture.prior_fracture_pct"),
        ({"ascertainment": "registry"}, "fracture.ascertainment"),
        ({"bmi": 27}, "fracture.bmi"),
    ):
        with pytest.raises(ValueError, match=field.replace(".", r"\.")):
            parse_trial_spec({**base, "fracture": bad})
    # the covariates change the trial's fracture rows: pre-specified ascertainment by the ratio
    plain = run_trial(parse_trial_spec(base)).rows[0].mean_pct_change
    active = (
        run_trial(parse_trial_spec({**base, "fracture": {"ascertainment": "prespecified"}}))
        .rows[0]
        .mean_pct_change
    )
    ratio = default_fracture_model().ascertainment_ratio.value
    # ratio of mean incidences, not of hazards: 1 - exp(-r H) averaged over women
    assert _hazard(active) / _hazard(plain) == pytest.approx(ratio, rel=0.005)


def test_other_fractures_follow_only_the_current_t_score():
    # no treatment-related gradient for nonvertebral fractures (Bouxsein 2019)
    assert _hazard_ratio_of_gain("other_fracture", 6.0) == pytest.approx(1.0)


def test_fracture_model_schema_is_strict():
    data = default_fracture_model().model_dump()
    FractureModel.model_validate(data)
    hip = data["types"]["hip_fracture"]
    for change in (
        {"extra": 1},
        {"site": "wrist"},
        {"points": [hip["bmd_change"]["points"][0]] * 2},
    ):
        broken = copy.deepcopy(data)
        broken["types"]["hip_fracture"]["bmd_change"].update(change)
        with pytest.raises(ValidationError):
            FractureModel.model_validate(broken)
    broken = copy.deepcopy(data)
    broken["types"]["other_fracture"]["bmd_site"] = "radius"
    with pytest.raises(ValidationError):
        FractureModel.model_validate(broken)
    for key, value in (
        ("incidence_scale", 0.0),
        ("turnover_exponent", -0.1),
        ("suppression_exponent", 3.5),
        ("loss_weight", 1.5),
        ("ascertainment_ratio", 0.0),
        ("trial_sd", -0.1),
    ):
        broken = copy.deepcopy(data)
        broken[key]["value"] = value
        with pytest.raises(ValidationError, match=key):
            FractureModel.model_validate(broken)


def test_month_grid_starts_at_baseline():
    months = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="month 0"):
        fracture_incidence(
            default_fracture_model(),
            months,
            np.array([65.0]),
            np.zeros((3, 2, 1)),
            np.ones((3, 2, 1)),
            np.ones((2, 1)),
        )


def test_parameter_uncertainty_adds_credible_interval_columns():
    spec = parse_trial_spec(
        {
            "name": "uncertainty",
            "population": {"n": 50, "menopausal_status": "postmenopausal", "age_years": 64},
            "arms": [{"name": "anastrozole", "treatments": [ANASTROZOLE]}],
            "outputs": {"quantities": ["lumbar_spine"], "months": [60]},
        }
    )
    row = run_trial(spec, parameter_draws=100).rows[0]
    typical = run_trial(
        spec.model_copy(
            update={"population": spec.population.model_copy(update={"variability": False})}
        )
    ).rows[0]
    assert row.param_cri05 is not None and row.param_cri95 is not None
    assert row.param_cri05 < typical.mean_pct_change < row.param_cri95
    assert row.param_cri95 - row.param_cri05 > 0.5  # parameter uncertainty is not hidden
