"""What CSV and FHIR imports share: the row-level report and the all-or-nothing transaction.

An import is planned first: the file is parsed and every row (or FHIR resource) validated into a
:class:`PlannedWrite`, which either carries its problems or a function that writes it. Then all
writes run in one registry session; a write may still fail (an unknown MRN, a duplicate scan),
which adds problems to its row. If any row or the file has a problem, the session is rolled back:
nothing is written, not even audit entries, and the report lists every problem. Otherwise it is
committed and the report gives the id of each created record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bonecast.registry.errors import FieldProblem, RegistryError
from bonecast.registry.repository import Registry, RegistrySession

Refs = dict[str, int]
"""Ids of records created earlier in the same import, by a key the planner chose."""
Write = Callable[[RegistrySession, Refs], int]
"""Writes one planned record and returns its id."""


@dataclass
class PlannedWrite:
    """One row or resource of an import: where it is, what it becomes, and how to write it."""

    item: str
    entity: str
    write: Write | None = None
    problems: list[FieldProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class ItemReport(BaseModel):
    """The outcome of one row (CSV line) or record (FHIR resources) of an import."""

    model_config = ConfigDict(frozen=True)

    item: str
    entity: str
    status: Literal["created", "valid", "invalid"]
    entity_id: int | None = None
    problems: list[FieldProblem] = []
    notes: list[str] = []


class ImportReport(BaseModel):
    """The row-level report of an import. ``accepted``: everything was written; otherwise nothing
    was, rows that were fine say ``valid`` and the others list their problems."""

    model_config = ConfigDict(frozen=True)

    source: str
    format: str
    accepted: bool
    items: list[ItemReport]
    problems: list[FieldProblem] = []
    ignored: list[str] = []

    def error_lines(self) -> list[str]:
        """Every problem as one line: ``line 3: lumbar_spine_bmd_g_cm2: 2.4 is outside ...``."""
        lines = [str(problem) for problem in self.problems]
        for item in self.items:
            lines += [f"{item.item}: {problem}" for problem in item.problems]
        return lines

    def created(self, entity: str | None = None) -> list[int]:
        """Ids of the records created (of one entity, e.g. ``"scan"``)."""
        return [
            item.entity_id
            for item in self.items
            if item.entity_id is not None and entity in (None, item.entity)
        ]


class _RejectedError(Exception):
    """Raised inside the import's session to roll it back."""


def run_import(
    registry: Registry,
    actor: str,
    source: str,
    format: str,
    planned: Sequence[PlannedWrite],
    problems: Sequence[FieldProblem] = (),
) -> ImportReport:
    """Write every planned record in one transaction, or none if anything is wrong."""
    ids: dict[int, int] = {}
    try:
        with registry.session(actor) as session:
            refs: Refs = {}
            for index, plan in enumerate(planned):
                if plan.write is None or plan.problems:
                    continue
                try:
                    ids[index] = plan.write(session, refs)
                except RegistryError as error:
                    plan.problems.append(error.problem())
            if problems or any(plan.problems for plan in planned):
                raise _RejectedError
        accepted = True
    except _RejectedError:
        accepted = False
    items = [
        ItemReport(
            item=plan.item,
            entity=plan.entity,
            status="invalid" if plan.problems else ("created" if accepted else "valid"),
            entity_id=ids.get(index) if accepted else None,
            problems=plan.problems,
            notes=plan.notes,
        )
        for index, plan in enumerate(planned)
    ]
    return ImportReport(
        source=source, format=format, accepted=accepted, items=items, problems=list(problems)
    )
