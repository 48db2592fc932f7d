"""Bone turnover markers: reference intervals, real change and response
(docs/clinical/markers.md section 5).

Per marker (s-CTX, s-PINP, BALP, u-NTX/Cr), from the patient's labs in canonical units:

* the latest value against the assay-specific reference interval of the patient's population
  (``data/markers.yaml``; no interval without a known assay: intervals are assay-specific);
* % change from baseline and whether it reaches the marker's LSC (30 % by default). Baseline is
  the last value on or before the start of the current antiresorptive, or the first value when
  none is taken; both values must come from the same assay;
* on an antiresorptive, the response verdict: ``too_early`` before 3 months, else ``responder``
  when the fall reaches the LSC or the value lies below the middle of the premenopausal reference
  interval (our reading of "below the premenopausal mean": the intervals carry no means), else
  ``non_responder``. Values after 6 months are judged with a note (the window is 3-6 months).

The overall response is ``responder`` if any marker responds, ``non_responder`` if at least one
was judged and none responds (our choice: CTX and PINP fall by different amounts on
bisphosphonates, and either criterion is accepted).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bonecast.clinical._data import Sourced, SourcedNumber, read_data
from bonecast.clinical.patient import DAYS_PER_MONTH, Lab, lab_tests

Population = Literal["premenopausal_women", "postmenopausal_women", "men"]
Verdict = Literal["responder", "non_responder", "too_early"]


class ReferenceInterval(Sourced):
    """An assay-specific reference interval (canonical unit of the marker)."""

    marker: str
    assay: str
    population: Population
    ages: str
    low: float
    high: float


class ResponseWindow(BaseModel):
    """When after the start of an antiresorptive the response is judged (months)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    earliest: SourcedNumber
    latest: SourcedNumber


class MarkerData(BaseModel):
    """Everything in ``data/markers.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lsc_pct: dict[str, SourcedNumber]
    response_window_months: ResponseWindow
    reference_intervals: list[ReferenceInterval]


@cache
def marker_data() -> MarkerData:
    """Marker LSCs, response window and reference intervals (cached; immutable)."""
    return MarkerData.model_validate(read_data("markers.yaml"))


MARKERS: tuple[str, ...] = tuple(marker_data().lsc_pct)
"""The bone turnover markers evaluated (lab test names)."""


def reference_interval(
    marker: str, assay: str | None, population: Population
) -> ReferenceInterval | None:
    """The stored interval for a marker, assay and population, if any."""
    for interval in marker_data().reference_intervals:
        if (interval.marker, interval.assay, interval.population) == (marker, assay, population):
            return interval
    return None


class MarkerResult(BaseModel):
    """One marker's latest value, change and verdict."""

    model_config = ConfigDict(frozen=True)

    marker: str
    unit: str
    assay: str | None
    latest_value: float
    latest_date: date
    reference_interval: ReferenceInterval | None
    within_reference: bool | None
    baseline_value: float | None = None
    baseline_date: date | None = None
    pct_change: float | None = None
    lsc_pct: float
    significant: bool | None = None
    verdict: Verdict | None = None
    notes: list[str] = Field(default_factory=list)


class MarkerSummary(BaseModel):
    """All markers of a patient and the overall response to an antiresorptive."""

    model_config = ConfigDict(frozen=True)

    results: list[MarkerResult] = Field(default_factory=list)
    response: Literal["responder", "non_responder"] | None = None
    antiresorptive_start: date | None = None


def _verdict(
    marker: str,
    latest: Lab,
    pct: float | None,
    lsc_pct: float,
    antiresorptive_start: date | None,
    notes: list[str],
) -> Verdict | None:
    if antiresorptive_start is None or latest.date <= antiresorptive_start:
        return None
    window = marker_data().response_window_months
    months = (latest.date - antiresorptive_start).days / DAYS_PER_MONTH
    if months < window.earliest.value:
        return "too_early"
    if months > window.latest.value:
        notes.append(f"judged {months:.0f} months after the start (window 3-6 months)")
    target = reference_interval(marker, latest.assay, "premenopausal_women")
    below_target = target is not None and latest.canonical_value < (target.low + target.high) / 2
    return "responder" if below_target or (pct is not None and pct <= -lsc_pct) else "non_responder"


def evaluate_marker(
    marker: str,
    labs: Sequence[Lab],
    population: Population,
    antiresorptive_start: date | None,
) -> MarkerResult:
    """Evaluate one marker from its results (at least one, any order)."""
    ordered = sorted(labs, key=lambda lab: lab.date)
    latest = ordered[-1]
    before_start = [
        lab for lab in ordered if antiresorptive_start and lab.date <= antiresorptive_start
    ]
    baseline = before_start[-1] if before_start else ordered[0]
    lsc = marker_data().lsc_pct[marker].value
    notes: list[str] = []
    interval = reference_interval(marker, latest.assay, population)
    if latest.assay is None:
        notes.append("assay not given: reference intervals are assay-specific")
    pct = None
    if baseline is not latest:
        if baseline.assay != latest.assay:
            notes.append(
                f"baseline on assay {baseline.assay}, latest on {latest.assay}: not compared"
            )
        else:
            pct = (
                100 * (latest.canonical_value - baseline.canonical_value) / baseline.canonical_value
            )
    value = latest.canonical_value
    return MarkerResult(
        marker=marker,
        unit=lab_tests()[marker]["canonical_unit"],
        assay=latest.assay,
        latest_value=value,
        latest_date=latest.date,
        reference_interval=interval,
        within_reference=None if interval is None else interval.low <= value <= interval.high,
        baseline_value=None if pct is None else baseline.canonical_value,
        baseline_date=None if pct is None else baseline.date,
        pct_change=pct,
        lsc_pct=lsc,
        significant=None if pct is None else abs(pct) >= lsc,
        verdict=_verdict(marker, latest, pct, lsc, antiresorptive_start, notes),
        notes=notes,
    )


def evaluate_markers(
    labs: Sequence[Lab], population: Population, antiresorptive_start: date | None
) -> MarkerSummary:
    """Every turnover marker present in ``labs``, and the overall response."""
    results = [
        evaluate_marker(marker, found, population, antiresorptive_start)
        for marker in MARKERS
        if (found := [lab for lab in labs if lab.test == marker])
    ]
    verdicts = {result.verdict for result in results}
    response: Literal["responder", "non_responder"] | None = (
        "responder"
        if "responder" in verdicts
        else "non_responder"
        if "non_responder" in verdicts
        else None
    )
    return MarkerSummary(
        results=results, response=response, antiresorptive_start=antiresorptive_start
    )
