"""CSV import: the example files go in whole; a file with any bad row is rejected whole, every bad
row and column listed, and nothing written."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from registry_samples import patient_in

from bonecast.registry import PatientRecord, Registry, csv_io
from bonecast.registry.csv_io import csv_columns, import_csv, import_csv_file
from bonecast.simulation import DRUGS

SCAN_HEADER = "mrn,scan_date,scanner,lumbar_spine_bmd_g_cm2,lumbar_spine_t_score,L2_excluded"


@pytest.fixture
def two_patients(registry: Registry) -> dict[str, PatientRecord]:
    """BC-0001 and BC-0002, the patients of the example files."""
    with registry.session("alice") as session:
        return {mrn: session.create_patient(patient_in(mrn=mrn)) for mrn in ("BC-0001", "BC-0002")}


def counts(registry: Registry, patients: dict[str, PatientRecord]) -> tuple[int, int, int, int]:
    """(scans, labs, treatments, audit entries) in the registry."""
    with registry.session() as session:
        charts = [session.chart(p.id) for p in patients.values()]
        return (
            sum(len(c.scans) for c in charts),
            sum(len(c.labs) for c in charts),
            sum(len(c.treatments) for c in charts),
            len(session.audit_log(limit=10_000)),
        )


def test_the_example_files_import_whole(
    registry: Registry, two_patients: dict[str, PatientRecord], examples: Path
) -> None:
    reports = {
        kind: import_csv_file(registry, kind, examples / f"{kind}.csv", actor="importer")
        for kind in ("scans", "labs", "treatments")
    }

    assert all(report.accepted for report in reports.values())
    assert {k: len(r.created()) for k, r in reports.items()} == {
        "scans": 3,
        "labs": 5,
        "treatments": 3,
    }
    assert [item.item for item in reports["scans"].items] == ["line 2", "line 3", "line 4"]
    with registry.session() as session:
        first, _ = session.list_scans(two_patients["BC-0001"].id)
        vitamin_d = session.list_labs(two_patients["BC-0001"].id, marker="vitamin_d_25oh")
    assert first.id == reports["scans"].created("scan")[0]
    assert first.sites["lumbar_spine"].bmd_g_cm2 == 0.912
    assert first.vertebrae["L3"].excluded and first.vertebrae["L1"].t_score == -1.2
    assert (first.facility, first.scanner_model, first.tbs) == (
        "Example Hospital DXA unit",
        "Horizon A",
        1.28,
    )
    assert (vitamin_d[0].value, vitamin_d[0].unit) == (62.0, "nmol/L")


def test_a_file_with_bad_rows_is_rejected_whole_with_every_problem_listed(
    registry: Registry, two_patients: dict[str, PatientRecord]
) -> None:
    text = "\n".join(
        [
            SCAN_HEADER,
            "BC-0001,2025-03-02,hologic,0.912,-1.4,",  # fine
            "BC-0001,2025-13-02,hologic,2.4,-1.4,",  # bad date, BMD out of range
            "BC-0002,2025-03-02,ge,0.9,-9,maybe",  # scanner, T-score, boolean
            ",2025-03-02,hologic,0.9,,",  # no MRN
            "BC-0002,2025-04-01,hologic,,,",  # no site at all
        ]
    )
    before = counts(registry, two_patients)

    report = import_csv(registry, "scans", text, actor="importer", source="scans.csv")

    assert not report.accepted
    assert [(i.item, i.status) for i in report.items] == [
        ("line 2", "valid"),
        ("line 3", "invalid"),
        ("line 4", "invalid"),
        ("line 5", "invalid"),
        ("line 6", "invalid"),
    ]
    bad = {(i.item, p.field) for i in report.items for p in i.problems}
    assert bad == {
        ("line 3", "scan_date"),
        ("line 3", "lumbar_spine_bmd_g_cm2"),
        ("line 4", "scanner"),
        ("line 4", "lumbar_spine_t_score"),
        ("line 4", "L2_excluded"),
        ("line 5", "mrn"),
        ("line 6", "sites"),
    }
    assert "line 3: lumbar_spine_bmd_g_cm2: 2.4 is outside 0.2-2.0 g/cm2" in report.error_lines()
    assert report.created() == []
    assert counts(registry, two_patients) == before


def test_rows_that_clash_with_the_registry_or_each_other_reject_the_file(
    registry: Registry, two_patients: dict[str, PatientRecord]
) -> None:
    import_csv(
        registry,
        "labs",
        "mrn,sample_date,marker,value,unit\nBC-0001,2025-03-02,ctx,0.42,ng/mL",
        actor="importer",
    )
    before = counts(registry, two_patients)
    text = "\n".join(
        [
            "mrn,sample_date,marker,value,unit,assay",
            "BC-0002,2025-03-02,p1np,48,ng/mL,roche_elecsys",  # fine
            "BC-0001,2025-03-02,ctx,0.50,ng/mL,",  # already in the registry
            "BC-0002,2025-03-02,p1np,49,ng/mL,",  # twice in the file
            "BC-9999,2025-03-02,ctx,0.3,ng/mL,",  # unknown patient
            "BC-0002,2025-03-02,ctx,0.3,mmol/L,",  # wrong unit
        ]
    )

    report = import_csv(registry, "labs", text, actor="importer")

    assert not report.accepted
    assert {(i.item, p.field) for i in report.items for p in i.problems} == {
        ("line 3", "sample_date"),
        ("line 4", "sample_date"),
        ("line 5", "mrn"),
        ("line 6", "unit"),
    }
    assert counts(registry, two_patients) == before


def test_treatment_rows_are_checked_against_the_drug_catalogue(
    registry: Registry, two_patients: dict[str, PatientRecord]
) -> None:
    text = (
        "mrn,drug,route,start_date,stop_date\n"
        "BC-0001,anastrozole,oral,2025-04-01,\n"
        "BC-0001,fulvestrant,,2025-04-01,\n"
        "BC-0002,letrozole,iv,2025-04-01,2025-01-01\n"
    )

    report = import_csv(registry, "treatments", text, actor="importer")

    assert not report.accepted
    assert report.error_lines() == [
        "line 3: drug: unknown drug 'fulvestrant'; accepted: " + ", ".join(DRUGS),
        "line 4: route: letrozole is given oral, not iv",
        "line 4: stop_date: 2025-01-01 is before start_date 2025-04-01",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "mrn,scan_date,lumbar_spine_bmd\nBC-0001,2025-03-02,0.9",
            ["scanner: required column missing", "lumbar_spine_bmd: unknown column; accepted: "],
        ),
        (SCAN_HEADER + "\n", ["the file has no data rows"]),
        (
            SCAN_HEADER + ",scanner\nBC-0001,2025-03-02,hologic,0.9,,,hologic",
            ["scanner: column given twice"],
        ),
    ],
)
def test_file_level_problems_reject_the_file(
    registry: Registry, text: str, expected: list[str]
) -> None:
    report = import_csv(registry, "scans", text, actor="importer")

    assert not report.accepted and report.items == []
    lines = report.error_lines()
    assert len(lines) == len(expected)
    assert all(line.startswith(start) for line, start in zip(lines, expected, strict=True))


def test_a_row_with_more_cells_than_columns_is_invalid(
    registry: Registry, two_patients: dict[str, PatientRecord]
) -> None:
    text = "mrn,sample_date,marker,value,unit\nBC-0001,2025-03-02,ctx,0.42,ng/mL,extra\n"

    report = import_csv(registry, "labs", text, actor="importer")

    assert report.error_lines() == ["line 2: more cells than columns"]


def test_a_byte_order_mark_and_blank_rows_are_tolerated(
    registry: Registry, two_patients: dict[str, PatientRecord]
) -> None:
    text = "\ufeffmrn,sample_date,marker,value,unit\n,,,,\nBC-0001,2025-03-02,ctx,0.42,ng/mL\n"

    report = import_csv(registry, "labs", text, actor="importer")

    assert report.accepted and [i.item for i in report.items] == ["line 3"]
    with registry.session() as session:
        (lab,) = session.list_labs(two_patients["BC-0001"].id)
    assert (lab.sample_date, lab.value) == (date(2025, 3, 2), 0.42)


def test_every_layout_column_is_documented_in_the_example_or_docstring(examples: Path) -> None:
    for kind in ("scans", "labs", "treatments"):
        header = (examples / f"{kind}.csv").read_text().splitlines()[0].split(",")
        assert set(header) <= set(csv_columns(kind))
        assert csv_io.__doc__ is not None and f'kind="{kind}"' in csv_io.__doc__
