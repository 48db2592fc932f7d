"""Bone turnover markers: reference intervals, real change and response
(docs/clinical/markers.md section 5)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from bonecast.clinical import evaluate_markers, reference_interval
from bonecast.clinical.patient import Lab

START = date(2025, 1, 1)


def _lab(
    day: str,
    value: float,
    test: str = "ctx",
    unit: str = "ng/mL",
    assay: str | None = "roche_elecsys",
) -> Lab:
    data: dict[str, Any] = {"date": day, "test": test, "value": value, "unit": unit, "assay": assay}
    return Lab.model_validate_json(json.dumps(data))


def test_reference_intervals_are_assay_and_population_specific() -> None:
    roche = reference_interval("ctx", "roche_elecsys", "premenopausal_women")
    ids = reference_interval("ctx", "ids_isys", "premenopausal_women")
    assert roche is not None and (roche.low, roche.high) == (0.111, 0.791)
    assert ids is not None and (ids.low, ids.high) == (0.05, 0.67)
    post = reference_interval("p1np", "ids_isys", "postmenopausal_women")
    assert post is not None and (post.low, post.high) == (18.2, 102.3)
    assert reference_interval("ctx", "roche_elecsys", "postmenopausal_women") is None
    assert reference_interval("ctx", None, "premenopausal_women") is None


def test_units_are_converted_before_comparison() -> None:
    summary = evaluate_markers([_lab("2025-03-01", 450, unit="pg/mL")], "premenopausal_women", None)
    (ctx,) = summary.results
    assert ctx.latest_value == pytest.approx(0.45) and ctx.unit == "ng/mL"
    assert ctx.within_reference is True


def test_change_without_antiresorptive_has_no_verdict() -> None:
    summary = evaluate_markers(
        [_lab("2024-01-01", 0.40), _lab("2025-01-01", 0.56)], "postmenopausal_women", None
    )
    (ctx,) = summary.results
    assert ctx.pct_change == pytest.approx(40.0)
    assert ctx.significant is True and ctx.verdict is None
    assert ctx.reference_interval is None  # no Roche postmenopausal interval stored
    assert summary.response is None


@pytest.mark.parametrize(
    ("baseline", "latest", "verdict"),
    [
        (0.80, 0.55, "responder"),  # -31 %: reaches the 30 % LSC
        (0.60, 0.44, "responder"),  # -27 %, but below the premenopausal midpoint 0.451
        (0.80, 0.60, "non_responder"),  # -25 % and above the midpoint
    ],
)
def test_response_to_an_antiresorptive(baseline: float, latest: float, verdict: str) -> None:
    labs = [_lab("2024-12-15", baseline), _lab("2025-05-01", latest)]
    summary = evaluate_markers(labs, "postmenopausal_women", START)
    assert summary.results[0].verdict == verdict
    assert summary.response == verdict


def test_too_early_to_judge_before_three_months() -> None:
    labs = [_lab("2024-12-15", 0.8), _lab("2025-02-15", 0.3)]
    assert evaluate_markers(labs, "postmenopausal_women", START).results[0].verdict == "too_early"


def test_late_value_is_judged_with_a_note() -> None:
    labs = [_lab("2024-12-15", 0.8), _lab("2025-10-01", 0.3)]
    (ctx,) = evaluate_markers(labs, "postmenopausal_women", START).results
    assert ctx.verdict == "responder"
    assert "window 3-6 months" in ctx.notes[0]


def test_baseline_is_the_last_value_before_the_start() -> None:
    labs = [_lab("2024-06-01", 1.2), _lab("2024-12-20", 0.8), _lab("2025-05-01", 0.5)]
    (ctx,) = evaluate_markers(labs, "postmenopausal_women", START).results
    assert ctx.baseline_date == date(2024, 12, 20)
    assert ctx.pct_change == pytest.approx(-37.5)


def test_values_from_different_assays_are_not_compared() -> None:
    labs = [_lab("2024-12-15", 0.8, assay="ids_isys"), _lab("2025-05-01", 0.7)]
    (ctx,) = evaluate_markers(labs, "postmenopausal_women", START).results
    assert ctx.pct_change is None and ctx.significant is None
    assert "not compared" in ctx.notes[0]
    assert ctx.verdict == "non_responder"  # 0.7 is above the Roche premenopausal midpoint


def test_any_responding_marker_makes_a_responder() -> None:
    labs = [
        _lab("2024-12-15", 0.8),
        _lab("2025-05-01", 0.4),
        _lab("2024-12-15", 60, test="p1np"),
        _lab("2025-05-01", 55, test="p1np"),
    ]
    summary = evaluate_markers(labs, "postmenopausal_women", START)
    assert [(r.marker, r.verdict) for r in summary.results] == [
        ("ctx", "responder"),
        ("p1np", "non_responder"),
    ]
    assert summary.response == "responder"


def test_other_labs_are_not_markers() -> None:
    labs = [_lab("2025-01-01", 30, test="vitamin_d_25oh", assay=None)]
    assert evaluate_markers(labs, "postmenopausal_women", None).results == []
