"""Tutorial: adherence lowers the bone loss of a 5-year aromatase-inhibitor trial.

Trials report bone loss under full exposure; in practice patients miss doses and about a third
stop adjuvant hormonal therapy early (Hershman et al., J Clin Oncol 2010: 32 % discontinued
within 4.5 years). Here one virtual population takes anastrozole 1 mg daily for 5 years three
ways: fully adherent; taking 80 % of doses; and taking 80 % of doses with a discontinuation
hazard of 0.086 per year (exp(-0.086 x 4.5) = 0.68 still on treatment at 4.5 years).

Run: ``python examples/python/adherence_ai_trial.py``.
"""

from __future__ import annotations

import math

import pandas as pd

import bonecast as bc

N = 200
HAZARD = -math.log(0.68) / 4.5  # per year, 32 % stopped by 4.5 years


def main(n: int = N) -> pd.Series:
    """Mean 5-year lumbar-spine BMD change (%) per adherence scenario."""
    population = bc.Population.sample(n, seed=5)
    scenarios = {
        "fully adherent": bc.Regimen.standard("anastrozole"),
        "80 % of doses": bc.Regimen.standard("anastrozole", adherence=0.8),
        "80 % of doses, stops early": bc.Regimen.standard(
            "anastrozole",
            adherence={"take_probability": 0.8, "discontinuation_per_year": HAZARD},
        ),
    }
    loss = pd.Series(
        {
            name: bc.simulate(population, regimen, years=5)
            .values("bmd_pct_change_lumbar_spine")[-1]
            .mean()
            for name, regimen in scenarios.items()
        },
        name="lumbar spine, mean % change at 5 years",
    ).round(2)
    print(loss.to_string())
    return loss


if __name__ == "__main__":
    main()
