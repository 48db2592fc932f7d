"""The parameter set: complete, in the right units, sourced, and loaded strictly."""

from __future__ import annotations

import copy

import pytest
import yaml
from pydantic import ValidationError

from bonecast.simulation import SITES, ParameterSet, default_parameter_set, load_parameter_set
from bonecast.simulation.parameters import PARAMETER_UNITS


@pytest.fixture(scope="module")
def raw(params: ParameterSet) -> dict:
    """The default set as plain YAML-able data."""
    return params.model_dump(mode="json")


def _write(tmp_path, data) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


def test_default_set_loads_and_is_cached():
    default = default_parameter_set()
    assert load_parameter_set() is default
    assert set(default.parameters) == set(PARAMETER_UNITS)
    for entry in default.parameters.values():
        assert entry.unit.strip() and entry.source.strip()


def test_starting_set_is_the_uncalibrated_one(params):
    assert params.name == "aibl2c-start"
    assert params.provenance.get("calibrated") is False
    assert set(params.parameters) == set(PARAMETER_UNITS)


def test_every_parameter_has_unit_symbol_description_and_source(params):
    for name, entry in params.parameters.items():
        assert entry.unit.strip(), name
        assert entry.unit == PARAMETER_UNITS[name], name
        assert entry.source.strip(), name
        assert entry.symbol.strip(), name
        assert entry.description.strip(), name
        if entry.prior is not None:
            low, high = entry.prior
            assert low < high, name
    for site in SITES:
        assert params.reference_bmd[site].source.strip()
        assert params.residual_error_pp[site].source.strip()
    for item in params.variability:
        assert item.source.strip(), item.parameters


@pytest.mark.parametrize(
    ("name", "value"),
    [
        # docs/model/equations.md section 6.7 / 7.5: OpenBoneMin denosumab PK converted to days,
        # litres, mg
        ("den.ka_per_day", 0.142),
        ("den.f_sc", 0.729),
        ("den.vc_l", 2.34),
        ("den.vp_l", 1.324),
        ("den.q_l_per_day", 0.448),
        ("den.cl_l_per_day", 0.066),
        ("den.vmax_mg_per_day", 0.0746),
        ("den.km_mg_l", 0.188),
        # docs/model/parameters.md section 7.4: oral F and bone uptake of the bisphosphonates
        ("bp.alendronate.f_oral", 0.0064),
        ("bp.risedronate.f_oral", 0.0063),
        ("bp.ibandronate.f_oral", 0.006),
        ("bp.zoledronic_acid.f_bone", 0.6),
        ("bp.alendronate.f_bone", 0.5),
        ("bp.risedronate.f_bone", 0.4),
        ("bp.ibandronate.f_bone", 0.45),
        ("bp.zoledronic_acid.ec50_mg", 0.080),
        ("bp.ibandronate.t_s_days", 60.0),
        ("bp_release_per_year", 0.10),
        # docs/model/parameters.md sections 7.1-7.3 starting values
        ("ai.anastrozole.suppression", 0.85),
        ("ai.letrozole.suppression", 0.95),
        ("ai.exemestane.suppression", 0.90),
        ("alpha_L", 9.31),
        ("theta_D_per_nM", 11.8),
        ("gamma_T", 0.823),
        ("delta0_t", 0.0245),
        ("delta0_c", 0.245),
        ("deltaE_c", 0.267),
        ("nu_t", 2.49),
        ("nu_c", 2.49),
        ("f_lumbar_spine", 0.514),
        ("f_total_hip", 0.20),
        ("f_femoral_neck", 0.35),
        ("kappa_per_year", 1.386),
    ],
)
def test_values_match_the_specification(params, name, value):
    assert params.parameters[name].value == pytest.approx(value, rel=1e-12)


def test_rates_in_the_file_match_their_stated_half_lives(params):
    """k_c = 1/14 d, k_q = 1/30 d, k_T = ln2/7 d, kappa = ln2/0.5 y
    (docs/model/parameters.md sections 7.1-7.3)."""
    v = params.values()
    assert v["k_c_per_day"] == pytest.approx(1 / 14, rel=1e-8)
    assert v["k_q_per_day"] == pytest.approx(1 / 30, rel=1e-8)
    assert v["k_T_per_day"] == pytest.approx(0.6931 / 7, rel=2e-3)
    assert v["kappa_per_year"] == pytest.approx(0.6931 / 0.5, rel=1e-3)


def test_round_trip_through_a_file(tmp_path, params, raw):
    loaded = load_parameter_set(_write(tmp_path, raw))
    assert loaded.values() == params.values()
    assert loaded.digest() == params.digest()


def test_wrong_unit_is_refused_naming_the_parameter(tmp_path, raw):
    data = copy.deepcopy(raw)
    data["parameters"]["rho_t_per_year"]["unit"] = "1/day"
    with pytest.raises(ValidationError) as excinfo:
        load_parameter_set(_write(tmp_path, data))
    message = str(excinfo.value)
    assert "rho_t_per_year" in message
    assert "1/year" in message


@pytest.mark.parametrize("name", ["alpha_L", "den.km_mg_l", "bp.risedronate.ec50_mg"])
def test_missing_parameter_is_refused_naming_it(tmp_path, raw, name):
    data = copy.deepcopy(raw)
    del data["parameters"][name]
    with pytest.raises(ValidationError, match="missing") as excinfo:
        load_parameter_set(_write(tmp_path, data))
    assert name in str(excinfo.value)


def test_unknown_parameter_is_refused_naming_it(tmp_path, raw):
    data = copy.deepcopy(raw)
    data["parameters"]["alpha_X"] = dict(data["parameters"]["alpha_L"])
    with pytest.raises(ValidationError, match="alpha_X"):
        load_parameter_set(_write(tmp_path, data))


@pytest.mark.parametrize("field", ["unit", "source", "value"])
def test_parameter_entry_needs_its_fields(tmp_path, raw, field):
    data = copy.deepcopy(raw)
    del data["parameters"]["nu_t"][field]
    with pytest.raises(ValidationError, match=field):
        load_parameter_set(_write(tmp_path, data))


def test_reference_bmd_needs_every_site(tmp_path, raw):
    data = copy.deepcopy(raw)
    del data["reference_bmd"]["femoral_neck"]
    with pytest.raises(ValidationError, match="reference_bmd"):
        load_parameter_set(_write(tmp_path, data))


def test_variability_of_an_unknown_parameter_is_refused(tmp_path, raw):
    data = copy.deepcopy(raw)
    data["variability"].append(
        {"parameters": ["not_a_parameter"], "distribution": "lognormal", "cv": 0.3, "source": "x"}
    )
    with pytest.raises(ValidationError, match="not_a_parameter"):
        load_parameter_set(_write(tmp_path, data))


def test_lognormal_variability_needs_a_cv(tmp_path, raw):
    data = copy.deepcopy(raw)
    data["variability"].append(
        {"parameters": ["alpha_O"], "distribution": "lognormal", "sd": 0.3, "source": "x"}
    )
    with pytest.raises(ValidationError, match="cv"):
        load_parameter_set(_write(tmp_path, data))


def test_with_values_replaces_only_what_is_named(params):
    changed = params.with_values(**{"delta0_t": 0.0, "den.km_mg_l": 0.2})
    assert changed.parameters["delta0_t"].value == 0.0
    assert changed.parameters["den.km_mg_l"].value == 0.2
    assert changed.parameters["delta0_t"].unit == "1"
    assert params.parameters["delta0_t"].value == 0.0245  # the original is untouched
    others = {k: v for k, v in changed.values().items() if k not in ("delta0_t", "den.km_mg_l")}
    assert others == {k: v for k, v in params.values().items() if k in others}
    assert changed.digest() != params.digest()
    with pytest.raises(KeyError, match="delta0_x"):
        params.with_values(delta0_x=1.0)
