"""The clinical input model from FHIR R4 resources, as a CDS Hooks prefetch delivers them.

Codes are read with the registry's terminology (:mod:`bonecast.registry.terminology`): DXA
results by the LOINC of docs/clinical/interoperability.md section 6.1 (left/right hip and femur
codes too), body weight and height by LOINC, drugs by RxNorm ingredient, SNOMED CT substance,
bonecast's drug code or name. Choices made here, each reported in the notes that come back with the
patient:

* a woman whose Patient carries no bonecast ``menopausal-status`` extension is taken as
  premenopausal when she has ovarian suppression on record, postmenopausal otherwise (aromatase
  inhibitors are given to postmenopausal women or with ovarian suppression);
* the scanner maker comes from a Device that an Observation refers to, when the prefetch holds
  it; otherwise Hologic is assumed (it matters only for T-scores computed from BMD);
* DXA observations of one date make one scan; medications with an unknown drug, and resources
  without a date, are left out.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from bonecast.clinical import Patient, parse_patient
from bonecast.clinical.patient import DAYS_PER_YEAR
from bonecast.registry import terminology as codes
from bonecast.registry.fhir_decoding import (
    codings,
    dxa_site_measure,
    dxa_unit_problem,
    extension_value,
    medication_dosage,
    medication_drug,
    patient_demographics,
)
from bonecast.simulation import DRUGS, DrugClass

Resource = Mapping[str, Any]
_BODY = {codes.BODY_WEIGHT_LOINC: "weight_kg", codes.BODY_HEIGHT_LOINC: "height_cm"}


class PrefetchError(ValueError):
    """Data the assessment needs are missing (CDS Hooks answers with a missing-data card)."""


def resources(value: Any) -> list[dict[str, Any]]:
    """The resources of a prefetch value: a resource, a Bundle of them, or ``None``."""
    if not isinstance(value, Mapping):
        return []
    if value.get("resourceType") == "Bundle":
        return [
            dict(entry["resource"])
            for entry in value.get("entry") or []
            if isinstance(entry, Mapping) and isinstance(entry.get("resource"), Mapping)
        ]
    return [dict(value)]


def _day(value: Any) -> str | None:
    return str(value)[:10] if value else None


def _label(resource: Resource) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id', '?')}"


class _Reader:
    """Collects the clinical input of one patient, with notes on what was assumed or left out."""

    def __init__(self, all_resources: Iterable[Resource]) -> None:
        self.devices = {_label(r): r for r in all_resources if r.get("resourceType") == "Device"}
        self.notes: list[str] = []
        self.scans: dict[str, dict[str, Any]] = defaultdict(dict)
        self.body: dict[str, float] = {}
        self.treatments: list[dict[str, Any]] = []

    def observation(self, resource: Resource) -> None:
        value = (resource.get("valueQuantity") or {}).get("value")
        key = dxa_site_measure(resource)
        if key is not None:
            self._dxa(resource, *key, value)
            return
        for system, code in codings(resource, "code"):
            if system == codes.LOINC and code in _BODY and value is not None:
                self.body[_BODY[code]] = value
                return

    def _dxa(self, resource: Resource, site: str, measure: str, value: Any) -> None:
        day = _day(resource.get("effectiveDateTime"))
        if day is None or value is None:
            self.notes.append(f"{_label(resource)}: no date or value; left out")
            return
        quantity = resource.get("valueQuantity") or {}
        problem = dxa_unit_problem(measure, quantity.get("code") or quantity.get("unit"))
        if problem:
            self.notes.append(f"{_label(resource)}: {problem}; left out")
            return
        scan = self.scans[day]
        if measure in scan.setdefault(site, {}):
            self.notes.append(f"{_label(resource)}: a second {site} {measure} of {day}; left out")
            return
        scan[site][measure] = value
        if "scanner" not in scan:
            scan["scanner"] = self._scanner(resource)

    def _scanner(self, resource: Resource) -> str:
        reference = str((resource.get("device") or {}).get("reference", ""))
        device = self.devices.get("/".join(reference.split("/")[-2:]), {})
        words = re.findall(r"[a-z]+", str(device.get("manufacturer", "")).lower())
        makers = {codes.SCANNER_WORDS[w] for w in words if w in codes.SCANNER_WORDS}
        if len(makers) == 1:
            return makers.pop()
        self.notes.append(f"{_label(resource)}: scanner maker unknown; Hologic assumed")
        return "hologic"

    def medication(self, resource: Resource) -> None:
        drug = medication_drug(resource)
        period = resource.get("effectivePeriod") or {}
        start = _day(period.get("start") or resource.get("effectiveDateTime"))
        start = start or _day(resource.get("authoredOn"))
        if drug not in DRUGS or start is None:
            self.notes.append(
                f"{_label(resource)}: not a catalogue drug with a start date; left out"
            )
            return
        dosage, problems = medication_dosage(resource)
        self.notes += [
            f"{_label(resource)}: {field}: {message}; left out" for field, message in problems
        ]
        treatment = {
            "drug": drug,
            "start_date": start,
            "stop_date": _day(period.get("end")),
            "planned_stop_date": _day(extension_value(resource, "planned-stop-date")),
            "last_dose_date": _day(extension_value(resource, "last-dose-date")),
            **dosage,
        }
        self.treatments.append({k: v for k, v in treatment.items() if v is not None})


def patient_from_fhir(
    patient: Resource | None,
    others: Iterable[Resource],
    as_of: date | None = None,
) -> tuple[Patient, list[str]]:
    """The clinical input of a FHIR Patient and her Observations and MedicationStatements (or
    MedicationRequests), with notes on what was assumed or left out.

    :class:`PrefetchError` without a Patient that has a birth date and a gender;
    :class:`~bonecast.clinical.PatientError` when the data cannot be assessed.
    """
    if patient is None or patient.get("resourceType") != "Patient":
        raise PrefetchError("the prefetch has no Patient resource")
    demographics = patient_demographics(patient)
    born, sex = demographics["birth_date"], demographics["sex"]
    if not born or sex not in ("female", "male"):
        raise PrefetchError("the Patient needs a birthDate and a gender (female or male)")
    others = list(others)
    reader = _Reader(others)
    for resource in others:
        if resource.get("resourceType") == "Observation":
            reader.observation(resource)
        elif resource.get("resourceType") in ("MedicationStatement", "MedicationRequest"):
            reader.medication(resource)
    day = as_of or date.today()
    birth = date.fromisoformat(str(born)[:10])
    status = demographics["menopausal_status"]
    if sex == "female" and status is None:
        suppressed = any(
            DRUGS[t["drug"]].drug_class == DrugClass.OVARIAN_SUPPRESSION for t in reader.treatments
        )
        status = "premenopausal" if suppressed else "postmenopausal"
        reader.notes.append(f"menopausal status not recorded; {status} assumed")
    data = {
        "sex": sex,
        "birth_date": birth,
        "age_years": round((day - birth).days / DAYS_PER_YEAR, 2),
        "menopausal_status": status,
        "ethnicity": demographics["ethnicity"],
        "scans": [{"date": d, **scan} for d, scan in sorted(reader.scans.items())],
        "treatments": reader.treatments,
        "as_of": day,
        **reader.body,
    }
    return parse_patient(data, _label(patient)), reader.notes


def patient_from_bundle(
    bundle: Mapping[str, Any], as_of: date | None = None
) -> tuple[Patient, list[str]]:
    """The clinical input of a FHIR Bundle holding one Patient and her resources (for example
    a bonecast export), with notes; :class:`PrefetchError` without exactly one Patient."""
    found = resources(bundle)
    patients = [r for r in found if r.get("resourceType") == "Patient"]
    if len(patients) != 1:
        raise PrefetchError(f"the Bundle must hold one Patient, not {len(patients)}")
    return patient_from_fhir(patients[0], [r for r in found if r is not patients[0]], as_of)
