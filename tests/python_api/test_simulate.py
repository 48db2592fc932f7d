"""The public API: simulate a population under a regimen and read it as data frames."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import bonecast as bc
from bonecast.simulation.parameters import SITES, default_parameter_set
from bonecast.simulation.population import PopulationSpec, sample_population
from bonecast.simulation.regimens import Treatment
from bonecast.simulation.solver import simulate as simulate_core


def test_the_documented_one_liner_prints_a_long_frame() -> None:
    code = (
        "import bonecast as bc; r = bc.simulate(bc.Population.sample(100, seed=1), "
        "bc.Regimen.standard('anastrozole'), years=5); print(r.to_frame().head())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "id" in done.stdout and "time" in done.stdout and "[5 rows x" in done.stdout


def test_long_frame_has_every_patient_time_and_quantity_with_units() -> None:
    result = bc.simulate(
        bc.Population.sample(20, seed=1), bc.Regimen.standard("letrozole"), years=1
    )
    frame = result.to_frame()
    assert list(frame.columns[:5]) == ["id", "time", "quantity", "value", "unit"]
    assert {"age_years", "sex", "baseline_t_score_lumbar_spine"} <= set(frame.columns)
    # women: every quantity but testosterone, 13 monthly times, 20 patients
    assert len(frame) == 20 * 13 * (len(bc.QUANTITY_UNITS) - 1)
    assert "testosterone" not in set(frame["quantity"])
    spine = frame[(frame.quantity == "bmd_pct_change_lumbar_spine") & (frame.time == 365)]
    assert (spine["unit"] == "%").all()
    assert spine["value"].mean() < -1.0  # an aromatase inhibitor takes bone within a year


def test_api_is_the_core_simulator_not_a_copy() -> None:
    params = default_parameter_set()
    spec = PopulationSpec(n=10, menopausal_status="postmenopausal", age_years=60.0)
    core = simulate_core(
        sample_population(spec, params, seed=3),
        [Treatment(drug="anastrozole", dose_mg=1, interval_days=1, start_month=0)],
        400,
        seed=3,
        record_days=[400],
    )
    api = bc.simulate(
        bc.Population.sample(10, seed=3, age_years=60.0),
        bc.Regimen.standard("anastrozole"),
        days=400,
    )
    np.testing.assert_array_equal(api.values("bmd_lumbar_spine")[-1], core.bmd_g_cm2()[-1, 0])


def test_to_xarray_has_quantities_over_time_and_id() -> None:
    result = bc.simulate(
        bc.Population.sample(5, seed=1), bc.Regimen.standard("exemestane"), years=1
    )
    data = result.to_xarray()
    assert data["estradiol"].dims == ("time", "id")
    assert data["estradiol"].attrs["units"] == "pg/mL"
    assert data["age_years"].dims == ("id",)


def test_horizon_must_be_given_once() -> None:
    population = bc.Population.sample(2, seed=1)
    with pytest.raises(ValueError, match="years/days"):
        bc.simulate(population, bc.Regimen.standard("anastrozole"))
    with pytest.raises(ValueError, match="years/days"):
        bc.simulate(population, bc.Regimen.standard("anastrozole"), years=1, days=30)


def test_bad_inputs_name_the_field() -> None:
    with pytest.raises(ValueError, match="unknown drug 'aspirin'"):
        bc.Regimen.standard("aspirin")
    with pytest.raises(ValueError, match="age_years"):
        bc.Population.sample(3, age_years=150)
    with pytest.raises(ValueError, match="adherence"):
        bc.Regimen.standard("denosumab", adherence=0.5)  # injected: no dose-taking probability


def test_import_is_lazy_and_every_public_name_resolves() -> None:
    code = "import sys, bonecast; print('bonecast.simulation' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False"
    for name in bc.__all__:
        assert getattr(bc, name) is not None
    with pytest.raises(AttributeError):
        _ = bc.no_such_name  # type: ignore[attr-defined]


def test_covariates_cover_the_sites() -> None:
    result = bc.simulate(bc.Population.sample(3, seed=2), bc.Regimen.standard("tamoxifen"), days=31)
    covariates = result.covariates()
    assert [f"baseline_t_score_{s}" for s in SITES] == list(covariates.columns[-3:])
