"""Benchmark: bonecast's engines side by side with per-patient ``solve_ivp`` and libRoadRunner.

One run measures, on the same virtual postmenopausal women (anastrozole 1 mg daily plus
zoledronic acid 4 mg IV every 182 days, both months 0-60; ``--years`` simulated with daily
steps):

* patients per second against N (1, 10, ..., ``--max-patients``) for the compiled (Numba) and
  NumPy engines of :func:`bonecast.simulation.simulate`; N above ``--chunk`` runs as
  consecutive chunks of patients through the same ``simulate`` call, so memory stays bounded;
* a per-patient loop of :func:`bonecast.simulation.simulate_reference` (LSODA) and one of
  libRoadRunner on each patient's own exported SBML (:func:`bonecast.simulation.sbml.to_sbml`:
  her parameters and dose events), on the first ``--sample`` patients. Their rate is per
  patient, so their points above ``--sample`` are extrapolated (marked as such);
* the ratios at N = 10,000 (goal: compiled at least 100x the libRoadRunner loop), and the
  largest difference in % BMD change (3 sites, yearly record days) between compiled and NumPy
  (all patients at that N, goal <= 0.01 pp) and between NumPy and each loop (sampled patients,
  goal <= 0.05 pp);
* a virtual trial (:func:`bonecast.simulation.run_trial`, compiled engine) of
  ``--trial-patients`` patients run serially here and on a local Dask cluster of 1 and 2
  single-threaded workers (:func:`bonecast.simulation.executors.dask_executor`);
* peak memory: tracemalloc peak of a separate, untimed NumPy run at the reference N, and the
  process's peak RSS.

Methodology: wall-clock time (:func:`time.perf_counter`) of the simulation calls only
(population sampling excluded), after an untimed warm-up of every method (JIT compilation,
LLVM start-up). Engine runs are repeated until 1 s has passed and the fastest is kept (small
N only; the least disturbed by other load). The libRoadRunner time per patient is the SBML
export, the model load (LLVM compilation) and the simulation; the simulation alone is reported
too, as the best case of a loop that could reuse one loaded model. Dask timings start once the
cluster is up and warm.

Exit status 1 when an agreement goal fails (a correctness failure); speed goals are reported
only. Writes ``bench_engine.json`` and ``bench_engine.png`` to ``--out``.

Usage::

    python benchmarks/bench_engine.py [--max-patients 1000000] [--sample 20] [--chunk 50000]
        [--trial-patients 100000] [--skip-dask] [--years 10] [--seed 1] [--threads 2]
        [--out results/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import numba
import numpy as np
import roadrunner
import scipy
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import NDArray
from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

import bonecast
from bonecast.progress import progress_bar
from bonecast.simulation import (
    SITES,
    Distribution,
    ParameterSet,
    PopulationSpec,
    Route,
    SimulationResult,
    Treatment,
    TrialSpec,
    VirtualPopulation,
    default_parameter_set,
    month_to_day,
    parse_trial_spec,
    run_trial,
    sample_population,
    simulate,
    simulate_reference,
)
from bonecast.simulation.executors import Executor, dask_executor
from bonecast.simulation.sbml import SITE_IDS, to_sbml

SIZES = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)
"""Population sizes N of the throughput sweep (those up to ``--max-patients``)."""
REFERENCE_N = 10_000
"""N of the ratios and of the compiled vs NumPy agreement (or the largest N run, if smaller)."""
GOAL_RR_SPEEDUP = 100.0
"""Target ratio of patients/s at the reference N, compiled engine over the libRoadRunner loop."""
GOAL_SOLVE_IVP_SPEEDUP = 50.0
"""Target ratio of patients/s at the reference N, NumPy engine over the solve_ivp loop."""
COMPILED_GOAL_S = 1.0
"""Target wall time of the compiled engine at the reference N (10,000 x 10 years), s."""
TOLERANCE_PP = 0.05
"""Largest accepted difference in % BMD change, bonecast vs each per-patient loop (pp)."""
COMPILED_TOLERANCE_PP = 0.01
"""Largest accepted difference in % BMD change, compiled vs NumPy engine (pp)."""
RTOL, ATOL = 1e-8, 1e-10
"""Relative and absolute tolerances of both per-patient solvers (LSODA, CVODE)."""
MIN_TIMED_S = 1.0
"""An engine run shorter than this is repeated until this much wall time has passed, s."""
DASK_WORKERS = (1, 2)
"""Local Dask cluster sizes of the scaling run (single-threaded worker processes)."""
RECORD_EVERY_DAYS = 365
"""Spacing of the recorded (compared) days, days."""
MIB = 1024.0**2

COMPILED = "compiled (Numba)"
NUMPY = "NumPy"
SOLVE_IVP = "solve_ivp loop"
RR_LOOP = "libRoadRunner loop"
RR_SIMULATE = "libRoadRunner, simulate only"
METHODS = (COMPILED, NUMPY, SOLVE_IVP, RR_LOOP, RR_SIMULATE)
"""Every method of the throughput sweep, in table and legend order."""
ENGINES: dict[str, Literal["numba", "numpy"]] = {COMPILED: "numba", NUMPY: "numpy"}
SERIAL = "serial (in-process)"
"""The Dask scaling run's baseline: the trial in this process, without Dask."""

TREATMENTS: tuple[Treatment, ...] = (
    Treatment(drug="anastrozole", dose_mg=1.0, interval_days=1.0, start_month=0, stop_month=60),
    Treatment(
        drug="zoledronic_acid",
        dose_mg=4.0,
        interval_days=182.0,
        route=Route.IV,
        start_month=0,
        stop_month=60,
    ),
)
"""Anastrozole 1 mg daily + zoledronic acid 4 mg IV every 182 days, both months 0-60."""

console = Console()
errors = Console(stderr=True)


@dataclass(frozen=True)
class Setup:
    """What every run shares: population, parameters, seed, horizon and record days (days)."""

    spec: PopulationSpec
    parameter_set: ParameterSet
    seed: int
    horizon: int
    days: tuple[int, ...]

    def patients(self, start: int, stop: int) -> VirtualPopulation:
        """Patients ``start .. stop-1`` of the population (the same rows at every N)."""
        return sample_population(self.spec, self.parameter_set, self.seed, start, stop)

    def simulate(
        self,
        population: VirtualPopulation,
        progress: Callable[[int], None] | None,
        engine: Literal["numba", "numpy"] = "numpy",
    ) -> SimulationResult:
        """``simulate`` of :data:`TREATMENTS` on ``population`` over the shared horizon."""
        return simulate(
            population,
            TREATMENTS,
            self.horizon,
            seed=self.seed,
            record_days=self.days,
            progress=progress,
            engine=engine,
        )


@dataclass(frozen=True)
class Timing:
    """Wall time of one method on ``patients`` patients (fastest of ``runs`` runs), s."""

    method: str
    patients: int
    seconds: float
    runs: int = 1
    extrapolated: bool = False

    @property
    def patients_per_s(self) -> float:
        """Throughput, patients per second of wall time."""
        return self.patients / self.seconds


@dataclass(frozen=True)
class Agreement:
    """Largest |difference| in % BMD change between two methods (pp), and where it occurs."""

    methods: str
    max_abs_diff_pp: float
    tolerance_pp: float
    patient: int
    site: str
    day: int

    @property
    def ok(self) -> bool:
        """Whether the difference is within the tolerance (NaN fails)."""
        return bool(self.max_abs_diff_pp <= self.tolerance_pp)


@dataclass(frozen=True)
class LoopRun:
    """A per-patient loop: % BMD change (site, day, patient) and wall time per patient, s."""

    pct: NDArray[np.float64]
    seconds: NDArray[np.float64]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description="bonecast compiled and NumPy engines vs per-patient solve_ivp and "
        "libRoadRunner loops: throughput against N, ratios, agreement, Dask scaling, memory."
    )
    parser.add_argument(
        "--max-patients",
        type=_positive_int,
        default=1_000_000,
        help="largest N of the sweep 1, 10, ... (default 1000000; 100000 takes a third of the "
        "time)",
    )
    parser.add_argument(
        "--sample",
        type=_positive_int,
        default=20,
        help="patients run through each per-patient loop, the first of the population (default 20)",
    )
    parser.add_argument(
        "--chunk",
        type=_positive_int,
        default=50_000,
        help="patients per simulate call; larger N run as consecutive chunks (default 50000)",
    )
    parser.add_argument(
        "--trial-patients",
        type=_positive_int,
        default=100_000,
        help="patients of the Dask scaling trial (default 100000)",
    )
    parser.add_argument("--skip-dask", action="store_true", help="skip the Dask scaling run")
    parser.add_argument(
        "--years", type=_positive_float, default=10.0, help="simulated years (default 10)"
    )
    parser.add_argument("--seed", type=int, default=1, help="population and dose seed (default 1)")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=2,
        help="Numba threads of the compiled engine here, capped at NUMBA_NUM_THREADS (default 2)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results/bench"),
        help="folder for bench_engine.json and bench_engine.png (default results/bench)",
    )
    args = parser.parse_args(argv)
    reference = reference_size(sizes(args.max_patients))
    if args.sample > reference:
        parser.error(f"--sample {args.sample} exceeds the reference N {reference:,}")
    if args.chunk < reference:
        parser.error(f"--chunk {args.chunk} is below the reference N {reference:,}")
    return args


def sizes(max_patients: int) -> list[int]:
    """The sweep's N: :data:`SIZES` up to ``max_patients``, and ``max_patients`` itself."""
    return sorted({*(n for n in SIZES if n <= max_patients), max_patients})


def reference_size(ns: Sequence[int]) -> int:
    """N of the ratios and the compiled vs NumPy agreement: the largest N <= REFERENCE_N."""
    return max(n for n in ns if n <= REFERENCE_N)


def population_spec(n: int) -> PopulationSpec:
    """Postmenopausal women, age 64 +/- 8 years, with between-patient variability."""
    return PopulationSpec(
        n=n,
        menopausal_status="postmenopausal",
        age_years=Distribution(mean=64.0, sd=8.0),
        variability=True,
    )


def horizon_days(years: float) -> int:
    """Simulated days for ``years`` (the regimens' month-to-day convention)."""
    return month_to_day(12.0 * years)


def yearly_record_days(horizon: int) -> tuple[int, ...]:
    """Days 0, 365, 730, ... and the horizon itself (days)."""
    return tuple(sorted({*range(0, horizon + 1, RECORD_EVERY_DAYS), horizon}))


def check_same_patient(full: VirtualPopulation, one: VirtualPopulation, i: int) -> None:
    """Refuse a one-patient population that is not row ``i`` of the full one (bit for bit)."""
    pairs: list[tuple[str, NDArray[Any], NDArray[Any]]] = [
        ("patient_ids", full.patient_ids[i : i + 1], one.patient_ids),
        ("age_years", full.age_years[i : i + 1], one.age_years),
        ("baseline_t_score", full.baseline_t_score[:, i : i + 1], one.baseline_t_score),
        ("baseline_bmd_g_cm2", full.baseline_bmd_g_cm2[:, i : i + 1], one.baseline_bmd_g_cm2),
        ("fmp_day", full.fmp_day[i : i + 1], one.fmp_day),
    ]
    if full.values.keys() != one.values.keys():
        raise RuntimeError(f"patient {i}: the parameter names differ")
    pairs += [(f"values[{k!r}]", full.values[k][i : i + 1], one.values[k]) for k in full.values]
    for name, a, b in pairs:
        if not np.array_equal(a, b):
            raise RuntimeError(f"patient {i}: {name} differs from row {i} of the population")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far, bytes (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # KiB on Linux


def _advance(progress: Progress, task: TaskID, scale: int = 1) -> Callable[[int], None]:
    return lambda count: progress.advance(task, count * scale)


def pct_changes(result: SimulationResult) -> NDArray[np.float64]:
    """% BMD change from baseline, (site, day, patient)."""
    return np.stack([result.bmd_pct_change(site) for site in SITES])


def run_engine(
    setup: Setup, method: str, n: int, chunk: int, progress: Progress, task: TaskID
) -> tuple[SimulationResult, Timing]:
    """Time ``simulate`` with ``method``'s engine on patients 0..n-1, ``chunk`` at a time.

    Sampling is not timed. Runs repeat until :data:`MIN_TIMED_S` has passed and the fastest is
    kept (the least disturbed by other load; the progress bar counts the first run only).
    Returns the last chunk's result.
    """
    runs: list[float] = []
    while sum(runs) < MIN_TIMED_S:
        seconds = 0.0
        for start in range(0, n, chunk):
            population = setup.patients(start, min(n, start + chunk))
            began = time.perf_counter()
            result = setup.simulate(
                population,
                None if runs else _advance(progress, task, population.n),
                ENGINES[method],
            )
            seconds += time.perf_counter() - began
        runs.append(seconds)
    return result, Timing(method, n, min(runs), len(runs))


def sweep(
    setup: Setup, ns: Sequence[int], chunk: int, reference: int, progress: Progress
) -> tuple[list[Timing], dict[str, SimulationResult]]:
    """Both engines at every N; their timings and their results at the reference N."""
    timings: list[Timing] = []
    kept: dict[str, SimulationResult] = {}
    for method in ENGINES:
        task = progress.add_task(f"{method}, N = 1..{ns[-1]:,}", total=sum(ns) * setup.horizon)
        for n in ns:
            result, timing = run_engine(setup, method, n, chunk, progress, task)
            timings.append(timing)
            if n == reference:
                kept[method] = result
    return timings, kept


def traced_peak_bytes(setup: Setup, population: VirtualPopulation, progress: Progress) -> int:
    """tracemalloc peak (bytes) of a separate, untimed NumPy-engine run on ``population``."""
    task = progress.add_task(
        f"tracemalloc run ({population.n:,} patients), days", total=setup.horizon
    )
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        setup.simulate(population, _advance(progress, task))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def solve_ivp_loop(
    setup: Setup, singles: Sequence[VirtualPopulation], progress: Progress
) -> LoopRun:
    """``simulate_reference`` (LSODA) on each one-patient population, timed per patient."""
    task = progress.add_task(f"{SOLVE_IVP}, patients", total=len(singles))
    pct, seconds = [], []
    for one in singles:
        began = time.perf_counter()
        result = simulate_reference(
            one,
            TREATMENTS,
            setup.horizon,
            seed=setup.seed,
            record_days=setup.days,
            rtol=RTOL,
            atol=ATOL,
        )
        seconds.append(time.perf_counter() - began)
        pct.append(pct_changes(result)[:, :, 0])
        progress.advance(task)
    return LoopRun(np.stack(pct, axis=-1), np.array(seconds))


def roadrunner_patient(setup: Setup, one: VirtualPopulation) -> tuple[NDArray[np.float64], float]:
    """One patient by libRoadRunner: % BMD change (site, day) and the wall time of export and
    load (LLVM compilation), s; the caller times the whole call."""
    began = time.perf_counter()
    rr = roadrunner.RoadRunner(to_sbml(one, TREATMENTS, setup.horizon, seed=setup.seed))
    loaded = time.perf_counter() - began
    rr.integrator.relative_tolerance = RTOL
    rr.integrator.absolute_tolerance = ATOL
    rr.timeCourseSelections = [f"pct_{SITE_IDS[site]}" for site in SITES]
    pct = np.asarray(rr.simulate(times=[float(day) for day in setup.days]))  # (day, site)
    return pct.T, loaded


def roadrunner_loop(
    setup: Setup, singles: Sequence[VirtualPopulation], progress: Progress
) -> tuple[LoopRun, NDArray[np.float64]]:
    """libRoadRunner on each patient's own SBML; the run (export + load + simulate per patient)
    and the simulate-only seconds per patient."""
    task = progress.add_task(f"{RR_LOOP}, patients", total=len(singles))
    pct, seconds, simulate_only = [], [], []
    for one in singles:
        began = time.perf_counter()
        values, loaded = roadrunner_patient(setup, one)
        seconds.append(time.perf_counter() - began)
        simulate_only.append(seconds[-1] - loaded)
        pct.append(values)
        progress.advance(task)
    return LoopRun(np.stack(pct, axis=-1), np.array(seconds)), np.array(simulate_only)


def loop_timings(
    method: str, per_patient_s: NDArray[np.float64], ns: Sequence[int]
) -> list[Timing]:
    """A loop's time at every N: measured (first N patients) up to the sample, then N x mean."""
    return [
        Timing(method, n, float(per_patient_s[:n].sum()))
        if n <= per_patient_s.size
        else Timing(method, n, n * float(per_patient_s.mean()), extrapolated=True)
        for n in ns
    ]


def warm_up(setup: Setup, one: VirtualPopulation) -> None:
    """Untimed 30-day runs of every method (first-call, JIT and LLVM costs stay out)."""
    short = Setup(setup.spec, setup.parameter_set, setup.seed, 30, (0, 30))
    for engine in ENGINES.values():
        simulate(one, TREATMENTS, 30, seed=setup.seed, record_days=short.days, engine=engine)
    simulate_reference(one, TREATMENTS, 30, seed=setup.seed, record_days=short.days)
    roadrunner_patient(short, one)


def worst_difference(
    methods: str, a: NDArray[np.float64], b: NDArray[np.float64], days: Sequence[int], tol: float
) -> Agreement:
    """Largest |a - b| over (site, day, patient) arrays of % BMD change, pp."""
    diff = np.abs(a - b)
    k, d, p = np.unravel_index(int(np.argmax(diff)), diff.shape)
    worst = float(np.nan) if np.isnan(diff).any() else float(diff[k, d, p])
    return Agreement(methods, worst, tol, int(p), SITES[int(k)], days[int(d)])


def trial_spec(patients: int, years: float, seed: int) -> TrialSpec:
    """The benchmark's regimen as a one-arm virtual trial, BMD at every year."""
    months = sorted({*range(12, int(12 * years) + 1, 12), 12 * years})
    return parse_trial_spec(
        {
            "name": "bench_engine Dask scaling",
            "seed": seed,
            "population": population_spec(patients).model_dump(mode="json"),
            "arms": [
                {
                    "name": "anastrozole + zoledronic acid",
                    "treatments": [t.model_dump(mode="json") for t in TREATMENTS],
                }
            ],
            "outputs": {"quantities": list(SITES), "months": months},
        }
    )


def timed_trial(
    spec: TrialSpec,
    setup: Setup,
    progress: Progress,
    label: str,
    executor: Executor | None = None,
) -> Timing:
    """Wall time of :func:`run_trial` (compiled engine) on ``spec``, as method ``label``."""
    task = progress.add_task(
        f"trial, {label}, patient-days", total=spec.population.n * setup.horizon
    )
    began = time.perf_counter()
    run_trial(
        spec,
        setup.parameter_set,
        progress=_advance(progress, task),
        engine="numba",
        executor=executor,
    )
    return Timing(label, spec.population.n, time.perf_counter() - began)


def dask_label(workers: int) -> str:
    """'Dask, N worker(s)'."""
    return f"Dask, {workers} worker{'s' if workers > 1 else ''}"


def dask_scaling(setup: Setup, patients: int, years: float, progress: Progress) -> list[Timing]:
    """The same trial serially here, then on local Dask clusters of :data:`DASK_WORKERS`."""
    spec = trial_spec(patients, years, setup.seed)
    timings = [timed_trial(spec, setup, progress, SERIAL)]
    for workers in DASK_WORKERS:
        with dask_executor(workers=workers, threads_per_worker=1) as executor:
            warm = trial_spec(4 * workers, 1.0, setup.seed)  # imports and JIT cache on each worker
            run_trial(warm, setup.parameter_set, engine="numba", executor=executor)
            timings.append(timed_trial(spec, setup, progress, dask_label(workers), executor))
    return timings


def _git_revision() -> str | None:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _met(ratio: float, goal: float | None) -> bool | None:
    return None if goal is None else ratio >= goal


def _status(ok: bool) -> str:
    return "[green]met[/]" if ok else "[yellow]not met[/]"


def throughput_table(timings: Sequence[Timing], threads: int) -> Table:
    """Rich table: patients/s per method and N (extrapolated cells marked), compiled/NumPy."""
    by = {(t.method, t.patients): t for t in timings}
    table = Table(
        title=f"Patients per second against N (compiled engine: {threads} Numba threads)",
        caption="* extrapolated: a per-patient loop's mean time per patient x N",
    )
    table.add_column("N", justify="right")
    for method in METHODS:
        table.add_column(method, justify="right")
    table.add_column("compiled / NumPy", justify="right")
    for n in sorted({t.patients for t in timings}):
        cells = [
            f"[dim]{by[m, n].patients_per_s:,.1f}*[/]"
            if by[m, n].extrapolated
            else f"{by[m, n].patients_per_s:,.1f}"
            for m in METHODS
        ]
        ratio = by[COMPILED, n].patients_per_s / by[NUMPY, n].patients_per_s
        table.add_row(f"{n:,}", *cells, f"{ratio:,.2f}x")
    return table


def ratios(timings: Sequence[Timing], reference: int) -> dict[str, float]:
    """Patients/s ratios at the reference N, named 'a / b'."""
    rate = {t.method: t.patients_per_s for t in timings if t.patients == reference}
    pairs = [
        (COMPILED, RR_LOOP),
        (COMPILED, RR_SIMULATE),
        (COMPILED, SOLVE_IVP),
        (COMPILED, NUMPY),
        (NUMPY, SOLVE_IVP),
    ]
    return {f"{a} / {b}": rate[a] / rate[b] for a, b in pairs}


GOALS = {
    f"{COMPILED} / {RR_LOOP}": GOAL_RR_SPEEDUP,
    f"{NUMPY} / {SOLVE_IVP}": GOAL_SOLVE_IVP_SPEEDUP,
}
"""Speed-up goals by ratio name (the others are reported without a goal)."""


def goals_table(
    speedups: dict[str, float], compiled_s: float, agreements: Sequence[Agreement], reference: int
) -> Table:
    """Rich table: ratios at the reference N, the compiled wall time and the agreements."""
    table = Table(title=f"Ratios and agreement at N = {reference:,}")
    table.add_column("Measure")
    table.add_column("Value", justify="right")
    table.add_column("Goal", justify="right")
    table.add_column("Status")
    for name, ratio in speedups.items():
        goal = GOALS.get(name)
        met = _met(ratio, goal)
        status = "" if met is None else _status(met)
        table.add_row(name, f"{ratio:,.1f}x", "" if goal is None else f">= {goal:g}x", status)
    table.add_row(
        f"{COMPILED}, wall time",
        f"{compiled_s:.2f} s",
        f"< {COMPILED_GOAL_S:g} s",
        _status(compiled_s < COMPILED_GOAL_S),
    )
    for a in agreements:
        table.add_row(
            f"Max |diff| {a.methods}, % BMD change",
            f"{a.max_abs_diff_pp:.2e} pp",
            f"<= {a.tolerance_pp:g} pp",
            "[green]pass[/]" if a.ok else "[bold red]FAIL[/]",
        )
    return table


def speedups_vs_one_worker(timings: Sequence[Timing]) -> list[float]:
    """Each trial's speed-up over the one-worker Dask run (wall-time ratio; none if skipped)."""
    one = next((t for t in timings if t.method == dask_label(1)), None)
    return [] if one is None else [one.seconds / t.seconds for t in timings]


def dask_table(timings: Sequence[Timing], threads: int) -> Table:
    """Rich table: the trial's wall time per executor and the speed-up over one worker."""
    table = Table(
        title=f"Virtual trial, {timings[0].patients:,} patients (run_trial, compiled engine)",
        caption=f"serial: {threads} Numba threads here; Dask: 1 thread per worker process",
    )
    table.add_column("Executor")
    table.add_column("Wall time (s)", justify="right")
    table.add_column("Patients/s", justify="right")
    table.add_column("vs 1 worker", justify="right")
    for t, speedup in zip(timings, speedups_vs_one_worker(timings), strict=True):
        table.add_row(t.method, f"{t.seconds:.1f}", f"{t.patients_per_s:,.0f}", f"{speedup:.2f}x")
    return table


def memory_table(memory: dict[str, float], reference: int) -> Table:
    """Rich table: tracemalloc peak and peak RSS, MiB."""
    table = Table(title="Memory (MiB)")
    table.add_column("Measure")
    table.add_column("Value", justify="right")
    table.add_row(
        f"tracemalloc peak, NumPy engine, N = {reference:,}", f"{memory['tracemalloc_peak']:,.1f}"
    )
    table.add_row("Peak RSS after the engine sweep", f"{memory['rss_after_sweep']:,.0f}")
    table.add_row("Peak RSS at the end (this process)", f"{memory['rss_end']:,.0f}")
    return table


def _plot_throughput(ax: Axes, timings: Sequence[Timing], reference: int) -> None:
    colours = dict(
        zip(METHODS, ("#2ca02c", "#1f77b4", "#d62728", "#9467bd", "#c5b0d5"), strict=True)
    )
    for method in METHODS:
        points = [t for t in timings if t.method == method]
        measured = [t for t in points if not t.extrapolated]
        extra = measured[-1:] + [t for t in points if t.extrapolated]
        if len(extra) > 1:
            ax.plot(
                [t.patients for t in extra],
                [t.patients_per_s for t in extra],
                "o--",
                color=colours[method],
                markerfacecolor="white",
            )
        ax.plot(
            [t.patients for t in measured],
            [t.patients_per_s for t in measured],
            "o-",
            color=colours[method],
            label=method,
        )
    ax.plot(
        [], [], "o--", color="grey", markerfacecolor="white", label="extrapolated (per patient x N)"
    )
    ax.axvline(reference, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("patients N")
    ax.set_ylabel("patients per second")
    ax.set_title("Throughput against N")
    ax.legend(fontsize="small", loc="best")


def _plot_dask(ax: Axes, timings: Sequence[Timing]) -> None:
    labels = [t.method.replace(", ", "\n").replace(" (", "\n(") for t in timings]
    bars = ax.bar(labels, [t.patients_per_s for t in timings], color="#2ca02c")
    speedups = speedups_vs_one_worker(timings)
    ax.bar_label(bars, labels=[f"{s:.2f}x" for s in speedups], padding=2)
    ax.set_ylabel("patients per second")
    ax.set_title(f"run_trial, {timings[0].patients:,} patients\n(speed-up vs 1 worker)")
    ax.margins(y=0.15)


def plot(
    timings: Sequence[Timing],
    dask: Sequence[Timing],
    speedup: float,
    reference: int,
    path: Path,
) -> None:
    """Patients/s against N (log-log, extrapolated dashed), and the Dask scaling bars if run."""
    fig = Figure(figsize=(12.0 if dask else 7.5, 5.0), layout="constrained")
    axes = fig.subplots(1, 2, width_ratios=[2.2, 1]) if dask else [fig.subplots()]
    _plot_throughput(axes[0], timings, reference)
    if dask:
        _plot_dask(axes[1], dask)
    fig.suptitle(
        f"bonecast engine benchmark: compiled / libRoadRunner loop = {speedup:,.0f}x at "
        f"N = {reference:,}"
    )
    fig.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit status 1 if an agreement goal fails."""
    args = parse_args(argv)
    ns = sizes(args.max_patients)
    reference = reference_size(ns)
    horizon = horizon_days(args.years)
    spec = population_spec(args.max_patients)
    setup = Setup(spec, default_parameter_set(), args.seed, horizon, yearly_record_days(horizon))
    sample = setup.patients(0, args.sample)
    singles = [setup.patients(i, i + 1) for i in range(args.sample)]
    for i, one in enumerate(singles):
        check_same_patient(sample, one, i)
    errors.print(
        f"N = {', '.join(f'{n:,}' for n in ns)} patients x {horizon} days (daily steps), seed "
        f"{args.seed}, chunks of {args.chunk:,}; per-patient loops on the first {args.sample}; "
        f"record days {list(setup.days)}"
    )

    threads = min(args.threads, numba.get_num_threads())  # starts at NUMBA_NUM_THREADS
    numba.set_num_threads(threads)
    warm_up(setup, singles[0])
    with progress_bar(errors) as progress:
        timings, kept = sweep(setup, ns, args.chunk, reference, progress)
        rss_after_sweep = peak_rss_bytes()
        traced_peak = traced_peak_bytes(setup, setup.patients(0, reference), progress)
        reference_loop = solve_ivp_loop(setup, singles, progress)
        rr_run, rr_simulate_s = roadrunner_loop(setup, singles, progress)
        dask = (
            [] if args.skip_dask else dask_scaling(setup, args.trial_patients, args.years, progress)
        )

    timings += loop_timings(SOLVE_IVP, reference_loop.seconds, ns)
    timings += loop_timings(RR_LOOP, rr_run.seconds, ns)
    timings += loop_timings(RR_SIMULATE, rr_simulate_s, ns)
    fast = pct_changes(kept[NUMPY])
    agreements = [
        worst_difference(
            "compiled vs NumPy",
            pct_changes(kept[COMPILED]),
            fast,
            setup.days,
            COMPILED_TOLERANCE_PP,
        ),
        worst_difference(
            "NumPy vs solve_ivp",
            fast[:, :, : args.sample],
            reference_loop.pct,
            setup.days,
            TOLERANCE_PP,
        ),
        worst_difference(
            "NumPy vs libRoadRunner",
            fast[:, :, : args.sample],
            rr_run.pct,
            setup.days,
            TOLERANCE_PP,
        ),
    ]
    speedups = ratios(timings, reference)
    compiled_s = next(
        t.seconds for t in timings if t.method == COMPILED and t.patients == reference
    )
    memory = {
        "tracemalloc_peak": traced_peak / MIB,
        "rss_after_sweep": rss_after_sweep / MIB,
        "rss_end": peak_rss_bytes() / MIB,
    }
    console.print(throughput_table(timings, threads))
    console.print(goals_table(speedups, compiled_s, agreements, reference))
    if dask:
        console.print(dask_table(dask, threads))
    console.print(memory_table(memory, reference))
    console.print(
        f"[dim]libRoadRunner per patient: {rr_run.seconds.mean() * 1e3:.1f} ms (export + load "
        f"{(rr_run.seconds - rr_simulate_s).mean() * 1e3:.1f} ms, simulate "
        f"{rr_simulate_s.mean() * 1e3:.1f} ms); solve_ivp "
        f"{reference_loop.seconds.mean() * 1e3:.0f} ms. Peak RSS covers this process only "
        "(not the Dask workers).[/]"
    )

    args.out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "benchmark": "bench_engine",
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "sizes": ns,
            "reference_n": reference,
            "chunk": args.chunk,
            "sample": args.sample,
            "years": args.years,
            "horizon_days": horizon,
            "dt_days": 1.0,
            "seed": args.seed,
            "record_days": list(setup.days),
            "numba_threads": threads,
            "min_timed_s": MIN_TIMED_S,
            "population": spec.model_dump(mode="json"),
            "treatments": [t.model_dump(mode="json") for t in TREATMENTS],
            "per_patient_solvers": {
                "solve_ivp": {"method": "LSODA", "rtol": RTOL, "atol": ATOL},
                "libroadrunner": {"integrator": "cvode", "rtol": RTOL, "atol": ATOL},
            },
            "trial": None
            if args.skip_dask
            else {"patients": args.trial_patients, "engine": "numba", "workers": DASK_WORKERS},
            "parameter_set": f"{setup.parameter_set.name} ({setup.parameter_set.digest()})",
        },
        "timings": [{**asdict(t), "patients_per_s": t.patients_per_s} for t in timings],
        "ratios": {
            name: {"value": value, "goal": GOALS.get(name), "met": _met(value, GOALS.get(name))}
            for name, value in speedups.items()
        },
        "compiled_seconds": {
            "value": compiled_s,
            "goal": COMPILED_GOAL_S,
            "met": compiled_s < COMPILED_GOAL_S,
        },
        "agreement": [
            {**asdict(a), "max_abs_diff_pp": _finite(a.max_abs_diff_pp), "ok": a.ok}
            for a in agreements
        ],
        "dask": [
            {**asdict(t), "patients_per_s": t.patients_per_s, "speedup_vs_1_worker": speedup}
            for t, speedup in zip(dask, speedups_vs_one_worker(dask), strict=True)
        ],
        "memory_mib": {
            "tracemalloc_peak_numpy_reference_n": memory["tracemalloc_peak"],
            "peak_rss_after_sweep": memory["rss_after_sweep"],
            "peak_rss_process": memory["rss_end"],
        },
        "environment": {
            "bonecast": bonecast.__version__,
            "git": _git_revision(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "numba": numba.__version__,
            "libroadrunner": roadrunner.__version__,
            "distributed": version("distributed"),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
        },
    }
    json_path = args.out / "bench_engine.json"
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    png_path = args.out / "bench_engine.png"
    plot(timings, dask, speedups[f"{COMPILED} / {RR_LOOP}"], reference, png_path)
    console.print(f"Wrote [bold]{json_path}[/] and [bold]{png_path}[/]")

    failed = [a for a in agreements if not a.ok]
    for a in failed:
        errors.print(
            f"[bold red]FAIL:[/] {a.methods} differ by {a.max_abs_diff_pp:.2e} pp "
            f"(> {a.tolerance_pp:g} pp) at {a.site}, day {a.day}, patient {a.patient}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
