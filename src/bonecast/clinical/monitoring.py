"""When the next DXA is due (docs/clinical/aibl-algorithm.md section 1.6 and
docs/clinical/scores.md section 3.3); intervals are rule-set settings.

* no BMD (``get_dxa``): now;
* bone-directed therapy or AI monitoring: the first follow-up scan 12 months after the start of
  the therapy (a new therapy starts on the assessment date) or of the AI; once a follow-up scan
  exists (one later than the baseline window after the start), the interval that lets the
  expected change exceed the lumbar-spine LSC, ``12 x LSC% / |expected %/year|``, kept within
  12-24 months. On therapy no fixed rate is assumed (the forecast module will supply one), so the
  interval is the longest, 24 months;
* a transition from denosumab: 12 months after the follow-on bisphosphonate, which starts 6
  months after the last injection (or on the assessment date if that has passed);
* general osteoporosis pathway: 24 months after the latest scan (ASCO 2019 deferral branch).
"""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bonecast.clinical.guidelines import Decision

CountedFrom = Literal["assessment", "latest_scan", "therapy_start", "follow_on_start"]


class NextDxa(BaseModel):
    """The next DXA: ``months`` after ``counted_from`` (a date), due on ``due``."""

    model_config = ConfigDict(frozen=True)

    months: int
    counted_from: CountedFrom
    due: date
    overdue: bool
    reason: str


@dataclass(frozen=True)
class MonitoringContext:
    """What the schedule depends on besides the decision."""

    as_of: date
    scan_dates: Sequence[date]
    ai_start: date | None
    bta_start: date | None
    denosumab_last_dose: date | None
    expected_loss_pct_per_year: float | None
    lsc_pct: float


def add_months(day: date, months: int) -> date:
    """``day`` plus whole calendar months (the day kept, or the month's last day)."""
    year, month = divmod(day.year * 12 + day.month - 1 + months, 12)
    return date(year, month + 1, min(day.day, monthrange(year, month + 1)[1]))


def months_to_detect(
    lsc_pct: float, expected_change_pct_per_year: float | None, min_months: float, max_months: float
) -> int:
    """Months until the expected change reaches the LSC, within ``min_months``-``max_months``."""
    if not expected_change_pct_per_year:
        return round(max_months)
    months = 12 * lsc_pct / abs(expected_change_pct_per_year)
    return round(min(max(months, min_months), max_months))


def next_dxa(
    decision: Decision, settings: Mapping[str, float | bool], context: MonitoringContext
) -> NextDxa:
    """The next DXA for a guideline decision (``settings`` of the rule set that made it)."""
    as_of = context.as_of
    latest = max(context.scan_dates, default=None)

    def due(months: float, counted_from: CountedFrom, start: date, reason: str) -> NextDxa:
        day = add_months(start, round(months))
        return NextDxa(
            months=round(months),
            counted_from=counted_from,
            due=day,
            overdue=day < as_of,
            reason=reason,
        )

    def after_start(start: date, what: str, expected: float | None) -> NextDxa:
        window_end = add_months(start, round(settings["baseline_window_months"]))
        if latest is None or latest <= window_end:
            months = float(settings["first_followup_dxa_months"])
            return due(months, "therapy_start", start, f"first follow-up after the start of {what}")
        months = months_to_detect(
            context.lsc_pct,
            expected,
            float(settings["min_dxa_interval_months"]),
            float(settings["max_dxa_interval_months"]),
        )
        return due(months, "latest_scan", latest, f"expected change reaches the LSC on {what}")

    if decision == "get_dxa" or (decision == "general_pathway" and latest is None):
        return due(0, "assessment", as_of, "no BMD available: baseline DXA")
    if decision == "denosumab_transition":
        last = context.denosumab_last_dose or as_of
        start = max(add_months(last, round(settings["denosumab_follow_on_months"])), as_of)
        months = float(settings["denosumab_transition_dxa_months"])
        return due(months, "follow_on_start", start, "after the transition from denosumab")
    if decision == "start_bta":
        return after_start(context.bta_start or as_of, "bone-directed therapy", None)
    if decision == "monitor":
        return after_start(
            context.ai_start or as_of, "the aromatase inhibitor", context.expected_loss_pct_per_year
        )
    assert latest is not None
    months = float(settings["general_pathway_dxa_months"])
    return due(months, "latest_scan", latest, "general osteoporosis pathway")
