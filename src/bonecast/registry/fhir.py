"""FHIR R4 export of a patient as a Bundle, and import of such a Bundle, all or nothing.

A Bundle (``type: collection``) holds one ``Patient``; ``Observation``s for DXA results (one per
site and measure, LOINC of docs/clinical/interoperability.md section 6.1, plus one DXA panel
``83311-1`` per scan that lists them and carries TBS and per-vertebra values as components),
laboratory results (LOINC of docs/clinical/interoperability.md section 6.2) and body weight and
height; ``MedicationStatement``s for treatments (RxNorm ingredients,
docs/clinical/interoperability.md section 6.4); and the ``Device`` (scanner maker, model, serial)
and ``Organization`` (facility) the DXA results refer to. Exports also carry bonecast's own codes
(:mod:`bonecast.registry.terminology`), so that export then import gives the same records.

Import reads the same structure from any source: DXA observations are grouped into one scan per
date; the Device's ``manufacturer`` must name Hologic, GE Lunar or Norland; left/right hip and
femur codes are accepted (the side is not kept); SNOMED CT substance codes and drug names are
accepted besides RxNorm; every code/unit pair is checked. Resources bonecast does not use are
listed in the report as ignored. The Patient's MRN (``identifier`` with ``mrn_system``, or its
only identifier) may already be registered: the records are then added to that patient, provided
birth date and sex agree.

Models: ``fhir.resources`` 8, sub-package ``R4B``. No ``fhir.resources`` release that works with
pydantic v2 ships R4 (4.0.1) models: R4 was the default up to 6.4 and R4B from 6.5, both on
pydantic v1; since 7.0 the default is R5 with R4B and STU3 sub-packages. R4B differs from R4 only
in resources bonecast does not use (medication definition, evidence, subscriptions; see
hl7.org/fhir/R4B/r4b-explanation.html), so the Patient, Observation, MedicationStatement, Device
and Organization written here are valid R4 as well.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from bonecast.clinical.patient import lab_tests
from bonecast.registry import terminology as codes
from bonecast.registry.errors import ConflictError, FieldProblem, RegistryError, field_problems
from bonecast.registry.fhir_decoding import (
    dxa_site_measure,
    dxa_unit_problem,
    extension_value,
    medication_dosage,
    medication_drug,
    patient_demographics,
)
from bonecast.registry.importing import ImportReport, PlannedWrite, Refs, run_import
from bonecast.registry.repository import Registry, RegistrySession
from bonecast.registry.schemas import (
    VERTEBRAE,
    LabIn,
    LabRecord,
    PatientChart,
    PatientIn,
    ScanIn,
    ScanRecord,
    TreatmentIn,
    TreatmentRecord,
)

FORMAT = "fhir-r4-bundle"
_NAMESPACE = uuid.UUID("0b7f3d2e-5a1c-4e8b-9f6d-3c2a1b0e9d8c")
_VERTEBRA_FIELDS = ("bmd_g_cm2", "t_score", "excluded")
_LAB_FIELDS = {
    "sample_date": "effectiveDateTime",
    "marker": "code",
    "value": "valueQuantity.value",
    "unit": "valueQuantity.unit",
    "assay": "method.text",
}
"""Where in an Observation each lab field comes from (to name it in the report)."""
_TREATMENT_FIELDS = {
    "drug": "medicationCodeableConcept",
    "dose_mg": "dosage.doseQuantity",
    "route": "dosage.route",
    "interval_days": "dosage.timing",
    "start_date": "effectivePeriod.start",
    "stop_date": "effectivePeriod.end",
    "planned_stop_date": "extension(planned-stop-date)",
    "last_dose_date": "extension(last-dose-date)",
}
"""Where in a MedicationStatement each treatment field comes from."""
_MEASURE_TEXT = {"bmd_g_cm2": "BMD", "t_score": "T-score", "z_score": "Z-score"}


# --- export ---------------------------------------------------------------------------------


def _coding(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code}


def _quantity(value: float, unit: str, ucum: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": codes.UCUM, "code": ucum}


def _category(code: str) -> list[dict[str, Any]]:
    return [{"coding": [_coding(codes.OBSERVATION_CATEGORY, code)]}]


def _extension(name: str, value_type: str, value: Any) -> dict[str, Any]:
    return {"url": f"{codes.EXTENSION}/{name}", value_type: value}


class _Exporter:
    """Builds the Bundle entries of one chart; resource ids are stable UUIDs (v5)."""

    def __init__(self, chart: PatientChart, mrn_system: str) -> None:
        self.chart = chart
        self.mrn_system = mrn_system
        self.entries: list[dict[str, Any]] = []
        self._shared: dict[tuple[Any, ...], str] = {}

    def add(self, key: str, resource: dict[str, Any]) -> str:
        resource_id = str(uuid.uuid5(_NAMESPACE, f"{self.chart.patient.mrn}/{key}"))
        full_url = f"urn:uuid:{resource_id}"
        self.entries.append({"fullUrl": full_url, "resource": {**resource, "id": resource_id}})
        return full_url

    def shared(self, key: tuple[Any, ...], resource: dict[str, Any]) -> dict[str, str]:
        """A reference to a Device or Organization, added once per distinct value."""
        if key not in self._shared:
            self._shared[key] = self.add("/".join(str(part) for part in key), resource)
        return {"reference": self._shared[key]}

    def patient(self) -> str:
        p = self.chart.patient
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "identifier": [{"system": self.mrn_system, "value": p.mrn}],
            "gender": p.sex,
            "birthDate": p.birth_date.isoformat(),
            "extension": [_extension("ethnicity", "valueCode", p.ethnicity)],
        }
        if p.family_name or p.given_name:
            name: dict[str, Any] = {"family": p.family_name} if p.family_name else {}
            if p.given_name:
                name["given"] = [p.given_name]
            resource["name"] = [name]
        if p.menopausal_status:
            resource["extension"].append(
                _extension("menopausal-status", "valueCode", p.menopausal_status)
            )
        return self.add("patient", resource)

    def observation(
        self, key: str, subject: str, code: list[dict[str, str]], text: str, **fields: Any
    ) -> str:
        resource = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": code, "text": text},
            "subject": {"reference": subject},
            **fields,
        }
        return self.add(key, resource)

    def body(self, subject: str) -> None:
        p = self.chart.patient
        for name, loinc, value, unit in (
            ("weight", codes.BODY_WEIGHT_LOINC, p.weight_kg, "kg"),
            ("height", codes.BODY_HEIGHT_LOINC, p.height_cm, "cm"),
        ):
            if value is not None:
                self.observation(
                    name,
                    subject,
                    [_coding(codes.LOINC, loinc)],
                    f"body {name}",
                    category=_category("vital-signs"),
                    valueQuantity=_quantity(value, unit, unit),
                )

    def scan(self, subject: str, scan: ScanRecord) -> None:
        common: dict[str, Any] = {
            "category": _category("imaging"),
            "effectiveDateTime": scan.scan_date.isoformat(),
            "device": self.shared(
                ("device", scan.scanner, scan.scanner_model, scan.scanner_serial),
                _device(scan),
            ),
        }
        if scan.facility:
            common["performer"] = [
                self.shared(
                    ("organization", scan.facility),
                    {"resourceType": "Organization", "name": scan.facility},
                )
            ]
        members = []
        for site, values in scan.sites.items():
            for measure in codes.MEASURES:
                value = getattr(values, measure)
                if value is None:
                    continue
                ucum = codes.MEASURE_UNITS[measure]
                loinc = codes.DXA_LOINC.get((site, measure))
                body_site: dict[str, Any] = {"text": site.replace("_", " ")}
                if site in codes.BODY_SITE_SNOMED:
                    body_site["coding"] = [_coding(codes.SNOMED, codes.BODY_SITE_SNOMED[site])]
                members.append(
                    self.observation(
                        f"scan/{scan.id}/{site}/{measure}",
                        subject,
                        [
                            *([_coding(codes.LOINC, loinc)] if loinc else []),
                            _coding(codes.DXA_SYSTEM, f"{site}_{measure}"),
                        ],
                        f"{site.replace('_', ' ')} {_MEASURE_TEXT[measure]}",
                        bodySite=body_site,
                        valueQuantity=_quantity(value, ucum.strip("{}"), ucum),
                        **common,
                    )
                )
        components = [
            _component(f"{name}_{field}", getattr(vertebra, field))
            for name, vertebra in scan.vertebrae.items()
            for field in _VERTEBRA_FIELDS
            if getattr(vertebra, field) is not None
        ]
        if scan.tbs is not None:
            components.append(_component("tbs", scan.tbs))
        panel: dict[str, Any] = {"hasMember": [{"reference": m} for m in members], **common}
        if components:
            panel["component"] = components
        self.observation(
            f"scan/{scan.id}/panel",
            subject,
            [_coding(codes.LOINC, codes.DXA_PANEL_LOINC)],
            "DXA bone density panel",
            **panel,
        )

    def lab(self, subject: str, lab: LabRecord) -> None:
        coding = [
            _coding(codes.LOINC, c.loinc)
            for c in codes.LAB_CODES
            if c.marker == lab.marker
            and c.loinc not in codes.LEGACY_LAB_LOINC
            and (c.units is None or lab.unit in c.units)
        ]
        fields: dict[str, Any] = {
            "category": _category("laboratory"),
            "effectiveDateTime": lab.sample_date.isoformat(),
            "valueQuantity": _quantity(lab.value, lab.unit, codes.LAB_UCUM.get(lab.unit, lab.unit)),
        }
        if lab.assay:
            fields["method"] = {"text": lab.assay}
        self.observation(
            f"lab/{lab.id}",
            subject,
            [*coding, _coding(codes.LAB_SYSTEM, lab.marker)],
            str(lab_tests()[lab.marker]["name"]),
            **fields,
        )

    def treatment(self, subject: str, treatment: TreatmentRecord) -> None:
        coding = [_coding(codes.DRUG_SYSTEM, treatment.drug)]
        if treatment.drug in codes.RXNORM_INGREDIENTS:
            coding.append(_coding(codes.RXNORM, codes.RXNORM_INGREDIENTS[treatment.drug]))
        period = {"start": treatment.start_date.isoformat()}
        if treatment.stop_date:
            period["end"] = treatment.stop_date.isoformat()
        extensions = [
            _extension(name.replace("_", "-"), "valueDate", day.isoformat())
            for name, day in (
                ("planned_stop_date", treatment.planned_stop_date),
                ("last_dose_date", treatment.last_dose_date),
            )
            if day is not None
        ]
        dosage: dict[str, Any] = {}
        if treatment.route:
            dosage["route"] = {
                "coding": [_coding(codes.ROUTE_SYSTEM, treatment.route)],
                "text": treatment.route,
            }
        if treatment.dose_mg is not None:
            dosage["doseAndRate"] = [{"doseQuantity": _quantity(treatment.dose_mg, "mg", "mg")}]
        if treatment.interval_days is not None:
            dosage["timing"] = {
                "repeat": {"frequency": 1, "period": treatment.interval_days, "periodUnit": "d"}
            }
        resource: dict[str, Any] = {
            "resourceType": "MedicationStatement",
            "status": _medication_status(treatment),
            "medicationCodeableConcept": {
                "coding": coding,
                "text": treatment.drug.replace("_", " "),
            },
            "subject": {"reference": subject},
            "effectivePeriod": period,
        }
        if extensions:
            resource["extension"] = extensions
        if dosage:
            resource["dosage"] = [dosage]
        self.add(f"treatment/{treatment.id}", resource)


def _device(scan: ScanRecord) -> dict[str, Any]:
    device: dict[str, Any] = {
        "resourceType": "Device",
        "manufacturer": codes.SCANNER_MAKERS[scan.scanner],
        "type": {"text": "DXA scanner"},
    }
    if scan.scanner_model:
        device["modelNumber"] = scan.scanner_model
    if scan.scanner_serial:
        device["serialNumber"] = scan.scanner_serial
    return device


def _component(code: str, value: float | bool) -> dict[str, Any]:
    component: dict[str, Any] = {"code": {"coding": [_coding(codes.DXA_SYSTEM, code)]}}
    if isinstance(value, bool):
        component["valueBoolean"] = value
    elif code == "tbs":
        component["valueQuantity"] = _quantity(value, "1", "1")
    else:
        measure = code.split("_", 1)[1]
        ucum = codes.MEASURE_UNITS[measure]
        component["valueQuantity"] = _quantity(value, ucum.strip("{}"), ucum)
    return component


def _medication_status(treatment: TreatmentRecord) -> str:
    if treatment.stop_date is not None:
        return "completed"
    return "intended" if treatment.start_date > date.today() else "active"


def export_patient(
    session: RegistrySession, patient_id: int, mrn_system: str = codes.MRN_SYSTEM
) -> dict[str, Any]:
    """The patient's chart as a FHIR R4 Bundle (JSON-ready dict), validated with fhir.resources.

    Risk factors, assessments and precision studies are not exported.
    """
    chart = session.chart(patient_id)
    exporter = _Exporter(chart, mrn_system)
    subject = exporter.patient()
    exporter.body(subject)
    for scan in chart.scans:
        exporter.scan(subject, scan)
    for lab in chart.labs:
        exporter.lab(subject, lab)
    for treatment in chart.treatments:
        exporter.treatment(subject, treatment)
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": datetime.now().astimezone().isoformat(timespec="seconds"),
        "entry": exporter.entries,
    }
    exported: dict[str, Any] = Bundle.model_validate(bundle).model_dump(mode="json")
    return exported


# --- import ---------------------------------------------------------------------------------


class _Entry:
    """One resource of the Bundle being imported, with the label the report uses for it."""

    def __init__(self, index: int, entry: Mapping[str, Any]) -> None:
        self.resource: dict[str, Any] = entry["resource"]
        self.type: str = self.resource["resourceType"]
        self.full_url: str | None = entry.get("fullUrl")
        resource_id = self.resource.get("id")
        self.local = f"{self.type}/{resource_id}" if resource_id else None
        self.label = self.local or f"entry[{index}] ({self.type})"

    def codings(self, key: str = "code") -> set[tuple[str, str]]:
        concept = self.resource.get(key) or {}
        return {(c.get("system", ""), c.get("code", "")) for c in concept.get("coding", [])}

    def extension(self, name: str) -> Any:
        return extension_value(self.resource, name)

    def effective_date(self) -> str | None:
        value = self.resource.get("effectiveDateTime") or (
            self.resource.get("effectivePeriod") or {}
        ).get("start")
        return str(value)[:10] if value else None


class _Bundle:
    """The entries of a validated Bundle, with reference resolution."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.entries = [_Entry(i, entry) for i, entry in enumerate(data.get("entry", []))]
        self._by_ref: dict[str, _Entry] = {}
        for entry in self.entries:
            for key in (entry.full_url, entry.local):
                if key:
                    self._by_ref[key] = entry

    def resolve(self, reference: Mapping[str, Any] | None) -> _Entry | None:
        """The entry a Reference points to (by fullUrl, ``Type/id`` or an URL ending in it)."""
        ref = (reference or {}).get("reference")
        if not ref:
            return None
        return self._by_ref.get(ref) or self._by_ref.get("/".join(ref.split("/")[-2:]))

    def of_type(self, resource_type: str) -> Iterator[_Entry]:
        return (entry for entry in self.entries if entry.type == resource_type)


def _problem(field: str, message: str) -> FieldProblem:
    return FieldProblem(field=field, message=message)


def _quantity_value(
    element: Mapping[str, Any], field: str = "valueQuantity"
) -> tuple[Any, str | None]:
    """(value, UCUM code or else unit text) of a Quantity element."""
    quantity = element.get(field) or {}
    return quantity.get("value"), quantity.get("code") or quantity.get("unit")


class _Importer:
    """Plans the writes of one Bundle (see :mod:`bonecast.registry.importing`)."""

    def __init__(self, bundle: _Bundle, mrn_system: str) -> None:
        self.bundle = bundle
        self.mrn_system = mrn_system
        self.planned: list[PlannedWrite] = []
        self.problems: list[FieldProblem] = []
        self.ignored: list[str] = []
        self.patient: _Entry | None = None

    def plan(self) -> None:
        patients = list(self.bundle.of_type("Patient"))
        if len(patients) != 1:
            self.problems.append(
                _problem("entry", f"the Bundle needs exactly one Patient, not {len(patients)}")
            )
            return
        self.patient = patients[0]
        body: dict[str, float] = {}
        scans: dict[str, list[_Entry]] = defaultdict(list)
        undated: list[_Entry] = []
        for entry in self.bundle.entries:
            if entry.type == "Observation":
                kind = self._observation_kind(entry)
                if kind == "dxa":
                    day = entry.effective_date()
                    (scans[day] if day else undated).append(entry)
                elif kind == "lab":
                    self._plan_lab(entry)
                elif kind in ("weight_kg", "height_cm"):
                    self._read_body(entry, kind, body)
                else:
                    self.ignored.append(f"{entry.label}: no code bonecast uses")
            elif entry.type == "MedicationStatement":
                self._plan_treatment(entry)
            elif entry.type not in ("Patient", "Device", "Organization"):
                self.ignored.append(f"{entry.label}: {entry.type} is not imported")
        for entry in undated:
            self._invalid(entry, "scan", _problem("effectiveDateTime", "required"))
        self.planned.insert(0, self._plan_patient(self.patient, body))
        for day, entries in sorted(scans.items()):
            self._plan_scan(day, entries)

    def _invalid(self, entry: _Entry, entity: str, *problems: FieldProblem) -> None:
        self.planned.append(PlannedWrite(entry.label, entity, problems=list(problems)))

    def _observation_kind(self, entry: _Entry) -> str | None:
        for system, code in entry.codings():
            if system == codes.DXA_SYSTEM or (
                system == codes.LOINC
                and (code in codes.DXA_BY_LOINC or code == codes.DXA_PANEL_LOINC)
            ):
                return "dxa"
            if system == codes.LAB_SYSTEM or (
                system == codes.LOINC and any(c.loinc == code for c in codes.LAB_CODES)
            ):
                return "lab"
            if (system, code) == (codes.LOINC, codes.BODY_WEIGHT_LOINC):
                return "weight_kg"
            if (system, code) == (codes.LOINC, codes.BODY_HEIGHT_LOINC):
                return "height_cm"
        return None

    def _subject_problems(self, entry: _Entry, key: str = "subject") -> list[FieldProblem]:
        if self.bundle.resolve(entry.resource.get(key)) is not self.patient:
            return [_problem(key, "must refer to the Bundle's Patient")]
        return []

    def _read_body(self, entry: _Entry, field: str, body: dict[str, float]) -> None:
        value, unit = _quantity_value(entry.resource)
        expected = "kg" if field == "weight_kg" else "cm"
        if unit != expected:
            self._invalid(entry, "patient", _problem("valueQuantity", f"unit must be {expected}"))
        elif not self._subject_problems(entry):
            body[field] = value

    # patient

    def _plan_patient(self, entry: _Entry, body: dict[str, float]) -> PlannedWrite:
        resource = entry.resource
        plan = PlannedWrite(entry.label, "patient")
        identifiers = resource.get("identifier", [])
        chosen = [i for i in identifiers if i.get("system") == self.mrn_system] or identifiers
        if len(chosen) != 1 or not chosen[0].get("value"):
            plan.problems.append(
                _problem("identifier", f"give one identifier with system {self.mrn_system}")
            )
            return plan
        name = (resource.get("name") or [{}])[0]
        data = {
            "mrn": chosen[0]["value"],
            "family_name": name.get("family"),
            "given_name": " ".join(name.get("given", [])) or None,
            **patient_demographics(resource),
            **body,
        }
        try:
            patient = PatientIn.model_validate(data)
        except ValidationError as error:
            renamed = {"birth_date": "birthDate", "sex": "gender", "mrn": "identifier"}
            plan.problems += [
                _problem(renamed.get(p.field, p.field), p.message) for p in field_problems(error)
            ]
            return plan

        def write(session: RegistrySession, refs: Refs) -> int:
            existing = session.find_patient(patient.mrn)
            if existing is None:
                refs["patient"] = session.create_patient(patient).id
            elif (existing.birth_date, existing.sex) != (patient.birth_date, patient.sex):
                raise ConflictError(
                    "a registered patient has this MRN but another birth date or sex",
                    "identifier",
                )
            else:
                plan.notes.append("already registered: the records are added to this patient")
                refs["patient"] = existing.id
            return refs["patient"]

        plan.write = write
        return plan

    # scans

    def _plan_scan(self, day: str, entries: list[_Entry]) -> None:
        plan = PlannedWrite(f"scan of {day} ({', '.join(e.label for e in entries)})", "scan")
        self.planned.append(plan)
        sites: dict[str, dict[str, Any]] = defaultdict(dict)
        extras: dict[str, Any] = {}
        scanners: set[tuple[Any, ...]] = set()
        facilities: set[str | None] = set()
        for entry in entries:
            problems = self._subject_problems(entry)
            problems += self._read_dxa(entry, sites, extras)
            scanner, problem = self._scanner(entry)
            if problem:
                problems.append(problem)
            else:
                scanners.add(scanner)
            performer = self.bundle.resolve((entry.resource.get("performer") or [None])[0])
            facilities.add(performer.resource.get("name") if performer else None)
            plan.problems += [_problem(f"{entry.label}.{p.field}", p.message) for p in problems]
        if len(scanners) > 1 or len(facilities) > 1:
            plan.problems.append(
                _problem("device", "the observations of one date name different scanners or sites")
            )
        if plan.problems:
            return
        maker, model, serial = scanners.pop()
        data = {
            "scan_date": day,
            "scanner": maker,
            "scanner_model": model,
            "scanner_serial": serial,
            "facility": facilities.pop(),
            "sites": sites,
            **extras,
        }
        try:
            scan = ScanIn.model_validate(data)
        except ValidationError as error:
            plan.problems += field_problems(error)
            return
        plan.write = lambda session, refs: session.add_scan(_patient_id(refs), scan).id

    def _read_dxa(
        self, entry: _Entry, sites: dict[str, dict[str, Any]], extras: dict[str, Any]
    ) -> list[FieldProblem]:
        problems = []
        key = dxa_site_measure(entry.resource)
        if key is not None:
            site, measure = key
            value, unit = _quantity_value(entry.resource)
            unit_problem = dxa_unit_problem(measure, unit)
            if unit_problem:
                problems.append(_problem("valueQuantity", unit_problem))
            elif value is None:
                problems.append(_problem("valueQuantity", "a value is required"))
            elif measure in sites[site]:
                problems.append(_problem("code", f"a second {site} {measure} on this date"))
            else:
                sites[site][measure] = value
        for component in entry.resource.get("component", []):
            for coding in component.get("code", {}).get("coding", []):
                if coding.get("system") != codes.DXA_SYSTEM:
                    continue
                name = coding.get("code", "")
                value = component.get("valueBoolean", _quantity_value(component)[0])
                if name == "tbs":
                    extras["tbs"] = value
                elif name[:2] in VERTEBRAE:
                    vertebra, _, field = name.partition("_")
                    extras.setdefault("vertebrae", {}).setdefault(vertebra, {})[field] = value
        return problems

    def _scanner(self, entry: _Entry) -> tuple[tuple[Any, ...], FieldProblem | None]:
        device = self.bundle.resolve(entry.resource.get("device"))
        if device is None:
            return (), _problem("device", "refer to the Device (DXA scanner) of the Bundle")
        manufacturer = str(device.resource.get("manufacturer", ""))
        words = re.findall(r"[a-z]+", manufacturer.lower())
        makers = {codes.SCANNER_WORDS[w] for w in words if w in codes.SCANNER_WORDS}
        if len(makers) != 1:
            accepted = ", ".join(codes.SCANNER_MAKERS.values())
            return (), _problem(
                "device", f"manufacturer {manufacturer!r} of {device.label}; accepted: {accepted}"
            )
        model = device.resource.get("modelNumber")
        return (makers.pop(), model, device.resource.get("serialNumber")), None

    # labs

    def _plan_lab(self, entry: _Entry) -> None:
        plan = PlannedWrite(entry.label, "lab", problems=self._subject_problems(entry))
        self.planned.append(plan)
        value, unit = _quantity_value(entry.resource)
        ucum_to_unit = {ucum: unit for unit, ucum in codes.LAB_UCUM.items()}
        marker = None
        for system, code in sorted(entry.codings(), key=lambda c: c[0] != codes.LAB_SYSTEM):
            if system == codes.LAB_SYSTEM:
                marker = code
                break
            for lab_code in codes.LAB_CODES:
                if system == codes.LOINC and lab_code.loinc == code:
                    marker = lab_code.marker
                    if code in codes.LEGACY_LAB_LOINC:
                        plan.notes.append(f"legacy LOINC {code} read as {marker}")
        data = {
            "sample_date": entry.effective_date(),
            "marker": marker,
            "value": value,
            "unit": ucum_to_unit.get(unit or "", unit),
            "assay": (entry.resource.get("method") or {}).get("text"),
        }
        try:
            lab = LabIn.model_validate(data)
        except ValidationError as error:
            plan.problems += [
                _problem(_LAB_FIELDS.get(p.field, p.field), p.message)
                for p in field_problems(error)
            ]
            return
        if not plan.problems:
            plan.write = lambda session, refs: session.add_lab(_patient_id(refs), lab).id

    # treatments

    def _plan_treatment(self, entry: _Entry) -> None:
        resource = entry.resource
        plan = PlannedWrite(entry.label, "treatment", problems=self._subject_problems(entry))
        self.planned.append(plan)
        dosage, problems = medication_dosage(resource)
        plan.problems += [_problem(field, message) for field, message in problems]
        data = {
            "drug": medication_drug(resource),
            **dosage,
            "start_date": entry.effective_date(),
            "stop_date": (resource.get("effectivePeriod") or {}).get("end"),
            "planned_stop_date": entry.extension("planned-stop-date"),
            "last_dose_date": entry.extension("last-dose-date"),
        }
        try:
            treatment = TreatmentIn.model_validate(data)
        except ValidationError as error:
            plan.problems += [
                _problem(_TREATMENT_FIELDS.get(p.field, p.field), p.message)
                for p in field_problems(error)
            ]
            return
        if not plan.problems:
            plan.write = lambda session, refs: (
                session.add_treatment(_patient_id(refs), treatment).id
            )


def _patient_id(refs: Refs) -> int:
    """The id of the Bundle's patient, written first."""
    if "patient" not in refs:
        raise RegistryError("the Bundle's Patient could not be imported", "subject")
    return refs["patient"]


def _parse(bundle: Mapping[str, Any] | str) -> tuple[dict[str, Any] | None, list[FieldProblem]]:
    try:
        data = json.loads(bundle) if isinstance(bundle, str) else dict(bundle)
    except json.JSONDecodeError as error:
        return None, [_problem("", f"not valid JSON: {error}")]
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        return None, [_problem("resourceType", "the file must be a FHIR Bundle")]
    try:
        validated: dict[str, Any] = Bundle.model_validate(data).model_dump(mode="json")
    except ValidationError as error:
        return None, [
            _problem(p.field, p.message.removeprefix("Value error, "))
            for p in field_problems(error)
        ]
    except (KeyError, ValueError) as error:  # fhir.resources: an unknown resourceType
        return None, [_problem("entry", f"not a FHIR R4 resource type: {error}")]
    return validated, []


def import_bundle(
    registry: Registry,
    bundle: Mapping[str, Any] | str,
    *,
    actor: str,
    source: str = "<upload>",
    mrn_system: str = codes.MRN_SYSTEM,
) -> ImportReport:
    """Import a FHIR R4 Bundle (JSON text or decoded) as ``actor``: all of it, or nothing."""
    data, problems = _parse(bundle)
    if data is None:
        return run_import(registry, actor, source, FORMAT, [], problems)
    importer = _Importer(_Bundle(data), mrn_system)
    importer.plan()
    report = run_import(
        registry, actor, source, FORMAT, importer.planned, [*problems, *importer.problems]
    )
    return report.model_copy(update={"ignored": importer.ignored})
