"""The repository: patients, scans, labs, treatments, risk factors, precision studies and
stored assessments, read back as written, corrected, and refused when invalid or duplicated."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from registry_samples import lab_in, patient_in, scan_in, treatment_in

from bonecast.clinical import assess, load_patient, lsc_table
from bonecast.clinical.patient import RiskFactors
from bonecast.registry import (
    ConflictError,
    InvalidInputError,
    LabIn,
    NotFoundError,
    PatientIn,
    PatientRecord,
    PrecisionStudyIn,
    Registry,
    RiskFactorsIn,
    ScanIn,
    TreatmentIn,
    parse,
)

EXAMPLE_PATIENT = Path(__file__).parents[2] / "examples" / "patients" / "contract_example.json"


def problems_of(error: pytest.ExceptionInfo[ValidationError]) -> dict[str, str]:
    """{field path: message} of a validation error, as the registry reports it."""
    return {
        str(p.field): p.message for p in InvalidInputError.from_validation(error.value).problems
    }


# --- patients -----------------------------------------------------------------------------


def test_a_patient_reads_back_as_registered(registry: Registry, patient: PatientRecord) -> None:
    with registry.session() as session:
        stored = session.get_patient(patient.id)
        found = session.find_patient(" BC-0001 ")

    assert stored == patient == found
    assert stored.model_dump(include=set(PatientIn.model_fields)) == patient_in().model_dump()


def test_updating_a_patient_replaces_its_values(registry: Registry, patient: PatientRecord) -> None:
    with registry.session("alice") as session:
        session.update_patient(patient.id, patient_in(weight_kg=58.5, family_name="Smith"))
    with registry.session() as session:
        stored = session.get_patient(patient.id)

    assert (stored.weight_kg, stored.family_name, stored.mrn) == (58.5, "Smith", "BC-0001")
    assert stored.updated_at >= patient.updated_at


def test_patients_are_listed_by_name_and_found_by_part_of_mrn_or_name(registry: Registry) -> None:
    with registry.session("alice") as session:
        for mrn, family in (("BC-0003", "Zeta"), ("BC-0001", "Alpha"), ("XY-9", "Mid")):
            session.create_patient(patient_in(mrn=mrn, family_name=family))
    with registry.session() as session:
        everyone = [p.family_name for p in session.list_patients()]
        bc = [p.mrn for p in session.list_patients(search="bc-")]
        by_name = [p.mrn for p in session.list_patients(search="ZET")]
        page = [p.family_name for p in session.list_patients(limit=1, offset=1)]

    assert everyone == ["Alpha", "Mid", "Zeta"]
    assert bc == ["BC-0001", "BC-0003"]
    assert by_name == ["BC-0003"]
    assert page == ["Mid"]


def test_a_second_patient_with_the_same_mrn_is_refused_and_nothing_written(
    registry: Registry, patient: PatientRecord
) -> None:
    with pytest.raises(ConflictError) as error, registry.session("alice") as session:
        session.create_patient(patient_in(mrn="BC-0002"))
        session.create_patient(patient_in(family_name="Other"))

    assert error.value.field == "mrn"
    with registry.session() as session:
        assert [p.mrn for p in session.list_patients()] == ["BC-0001"]


def test_unknown_ids_raise_not_found(registry: Registry) -> None:
    with registry.session("alice") as session:
        with pytest.raises(NotFoundError, match="no patient 999"):
            session.get_patient(999)
        with pytest.raises(NotFoundError, match="no scan 5"):
            session.correct_scan(5, scan_in())
        with pytest.raises(NotFoundError):
            session.add_lab(999, lab_in())


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"sex": "male"}, "menopausal_status", "only for women"),
        ({"birth_date": "2015-01-01"}, "birth_date", "(adults)"),
        ({"birth_date": "1899-12-31"}, "birth_date", "is outside 1900-01-01 to"),
        ({"weight_kg": 400}, "weight_kg", "400 is outside 20-300 kg"),
        ({"mrn": "  "}, "mrn", "at least 1 character"),
        ({"ethnicity": "martian"}, "ethnicity", "'white_or_not_recorded'"),
    ],
)
def test_invalid_patients_name_the_field_and_what_is_accepted(
    changes: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as error:
        patient_in(**changes)

    assert message in problems_of(error)[field]


def test_parse_turns_form_data_into_input_or_lists_every_bad_field() -> None:
    assert parse(PatientIn, patient_in().model_dump()) == patient_in()
    with pytest.raises(InvalidInputError) as error:
        parse(PatientIn, {"mrn": "A", "sex": "other", "nickname": "x"})

    assert {p.field for p in error.value.problems} == {"birth_date", "sex", "nickname"}
    assert "unknown field" in str(error.value)


# --- scans --------------------------------------------------------------------------------


def test_a_scan_reads_back_with_sites_vertebrae_tbs_and_facility(
    registry: Registry, patient: PatientRecord
) -> None:
    with registry.session("alice") as session:
        created = session.add_scan(patient.id, scan_in())
    with registry.session() as session:
        (stored,) = session.list_scans(patient.id)

    assert stored == created
    assert stored.model_dump(exclude={"id", "patient_id"}) == scan_in().model_dump()
    assert stored.vertebrae["L3"].excluded and stored.tbs == 1.28


def test_correcting_a_scan_replaces_its_values(registry: Registry, patient: PatientRecord) -> None:
    with registry.session("alice") as session:
        scan = session.add_scan(patient.id, scan_in())
        corrected = scan_in(
            scanner="lunar",
            facility="Another clinic",
            sites={"lumbar_spine": {"bmd_g_cm2": 0.95, "t_score": -1.1}},
            vertebrae={},
            tbs=None,
        )
        session.correct_scan(scan.id, corrected)
    with registry.session() as session:
        (stored,) = session.list_scans(patient.id)

    assert stored.id == scan.id
    assert stored.model_dump(exclude={"id", "patient_id"}) == corrected.model_dump()


def test_two_scans_on_one_date_are_refused_but_a_correction_may_keep_its_date(
    registry: Registry, patient: PatientRecord
) -> None:
    with registry.session("alice") as session:
        first = session.add_scan(patient.id, scan_in())
        second = session.add_scan(patient.id, scan_in(scan_date="2026-03-01"))
        session.correct_scan(first.id, scan_in(tbs=1.3))
        with pytest.raises(ConflictError, match="already has a scan on 2025-03-02") as error:
            session.correct_scan(second.id, scan_in())

    assert error.value.field == "scan_date"


def test_deleting_a_scan_removes_it(registry: Registry, patient: PatientRecord) -> None:
    with registry.session("alice") as session:
        scan = session.add_scan(patient.id, scan_in())
        session.delete_scan(scan.id)
    with registry.session() as session:
        assert session.list_scans(patient.id) == []


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"sites": {"lumbar_spine": {"bmd_g_cm2": 2.4}}},
            "sites.lumbar_spine.bmd_g_cm2",
            "2.4 is outside 0.2-2.0 g/cm2",
        ),
        (
            {"sites": {"total_hip": {"t_score": -7}}},
            "sites.total_hip.t_score",
            "-7 is outside -6..+6",
        ),
        (
            {"sites": {"radius": {"t_score": -1}}},
            "sites.radius",
            "unknown site 'radius'; accepted: lumbar_spine, total_hip, femoral_neck",
        ),
        ({"sites": {}}, "sites", "give at least one of the sites"),
        ({"sites": {"total_hip": {}}}, "sites.total_hip", "give bmd_g_cm2, t_score or z_score"),
        ({"vertebrae": {"L5": {"t_score": -1}}}, "vertebrae.L5", "unknown vertebra 'L5'"),
        ({"scan_date": date.today() + timedelta(days=3)}, "scan_date", "is in the future"),
        ({"scanner": "siemens"}, "scanner", "'hologic', 'lunar' or 'norland'"),
        ({"tbs": 2.5}, "tbs", "2.5 is outside 0.5-2.0"),
    ],
)
def test_invalid_scans_name_the_field_and_what_is_accepted(
    changes: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as error:
        scan_in(**changes)

    assert message in problems_of(error)[field]


# --- labs and treatments ------------------------------------------------------------------


def test_labs_read_back_in_date_order_and_by_marker(
    registry: Registry, patient: PatientRecord
) -> None:
    with registry.session("alice") as session:
        later = session.add_lab(patient.id, lab_in(sample_date="2025-09-01", value=0.2))
        earlier = session.add_lab(patient.id, lab_in())
        vitamin_d = session.add_lab(
            patient.id, lab_in(marker="vitamin_d_25oh", value=62, unit="nmol/L", assay=None)
        )
        session.correct_lab(later.id, lab_in(sample_date="2025-09-01", value=0.25))
    with registry.session() as session:
        ctx = session.list_labs(patient.id, marker="ctx")
        everything = session.list_labs(patient.id)

    assert [(lab.id, lab.value) for lab in ctx] == [(earlier.id, 0.42), (later.id, 0.25)]
    assert {lab.id for lab in everything} == {earlier.id, later.id, vitamin_d.id}


def test_one_result_per_marker_and_sample_date(registry: Registry, patient: PatientRecord) -> None:
    with registry.session("alice") as session:
        session.add_lab(patient.id, lab_in())
        session.add_lab(patient.id, lab_in(marker="p1np", value=48.0))
        with pytest.raises(ConflictError, match="already has a ctx result of 2025-03-02"):
            session.add_lab(patient.id, lab_in(value=0.5))


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"marker": "ferritin"}, "marker", "unknown marker 'ferritin'; accepted: ctx, p1np"),
        ({"unit": "mmol/L"}, "unit", "'mmol/L' is not a unit of ctx; accepted: ng/mL, ug/L"),
        ({"value": 0}, "value", "greater than 0"),
        ({"sample_date": "2999-01-01"}, "sample_date", "2999-01-01 is in the future"),
    ],
)
def test_invalid_labs_name_the_field_and_what_is_accepted(
    changes: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as error:
        lab_in(**changes)

    assert message in problems_of(error)[field]


def test_a_treatment_is_recorded_then_stopped(registry: Registry, patient: PatientRecord) -> None:
    with registry.session("alice") as session:
        treatment = session.add_treatment(patient.id, treatment_in())
        session.add_treatment(
            patient.id, TreatmentIn(drug="denosumab", start_date=date(2025, 4, 15))
        )
        session.correct_treatment(treatment.id, treatment_in(stop_date="2025-10-01"))
    with registry.session() as session:
        anastrozole, denosumab = session.list_treatments(patient.id)

    assert anastrozole.id == treatment.id and anastrozole.stop_date == date(2025, 10, 1)
    assert (denosumab.drug, denosumab.route, denosumab.dose_mg) == ("denosumab", None, None)
    with registry.session("alice") as session, pytest.raises(ConflictError):
        session.add_treatment(patient.id, treatment_in(dose_mg=2.0))


def test_a_planned_treatment_may_start_in_the_future() -> None:
    start = date.today() + timedelta(days=30)
    assert treatment_in(start_date=start, planned_stop_date=None).start_date == start


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"drug": "fulvestrant"}, "drug", "unknown drug 'fulvestrant'; accepted: anastrozole"),
        ({"route": "iv"}, "route", "anastrozole is given oral, not iv"),
        ({"stop_date": "2025-01-01"}, "stop_date", "2025-01-01 is before start_date 2025-04-01"),
        ({"dose_mg": -1}, "dose_mg", "greater than 0"),
        ({"last_dose_date": "2999-01-01"}, "last_dose_date", "is in the future"),
    ],
)
def test_invalid_treatments_name_the_field_and_what_is_accepted(
    changes: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as error:
        treatment_in(**changes)

    assert message in problems_of(error)[field]


def test_an_error_rolls_back_the_whole_session(registry: Registry) -> None:
    with pytest.raises(ConflictError), registry.session("alice") as session:
        created = session.create_patient(patient_in())
        session.add_scan(created.id, scan_in())
        session.add_scan(created.id, scan_in())

    with registry.session() as session:
        assert session.list_patients() == []
        assert session.audit_log() == []


# --- risk factors, precision, assessments -------------------------------------------------


def test_risk_factors_are_recorded_and_replaced(registry: Registry, patient: PatientRecord) -> None:
    first = RiskFactorsIn(
        recorded_on=date(2025, 3, 2),
        factors=RiskFactors(current_smoker=True, alcohol_units_per_day=1.0),
    )
    second = RiskFactorsIn(
        recorded_on=date(2025, 9, 1), factors=RiskFactors(fragility_fracture_after_50=True)
    )
    with registry.session("alice") as session:
        assert session.get_risk_factors(patient.id) is None
        session.set_risk_factors(patient.id, first)
        session.set_risk_factors(patient.id, second)
    with registry.session() as session:
        stored = session.get_risk_factors(patient.id)
        chart = session.chart(patient.id)

    assert stored is not None and stored.factors == second.factors
    assert stored.recorded_on == date(2025, 9, 1)
    assert chart.risk_factors == stored


def test_the_latest_precision_study_gives_the_lsc_of_the_facility(registry: Registry) -> None:
    site = {
        "n_patients": 30,
        "degrees_of_freedom": 30,
        "rms_sd_g_cm2": 0.01,
        "rms_cv_pct": 1.0,
        "lsc_g_cm2": 0.0277,
        "lsc_pct": 2.77,
    }
    study = {
        "facility": "Example Hospital DXA unit",
        "scanner": "hologic",
        "scanner_serial": "HZ12345",
        "study_date": "2024-01-10",
        "sites": {"lumbar_spine": site, "total_hip": site},
    }
    newer = study | {
        "study_date": "2025-01-10",
        "sites": {"lumbar_spine": site | {"lsc_g_cm2": 0.03, "lsc_pct": 3.0}},
    }
    with registry.session("alice") as session:
        session.add_precision_study(PrecisionStudyIn.model_validate(study))
        session.add_precision_study(PrecisionStudyIn.model_validate(newer))
        session.add_precision_study(
            PrecisionStudyIn.model_validate(newer | {"facility": "Elsewhere"})
        )
    with registry.session() as session:
        listed = session.list_precision_studies("Example Hospital DXA unit")
        latest = session.latest_precision("Example Hospital DXA unit", "HZ12345")
        none = session.latest_precision("Example Hospital DXA unit", "OTHER")

    assert [s.study_date for s in listed] == [date(2025, 1, 10), date(2024, 1, 10)]
    assert none == {}
    lsc = lsc_table(latest)
    assert lsc["lumbar_spine"].facility_study and lsc["lumbar_spine"].lsc_g_cm2 == 0.03
    assert not lsc["total_hip"].facility_study


def test_a_stored_assessment_keeps_recommendation_guideline_version_and_author(
    registry: Registry, patient: PatientRecord
) -> None:
    assessment = assess(load_patient(EXAMPLE_PATIENT))
    with registry.session("dr.jones") as session:
        stored = session.store_assessment(patient.id, assessment)
    with registry.session() as session:
        (listed,) = session.list_assessments(patient.id)

    assert listed == stored
    assert listed.created_by == "dr.jones"
    assert (listed.guideline, listed.guideline_version) == (
        assessment.guideline.name,
        assessment.guideline.version,
    )
    assert listed.rule_id == assessment.recommendation.rule_id
    assert listed.start_bone_protective_therapy == (
        assessment.recommendation.start_bone_protective_therapy
    )
    assert listed.result == assessment.model_dump(mode="json")


def test_a_chart_holds_everything_in_date_order(registry: Registry, patient: PatientRecord) -> None:
    with registry.session("alice") as session:
        session.add_scan(patient.id, scan_in(scan_date="2026-03-01"))
        session.add_scan(patient.id, scan_in())
        session.add_lab(patient.id, lab_in())
        session.add_treatment(patient.id, treatment_in())
    with registry.session() as session:
        chart = session.chart(patient.id)

    assert chart.patient == patient
    assert [s.scan_date for s in chart.scans] == [date(2025, 3, 2), date(2026, 3, 1)]
    assert len(chart.labs) == len(chart.treatments) == 1
    assert isinstance(chart.scans[0], ScanIn) and isinstance(chart.labs[0], LabIn)
