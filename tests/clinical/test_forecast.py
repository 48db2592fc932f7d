"""Personal BMD forecast under alternative plans (bonecast.clinical.forecast; issue 4 item 6)."""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bonecast.cli import app
from bonecast.clinical import assess, parse_patient
from bonecast.clinical.forecast import (
    DEFAULT_AGENT,
    DEFAULT_TWINS,
    _plan_treatments,
    _simulate_runs,
    _twins,
    forecast,
)
from bonecast.clinical.scores import score_scan
from bonecast.simulation import default_parameter_set, parse_trial_spec, run_trial
from bonecast.simulation.parameters import start_parameter_set

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "patients"


def _patient(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def two_scans():
    patient = parse_patient(_patient("two_scans_significant_loss"))
    return patient, forecast(patient, assess(patient).recommendation.agents)


def _points(result, plan, site):
    return [p for p in result.points if p.plan == plan and p.site == site]


def test_three_plans_every_measured_site_yearly_with_bands(two_scans):
    _, result = two_scans
    assert [p.name for p in result.plans] == ["continue_ai", "ai_plus_agent", "stop_ai_as_planned"]
    for plan in result.plans:
        for site in ("lumbar_spine", "total_hip", "femoral_neck"):
            points = _points(result, plan.name, site)
            assert [p.month for p in points] == [0, 12, 24, 36, 48, 60]
            for p in points:
                assert p.bmd_low_g_cm2 <= p.bmd_g_cm2 <= p.bmd_high_g_cm2
                assert p.t_score_low <= p.t_score <= p.t_score_high


def test_every_plan_names_its_drugs_dose_route_interval_and_dates(two_scans):
    patient, result = two_scans
    plans = {p.name: p for p in result.plans}
    agent = assess(patient).recommendation.agents[0]
    added = [t for t in plans["ai_plus_agent"].treatments if t.drug == agent.drug]
    assert len(added) == 1
    assert (added[0].dose_mg, added[0].route, added[0].interval_days) == (
        agent.dose_mg,
        agent.route,
        agent.interval_days,
    )
    assert added[0].start_date == patient.as_of  # the agent starts today
    ai = {p: [t for t in plans[p].treatments if t.drug == "anastrozole"] for p in plans}
    assert ai["stop_ai_as_planned"][0].stop_date == date(2029, 3, 1)
    assert ai["continue_ai"][0].start_date == date(2024, 3, 1)
    # the assessment JSON carries them with their codes (machine output)
    doc = json.loads(result.model_dump_json())
    assert {"drug", "dose_mg", "route", "interval_days", "start_date", "stop_date"} <= set(
        doc["plans"][1]["treatments"][0]
    )


def test_plans_differ_in_the_expected_direction(two_scans):
    _, result = two_scans
    spine = {p.name: _points(result, p.name, "lumbar_spine") for p in result.plans}
    # adding the recommended agent protects the spine (year 3, while both are on the AI)
    assert spine["ai_plus_agent"][3].bmd_g_cm2 > spine["continue_ai"][3].bmd_g_cm2 + 0.01
    # stopping the AI at its planned date (2029-03) beats continuing it at year 5 (2030-03)
    assert spine["stop_ai_as_planned"][5].bmd_g_cm2 > spine["continue_ai"][5].bmd_g_cm2
    # before the planned stop the two are the same plan
    assert spine["stop_ai_as_planned"][2].bmd_g_cm2 == spine["continue_ai"][2].bmd_g_cm2


def test_every_scan_and_marker_conditions_and_narrows_the_band(two_scans):
    _, result = two_scans
    assert result.scans_conditioned_on == 2
    assert result.markers_conditioned_on == 2  # CTX on both scan dates, same assay
    # her follow-up scan and markers narrow the 5-year band at every site, compared with her
    # first scan alone on the same twins
    assert set(result.band_narrowing_pct) == {"lumbar_spine", "total_hip", "femoral_neck"}
    assert all(value > 0 for value in result.band_narrowing_pct.values())
    assert 20 <= result.effective_twins <= result.twins
    single = copy.deepcopy(_patient("two_scans_significant_loss"))
    single["scans"] = single["scans"][:1]
    single["labs"] = single["labs"][:1]
    alone = forecast(parse_patient(single), [])
    assert alone is not None
    assert alone.scans_conditioned_on == 1 and alone.markers_conditioned_on == 0
    assert alone.band_narrowing_pct == dict.fromkeys(result.band_narrowing_pct, 0.0)
    # the observed 6.8 % spine loss in a year pulls the forecast below the one from her first scan
    now = {p.site: p for p in result.points if p.plan == "continue_ai" and p.month == 0}
    prior = {p.site: p for p in alone.points if p.plan == "continue_ai" and p.month == 0}
    assert now["lumbar_spine"].bmd_g_cm2 < prior["lumbar_spine"].bmd_g_cm2 - 0.02


def test_the_forecast_passes_through_her_scans_within_their_precision(two_scans):
    """At each past scan the median is within one precision SD of the measurement, which lies
    inside the band."""
    _, result = two_scans
    assert len(result.fit_to_scans) == 6  # 2 scans x 3 sites
    for fit in result.fit_to_scans:
        assert abs(fit.bmd_g_cm2 - fit.measured_bmd_g_cm2) <= fit.precision_sd_g_cm2
        assert fit.bmd_low_g_cm2 <= fit.measured_bmd_g_cm2 <= fit.bmd_high_g_cm2


def test_the_band_starts_about_one_measurement_error_wide_and_widens(two_scans):
    _, result = two_scans
    latest = {fit.site: fit for fit in result.fit_to_scans if fit.date.year == 2025}
    for plan in ("continue_ai", "stop_ai_as_planned"):
        for site, fit in latest.items():
            widths = [p.bmd_high_g_cm2 - p.bmd_low_g_cm2 for p in _points(result, plan, site)]
            # a scan's own 5-95 % range is 2 x 1.645 precision SDs; her unknown level and rates
            # add to it, but three weeks after her latest scan not more than half as much again
            scan_alone = 2 * 1.645 * fit.precision_sd_g_cm2
            assert scan_alone < widths[0] < 1.5 * scan_alone
            assert widths == sorted(widths)


def test_forecast_agrees_with_the_trial_simulator_for_the_same_plan():
    """Without posterior draws and without conditioning, the twins are the trial population."""
    data = _patient("osteopenic_anastrozole_risk_factors")
    patient = parse_patient(data)
    start = min([patient.sorted_scans()[0].date, *(t.start_date for t in patient.treatments)])
    result = forecast(patient, [], horizon_years=5, parameter_set=start_parameter_set())
    assert result is not None
    anchor = patient.sorted_scans()[0].lumbar_spine
    assert anchor is not None and anchor.bmd_g_cm2 is not None
    # the twins carry the patient's measured T-scores (they set turnover), so must the trial
    measured = score_scan(patient.sorted_scans()[0])
    t_scores = {site: s.t_score_unrounded or s.t_score for site, s in measured.items()}
    horizon = _points(result, "continue_ai", "lumbar_spine")[-1]
    months = (horizon.date - start).days / (365.25 / 12)
    spec = parse_trial_spec(
        {
            "name": "twins",
            "population": {
                "n": 400,
                "menopausal_status": "postmenopausal",
                "age_years": patient.age_on(start),
                "baseline_t_score": {s: t for s, t in t_scores.items() if t is not None},
            },
            "arms": [
                {
                    "name": "ai",
                    "treatments": [
                        {"drug": "anastrozole", "dose_mg": 1, "interval_days": 1, "start_month": 0}
                    ],
                }
            ],
            "outputs": {"quantities": ["lumbar_spine"], "months": [round(months)]},
        }
    )
    trial_mean = run_trial(spec, start_parameter_set()).rows[0].mean_pct_change
    forecast_change = 100 * (horizon.bmd_g_cm2 / anchor.bmd_g_cm2 - 1)
    # the anchor scan is the baseline here (scan date = start of the AI in this example or
    # within a month of it); 0.5 pp covers DXA noise in the trial mean and the month rounding
    assert forecast_change == pytest.approx(trial_mean, abs=0.5)


def test_no_forecast_without_bmd():
    data = _patient("osteopenic_anastrozole_risk_factors")
    for site in ("lumbar_spine", "total_hip", "femoral_neck"):
        data["scans"][0].pop(site)
    data["scans"][0]["lumbar_spine"] = {"t_score": -1.8}
    assert forecast(parse_patient(data), []) is None


def test_assess_cli_reports_the_forecast_in_json_and_text():
    runner = CliRunner()
    path = str(EXAMPLES / "two_scans_significant_loss.json")
    result = runner.invoke(app, ["assess", path, "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    plans = {p["plan"] for p in data["forecast"]}
    assert plans == {"continue_ai", "ai_plus_agent", "stop_ai_as_planned"}
    point = data["forecast"][0]
    assert {"month", "site", "bmd_g_cm2", "t_score", "t_score_low", "t_score_high"} <= set(point)
    assert data["forecast_details"]["scans_conditioned_on"] == 2
    text = runner.invoke(app, ["assess", path])
    words = " ".join(text.output.split())
    assert "BMD forecast" in words and "Keep taking the aromatase inhibitor" in words
    assert "continue_ai" not in words  # the plan's code stays in the JSON
    none = runner.invoke(app, ["assess", path, "--format", "json", "--forecast-years", "0"])
    assert json.loads(none.output)["forecast"] == []
    bad = runner.invoke(app, ["assess", path, "--forecast-years", "3"])
    assert bad.exit_code == 2 and "--forecast-years" in bad.output


def test_bands_include_parameter_uncertainty(two_scans):
    """Twins carry posterior parameter draws: without them the band is narrower (by a few per
    cent at year 5: her own drift and the scan's precision error are in the band too)."""
    patient, result = two_scans
    params = default_parameter_set()
    provenance = {k: v for k, v in params.provenance.items() if k != "posterior_file"}
    map_only = forecast(
        patient, [], parameter_set=params.model_copy(update={"provenance": provenance})
    )
    assert map_only is not None

    def width(f):
        return np.mean([p.bmd_high_g_cm2 - p.bmd_low_g_cm2 for p in f.points if p.month == 60])

    assert width(result) > 1.02 * width(map_only)


def test_the_bands_monte_carlo_error_is_about_the_output_rounding(two_scans):
    """Another seed draws other twins: with the default number of twins the band edges and the
    median move by about 0.1 pp of BMD (docs/forecast.md), far less than one scan's precision
    error (about 1 %); bounds here: 0.3 pp on average over every point, 1 pp at any point."""
    patient, _ = two_scans
    runs = [forecast(patient, [], twins=DEFAULT_TWINS, seed=seed) for seed in range(4)]
    values = np.array(
        [[(p.bmd_low_g_cm2, p.bmd_g_cm2, p.bmd_high_g_cm2) for p in run.points] for run in runs]
    )
    spread_pp = 100.0 * values.std(axis=0, ddof=1) / values.mean(axis=0)
    assert spread_pp.mean() <= 0.3
    assert spread_pp.max() <= 1.0


def test_a_long_tailed_plan_gets_twice_the_twins_and_says_its_band_is_uncertain():
    """A man stopping his inhibitor: a few twins gain a lot, so 200 twins leave the upper band
    edge uncertain by more than MONTE_CARLO_ERROR_PCT; the forecast doubles the twins and,
    where that is still not enough, says so. A typical woman keeps the default."""
    man = forecast(parse_patient(_patient("man_anastrozole_testosterone")), [])
    assert man is not None and man.twins == 2 * DEFAULT_TWINS
    assert any("still uncertain" in note for note in man.notes)
    woman = forecast(parse_patient(_patient("two_scans_significant_loss")), [])
    assert woman is not None and woman.twins == DEFAULT_TWINS
    assert not any("still uncertain" in note for note in woman.notes)


def test_compiled_forecast_matches_the_numpy_reference(two_scans):
    """The compiled engine (the default) gives the NumPy reference's forecast: every mean and
    band edge within 0.0002 g/cm2 (outputs are rounded to 0.0001) and the same conditioning."""
    patient, result = two_scans
    reference = forecast(patient, assess(patient).recommendation.agents, engine="numpy")
    assert reference is not None
    assert [(p.plan, p.site, p.month) for p in result.points] == [
        (p.plan, p.site, p.month) for p in reference.points
    ]
    for fast, slow in zip(result.points, reference.points, strict=True):
        for field in ("bmd_g_cm2", "bmd_low_g_cm2", "bmd_high_g_cm2"):
            assert getattr(fast, field) == pytest.approx(getattr(slow, field), abs=2e-4)
    assert result.effective_twins == pytest.approx(reference.effective_twins, abs=0.2)
    assert result.band_narrowing_pct.keys() == reference.band_narrowing_pct.keys()


def test_plans_simulated_in_one_batch_equal_plans_simulated_alone():
    """Batching the plans does not couple the twins: each plan's trajectories are those of the
    plan run on its own (same doses, same arithmetic)."""
    patient = parse_patient(_patient("stopping_denosumab"))
    start = min([patient.sorted_scans()[0].date, *(t.start_date for t in patient.treatments)])
    horizon_end = patient.as_of.replace(year=patient.as_of.year + 5)
    plans, _ = _plan_treatments(patient, start, horizon_end, DEFAULT_AGENT)
    twins = _twins(
        patient, default_parameter_set(), patient.age_on(start), {"total_hip": -1.8}, 24, seed=3
    )
    runs = [(twins, treatments) for _, _, treatments in plans]
    horizon, days = (horizon_end - start).days, [0, 400, 1200, (horizon_end - start).days]
    batch = _simulate_runs(runs, horizon, days, seed=3, engine="numpy")
    for run, together in zip(runs, batch, strict=True):
        (alone,) = _simulate_runs([run], horizon, days, seed=3, engine="numpy")
        np.testing.assert_allclose(together.bmd_ratio, alone.bmd_ratio, rtol=0, atol=1e-12)
        np.testing.assert_allclose(together.osteoclasts, alone.osteoclasts, rtol=0, atol=1e-12)


def test_a_switch_between_inhibitors_keeps_the_first_in_every_plan():
    """Letrozole for two years, then anastrozole with no stop date: every plan simulates the
    letrozole years, and the adjuvant course is five years of inhibitor in all."""
    data = _patient("two_scans_significant_loss")
    data["treatments"] = [
        {"drug": "letrozole", "start_date": "2023-03-01", "stop_date": "2025-03-01"},
        {"drug": "anastrozole", "start_date": "2025-03-01"},
    ]
    patient = parse_patient(data)
    t0 = date(2023, 3, 1)
    plans, notes = _plan_treatments(patient, t0, date(2030, 3, 10), DEFAULT_AGENT)
    for _, _, treatments in plans:
        (letrozole,) = [t for t in treatments if t.drug == "letrozole"]
        assert (letrozole.start_month, round(letrozole.stop_month or 0)) == (0.0, 24)
    stop = {n: next(t for t in ts if t.drug == "anastrozole") for n, _, ts in plans}
    assert round(stop["stop_ai_as_planned"].stop_month or 0) == 60
    assert any("counted from the first inhibitor" in note for note in notes)
