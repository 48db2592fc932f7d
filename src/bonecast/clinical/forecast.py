"""Personal BMD forecast under alternative plans, from the calibrated simulator.

For one patient, a cohort of virtual twins is simulated from the start of her first endocrine or
bone treatment (or her first scan, if earlier): her age and menopausal status, the model's
between-patient variability (what is not known about her own bone biology) and, for each twin, a
posterior draw of the calibrated parameters (what is not known about the model). The twins'
turnover follows her first measured T-score at each site.

Conditioning on every measurement (issue 15; :mod:`bonecast.clinical.conditioning`): every BMD of
every scan at every site and every bone turnover marker (CTX, P1NP, NTX, BALP) is used, each with
its measurement error (DXA: LSC / 2.77 from the facility's precision study, else the ISCD
defaults; markers: LSC / 2.77). Each twin has one unknown level per site and scanner (and per
marker and assay) and, at the DXA sites, her own random-walk drift from the twin's course; both
are updated in closed form from all her measurements (a Kalman filter and smoother); the twins
are weighted by how well they reproduce her measured *changes* and, when these weigh, drawn by
systematic resampling from a pool of ``POOL_FACTOR`` x ``twins`` simulated over her history. So
her forecast passes through her scans within their precision error, starts at her latest scan,
and narrows with every scan. The points are the median and the 5-95 % band of what a scan would
read on that date (the scan's own precision error included, so a later scan can be compared with
the band directly). ``band_narrowing_pct`` compares the band she is shown at the horizon (first
plan) with the forecast from her first comparable scan at that site alone, on twins from the
same pool (what her follow-up scans and markers added; 0 with one scan); ``fit_to_scans``
shows her scans against the forecast on their dates; ``effective_twins`` is the effective
sample size behind the band.

Plans (issue 4; choices documented here):

* ``continue_ai`` - the aromatase inhibitor continues through the horizon (no new bone agent);
* ``ai_plus_agent`` - the inhibitor as planned plus the first recommended agent (or zoledronic
  acid 4 mg every 6 months when none is recommended), from ``as_of`` to the inhibitor's planned
  stop (at least 3 years);
* ``stop_ai_as_planned`` - the inhibitor stops at its planned date (5 years after its start when
  no date is given).

Treatments the patient already has (other than the inhibitor) continue as recorded in every plan.
A patient not on an inhibitor gets ``no_new_treatment`` and ``agent``.

Men (simulated with male physiology, :mod:`bonecast.simulation.male`) take an inhibitor
off-label without an adjuvant course length, so their plans are: ``continue_ai`` (the inhibitor
and any testosterone replacement continue), ``stop_ai`` (the inhibitor stops today, testosterone
continues), ``ai_plus_agent`` (a bone agent added today) and, for a man on testosterone,
``ai_without_testosterone`` (testosterone stops today, the inhibitor continues).

Numerics: the plans of all twins are simulated in one vectorised run (each twin repeated once per
plan, with the same dose draws) with daily steps, on the compiled engine by default; only the
yearly output days and the scan days are recorded; with a weighting pool the pool runs over her
history only. About 0.03-0.2 s of CPU per patient (one Numba thread), depending on how long her
treatment history is and whether denosumab is involved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bonecast.clinical._data import Verification
from bonecast.clinical.conditioning import (
    Observation,
    bmd_observations,
    fit_levels,
    informative,
    marker_observations,
    mixture_quantiles,
    normalised_weights,
    quantile_standard_error,
    systematic_resample,
)
from bonecast.clinical.guidelines import Agent
from bonecast.clinical.patient import Patient
from bonecast.clinical.precision import Lsc, lsc_table
from bonecast.clinical.scores import score_scan
from bonecast.simulation import (
    DAYS_PER_MONTH,
    SITES,
    DrugClass,
    PopulationSpec,
    Route,
    Treatment,
    VirtualPopulation,
    default_parameter_set,
    sample_population,
    simulate_arms,
)
from bonecast.simulation.drugs import DRUGS
from bonecast.simulation.model import Array
from bonecast.simulation.parameters import ParameterSet, posterior_draws
from bonecast.simulation.regimens import check_premenopausal_plan
from bonecast.simulation.solver import Engine

DEFAULT_TWINS = 200
"""Virtual twins per forecast (twice as many when the Monte Carlo error asks for it,
:data:`MONTE_CARLO_ERROR_PCT`). Measured on the example patients as the SD over 6 twin seeds
(docs/forecast.md): the 5-95 % edges vary by 0.09-0.15 % of BMD on average per patient (0.08-0.11
with 400), about the output's rounding (0.001 g/cm2) and a tenth of one scan's precision error
(about 1 %, LSC / 2.77), which the band holds; at most 0.8 % at any point of the women."""
MONTE_CARLO_ERROR_PCT = 2.0
"""Largest Monte Carlo error (1 standard error, % of BMD) of any median or band edge of a
forecast (:func:`~bonecast.clinical.conditioning.quantile_standard_error`) that is accepted
without doubling the twins; most women's forecasts stay under it with 200 twins (a fifth of the
demo patients do not: plans with a long tail, such as a man stopping his inhibitor)."""
POOL_FACTOR = 4
"""Twins in the pool the forecast's twins are resampled from, per forecast twin, when her
measured changes weight the twins (the pool is simulated over her history only)."""
BAND = (0.05, 0.5, 0.95)
"""Lower band edge, centre (median) and upper band edge of every forecast (quantiles)."""


def _zoledronic_acid(
    regimen: int, schedule: str, duration: str, source: str, verification: Verification
) -> Agent:
    """Zoledronic acid with the dose, route and interval of the catalogue's ``regimen``-th
    standard regimen (:data:`bonecast.simulation.drugs.DRUGS`, the one definition of them)."""
    standard = DRUGS["zoledronic_acid"].regimens[regimen]
    return Agent(
        drug="zoledronic_acid",
        dose_mg=standard.dose_mg,
        route=standard.route,
        interval_days=standard.interval_days,
        schedule=schedule,
        duration=duration,
        source=source,
        verification=verification,
    )


DEFAULT_AGENT = _zoledronic_acid(
    0,
    "4 mg IV every 6 months",
    "for the duration of the aromatase inhibitor",
    "AIBL 2017 first-line agent (docs/clinical/aibl-algorithm.md section 1.4), used when no "
    "agent is recommended",
    "V",
)
DEFAULT_AGENT_MEN = _zoledronic_acid(
    1,
    "5 mg IV yearly",
    "per the osteoporosis-in-men pathway",
    "zoledronic acid is among the drugs the Endocrine Society 2012 guideline for men lists "
    "(Watts NB et al. J Clin Endocrinol Metab 2012;97:1802); used for a man when no agent is "
    "recommended",
    "V-2nd",
)
STANDARD_AI_YEARS = 5.0
"""Adjuvant aromatase-inhibitor duration assumed when no planned stop is given (years)."""


class ForecastPoint(BaseModel):
    """BMD and T-score of one site at one time under one plan: the median (expected value) and
    the 5-95 % band of what a scan would read then."""

    model_config = ConfigDict(frozen=True)

    plan: str
    month: int
    date: date
    site: str
    bmd_g_cm2: float
    bmd_low_g_cm2: float
    bmd_high_g_cm2: float
    t_score: float
    t_score_low: float
    t_score_high: float


class ScanFit(BaseModel):
    """One of her scans against the forecast on its date: the median and 5-95 % band of what a
    scan would read there, and the scan's precision error (1 SD)."""

    model_config = ConfigDict(frozen=True)

    date: date
    site: str
    measured_bmd_g_cm2: float
    bmd_g_cm2: float
    bmd_low_g_cm2: float
    bmd_high_g_cm2: float
    precision_sd_g_cm2: float


class PlanTreatment(BaseModel):
    """One drug of a plan as the forecast simulates it: dose (mg) every ``interval_days``, by
    ``route``, from ``start_date`` to ``stop_date`` (``None``: beyond the horizon)."""

    model_config = ConfigDict(frozen=True)

    drug: str
    dose_mg: float
    route: Route
    interval_days: float
    start_date: date
    stop_date: date | None

    @classmethod
    def of(cls, treatment: Treatment, t0: date) -> PlanTreatment:
        """``treatment`` (months from ``t0``) with calendar dates."""

        def on(month: float | None) -> date | None:
            return None if month is None else t0 + timedelta(days=round(month * DAYS_PER_MONTH))

        return cls(
            drug=treatment.drug,
            dose_mg=treatment.dose_mg,
            route=treatment.route or DRUGS[treatment.drug].default_route,
            interval_days=treatment.interval_days,
            start_date=on(treatment.start_month or 0.0) or t0,
            stop_date=on(treatment.stop_month),
        )


class ForecastPlan(BaseModel):
    """A plan: its name, what it does and every drug it simulates (dose, route, interval, dates)."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    treatments: list[PlanTreatment] = []


class Forecast(BaseModel):
    """The personal forecast: points per plan, month and site, and how it was made."""

    model_config = ConfigDict(frozen=True)

    plans: list[ForecastPlan]
    points: list[ForecastPoint]
    horizon_years: int
    twins: int
    scans_conditioned_on: int
    markers_conditioned_on: int = 0
    effective_twins: float
    band_narrowing_pct: dict[str, float]
    fit_to_scans: list[ScanFit] = Field(default_factory=list)
    parameter_set: str
    notes: list[str]


def _months_between(start: date, end: date) -> float:
    return (end - start).days / DAYS_PER_MONTH


def _regimen(drug: str, dose_mg: float | None, interval_days: float | None) -> tuple[float, float]:
    standard = DRUGS[drug].regimens[0]
    return dose_mg or standard.dose_mg, interval_days or standard.interval_days


def _plan_treatments(
    patient: Patient, t0: date, horizon_end: date, agent: Agent
) -> tuple[list[tuple[str, str, list[Treatment]]], list[str]]:
    notes: list[str] = []
    keep: list[Treatment] = []
    ais: list[Treatment] = []
    for record in patient.treatments:
        record_dose, record_interval = _regimen(record.drug, record.dose_mg, record.interval_days)
        record_start = max(0.0, _months_between(t0, record.start_date))
        record_stop = None if record.end_date is None else _months_between(t0, record.end_date)
        if record_stop is not None and record_stop <= record_start:
            continue
        as_given = Treatment(
            drug=record.drug,
            dose_mg=record_dose,
            interval_days=record_interval,
            start_month=record_start,
            stop_month=record_stop,
            route=record.given_route,
        )
        if record.drug_class is DrugClass.AROMATASE_INHIBITOR:
            ais.append(as_given)
        else:
            keep.append(as_given)
    now = _months_between(t0, patient.as_of)
    end = _months_between(t0, horizon_end)
    agent_dose, agent_interval = _regimen(agent.drug, agent.dose_mg, agent.interval_days)

    def with_agent(until: float) -> Treatment:
        return Treatment(
            drug=agent.drug,
            dose_mg=agent_dose,
            interval_days=agent_interval,
            start_month=now,
            stop_month=max(until, now + 36.0),
            route=agent.route,
        )

    if not ais:
        return [
            ("no_new_treatment", "current treatments only", keep),
            ("agent", f"add {agent.drug} {agent.schedule} from today", [*keep, with_agent(end)]),
        ], ["not on an aromatase inhibitor: the inhibitor plans do not apply"]
    ais.sort(key=lambda a: a.start_month or 0.0)
    current = ais[-1]
    drug, dose, interval = current.drug, current.dose_mg, current.interval_days
    start, stop = current.start_month or 0.0, current.stop_month
    for earlier in ais[:-1]:
        # an inhibitor taken before the current one (a switch) is part of her history
        until = start if earlier.stop_month is None else min(earlier.stop_month, start)
        keep.append(earlier.model_copy(update={"stop_month": until}))
    if patient.sex == "male":
        return _male_plans(drug, dose, interval, start, stop, now, keep, with_agent(end))
    if stop is None:
        first = ais[0].start_month or 0.0
        stop = max(first + STANDARD_AI_YEARS * 12, start + 12.0)
        notes.append(
            f"{drug} has no planned stop date: {STANDARD_AI_YEARS:g} years of aromatase "
            "inhibitor in all assumed"
            + (" (counted from the first inhibitor)" if len(ais) > 1 else "")
        )
    continued: float | None = None
    continued_keep = keep
    if stop <= now:
        continued = stop
        notes.append(f"{drug} stopped before today: 'continue_ai' keeps the recorded stop")
    elif patient.menopausal_status == "premenopausal":
        # continuing the inhibitor before menopause needs continued ovarian suppression
        continued_keep = [
            k.model_copy(update={"stop_month": None})
            if k.drug_class is DrugClass.OVARIAN_SUPPRESSION
            else k
            for k in keep
        ]

    def ai(until: float | None) -> Treatment:
        return Treatment(
            drug=drug, dose_mg=dose, interval_days=interval, start_month=start, stop_month=until
        )

    return [
        (
            "continue_ai",
            f"{drug} continues through the horizon, no new bone agent",
            [*continued_keep, ai(continued)],
        ),
        (
            "ai_plus_agent",
            f"{drug} as planned plus {agent.drug} {agent.schedule} from today",
            [*keep, ai(stop), with_agent(stop)],
        ),
        (
            "stop_ai_as_planned",
            f"{drug} stops as planned (month {stop:.0f} of treatment)",
            [*keep, ai(stop)],
        ),
    ], notes


def _male_plans(
    drug: str,
    dose: float,
    interval: float,
    start: float,
    stop: float | None,
    now: float,
    keep: list[Treatment],
    agent: Treatment,
) -> tuple[list[tuple[str, str, list[Treatment]]], list[str]]:
    """The plans of a man on an aromatase inhibitor (module docstring)."""

    def ai(until: float | None) -> Treatment:
        return Treatment(
            drug=drug, dose_mg=dose, interval_days=interval, start_month=start, stop_month=until
        )

    def stopped_today(t: Treatment) -> Treatment | None:
        first = t.start_month or 0.0
        if first >= now:
            return None
        return t.model_copy(
            update={"stop_month": now if t.stop_month is None else min(t.stop_month, now)}
        )

    notes = ["a man: plans for an off-label aromatase inhibitor (no adjuvant course length)"]
    stop_now = ai(now) if start < now and (stop is None or stop > now) else ai(stop)
    plans = [
        (
            "continue_ai",
            f"{drug} continues through the horizon, no new bone agent",
            [*keep, ai(stop)],
        ),
        ("stop_ai", f"{drug} stops today; other treatments continue", [*keep, stop_now]),
        (
            "ai_plus_agent",
            f"{drug} continues plus {agent.drug} from today",
            [*keep, ai(stop), agent],
        ),
    ]
    androgens = [k for k in keep if k.drug_class is DrugClass.ANDROGEN]
    if androgens:
        others = [k for k in keep if k.drug_class is not DrugClass.ANDROGEN]
        ended = [e for e in (stopped_today(k) for k in androgens) if e is not None]
        plans.append(
            (
                "ai_without_testosterone",
                f"testosterone stops today, {drug} continues",
                [*others, *ended, ai(stop)],
            )
        )
    else:
        notes.append("not on testosterone replacement: no plan without testosterone")
    return plans, notes


def _twins(
    patient: Patient,
    parameter_set: ParameterSet,
    age_at_t0: float,
    t_scores: dict[str, float],
    n: int,
    seed: int,
) -> VirtualPopulation:
    """Virtual twins: variability plus one posterior parameter draw each (when available).

    The twins share the patient's age and her measured T-scores (which set their turnover,
    model.py), and differ in their parameters.
    """
    spec = PopulationSpec(
        n=n,
        sex=patient.sex,
        menopausal_status=None
        if patient.sex == "male"
        else patient.menopausal_status or "postmenopausal",
        age_years=min(max(age_at_t0, 18.0), 110.0),
        baseline_t_score={site: min(max(t, -6.0), 6.0) for site, t in t_scores.items()},
        variability=True,
    )
    twins = sample_population(spec, parameter_set, seed)
    draws = posterior_draws(parameter_set)[:n]
    for name in draws[0] if draws else ():
        # twin i takes draw i mod len(draws), relative to the parameter's value
        ratio = np.array([draw[name] for draw in draws]) / parameter_set.parameters[name].value
        twins.values[name] *= np.resize(ratio, n)
    return twins


@dataclass(frozen=True)
class Courses:
    """Relative courses of N twins at the record days: BMD per site (record day, site, twin) and
    osteoclast / osteoblast activity (record day, twin)."""

    bmd_ratio: Array
    osteoclasts: Array
    osteoblasts: Array

    def at(self, quantity: str, row: int) -> Array:
        """The course of a site (of SITES) or a model state at record row ``row``, (N,)."""
        if quantity in SITES:
            course: Array = self.bmd_ratio[row, SITES.index(quantity)]
        else:
            course = self.osteoclasts[row] if quantity == "osteoclasts" else self.osteoblasts[row]
        return course


def _simulate_runs(
    runs: list[tuple[VirtualPopulation, list[Treatment]]],
    horizon_days: int,
    record_days: list[int],
    seed: int,
    engine: Engine,
) -> list[Courses]:
    """The courses of each run (a population under a plan), every run in one vectorised batch.

    Twins are named by their ids: the same id is the same twin (all populations of a forecast
    come from one sample), and she draws the same doses in every run. Each twin is simulated
    once per distinct treatment list: a twin drawn several times by resampling, and plans with
    the same treatments, share one course. Per-patient arithmetic does not depend on the batch,
    so the courses are those of simulating every run in full.
    """
    groups: list[tuple[list[Treatment], list[int]]] = []  # distinct treatments, their runs
    for k, (_, treatments) in enumerate(runs):
        group = next((g for g in groups if g[0] == treatments), None)
        if group is None:
            groups.append((treatments, [k]))
        else:
            group[1].append(k)
    parts, ids_of_group = [], []
    for _, members in groups:
        together = VirtualPopulation.concatenate([runs[k][0] for k in members])
        ids, first = np.unique(together.patient_ids, return_index=True)
        parts.append(together.take(first))
        ids_of_group.append(ids)
    batch = VirtualPopulation.concatenate(parts)
    arm_of_twin = np.concatenate(
        [np.full(part.n, g, dtype=np.int64) for g, part in enumerate(parts)]
    )
    result = simulate_arms(
        batch,
        [treatments for treatments, _ in groups],
        arm_of_twin,
        horizon_days,
        seed=seed,
        record_days=record_days,
        engine=engine,
    )
    offsets = np.cumsum([0, *(part.n for part in parts)])
    courses: list[Courses | None] = [None] * len(runs)
    for g, (_, members) in enumerate(groups):
        for k in members:
            at = offsets[g] + np.searchsorted(ids_of_group[g], runs[k][0].patient_ids)
            courses[k] = Courses(
                result.bmd_ratio[:, :, at], result.osteoclasts[:, at], result.osteoblasts[:, at]
            )
    return [course for course in courses if course is not None]


def prepare_engine(parameter_set: ParameterSet | None = None) -> None:
    """Load the compiled kernel (Numba's disk cache, or JIT on a fresh install) with a one-twin,
    two-day run, so that the first forecast of a server does not pay for it (about 0.5 s)."""
    params = parameter_set or default_parameter_set()
    spec = PopulationSpec(n=1, menopausal_status="postmenopausal", age_years=60.0)
    one = sample_population(spec, params, seed=0)
    simulate_arms(one, [[]], np.zeros(1, dtype=np.int64), 2, record_days=[0, 2], engine="auto")


def _t_score(bmd_g_cm2: float, anchor_bmd: float, anchor_t: float, sd_g_cm2: float) -> float:
    """T-score moved from the reported one by the change in BMD over the reference SD."""
    return anchor_t + (bmd_g_cm2 - anchor_bmd) / sd_g_cm2


def _latest_per_site(observations: list[Observation]) -> dict[str, Observation]:
    """The latest BMD observation of each site."""
    latest: dict[str, Observation] = {}
    for obs in sorted(observations, key=lambda o: o.date):
        if obs.quantity in SITES:
            latest[obs.quantity] = obs
    return latest


def forecast(
    patient: Patient,
    recommended_agents: list[Agent],
    horizon_years: int = 5,
    twins: int = DEFAULT_TWINS,
    seed: int = 0,
    parameter_set: ParameterSet | None = None,
    engine: Engine = "auto",
    precision: Mapping[str, Lsc] | None = None,
) -> Forecast | None:
    """The forecast of ``patient`` (``None`` without a scan with BMD).

    ``precision`` is the LSC per site (:func:`~bonecast.clinical.precision.lsc_table`, the
    facility's study or the ISCD defaults): it sets each scan's measurement error. ``engine`` is
    the simulator's (:data:`bonecast.simulation.solver.Engine`): the compiled kernel by default,
    within 0.01 pp of the NumPy reference and several times faster. With ``twins`` twins the
    Monte Carlo error of a band can exceed :data:`MONTE_CARLO_ERROR_PCT` (a plan with a long
    tail); the forecast is then made again, once, with twice as many.
    """
    made = _forecast(
        patient, recommended_agents, horizon_years, twins, seed, parameter_set, engine, precision
    )
    if made is None or made[1] <= MONTE_CARLO_ERROR_PCT:
        return None if made is None else made[0]
    again = _forecast(
        patient,
        recommended_agents,
        horizon_years,
        2 * twins,
        seed,
        parameter_set,
        engine,
        precision,
    )
    return None if again is None else again[0]


def _forecast(
    patient: Patient,
    recommended_agents: list[Agent],
    horizon_years: int,
    twins: int,
    seed: int,
    parameter_set: ParameterSet | None,
    engine: Engine,
    precision: Mapping[str, Lsc] | None,
) -> tuple[Forecast, float] | None:
    """:func:`forecast` with ``twins`` twins, and the largest Monte Carlo error (1 SE, % of BMD)
    of its points' medians and band edges."""
    params = parameter_set or default_parameter_set()
    lsc = precision or lsc_table()
    scans = patient.sorted_scans()
    measured = [score_scan(scan) for scan in scans]
    first_t: dict[str, float] = {}  # the twins' turnover follows her first T-score per site
    anchors: dict[str, tuple[float, float]] = {}  # latest (BMD, T-score) per site
    for scores in measured:
        for site, score in scores.items():
            if score.bmd_g_cm2 is None:
                continue
            t_score = score.t_score_unrounded or score.t_score
            if t_score is None:
                anchors.pop(site, None)
                continue
            first_t.setdefault(site, t_score)
            anchors[site] = (score.bmd_g_cm2, t_score)
    if not anchors:
        return None
    starts = [t.start_date for t in patient.treatments]
    t0 = min([scans[0].date, *starts])
    horizon_end = patient.as_of + timedelta(days=round(horizon_years * 365.25))
    default = DEFAULT_AGENT_MEN if patient.sex == "male" else DEFAULT_AGENT
    agent = recommended_agents[0] if recommended_agents else default
    plans, notes = _plan_treatments(patient, t0, horizon_end, agent)
    runnable = []
    for name, _, treatments in plans:
        try:
            if patient.menopausal_status == "premenopausal":
                check_premenopausal_plan(treatments, _months_between(t0, horizon_end))
            runnable.append((name, treatments))
        except ValueError as error:
            notes.append(f"plan {name} not simulated: {error}")
    if not runnable:
        return None

    bmds = bmd_observations(scans, measured, lsc, t0)
    latest = {s: obs for s, obs in _latest_per_site(bmds).items() if s in anchors}
    shape = informative([*bmds, *marker_observations(patient.labs, t0)])
    used = [*shape, *(obs for obs in latest.values() if obs not in shape)]
    days = {obs: (obs.date - t0).days for obs in used}
    horizon_days = (horizon_end - t0).days
    now_day = (patient.as_of - t0).days
    months = list(range(0, 12 * horizon_years + 1, 12))
    outputs = [now_day + round(m * DAYS_PER_MONTH) for m in months]
    record = sorted({*outputs, *days.values()})
    row = {day: i for i, day in enumerate(record)}

    def modelled(courses: Courses, observations: list[Observation]) -> Array:
        return np.stack([courses.at(obs.quantity, row[days[obs]]) for obs in observations])

    age = patient.age_on(t0)
    t_scores = {site: t for site, t in first_t.items() if site in SITES}
    effective = float(twins)
    if shape:  # her changes tell twins apart: draw the twins from a weighted pool
        pool = _twins(patient, params, age, t_scores, POOL_FACTOR * twins, seed)
        history = max(days[obs] for obs in shape)
        (pool_courses,) = _simulate_runs(
            [(pool, runnable[0][1])], history, sorted({days[obs] for obs in shape}), seed, engine
        )
        weights, ess = normalised_weights(
            fit_levels(shape, modelled(pool_courses, shape)).log_likelihood
        )
        effective = min(ess, float(twins))
        chosen = pool.take(systematic_resample(weights, twins, seed))
        prior = pool.take(np.arange(twins))
        runs = [(chosen, treatments) for _, treatments in runnable] + [(prior, runnable[0][1])]
    else:
        chosen = _twins(patient, params, age, t_scores, twins, seed)
        runs = [(chosen, treatments) for _, treatments in runnable]
    courses = _simulate_runs(runs, horizon_days, record, seed, engine)

    sites = [site for site in SITES if site in latest]
    keys = [(name, site, month) for name, _ in runnable for site in sites for month in months]
    mu, sd = [], []
    for course in courses[: len(runnable)]:
        levels = fit_levels(used, modelled(course, used))
        for site in sites:
            obs = latest[site]
            for day in outputs:
                offset, variance = levels.predict(obs.group, t0 + timedelta(days=day))
                mu.append(offset + np.log(course.at(site, row[day])))
                sd.append(math.sqrt(variance + obs.sd_log**2))
    low, median, high = mixture_quantiles(np.stack(mu), np.array(sd), BAND)
    bands = np.stack([low, median, high])
    error_pct = 100.0 * float(
        quantile_standard_error(np.stack(mu), np.array(sd), bands, effective).max()
    )
    ref = params.reference_bmd
    points = []
    for k, (name, site, month) in enumerate(keys):
        bmd0, t0_score = anchors[site]
        sd_ref = ref[site].sd_g_cm2
        points.append(
            ForecastPoint(
                plan=name,
                month=month,
                date=patient.as_of + timedelta(days=outputs[months.index(month)] - now_day),
                site=site,
                bmd_g_cm2=round(float(median[k]), 4),
                bmd_low_g_cm2=round(float(low[k]), 4),
                bmd_high_g_cm2=round(float(high[k]), 4),
                t_score=round(_t_score(float(median[k]), bmd0, t0_score, sd_ref), 2),
                t_score_low=round(_t_score(float(low[k]), bmd0, t0_score, sd_ref), 2),
                t_score_high=round(_t_score(float(high[k]), bmd0, t0_score, sd_ref), 2),
            )
        )

    fits = _fit_to_scans(used, modelled(courses[0], used))
    narrowing = dict.fromkeys(sites, 0.0)
    if shape:  # the band she is shown against her first comparable scan alone, same twin pool
        prior_courses = courses[-1]
        horizon = row[outputs[-1]]
        end = t0 + timedelta(days=outputs[-1])
        for site in sites:
            obs = latest[site]
            first = min((o for o in used if o.group == obs.group), key=lambda o: o.date)
            future = np.log(prior_courses.at(site, horizon))
            alone = math.log(first.value) - np.log(prior_courses.at(site, row[days[first]]))
            spread = first.sd_log**2 + first.drift_per_day * (end - first.date).days
            reference = mixture_quantiles(
                (alone + future)[None, :],
                np.array([math.sqrt(spread + obs.sd_log**2)]),
                (BAND[0], BAND[2]),
            )
            k = keys.index((runnable[0][0], site, months[-1]))
            width = float(high[k] - low[k])
            narrowing[site] = round(
                100.0 * (1.0 - width / float(reference[1, 0] - reference[0, 0])), 1
            )
    notes += [
        "bands: 5-95 % of what a scan would read: her rates from virtual twins "
        "(between-patient variability and posterior parameter uncertainty) weighted by how well "
        "they reproduce her measured changes, her level and her own drift from the twins "
        "fitted to every scan (Kalman filter), and the scan's precision error",
        "T-scores move from her latest reported T-score by the change in BMD over the reference SD",
        "denosumab and zoledronic acid are weakly constrained in the AI setting "
        "(docs/model/calibration.md section 10.2): their plans are extrapolations",
    ]
    notes += [
        f"{fit.site} {fit.date}: measured {fit.measured_bmd_g_cm2:.3f} g/cm2, the forecast "
        f"gives {fit.bmd_g_cm2:.3f}, more than the scan's precision error away: her change "
        "there is outside what the model reproduces, so the forecast is less certain"
        for fit in fits
        if abs(fit.bmd_g_cm2 - fit.measured_bmd_g_cm2) > fit.precision_sd_g_cm2
    ]
    if effective < 20:
        notes.append(f"only {effective:.0f} twins agree with the scans: the band is uncertain")
    if error_pct > MONTE_CARLO_ERROR_PCT:
        notes.append(
            f"with {twins} twins a band edge is still uncertain by up to {error_pct:.1f} % of "
            "BMD (simulation error: a plan whose outcomes have a long tail)"
        )
    forecast_made = Forecast(
        plans=[
            ForecastPlan(
                name=n, description=d, treatments=[PlanTreatment.of(t, t0) for t in treatments]
            )
            for n, d, treatments in plans
            if n in dict(runnable)
        ],
        points=points,
        horizon_years=horizon_years,
        twins=twins,
        scans_conditioned_on=len({obs.date for obs in used if obs.quantity in SITES}),
        markers_conditioned_on=sum(obs.quantity not in SITES for obs in used),
        effective_twins=round(effective, 1),
        band_narrowing_pct=narrowing,
        fit_to_scans=fits,
        parameter_set=f"{params.name} {params.version}",
        notes=notes,
    )
    return forecast_made, error_pct


def _fit_to_scans(used: list[Observation], modelled: Array) -> list[ScanFit]:
    """Her scans against the forecast on their dates (first plan: the plans share her past)."""
    levels = fit_levels(used, modelled)
    bmds = [j for j, obs in enumerate(used) if obs.quantity in SITES]
    mu = np.stack([levels.at[used[j]][0] + np.log(modelled[j]) for j in bmds])
    sd = np.array([math.sqrt(levels.at[used[j]][1] + used[j].sd_log ** 2) for j in bmds])
    low, median, high = mixture_quantiles(mu, sd, BAND)
    return sorted(
        (
            ScanFit(
                date=used[j].date,
                site=used[j].quantity,
                measured_bmd_g_cm2=used[j].value,
                bmd_g_cm2=round(float(median[k]), 4),
                bmd_low_g_cm2=round(float(low[k]), 4),
                bmd_high_g_cm2=round(float(high[k]), 4),
                precision_sd_g_cm2=round(used[j].sd_log * used[j].value, 4),
            )
            for k, j in enumerate(bmds)
        ),
        key=lambda fit: (fit.date, SITES.index(fit.site)),
    )
