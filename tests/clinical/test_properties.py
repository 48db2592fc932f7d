"""Monotonicity: lower BMD or another risk factor never lowers risk or weakens a recommendation."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bonecast.clinical import Assessment, assess, parse_patient
from bonecast.clinical.scores import WHO_SEVERITY

RISK_FACTORS = (
    "current_smoker",
    "past_smoker",
    "family_history_hip_fracture",
    "fragility_fracture_after_50",
    "prior_vertebral_fracture",
    "prior_hip_fracture",
    "oral_glucocorticoids_over_6_months",
    "rheumatoid_arthritis",
    "history_of_falls",
    "type2_diabetes",
    "chronic_kidney_disease",
    "antidepressants",
)
SITE_RANGES = {"lumbar_spine": (0.6, 1.3), "total_hip": (0.5, 1.2), "femoral_neck": (0.45, 1.1)}


@st.composite
def patients(draw: st.DrawFn) -> dict[str, Any]:
    """A woman (post- or premenopausal on ovarian suppression) or a man on an AI, 1-2 scans."""
    kind = draw(st.sampled_from(["postmenopausal", "premenopausal", "male"]))
    age = draw(st.integers(36, 54) if kind == "premenopausal" else st.integers(40, 90))
    treatments: list[dict[str, Any]] = [{"drug": "exemestane", "start_date": "2025-01-01"}]
    if kind == "premenopausal":
        treatments.append({"drug": "goserelin", "start_date": "2025-01-01"})
    latest = {
        site: draw(st.floats(low, high))
        for site, (low, high) in SITE_RANGES.items()
        if draw(st.booleans())
    } or {"total_hip": draw(st.floats(0.5, 1.2))}
    scans = [
        {
            "date": "2025-12-01",
            "scanner": "hologic",
            **{s: {"bmd_g_cm2": b} for s, b in latest.items()},
        }
    ]
    if draw(st.booleans()):
        ratio = draw(st.floats(0.9, 1.12))
        earlier = {s: {"bmd_g_cm2": min(2.0, b * ratio)} for s, b in latest.items()}
        scans.insert(0, {"date": "2024-12-01", "scanner": "hologic", **earlier})
    present = draw(st.lists(st.sampled_from(RISK_FACTORS), unique=True, max_size=4))
    return {
        "sex": "male" if kind == "male" else "female",
        "age_years": age,
        **({} if kind == "male" else {"menopausal_status": kind}),
        "weight_kg": draw(st.floats(45, 110)),
        "height_cm": draw(st.floats(150, 185)),
        "risk_factors": dict.fromkeys(present, True),
        "scans": scans,
        "treatments": treatments,
        "as_of": "2026-01-15",
    }


def _assess(data: dict[str, Any], guideline: str) -> Assessment:
    return assess(parse_patient(data), guideline)


def _no_weaker(before: Assessment, after: Assessment) -> None:
    """``after`` (more risk) is at least as strong as ``before`` in every respect users act on."""
    b, a = before.recommendation, after.recommendation
    assert a.start_bone_protective_therapy >= b.start_bone_protective_therapy, (
        b.rule_id,
        a.rule_id,
    )
    if a.start_bone_protective_therapy == b.start_bone_protective_therapy:
        assert a.next_dxa.due <= b.next_dxa.due
    if before.who_category is not None and after.who_category is not None:
        assert WHO_SEVERITY[after.who_category] >= WHO_SEVERITY[before.who_category]
    risks_before = {(e.model, e.outcome): e for e in before.fracture_risk.estimates}
    for estimate in after.fracture_risk.estimates:
        earlier = risks_before[(estimate.model, estimate.outcome)]
        assert estimate.risk_pct >= earlier.risk_pct - 1e-9
        assert (estimate.risk_pct_on_ai or 0) >= (earlier.risk_pct_on_ai or 0) - 1e-9
    assert len(after.fracture_risk.estimates) == len(before.fracture_risk.estimates)


@settings(max_examples=150, deadline=None)
@given(
    data=patients(),
    factor=st.floats(0.6, 1.0),
    guideline=st.sampled_from(["aibl-2025", "aibl-2017"]),
)
def test_lower_bmd_never_lowers_risk_or_weakens_the_recommendation(
    data: dict[str, Any], factor: float, guideline: str
) -> None:
    lower = copy.deepcopy(data)
    for site in SITE_RANGES:
        if site in lower["scans"][-1]:
            measurement = lower["scans"][-1][site]
            measurement["bmd_g_cm2"] = max(0.2, measurement["bmd_g_cm2"] * factor)
    before, after = _assess(data, guideline), _assess(lower, guideline)
    _no_weaker(before, after)
    if before.lowest_t_score is not None:
        assert after.lowest_t_score is not None and after.lowest_t_score <= before.lowest_t_score


@settings(max_examples=150, deadline=None)
@given(
    data=patients(),
    extra=st.sampled_from(RISK_FACTORS),
    guideline=st.sampled_from(["aibl-2025", "aibl-2017"]),
)
def test_another_risk_factor_never_lowers_risk_or_weakens_the_recommendation(
    data: dict[str, Any], extra: str, guideline: str
) -> None:
    # QFracture-2012 as published gives male ex-smokers a slightly negative coefficient
    # (-0.0008 major osteoporotic, -0.016 hip); bonecast reproduces the model as it is.
    assume(not (data["sex"] == "male" and extra == "past_smoker"))
    more = copy.deepcopy(data)
    more["risk_factors"][extra] = True
    before, after = _assess(data, guideline), _assess(more, guideline)
    _no_weaker(before, after)
    # Counted, not named: a vertebral fracture also recorded as a fragility fracture after 50
    # counts once (docs/clinical/aibl-algorithm.md section 1.3), so the names may change while the
    # count cannot fall.
    assert len(after.risk_factors_present) >= len(before.risk_factors_present)
