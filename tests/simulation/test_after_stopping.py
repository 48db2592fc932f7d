"""After stopping: drug-specific bisphosphonate persistence (surface residence half-life per drug),
and parameter sets that share one half-life between the drugs (before model 1.3) still load."""

from __future__ import annotations

import yaml

from bonecast.simulation import DAYS_PER_YEAR, SITES, default_parameter_set, simulate
from bonecast.simulation.drugs import BISPHOSPHONATES
from bonecast.simulation.parameters import load_parameter_set

LS = SITES.index("lumbar_spine")
YEAR = round(DAYS_PER_YEAR)


def test_a_set_with_one_shared_surface_half_life_loads_it_for_every_drug(tmp_path, params):
    data = params.model_dump(mode="json")
    for drug in BISPHOSPHONATES:
        del data["parameters"][f"bp.{drug}.t_s_days"]
    data["parameters"]["bp_surface_half_life_days"] = {
        "value": 75.0,
        "unit": "day",
        "symbol": "t_s",
        "description": "Residence half-life of drug on the resorbable bone surface",
        "source": "assump",
    }
    path = tmp_path / "older.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    older = load_parameter_set(path)
    for drug in BISPHOSPHONATES:
        entry = older.parameters[f"bp.{drug}.t_s_days"]
        assert entry.value == 75.0 and not entry.calibrate
        assert "before model 1.3" in entry.source
    assert "bp_surface_half_life_days" not in older.parameters


def test_surface_half_life_priors_follow_the_published_affinity_order(params):
    """Nancollas et al., Bone 2006;38:617: zoledronate > alendronate > ibandronate > risedronate."""
    order = ("zoledronic_acid", "alendronate", "ibandronate", "risedronate")
    values = [params.parameters[f"bp.{d}.t_s_days"].value for d in order]
    assert values == sorted(values, reverse=True)
    for drug in order:
        assert "Nancollas" in params.parameters[f"bp.{drug}.t_s_days"].source


def _after_three_years(patient, tx, drug: str, dose_mg: float, interval_days: float):
    """Osteoclast activity (CTX proxy, relative to baseline) and spine BMD change (%) from
    stopping ``drug`` after 3 years to 1 year later (typical patient, shipped parameters)."""
    result = simulate(patient, [tx(drug, dose_mg, interval_days, 0, 36)], 4 * YEAR + 1)
    stop, later = 3 * YEAR, 4 * YEAR
    spine = result.bmd_ratio[:, LS, 0]
    return result.osteoclasts[later, 0], 100.0 * (spine[later] / spine[stop] - 1.0)


def test_bisphosphonate_effects_outlast_the_last_dose_in_the_affinity_order(make_patient, tx):
    """One year after 3 years of treatment: resorption is back near baseline after risedronate
    (Watts et al., Osteoporos Int 2008;19:365: markers back at placebo levels within a year),
    still well suppressed after alendronate (FLEX, Black et al., JAMA 2006;296:2927) and most
    suppressed after yearly zoledronic acid (HORIZON-PFT extension, Black et al., J Bone Miner
    Res 2012;27:243), with spine BMD lost in the same order."""
    patient = make_patient(parameter_set=default_parameter_set(), age_years=68)
    ris = _after_three_years(patient, tx, "risedronate", 35.0, 7.0)
    aln = _after_three_years(patient, tx, "alendronate", 70.0, 7.0)
    zol = _after_three_years(patient, tx, "zoledronic_acid", 5.0, 365.0)
    assert ris[0] > aln[0] > zol[0]
    assert ris[0] > 0.8  # within 20 % of baseline resorption
    assert ris[1] < aln[1] < zol[1]
