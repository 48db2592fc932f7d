"""Scale-out: a trial run on Dask workers gives the serial run's rows (issues 6 and 17).

Chunks are reduced to exact summaries where they run; the rows must not depend on the number
of workers, the chunk size or the cluster (local or at a scheduler address), and the
percentiles must match NumPy's on the same patients. Chunks are sized for the workers, whose
kernels share the cores without oversubscribing them.
"""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import dask
import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from bonecast.cli import app
from bonecast.simulation import (
    SITES,
    default_parameter_set,
    month_to_day,
    parse_trial_spec,
    run_trial,
    sample_population,
    simulate,
)
from bonecast.simulation.executors import (
    LOCAL_CLUSTER_CONFIG,
    THREAD_VARIABLES,
    DaskExecutor,
    dask_executor,
    share_kernel_threads,
    worker_threads,
)
from bonecast.simulation.fracture import FRACTURE_QUANTITIES
from bonecast.simulation.population import residual_error_pp
from bonecast.simulation.summaries import FIXED_POINT_BITS, ROW_BIN_SHIFT
from bonecast.simulation.trials import (
    CHUNK_SIZE,
    CHUNKS_PER_TASK_THREAD,
    MIN_CHUNK_SIZE,
    TrialChunk,
    chunk_size_for,
)

runner = CliRunner()

SPEC = {
    "name": "scale-out",
    "seed": 11,
    "population": {
        "n": 60,
        "menopausal_status": "postmenopausal",
        "age_years": {"mean": 64, "sd": 8},
        "baseline_t_score": {"lumbar_spine": {"mean": -0.8, "sd": 1.0}},
    },
    "arms": [
        {
            "name": "anastrozole",
            "treatments": [
                {"drug": "anastrozole", "dose_mg": 1, "interval_days": 1, "start_month": 0}
            ],
        },
        {"name": "untreated"},
    ],
    "outputs": {
        "quantities": ["lumbar_spine", "total_hip", "ctx", "hip_fracture"],
        "months": [6, 12],
        "intervals": [[6, 12]],
    },
}


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scaleout") / "trial.yaml"
    path.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    return path


def _run(spec_file: Path, out: Path, *options: str) -> list[str]:
    result = runner.invoke(app, ["trial", "run", str(spec_file), "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def serial_rows(spec_file: Path) -> list[str]:
    return _run(spec_file, spec_file.with_name("serial.csv"))


def test_two_dask_workers_reproduce_the_serial_rows(
    spec_file: Path, serial_rows: list[str]
) -> None:
    rows = _run(spec_file, spec_file.with_name("dask.csv"), "--workers", "2")
    assert len(serial_rows) == 1 + 2 * 4 * 3
    assert rows == serial_rows


def test_one_dask_worker_reproduces_the_serial_rows_on_its_share_of_the_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = parse_trial_spec(SPEC)
    serial = run_trial(spec, engine="numba")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "7")  # a shell's setting must not reach the workers
    with dask_executor(workers=1, threads_per_worker=1) as executor:
        assert isinstance(executor, DaskExecutor)
        distributed = run_trial(spec, executor=executor, chunk_size=25, engine="numba")
        names = [*THREAD_VARIABLES, "MALLOC_TRIM_THRESHOLD_"]
        environments = executor.client.run(lambda: {k: os.environ.get(k) for k in names})
    assert distributed.rows == serial.rows
    for environment in environments.values():
        # one thread as asked; glibc's dynamic malloc thresholds (benchmarks/README.md)
        assert environment == {**dict.fromkeys(THREAD_VARIABLES, "1"), names[-1]: None}
    assert os.environ["NUMBA_NUM_THREADS"] == "7"  # this process's environment is restored


QUIET = tuple(LOCAL_CLUSTER_CONFIG)


def test_local_workers_share_the_cores_without_oversubscribing_them() -> None:
    assert [worker_threads(w, cores=8) for w in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    with dask_executor(workers=2) as executor:
        assert isinstance(executor, DaskExecutor)
        threads = executor.client.run(lambda: os.environ["NUMBA_NUM_THREADS"])
        settings = executor.client.run(lambda: {k: dask.config.get(k) for k in QUIET})
        assert executor.parallelism == 2  # one chunk at a time per worker process
    assert list(threads.values()) == [str(worker_threads(2))] * 2
    # no profiler, slower ticks: the workers run with bonecast's settings
    assert list(settings.values()) == [LOCAL_CLUSTER_CONFIG] * 2


@pytest.mark.parametrize("chunk_size", ["7", "50", "1000"])
def test_chunk_size_does_not_change_rows(
    spec_file: Path, serial_rows: list[str], chunk_size: str
) -> None:
    rows = _run(
        spec_file, spec_file.with_name(f"chunk{chunk_size}.csv"), "--chunk-size", chunk_size
    )
    assert rows == serial_rows


def test_percentiles_match_numpy_on_the_same_patients() -> None:
    """The merged histogram's median and 5-95 % are NumPy's exact ones within half a bin."""
    spec = parse_trial_spec(SPEC)
    row = next(
        r
        for r in run_trial(spec, chunk_size=9).rows
        if (r.arm, r.quantity, r.month_from, r.month) == ("anastrozole", "lumbar_spine", 0, 12)
    )
    params = default_parameter_set()
    population = sample_population(spec.population, params, spec.seed)
    day = month_to_day(12)
    sim = simulate(population, spec.arms[0].treatments, day, seed=spec.seed, record_days=[0, day])
    k = SITES.index("lumbar_spine")
    measured = [
        sim.bmd_ratio[i, k]
        * (1 + residual_error_pp(params, population.patient_ids, spec.seed, d)[k] / 100)
        for i, d in enumerate((0, day))
    ]
    change = 100 * (measured[1] / measured[0] - 1)
    half_bin = 2.0 ** (ROW_BIN_SHIFT - FIXED_POINT_BITS - 1)
    p05, median, p95 = np.percentile(change, [5, 50, 95])
    assert row.n == change.size
    assert row.median_pct_change == pytest.approx(median, abs=half_bin + 1e-6)
    assert row.p05 == pytest.approx(p05, abs=half_bin + 1e-6)
    assert row.p95 == pytest.approx(p95, abs=half_bin + 1e-6)
    assert row.mean_pct_change == pytest.approx(change.mean(), abs=1e-6)
    assert row.sd == pytest.approx(change.std(ddof=1), abs=1e-6)


def test_a_chunk_sends_back_summaries_not_patients_or_days() -> None:
    """A chunk's result has one summary per row and band month, each at most chunk-sized,
    and does not change when every simulated day is recorded (no per-day data in it)."""
    spec = parse_trial_spec(SPEC)
    months = tuple(float(m) for m in range(13))
    monthly = tuple(sorted({month_to_day(m) for m in months}))
    daily = tuple(range(spec.horizon_days + 1))
    params = default_parameter_set()
    chunk = TrialChunk(spec, params, monthly, months)((0, 60))
    assert chunk.patients == 60
    assert set(chunk.rows) == {
        (arm.name, q, a, b)
        for arm in spec.arms
        for q in spec.outputs.quantities
        for a, b in spec.output_pairs()
    }
    assert set(chunk.bands) == {
        (arm.name, q, m) for arm in spec.arms for q in spec.outputs.quantities for m in months
    }
    summaries = [*chunk.rows.values(), *chunk.bands.values()]
    assert all(s.count == 60 and s.bins.size <= 60 for s in summaries)
    every_day = TrialChunk(spec, params, daily, months)((0, 60))
    assert every_day.rows.keys() == chunk.rows.keys()
    assert every_day.bands.keys() == chunk.bands.keys()
    # fracture hazards are integrated over the recorded days; every other value is the same
    for row, summary in chunk.rows.items():
        if row[1] not in FRACTURE_QUANTITIES:
            assert pickle.dumps(every_day.rows[row]) == pickle.dumps(summary)
    for band, summary in chunk.bands.items():
        if band[1] not in FRACTURE_QUANTITIES:
            assert pickle.dumps(every_day.bands[band]) == pickle.dumps(summary)


def test_running_rows_arrive_per_chunk_and_end_with_the_result() -> None:
    spec = parse_trial_spec(SPEC)
    seen: list[int] = []
    result = run_trial(spec, chunk_size=25, on_rows=lambda rows: seen.append(rows[0].n))
    assert seen == [25, 50, 60]
    assert all(row.n == 60 for row in result.rows)


def test_workers_and_scheduler_are_exclusive(spec_file: Path) -> None:
    out = spec_file.with_name("both.csv")
    args = ["trial", "run", str(spec_file), "--out", str(out), "--workers", "2"]
    result = runner.invoke(app, [*args, "--scheduler", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2
    assert not out.exists()


def test_serial_progress_is_reported_while_a_chunk_runs() -> None:
    """A serial run of one chunk still moves the progress bar (not 0 % then 100 %)."""
    spec = parse_trial_spec(SPEC)
    calls: list[int] = []
    run_trial(spec, progress=calls.append)
    n = spec.population.n if spec.population.variability else 1
    assert len(calls) > len(spec.arms)
    assert sum(calls) == len(spec.arms) * n * spec.horizon_days


@given(patients=st.integers(1, 3_000_000), threads=st.integers(1, 512))
def test_chunks_are_sized_for_the_threads_within_the_memory_bound(
    patients: int, threads: int
) -> None:
    size = chunk_size_for(patients, threads)
    chunks = math.ceil(patients / size)
    assert 1 <= size <= CHUNK_SIZE  # memory per chunk stays bounded
    if threads == 1:
        assert size == min(patients, CHUNK_SIZE)  # serially, cut only for memory
        return
    assert size <= math.ceil(patients / threads)  # never more than a thread's share
    if patients >= threads * MIN_CHUNK_SIZE:
        assert size >= MIN_CHUNK_SIZE  # the fixed cost of a chunk stays small
    if patients >= threads * CHUNKS_PER_TASK_THREAD * MIN_CHUNK_SIZE:
        # enough chunks for every thread to balance the end of the run
        assert chunks >= min(threads * CHUNKS_PER_TASK_THREAD, patients // CHUNK_SIZE)


def test_a_distributed_run_cuts_the_population_for_its_workers() -> None:
    """60 patients on 2 task threads: one chunk each; 100,000 patients: 5 chunks each."""
    assert chunk_size_for(60, 2) == 30
    assert chunk_size_for(100_000, 2) == CHUNK_SIZE
    assert chunk_size_for(20_000, 2) == MIN_CHUNK_SIZE
    assert chunk_size_for(100_000, 1) == CHUNK_SIZE


def test_an_existing_cluster_by_its_scheduler_address(
    spec_file: Path, serial_rows: list[str]
) -> None:
    """`--scheduler tcp://HOST:PORT` runs on a cluster started elsewhere (here in this process,
    one worker with two task threads): the serial rows, and each concurrent chunk's kernel
    gets half of the worker's Numba threads."""
    import numba
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            protocol="tcp",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        address = cluster.scheduler_address
        assert address.startswith("tcp://")
        rows = _run(spec_file, spec_file.with_name("existing.csv"), "--scheduler", address)

        def kernel_threads() -> int:
            share_kernel_threads()
            return int(numba.get_num_threads())

        on_worker = client.submit(kernel_threads, pure=False).result()
    assert rows == serial_rows
    assert on_worker == max(1, numba.config.NUMBA_NUM_THREADS // 2)
    share_kernel_threads()  # outside a worker: this process keeps its threads
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
