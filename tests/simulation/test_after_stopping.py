"""After stopping: drug-specific bisphosphonate persistence (surface residence half-life per drug),
the osteomorph reservoir behind the rebound after denosumab, and parameter sets made before
either (model 1.3, 1.4) still load."""

from __future__ import annotations

import pytest
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


# ---------------------------------------------------------------- denosumab: the osteomorph pool


def test_a_set_made_before_the_osteomorph_reservoir_loads_with_it_switched_off(tmp_path, params):
    """Model 1.4 added the osteomorph state (docs/model/equations.md section 6.3.1): an older set
    loads with phi_W = 0, the earlier model, and says so in the source."""
    data = params.model_dump(mode="json")
    for name in (
        "osteomorph_share",
        "osteomorph_refusion_per_day",
        "osteomorph_death_per_day",
        "osteomorph_refusion_hill",
    ):
        del data["parameters"][name]
    path = tmp_path / "older.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    older = load_parameter_set(path)
    assert older.parameters["osteomorph_share"].value == 0.0
    assert "before model 1.4" in older.parameters["osteomorph_share"].source


@pytest.mark.parametrize(
    ("drug", "dose_mg", "interval_days"),
    [("anastrozole", 1.0, 1.0), ("zoledronic_acid", 4.0, 182.0), ("alendronate", 70.0, 7.0)],
)
def test_the_osteomorph_pool_stays_empty_without_rankl_blockade(
    make_patient, tx, drug, dose_mg, interval_days
):
    """Estrogen deprivation raises RANK signalling and bisphosphonates act through osteoclast
    removal, so no osteoclast fissions into an osteomorph: the reservoir changes nothing
    (section 6.3.1), on treatment and after stopping."""
    shipped = default_parameter_set()
    runs = [
        simulate(make_patient(parameter_set=p), [tx(drug, dose_mg, interval_days, 0, 36)], 4 * YEAR)
        for p in (shipped, shipped.with_values(osteomorph_share=0.0))
    ]
    assert abs(runs[0].bmd_ratio - runs[1].bmd_ratio).max() < 1e-4  # < 0.01 pp
    assert abs(runs[0].osteoclasts - runs[1].osteoclasts).max() < 1e-3


def test_denosumab_fills_the_pool_and_stopping_releases_it_into_a_rebound(make_patient, tx):
    """DEFEND off-treatment extension (Bone HG et al., J Clin Endocrinol Metab 2011;96:972): after
    2 years of denosumab, CTX is above baseline within 3 months of the end of treatment (month
    27) and BMD falls back towards baseline, still above placebo at month 48; the same patient
    without the reservoir (phi_W = 0, the earlier model) loses clearly less in the year after
    stopping 8 years of denosumab
    (McClung MR et al., Osteoporos Int 2017;28:1723: 6.7 % spine, 6.6 % hip)."""
    shipped = default_parameter_set()
    patient = make_patient(parameter_set=shipped, age_years=59)
    # injections at months 0, 6, 12 and 18; treatment ends at month 24
    result = simulate(patient, [tx("denosumab", 60.0, 182.0, 0, 23)], 4 * YEAR + 1)
    bmd = result.bmd_ratio[:, :, 0]
    month = lambda m: round(m * DAYS_PER_YEAR / 12)  # noqa: E731
    assert result.osteoclasts[month(27), 0] > 1.0
    assert bmd[month(48), LS] < bmd[month(24), LS] - 0.03
    placebo = simulate(patient, [], 4 * YEAR + 1).bmd_ratio[:, :, 0]
    assert (bmd[month(48)] > placebo[month(48)]).all()  # still above placebo at month 48
    without = make_patient(parameter_set=shipped.with_values(osteomorph_share=0.0), age_years=63)
    with_pool = make_patient(parameter_set=shipped, age_years=63)
    losses = []
    for person in (without, with_pool):
        eight = simulate(person, [tx("denosumab", 60.0, 182.0, 0, 96)], 9 * YEAR + 1)
        spine = eight.bmd_ratio[:, LS, 0]
        losses.append(100.0 * (1.0 - spine[9 * YEAR] / spine[8 * YEAR]))
    assert losses[1] > losses[0] + 1.0
