"""The one FHIR decoder: DXA site and measure of an Observation, old and new codes."""

from __future__ import annotations

from typing import Any

import pytest

from bonecast.registry import terminology as codes
from bonecast.registry.fhir_decoding import dxa_site_measure, dxa_unit_problem, medication_dosage


def _observation(*coding: tuple[str, str], body_site: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "code": {"coding": [{"system": s, "code": c} for s, c in coding]},
    }
    if body_site:
        resource["bodySite"] = {"coding": [{"system": codes.SNOMED, "code": body_site}]}
    return resource


@pytest.mark.parametrize(
    ("coding", "body_site", "expected"),
    [
        # bonecast's exports since 2026-12: own code + SNOMED body site, no Femur LOINC
        (
            [(codes.DXA_SYSTEM, "femoral_neck_t_score")],
            codes.FEMORAL_NECK_SNOMED,
            ("femoral_neck", "t_score"),
        ),
        (
            [(codes.LOINC, "38264-8"), (codes.DXA_SYSTEM, "total_hip_t_score")],
            codes.TOTAL_HIP_SNOMED,
            ("total_hip", "t_score"),
        ),
        # older bonecast exports and most EHRs: the generic Femur terms mean the femoral neck
        ([(codes.LOINC, "24701-5")], None, ("femoral_neck", "bmd_g_cm2")),
        (
            [(codes.LOINC, "38263-0"), (codes.DXA_SYSTEM, "femoral_neck_t_score")],
            None,
            ("femoral_neck", "t_score"),
        ),
        # ...unless the body site says total hip; a neck body site wins over a Hip term
        ([(codes.LOINC, "24701-5")], codes.TOTAL_HIP_SNOMED, ("total_hip", "bmd_g_cm2")),
        ([(codes.LOINC, "38264-8")], codes.FEMORAL_NECK_SNOMED, ("femoral_neck", "t_score")),
        ([(codes.LOINC, "80948-3")], None, ("femoral_neck", "t_score")),  # left femur
        ([(codes.LOINC, "38267-1")], codes.TOTAL_HIP_SNOMED, ("lumbar_spine", "t_score")),
        ([(codes.LOINC, "29463-7")], None, None),  # body weight
    ],
)
def test_dxa_site_and_measure(
    coding: list[tuple[str, str]], body_site: str | None, expected: tuple[str, str] | None
) -> None:
    assert dxa_site_measure(_observation(*coding, body_site=body_site)) == expected


def test_dosage_in_days_and_mg_with_problems_named() -> None:
    statement = {
        "dosage": [
            {
                "route": {"text": "sc"},
                "doseAndRate": [{"doseQuantity": {"value": 60, "unit": "mg", "code": "mg"}}],
                "timing": {"repeat": {"period": 6, "periodUnit": "mo"}},
            }
        ]
    }
    assert medication_dosage(statement) == (
        {"dose_mg": 60, "route": "sc", "interval_days": 182.625},
        [],
    )
    bad = {
        "dosage": [
            {
                "doseAndRate": [{"doseQuantity": {"value": 1, "code": "g"}}],
                "timing": {"repeat": {"period": 1, "periodUnit": "h"}},
            }
        ]
    }
    values, problems = medication_dosage(bad)
    assert values == {"dose_mg": None, "route": None, "interval_days": None}
    assert [field for field, _ in problems] == ["dosage.doseQuantity", "dosage.timing"]


def test_units_are_checked_alike_by_the_registry_and_the_prefetch_reader() -> None:
    from bonecast.services import patient_from_fhir

    def bmd(unit: str) -> dict[str, Any]:
        resource = _observation((codes.LOINC, "24966-4"))
        return resource | {
            "id": unit,
            "effectiveDateTime": "2025-03-02",
            "valueQuantity": {"value": 950, "code": unit},
        }

    assert dxa_unit_problem("bmd_g_cm2", "mg/cm2") == (
        "unit 'mg/cm2' does not fit the code; expected g/cm2"
    )
    assert dxa_unit_problem("t_score", None) is None
    woman = {"resourceType": "Patient", "gender": "female", "birthDate": "1958-05-01"}
    patient, notes = patient_from_fhir(woman, [bmd("mg/cm2")])
    assert patient.scans == []
    assert (
        "Observation/mg/cm2: unit 'mg/cm2' does not fit the code; expected g/cm2; left out" in notes
    )
