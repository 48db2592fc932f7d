"""When the next DXA is due (docs/clinical/aibl-algorithm.md section 1.6 and
docs/clinical/scores.md section 3.3)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from bonecast.clinical import load_rule_set, months_to_detect
from bonecast.clinical.monitoring import MonitoringContext, next_dxa

SETTINGS = load_rule_set("aibl-2025").setting_values()
AS_OF = date(2026, 1, 15)


def _context(**changes: Any) -> MonitoringContext:
    values: dict[str, Any] = {
        "as_of": AS_OF,
        "scan_dates": [date(2025, 12, 1)],
        "ai_start": date(2026, 1, 1),
        "bta_start": None,
        "denosumab_last_dose": None,
        "expected_loss_pct_per_year": 2.5,
        "lsc_pct": 5.3,
    }
    return MonitoringContext(**(values | changes))


@pytest.mark.parametrize(
    ("lsc", "expected", "months"),
    [
        (5.3, 2.5, 24),
        (5.3, 8.0, 12),
        (5.3, 4.0, 16),
        (3.0, -3.0, 12),
        (5.3, None, 24),
        (5.3, 0.0, 24),
    ],
)
def test_months_to_detect_is_kept_within_12_to_24(
    lsc: float, expected: float | None, months: int
) -> None:
    assert months_to_detect(lsc, expected, 12, 24) == months


def test_no_bmd_means_dxa_now() -> None:
    dxa = next_dxa("get_dxa", SETTINGS, _context(scan_dates=[]))
    assert (dxa.months, dxa.counted_from, dxa.due) == (0, "assessment", AS_OF)


def test_first_follow_up_is_12_months_after_the_ai_start() -> None:
    dxa = next_dxa("monitor", SETTINGS, _context())
    assert (dxa.months, dxa.counted_from, dxa.due) == (12, "therapy_start", date(2027, 1, 1))


def test_after_a_follow_up_scan_the_interval_follows_the_expected_loss() -> None:
    scans = [date(2025, 12, 1), date(2027, 1, 5)]
    context = _context(as_of=date(2027, 2, 1), scan_dates=scans)
    postmenopausal = next_dxa("monitor", SETTINGS, context)
    assert (postmenopausal.months, postmenopausal.counted_from) == (24, "latest_scan")
    ofs = next_dxa(
        "monitor",
        SETTINGS,
        _context(as_of=date(2027, 2, 1), scan_dates=scans, expected_loss_pct_per_year=8.0),
    )
    assert (ofs.months, ofs.due) == (12, date(2028, 1, 5))


def test_new_bone_directed_therapy_starts_on_the_assessment_date() -> None:
    dxa = next_dxa("start_bta", SETTINGS, _context())
    assert (dxa.months, dxa.due) == (12, date(2027, 1, 15))


def test_on_therapy_with_follow_up_the_longest_interval() -> None:
    context = _context(scan_dates=[date(2023, 1, 1), date(2025, 12, 1)], bta_start=date(2023, 2, 1))
    dxa = next_dxa("start_bta", SETTINGS, context)
    assert (dxa.months, dxa.counted_from, dxa.due) == (24, "latest_scan", date(2027, 12, 1))


def test_overdue_scan_is_flagged() -> None:
    context = _context(
        as_of=date(2027, 6, 1), ai_start=date(2025, 1, 1), scan_dates=[date(2024, 12, 1)]
    )
    dxa = next_dxa("monitor", SETTINGS, context)
    assert dxa.due == date(2026, 1, 1) and dxa.overdue


def test_denosumab_transition_counts_from_the_follow_on() -> None:
    dxa = next_dxa("denosumab_transition", SETTINGS, _context(denosumab_last_dose=date(2025, 9, 1)))
    assert dxa.counted_from == "follow_on_start"
    assert dxa.due == date(2027, 3, 1)  # follow-on 2026-03-01, DXA 12 months later
    late = next_dxa(
        "denosumab_transition", SETTINGS, _context(denosumab_last_dose=date(2025, 1, 1))
    )
    assert late.due == date(2027, 1, 15)  # follow-on overdue: counted from today


def test_general_pathway_repeats_after_two_years() -> None:
    dxa = next_dxa("general_pathway", SETTINGS, _context())
    assert (dxa.months, dxa.due) == (24, date(2027, 12, 1))
    assert next_dxa("general_pathway", SETTINGS, _context(scan_dates=[])).months == 0
