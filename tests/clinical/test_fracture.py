"""QFracture-2012, FRAX adjustments and the aromatase-inhibitor relative risk
(docs/clinical/fracture-risk.md section 4)."""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from patients import patient_dict

from bonecast.clinical import (
    QFractureInputs,
    ai_adjusted_pct,
    frax_discordance_factor,
    frax_glucocorticoid_pct,
    parse_patient,
    qfracture_cumulative_pct,
    qfracture_inputs,
    qfracture_risk_pct,
)
from bonecast.clinical.fracture import (
    QFRACTURE_FLAGS,
    constant_hazard,
    fracture_risk,
    qfracture_hazard,
    qfracture_model,
)


def _bmi(height_cm: float, weight_kg: float) -> float:
    return weight_kg / (height_cm / 100) ** 2


# docs/clinical/fracture-risk.md section 4.2 test vectors (compiled ClinRisk C; white, non-smoker,
# no alcohol unless stated).
VECTORS = [
    ("female", 65, 165, 68, 1, 0, 0, (), 4.551261, 1.187594),
    (
        "female",
        75,
        160,
        56,
        1,
        4,
        4,
        ("b_fracture4", "b_ra_sle", "b_corticosteroids", "fh_osteoporosis"),
        45.194353,
        35.514128,
    ),
    ("female", 60, 158, 60, 2, 0, 0, ("b_hrt_oest", "b_antidepressant"), 2.969878, 0.428621),
    ("male", 70, 175, 92, 1, 3, 0, ("b_type2", "b_cvd", "b_asthmacopd"), 4.146912, 2.527956),
    (
        "male",
        80,
        172,
        71,
        1,
        0,
        0,
        ("b_falls", "b_parkinsons", "b_type1", "b_carehome"),
        47.924641,
        80.247719,
    ),
    ("female", 65, 165, 68, 1, 0, 0, ("b_anycancer",), 5.741173, 1.550569),
]


@pytest.mark.parametrize(
    ("sex", "age", "height", "weight", "ethrisk", "smoke", "alcohol", "flags", "mof", "hip"),
    VECTORS,
)
def test_qfracture_2012_test_vectors(
    sex: Any,
    age: int,
    height: float,
    weight: float,
    ethrisk: int,
    smoke: int,
    alcohol: int,
    flags: tuple[str, ...],
    mof: float,
    hip: float,
) -> None:
    inputs = QFractureInputs(
        sex, age, _bmi(height, weight), ethrisk, smoke, alcohol, frozenset(flags)
    )
    assert qfracture_risk_pct(inputs, "major_osteoporotic") == pytest.approx(mof, abs=1e-6)
    assert qfracture_risk_pct(inputs, "hip") == pytest.approx(hip, abs=1e-6)


def test_bmi_of_the_test_vectors() -> None:
    assert [round(_bmi(h, w), 4) for _, _, h, w, *_ in VECTORS[:5]] == [
        24.9770,
        21.8750,
        24.0346,
        30.0408,
        23.9995,
    ]


def test_cumulative_risk_rises_with_the_horizon() -> None:
    risks = qfracture_cumulative_pct(QFractureInputs("female", 70, 24.0), "hip")
    assert len(risks) == 10
    assert all(b > a > 0 for a, b in pairwise(risks))
    assert qfracture_risk_pct(QFractureInputs("female", 70, 24.0), "hip", years=3) == risks[2]


@pytest.mark.parametrize(
    ("inputs", "years", "message"),
    [
        (QFractureInputs("female", 29, 25.0), 10, "age 29"),
        (QFractureInputs("female", 101, 25.0), 10, "age 101"),
        (QFractureInputs("female", 60, 19.9), 10, "BMI 19.9"),
        (QFractureInputs("male", 60, 40.5), 10, "BMI 40.5"),
        (QFractureInputs("female", 60, 25.0), 11, "horizon 11"),
        (QFractureInputs("female", 60, 25.0), 0, "horizon 0"),
    ],
)
def test_qfracture_refuses_inputs_outside_its_validation_ranges(
    inputs: QFractureInputs, years: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        qfracture_risk_pct(inputs, "major_osteoporotic", years)


def test_licence_attribution_and_disclaimer_shipped() -> None:
    model = qfracture_model()
    assert "Lesser General Public License" in model.licence
    assert model.disclaimer.startswith("The initial version of this file")
    assert "wrong patients being given the wrong treatment" in model.disclaimer


def _inputs(**changes: Any) -> QFractureInputs:
    return qfracture_inputs(parse_patient(patient_dict(**changes)))


def test_patient_mapping_to_qfracture_inputs() -> None:
    base = _inputs()
    assert (base.sex, base.age_years, base.ethrisk, base.smoke_cat, base.alcohol_cat6) == (
        "female",
        60,
        1,
        0,
        0,
    )
    assert base.bmi_kg_m2 == pytest.approx(70 / 1.65**2)
    assert base.flags == {"b_anycancer"}  # anastrozole: breast cancer
    assert "b_anycancer" not in _inputs(treatments=[]).flags
    assert _inputs(ethnicity="black_african", age_years=60.9).ethrisk == 7
    assert _inputs(age_years=60.9).age_years == 60  # completed years, as the C source takes an int


@pytest.mark.parametrize(
    ("risk_factors", "smoke_cat"),
    [
        ({"past_smoker": True}, 1),
        ({"current_smoker": True}, 2),
        ({"current_smoker": True, "cigarettes_per_day": 9}, 2),
        ({"current_smoker": True, "cigarettes_per_day": 10}, 3),
        ({"current_smoker": True, "cigarettes_per_day": 20, "past_smoker": True}, 4),
    ],
)
def test_smoking_categories(risk_factors: dict[str, Any], smoke_cat: int) -> None:
    assert _inputs(risk_factors=risk_factors).smoke_cat == smoke_cat


@pytest.mark.parametrize(
    ("units", "category"),
    [(0, 0), (0.5, 1), (1, 2), (2.9, 2), (3, 3), (6.9, 3), (7, 4), (9, 4), (9.5, 5), (12, 5)],
)
def test_alcohol_categories(units: float, category: int) -> None:
    assert _inputs(risk_factors={"alcohol_units_per_day": units}).alcohol_cat6 == category


def test_every_mapped_flag_exists_in_the_model() -> None:
    model_flags = {
        flag
        for sex in qfracture_model().equations.values()
        for eq in sex.values()
        for flag in eq.flags
    }
    assert set(QFRACTURE_FLAGS) <= model_flags
    for patient_fields in QFRACTURE_FLAGS.values():
        for name in patient_fields:
            assert _inputs(risk_factors={name: True}).flags >= {
                flag for flag, sources in QFRACTURE_FLAGS.items() if name in sources
            }


def test_ai_adjustment_over_the_whole_horizon_is_one_minus_survival_to_the_rr() -> None:
    """p' = 1 - (1 - p)^RR (docs/clinical/fracture-risk.md section 4.3) when the AI covers the
    horizon."""
    cumulative = qfracture_cumulative_pct(QFractureInputs("female", 65, 25.0), "hip")
    p = cumulative[-1] / 100
    adjusted = ai_adjusted_pct(qfracture_hazard(cumulative), 10, (-1.0, 12.0), 1.18)
    assert adjusted == pytest.approx(100 * (1 - (1 - p) ** 1.18))
    frax = ai_adjusted_pct(constant_hazard(20.0, 10), 10, (0.0, 10.0), 1.18)
    assert frax == pytest.approx(100 * (1 - 0.8**1.18))


def test_ai_adjustment_only_for_the_on_ai_years() -> None:
    """AI for years 0-5 of 10: p' = 1 - S(5)^RR * S(10)/S(5)."""
    cumulative = qfracture_cumulative_pct(QFractureInputs("female", 65, 25.0), "major_osteoporotic")
    s5, s10 = 1 - cumulative[4] / 100, 1 - cumulative[9] / 100
    adjusted = ai_adjusted_pct(qfracture_hazard(cumulative), 10, (0.0, 5.0), 1.18)
    assert adjusted == pytest.approx(100 * (1 - s5**1.18 * s10 / s5))
    assert ai_adjusted_pct(qfracture_hazard(cumulative), 10, (-6.0, -1.0), 1.18) == pytest.approx(
        cumulative[9]
    )


def test_qfracture_hazard_interpolates_between_whole_years() -> None:
    cumulative = [5.0 * year for year in range(1, 11)]
    hazard = qfracture_hazard(cumulative)
    h1, h2 = -math.log(0.95), -math.log(0.90)
    assert hazard(0) == 0 and hazard(1) == pytest.approx(h1)
    assert hazard(1.5) == pytest.approx((h1 + h2) / 2)


@given(
    p=st.floats(0.1, 60),
    rr=st.floats(1.0, 3.0),
    extra=st.floats(0.0, 1.0),
    stop=st.floats(0.0, 10.0),
)
def test_ai_adjustment_never_lowers_risk_and_grows_with_rr(
    p: float, rr: float, extra: float, stop: float
) -> None:
    hazard = constant_hazard(p, 10)
    adjusted = ai_adjusted_pct(hazard, 10, (0.0, stop), rr)
    assert p - 1e-9 <= adjusted < 100
    assert ai_adjusted_pct(hazard, 10, (0.0, stop), rr + extra) >= adjusted - 1e-9


@pytest.mark.parametrize(
    ("outcome", "age", "dose", "pct"),
    [
        ("hip", 60, 10.0, 25.0),  # high dose, table column
        ("hip", 65, 10.0, 22.5),  # interpolated between 60 (+25) and 70 (+20)
        ("hip", 85, 1.0, -30.0),
        ("hip", 95, 1.0, -30.0),  # beyond the last column: constant
        ("hip", 30, 7.5, 25.0),  # 7.5 mg is high
        ("major_osteoporotic", 60, 2.4, -15.0),
        ("major_osteoporotic", 55, 2.5, 0.0),  # 2.5 mg is medium
        ("major_osteoporotic", 75, 20.0, 12.5),
    ],
)
def test_frax_glucocorticoid_adjustment(outcome: Any, age: float, dose: float, pct: float) -> None:
    assert frax_glucocorticoid_pct(outcome, age, dose) == pytest.approx(pct)


@pytest.mark.parametrize(
    ("t_fn", "t_ls", "factor"),
    [(-1.0, -2.5, 1.2), (-1.0, -1.4, 1.0), (-2.5, -1.0, 0.8), (-1.0, -3.1, 1.2), (-1.0, -3.6, 1.3)],
)
def test_frax_spine_femoral_neck_discordance(t_fn: float, t_ls: float, factor: float) -> None:
    """Leslie 2011: one tenth per rounded unit (1.5 rounds to 2, away from zero)."""
    assert frax_discordance_factor(t_fn, t_ls) == pytest.approx(factor)


@given(t_ls=st.floats(-5, 3), lower=st.floats(0, 2))
def test_lower_spine_t_score_never_lowers_the_discordance_adjusted_frax(
    t_ls: float, lower: float
) -> None:
    assert frax_discordance_factor(-1.0, t_ls - lower) >= frax_discordance_factor(-1.0, t_ls)


def test_frax_estimate_with_both_published_adjustments_and_the_ai() -> None:
    patient = parse_patient(
        patient_dict(
            age_years=70,
            frax={
                "major_osteoporotic_pct": 15,
                "hip_pct": 2.0,
                "glucocorticoids": True,
                "prednisolone_mg_per_day": 10,
            },
        )
    )
    risk = fracture_risk(patient, t_femoral_neck=-1.0, t_lumbar_spine=-2.5)
    mof, hip = risk.estimate("FRAX", "major_osteoporotic"), risk.estimate("FRAX", "hip")
    assert mof is not None and hip is not None
    assert mof.risk_pct == pytest.approx(15 * 1.15 * 1.2)
    assert hip.risk_pct == pytest.approx(2.0 * 1.20)  # discordance leaves hip unchanged
    assert [step.risk_pct for step in mof.steps] == pytest.approx([15, 17.25, 20.7])
    assert mof.risk_pct_on_ai is not None and mof.risk_pct_on_ai > mof.risk_pct
    assert (
        "FRAX does not adequately capture aromatase-inhibitor bone loss (AIBL 2017)"
        in mof.does_not_account_for
    )


def test_frax_without_bmd_or_dose_is_not_adjusted() -> None:
    frax = {
        "major_osteoporotic_pct": 15,
        "hip_pct": 2.0,
        "computed_with_bmd": False,
        "glucocorticoids": True,
    }
    risk = fracture_risk(parse_patient(patient_dict(frax=frax)), -1.0, -2.5)
    assert [e.risk_pct for e in risk.estimates if e.model == "FRAX"] == [15, 2.0]
    assert "FRAX glucocorticoid adjustment needs prednisolone_mg_per_day" in risk.not_computed


def test_every_estimate_names_its_model_and_limits() -> None:
    risk = fracture_risk(parse_patient(patient_dict()), None, None)
    assert [(e.model, e.outcome) for e in risk.estimates] == [
        ("QFracture-2012", "major_osteoporotic"),
        ("QFracture-2012", "hip"),
    ]
    for estimate in risk.estimates:
        assert "no bone mineral density input" in estimate.does_not_account_for[0]
        assert estimate.steps[0].description.startswith("QFracture-2012 algorithm (ClinRisk Ltd.)")
        assert estimate.ai_adjustment is not None and "x 1.18" in estimate.ai_adjustment.description
    assert "ClinRisk" in risk.qfracture_attribution


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"weight_kg": 45}, "BMI 16.5 outside"),
        ({"weight_kg": None}, "weight and height"),
        ({"age_years": 25}, "age 25"),
    ],
)
def test_qfracture_not_computed_says_why(changes: dict[str, Any], reason: str) -> None:
    risk = fracture_risk(parse_patient(patient_dict(**changes)), None, None)
    assert risk.estimates == []
    assert reason in risk.not_computed[0]


@settings(max_examples=60)
@given(
    sex=st.sampled_from(["female", "male"]),
    age=st.integers(30, 100),
    bmi=st.floats(20, 40),
    flags=st.frozensets(st.sampled_from(sorted(set(QFRACTURE_FLAGS) | {"b_anycancer"}))),
    extra=st.sampled_from(sorted(set(QFRACTURE_FLAGS) | {"b_anycancer"})),
)
def test_another_risk_factor_never_lowers_qfracture(
    sex: Any, age: int, bmi: float, flags: frozenset[str], extra: str
) -> None:
    before = QFractureInputs(sex, age, bmi, flags=flags)
    after = QFractureInputs(sex, age, bmi, flags=flags | {extra})
    for outcome in ("major_osteoporotic", "hip"):
        assert qfracture_risk_pct(after, outcome) >= qfracture_risk_pct(before, outcome)  # type: ignore[arg-type]
