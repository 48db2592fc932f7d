"""Decoding of FHIR R4 medication resources, shared by every FHIR reader in bonecast.

The registry's Bundle import (:mod:`bonecast.registry.fhir`), the CDS Hooks prefetch and
``bonecast assess --fhir`` (:mod:`bonecast.services.fhir_input`) read a MedicationStatement (or
MedicationRequest) with these functions, so the drug, dose, route and interval mean the same
everywhere. Codes are those of :mod:`bonecast.registry.terminology`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bonecast.registry import terminology as codes
from bonecast.simulation import DRUGS

PERIOD_DAYS = {"d": 1.0, "wk": 7.0, "mo": 30.4375, "a": 365.25}
"""Days per UCUM time unit of ``Timing.repeat.periodUnit`` (month and year: Julian averages)."""
ROUTES = ("oral", "iv", "sc")

Resource = Mapping[str, Any]


def codings(resource: Resource, key: str) -> list[tuple[str, str]]:
    """(system, code) pairs of a CodeableConcept element of a resource."""
    concept = resource.get(key) or {}
    return [(str(c.get("system", "")), str(c.get("code", ""))) for c in concept.get("coding", [])]


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
