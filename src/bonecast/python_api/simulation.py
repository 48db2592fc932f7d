"""``simulate``: a population under a regimen and/or per-patient dose events, as data frames."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bonecast.python_api.dose_events import DoseEvents
from bonecast.python_api.populations import Population
from bonecast.python_api.regimens import Regimen
from bonecast.simulation.model import DAYS_PER_MONTH, DAYS_PER_YEAR, Array, IdArray
from bonecast.simulation.parameters import (
    SITES,
    ParameterSet,
    default_parameter_set,
    load_parameter_set,
)
from bonecast.simulation.population import VirtualPopulation
from bonecast.simulation.regimens import (
    Treatment,
    check_plan_for_sex,
    check_premenopausal_plan,
    month_to_day,
)
from bonecast.simulation.solver import Engine, SimulationResult, simulate_arms

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

Doses = Regimen | DoseEvents | Sequence[Regimen | DoseEvents]
"""What :func:`simulate` gives: a regimen for everyone, per-patient dose events, or both."""


def _pct(values: Array) -> Array:
    return 100.0 * (values / values[:1] - 1.0)


def _site_bmd(k: int, r: SimulationResult) -> Array:
    return r.bmd_g_cm2()[:, k]


def _site_change(k: int, r: SimulationResult) -> Array:
    return 100.0 * (r.bmd_ratio[:, k] - 1.0)


def _site_t_score(k: int, r: SimulationResult) -> Array:
    return r.t_scores()[:, k]


def _quantities() -> dict[str, tuple[str, Callable[[SimulationResult], Array]]]:
    """Name -> (unit, values (n_times, N)) of every quantity a :class:`Result` reports."""
    table: dict[str, tuple[str, Callable[[SimulationResult], Array]]] = {}
    for k, site in enumerate(SITES):
        table[f"bmd_{site}"] = ("g/cm2", functools.partial(_site_bmd, k))
        table[f"bmd_pct_change_{site}"] = ("%", functools.partial(_site_change, k))
        table[f"t_score_{site}"] = ("SD", functools.partial(_site_t_score, k))
    table.update(
        {
            "estradiol": ("pg/mL", lambda r: r.estradiol_pg_ml),
            "testosterone": ("ng/dL", lambda r: r.testosterone_ng_dl),
            "rankl": ("ratio to untreated baseline", lambda r: r.rankl),
            "osteoclasts": ("ratio to untreated baseline", lambda r: r.osteoclasts),
            "osteoblasts": ("ratio to untreated baseline", lambda r: r.osteoblasts),
            "ctx": ("% change from day 0", lambda r: _pct(r.osteoclasts)),
            "p1np": ("% change from day 0", lambda r: _pct(r.osteoblasts)),
            "denosumab": ("mg/L", lambda r: r.denosumab_mg_l),
        }
    )
    return table


QUANTITY_UNITS: dict[str, str] = {name: unit for name, (unit, _) in _quantities().items()}
"""Every quantity of :meth:`Result.to_frame` with its unit (markers: CTX follows the
osteoclasts, P1NP the osteoblasts, docs/model/equations.md section 4; testosterone is modelled in
men only)."""


@dataclass(frozen=True)
class Result:
    """Trajectories of every patient at ``times_days``; see :meth:`to_frame`."""

    raw: SimulationResult
    patients: VirtualPopulation
    population: Population

    @property
    def times_days(self) -> Array:
        """Recorded times (days from baseline)."""
        return self.raw.days.astype(float)

    def values(self, quantity: str) -> Array:
        """One quantity as an array (n_times, n_patients), in the unit of
        :data:`QUANTITY_UNITS`."""
        try:
            return np.asarray(_quantities()[quantity][1](self.raw))
        except KeyError:
            raise ValueError(
                f"quantity: unknown {quantity!r}; accepted: {', '.join(QUANTITY_UNITS)}"
            ) from None

    def covariates(self) -> pd.DataFrame:
        """One row per patient: ``id``, ``sex``, ``menopausal_status``, ``age_years`` and the
        baseline T-scores (``baseline_t_score_<site>``)."""
        import pandas as pd

        p = self.patients
        columns: dict[str, Any] = {
            "id": p.patient_ids,
            "sex": list(self.population.sexes),
            "menopausal_status": [s or None for s in self.population.statuses],
            "age_years": p.age_years,
        }
        for k, site in enumerate(SITES):
            columns[f"baseline_t_score_{site}"] = p.baseline_t_score[k]
        return pd.DataFrame(columns)

    def to_frame(self, quantities: Sequence[str] | None = None) -> pd.DataFrame:
        """Long format: ``id``, ``time`` (days), ``quantity``, ``value``, ``unit``, then the
        covariates of :meth:`covariates`. ``quantities`` defaults to all of
        :data:`QUANTITY_UNITS`; values that the model does not represent (testosterone in
        women) are left out."""
        import pandas as pd

        names = list(quantities or QUANTITY_UNITS)
        n_times, n = self.raw.days.size, self.patients.n
        frames = []
        for name in names:
            values = self.values(name).reshape(n_times * n)
            keep = ~np.isnan(values)
            frames.append(
                pd.DataFrame(
                    {
                        "id": np.tile(self.patients.patient_ids, n_times)[keep],
                        "time": np.repeat(self.times_days, n)[keep],
                        "quantity": name,
                        "value": values[keep],
                        "unit": QUANTITY_UNITS[name],
                    }
                )
            )
        long = pd.concat(frames, ignore_index=True)
        return long.merge(self.covariates(), on="id", how="left")

    def to_xarray(self) -> xr.Dataset:
        """A Dataset with one variable per quantity over (``time`` days, ``id``) and the
        covariates as coordinates on ``id``; needs the optional ``xarray`` package."""
        try:
            import xarray as xr
        except ImportError:
            raise ImportError("to_xarray needs xarray: pip install 'bonecast[xarray]'") from None
        covariates = self.covariates().set_index("id")
        coords: dict[str, Any] = {"time": self.times_days, "id": covariates.index.to_numpy()}
        for column in covariates.columns:
            coords[column] = ("id", covariates[column].to_numpy())
        data = {
            name: (("time", "id"), self.values(name), {"units": unit})
            for name, unit in QUANTITY_UNITS.items()
        }
        return xr.Dataset(data, coords=coords)


def _parameters(parameters: ParameterSet | str | Path | None) -> ParameterSet:
    if parameters is None:
        return default_parameter_set()
    if isinstance(parameters, ParameterSet):
        return parameters
    return load_parameter_set(parameters)


def _horizon_days(years: float | None, days: float | None) -> int:
    if (years is None) == (days is None):
        raise ValueError("years/days: give the simulated time as years= or days= (one of them)")
    horizon = days if days is not None else years * DAYS_PER_YEAR  # type: ignore[operator]
    if not 1 <= horizon <= 50 * DAYS_PER_YEAR:
        raise ValueError(f"years/days: {horizon:g} days is outside 1 day .. 50 years")
    return round(horizon)


def _record_days(horizon: int, every_days: int | None) -> list[int]:
    if every_days is None:
        days = {month_to_day(m) for m in range(math.floor(horizon / DAYS_PER_MONTH) + 1)}
    elif every_days < 1:
        raise ValueError(f"record_every_days: {every_days} is below 1")
    else:
        days = set(range(0, horizon + 1, every_days))
    return sorted({d for d in days if d <= horizon} | {horizon})


def _arms(doses: Doses, patients: VirtualPopulation) -> tuple[list[tuple[Treatment, ...]], IdArray]:
    """Arms (distinct per-patient plans) and each patient's arm."""
    parts = [doses] if isinstance(doses, Regimen | DoseEvents) else list(doses)
    base: tuple[Treatment, ...] = ()
    events: DoseEvents | None = None
    for part in parts:
        if isinstance(part, Regimen):
            base += part.treatments
        elif isinstance(part, DoseEvents):
            events = part if events is None else events + part
        else:
            raise TypeError(f"doses: a Regimen or DoseEvents, not {type(part).__name__}")
    own = events.treatments_by_patient() if events is not None else {}
    ids = patients.patient_ids.tolist()
    unknown = sorted(set(own) - set(ids))
    if unknown:
        raise ValueError(f"id: dose events for patients not in the population: {unknown[:10]}")
    plans: dict[tuple[Treatment, ...], int] = {}
    arm_of = np.empty(len(ids), dtype=np.int64)
    for k, pid in enumerate(ids):
        plan = base + own.get(pid, ())
        arm_of[k] = plans.setdefault(plan, len(plans))
    return list(plans), arm_of


def simulate(
    population: Population,
    doses: Doses,
    parameters: ParameterSet | str | Path | None = None,
    years: float | None = None,
    days: float | None = None,
    *,
    seed: int | None = None,
    record_every_days: int | None = None,
    engine: Engine = "numpy",
) -> Result:
    """Simulate ``population`` under ``doses`` for ``years`` (or ``days``) from baseline.

    ``doses``: a :class:`Regimen` every patient follows, :class:`DoseEvents` per patient, or a
    list of both (a patient's events add to the regimen). ``parameters``: a parameter set or
    the path of a parameter YAML (default: the calibrated set). Trajectories are recorded
    monthly (``round(month * 365.25 / 12)`` days) and at the last day, or every
    ``record_every_days`` days. ``seed`` keys the per-dose draws (adherence, absorption,
    persistence, delays; default: the population's seed).
    """
    params = _parameters(parameters)
    horizon = _horizon_days(years, days)
    patients = population.build(params)
    arms, arm_of = _arms(doses, patients)
    for a, plan in enumerate(arms):
        members = np.flatnonzero(arm_of == a)
        for sex in {population.sexes[k] for k in members}:
            check_plan_for_sex(plan, sex)
        if any(population.statuses[k] == "premenopausal" for k in members):
            check_premenopausal_plan(plan, horizon / DAYS_PER_MONTH)
    raw = simulate_arms(
        patients,
        arms,
        arm_of,
        horizon,
        seed=population.seed if seed is None else seed,
        record_days=_record_days(horizon, record_every_days),
        engine=engine,
    )
    return Result(raw, patients, population)
