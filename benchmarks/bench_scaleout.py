"""Benchmark: Dask strong scaling of a virtual trial, and 1,000,000 patients under 2 GB.

Runs a one-arm trial (postmenopausal women, 64 +- 8 years; anastrozole 1 mg daily plus
zoledronic acid 4 mg IV every 182 days, months 0-60; three BMD sites, CTX, P1NP and clinical
fractures, yearly rows to month 120 and the interval 60-120, monthly recording for the bands)
through the real path: :func:`bonecast.simulation.run_trial` with the default chunking
(:func:`~bonecast.simulation.trials.chunk_size_for`), serially or with a
:class:`~bonecast.simulation.executors.DaskExecutor` from
:func:`~bonecast.simulation.executors.dask_executor` (chunks reduced on the workers).

It measures, in one run (in this order):

1. **Large run** (``--large-patients``, default 1,000,000; 0 skips it): a LocalCluster with
   ``--workers`` worker processes (default: one per core) sharing the cores, bonecast's
   defaults: wall time, patients/s and the peak memory of the whole process tree (this
   client process, the scheduler it hosts, the nannies and the workers), the sum of their RSS
   sampled with psutil every 0.2 s (shared library pages are counted once per process, so the
   sum overstates it). It runs first, so that this process holds nothing from the other runs.
2. **Strong scaling** (``--patients``, default 100,000): the same trial serially in this
   process (the compiled kernel on every core), then on LocalClusters of 1, 2, ... and all
   workers (``--scaling-workers``; default 1, 2 and the core count) of one core each (one
   task thread and one kernel thread per worker process), ``--repeats`` times each in turns
   (fastest kept: the least disturbed by other load). Each row gives the wall time of
   ``run_trial`` on the fresh cluster (the workers load the compiled kernel during the first
   chunk), the cluster's start-up apart, the speed-up over serial and over one worker, the
   CPU seconds of the whole process tree during ``run_trial`` (the work and Dask's overhead;
   unlike the wall time, it hardly depends on what else runs on a shared machine) and the
   machine's load average around it. Every run's rows must equal the serial rows bit for bit,
   or the benchmark exits 1.
3. **Whole command** (``--no-commands`` skips it): ``bonecast trial run`` on the same
   ``--patients`` serially and with ``--workers`` (bonecast's defaults otherwise), each in a
   fresh interpreter, ``--repeats`` times in turns (fastest kept): what a user waits for,
   start-up, cluster, loading the compiled kernel and exit included, and the CPU seconds of
   the command and all its processes. The CSVs must be identical, or the benchmark exits 1.
4. **malloc trim** (``--trim-repeats``, default 0: measured once, benchmarks/README.md):
   ``--patients`` on ``--workers`` workers started with Dask's default
   ``MALLOC_TRIM_THRESHOLD_`` (64 KiB), with a large one (1 GiB) and with none (glibc's own),
   alternating; the best wall time of each; rows checked as above.

Wall times are :func:`time.perf_counter` around :func:`run_trial`; starting a cluster is timed
apart. Results: Rich tables, ``--out``/bench_scaleout.json, bench_scaleout.csv (one line per
run of the scaling table) and bench_scaleout.md (the tables in Markdown).

Usage::

    python benchmarks/bench_scaleout.py [--patients 100000] [--large-patients 1000000]
        [--years 10] [--workers N] [--scaling-workers 1 2 N] [--repeats 2] [--no-commands]
        [--engine auto|numba|numpy] [--trim-repeats 0] [--out results/bench]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import yaml
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
    available_cores,
    dask_executor,
    worker_threads,
)
from bonecast.simulation.solver import Engine
from bonecast.simulation.trials import chunk_size_for

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
SERIAL = "serial"

console = Console()
errors = Console(stderr=True)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a count (0 or more)")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    cores = available_cores()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=_positive_int, default=100_000)
    parser.add_argument("--large-patients", type=_count, default=1_000_000, help="0 skips it")
    parser.add_argument("--years", type=_positive_int, default=10)
    parser.add_argument("--workers", type=_positive_int, default=cores)
    parser.add_argument(
        "--scaling-workers",
        type=_positive_int,
        nargs="+",
        default=sorted({1, 2, cores}),
        help="worker counts of the scaling table (one core each)",
    )
    parser.add_argument("--repeats", type=_positive_int, default=2)
    parser.add_argument("--engine", choices=["auto", "numba", "numpy"], default="auto")
    parser.add_argument(
        "--no-commands",
        dest="commands",
        action="store_false",
        help="skip the whole-command comparison",
    )
    parser.add_argument("--trim-repeats", type=_count, default=0, help="0 skips the comparison")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    return parser.parse_args(argv)


def trial_spec(patients: int, years: int, seed: int) -> TrialSpec:
    """The benchmark trial (see the module docstring) with ``patients`` per arm."""
    return parse_trial_spec(trial_spec_data(patients, years, seed), "benchmark")


def trial_spec_data(patients: int, years: int, seed: int) -> dict[str, Any]:
    """The benchmark trial as the mapping a spec file holds."""
    months = 12 * years
    return {
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
    }


@dataclass(frozen=True)
class Run:
    """One timed :func:`run_trial`; ``workers`` 0 for a serial run."""

    label: str
    patients: int
    workers: int
    threads_per_worker: int
    chunk_size: int
    start_s: float
    seconds: float
    cpu_s: float
    peak_rss_bytes: int
    load_before: float
    load_after: float

    @property
    def patients_per_s(self) -> float:
        """Throughput, patients per second of wall time."""
        return self.patients / self.seconds


def tree_cpu_seconds() -> dict[int, float]:
    """User + system CPU seconds so far of this process and each descendant, by process id."""
    me = psutil.Process()
    out: dict[int, float] = {}
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:  # a process that just ended
            continue
        out[process.pid] = times.user + times.system
    return out


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the process tree spent between two :func:`tree_cpu_seconds`."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


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


@dataclass(frozen=True)
class Setting:
    """Where a run happens: serially here (``workers`` 0) or on a fresh LocalCluster."""

    label: str
    workers: int
    threads_per_worker: int
    malloc_trim_threshold: int | None = MALLOC_TRIM_THRESHOLD


@contextmanager
def started(setting: Setting) -> Iterator[tuple[Executor, float]]:
    """The setting's executor and the seconds its cluster took to start (0 serially)."""
    if setting.workers == 0:
        yield SerialExecutor(), 0.0
        return
    began = time.perf_counter()
    with dask_executor(
        setting.workers,
        malloc_trim_threshold=setting.malloc_trim_threshold,
        threads_per_worker=setting.threads_per_worker,
    ) as executor:
        yield executor, time.perf_counter() - began


def timed(spec: TrialSpec, setting: Setting, engine: Engine) -> tuple[Run, TrialResult]:
    """Run the trial in ``setting`` with a progress bar: run_trial's wall time and memory."""
    n, days = spec.population.n, spec.horizon_days
    with started(setting) as (executor, start_s), TreeMemory() as memory:
        load_before = os.getloadavg()[0]
        with progress_bar(errors) as progress:
            task = progress.add_task(f"{setting.label}: {n:,} patients x {days} days", total=n)
            cpu_before = tree_cpu_seconds()
            began = time.perf_counter()
            result = run_trial(
                spec,
                progress=lambda k: progress.advance(task, k / days),
                engine=engine,
                executor=executor,
            )
            seconds = time.perf_counter() - began
            cpu_s = cpu_used(cpu_before, tree_cpu_seconds())
        run = Run(
            setting.label,
            n,
            setting.workers,
            setting.threads_per_worker,
            chunk_size_for(n, executor.parallelism),
            start_s,
            seconds,
            cpu_s,
            memory.peak,
            load_before,
            os.getloadavg()[0],
        )
    return run, result


def _check(run: Run, result: TrialResult, reference: TrialResult) -> None:
    """Exit 1 unless ``result`` has the reference's rows bit for bit."""
    if result.rows != reference.rows:
        errors.print(f"[bold red]{run.label}: rows differ from the serial run[/]")
        sys.exit(1)


def strong_scaling(spec: TrialSpec, args: argparse.Namespace) -> list[Run]:
    """Serial, then every worker count of ``--scaling-workers``, ``--repeats`` times in turns;
    the fastest run of each setting, in that order."""
    cores = available_cores()
    settings = [Setting(SERIAL, 0, cores)] + [
        Setting(f"{w} worker{'s' if w > 1 else ''} x 1 core", w, 1)
        for w in sorted(set(args.scaling_workers))
    ]
    run_trial(trial_spec(200, 1, args.seed), engine=args.engine)  # load the kernel here first
    best: dict[str, Run] = {}
    reference: TrialResult | None = None
    for _ in range(args.repeats):
        for setting in settings:
            run, result = timed(spec, setting, args.engine)
            reference = reference or result
            _check(run, result, reference)
            if setting.label not in best or run.seconds < best[setting.label].seconds:
                best[setting.label] = run
    return [best[s.label] for s in settings]


@dataclass(frozen=True)
class Command:
    """One timed ``bonecast trial run`` in a fresh interpreter."""

    label: str
    seconds: float
    cpu_s: float


def run_command(label: str, argv: list[str], out: Path) -> tuple[Command, str]:
    """Run ``argv`` to completion: wall time, the CPU seconds of it and all its descendants
    (Dask's workers included: they are waited for), and the CSV it wrote."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=3600)
    seconds = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Command(label, seconds, cpu), out.read_text(encoding="utf-8")


def whole_commands(args: argparse.Namespace) -> list[Command]:
    """``bonecast trial run`` serially and with ``--workers`` (bonecast's defaults otherwise),
    ``--repeats`` times in turns, each in a fresh interpreter: everything a user waits for
    (start-up, the cluster, loading the compiled kernel, the exit). The fastest of each;
    exits 1 if the CSVs differ."""
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as folder:
        spec = Path(folder) / "trial.yaml"
        data = trial_spec_data(args.patients, args.years, args.seed)
        spec.write_text(yaml.safe_dump(data), encoding="utf-8")
        out = Path(folder) / "result.csv"
        base = [sys.executable, "-m", "bonecast.cli", "trial", "run", str(spec), "--out", str(out)]
        variants = {
            "bonecast trial run": [*base, "--engine", args.engine],
            f"bonecast trial run --workers {args.workers}": [
                *base,
                "--engine",
                args.engine,
                "--workers",
                str(args.workers),
            ],
        }
        best: dict[str, Command] = {}
        reference: str | None = None
        for _ in range(args.repeats):
            for label, argv in variants.items():
                errors.print(f"{label}: {args.patients:,} patients x {args.years} years")
                command, csv_text = run_command(label, argv, out)
                reference = reference or csv_text
                if csv_text != reference:
                    errors.print(f"[bold red]{label}: the CSV differs from the serial one[/]")
                    sys.exit(1)
                if label not in best or command.seconds < best[label].seconds:
                    best[label] = command
    return list(best.values())


def compare_trim(spec: TrialSpec, args: argparse.Namespace) -> dict[str, float]:
    """Best wall time per malloc-trim setting; exits 1 if any run's rows differ."""
    best: dict[str, float] = {}
    reference: TrialResult | None = None
    threads = worker_threads(args.workers)
    for repeat in range(args.trim_repeats):
        for label, trim in TRIM_SETTINGS.items():
            setting = Setting(f"trim {label} #{repeat + 1}", args.workers, threads, trim)
            run, result = timed(spec, setting, args.engine)
            reference = reference or result
            _check(run, result, reference)
            best[label] = min(best.get(label, float("inf")), run.seconds)
    return best


def scaling_table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the strong-scaling table (ratios of the same run)."""
    serial = next(r for r in runs if r.workers == 0)
    one = next((r for r in runs if r.workers == 1), None)
    header = [
        "run",
        "cores used",
        "chunk",
        "cluster start s",
        "wall s",
        "patients/s",
        "vs serial",
        "vs 1 worker",
        "with start vs serial",
        "CPU s",
        "CPU vs serial",
        "load avg",
    ]
    rows = []
    for run in runs:
        cores = run.threads_per_worker if run.workers == 0 else run.workers
        rows.append(
            [
                run.label,
                str(cores),
                f"{run.chunk_size:,}",
                f"{run.start_s:.1f}" if run.workers else "",
                f"{run.seconds:.2f}",
                f"{run.patients_per_s:,.0f}",
                f"{serial.seconds / run.seconds:.2f}x",
                f"{one.seconds / run.seconds:.2f}x" if one and run.workers else "",
                f"{serial.seconds / (run.seconds + run.start_s):.2f}x" if run.workers else "",
                f"{run.cpu_s:.1f}",
                f"{run.cpu_s / serial.cpu_s:.2f}",
                f"{run.load_before:.1f}-{run.load_after:.1f}",
            ]
        )
    return header, rows


def _markdown(title: str, header: list[str], rows: list[list[str]]) -> str:
    right = ["---"] + ["---:"] * (len(header) - 1)
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "| " + " | ".join(right) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _rich(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurements, print them and write the JSON, CSV and Markdown files."""
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    engine: Engine = args.engine
    cores = available_cores()
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    large: Run | None = None
    if args.large_patients:
        # first, so that this process's memory holds nothing from the other runs
        setting = Setting(
            f"{args.workers} workers (defaults)", args.workers, worker_threads(args.workers)
        )
        large, _ = timed(trial_spec(args.large_patients, args.years, args.seed), setting, engine)
        under = large.peak_rss_bytes < GOAL_PEAK_BYTES
        tables.append(
            (
                f"{large.patients:,} patients x {args.years} years",
                [
                    "run",
                    "chunk",
                    "cluster start s",
                    "wall s",
                    "patients/s",
                    "CPU s",
                    "peak RSS MiB",
                ],
                [
                    [
                        large.label,
                        f"{large.chunk_size:,}",
                        f"{large.start_s:.1f}",
                        f"{large.seconds:.1f}",
                        f"{large.patients_per_s:,.0f}",
                        f"{large.cpu_s:.1f}",
                        f"{large.peak_rss_bytes / MIB:,.0f} "
                        f"({'under' if under else 'OVER'} {GOAL_PEAK_BYTES / MIB:,.0f})",
                    ]
                ],
            )
        )
    spec = trial_spec(args.patients, args.years, args.seed)
    runs = strong_scaling(spec, args)
    header, rows = scaling_table(runs)
    tables.insert(
        0, (f"Strong scaling, {args.patients:,} patients x {args.years} years", header, rows)
    )
    commands = whole_commands(args) if args.commands else []
    if commands:
        serial_command = commands[0]
        tables.insert(
            1,
            (
                f"Whole command, {args.patients:,} patients x {args.years} years "
                f"(fastest of {args.repeats})",
                ["command", "wall s", "vs serial", "CPU s", "CPU vs serial"],
                [
                    [
                        command.label,
                        f"{command.seconds:.2f}",
                        f"{serial_command.seconds / command.seconds:.2f}x",
                        f"{command.cpu_s:.1f}",
                        f"{command.cpu_s / serial_command.cpu_s:.2f}",
                    ]
                    for command in commands
                ],
            ),
        )
    trim = compare_trim(spec, args) if args.trim_repeats else {}
    if trim:
        tables.append(
            (
                f"malloc trim, {args.patients:,} patients, best of {args.trim_repeats}",
                ["worker MALLOC_TRIM_THRESHOLD_", "wall s"],
                [[label, f"{seconds:.2f}"] for label, seconds in trim.items()],
            )
        )

    title = (
        f"bonecast {bonecast.__version__}, {engine} engine, {cores} cores "
        f"(load average {os.getloadavg()[0]:.1f} at the end)"
    )
    console.print(f"[bold]{title}[/]")
    for caption, head, body in tables:
        console.print(_rich(caption, head, body))

    markdown = f"## {title}\n\n" + "\n".join(_markdown(*table) for table in tables)
    (args.out / "bench_scaleout.md").write_text(markdown, encoding="utf-8")
    with (args.out / "bench_scaleout.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        fields = [*asdict(runs[0]), "patients_per_s", "vs_serial"]
        writer.writerow(fields)
        for run in runs:
            writer.writerow(
                [
                    *asdict(run).values(),
                    f"{run.patients_per_s:.1f}",
                    f"{runs[0].seconds / run.seconds:.3f}",
                ]
            )
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "bonecast": bonecast.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cores": cores,
        "engine": engine,
        "years": args.years,
        "scaling": [asdict(run) for run in runs],
        "commands": [asdict(command) for command in commands],
        "large": asdict(large) if large else None,
        "large_peak_under_goal": large.peak_rss_bytes < GOAL_PEAK_BYTES if large else None,
        "trim_best_seconds": trim,
        "worker_trim_threshold": MALLOC_TRIM_THRESHOLD,
    }
    (args.out / "bench_scaleout.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    console.print(f"Wrote {args.out}/bench_scaleout.{{json,csv,md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
