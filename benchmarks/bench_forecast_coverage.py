"""Benchmark: hidden-scan coverage and speed of the personal forecast (issue 15 item 1).

Simulates ``--women`` women from the forecast's own generative model
(:mod:`bonecast.clinical.forecast_coverage`: anastrozole from the start, Hologic DXA at 0, 1, 2
and 3 years with the ISCD default precision error, s-CTX at 0, 1 and 2 years), hides each one's
3-year scan, forecasts from the rest with ``--twins`` twins and reports how often the 5-95 %
band one year later holds the hidden scan (goal: 85-95 %, by site and overall, with the share
below and above the band). Then times the 5-year assessment forecast of the example patients
(median of ``--repeats`` runs each, compiled engine, after a warm-up). Writes
``bench_forecast_coverage.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bonecast.clinical import load_patient
from bonecast.clinical.forecast import DEFAULT_TWINS, forecast, prepare_engine
from bonecast.clinical.forecast_coverage import hidden_scan_coverage

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "patients"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--women", type=int, default=300)
    parser.add_argument("--twins", type=int, default=DEFAULT_TWINS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    args = parser.parse_args()
    prepare_engine()
    start = time.perf_counter()
    coverage = hidden_scan_coverage(args.women, twins=args.twins)
    elapsed = time.perf_counter() - start
    print(
        f"hidden-scan coverage of the 5-95 % band: {coverage.covered_pct:.1f} % of "
        f"{3 * coverage.women} scans ({coverage.women} women x 3 sites, {coverage.twins} twins; "
        f"{coverage.below_pct:.1f} % below, {coverage.above_pct:.1f} % above; {elapsed:.0f} s)"
    )
    for site, pct in coverage.covered_pct_by_site.items():
        print(f"  {site}: {pct:.1f} %")
    timings = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        patient = load_patient(path)
        runs = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            forecast(patient, [])
            runs.append(time.perf_counter() - began)
        timings[path.stem] = round(statistics.median(runs), 3)
        print(f"forecast {path.stem}: {timings[path.stem]:.3f} s (median of {args.repeats})")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"coverage": coverage.model_dump(), "seconds": round(elapsed), "forecast_s": timings}
    (args.out / "bench_forecast_coverage.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
