"""Benchmark: the vectorised engine against a per-patient ``solve_ivp`` loop on the same model.

Simulates ``--patients`` virtual postmenopausal women for ``--years`` (anastrozole 1 mg daily,
months 0-60, plus zoledronic acid 4 mg IV every 182 days, months 0-60; daily steps) with
:func:`bonecast.simulation.simulate`, and the first ``--sample`` of them one at a time with
:func:`bonecast.simulation.simulate_reference` (LSODA). Prints patients per second for each,
their ratio, the largest difference in BMD change (percentage points, any site, any yearly
record day) and peak memory; writes the figures as JSON and a bar chart to ``--out``.

Goal: the vectorised engine at least 50x faster than the loop and within 0.1 pp of it. The exit
status is 1 when the agreement fails (a correctness failure); the speed goal is only reported.

The compiled engine (``simulate(..., engine="numba")``, issue 6) is timed on the same
populations: patients/s at ``--patients`` and ``--small``, its ratio to the NumPy engine, the
largest difference from the NumPy engine over every patient, site and record day (goal
<= 0.01 pp; a larger one also exits 1) and whether ``--patients`` runs in under 1 s (the goal
for 10,000 patients x 10 years on 2 cores). ``--threads`` sets Numba's thread count.

Methodology: timings are wall-clock (:func:`time.perf_counter`) of the simulation calls only
(population sampling is excluded from both), after an untimed warm-up of both engines. The
tracemalloc peak comes from a separate, untimed run of the vectorised engine, so tracing never
inflates the timing. Peak RSS is the process's ``ru_maxrss``.

Usage::

    python benchmarks/bench_engine.py [--patients 10000] [--years 10] [--sample 20] [--seed 1]
                                      [--small 1000] [--threads 2] [--out results/bench]
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numba
import numpy as np
import scipy
from matplotlib.figure import Figure
from numpy.typing import NDArray
from rich.console import Console
from rich.progress import (
    Progress,
    TaskID,
)
from rich.table import Table

import bonecast
from bonecast.progress import progress_bar
from bonecast.simulation import (
    SITES,
    Distribution,
    PopulationSpec,
    Route,
    SimulationResult,
    Treatment,
    VirtualPopulation,
    default_parameter_set,
    month_to_day,
    sample_population,
    simulate,
    simulate_reference,
)

COMPILED_TOLERANCE_PP = 0.01
"""Largest accepted difference between the compiled and NumPy engines (percentage points)."""
COMPILED_GOAL_S = 1.0
"""Target wall time of the compiled engine on ``--patients`` patients (10,000 x 10 years), s."""
GOAL_SPEEDUP = 50.0
"""Target ratio of patients/s, vectorised engine over the per-patient loop."""
TOLERANCE_PP = 0.1
"""Largest accepted difference in % BMD change between the two engines (percentage points)."""
RECORD_EVERY_DAYS = 365
"""Spacing of the recorded (compared) days, days."""
MIB = 1024.0**2

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
class Timing:
    """Wall time of one engine on ``patients`` patients."""

    engine: str
    patients: int
    seconds: float

    @property
    def patients_per_s(self) -> float:
        """Throughput, patients per second of wall time."""
        return self.patients / self.seconds


@dataclass(frozen=True)
class Agreement:
    """Largest |difference| in % BMD change between the engines, and where it occurs."""

    max_abs_diff_pp: float
    patient: int
    site: str
    day: int

    @property
    def ok(self) -> bool:
        """Whether the difference is within :data:`TOLERANCE_PP` (NaN fails)."""
        return bool(self.max_abs_diff_pp <= TOLERANCE_PP)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description="Vectorised engine vs per-patient solve_ivp loop: speed, agreement, memory."
    )
    parser.add_argument(
        "--patients", type=_positive_int, default=10_000, help="population size (default 10000)"
    )
    parser.add_argument(
        "--years", type=_positive_float, default=10.0, help="simulated years (default 10)"
    )
    parser.add_argument(
        "--sample",
        type=_positive_int,
        default=20,
        help="patients run through the solve_ivp loop, the first of the population (default 20)",
    )
    parser.add_argument("--seed", type=int, default=1, help="population and dose seed (default 1)")
    parser.add_argument(
        "--small",
        type=_non_negative_int,
        default=1_000,
        help="extra, smaller vectorised run to show scaling; 0 skips it (default 1000)",
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=2,
        help="Numba threads for the compiled engine, capped at NUMBA_NUM_THREADS (default 2)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results/bench"),
        help="folder for bench_engine.json and bench_engine.png (default results/bench)",
    )
    args = parser.parse_args(argv)
    if args.sample > args.patients:
        parser.error(f"--sample {args.sample} exceeds --patients {args.patients}")
    if args.small >= args.patients:
        args.small = 0
    return args


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


def yearly_record_days(horizon: int) -> list[int]:
    """Days 0, 365, 730, ... and the horizon itself (days)."""
    return sorted({*range(0, horizon + 1, RECORD_EVERY_DAYS), horizon})


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


def _advance(progress: Progress, task: TaskID) -> Callable[[int], None]:
    return lambda days: progress.advance(task, days)


def run_vectorised(
    population: VirtualPopulation,
    horizon: int,
    seed: int,
    days: Sequence[int],
    progress: Progress,
    label: str,
    engine: Literal["numpy", "numba"] = "numpy",
) -> tuple[SimulationResult, float]:
    """One vectorised run over the whole population; returns the result and its wall time (s)."""
    task = progress.add_task(f"{label} ({population.n:,} patients), days", total=horizon)
    start = time.perf_counter()
    result = simulate(
        population,
        TREATMENTS,
        horizon,
        seed=seed,
        record_days=days,
        progress=_advance(progress, task),
        engine=engine,
    )
    return result, time.perf_counter() - start


def traced_peak_bytes(
    population: VirtualPopulation,
    horizon: int,
    seed: int,
    days: Sequence[int],
    progress: Progress,
) -> tuple[int, float]:
    """tracemalloc peak (bytes) of a separate vectorised run, and that run's wall time (s)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        _, seconds = run_vectorised(population, horizon, seed, days, progress, "tracemalloc run")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, seconds


def run_reference_loop(
    populations: Sequence[VirtualPopulation],
    horizon: int,
    seed: int,
    days: Sequence[int],
    progress: Progress,
) -> tuple[list[SimulationResult], float]:
    """``simulate_reference`` on each one-patient population; results and summed wall time (s)."""
    task = progress.add_task("solve_ivp loop, patients", total=len(populations))
    results: list[SimulationResult] = []
    seconds = 0.0
    for one in populations:
        start = time.perf_counter()
        results.append(simulate_reference(one, TREATMENTS, horizon, seed=seed, record_days=days))
        seconds += time.perf_counter() - start
        progress.advance(task)
    return results, seconds


def warm_up(one: VirtualPopulation, seed: int) -> None:
    """Untimed 30-day runs of every engine (first-call and JIT costs stay out of the timings)."""
    simulate(one, TREATMENTS, 30, seed=seed, record_days=[0, 30])
    simulate(one, TREATMENTS, 30, seed=seed, record_days=[0, 30], engine="numba")
    simulate_reference(one, TREATMENTS, 30, seed=seed, record_days=[0, 30])


def compare(vectorised: SimulationResult, references: Sequence[SimulationResult]) -> Agreement:
    """Largest |difference| in % BMD change over sites, recorded days and sampled patients."""
    for ref in references:
        if not np.array_equal(ref.days, vectorised.days):
            raise RuntimeError("the engines recorded different days")
    n = len(references)
    fast = np.stack([vectorised.bmd_pct_change(site)[:, :n] for site in SITES])
    slow = np.stack(
        [np.concatenate([r.bmd_pct_change(site) for r in references], axis=1) for site in SITES]
    )
    diff = np.abs(fast - slow)  # (site, day, patient), percentage points
    k, d, p = np.unravel_index(int(np.argmax(diff)), diff.shape)
    worst = float(np.nan) if np.isnan(diff).any() else float(diff[k, d, p])
    return Agreement(worst, int(p), SITES[int(k)], int(vectorised.days[d]))


def compare_compiled(numpy_run: SimulationResult, compiled: SimulationResult) -> Agreement:
    """Largest |difference| in % BMD change, compiled vs NumPy, over every patient and day."""
    if not np.array_equal(numpy_run.days, compiled.days):
        raise RuntimeError("the engines recorded different days")
    diff = np.abs(
        np.stack([numpy_run.bmd_pct_change(s) - compiled.bmd_pct_change(s) for s in SITES])
    )
    k, d, p = np.unravel_index(int(np.argmax(diff)), diff.shape)
    worst = float(np.nan) if np.isnan(diff).any() else float(diff[k, d, p])
    return Agreement(worst, int(p), SITES[int(k)], int(numpy_run.days[d]))


def compiled_table(
    timings: Sequence[Timing], compiled: Agreement, threads: int, patients: int
) -> Table:
    """Rich table: compiled vs NumPy engine, patients/s ratio per N, agreement, 1 s goal."""
    table = Table(title=f"Compiled (Numba, {threads} threads) vs NumPy engine")
    table.add_column("Measure")
    table.add_column("Value", justify="right")
    table.add_column("Goal", justify="right")
    table.add_column("Status")
    by = {(t.engine, t.patients): t for t in timings}
    for n in sorted({t.patients for t in timings if t.engine == "compiled"}):
        ratio = by[("compiled", n)].patients_per_s / by[("vectorised", n)].patients_per_s
        table.add_row(f"Speed-up compiled / NumPy, n={n:,}", f"{ratio:,.2f}x", "", "")
    seconds = by[("compiled", patients)].seconds
    met = seconds < COMPILED_GOAL_S
    table.add_row(
        f"Compiled wall time, n={patients:,}",
        f"{seconds:.2f} s",
        f"< {COMPILED_GOAL_S:g} s",
        "[green]met[/]" if met else "[yellow]not met[/]",
    )
    table.add_row(
        "Max |diff| compiled vs NumPy, % BMD change",
        f"{compiled.max_abs_diff_pp:.2e} pp",
        f"<= {COMPILED_TOLERANCE_PP:g} pp",
        "[green]pass[/]"
        if compiled.max_abs_diff_pp <= COMPILED_TOLERANCE_PP
        else "[bold red]FAIL[/]",
    )
    return table


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


def results_table(
    timings: Sequence[Timing], ratio: float, agreement: Agreement, memory: dict[str, float]
) -> tuple[Table, Table]:
    """Rich tables: throughput per engine, then the goals and memory."""
    speed = Table(title="bonecast engine benchmark: throughput")
    speed.add_column("Engine")
    speed.add_column("Patients", justify="right")
    speed.add_column("Wall time (s)", justify="right")
    speed.add_column("Patients/s", justify="right")
    for t in timings:
        speed.add_row(t.engine, f"{t.patients:,}", f"{t.seconds:.2f}", f"{t.patients_per_s:,.1f}")

    checks = Table(title="Goals and memory")
    checks.add_column("Measure")
    checks.add_column("Value", justify="right")
    checks.add_column("Goal", justify="right")
    checks.add_column("Status")
    met = ratio >= GOAL_SPEEDUP
    checks.add_row(
        "Speed-up (vectorised / loop)",
        f"{ratio:,.0f}x",
        f">= {GOAL_SPEEDUP:g}x",
        "[green]met[/]" if met else "[yellow]not met[/]",
    )
    checks.add_row(
        "Max |diff| in % BMD change",
        f"{agreement.max_abs_diff_pp:.4f} pp",
        f"<= {TOLERANCE_PP:g} pp",
        "[green]pass[/]" if agreement.ok else "[bold red]FAIL[/]",
    )
    checks.add_row("Peak RSS, after vectorised run", f"{memory['rss_after_vectorised']:,.0f} MiB")
    checks.add_row("Peak RSS, process at end", f"{memory['rss_end']:,.0f} MiB")
    checks.add_row(
        "tracemalloc peak, vectorised",
        f"{memory['tracemalloc_peak']:,.1f} MiB",
    )
    return speed, checks


def plot_throughput(timings: Sequence[Timing], ratio: float, path: Path) -> None:
    """Bar chart of patients/s per engine on a log axis, with the 50x goal line."""
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    labels = [f"{t.engine}\n(n={t.patients:,})" for t in timings]
    rates = [t.patients_per_s for t in timings]
    palette = {"vectorised": "#1f77b4", "compiled": "#2ca02c"}
    colours = [palette.get(t.engine, "#d62728") for t in timings]
    bars = ax.bar(labels, rates, color=colours)
    ax.bar_label(bars, labels=[f"{r:,.1f}" for r in rates], padding=2)
    loop = next(t for t in timings if t.engine not in palette)
    ax.axhline(
        GOAL_SPEEDUP * loop.patients_per_s,
        color="grey",
        linestyle="--",
        label=f"goal: {GOAL_SPEEDUP:g}x the loop",
    )
    ax.set_yscale("log")
    ax.set_ylim(top=max(rates) * 4)
    ax.set_ylabel("patients per second (log scale)")
    ax.set_title(f"bonecast engine: vectorised / loop = {ratio:,.0f}x")
    ax.legend(loc="upper right")
    fig.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit status 1 if the engines disagree by more than 0.1 pp."""
    args = parse_args(argv)
    horizon = horizon_days(args.years)
    days = yearly_record_days(horizon)
    parameter_set = default_parameter_set()
    spec = population_spec(args.patients)
    population = sample_population(spec, parameter_set, args.seed)
    singles = [
        sample_population(spec, parameter_set, args.seed, start=i, stop=i + 1)
        for i in range(args.sample)
    ]
    for i, one in enumerate(singles):
        check_same_patient(population, one, i)
    small = sample_population(spec, parameter_set, args.seed, 0, args.small) if args.small else None
    errors.print(
        f"{args.patients:,} patients x {horizon} days (daily steps), seed {args.seed}; "
        f"solve_ivp loop on the first {args.sample}; record days {days}"
    )

    threads = min(args.threads, numba.get_num_threads())  # starts at NUMBA_NUM_THREADS
    numba.set_num_threads(threads)
    warm_up(singles[0], args.seed)
    timings: list[Timing] = []
    with progress_bar(errors) as progress:
        rss_before = peak_rss_bytes()
        fast, seconds = run_vectorised(population, horizon, args.seed, days, progress, "vectorised")
        rss_after = peak_rss_bytes()
        timings.append(Timing("vectorised", args.patients, seconds))
        if small is not None:
            _, seconds = run_vectorised(small, horizon, args.seed, days, progress, "vectorised")
            timings.append(Timing("vectorised", small.n, seconds))
        compiled, seconds = run_vectorised(
            population, horizon, args.seed, days, progress, "compiled", "numba"
        )
        timings.append(Timing("compiled", args.patients, seconds))
        if small is not None:
            _, seconds = run_vectorised(
                small, horizon, args.seed, days, progress, "compiled", "numba"
            )
            timings.append(Timing("compiled", small.n, seconds))
        traced_peak, traced_seconds = traced_peak_bytes(
            population, horizon, args.seed, days, progress
        )
        references, seconds = run_reference_loop(singles, horizon, args.seed, days, progress)
        timings.append(Timing("solve_ivp loop", args.sample, seconds))

    ratio = timings[0].patients_per_s / timings[-1].patients_per_s
    agreement = compare(fast, references)
    compiled_agreement = compare_compiled(fast, compiled)
    compiled_ok = compiled_agreement.max_abs_diff_pp <= COMPILED_TOLERANCE_PP
    compiled_seconds = next(
        t.seconds for t in timings if t.engine == "compiled" and t.patients == args.patients
    )
    memory = {
        "rss_before_vectorised": rss_before / MIB,
        "rss_after_vectorised": rss_after / MIB,
        "rss_end": peak_rss_bytes() / MIB,
        "tracemalloc_peak": traced_peak / MIB,
    }
    for table in results_table(timings, ratio, agreement, memory):
        console.print(table)
    console.print(compiled_table(timings, compiled_agreement, threads, args.patients))
    slowdown = traced_seconds / timings[0].seconds
    console.print(
        f"[dim]Largest difference at {agreement.site}, day {agreement.day}, patient "
        f"{agreement.patient}. tracemalloc peak from a separate run ({traced_seconds:.2f} s, "
        f"{slowdown:.2f}x the untraced one), so the timings are untraced.[/]"
    )

    args.out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "benchmark": "bench_engine",
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "patients": args.patients,
            "years": args.years,
            "horizon_days": horizon,
            "dt_days": 1.0,
            "sample": args.sample,
            "seed": args.seed,
            "record_days": days,
            "population": spec.model_dump(mode="json"),
            "treatments": [t.model_dump(mode="json") for t in TREATMENTS],
            "reference_solver": {"method": "LSODA", "rtol": 1e-8, "atol": 1e-10},
            "parameter_set": f"{parameter_set.name} ({parameter_set.digest()})",
        },
        "timings": [
            {
                "engine": t.engine,
                "patients": t.patients,
                "seconds": t.seconds,
                "patients_per_s": t.patients_per_s,
            }
            for t in timings
        ],
        "speedup": {"ratio": ratio, "goal": GOAL_SPEEDUP, "met": ratio >= GOAL_SPEEDUP},
        "compiled": {
            "threads": threads,
            "speedup_over_numpy": {
                str(t.patients): t.patients_per_s
                / next(
                    v.patients_per_s
                    for v in timings
                    if v.engine == "vectorised" and v.patients == t.patients
                )
                for t in timings
                if t.engine == "compiled"
            },
            "seconds": compiled_seconds,
            "goal_seconds": COMPILED_GOAL_S,
            "goal_met": compiled_seconds < COMPILED_GOAL_S,
            "max_abs_diff_vs_numpy_pp": _finite(compiled_agreement.max_abs_diff_pp),
            "at": {
                "patient": compiled_agreement.patient,
                "site": compiled_agreement.site,
                "day": compiled_agreement.day,
            },
            "tolerance_pp": COMPILED_TOLERANCE_PP,
            "ok": compiled_ok,
        },
        "agreement": {
            "max_abs_diff_pp": _finite(agreement.max_abs_diff_pp),
            "at": {"patient": agreement.patient, "site": agreement.site, "day": agreement.day},
            "tolerance_pp": TOLERANCE_PP,
            "ok": agreement.ok,
        },
        "memory_mib": {
            "peak_rss_before_vectorised": memory["rss_before_vectorised"],
            "peak_rss_after_vectorised": memory["rss_after_vectorised"],
            "peak_rss_process": memory["rss_end"],
            "tracemalloc_peak_vectorised": memory["tracemalloc_peak"],
            "tracemalloc_run_seconds": traced_seconds,
        },
        "environment": {
            "bonecast": bonecast.__version__,
            "git": _git_revision(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "numba": numba.__version__,
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
        },
    }
    json_path = args.out / "bench_engine.json"
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    png_path = args.out / "bench_engine.png"
    plot_throughput(timings, ratio, png_path)
    console.print(f"Wrote [bold]{json_path}[/] and [bold]{png_path}[/]")

    if not agreement.ok:
        errors.print(
            f"[bold red]FAIL:[/] the engines differ by {agreement.max_abs_diff_pp:.4f} pp "
            f"(> {TOLERANCE_PP:g} pp) at {agreement.site}, day {agreement.day}, "
            f"patient {agreement.patient}"
        )
        return 1
    if not compiled_ok:
        errors.print(
            f"[bold red]FAIL:[/] compiled and NumPy engines differ by "
            f"{compiled_agreement.max_abs_diff_pp:.2e} pp (> {COMPILED_TOLERANCE_PP:g} pp)"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
