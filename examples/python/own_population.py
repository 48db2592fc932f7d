"""Tutorial: bring your own population.

A table of real (here invented) patients becomes virtual patients with those covariates: age,
sex, baseline T-score or BMD (g/cm2) per site, serum estradiol (pg/mL). What the table does not
give (bone-turnover parameters, drug response) is drawn per patient from the calibrated
between-patient variability; a site without a value is drawn as in a sampled population.

Run: ``python examples/python/own_population.py`` (reads ``cohort.csv`` next to it).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import bonecast as bc

COHORT = Path(__file__).with_name("cohort.csv")


def main() -> pd.DataFrame:
    """Each patient's lowest T-score at baseline and after 3 years of letrozole."""
    cohort = pd.read_csv(COHORT)
    result = bc.simulate(
        bc.Population.from_frame(cohort, seed=2), bc.Regimen.standard("letrozole"), years=3
    )
    frame = result.to_frame(
        [f"t_score_{site}" for site in ("lumbar_spine", "total_hip", "femoral_neck")]
    )
    lowest = frame.groupby(["id", "time"])["value"].min().unstack("time")
    table = pd.DataFrame({"baseline": lowest[0.0], "3 years": lowest[lowest.columns.max()]}).round(
        2
    )
    table["osteoporosis (T <= -2.5) at 3 years"] = table["3 years"] <= -2.5
    print("Lowest T-score (lumbar spine, total hip, femoral neck):")
    print(table.to_string())
    return table


if __name__ == "__main__":
    main()
