"""Decoding of FHIR R4 DXA Observations and medication resources, shared by every FHIR reader.

The registry's Bundle import (:mod:`bonecast.registry.fhir`), the CDS Hooks prefetch and
``bonecast assess --fhir`` (:mod:`bonecast.services.fhir_input`) read the DXA site and measure
of an Observation and the drug, dose, route and interval of a MedicationStatement (or
MedicationRequest) with these functions, so they mean the same everywhere. Codes are those of
:mod:`bonecast.registry.terminology`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bonecast.registry import terminology as codes
from bonecast.simulation import DRUGS, SITES

PERIOD_DAYS = {"d": 1.0, "wk": 7.0, "mo": 30.4375, "a": 365.25}
"""Days per UCUM time unit of ``Timing.repeat.periodUnit`` (month and year: Julian averages)."""
ROUTES = ("oral", "iv", "sc")

Resource = Mapping[str, Any]


def extension_value(resource: Resource, name: str) -> Any:
    """The value of bonecast's extension ``name`` on a resource (``None`` when absent)."""
    for extension in resource.get("extension", []):
        if extension.get("url") == f"{codes.EXTENSION}/{name}":
            return next((v for k, v in extension.items() if k.startswith("value")), None)
    return None


def patient_demographics(resource: Resource) -> dict[str, Any]:
    """Birth date, sex, menopausal status and ethnicity of a FHIR Patient, as written (the
    callers validate them); ethnicity defaults to ``white_or_not_recorded``."""
    return {
        "birth_date": resource.get("birthDate"),
        "sex": resource.get("gender"),
        "menopausal_status": extension_value(resource, "menopausal-status"),
        "ethnicity": extension_value(resource, "ethnicity") or "white_or_not_recorded",
    }


def codings(resource: Resource, key: str) -> list[tuple[str, str]]:
    """(system, code) pairs of a CodeableConcept element of a resource."""
    concept = resource.get(key) or {}
    return [(str(c.get("system", "")), str(c.get("code", ""))) for c in concept.get("coding", [])]


_DXA_CODES = {f"{site}_{measure}": (site, measure) for site in SITES for measure in codes.MEASURES}
"""bonecast's own DXA codes (``femoral_neck_t_score``) and the (site, measure) they name."""


def dxa_site_measure(resource: Resource) -> tuple[str, str] | None:
    """The (site, measure) of a DXA Observation, or ``None`` when it is not one.

    bonecast's own code wins; else the LOINC term. A "Femur" LOINC term (bonecast's exports
    before 2026-12, and many EHRs) is the femoral neck unless the SNOMED CT body site says
    total hip; a femoral-neck body site makes any hip or femur term the femoral neck.
    """
    found = codings(resource, "code")
    own = next((_DXA_CODES[c] for s, c in found if s == codes.DXA_SYSTEM and c in _DXA_CODES), None)
    if own is not None:
        return own
    by_loinc = codes.DXA_BY_LOINC
    loinc = [by_loinc[c] for s, c in found if s == codes.LOINC and c in by_loinc]
    key = loinc[0] if loinc else None
    if key is None or key[0] == "lumbar_spine":
        return key
    body = {c for s, c in codings(resource, "bodySite") if s == codes.SNOMED}
    if codes.FEMORAL_NECK_SNOMED in body:
        return "femoral_neck", key[1]
    if codes.TOTAL_HIP_SNOMED in body:
        return "total_hip", key[1]
    return key


def dxa_unit_problem(measure: str, unit: str | None) -> str | None:
    """Why a DXA value's unit (UCUM code, else unit text) does not fit its measure, or ``None``.

    A BMD needs g/cm2; a score's unit may be left out.
    """
    expected = codes.MEASURE_UNITS[measure]
    if unit is None:
        return None if measure != "bmd_g_cm2" else "a unit (g/cm2) is required"
    if unit.lower() in (expected.lower(), expected.strip("{}").lower()) or unit == "g/cm²":
        return None
    return f"unit {unit!r} does not fit the code; expected {expected}"


def medication_drug(resource: Resource) -> str | None:
    """The catalogue drug a medication names: bonecast code, RxNorm, SNOMED CT or its name.

    A name that is not in the catalogue comes back as given (lower case, for the message).
    """
    by_rxnorm = {rxcui: drug for drug, rxcui in codes.RXNORM_INGREDIENTS.items()}
    for system, code in codings(resource, "medicationCodeableConcept"):
        if system == codes.DRUG_SYSTEM:
            return code
        if system == codes.RXNORM and code in by_rxnorm:
            return by_rxnorm[code]
        if system == codes.SNOMED and code in codes.SNOMED_SUBSTANCES:
            return codes.SNOMED_SUBSTANCES[code]
    concept = resource.get("medicationCodeableConcept") or {}
    text = str(concept.get("text") or "").strip().lower().replace(" ", "_")
    return text if text in DRUGS else (text or None)


def medication_dosage(resource: Resource) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``dose_mg``, ``route`` and ``interval_days`` of the first ``dosage``, and problems.

    Problems are (FHIR field, message) pairs: a dose not in mg, an unknown ``periodUnit``.
    An interval is ``period x days per unit / frequency``.
    """
    dosage = (resource.get("dosage") or [{}])[0]
    problems: list[tuple[str, str]] = []
    route = dosage.get("route") or {}
    route_codes = {c.get("code") for c in route.get("coding", [])} | {route.get("text")}
    quantity = (dosage.get("doseAndRate") or [{}])[0].get("doseQuantity") or {}
    dose = quantity.get("value")
    if dose is not None and (quantity.get("code") or quantity.get("unit")) != "mg":
        problems.append(("dosage.doseQuantity", "unit must be mg"))
        dose = None
    repeat = (dosage.get("timing") or {}).get("repeat") or {}
    interval = None
    if repeat.get("period") is not None:
        factor = PERIOD_DAYS.get(repeat.get("periodUnit", "d"))
        if factor is None:
            problems.append(
                ("dosage.timing", f"periodUnit must be one of {', '.join(PERIOD_DAYS)}")
            )
        else:
            interval = repeat["period"] * factor / repeat.get("frequency", 1)
    return {
        "dose_mg": dose,
        "route": next((c for c in ROUTES if c in route_codes), None),
        "interval_days": interval,
    }, problems
