"""Modeling-based formation under suppressed resorption (model.py docstring; issue 14 item 2):
continued gains under denosumab, earlier levelling off under a bisphosphonate, nothing at
baseline or under estrogen deprivation, and older parameter sets still load."""

from __future__ import annotations

import numpy as np
import yaml

from bonecast.simulation import DAYS_PER_YEAR, SITES, load_parameter_set, simulate
from bonecast.simulation.model import ModelConstants, ModelState, rates
from bonecast.simulation.parameters import NEUTRAL_ADDITIONS

LS = SITES.index("lumbar_spine")
YEAR = round(DAYS_PER_YEAR)


def _spine_pct(patient, treatments, years: int):
    result = simulate(patient, list(treatments), years * YEAR + 1)
    return 100.0 * (result.bmd_ratio[:, LS, 0] - 1.0)


def test_no_modeling_formation_at_baseline(typical_patient, untreated_inputs):
    """c = 1 leaves no quiescent surface: formation is the remodeling formation alone."""
    values = dict(typical_patient.values)
    const = ModelConstants.from_values(values, 1, typical_patient.fmp_day, (), [64.0])
    off = ModelConstants.from_values(
        {**values, "modeling_t": np.zeros(1), "modeling_c": np.zeros(1)},
        1,
        typical_patient.fmp_day,
        (),
        [64.0],
    )
    state = ModelState.baseline(const)
    np.testing.assert_array_equal(
        rates(const, state, untreated_inputs, 0.0).bone_formation,
        rates(off, state, untreated_inputs, 0.0).bone_formation,
    )
    suppressed = ModelState.baseline(const)
    suppressed.c[:] = 0.2
    gained = rates(const, suppressed, untreated_inputs, 0.0).bone_formation
    remodeling = rates(off, suppressed, untreated_inputs, 0.0).bone_formation
    expected = const.rho * const.modeling * 0.8
    np.testing.assert_allclose(gained - remodeling, expected, rtol=1e-12)


def test_untreated_and_anastrozole_courses_do_not_depend_on_modeling(make_patient, params, tx):
    """Resorption at or above baseline: the term is off, whatever its size."""
    off = params.with_values(modeling_t=0.0, modeling_c=0.0)
    on = params.with_values(modeling_t=0.3, modeling_c=0.3)
    for plan in ([], [tx("anastrozole", 1.0, 1.0)]):
        a = _spine_pct(make_patient(parameter_set=off), plan, 5)
        b = _spine_pct(make_patient(parameter_set=on), plan, 5)
        np.testing.assert_allclose(a, b, atol=1e-9)


def test_denosumab_keeps_gaining_while_alendronate_levels_off(make_patient, params, tx):
    """FREEDOM extension (Bone 2017, Lancet Diabetes Endocrinol 5:513): spine BMD still rising
    in years 5-10 of denosumab; FLEX (Black 2006, JAMA 296:2927): alendronate's gains slow."""
    patient = make_patient(parameter_set=params, age_years=72)
    den = _spine_pct(patient, [tx("denosumab", 60.0, 182.0, stop_month=120)], 10)
    aln = _spine_pct(patient, [tx("alendronate", 10.0, 1.0, stop_month=120)], 10)
    five, ten = 5 * YEAR, 10 * YEAR
    den_late, aln_late = den[ten] - den[five], aln[ten] - aln[five]
    assert den_late > 1.0  # at least 0.2 pp a year after year 5
    assert den_late > 1.5 * aln_late
    # alendronate: years 5-10 add less than years 0-5 (levelling off)
    assert aln_late < aln[five]


def test_a_parameter_set_without_the_modeling_term_loads_with_it_off(tmp_path, params):
    data = params.model_dump(mode="json")
    for name in NEUTRAL_ADDITIONS:
        del data["parameters"][name]
    path = tmp_path / "older.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    older = load_parameter_set(path)
    assert older.values()["modeling_t"] == 0.0 and older.values()["modeling_c"] == 0.0
    assert "recalibrate" in older.parameters["modeling_t"].source
