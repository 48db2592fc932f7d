"""Where chunks of work run: in this process, or on a Dask cluster (one executor interface).

An :class:`Executor` maps a picklable function over items and yields the results in input
order. :class:`SerialExecutor` is the default; :func:`dask_executor` opens a Dask client (a
local cluster of single-threaded worker processes, or an existing scheduler) and wraps it in a
:class:`DaskExecutor`. Callers such as :func:`bonecast.simulation.trials.run_trial` take the same
code path with either.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:  # Dask is imported by dask_executor, when a cluster is asked for
    from distributed import Client

T = TypeVar("T")
R = TypeVar("R")

SINGLE_THREADED_NUMPY = {
    "OMP_NUM_THREADS": 1,
    "OPENBLAS_NUM_THREADS": 1,
    "MKL_NUM_THREADS": 1,
    "NUMBA_NUM_THREADS": 1,
}
"""Worker environment: one BLAS/OpenMP/Numba thread per single-threaded worker (no
oversubscription of the cores by the workers' own threads)."""

DASK_MALLOC_TRIM_THRESHOLD = 65_536
"""glibc's ``MALLOC_TRIM_THRESHOLD_`` (bytes) that Dask sets in its workers by default
(``distributed.nanny.pre-spawn-environ``): freed memory above 64 KiB goes back to the system."""

MALLOC_TRIM_THRESHOLD: int | None = None
"""``MALLOC_TRIM_THRESHOLD_`` of our local workers; ``None`` leaves glibc's own dynamic
thresholds. Chosen with benchmarks/bench_scaleout.py (figures in benchmarks/README.md): the
fastest of Dask's default, 1 GiB and unset on 2 workers. Setting the variable at all also fixes
glibc's mmap threshold at 128 KiB, so every larger NumPy temporary is mapped afresh."""


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


def worker_environment(malloc_trim_threshold: int | None) -> dict[str, int]:
    """Environment of a local worker process: :data:`SINGLE_THREADED_NUMPY`, plus glibc's
    ``MALLOC_TRIM_THRESHOLD_`` (bytes) unless ``malloc_trim_threshold`` is ``None``."""
    trim = (
        {} if malloc_trim_threshold is None else {"MALLOC_TRIM_THRESHOLD_": malloc_trim_threshold}
    )
    return {**SINGLE_THREADED_NUMPY, **trim}


@contextmanager
def dask_executor(
    workers: int | None = None,
    scheduler: str | None = None,
    malloc_trim_threshold: int | None = MALLOC_TRIM_THRESHOLD,
) -> Iterator[Executor]:
    """A :class:`DaskExecutor` on ``scheduler`` (an address) or on a new local cluster.

    The local cluster has ``workers`` single-threaded worker processes started with
    :func:`worker_environment` (instead of Dask's default pre-spawn environment); it is closed on
    exit. An existing cluster keeps the environment its workers were started with. Exactly one
    of ``workers`` and ``scheduler`` must be given.
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
    environ = worker_environment(malloc_trim_threshold)
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        _process_environment(environ),
    ):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
    with cluster, Client(cluster) as client:
        yield DaskExecutor(client)


@contextmanager
def _process_environment(values: Mapping[str, int]) -> Iterator[None]:
    """This process's environment with ``values`` set (restored on exit).

    Dask lets a variable already set in the environment win over its pre-spawn setting, so a
    shell's ``NUMBA_NUM_THREADS=2`` would give every worker two threads; the workers are
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
