"""Benchmark: a virtual trial of 1,000,000 patients x 10 years on a 2-worker Dask LocalCluster.

Runs a one-arm trial (postmenopausal women, 64 +- 8 years; anastrozole 1 mg daily plus
zoledronic acid 4 mg IV every 182 days, months 0-60; three BMD sites, CTX, P1NP and clinical
fractures, yearly rows to month 120 and the interval 60-120) through the real path:
:func:`bonecast.simulation.run_trial` with a :class:`~bonecast.simulation.executors.DaskExecutor`
from :func:`~bonecast.simulation.executors.dask_executor` (chunks reduced on the workers).

It measures, in one run (in this order):

1. **Scale-out**: ``--patients`` patients on ``--workers`` workers with the worker environment
   bonecast uses (:data:`~bonecast.simulation.executors.MALLOC_TRIM_THRESHOLD`): wall time,
   patients/s and the peak memory of the whole process tree (this client process, the
   scheduler it hosts, the nannies and the workers), the sum of their RSS sampled with psutil
   every 0.2 s (shared library pages are counted once per process, so the sum overstates it).
   It runs first, so that this process holds nothing from the other runs.
2. **Baseline**: the same trial on ``--baseline-patients`` patients serially in this process
   (:class:`~bonecast.simulation.executors.SerialExecutor`), patients/s. Every throughput is
   also given as a ratio to it.
3. **malloc trim**: the baseline's patients on ``--workers`` workers started with Dask's default
   ``MALLOC_TRIM_THRESHOLD_`` (64 KiB), with a large one (1 GiB) and with none (glibc's own,
   dynamic), each ``--trim-repeats`` times, alternating; the best wall time of each. Each run's
   rows must equal the serial baseline's (bit for bit) or the benchmark exits 1.

Wall times are :func:`time.perf_counter` around :func:`run_trial` only: starting the cluster is
left out. Results go to ``--out``/bench_scaleout.json.

Usage::

    python benchmarks/bench_scaleout.py [--patients 1000000] [--years 10] [--workers 2]
        [--chunk-size K] [--engine numpy] [--baseline-patients 40000] [--trim-repeats 2]
        [--out results/bench]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

import bonecast
from bonecast.progress import progress_bar
from bonecast.simulation import TrialResult, TrialSpec, parse_trial_spec, run_trial
from bonecast.simulation.executors import (
    DASK_MALLOC_TRIM_THRESHOLD,
    MALLOC_TRIM_THRESHOLD,
    Executor,
    SerialExecutor,
    dask_executor,
)
from bonecast.simulation.solver import Engine

GOAL_PEAK_BYTES = 2 * 1024**3
"""Peak memory goal of the whole process tree at 1,000,000 patients x 10 years, bytes."""
LARGE_TRIM_THRESHOLD = 1024**3
"""The large ``MALLOC_TRIM_THRESHOLD_`` compared with Dask's default, bytes."""
SAMPLE_EVERY_S = 0.2
"""Interval between RSS samples of the process tree, s."""
MIB = 1024.0**2
TRIM_SETTINGS: dict[str, int | None] = {
    "dask default (64 KiB)": DASK_MALLOC_TRIM_THRESHOLD,
    "large (1 GiB)": LARGE_TRIM_THRESHOLD,
    "unset (glibc dynamic)": None,
}

console = Console()
errors = Console(stderr=True)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=_positive_int, default=1_000_000)
    parser.add_argument("--years", type=_positive_int, default=10)
    parser.add_argument("--workers", type=_positive_int, default=2)
    parser.add_argument("--chunk-size", type=_positive_int, default=None)
    parser.add_argument("--engine", choices=["numpy", "numba"], default="numpy")
    parser.add_argument("--baseline-patients", type=_positive_int, default=40_000)
    parser.add_argument("--trim-repeats", type=int, default=2, help="0 skips the comparison")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    return parser.parse_args(argv)


def trial_spec(patients: int, years: int, seed: int) -> TrialSpec:
    """The benchmark trial (see the module docstring) with ``patients`` per arm."""
    months = 12 * years
    return parse_trial_spec(
        {
            "name": "scale-out benchmark",
            "seed": seed,
            "population": {
                "n": patients,
                "menopausal_status": "postmenopausal",
                "age_years": {"mean": 64, "sd": 8},
                "baseline_t_score": {"lumbar_spine": {"mean": -0.8, "sd": 1.0}},
            },
            "arms": [
                {
                    "name": "anastrozole + zoledronic acid",
                    "treatments": [
                        {
                            "drug": "anastrozole",
                            "dose_mg": 1,
                            "interval_days": 1,
                            "start_month": 0,
                            "stop_month": 60,
                        },
                        {
                            "drug": "zoledronic_acid",
                            "dose_mg": 4,
                            "route": "iv",
                            "interval_days": 182,
                            "start_month": 0,
                            "stop_month": 60,
                        },
                    ],
                }
            ],
            "outputs": {
                "quantities": [
                    "lumbar_spine",
                    "total_hip",
                    "femoral_neck",
                    "ctx",
                    "p1np",
                    "clinical_fracture",
                ],
                "months": list(range(12, months + 1, 12)),
                "intervals": [[months // 2, months]],
            },
        },
        "benchmark",
    )


@dataclass(frozen=True)
class Run:
    """One timed :func:`run_trial`."""

    label: str
    patients: int
    seconds: float
    peak_rss_bytes: int

    @property
    def patients_per_s(self) -> float:
        """Throughput, patients per second of wall time."""
        return self.patients / self.seconds


class TreeMemory:
    """Peak of the summed RSS of this process and all its descendants, sampled in a thread."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:  # a process that just ended
                    continue
            self.peak = max(self.peak, total)
            self._stop.wait(SAMPLE_EVERY_S)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(
    label: str,
    spec: TrialSpec,
    executor: Executor,
    engine: Engine,
    chunk_size: int | None,
    memory: TreeMemory,
) -> tuple[Run, TrialResult]:
    """Run the trial through ``executor`` with a progress bar; the wall time of run_trial."""
    n, days = spec.population.n, spec.horizon_days
    with progress_bar(errors) as progress:
        task = progress.add_task(f"{label}: {n:,} patients x {days} days", total=n * days)
        start = time.perf_counter()
        result = run_trial(
            spec,
            progress=lambda k: progress.advance(task, k),
            chunk_size=chunk_size,
            engine=engine,
            executor=executor,
        )
        seconds = time.perf_counter() - start
    return Run(label, n, seconds, memory.peak), result


def compare_trim(
    spec: TrialSpec, args: argparse.Namespace, baseline: TrialResult
) -> dict[str, float]:
    """Best wall time per malloc-trim setting; exits 1 if any run's rows differ from serial."""
    best: dict[str, float] = {}
    for repeat in range(args.trim_repeats):
        for label, trim in TRIM_SETTINGS.items():
            with (
                dask_executor(args.workers, malloc_trim_threshold=trim) as executor,
                TreeMemory() as memory,
            ):
                run, result = timed(
                    f"{label} #{repeat + 1}", spec, executor, args.engine, args.chunk_size, memory
                )
            if result.rows != baseline.rows:
                errors.print(f"[bold red]{label}: rows differ from the serial run[/]")
                sys.exit(1)
            best[label] = min(best.get(label, float("inf")), run.seconds)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    """Run the three measurements, print them and write the JSON."""
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    big = trial_spec(args.patients, args.years, args.seed)
    # first, so that this process's memory holds nothing from the other runs
    with dask_executor(args.workers) as executor, TreeMemory() as memory:
        scaled, result = timed(
            f"{args.workers} workers", big, executor, args.engine, args.chunk_size, memory
        )
    small = trial_spec(args.baseline_patients, args.years, args.seed)
    with TreeMemory() as memory:
        serial, baseline = timed(
            "serial baseline", small, SerialExecutor(), args.engine, args.chunk_size, memory
        )
    trim = compare_trim(small, args, baseline) if args.trim_repeats > 0 else {}

    table = Table(title=f"bonecast {bonecast.__version__}: scale-out ({args.engine} engine)")
    for column in ("run", "patients", "wall s", "patients/s", "vs serial", "peak RSS MiB"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for run in (serial, scaled):
        ratio = run.patients_per_s / serial.patients_per_s
        table.add_row(
            run.label,
            f"{run.patients:,}",
            f"{run.seconds:.1f}",
            f"{run.patients_per_s:,.0f}",
            f"{ratio:.2f}x",
            f"{run.peak_rss_bytes / MIB:,.0f}",
        )
    for label, seconds in trim.items():
        ratio = (small.population.n / seconds) / serial.patients_per_s
        table.add_row(
            f"trim: {label}",
            f"{small.population.n:,}",
            f"{seconds:.1f}",
            f"{small.population.n / seconds:,.0f}",
            f"{ratio:.2f}x",
            "",
        )
    console.print(table)
    under = scaled.peak_rss_bytes < GOAL_PEAK_BYTES
    console.print(
        f"Peak memory of the process tree: {scaled.peak_rss_bytes / MIB:,.0f} MiB "
        f"({'under' if under else 'OVER'} the {GOAL_PEAK_BYTES / MIB:,.0f} MiB goal); "
        f"{len(result.rows)} rows; worker trim threshold: {MALLOC_TRIM_THRESHOLD}."
    )
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "bonecast": bonecast.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": psutil.cpu_count(),
        "engine": args.engine,
        "workers": args.workers,
        "years": args.years,
        "serial": asdict(serial),
        "scaled": asdict(scaled),
        "scaled_vs_serial": scaled.patients_per_s / serial.patients_per_s,
        "peak_under_goal": under,
        "trim_best_seconds": trim,
        "trim_vs_dask_default": {
            label: trim[next(iter(TRIM_SETTINGS))] / seconds for label, seconds in trim.items()
        },
        "worker_trim_threshold": MALLOC_TRIM_THRESHOLD,
    }
    path = args.out / "bench_scaleout.json"
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    console.print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
