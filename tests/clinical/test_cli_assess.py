"""`bonecast assess PATIENT.json [--guideline NAME] [--format json|text]` (architecture.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from patients import BASE, patient_dict
from typer.testing import CliRunner

from bonecast import DISCLAIMER
from bonecast.cli import app

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "patients"
CONTRACT_KEYS = {
    "t_scores",
    "lowest_t_score",
    "who_category",
    "risk_factors_present",
    "recommendation",
    "changes",
    "fracture_risk",
    "forecast",
}


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "patient.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _json(args: list[str]) -> dict[str, Any]:
    result = runner.invoke(app, ["assess", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    decoded: dict[str, Any] = json.loads(result.stdout)
    return decoded


def test_json_output_has_the_contract_keys(tmp_path: Path) -> None:
    out = _json([str(_write(tmp_path, patient_dict()))])
    assert set(out) >= CONTRACT_KEYS
    assert set(out["t_scores"]) == {"lumbar_spine", "total_hip", "femoral_neck"}
    assert out["t_scores"] == {"lumbar_spine": -0.4, "total_hip": -0.3, "femoral_neck": -0.3}
    assert out["who_category"] == "normal"
    recommendation = out["recommendation"]
    assert {
        "guideline",
        "start_bone_protective_therapy",
        "rule",
        "agents",
        "next_dxa_months",
    } <= set(recommendation)
    assert recommendation["guideline"] == "aibl-2025"
    # forecast: per plan, month and site, expected BMD and T-score with a band (contract)
    assert {p["plan"] for p in out["forecast"]} >= {"continue_ai", "stop_ai_as_planned"}
    assert {"month", "site", "bmd_g_cm2", "bmd_low_g_cm2", "bmd_high_g_cm2", "t_score"} <= set(
        out["forecast"][0]
    )
    assert out["disclaimer"] == DISCLAIMER


def test_changes_in_json_output(tmp_path: Path) -> None:
    scans = [
        {"date": "2024-12-01", "scanner": "hologic", "total_hip": {"bmd_g_cm2": 0.900}},
        {"date": "2025-12-01", "scanner": "hologic", "total_hip": {"bmd_g_cm2": 0.850}},
    ]
    (change,) = _json([str(_write(tmp_path, patient_dict(scans=scans)))])["changes"]
    assert change["site"] == "total_hip"
    assert change["pct_change"] == pytest.approx(-5.556, abs=1e-3)
    assert change["lsc_pct"] == 5.0 and change["significant"] is True


def test_guideline_option_selects_the_rule_set(tmp_path: Path) -> None:
    path = str(_write(tmp_path, patient_dict(weight_kg=60)))
    assert _json([path, "--guideline", "aibl-2017"])["recommendation"]["guideline"] == "aibl-2017"
    assert "low_bmi" in _json([path])["risk_factors_present"]
    assert "low_bmi" not in _json([path, "--guideline", "aibl-2017"])["risk_factors_present"]


def test_text_output_is_a_readable_summary_with_the_rule_trace(tmp_path: Path) -> None:
    result = runner.invoke(app, ["assess", str(_write(tmp_path, patient_dict()))])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    for fragment in (
        "Bone health assessment as of 2026-01-15",
        "WHO category: Normal",
        "No bone-directed therapy now",
        "Monitor: no bone-directed therapy now",
        "Rule trace",
        "QFracture-2012 algorithm (ClinRisk Ltd.)",
        "Inaccurate implementations of risk scores",
        " ".join(DISCLAIMER.split()),
    ):
        assert fragment in text, fragment
    assert "aibl-monitor" not in text and "docs/clinical/index.md" not in text  # words, not codes


def test_text_output_wraps_to_a_narrow_terminal_and_cuts_nothing(tmp_path: Path) -> None:
    path = str(_write(tmp_path, patient_dict()))
    result = runner.invoke(app, ["assess", path], env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 60
    assert "…" not in result.stdout  # Rich's ellipsis: nothing is truncated


def test_facility_precision_study(tmp_path: Path) -> None:
    study = tmp_path / "precision.csv"
    rows = ["patient_id,site,bmd_g_cm2"] + [
        f"p{j},total_hip,{v}" for j in range(30) for v in (0.9, 0.91)
    ]
    study.write_text("\n".join(rows))
    scans = [
        {"date": "2024-12-01", "scanner": "hologic", "total_hip": {"bmd_g_cm2": 0.900}},
        {"date": "2025-12-01", "scanner": "hologic", "total_hip": {"bmd_g_cm2": 0.880}},
    ]
    out = _json([str(_write(tmp_path, patient_dict(scans=scans))), "--precision", str(study)])
    (change,) = out["changes"]
    assert change["lsc_g_cm2"] == pytest.approx(2.77 * 0.01 / 2**0.5)
    assert change["significant"] is True  # -0.020 g/cm2 exceeds 0.0196
    assert "facility precision study (30 patients, 30 df)" in change["lsc_source"]


EXPECTED_EXAMPLES = {
    "contract_example.json": ("aibl-monitor", False),
    "normal_bmd_low_risk.json": ("aibl-monitor", False),
    "osteopenic_anastrozole_risk_factors.json": ("aibl-t-plus-risk-factor", True),
    "osteoporotic.json": ("osteoporosis-t-score", True),
    "premenopausal_goserelin_exemestane.json": ("premenopausal-t-score", True),
    "two_scans_significant_loss.json": ("aibl-bmd-loss", True),
    "stopping_denosumab.json": ("denosumab-transition", True),
    "man_anastrozole_testosterone.json": ("men-on-ai-monitor", False),
}


def test_every_example_patient_is_covered() -> None:
    assert {path.name for path in EXAMPLES.glob("*.json")} == set(EXPECTED_EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXPECTED_EXAMPLES))
@pytest.mark.parametrize("guideline", ["aibl-2025", "aibl-2017"])
def test_example_patients(name: str, guideline: str) -> None:
    path = str(EXAMPLES / name)
    out = _json([path, "--guideline", guideline])
    rule, start = EXPECTED_EXAMPLES[name]
    assert (
        out["recommendation"]["rule_id"],
        out["recommendation"]["start_bone_protective_therapy"],
    ) == (rule, start)
    text = runner.invoke(app, ["assess", path, "--guideline", guideline, "--format", "text"])
    assert text.exit_code == 0, text.output
    assert "Rule trace" in text.stdout


def test_example_details_users_rely_on() -> None:
    osteoporotic = _json([str(EXAMPLES / "osteoporotic.json")])
    assert osteoporotic["who_category"] == "severe_osteoporosis"
    assert {a["rule_id"] for a in osteoporotic["recommendation"]["advice"]} >= {"renal-function"}
    premenopausal = _json([str(EXAMPLES / "premenopausal_goserelin_exemestane.json")])
    assert premenopausal["who_category"] is None
    assert premenopausal["z_score_category"] == "within_expected_range_for_age"
    loss = _json([str(EXAMPLES / "two_scans_significant_loss.json")])
    assert [(c["site"], c["significant"]) for c in loss["changes"]] == [
        ("lumbar_spine", True),
        ("total_hip", False),
        ("femoral_neck", False),
    ]
    denosumab = _json([str(EXAMPLES / "stopping_denosumab.json")])
    assert "critical" in {a["severity"] for a in denosumab["recommendation"]["advice"]}


def _edit(path: list[Any], value: Any) -> dict[str, Any]:
    data = patient_dict()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


SCAN = ["scans", 0]
BAD_INPUT = {
    "BMD too high": (
        _edit([*SCAN, "lumbar_spine", "bmd_g_cm2"], 2.4),
        "scans[0].lumbar_spine.bmd_g_cm2: 2.4 is outside 0.2-2.0 g/cm2",
    ),
    "BMD too low": (
        _edit([*SCAN, "total_hip", "bmd_g_cm2"], 0.15),
        "scans[0].total_hip.bmd_g_cm2: 0.15 is outside 0.2-2.0 g/cm2",
    ),
    "T-score too high": (
        _edit([*SCAN, "lumbar_spine", "t_score"], 7),
        "scans[0].lumbar_spine.t_score: 7 is outside -6..+6",
    ),
    "Z-score too low": (
        _edit([*SCAN, "femoral_neck", "z_score"], -6.5),
        "scans[0].femoral_neck.z_score: -6.5 is outside -6..+6",
    ),
    "vertebra T-score": (
        _edit([*SCAN, "lumbar_spine", "vertebrae"], {"L2": {"t_score": -9}}),
        "scans[0].lumbar_spine.vertebrae.L2.t_score: -9 is outside -6..+6",
    ),
    "unknown vertebra": (
        _edit([*SCAN, "lumbar_spine", "vertebrae"], {"L5": {"t_score": -1}}),
        "scans[0].lumbar_spine.vertebrae.L5: unknown key; accepted: L1, L2, L3, L4",
    ),
    "scan in the future": (
        _edit([*SCAN, "date"], "2026-03-01"),
        "scans[0].date: 2026-03-01 is in the future (after as_of 2026-01-15)",
    ),
    "scan before birth": (
        patient_dict(birth_date="1966-01-10", scans=[{**BASE["scans"][0], "date": "1960-01-01"}]),
        "scans[0].date: 1960-01-01 is before birth (1966-01-10)",
    ),
    "scan before the birth implied by the age": (
        _edit([*SCAN, "date"], "1965-01-01"),
        "scans[0].date: 1965-01-01 is before birth",
    ),
    "age too low": (patient_dict(age_years=17), "age_years: 17 is outside 18-110 years"),
    "age too high": (patient_dict(age_years=111), "age_years: 111 is outside 18-110 years"),
    "unknown drug": (
        _edit(["treatments", 0, "drug"], "anastrozol"),
        "treatments[0].drug: unknown drug 'anastrozol'; accepted: anastrozole",
    ),
    "unknown site": (
        _edit([*SCAN, "radius"], {"bmd_g_cm2": 0.6}),
        "scans[0].radius: unknown key; accepted: date, scanner, scanner_id, lumbar_spine, "
        "total_hip, femoral_neck",
    ),
    "unknown scanner": (
        _edit([*SCAN, "scanner"], "stratos"),
        "scans[0].scanner: Input should be 'hologic', 'lunar' or 'norland'",
    ),
    "site without a value": (
        _edit([*SCAN, "total_hip"], {}),
        "scans[0].total_hip: give bmd_g_cm2, t_score or z_score",
    ),
    "scan without a site": (
        patient_dict(scans=[{"date": "2025-12-01", "scanner": "hologic"}]),
        "scans[0]: a scan needs at least one of the sites",
    ),
    "two scans on one date": (
        patient_dict(scans=[BASE["scans"][0], BASE["scans"][0]]),
        "scans[1].date: 2025-12-01 is also the date of scans[0]",
    ),
    "unknown key": (patient_dict(smoker=True), "smoker: unknown key; accepted: sex, age_years"),
    "unknown risk factor": (
        patient_dict(risk_factors={"diabetes": True}),
        "risk_factors.diabetes: unknown key; accepted: current_smoker",
    ),
    "number as a string": (
        patient_dict(age_years="66"),
        "age_years: Input should be a valid number",
    ),
    "missing sex": (patient_dict(sex=None), "sex: required"),
    "woman without menopausal status": (
        patient_dict(menopausal_status=None),
        "menopausal_status: required for women",
    ),
    "menopausal status for a man": (patient_dict(sex="male"), "menopausal_status: only for women"),
    "age and birth date disagree": (
        patient_dict(birth_date="1950-01-01"),
        "age_years: 60 does not match birth_date 1950-01-01",
    ),
    "weight out of range": (patient_dict(weight_kg=400), "weight_kg: 400 is outside 20-300 kg"),
    "stop before start": (
        _edit(["treatments", 0, "stop_date"], "2025-01-01"),
        "treatments[0].stop_date: 2025-01-01 is before start_date 2026-01-01",
    ),
    "last injection in the future": (
        patient_dict(
            treatments=[
                {"drug": "denosumab", "start_date": "2025-01-01", "last_dose_date": "2026-02-01"}
            ]
        ),
        "treatments[0].last_dose_date: 2026-02-01 is in the future",
    ),
    "route not given for the drug": (
        _edit(["treatments", 0, "route"], "iv"),
        "treatments[0].route: anastrozole is given oral, not iv",
    ),
    "unknown lab": (
        _edit(["labs", 0, "test"], "osteocalcin"),
        "labs[0].test: unknown test 'osteocalcin'; accepted: ctx, p1np",
    ),
    "unknown lab unit": (
        _edit(["labs", 0, "unit"], "mg/L"),
        "labs[0].unit: 'mg/L' is not a unit of vitamin_d_25oh; accepted: ng/mL, nmol/L",
    ),
    "FRAX over 100 %": (
        patient_dict(frax={"major_osteoporotic_pct": 120, "hip_pct": 3}),
        "frax.major_osteoporotic_pct: 120 is outside 0-100 %",
    ),
    "not JSON": ("{'sex': 'female'", "not valid JSON"),
    "not an object": ("[1, 2]", "the patient must be a JSON object"),
}


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_impossible_input_exits_2_and_names_the_field(tmp_path: Path, name: str) -> None:
    data, message = BAD_INPUT[name]
    result = runner.invoke(app, ["assess", str(_write(tmp_path, data)), "--format", "json"])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert message in " ".join(result.stderr.split()), result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--guideline", "nice-2024"],
            "--guideline: unknown rule set 'nice-2024'; accepted: aibl-2017, aibl-2025",
        ),
        (["--precision", "missing.csv"], "cannot read missing.csv"),
    ],
)
def test_bad_options_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["assess", str(_write(tmp_path, patient_dict())), *args])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in " ".join(result.stderr.split())


def test_missing_patient_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["assess", str(tmp_path / "nobody.json")])
    assert result.exit_code == 2 and result.stdout == ""
    assert "cannot read the file" in result.stderr


def test_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["assess", str(_write(tmp_path, patient_dict())), "--format", "xml"]
    )
    assert result.exit_code == 2 and result.stdout == ""


def test_assess_a_fhir_bundle(tmp_path: Path) -> None:
    """`bonecast assess --fhir` uses the registry's FHIR decoder; FN 0.672 gives -1.6."""
    from bonecast.registry import terminology as codes

    def observation(code: tuple[str, str], value: float, unit: str, **extra: Any) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": code[0], "code": code[1]}]},
            "effectiveDateTime": "2025-05-20",
            "device": {"reference": "Device/dxa"},
            "valueQuantity": {"value": value, "unit": unit, "system": codes.UCUM, "code": unit},
            **extra,
        }

    neck_site = {"coding": [{"system": codes.SNOMED, "code": codes.FEMORAL_NECK_SNOMED}]}
    resources = [
        {"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1963-01-01"},
        {"resourceType": "Device", "id": "dxa", "manufacturer": "Hologic"},
        observation((codes.LOINC, "38267-1"), 0.0, "{T-score}"),
        observation(
            (codes.DXA_SYSTEM, "femoral_neck_bmd_g_cm2"), 0.672, "g/cm2", bodySite=neck_site
        ),
        {
            "resourceType": "MedicationStatement",
            "status": "active",
            "medicationCodeableConcept": {"coding": [{"system": codes.RXNORM, "code": "84857"}]},
            "effectivePeriod": {"start": "2025-06-01"},
        },
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }
    path = _write(tmp_path, bundle)
    result = _json([str(path), "--fhir", "--forecast-years", "0"])
    assert result["t_scores"]["femoral_neck"] == -1.6
    assert result["lowest_t_score"] == -1.6
    text = runner.invoke(app, ["assess", str(path), "--fhir", "--forecast-years", "0"])
    assert text.exit_code == 0 and "Lowest T-score: -1.6" in text.stdout
    assert "menopausal status not recorded" in text.stderr
    not_one = runner.invoke(
        app, ["assess", str(_write(tmp_path, {"resourceType": "Bundle"})), "--fhir"]
    )
    assert not_one.exit_code == 2 and "one Patient" in not_one.stderr
