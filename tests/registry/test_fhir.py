"""FHIR R4: export validates and uses the codes of docs/clinical/interoperability.md section 6;
export then import gives the same records; foreign bundles import; a bad bundle is rejected whole
with every problem listed."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from registry_samples import lab_in, patient_in, scan_in, treatment_in

from bonecast.registry import PatientChart, PatientRecord, Registry, TreatmentIn, upgrade
from bonecast.registry import terminology as codes
from bonecast.registry.fhir import export_patient, import_bundle


@pytest.fixture
def full_chart(registry: Registry, patient: PatientRecord) -> PatientChart:
    """A patient with two scans (vertebrae, TBS, two scanners), labs and treatments."""
    with registry.session("alice") as session:
        session.add_scan(patient.id, scan_in())
        session.add_scan(
            patient.id,
            scan_in(
                scan_date="2026-03-01",
                scanner="lunar",
                scanner_model=None,
                scanner_serial=None,
                facility=None,
                sites={"femoral_neck": {"t_score": -1.9}},
                vertebrae={},
                tbs=None,
            ),
        )
        session.add_lab(patient.id, lab_in())
        session.add_lab(patient.id, lab_in(marker="calcium", value=2.35, unit="mmol/L"))
        session.add_lab(patient.id, lab_in(marker="ntx", value=40, unit="nmol BCE/mmol Cr"))
        session.add_lab(patient.id, lab_in(marker="egfr", value=78, unit="mL/min/1.73m2"))
        session.add_treatment(patient.id, treatment_in(stop_date="2025-10-01"))
        session.add_treatment(
            patient.id,
            TreatmentIn(
                drug="denosumab",
                dose_mg=60,
                route="sc",
                interval_days=182,
                start_date=date(2025, 4, 15),
                last_dose_date=date(2025, 10, 15),
            ),
        )
        session.add_treatment(patient.id, TreatmentIn(drug="goserelin", start_date="2025-01-01"))
        return session.chart(patient.id)


def contents(chart: PatientChart) -> dict[str, Any]:
    """The chart without what the registry assigns (ids, timestamps)."""
    data = chart.model_dump(exclude={"patient": {"id", "created_at", "updated_at"}})
    for kind in ("scans", "labs", "treatments"):
        for record in data[kind]:
            del record["id"], record["patient_id"]
    return data


def resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type
    ]


def codings(resource: dict[str, Any], key: str = "code") -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in resource[key]["coding"]}


def test_export_is_a_valid_bundle_with_loinc_and_rxnorm_codes(
    registry: Registry, full_chart: PatientChart
) -> None:
    with registry.session() as session:
        bundle = export_patient(session, full_chart.patient.id)

    Bundle.model_validate(bundle)
    (patient,) = resources(bundle, "Patient")
    assert patient["identifier"] == [{"system": codes.MRN_SYSTEM, "value": "BC-0001"}]
    observed = set().union(*(codings(o) for o in resources(bundle, "Observation")))
    for loinc in (
        "24966-4",
        "38267-1",
        "85394-5",
        "38261-4",
        "38264-8",
        "83311-1",
        "41171-0",
        "98979-8",
        "29463-7",
        "8302-2",
    ):
        assert (codes.LOINC, loinc) in observed
    assert (codes.LOINC, "17861-6") not in observed  # a mass term; this calcium is in mmol/L
    # the femoral neck is never under the generic "DXA Femur" terms, and says where it is
    assert not observed & {(codes.LOINC, c) for c in codes.LEGACY_FEMUR_LOINC.values()}
    sites = {
        (coding["system"], coding["code"]): o["bodySite"]["text"]
        for o in resources(bundle, "Observation")
        for coding in o.get("bodySite", {}).get("coding", [])
    }
    assert sites == {
        (codes.SNOMED, codes.FEMORAL_NECK_SNOMED): "femoral neck",
        (codes.SNOMED, codes.TOTAL_HIP_SNOMED): "total hip",
    }
    drugs = set().union(
        *(codings(m, "medicationCodeableConcept") for m in resources(bundle, "MedicationStatement"))
    )
    assert {(codes.RXNORM, "84857"), (codes.RXNORM, "993449")} <= drugs
    assert {d["manufacturer"] for d in resources(bundle, "Device")} == {"Hologic", "GE Lunar"}
    subject = bundle["entry"][0]["fullUrl"]
    assert all(o["subject"]["reference"] == subject for o in resources(bundle, "Observation"))


def test_export_then_import_gives_the_same_records(
    registry: Registry, full_chart: PatientChart, tmp_path: Path
) -> None:
    with registry.session() as session:
        bundle = json.dumps(export_patient(session, full_chart.patient.id))
    other = Registry(f"sqlite:///{tmp_path}/other.db")
    upgrade(other.engine)

    report = import_bundle(other, bundle, actor="importer", source="export.json")

    assert report.accepted, report.error_lines()
    assert report.ignored == []
    with other.session() as session:
        imported = session.chart(report.created("patient")[0])
    assert contents(imported) == contents(full_chart)


def test_importing_an_export_back_into_its_registry_is_refused_as_duplicates(
    registry: Registry, full_chart: PatientChart
) -> None:
    with registry.session() as session:
        bundle = export_patient(session, full_chart.patient.id)

    report = import_bundle(registry, bundle, actor="importer")

    assert not report.accepted
    assert all("already has" in line for line in report.error_lines())
    with registry.session() as session:
        assert contents(session.chart(full_chart.patient.id)) == contents(full_chart)


def foreign_bundle(**observation_changes: Any) -> dict[str, Any]:
    """A Bundle as another system might send it (docs/clinical/interoperability.md section 6.5's
    T-score Observation)."""
    t_score = {
        "resourceType": "Observation",
        "id": "dxa-fn-left-tscore-2025-03-04",
        "status": "final",
        "code": {"coding": [{"system": codes.LOINC, "code": "80948-3"}]},
        "subject": {"reference": "Patient/123"},
        "effectiveDateTime": "2025-03-04",
        "valueQuantity": {
            "value": -1.8,
            "unit": "T-score",
            "system": codes.UCUM,
            "code": "{T-Score}",
        },
        "device": {"reference": "Device/dxa-hologic-horizon-sn12345"},
        **observation_changes,
    }
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "id": "123",
                    "gender": "female",
                    "birthDate": "1958-07-01",
                    "identifier": [{"system": "urn:oid:1.2.3", "value": "H-77"}],
                }
            },
            {
                "resource": {
                    "resourceType": "Device",
                    "id": "dxa-hologic-horizon-sn12345",
                    "manufacturer": "Hologic, Inc.",
                    "serialNumber": "12345",
                }
            },
            {"resource": t_score},
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": "vitd",
                    "status": "final",
                    "code": {"coding": [{"system": codes.LOINC, "code": "1989-3"}]},
                    "subject": {"reference": "Patient/123"},
                    "effectiveDateTime": "2025-03-04T08:30:00+01:00",
                    "valueQuantity": {"value": 25, "unit": "ng/mL"},
                }
            },
            {
                "resource": {
                    "resourceType": "MedicationStatement",
                    "id": "ai",
                    "status": "active",
                    "medicationCodeableConcept": {
                        "coding": [{"system": codes.SNOMED, "code": "386911004"}]
                    },
                    "subject": {"reference": "Patient/123"},
                    "effectivePeriod": {"start": "2025-04-01"},
                    "dosage": [
                        {
                            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                            "doseAndRate": [{"doseQuantity": {"value": 2.5, "unit": "mg"}}],
                        }
                    ],
                }
            },
            {
                "resource": {
                    "resourceType": "Condition",
                    "id": "bc",
                    "subject": {"reference": "Patient/123"},
                }
            },
        ],
    }


def test_a_foreign_bundle_is_read_with_its_codes_mapped(registry: Registry) -> None:
    report = import_bundle(registry, foreign_bundle(), actor="importer")

    assert report.accepted, report.error_lines()
    assert report.ignored == ["Condition/bc: Condition is not imported"]
    assert any("legacy LOINC 1989-3" in note for item in report.items for note in item.notes)
    with registry.session() as session:
        chart = session.chart(report.created("patient")[0])
    assert (chart.patient.mrn, chart.patient.birth_date) == ("H-77", date(1958, 7, 1))
    (scan,) = chart.scans
    assert (scan.scan_date, scan.scanner, scan.scanner_serial) == (
        date(2025, 3, 4),
        "hologic",
        "12345",
    )
    assert scan.sites["femoral_neck"].t_score == -1.8
    (lab,) = chart.labs
    assert (lab.marker, lab.value, lab.sample_date) == ("vitamin_d_25oh", 25.0, date(2025, 3, 4))
    (treatment,) = chart.treatments
    assert (treatment.drug, treatment.dose_mg, treatment.interval_days) == ("letrozole", 2.5, 1.0)


def test_a_bundle_for_a_registered_patient_adds_to_it_if_birth_date_and_sex_agree(
    registry: Registry,
) -> None:
    with registry.session("alice") as session:
        session.create_patient(patient_in(mrn="H-77", birth_date="1958-07-01"))

    report = import_bundle(registry, foreign_bundle(), actor="importer")
    assert report.accepted and "already registered" in report.items[0].notes[0]

    with registry.session("alice") as session:
        session.create_patient(patient_in(mrn="H-78", birth_date="1970-01-01"))
    other = foreign_bundle()
    other["entry"][0]["resource"]["identifier"][0]["value"] = "H-78"
    report = import_bundle(registry, other, actor="importer")
    assert report.error_lines()[0].endswith(
        "identifier: a registered patient has this MRN but another birth date or sex"
    )


def test_a_bad_bundle_is_rejected_whole_with_every_problem_listed(registry: Registry) -> None:
    bundle = foreign_bundle(valueQuantity={"value": 0.9, "unit": "g/cm2", "code": "g/cm2"})
    entries = bundle["entry"]
    entries[1]["resource"]["manufacturer"] = "Acme"
    entries[3]["resource"]["valueQuantity"]["unit"] = "mmol/L"
    entries[4]["resource"]["medicationCodeableConcept"] = {"text": "fulvestrant"}
    entries[4]["resource"]["subject"] = {"reference": "Patient/other"}

    report = import_bundle(registry, bundle, actor="importer")

    assert not report.accepted
    lines = report.error_lines()
    assert len(lines) == 5, lines
    assert any(
        "valueQuantity: unit 'g/cm2' does not fit the code; expected {T-score}" in line
        for line in lines
    )
    assert any("manufacturer 'Acme'" in line for line in lines)
    assert any(
        "vitd: valueQuantity.unit: 'mmol/L' is not a unit of vitamin_d_25oh" in line
        for line in lines
    )
    assert any(
        "ai: medicationCodeableConcept: unknown drug 'fulvestrant'" in line for line in lines
    )
    assert any("ai: subject: must refer to the Bundle's Patient" in line for line in lines)
    assert report.items[0].status == "valid"  # the patient was fine, but nothing was written
    with registry.session() as session:
        assert session.list_patients() == []
        assert session.audit_log() == []


@pytest.mark.parametrize(
    ("bundle", "message"),
    [
        ("{not json", "not valid JSON"),
        ({"resourceType": "Patient"}, "resourceType: the file must be a FHIR Bundle"),
        (
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "Observation", "code": {"text": "x"}}}],
            },
            "entry.0.resource.status",
        ),
        (
            {"resourceType": "Bundle", "type": "collection", "entry": []},
            "entry: the Bundle needs exactly one Patient, not 0",
        ),
    ],
)
def test_files_that_are_not_usable_bundles_are_rejected(
    registry: Registry, bundle: Any, message: str
) -> None:
    report = import_bundle(registry, bundle, actor="importer")

    assert not report.accepted
    assert any(message in line for line in report.error_lines()), report.error_lines()
