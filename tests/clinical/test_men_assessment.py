"""Men in the clinical engine: `bonecast assess` for a man on anastrozole and testosterone
(scores, fracture risk, a recommendation from a guideline for men with its source, monitoring
advice, a forecast with bands under plans that make sense for men)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bonecast.cli import app
from bonecast.clinical import assess, parse_patient

EXAMPLE = (
    Path(__file__).resolve().parents[2]
    / "examples"
    / "patients"
    / "man_anastrozole_testosterone.json"
)
ENDOCRINE_SOCIETY_2012 = "J Clin Endocrinol Metab 2012;97:1802"


@pytest.fixture(scope="module")
def assessed() -> dict:
    result = CliRunner().invoke(
        app, ["assess", str(EXAMPLE), "--format", "json", "--forecast-years", "5"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_scores_use_the_white_female_reference_as_iscd_asks_for_men(assessed: dict) -> None:
    """ISCD 2013 (Watts et al., J Clin Densitom 2013;16:472): T-scores for men against a uniform
    white female reference: femoral neck 0.700 g/cm2 on Hologic is (0.700 - 0.858) / 0.120."""
    neck = assessed["scores"]["femoral_neck"]
    assert neck["t_score"] == -1.3
    assert "women" in neck["t_score_source"]
    assert assessed["who_category"] == "osteopenia"  # a man of 68: the WHO categories apply


def test_fracture_risk_from_the_male_qfracture_equation(assessed: dict) -> None:
    estimates = {e["outcome"]: e for e in assessed["fracture_risk"]["estimates"]}
    for outcome in ("major_osteoporotic", "hip"):
        estimate = estimates[outcome]
        assert estimate["model"] == "QFracture-2012"
        assert 0 < estimate["risk_pct"] < estimate["risk_pct_on_ai"] < 100


def test_recommendation_is_from_the_guideline_for_men_and_says_aibl_is_for_women(
    assessed: dict,
) -> None:
    rec = assessed["recommendation"]
    assert rec["rule_id"] == "men-on-ai-monitor"
    assert ENDOCRINE_SOCIETY_2012 in rec["source"]
    assert "AIBL statements are for women and are not applied" in rec["rule"]
    advice = {a["rule_id"]: a for a in rec["advice"]}
    assert "written for women" in advice["men-ai-guidelines-for-women"]["text"]
    monitoring = advice["men-testosterone-with-ai"]
    assert "estradiol" in monitoring["text"] and "10 pg/mL" in monitoring["text"]
    assert "DXA" in monitoring["text"] and "Finkelstein" in monitoring["source"]
    assert rec["next_dxa"]["due"] == "2026-04-01"  # 12 months after the inhibitor's start


def test_forecast_has_bands_under_the_plans_for_men(assessed: dict) -> None:
    plans = [p["name"] for p in assessed["forecast_details"]["plans"]]
    assert plans == ["continue_ai", "stop_ai", "ai_plus_agent", "ai_without_testosterone"]
    points = assessed["forecast"]
    for p in points:
        assert p["bmd_low_g_cm2"] <= p["bmd_g_cm2"] <= p["bmd_high_g_cm2"]
    year5 = {
        p["plan"]: p["bmd_g_cm2"]
        for p in points
        if p["site"] == "lumbar_spine" and p["month"] == 60
    }
    # his estradiol comes from his testosterone: the inhibitor costs bone, stopping it or
    # adding a bone agent protects it, stopping testosterone under the inhibitor costs more
    assert year5["stop_ai"] > year5["continue_ai"] + 0.02
    assert year5["ai_plus_agent"] > year5["continue_ai"] + 0.02
    assert year5["ai_without_testosterone"] < year5["continue_ai"] - 0.02
    first = [p for p in points if p["month"] == 60 and p["plan"] == "continue_ai"]
    assert all(p["bmd_high_g_cm2"] - p["bmd_low_g_cm2"] > 0.02 for p in first)


def test_a_man_with_osteoporosis_gets_drug_treatment_from_the_guideline_for_men() -> None:
    data = json.loads(EXAMPLE.read_text())
    low = copy.deepcopy(data)
    low["scans"][0]["femoral_neck"] = {"bmd_g_cm2": 0.540}  # T = -2.65
    result = assess(parse_patient(low))
    assert result.recommendation.rule_id == "men-t-score"
    assert result.recommendation.start_bone_protective_therapy
    assert ENDOCRINE_SOCIETY_2012 in result.recommendation.source
    assert result.recommendation.agents  # the osteoporosis agents, not the AIBL list
