"""Forecast worker processes: concurrent assessments with a forecast, each on its own core.

One forecast runs the compiled kernel, which holds the GIL while it runs, and Numba's
``workqueue`` threading layer cannot run two parallel kernels at once in one process; so one
server process computes one forecast at a time on its own. A :class:`ForecastPool` runs them
in ``processes`` spawned worker processes instead, each started with one Numba thread and
warmed up (:func:`warm_up`: the compiled kernel loaded, the posterior draws, rule set and
reference tables read), so ``processes`` forecasts run side by side without oversubscribing the
cores and the server's event loop keeps its GIL. Results are the same as in process: the worker
runs the same :func:`~bonecast.clinical.assess` on the same (pickled) input.
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from bonecast.clinical import DEFAULT_RULE_SET, Assessment, Lsc, Patient, assess, parse_patient
from bonecast.simulation.executors import available_cores

WARM_UP_PATIENT: dict[str, Any] = {
    "sex": "female",
    "age_years": 61,
    "menopausal_status": "postmenopausal",
    "scans": [
        {"date": "2024-02-15", "scanner": "hologic", "lumbar_spine": {"bmd_g_cm2": 0.985}},
        {"date": "2025-02-20", "scanner": "hologic", "lumbar_spine": {"bmd_g_cm2": 0.918}},
    ],
    "treatments": [{"drug": "anastrozole", "start_date": "2024-03-01"}],
    "labs": [
        {"date": "2024-02-15", "test": "ctx", "value": 380, "unit": "pg/mL"},
        {"date": "2025-02-20", "test": "ctx", "value": 560, "unit": "pg/mL"},
    ],
    "as_of": "2025-03-10",
}
"""A made-up woman on anastrozole with two scans and two CTX values: assessing her runs every
piece of an assessment with a conditioned forecast (twin pool, kernel, Kalman filter, bands)."""


def default_processes() -> int:
    """Forecast processes per server process: one per core, in every server process.

    Not the cores shared out over the server processes: the kernel hands connections to the
    server processes unevenly (20 first requests split 13 to 7 or worse about as often as
    evenly), and a server process with half the cores queues its forecasts while the other
    one's cores idle. With every core in each, a burst keeps all cores busy wherever it lands;
    the operating system time-slices the extra processes (about 220 MB each).
    """
    return available_cores()


@functools.cache
def warm_up() -> None:
    """Assess :data:`WARM_UP_PATIENT` with a 5-year forecast and drop the result, so that this
    process's first real assessment does not pay for loading the compiled kernel, the posterior
    draws of the twins' parameters, the default rule set and the reference tables (about 0.3 s
    on one core, most of it reading the rule set; nothing is stored). Once per process: later
    calls (another application started in the same process) return at once."""
    assess(parse_patient(WARM_UP_PATIENT, "warm-up patient"), DEFAULT_RULE_SET, forecast_years=5)


def _start_worker() -> None:
    """Initialise a worker: one Numba thread (the pool supplies the parallelism), then
    :func:`warm_up`."""
    try:
        import numba
    except ImportError:  # no compiled engine: the forecast runs on NumPy
        pass
    else:
        numba.set_num_threads(1)
    warm_up()


class ForecastPool:
    """``processes`` worker processes that compute assessments with a forecast."""

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError(f"a forecast pool needs at least one process, got {processes}")
        self.processes = processes
        self._executor = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
        )

    def start(self) -> Future[None]:
        """Start every worker now (not at the first forecasts); the future is done when all
        are ready.

        One worker starts first and the others once it is ready: on a fresh install the first
        one compiles the kernel into Numba's disk cache (10-20 s) and the others load it from
        there, instead of every worker compiling it at once.
        """
        all_ready: Future[None] = Future()

        def rest(first: Future[None]) -> None:
            if first.exception() is not None:
                all_ready.set_exception(first.exception() or RuntimeError())
                return
            try:  # one goes to the idle first worker; each other one starts a new worker
                others = [self._executor.submit(_ready) for _ in range(self.processes)]
            except RuntimeError as error:  # closed meanwhile
                all_ready.set_exception(error)
                return
            remaining = [len(others)]

            def one_done(done: Future[None]) -> None:
                remaining[0] -= 1
                if done.exception() is not None and not all_ready.done():
                    all_ready.set_exception(done.exception() or RuntimeError())
                elif remaining[0] == 0 and not all_ready.done():
                    all_ready.set_result(None)

            for other in others:
                other.add_done_callback(one_done)

        self._executor.submit(_ready).add_done_callback(rest)
        return all_ready

    def assess(
        self, patient: Patient, guideline: str, lsc: Mapping[str, Lsc], forecast_years: int
    ) -> Assessment:
        """:func:`~bonecast.clinical.assess` of the arguments on a worker (waited for)."""
        future = self._executor.submit(
            assess, patient, guideline, dict(lsc), forecast_years=forecast_years
        )
        return future.result()

    def close(self) -> None:
        """Stop the workers (forecasts not started are cancelled)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def _ready() -> None:
    """Nothing: a job whose completion says that a worker has started."""
