"""Benchmark: whole ``bonecast`` commands as a user runs them (issue 17), hyperfine-style.

Every command runs in a fresh interpreter (``python -m bonecast.cli``, the console script's
entry point), ``--runs`` times after one untimed warm-up, and is reported as min / median / max
wall time:

* start-up: ``python -c "import bonecast"``, ``bonecast --help``, ``bonecast trial run --help``;
* ``bonecast trial run SPEC`` with default settings on 10,000 women x 10 years (anastrozole
  1 mg daily plus zoledronic acid 4 mg IV every 182 days, months 0-60; BMD at 5 months), and
  the same with ``--engine numpy`` (the former default) as the baseline of the same run;
* the first ``trial run`` after install: Numba's cache pointed at an empty folder
  (``NUMBA_CACHE_DIR``), so the kernel is compiled from scratch once;
* ``bonecast assess`` of one example patient with its 5-year forecast (warm: the on-disk
  kernel cache is filled);
* the libRoadRunner loop on the same women: per patient, her own exported SBML
  (:func:`bonecast.simulation.sbml.to_sbml`, her parameters and dose events) loaded into
  ``roadrunner.RoadRunner`` and simulated over 10 years (output monthly, CVODE rtol 1e-8, atol
  1e-10); and, as the loop's best case, the simulation alone (reset + simulate of the loaded
  model). Timed on the first ``--rr-patients`` women, the median multiplied by ``--patients``.

The ratios ``trial run`` (defaults) / libRoadRunner loop use the medians, measured in this
run. Timings vary with the load of the machine: compare ratios, not seconds. Writes
``bench_commands.json`` to ``--out``.

Usage::

    python benchmarks/bench_commands.py [--runs 5] [--patients 10000] [--rr-patients 50]
        [--skip-numpy] [--out results/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PATIENT = ROOT / "examples" / "patients" / "osteopenic_anastrozole_risk_factors.json"
YEARS = 10
GOAL_RR_RATIO = 130.0
"""Target: ``trial run`` (defaults) at least this many times faster than the RR loop."""
GOAL_HELP_S = 0.5
"""Target wall time of ``bonecast --help``, s."""
GOAL_ASSESS_S = 1.5
"""Target wall time of a warm ``bonecast assess`` (one patient, 5-year forecast), s."""

ARM = "anastrozole + zoledronic acid"


def trial_spec(patients: int) -> dict[str, object]:
    """The benchmark trial: one arm, ``patients`` women, 10 years."""
    return {
        "name": "bench",
        "seed": 1,
        "population": {
            "n": patients,
            "menopausal_status": "postmenopausal",
            "age_years": {"mean": 64, "sd": 8},
            "baseline_t_score": {"lumbar_spine": {"mean": -1.5, "sd": 0.8}},
            "variability": True,
        },
        "arms": [
            {
                "name": ARM,
                "treatments": [
                    {"drug": "anastrozole", "dose_mg": 1, "interval_days": 1, "start_month": 0,
                     "stop_month": 60},
                    {"drug": "zoledronic_acid", "dose_mg": 4, "route": "iv",
                     "interval_days": 182, "start_month": 0, "stop_month": 60},
                ],
            }
        ],
        "outputs": {
            "quantities": ["lumbar_spine", "total_hip", "femoral_neck"],
            "months": [12, 24, 60, 84, 12 * YEARS],
        },
    }  # fmt: skip


@dataclass(frozen=True)
class Timing:
    """Wall times of one command, s."""

    name: str
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def row(self) -> str:
        low, high = min(self.seconds), max(self.seconds)
        return (
            f"{self.name:<52} {low:8.3f} {self.median:8.3f} {high:8.3f}  ({len(self.seconds)} runs)"
        )


def environment(**extra: str) -> dict[str, str]:
    """This interpreter's environment with the checkout's sources first on the path."""
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_once(args: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - began


def timed(name: str, args: list[str], runs: int, warm_up: bool = True, **env: str) -> Timing:
    """``runs`` wall times of ``args`` in fresh processes, after one untimed run."""
    environ = environment(**env)
    if warm_up:
        run_once(args, environ)
    timing = Timing(name, [run_once(args, environ) for _ in range(runs)])
    print(timing.row(), flush=True)
    return timing


def roadrunner_loop(spec: Path, patients: int) -> tuple[Timing, Timing] | None:
    """libRoadRunner patient by patient: per patient, her own SBML (``to_sbml``: her parameters
    and dose events) exported, loaded and simulated over 10 years (output monthly); and the
    simulation alone (reset + simulate of the loaded model), the best case of a loop."""
    try:
        import roadrunner
    except ImportError:
        print("libRoadRunner is not installed: no loop baseline", flush=True)
        return None
    from bonecast.simulation import default_parameter_set, load_trial_spec, sample_population
    from bonecast.simulation.sbml import to_sbml

    trial = load_trial_spec(spec)
    params = default_parameter_set()
    treatments = trial.arms[0].treatments
    times = [float(day) for day in range(0, trial.horizon_days + 1, 30)]
    whole, alone = [], []
    for i in range(patients):
        one = sample_population(trial.population, params, trial.seed, i, i + 1)
        began = time.perf_counter()
        rr = roadrunner.RoadRunner(to_sbml(one, treatments, trial.horizon_days, seed=trial.seed))
        rr.integrator.relative_tolerance = 1e-8
        rr.integrator.absolute_tolerance = 1e-10
        rr.simulate(times=times)
        whole.append(time.perf_counter() - began)
        began = time.perf_counter()
        rr.resetAll()
        rr.simulate(times=times)
        alone.append(time.perf_counter() - began)
    timings = (
        Timing("libRoadRunner, one patient (export + load + simulate)", whole),
        Timing("libRoadRunner, one patient (simulate only)", alone),
    )
    for timing in timings:
        print(timing.row(), flush=True)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--rr-patients", type=int, default=50)
    parser.add_argument("--skip-numpy", action="store_true", help="No --engine numpy baseline.")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args(argv)
    bonecast = [sys.executable, "-m", "bonecast.cli"]
    results: dict[str, Timing] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = folder / "trial.yaml"
        spec.write_text(yaml.safe_dump(trial_spec(args.patients)), encoding="utf-8")
        out = str(folder / "rows.csv")
        print(f"{'command':<52} {'min s':>8} {'median':>8} {'max':>8}", flush=True)
        results["import"] = timed(
            "python -c 'import bonecast'", [sys.executable, "-c", "import bonecast"], args.runs
        )
        results["help"] = timed("bonecast --help", [*bonecast, "--help"], args.runs)
        results["trial_help"] = timed(
            "bonecast trial run --help", [*bonecast, "trial", "run", "--help"], args.runs
        )
        trial = [*bonecast, "trial", "run", str(spec), "--out", out]
        results["first_run"] = timed(
            "bonecast trial run, first after install (compile)",
            trial,
            1,
            warm_up=False,
            NUMBA_CACHE_DIR=str(folder / "numba-cache"),
        )
        results["trial"] = timed(
            f"bonecast trial run ({args.patients:,} x {YEARS} y, defaults)", trial, args.runs
        )
        if not args.skip_numpy:
            results["trial_numpy"] = timed(
                "bonecast trial run --engine numpy",
                [*trial, "--engine", "numpy"],
                max(1, args.runs // 2),
                warm_up=False,
            )
        results["assess"] = timed(
            "bonecast assess (one patient, 5-year forecast)",
            [*bonecast, "assess", str(PATIENT), "--format", "json"],
            args.runs,
        )
        rr = roadrunner_loop(spec, args.rr_patients)
    ratios: dict[str, float] = {}
    if rr is not None:
        for timing, key in zip(rr, ("roadrunner_loop", "roadrunner_simulate_only"), strict=True):
            loop_s = timing.median * args.patients
            ratios[key] = loop_s / results["trial"].median
            print(
                f"{timing.name.split(', ')[1]} x {args.patients:,} patients (extrapolated): "
                f"{loop_s:.1f} s; bonecast trial run (defaults) is {ratios[key]:.0f}x faster"
            )
        print(f"goal: >= {GOAL_RR_RATIO:.0f}x the libRoadRunner loop")
    if "trial_numpy" in results:
        ratios["numpy_vs_default"] = results["trial_numpy"].median / results["trial"].median
        print(f"trial run: --engine numpy / defaults = {ratios['numpy_vs_default']:.1f}x")
    print(
        f"bonecast --help median {results['help'].median:.2f} s (goal <= {GOAL_HELP_S} s); "
        f"assess median {results['assess'].median:.2f} s (goal <= {GOAL_ASSESS_S} s)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "cpus": os.cpu_count(),
        "patients": args.patients,
        "years": YEARS,
        "timings_s": {key: asdict(value) for key, value in results.items()},
        "roadrunner_per_patient_s": None if rr is None else [asdict(t) for t in rr],
        "ratios": ratios,
    }
    (args.out / "bench_commands.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
