"""SBML export: libsbml validity, libRoadRunner agreement with bonecast, and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import libsbml
import numpy as np
import pytest
import roadrunner
import yaml
from typer.testing import CliRunner

from bonecast.cli import app
from bonecast.simulation import (
    PopulationSpec,
    Treatment,
    VirtualPopulation,
    default_parameter_set,
    sample_population,
)
from bonecast.simulation.parameters import SITES, ParameterSet
from bonecast.simulation.regimens import StartRule, month_to_day
from bonecast.simulation.sbml import SITE_IDS, SbmlExportError, to_sbml
from bonecast.simulation.solver import simulate, simulate_reference

HORIZON = month_to_day(60)
YEARLY_DAYS = [month_to_day(12 * k) for k in range(1, 6)]
TOLERANCE_PP = 0.05

ANASTROZOLE = {"drug": "anastrozole", "dose_mg": 1, "interval_days": 1}
BONE_AGENTS = {
    "zoledronic_acid": {
        "drug": "zoledronic_acid",
        "dose_mg": 4,
        "interval_days": 182,
        "route": "iv",
    },
    "denosumab": {"drug": "denosumab", "dose_mg": 60, "interval_days": 182, "route": "sc"},
}


def _plan(agent: str) -> list[Treatment]:
    window = {"start_month": 0, "stop_month": 60}
    return [
        Treatment(**ANASTROZOLE, **window),
        Treatment(**BONE_AGENTS[agent], **window),
    ]


def _errors(document: libsbml.SBMLDocument) -> list[str]:
    document.checkConsistency()
    return [
        document.getError(i).getMessage()
        for i in range(document.getNumErrors())
        if document.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR
    ]


def _roadrunner_pct(sbml: str, days: list[int]) -> np.ndarray:
    """% BMD change per site (columns in SITES order) at ``days``, simulated by libRoadRunner."""
    rr = roadrunner.RoadRunner(sbml)
    rr.integrator.relative_tolerance = 1e-8
    rr.integrator.absolute_tolerance = 1e-10
    rr.timeCourseSelections = ["time"] + [f"pct_{SITE_IDS[s]}" for s in SITES]
    result = np.asarray(rr.simulate(0, HORIZON, HORIZON + 1))
    assert np.allclose(result[days, 0], days)
    return result[days, 1:]


@pytest.mark.parametrize("agent", sorted(BONE_AGENTS))
def test_roadrunner_matches_bonecast(typical_patient: VirtualPopulation, agent: str) -> None:
    plan = _plan(agent)
    sbml = to_sbml(typical_patient, plan, HORIZON)
    assert _errors(libsbml.readSBMLFromString(sbml)) == []
    exported = _roadrunner_pct(sbml, YEARLY_DAYS)
    reference = simulate_reference(typical_patient, plan, HORIZON, record_days=YEARLY_DAYS)
    fast = simulate(typical_patient, plan, HORIZON, record_days=YEARLY_DAYS)
    for k, site in enumerate(SITES):
        assert exported[-1, k] > 0.0  # the bone agent keeps BMD above baseline
        for result in (reference, fast):
            gap = np.abs(exported[:, k] - result.bmd_pct_change(site)[:, 0])
            assert gap.max() < TOLERANCE_PP, (agent, site, gap)


def test_document_names_every_state_and_dose(typical_patient: VirtualPopulation) -> None:
    document = libsbml.readSBMLFromString(to_sbml(typical_patient, _plan("zoledronic_acid"), 400))
    model = document.getModel()
    assert document.getLevel() == 3 and document.getVersion() == 2
    assert model.getTimeUnits() == "day"
    rated = {model.getRule(i).getVariable() for i in range(model.getNumRules())}
    states = {"p", "c", "q", "b", "Y_t", "O_t", "Y_c", "O_c", "X_T", "D_sc", "D_c", "D_p"}
    assert states | {"A_s_zoledronic_acid", "A_b_zoledronic_acid"} <= rated
    assert {"S_E", "P_L", "P_O", "L", "f_L", "a_L", "E_BP", "C_den", "BMD_FN"} <= rated
    events = [model.getEvent(i).getId() for i in range(model.getNumEvents())]
    assert events == ["dose_day_0", "dose_day_182", "dose_day_364"]
    dose = model.getEvent(0).getEventAssignment(0)
    assert libsbml.formulaToL3String(dose.getMath()) == "A_s_zoledronic_acid + 2.4"  # 4 mg x 0.6
    assert "unit: 1/day" in model.getParameter("k_p").getNotesString()


def test_start_rules_cannot_be_exported(typical_patient: VirtualPopulation) -> None:
    rule = StartRule(t_score_below=-2.0, check_every_months=12)
    plan = [Treatment(drug="zoledronic_acid", dose_mg=4, interval_days=182, start_when=rule)]
    with pytest.raises(SbmlExportError, match="start_when"):
        to_sbml(typical_patient, plan, HORIZON)


def test_cli_writes_sbml_that_libsbml_reads(tmp_path: Path) -> None:
    spec = tmp_path / "trial.yaml"
    treatments = [
        {**ANASTROZOLE, "start_month": 0, "stop_month": 24},
        {**BONE_AGENTS["denosumab"], "start_month": 0, "stop_month": 24},
    ]
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "sbml export",
                "population": {"n": 10, "menopausal_status": "postmenopausal", "age_years": 64},
                "arms": [{"name": "AI + denosumab", "treatments": treatments}],
                "outputs": {"quantities": ["lumbar_spine"], "months": [24]},
            }
        )
    )
    out = tmp_path / "model.xml"
    runner = CliRunner()
    options = ["--spec", str(spec), "--arm", "AI + denosumab", "--out", str(out)]
    result = runner.invoke(app, ["export", "sbml", *options])
    assert result.exit_code == 0, result.output
    document = libsbml.readSBMLFromFile(str(out))
    assert _errors(document) == []
    assert document.getModel().getNumEvents() == 5  # denosumab on days 0, 182, 364, 546, 728
    written = out.read_text()
    out.unlink()
    alias = runner.invoke(app, ["export-sbml", *options])
    assert alias.exit_code == 0, alias.output
    assert out.read_text() == written
    missing = runner.invoke(app, ["export", "sbml", *options[:3], "placebo", "--out", str(out)])
    assert missing.exit_code == 2
    assert "no arm 'placebo'" in missing.output
    incomplete = runner.invoke(app, ["export", "sbml", *options[:2]])
    assert incomplete.exit_code == 2
    assert "missing --arm, --out" in incomplete.output


def test_roadrunner_matches_bonecast_for_a_man() -> None:
    """A man on testosterone gel then anastrozole: the exported hormone algebra agrees."""
    man = sample_population(
        PopulationSpec(n=1, sex="male", age_years=68.0, variability=False),
        default_parameter_set(),
        0,
    )
    plan = [
        Treatment(drug="testosterone_gel", dose_mg=50, interval_days=1, start_month=0),
        Treatment(**ANASTROZOLE, start_month=24, stop_month=60),
    ]
    sbml = to_sbml(man, plan, HORIZON)
    assert _errors(libsbml.readSBMLFromString(sbml)) == []
    exported = _roadrunner_pct(sbml, YEARLY_DAYS)
    reference = simulate_reference(man, plan, HORIZON, record_days=YEARLY_DAYS)
    for k, site in enumerate(SITES):
        gap = np.abs(exported[:, k] - reference.bmd_pct_change(site)[:, 0])
        assert gap.max() < TOLERANCE_PP, (site, gap)


TEN_YEARS = month_to_day(120)
TEN_YEARLY_DAYS = [month_to_day(12 * k) for k in range(1, 11)]
FIVE_YEARS = {"start_month": 0, "stop_month": 60}
WOMAN = {"menopausal_status": "postmenopausal", "age_years": 64.0}
DRUG_CLASS_PLANS: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
    "aromatase inhibitor, stopped at 5 years": (
        WOMAN,
        [{"drug": "letrozole", "dose_mg": 2.5, "interval_days": 1}],
    ),
    "SERM": (WOMAN, [{"drug": "tamoxifen", "dose_mg": 20, "interval_days": 1}]),
    "ovarian suppression with an inhibitor": (
        {"menopausal_status": "premenopausal", "age_years": 42.0},
        [
            {"drug": "goserelin", "dose_mg": 3.6, "interval_days": 28, "route": "sc"},
            {"drug": "exemestane", "dose_mg": 25, "interval_days": 1},
        ],
    ),
    "oral bisphosphonate": (
        WOMAN,
        [ANASTROZOLE, {"drug": "alendronate", "dose_mg": 70, "interval_days": 7}],
    ),
    "IV bisphosphonate": (WOMAN, [ANASTROZOLE, BONE_AGENTS["zoledronic_acid"]]),
    "RANKL antibody, stopped at 5 years": (WOMAN, [ANASTROZOLE, BONE_AGENTS["denosumab"]]),
    "androgen with an inhibitor (a man)": (
        {"sex": "male", "age_years": 68.0},
        [
            {"drug": "testosterone_gel", "dose_mg": 50, "interval_days": 1},
            ANASTROZOLE,
        ],
    ),
}


@pytest.mark.parametrize("drug_class", sorted(DRUG_CLASS_PLANS))
def test_every_drug_class_agrees_over_ten_years(params: ParameterSet, drug_class: str) -> None:
    """The model written once: libRoadRunner on the exported SBML, the NumPy path and the
    compiled kernel agree within 0.05 pp at every site, on treatment and after it stops."""
    spec, treatments = DRUG_CLASS_PLANS[drug_class]
    patient = sample_population(PopulationSpec(n=1, variability=False, **spec), params, 0)
    plan = [Treatment(**t, **FIVE_YEARS) for t in treatments]
    rr = roadrunner.RoadRunner(to_sbml(patient, plan, TEN_YEARS))
    rr.integrator.relative_tolerance = 1e-8
    rr.integrator.absolute_tolerance = 1e-10
    rr.timeCourseSelections = ["time"] + [f"pct_{SITE_IDS[s]}" for s in SITES]
    exported = np.asarray(rr.simulate(0, TEN_YEARS, TEN_YEARS + 1))[TEN_YEARLY_DAYS, 1:]
    for engine in ("numpy", "numba"):
        result = simulate(patient, plan, TEN_YEARS, record_days=TEN_YEARLY_DAYS, engine=engine)
        for k, site in enumerate(SITES):
            gap = np.abs(exported[:, k] - result.bmd_pct_change(site)[:, 0])
            assert gap.max() < TOLERANCE_PP, (drug_class, engine, site, gap)
