"""Bring your own population: a table of patients becomes virtual patients with those values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bonecast as bc
from bonecast.simulation.parameters import default_parameter_set


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [10, 11, 12],
            "age_years": [58.0, 71.0, 66.0],
            "sex": ["female", "female", "male"],
            "t_score_lumbar_spine": [-2.5, np.nan, 0.3],
            "bmd_total_hip_g_cm2": [np.nan, 0.80, np.nan],
            "estradiol_pg_ml": [4.0, np.nan, np.nan],
        }
    )


def test_the_table_values_are_the_patients_baseline() -> None:
    result = bc.simulate(
        bc.Population.from_frame(_table()), bc.Regimen.standard("anastrozole"), days=60
    )
    start = result.to_frame()
    start = start[start.time == 0].pivot(index="id", columns="quantity", values="value")
    assert start.loc[10, "t_score_lumbar_spine"] == pytest.approx(-2.5)
    assert start.loc[11, "bmd_total_hip"] == pytest.approx(0.80)
    assert start.loc[12, "t_score_lumbar_spine"] == pytest.approx(0.3)
    assert start.loc[10, "estradiol"] == pytest.approx(4.0)  # untreated at day 0
    assert result.covariates()["sex"].tolist() == ["female", "female", "male"]
    assert result.covariates()["age_years"].tolist() == [58.0, 71.0, 66.0]


def test_bmd_and_t_score_agree_through_the_reference_data() -> None:
    mean, sd = default_parameter_set().reference_bmd_columns()
    result = bc.simulate(
        bc.Population.from_frame(_table()), bc.Regimen.standard("tamoxifen"), days=30
    )
    t_score = result.values("t_score_total_hip")[0, 1]
    assert t_score == pytest.approx((0.80 - mean[1, 0]) / sd[1, 0])


def test_untabled_parameters_are_shared_with_a_sample_of_the_same_ids() -> None:
    table = pd.DataFrame({"id": [0, 1], "age_years": [60.0, 60.0]})
    own = bc.Population.from_frame(table, seed=5).build()
    sampled = bc.Population.sample(2, seed=5).build()
    for name in own.values:
        np.testing.assert_array_equal(own.values[name], sampled.values[name])


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("age_years", 12.0, "row 0: age_years"),
        ("t_score_lumbar_spine", -9.0, "row 0: t_score_lumbar_spine"),
        ("sex", "other", "row 0: sex"),
        ("weight", 60.0, "row 0: weight"),
    ],
)
def test_a_bad_cell_names_its_row_and_column(column: str, value: object, message: str) -> None:
    table = pd.DataFrame({"age_years": [60.0], column: [value]})
    with pytest.raises(ValueError, match=message):
        bc.Population.from_frame(table)


def test_a_site_given_twice_is_refused() -> None:
    table = pd.DataFrame(
        {"age_years": [60.0], "t_score_total_hip": [-1.0], "bmd_total_hip_g_cm2": [0.8]}
    )
    with pytest.raises(ValueError, match="not both"):
        bc.Population.from_frame(table)
