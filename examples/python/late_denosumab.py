"""Tutorial: a denosumab injection given 4 months late, and the rebound that follows.

Denosumab (60 mg subcutaneously every 6 months) suppresses bone resorption only while the drug
is in the blood; when an injection is late, resorption rebounds above its untreated level and
bone is lost quickly (the "rebound" of denosumab cessation; Bone et al., J Clin Endocrinol Metab
2011). Half of a virtual population gets every injection on time; the other half gets the third
injection 4 months late (then every 6 months from the late one). Per-patient dose events say
who got what and when.

Run: ``python examples/python/late_denosumab.py``.
"""

from __future__ import annotations

import pandas as pd

import bonecast as bc

N = 100  # patients (half on time, half late)
INTERVAL = 182.0  # days between injections
LATE = 122.0  # days: 4 months


def dose_events(n: int) -> bc.DoseEvents:
    """Five injections on time for ids < n/2; the third 4 months late for the others."""
    rows = []
    for pid in range(n):
        times = [k * INTERVAL for k in range(5)]
        if pid >= n // 2:
            times = times[:2] + [t + LATE for t in times[2:]]
        rows += [
            {"id": pid, "time": t, "drug": "denosumab", "amount": 60.0, "route": "sc"}
            for t in times
        ]
    return bc.DoseEvents.from_frame(pd.DataFrame(rows))


def main(n: int = N) -> pd.DataFrame:
    """Mean lumbar-spine BMD change and CTX change by group, every 2 months over 2.5 years."""
    population = bc.Population.sample(n, seed=11, baseline_t_score={"lumbar_spine": -2.0})
    result = bc.simulate(population, dose_events(n), years=2.5)
    frame = result.to_frame(["bmd_pct_change_lumbar_spine", "ctx"])
    frame["group"] = ["late" if pid >= n // 2 else "on time" for pid in frame["id"]]
    frame["month"] = (frame["time"] / (365.25 / 12)).round().astype(int)
    table = (
        frame[frame["month"] % 2 == 0]
        .pivot_table(index="month", columns=["quantity", "group"], values="value", aggfunc="mean")
        .round(1)
    )
    print("Mean % change from baseline (lumbar spine BMD; CTX, the resorption marker):")
    print(table.to_string())
    return table


if __name__ == "__main__":
    main()
