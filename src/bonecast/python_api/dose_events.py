"""Per-patient dosing records, in the style of NONMEM/mrgsolve event tables.

Each row is one dose (or, with ``interval`` and ``additional``, a run of regular doses) given to
one patient: ``id``, ``time``, ``drug``, ``amount`` (mg), optional ``route``, ``interval``
(time between doses, 0 = a single dose), ``additional`` (doses after the first, like NONMEM's
ADDL) and ``rate`` (mg per time unit; 0 = bolus). ``time`` and ``interval`` are in days or
hours (``time_unit``). Column names are case-insensitive, and the NONMEM/mrgsolve names
``amt``, ``ii`` and ``addl`` are accepted for ``amount``, ``interval`` and ``additional``.

Choices: the integrator adds doses at the start of a model day, so dose times are rounded to
the nearest day (an infusion must end within one day); an exposure drug (aromatase inhibitor,
tamoxifen, goserelin, testosterone) is represented at its standard dose only, and a run of its
doses is the period ``[time, time + (additional + 1) * interval)`` on the drug. Records are
doses actually given: no adherence model applies to them (oral absorption still varies per
dose, docs/model/numerics.md section 9).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bonecast.python_api.populations import _describe
from bonecast.simulation.drugs import DRUGS, Route
from bonecast.simulation.model import DAYS_PER_MONTH
from bonecast.simulation.regimens import Treatment

if TYPE_CHECKING:
    import pandas as pd

TimeUnit = Literal["days", "hours"]
HOURS_PER_DAY = 24.0
ALIASES = {"amt": "amount", "ii": "interval", "addl": "additional"}
"""NONMEM/mrgsolve column names and the names they stand for."""
MAX_DOSES_PER_ROW = 100_000
"""Upper bound of ``additional`` + 1 (a daily drug for 270 years)."""


class DoseRow(BaseModel):
    """One row of a :class:`DoseEvents` table, times in the table's unit."""

    model_config = ConfigDict(extra="forbid")

    id: int = Field(ge=0)
    time: float = Field(ge=0, allow_inf_nan=False)
    drug: str
    amount: float = Field(gt=0, allow_inf_nan=False)
    route: Route | None = None
    interval: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    additional: int = Field(default=0, ge=0, le=MAX_DOSES_PER_ROW - 1)
    rate: float = Field(default=0.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _consistent(self) -> DoseRow:
        if self.drug not in DRUGS:
            raise ValueError(f"drug: unknown drug {self.drug!r}; accepted: {', '.join(DRUGS)}")
        if self.additional > 0 and self.interval == 0:
            raise ValueError("interval: additional doses need an interval > 0")
        return self


@dataclass(frozen=True)
class DoseEvents:
    """Dosing records per patient (see the module docstring for the columns and units)."""

    rows: tuple[DoseRow, ...]
    time_unit: TimeUnit = "days"

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, time_unit: TimeUnit = "days") -> DoseEvents:
        """Records from a table with the columns of the module docstring (``route``,
        ``interval``, ``additional`` and ``rate`` optional). A bad cell raises ``ValueError``
        naming the row and the column."""
        return cls.from_records(frame.to_dict(orient="records"), time_unit)

    @classmethod
    def from_records(
        cls, records: Sequence[dict[str, Any]], time_unit: TimeUnit = "days"
    ) -> DoseEvents:
        """Records from a list of mappings (keys: the table's columns)."""
        if time_unit not in ("days", "hours"):
            raise ValueError(f"time_unit: 'days' or 'hours', not {time_unit!r}")
        rows = []
        for k, record in enumerate(records):
            clean = {
                ALIASES.get(str(key).lower(), str(key).lower()): value
                for key, value in record.items()
                if not (isinstance(value, float) and math.isnan(value))
            }
            try:
                rows.append(DoseRow.model_validate(clean))
            except ValidationError as error:
                raise ValueError(_describe(error, f"dose row {k}")) from None
        events = cls(tuple(rows), time_unit)
        for k, row in enumerate(rows):
            try:
                events._treatment(row)
            except (ValueError, ValidationError) as error:
                text = (
                    _describe(error, f"dose row {k}")
                    if isinstance(error, ValidationError)
                    else f"dose row {k}: {error}"
                )
                raise ValueError(text) from None
        return events

    def __add__(self, other: DoseEvents) -> DoseEvents:
        if other.time_unit != self.time_unit:
            scale = HOURS_PER_DAY if self.time_unit == "hours" else 1.0 / HOURS_PER_DAY
            moved = tuple(
                r.model_copy(
                    update={
                        "time": r.time * scale,
                        "interval": r.interval * scale,
                        "rate": r.rate / scale,
                    }
                )
                for r in other.rows
            )
            return DoseEvents(self.rows + moved, self.time_unit)
        return DoseEvents(self.rows + other.rows, self.time_unit)

    @property
    def patient_ids(self) -> set[int]:
        """Ids of the patients with at least one record."""
        return {r.id for r in self.rows}

    def _days(self, value: float) -> float:
        return value / HOURS_PER_DAY if self.time_unit == "hours" else value

    def _treatment(self, row: DoseRow) -> Treatment:
        """The record as a treatment of the regimen compiler (times snapped to whole days)."""
        drug = DRUGS[row.drug]
        if row.rate > 0 and self._days(row.amount / row.rate) > 1.0:
            raise ValueError("rate: an infusion must end within one day (the model's dose step)")
        start = round(self._days(row.time))
        interval = self._days(row.interval)
        doses = row.additional + 1
        if doses > 1 and interval < 1.0:
            raise ValueError("interval: at least one day between doses (the model's dose step)")
        if drug.is_exposure:
            if interval == 0:
                interval = drug.regimens[0].interval_days
            stop = round(start + doses * interval)
        else:
            interval = interval or 1.0
            stop = round(start + (doses - 1) * interval) + 1
        return Treatment(
            drug=row.drug,
            dose_mg=row.amount,
            interval_days=interval,
            route=row.route,
            start_month=start / DAYS_PER_MONTH,
            stop_month=max(stop, start + 1) / DAYS_PER_MONTH,
        )

    def treatments_by_patient(self) -> dict[int, tuple[Treatment, ...]]:
        """Each patient's records as treatments, in time order."""
        out: dict[int, list[Treatment]] = {}
        for row in sorted(self.rows, key=lambda r: (r.id, r.time)):
            out.setdefault(row.id, []).append(self._treatment(row))
        return {pid: tuple(ts) for pid, ts in out.items()}
