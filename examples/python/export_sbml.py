"""Tutorial: export a patient's model to SBML and run it in another simulator.

The SBML document (Level 3 Version 2) holds the model's equations, the patient's parameters and
the regimen as events; any SBML tool (Tellurium/libRoadRunner, COPASI) can run it. When
libRoadRunner is installed, this script runs the document and compares the lumbar-spine BMD
change with bonecast's own integrator.

Run: ``python examples/python/export_sbml.py [OUT.xml]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import bonecast as bc

YEARS = 3


def main(out: Path | None = None) -> tuple[float, float | None]:
    """Write the SBML; return bonecast's and (when installed) libRoadRunner's 3-year change."""
    typical = bc.Population.sample(1, seed=0, variability=False)
    regimen = bc.Regimen.standard("anastrozole") + bc.Regimen.standard("zoledronic_acid")
    sbml = bc.export_sbml(typical, regimen, years=YEARS)
    if out is not None:
        out.write_text(sbml, encoding="utf-8")
        print(f"wrote {out} ({len(sbml)} characters)")
    ours = float(
        bc.simulate(typical, regimen, years=YEARS).values("bmd_pct_change_lumbar_spine")[-1, 0]
    )
    print(f"bonecast: lumbar spine {ours:+.2f} % at {YEARS} years")
    try:
        import roadrunner
    except ImportError:
        print("libRoadRunner is not installed (pip install libroadrunner); skipping the run")
        return ours, None
    runner = roadrunner.RoadRunner(sbml)
    runner.timeCourseSelections = ["time", "pct_LS"]
    horizon = round(YEARS * 365.25)
    theirs = float(runner.simulate(0, horizon, horizon + 1)[-1, 1])
    print(f"libRoadRunner: lumbar spine {theirs:+.2f} % at {YEARS} years")
    return ours, theirs


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
