"""Integrators: the vectorised fast path and the ``solve_ivp`` reference path.

:func:`simulate` advances all patients together with fixed-step exponential Euler
  (docs/model/numerics.md section 8.1);
the only Python loop is over time. :func:`simulate_reference` integrates one patient with
:func:`scipy.integrate.solve_ivp` between input events; tests use it to check the fast path.
Both return a :class:`SimulationResult` and share the model (:mod:`bonecast.simulation.model`)
and the regimen compiler, so they see the same doses and exposures.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bonecast.simulation.drugs import DrugClass
from bonecast.simulation.model import (
    Array,
    IdArray,
    ModelConstants,
    ModelState,
    bmd_ratio,
    denosumab_mg_l,
    derivatives,
    exponential_euler_step,
    mineral,
    observables,
)
from bonecast.simulation.parameters import SITES
from bonecast.simulation.population import VirtualPopulation
from bonecast.simulation.regimens import NEVER, CompiledRegimen, Treatment

ProgressCallback = Callable[[int], None]
"""Called with the number of simulated days completed since the previous call."""


@dataclass(frozen=True)
class SimulationResult:
    """Recorded trajectories of N patients at ``days`` (state at the start of each day, before
    that day's doses).

    ``bmd_ratio`` is (n_days, 3, N) in :data:`SITES` order, relative to baseline; ``osteoclasts``
    and ``osteoblasts`` are the relative cell states (CTX/NTX and P1NP/BSAP proxies);
    ``bp_bone_mg`` is surface + buried drug per bisphosphonate; ``denosumab_mg_l`` is the serum
    concentration (mg/L = ug/mL); ``estradiol_pg_ml`` and ``testosterone_ng_dl`` the serum
    hormones (testosterone NaN for women, who do not model it);
    ``rankl`` free RANKL relative to baseline; hormones at a day reflect the exposures of the
    day before (the state's), untreated at day 0.
    """

    days: IdArray
    bmd_ratio: Array
    osteoclasts: Array
    osteoblasts: Array
    bp_surface_mg: dict[str, Array]
    bp_bone_mg: dict[str, Array]
    denosumab_mg_l: Array
    estradiol_pg_ml: Array
    testosterone_ng_dl: Array
    rankl: Array
    baseline_bmd_g_cm2: Array  # (3, N)
    reference_mean_g_cm2: Array  # (3, 1)
    reference_sd_g_cm2: Array  # (3, 1)

    def bmd_pct_change(self, site: str) -> Array:
        """% change of BMD at ``site`` from baseline, (n_days, N)."""
        return 100.0 * (self.bmd_ratio[:, SITES.index(site)] - 1.0)

    def bmd_g_cm2(self) -> Array:
        """Absolute BMD (g/cm2), (n_days, 3, N)."""
        return self.bmd_ratio * self.baseline_bmd_g_cm2

    def t_scores(self) -> Array:
        """T-scores, (n_days, 3, N), against the parameter set's young-adult references."""
        return (self.bmd_g_cm2() - self.reference_mean_g_cm2) / self.reference_sd_g_cm2


def _constants(population: VirtualPopulation, treatments: Sequence[Treatment]) -> ModelConstants:
    bp_drugs = tuple(
        dict.fromkeys(t.drug for t in treatments if t.drug_class is DrugClass.BISPHOSPHONATE)
    )
    mean, sd = population.parameter_set.reference_bmd_columns()
    volume = population.baseline_bmd_g_cm2 / (mean - sd)  # relative to a woman at T = -1
    relative_volume = volume[[SITES.index("lumbar_spine"), SITES.index("total_hip")]]
    return ModelConstants.from_values(
        population.values,
        population.n,
        population.fmp_day,
        bp_drugs,
        population.age_years,
        relative_volume,
    )


def _regimen(
    population: VirtualPopulation,
    arms: Sequence[Sequence[Treatment]],
    arm_of_patient: IdArray,
    const: ModelConstants,
    seed: int,
    horizon_days: int,
) -> CompiledRegimen:
    ai = {
        name.split(".")[1]: values
        for name, values in population.values.items()
        if name.startswith("ai.")
    }
    cv = population.parameter_set.within_subject["oral_absorption_cv"].value
    return CompiledRegimen(
        [t for arm in arms for t in arm],
        const,
        ai,
        population.patient_ids,
        seed,
        horizon_days,
        cv,
        applies_to=[arm_of_patient == a for a, arm in enumerate(arms) for _ in arm],
        slots=[k for arm in arms for k in range(len(arm))],
        stochastic=population.variability,
    )


class _Recorder:
    def __init__(
        self,
        const: ModelConstants,
        population: VirtualPopulation,
        days: IdArray,
        regimen: CompiledRegimen,
    ) -> None:
        self.const = const
        self.population = population
        self.days = days
        self.regimen = regimen
        self.rows: list[dict[str, Array]] = []

    def record(self, state: ModelState, mineral0: Array, day: int) -> None:
        total = state.bp_surface_mg + state.bp_buried_mg
        # hormones follow exposures at once: the state at the start of a day has seen the
        # exposures up to the day before (untreated at day 0)
        inputs = self.regimen.inputs(day - 1) if day > 0 else self.regimen.untreated_inputs()
        seen = observables(self.const, state, inputs, float(day))
        self.rows.append(
            {
                **seen,
                "bmd": bmd_ratio(self.const, state, mineral0),
                "c": state.c.copy(),
                "b": state.b.copy(),
                "den": denosumab_mg_l(self.const, state),
                "bp_surface": state.bp_surface_mg.copy(),
                "bp_total": total,
            }
        )

    def result(self) -> SimulationResult:
        reference_mean, reference_sd = self.population.parameter_set.reference_bmd_columns()

        def stack(key: str) -> Array:
            return np.stack([row[key] for row in self.rows])

        surface, total = stack("bp_surface"), stack("bp_total")
        drugs = self.const.bp_drugs
        return SimulationResult(
            days=self.days,
            bmd_ratio=stack("bmd"),
            osteoclasts=stack("c"),
            osteoblasts=stack("b"),
            bp_surface_mg={d: surface[:, k] for k, d in enumerate(drugs)},
            bp_bone_mg={d: total[:, k] for k, d in enumerate(drugs)},
            denosumab_mg_l=stack("den"),
            estradiol_pg_ml=stack("estradiol"),
            testosterone_ng_dl=stack("testosterone"),
            rankl=stack("rankl"),
            baseline_bmd_g_cm2=self.population.baseline_bmd_g_cm2,
            reference_mean_g_cm2=reference_mean,
            reference_sd_g_cm2=reference_sd,
        )


def _record_days(horizon_days: int, record_days: Sequence[int] | None) -> IdArray:
    if record_days is None:
        return np.arange(horizon_days + 1, dtype=np.int64)
    days = np.unique(np.asarray(record_days, dtype=np.int64))
    if days.size == 0 or days[0] < 0 or days[-1] > horizon_days:
        raise ValueError(f"record_days must lie in 0..{horizon_days}")
    return days


Engine = Literal["numpy", "numba", "auto"]
"""Which integrator advances the patients: ``"numpy"`` (the vectorised reference, default),
``"numba"`` (the compiled kernel of :mod:`bonecast.simulation.engine_numba`; an error if Numba
cannot be imported) or ``"auto"`` (``"numba"`` when importable, else ``"numpy"``)."""


def numba_unavailable_reason() -> str | None:
    """Why the compiled engine cannot be used here, or ``None`` when it can."""
    try:
        import bonecast.simulation.engine_numba  # noqa: F401
    except ImportError as error:  # pragma: no cover - numba is a dependency
        return f"numba could not be imported ({error})"
    return None


def resolve_engine(engine: str) -> Literal["numpy", "numba"]:
    """The engine that :func:`simulate` will use for ``engine`` (see :data:`Engine`)."""
    if engine == "numpy":
        return "numpy"
    if engine not in ("numba", "auto"):
        raise ValueError(f"engine must be 'numpy', 'numba' or 'auto', got {engine!r}")
    reason = numba_unavailable_reason()
    if reason is None:
        return "numba"
    if engine == "numba":
        raise RuntimeError(f"engine='numba' requested but {reason}")
    warnings.warn(f"engine='auto': {reason}; using the NumPy engine", stacklevel=3)
    return "numpy"


def simulate(
    population: VirtualPopulation,
    treatments: Sequence[Treatment],
    horizon_days: int,
    *,
    seed: int = 0,
    dt_days: float = 1.0,
    record_days: Sequence[int] | None = None,
    progress: ProgressCallback | None = None,
    engine: Engine = "numpy",
) -> SimulationResult:
    """Simulate every patient of ``population`` under ``treatments`` for ``horizon_days``.

    ``dt_days`` must divide one day (1, 0.5, 0.1, ...). ``record_days`` (default: every day)
    are the days whose state is kept. ``seed`` keys the per-dose draws (adherence, absorption).

    ``engine`` (see :data:`Engine`) defaults to ``"numpy"``: it is the reference path, its
    results are reproducible bit for bit across machines and thread counts, and it has no
    compile latency on a fresh machine. ``"numba"`` (or ``"auto"``) runs the compiled kernel,
    several times faster on large populations and within 0.01 percentage points of the NumPy
    path (tests/simulation/test_engine_numba.py); both apply the same doses and start rules.
    """
    return simulate_arms(
        population,
        [treatments],
        np.zeros(population.n, dtype=np.int64),
        horizon_days,
        seed=seed,
        dt_days=dt_days,
        record_days=record_days,
        progress=progress,
        engine=engine,
    )


def simulate_arms(
    population: VirtualPopulation,
    arms: Sequence[Sequence[Treatment]],
    arm_of_patient: IdArray,
    horizon_days: int,
    *,
    seed: int = 0,
    dt_days: float = 1.0,
    record_days: Sequence[int] | None = None,
    progress: ProgressCallback | None = None,
    engine: Engine = "numpy",
) -> SimulationResult:
    """Like :func:`simulate`, with patient ``i`` treated by ``arms[arm_of_patient[i]]``.

    Simulates several arms (or trials) in one vectorised run, e.g. for calibration. ``engine``
    as in :func:`simulate`.
    """
    if not 0 < dt_days <= 1:
        raise ValueError(f"dt_days must divide one day (0 < dt_days <= 1), got {dt_days}")
    steps_per_day = round(1.0 / dt_days)
    if steps_per_day < 1 or abs(steps_per_day * dt_days - 1.0) > 1e-9:
        raise ValueError(f"dt_days must divide one day, got {dt_days}")
    days = _record_days(horizon_days, record_days)
    const = _constants(population, [t for arm in arms for t in arm])
    regimen = _regimen(population, arms, arm_of_patient, const, seed, horizon_days)
    state = ModelState.baseline(const)
    mineral0 = mineral(const, state)
    recorder = _Recorder(const, population, days, regimen)
    wanted = set(days.tolist())
    check_days = regimen.all_check_days
    reported = 0
    use_numba = resolve_engine(engine) == "numba"

    def lowest_t_score_of(current: ModelState) -> Array:
        bmd = bmd_ratio(const, current, mineral0) * population.baseline_bmd_g_cm2
        ref = population.parameter_set.reference_bmd
        scores = [
            (bmd[k] - ref[site].mean_g_cm2) / ref[site].sd_g_cm2 for k, site in enumerate(SITES)
        ]
        return np.asarray(np.min(scores, axis=0))

    if use_numba:
        return _run_compiled(
            const,
            state,
            regimen,
            recorder,
            horizon_days,
            steps_per_day,
            dt_days,
            check_days,
            wanted,
            lowest_t_score_of,
            progress,
        )
    for day in range(horizon_days):
        if day in check_days:
            regimen.check_start_rules(day, functools.partial(lowest_t_score_of, state))
        if day in wanted:
            recorder.record(state, mineral0, day)
        if regimen.has_dose(day):
            regimen.apply_doses(day, state)
        inputs = regimen.inputs(day)
        for sub in range(steps_per_day):
            state = exponential_euler_step(const, state, inputs, day + sub * dt_days, dt_days)
        if progress is not None and (day + 1) % 30 == 0:
            progress(day + 1 - reported)
            reported = day + 1
    if horizon_days in wanted:
        recorder.record(state, mineral0, horizon_days)
    if progress is not None and horizon_days > reported:
        progress(horizon_days - reported)
    return recorder.result()


SNAPSHOT_BYTES = 64 * 2**20
"""Most memory, bytes, for the states that one call of the compiled kernel copies for the
recorder; a block with more recording days is cut in two."""


def _run_compiled(
    const: ModelConstants,
    start: ModelState,
    regimen: CompiledRegimen,
    recorder: _Recorder,
    horizon_days: int,
    steps_per_day: int,
    dt_days: float,
    check_days: set[int],
    wanted: set[int],
    lowest_t_score: Callable[[ModelState], Array],
    progress: ProgressCallback | None,
) -> SimulationResult:
    """The day loop of :func:`simulate_arms` with the compiled kernel between events.

    Start-rule checks, doses and exposure changes happen in Python on their days, in the NumPy
    path's order; the kernel advances all patients over the days in between, during which
    exposures are constant (the regimen changes them only on ``change_days``), and copies the
    states of the recording days on its way (at most :data:`SNAPSHOT_BYTES` a call).
    """
    from bonecast.simulation.engine_numba import CompiledModel

    model = CompiledModel(const, start)
    state = model.state
    mineral0 = mineral(const, state)
    static = sorted(check_days)
    record_at = sorted(wanted)
    most_snaps = max(1, SNAPSHOT_BYTES // model.buffer.nbytes)
    day = 0
    while day < horizon_days:
        if day in check_days:
            regimen.check_start_rules(day, functools.partial(lowest_t_score, state))
        if day in wanted:
            recorder.record(state, mineral0, day)
        if regimen.has_dose(day):
            regimen.apply_doses(day, state)
        inputs = regimen.inputs(day)
        after = bisect.bisect_right(static, day)  # O(log n): daily checks mean n blocks
        following = [static[after] if after < len(static) else NEVER]
        following += [d for d in regimen.change_days if d > day]
        # exposure drugs keep their first "dose" day (apply_doses only moves dosed drugs on)
        pending = regimen.next_dose_day[regimen.next_dose_day > day]
        following.append(int(pending.min()) if pending.size else NEVER)
        stop = min(horizon_days, *following)
        inside = record_at[
            bisect.bisect_right(record_at, day) : bisect.bisect_left(record_at, stop)
        ]
        if len(inside) > most_snaps:  # bound the snapshots' memory
            stop, inside = inside[most_snaps], inside[:most_snaps]
        snapshots = model.advance(inputs, day, stop - day, steps_per_day, dt_days, inside)
        for snap_day, snapshot in zip(inside, snapshots, strict=True):
            recorder.record(snapshot, mineral0, snap_day)
        if progress is not None:
            progress(stop - day)
        day = stop
    if horizon_days in wanted:
        recorder.record(state, mineral0, horizon_days)
    return recorder.result()


def simulate_reference(
    population: VirtualPopulation,
    treatments: Sequence[Treatment],
    horizon_days: int,
    *,
    seed: int = 0,
    record_days: Sequence[int] | None = None,
    method: str = "LSODA",
    rtol: float = 1e-8,
    atol: float = 1e-10,
) -> SimulationResult:
    """Reference solution for one patient with :func:`scipy.integrate.solve_ivp`.

    Integrates piecewise between the days on which exposures change or doses fall, applying the
    same doses as :func:`simulate`. Start rules (``start_when``) are not supported here.
    """
    from scipy.integrate import solve_ivp  # only the reference path needs SciPy's integrators

    if population.n != 1:
        raise ValueError("the reference solver simulates one patient at a time")
    days = _record_days(horizon_days, record_days)
    const = _constants(population, treatments)
    regimen = _regimen(
        population, [treatments], np.zeros(1, dtype=np.int64), const, seed, horizon_days
    )
    state = ModelState.baseline(const)
    mineral0 = mineral(const, state)
    n_bp = len(const.bp_drugs)
    recorder = _Recorder(const, population, days, regimen)
    events = sorted({0, *regimen.input_change_days()})
    bounds = [*events, horizon_days]
    for start, stop in itertools.pairwise(bounds):
        if start in set(days.tolist()):
            recorder.record(state, mineral0, start)
        if regimen.has_dose(start):
            regimen.apply_doses(start, state)
        inputs = regimen.inputs(start)

        def rhs(t: float, y: Array, inputs: object = inputs) -> Array:
            s = ModelState.from_vector(y, n_bp)
            return derivatives(const, s, inputs, t).to_vector()  # type: ignore[arg-type]

        inner = days[(days > start) & (days < stop)]
        sol = solve_ivp(
            rhs,
            (start, stop),
            state.to_vector(),
            method=method,
            rtol=rtol,
            atol=atol,
            t_eval=np.append(inner, stop).astype(float),
        )
        if not sol.success:
            raise RuntimeError(f"solve_ivp failed on days {start}-{stop}: {sol.message}")
        for column in range(inner.size):
            at = int(inner[column])
            recorder.record(ModelState.from_vector(sol.y[:, column], n_bp), mineral0, at)
        state = ModelState.from_vector(sol.y[:, -1], n_bp)
    if horizon_days in set(days.tolist()):
        recorder.record(state, mineral0, horizon_days)
    return recorder.result()
