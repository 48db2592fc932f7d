"""A bounded, thread-safe, in-process cache of assessments, keyed on the content of their input.

An assessment with its forecast is a pure function of the clinical input (the chart as of today),
the LSC table, the rule set, the forecast horizon, the parameter set and the bonecast version:
:func:`assessment_key` hashes all of them (SHA-256), so any write to a chart, a new precision
study or a new day gives a new key and a stale result is never served. Entries are evicted least
recently used first.

Computations run on one worker thread by default: in process, the compiled forecast kernel already
uses every core (and Numba's threading layer runs one parallel kernel at a time); with forecast
worker processes (:mod:`bonecast.services.forecast_pool`) :meth:`AssessmentCache.set_concurrency`
gives one thread per process. Callers waiting for the same key share one computation.
:meth:`AssessmentCache.warm` computes ahead in the background (after a write to a chart), so the
next page view or API call finds the result ready.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from bonecast import __version__
from bonecast.clinical import Assessment, Lsc, Patient
from bonecast.simulation import default_parameter_set

DEFAULT_CAPACITY = 256
"""Assessments kept (each with a 5-year forecast is about 50 kB of Python objects)."""

Computation = Callable[[], Assessment]
Preparation = Callable[[], tuple[str, Computation]]
"""Reads what an assessment needs and returns its key and its computation."""


def assessment_key(
    patient: Patient, lsc: Mapping[str, Lsc], guideline: str, forecast_years: int
) -> str:
    """SHA-256 (hex) of everything the assessment of ``patient`` depends on."""
    params = default_parameter_set()
    content = {
        "patient": patient.model_dump(mode="json"),
        "lsc": {site: value.model_dump(mode="json") for site, value in lsc.items()},
        "guideline": guideline,
        "forecast_years": forecast_years,
        "parameter_set": f"{params.name} {params.version}",
        "bonecast": __version__,
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class AssessmentCache:
    """Assessments by :func:`assessment_key`, each computed once on the worker threads."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._done: OrderedDict[str, Assessment] = OrderedDict()
        self._running: dict[str, Future[Assessment]] = {}
        self._queued_warms: set[Hashable] = set()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bonecast-assessment")

    def set_concurrency(self, threads: int) -> None:
        """Compute up to ``threads`` assessments at once from now on (work already queued still
        runs, on the threads it was queued for)."""
        old = self._worker
        self._worker = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="bonecast-assessment"
        )
        old.shutdown(wait=False)

    def get(self, key: str, compute: Computation) -> Assessment:
        """The assessment of ``key``: cached, else ``compute()`` on the worker (waited for).

        An error of ``compute`` is raised here and nothing is cached.
        """
        with self._lock:
            cached = self._lookup(key)
            if cached is not None:
                return cached
            future, mine = self._claim(key)
            if mine:
                self._worker.submit(self._compute, key, future, compute)
        return future.result()

    def cached(self, key: str) -> Assessment | None:
        """The assessment of ``key`` if it is cached (a hit), else ``None``."""
        with self._lock:
            return self._lookup(key)

    def add(self, key: str, assessment: Assessment) -> Assessment:
        """Cache an assessment found elsewhere (e.g. stored by another process); a miss."""
        with self._lock:
            self.misses += 1
            self._keep(key, assessment)
        return assessment

    def warm(self, name: Hashable, prepare: Preparation) -> None:
        """Compute an assessment ahead, in the background, unless it is cached.

        ``prepare`` runs on the worker, so it reads the chart as it is then; a warm already
        queued under ``name`` (e.g. the same patient and horizon) is not queued again.
        """
        with self._lock:
            if name in self._queued_warms:
                return
            self._queued_warms.add(name)
        self._worker.submit(self._warm, name, prepare)

    def run_in_background(self, job: Callable[[], None]) -> Future[None]:
        """Run ``job`` on a worker thread, after everything queued before it with one thread (its
        future says when)."""
        return self._worker.submit(job)

    def clear(self) -> None:
        """Forget every cached assessment (computations under way still finish)."""
        with self._lock:
            self._done.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._done)

    def _lookup(self, key: str) -> Assessment | None:
        cached = self._done.get(key)
        if cached is not None:
            self._done.move_to_end(key)
            self.hits += 1
        return cached

    def _claim(self, key: str) -> tuple[Future[Assessment], bool]:
        """The future of ``key`` under way, or a new one that the caller must compute (a miss)
        and whether it is new; called with the lock held."""
        running = self._running.get(key)
        if running is not None:
            return running, False
        self.misses += 1
        future: Future[Assessment] = Future()
        self._running[key] = future
        return future, True

    def _compute(self, key: str, future: Future[Assessment], compute: Computation) -> None:
        try:
            result = compute()
        except BaseException as error:
            with self._lock:
                del self._running[key]
            future.set_exception(error)
            return
        with self._lock:
            self._keep(key, result)
            del self._running[key]
        future.set_result(result)

    def _keep(self, key: str, result: Assessment) -> None:
        self._done[key] = result
        while len(self._done) > self.capacity:
            self._done.popitem(last=False)

    def _warm(self, name: Hashable, prepare: Preparation) -> None:
        with self._lock:
            self._queued_warms.discard(name)
        try:
            key, compute = prepare()
        except Exception:
            return
        with self._lock:
            if key in self._done:
                return
            future, mine = self._claim(key)
        if mine:
            self._compute(key, future, compute)
