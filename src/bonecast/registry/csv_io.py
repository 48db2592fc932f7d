"""CSV import of scans, labs and treatments, all or nothing, with a row-level report.

Files are UTF-8 (a byte-order mark is allowed), comma-separated, with a header line. Each row
names its patient by ``mrn`` (the patient must be registered already). An empty cell means "not
given"; a missing optional column too. Unknown columns are refused (a misspelt column would
otherwise be silently ignored). Values are validated like the registry's input
(:mod:`bonecast.registry.schemas`): a bad value names its row (the file's line number, the header
being line 1), its column and what is accepted. **If any row is invalid, nothing is written.**

Scans (``kind="scans"``, one row per visit; examples/registry/scans.csv)::

    mrn, scan_date, scanner                          required; scanner: hologic | lunar | norland
    scanner_model, scanner_serial, facility, tbs     optional
    {site}_bmd_g_cm2, {site}_t_score, {site}_z_score for site in lumbar_spine, total_hip,
                                                     femoral_neck; at least one site per row
    {L1..L4}_bmd_g_cm2, {L1..L4}_t_score, {L1..L4}_excluded   optional, per vertebra

Labs (``kind="labs"``; examples/registry/labs.csv)::

    mrn, sample_date, marker, value, unit            required (marker and unit: labs.yaml)
    assay                                            optional

Treatments (``kind="treatments"``; examples/registry/treatments.csv)::

    mrn, drug, start_date                            required (drug: the simulation catalogue)
    dose_mg, route, interval_days, stop_date, planned_stop_date, last_dose_date   optional

Dates are ISO (``2025-03-02``); booleans ``true``/``false`` (also ``yes``/``no``, ``1``/``0``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from bonecast.registry.errors import FieldProblem, NotFoundError, field_problems
from bonecast.registry.importing import ImportReport, PlannedWrite, Refs, run_import
from bonecast.registry.repository import Registry, RegistrySession
from bonecast.registry.schemas import VERTEBRAE, LabIn, ScanIn, TreatmentIn
from bonecast.simulation import SITES

Kind = Literal["scans", "labs", "treatments"]
_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True)
class _Layout(Generic[_M]):
    """A CSV layout: each column's place in the input model, and how a row is stored."""

    entity: str
    model: type[_M]
    columns: dict[str, tuple[str, ...]]
    required: tuple[str, ...]
    add: Callable[[RegistrySession, int, _M], BaseModel]

    @property
    def column_by_field(self) -> dict[str, str]:
        return {".".join(path): column for column, path in self.columns.items()}


def _flat(*names: str) -> dict[str, tuple[str, ...]]:
    return {name: (name,) for name in names}


def _nested(
    group: str, keys: tuple[str, ...], fields: tuple[str, ...]
) -> dict[str, tuple[str, ...]]:
    return {f"{key}_{name}": (group, key, name) for key in keys for name in fields}


LAYOUTS: dict[Kind, _Layout[Any]] = {
    "scans": _Layout(
        "scan",
        ScanIn,
        {
            **_flat("scan_date", "scanner", "scanner_model", "scanner_serial", "facility", "tbs"),
            **_nested("sites", SITES, ("bmd_g_cm2", "t_score", "z_score")),
            **_nested("vertebrae", VERTEBRAE, ("bmd_g_cm2", "t_score", "excluded")),
        },
        ("mrn", "scan_date", "scanner"),
        lambda session, patient_id, scan: session.add_scan(patient_id, scan),
    ),
    "labs": _Layout(
        "lab",
        LabIn,
        _flat("sample_date", "marker", "value", "unit", "assay"),
        ("mrn", "sample_date", "marker", "value", "unit"),
        lambda session, patient_id, lab: session.add_lab(patient_id, lab),
    ),
    "treatments": _Layout(
        "treatment",
        TreatmentIn,
        _flat(
            "drug",
            "dose_mg",
            "route",
            "interval_days",
            "start_date",
            "stop_date",
            "planned_stop_date",
            "last_dose_date",
        ),
        ("mrn", "drug", "start_date"),
        lambda session, patient_id, treatment: session.add_treatment(patient_id, treatment),
    ),
}
"""The three layouts (see the module docstring)."""


def csv_columns(kind: Kind) -> list[str]:
    """Every column a ``kind`` file may have, ``mrn`` first (for templates and help text)."""
    return ["mrn", *LAYOUTS[kind].columns]


def _header_problems(layout: _Layout[Any], header: list[str]) -> list[FieldProblem]:
    known = ["mrn", *layout.columns]
    problems = [
        FieldProblem(field=column, message="required column missing")
        for column in layout.required
        if column not in header
    ]
    problems += [
        FieldProblem(field=column, message=f"unknown column; accepted: {', '.join(known)}")
        for column in header
        if column not in known
    ]
    problems += [
        FieldProblem(field=column, message="column given twice")
        for column in sorted({c for c in header if header.count(c) > 1})
    ]
    return problems


def _row_input(layout: _Layout[Any], row: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for column, value in row.items():
        if column == "mrn" or not value.strip():
            continue
        *parents, name = layout.columns[column]
        target = data
        for parent in parents:
            target = target.setdefault(parent, {})
        target[name] = value.strip()
    return data


def _as_column(layout: _Layout[Any], problem: FieldProblem) -> FieldProblem:
    """Name a model field by its column (``sites.total_hip.t_score`` -> ``total_hip_t_score``)."""
    column = layout.column_by_field.get(problem.field)
    if column is None:
        column = problem.field.removeprefix("sites.").removeprefix("vertebrae.")
    return FieldProblem(field=column, message=problem.message)


def _plan_row(layout: _Layout[Any], line: int, row: dict[str, str]) -> PlannedWrite:
    plan = PlannedWrite(item=f"line {line}", entity=layout.entity)
    mrn = row.get("mrn", "").strip()
    if not mrn:
        plan.problems.append(FieldProblem(field="mrn", message="required"))
    try:
        record = layout.model.model_validate(_row_input(layout, row))
    except ValidationError as error:
        plan.problems += [_as_column(layout, p) for p in field_problems(error)]
        return plan

    def write(session: RegistrySession, _refs: Refs) -> int:
        patient = session.find_patient(mrn)
        if patient is None:
            raise NotFoundError("patient with MRN", mrn, field="mrn")
        created: Any = layout.add(session, patient.id, record)
        return int(created.id)

    plan.write = write
    return plan


def import_csv(
    registry: Registry, kind: Kind, text: str, *, actor: str, source: str = "<upload>"
) -> ImportReport:
    """Import CSV ``text`` of ``kind`` (scans, labs or treatments) as ``actor``, all or nothing."""
    layout = LAYOUTS[kind]
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")), restkey="\0", restval="")
    header = [name.strip() for name in reader.fieldnames or []]
    reader.fieldnames = header
    problems = _header_problems(layout, header)
    planned: list[PlannedWrite] = []
    if not problems:
        for row in reader:
            if "\0" in row:
                planned.append(
                    PlannedWrite(
                        item=f"line {reader.line_num}",
                        entity=layout.entity,
                        problems=[FieldProblem(field="", message="more cells than columns")],
                    )
                )
            elif any(value.strip() for value in row.values()):
                planned.append(_plan_row(layout, reader.line_num, row))
        if not planned:
            problems.append(FieldProblem(field="", message="the file has no data rows"))
    return run_import(registry, actor, source, f"csv-{kind}", planned, problems)


def import_csv_file(
    registry: Registry, kind: Kind, path: str | Path, *, actor: str
) -> ImportReport:
    """Import a CSV file (see :func:`import_csv`)."""
    path = Path(path)
    return import_csv(
        registry, kind, path.read_text(encoding="utf-8-sig"), actor=actor, source=path.name
    )
