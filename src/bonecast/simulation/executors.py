"""Where chunks of work run: in this process, or on a Dask cluster (one executor interface).

An :class:`Executor` maps a picklable function over items and yields the results in input
order. :class:`SerialExecutor` is the default; :func:`dask_executor` opens a Dask client (a
local cluster of worker processes that share the cores without oversubscribing them, or an
existing scheduler) and wraps it in a :class:`DaskExecutor`. Callers such as
:func:`bonecast.simulation.trials.run_trial` take the same code path with either.

Threads: a local worker runs one chunk at a time, and the chunk's compiled kernel (Numba,
OpenMP) uses that worker's share of the cores (:func:`worker_environment`); on a worker that
runs several chunks at once (an existing cluster's multi-threaded workers) each chunk's kernel
gets the worker's Numba threads divided by its task threads (:func:`share_kernel_threads`).
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:  # Dask is imported by dask_executor, when a cluster is asked for
    from distributed import Client

T = TypeVar("T")
R = TypeVar("R")

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)
"""Environment variables that size a worker's own thread pools (OpenMP, BLAS, Numba)."""

DASK_MALLOC_TRIM_THRESHOLD = 65_536
"""glibc's ``MALLOC_TRIM_THRESHOLD_`` (bytes) that Dask sets in its workers by default
(``distributed.nanny.pre-spawn-environ``): freed memory above 64 KiB goes back to the system."""

MALLOC_TRIM_THRESHOLD: int | None = None
"""``MALLOC_TRIM_THRESHOLD_`` of our local workers; ``None`` leaves glibc's own dynamic
thresholds. Chosen with benchmarks/bench_scaleout.py (figures in benchmarks/README.md): the
fastest of Dask's default, 1 GiB and unset on 2 workers. Setting the variable at all also fixes
glibc's mmap threshold at 128 KiB, so every larger NumPy temporary is mapped afresh."""


LOCAL_CLUSTER_CONFIG: dict[str, object] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
}
"""Dask settings of bonecast's local clusters: no statistical profiler in the workers (Dask
samples every task thread's stack every 10 ms for its dashboard, which a local run does not
open), and the event loops' tick (default 20 ms) and system monitor (default 0.5 s) less
often. Measured on 2 cores (1 worker, 20,000 patients x 10 years): the cluster's CPU time
15-20 % lower, idle overhead 1.6 % of a core instead of 7 % (benchmarks/README.md)."""


class Executor(Protocol):
    """Runs a function over items; results come back in input order."""

    @property
    def parallelism(self) -> int:
        """How many items can run at once (used to size chunks)."""
        ...

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """``fn(item)`` for every item, yielded in the order of ``items``."""
        ...


class SerialExecutor:
    """Runs every item here, one after the other (the default)."""

    @property
    def parallelism(self) -> int:
        """One item at a time."""
        return 1

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """``fn(item)`` for every item, lazily, in order."""
        return (fn(item) for item in items)


class DaskExecutor:
    """Submits every item to a Dask cluster through ``client``."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def parallelism(self) -> int:
        """Total worker threads of the cluster."""
        threads: dict[str, int] = self.client.nthreads()
        return max(1, sum(threads.values()))

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """Submit all items at once, then yield each result in order as it is gathered.

        Each future is dropped as soon as its result is here, so the cluster frees that result
        instead of holding every chunk's result until the end.
        """
        pending = deque(self.client.map(fn, list(items), pure=False))
        try:
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - macOS, Windows


def worker_threads(workers: int, cores: int | None = None) -> int:
    """Threads of each of ``workers`` local worker processes: their share of the ``cores``
    (default: :func:`available_cores`), at least one, so that together they fill the cores
    without oversubscribing them (one worker on 8 cores gets 8 threads, 8 workers 1 each)."""
    return max(1, (cores or available_cores()) // workers)


def worker_environment(threads: int, malloc_trim_threshold: int | None) -> dict[str, int]:
    """Environment of a local worker process: ``threads`` for every variable of
    :data:`THREAD_VARIABLES`, plus glibc's ``MALLOC_TRIM_THRESHOLD_`` (bytes) unless
    ``malloc_trim_threshold`` is ``None``."""
    trim = (
        {} if malloc_trim_threshold is None else {"MALLOC_TRIM_THRESHOLD_": malloc_trim_threshold}
    )
    return {**dict.fromkeys(THREAD_VARIABLES, threads), **trim}


def share_kernel_threads() -> None:
    """Size the compiled kernel's threads for a chunk that runs on a Dask worker.

    A worker with several task threads runs as many chunks at once, their kernels side by
    side, so each kernel of this thread gets the worker's Numba threads divided by its task
    threads (at least one): together they use the worker's threads, not threads squared
    (two chunks on two task threads of one process on 2 cores: 1.80 s with one kernel thread
    each, 1.95 s with two each, 2.22 s one after the other with two; benchmarks/README.md).
    Does nothing outside a Dask worker (a serial run keeps all of Numba's threads) and imports
    nothing new there.
    """
    if "distributed" not in sys.modules:
        return
    from distributed import get_worker

    try:
        tasks = get_worker().state.nthreads
    except ValueError:  # not inside a worker's task
        return
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; "auto" then runs NumPy
        return

    pool: int = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    numba.set_num_threads(max(1, pool // max(1, tasks)))


@contextmanager
def dask_executor(
    workers: int | None = None,
    scheduler: str | None = None,
    malloc_trim_threshold: int | None = MALLOC_TRIM_THRESHOLD,
    threads_per_worker: int | None = None,
) -> Iterator[Executor]:
    """A :class:`DaskExecutor` on ``scheduler`` (an address) or on a new local cluster.

    The local cluster has ``workers`` worker processes, each running one chunk at a time with
    ``threads_per_worker`` threads for its kernel (default :func:`worker_threads`: the
    workers share the cores), started with :func:`worker_environment` (instead of Dask's
    default pre-spawn environment); it is closed on exit. An existing cluster keeps the
    environment its workers were started with. Exactly one of ``workers`` and ``scheduler``
    must be given.
    """
    if (workers is None) == (scheduler is None):
        raise ValueError("give exactly one of workers and scheduler")
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            yield DaskExecutor(client)
        return
    if workers is None or workers < 1:
        raise ValueError(f"workers: {workers} is not a positive count")
    if threads_per_worker is not None and threads_per_worker < 1:
        raise ValueError(f"threads_per_worker: {threads_per_worker} is not a positive count")
    threads = threads_per_worker or worker_threads(workers)
    environ = worker_environment(threads, malloc_trim_threshold)
    with (
        dask.config.set({**LOCAL_CLUSTER_CONFIG, "distributed.nanny.pre-spawn-environ": environ}),
        _process_environment(environ),
    ):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,  # one chunk at a time; its kernel uses ``threads``
            processes=True,
            dashboard_address=None,
        )
    with cluster, Client(cluster) as client:
        yield DaskExecutor(client)


@contextmanager
def _process_environment(values: Mapping[str, int]) -> Iterator[None]:
    """This process's environment with ``values`` set (restored on exit).

    Dask lets a variable already set in the environment win over its pre-spawn setting, so a
    shell's ``NUMBA_NUM_THREADS=8`` would give every worker eight threads; the workers are
    started inside this context so that :func:`worker_environment` wins.
    """
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update({name: str(value) for name, value in values.items()})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
