"""Virtual trials: the trial specification (architecture.md contract), running it, summarising.

A :class:`TrialSpec` is validated strictly (unknown keys, unknown drugs, negative doses, a stop
before a start and missing fields are errors naming the field). :func:`run_trial` simulates every
arm on the same virtual patients (common random numbers: arms differ only by treatment) in
chunks, and returns a :class:`TrialResult` holding the contract's summary rows and monthly
trajectories for plotting.

Fracture quantities (``clinical_fracture``, ``hip_fracture``, ``vertebral_fracture``) report
the mean cumulative incidence (%) in ``mean_pct_change`` (:mod:`bonecast.simulation.fracture`);
their other statistics are empty. The spec's optional ``fracture`` block states the trial's
fracture covariates (how fractures are recorded, the share of women with a prior fracture;
:class:`bonecast.simulation.fracture.FractureSetting`); without it none are stated.

Model observables (``estradiol`` in pg/mL, ``testosterone`` in ng/dL (men only), ``rankl``
free RANKL, ``osteoclasts`` and ``osteoblasts``, the latter three relative to the patient's
untreated baseline) report, like the markers, the % change of the true value from
``month_from`` in ``mean_pct_change`` (and its spread), without assay error.

Statistics: BMD rows are % change of *measured* BMD when variability is on (true BMD times a
per-visit DXA error, docs/model/numerics.md section 9), so their spread is comparable with trial
data; marker rows are % change of the cell-state proxies (CTX and NTX: osteoclasts; P1NP and BSAP:
osteoblasts) without assay error. With ``variability: false`` the trial is one typical patient
(n = 1, no measurement error).
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bonecast.simulation.calibration.heterogeneity import (
    Heterogeneity,
    predictive_quantiles,
    predictive_sd,
)
from bonecast.simulation.executors import Executor, SerialExecutor, share_kernel_threads
from bonecast.simulation.fracture import (
    FRACTURE_QUANTITIES,
    FractureSetting,
    default_fracture_model,
    fracture_incidence,
)
from bonecast.simulation.model import DAYS_PER_MONTH, Array
from bonecast.simulation.parameters import (
    SITES,
    ParameterSet,
    default_parameter_set,
    posterior_draws,
)
from bonecast.simulation.population import (
    PopulationSpec,
    VirtualPopulation,
    residual_error_pp,
    sample_population,
)
from bonecast.simulation.regimens import (
    Treatment,
    check_plan_for_sex,
    check_premenopausal_plan,
    month_to_day,
)
from bonecast.simulation.solver import Engine, SimulationResult, simulate
from bonecast.simulation.summaries import BAND_BIN_SHIFT, Summary

Quantity = Literal[
    "lumbar_spine",
    "total_hip",
    "femoral_neck",
    "ctx",
    "ntx",
    "p1np",
    "bsap",
    "clinical_fracture",
    "hip_fracture",
    "vertebral_fracture",
    "estradiol",
    "testosterone",
    "rankl",
    "osteoclasts",
    "osteoblasts",
]
QUANTITIES: tuple[str, ...] = Quantity.__args__  # type: ignore[attr-defined]
"""Quantities a trial can report (BMD sites, turnover markers, fractures, model observables)."""
MALE_ONLY_QUANTITIES = frozenset({"testosterone"})
"""Quantities the model represents in men only."""

RESULT_COLUMNS = (
    "arm",
    "quantity",
    "month_from",
    "month",
    "n",
    "mean_pct_change",
    "median_pct_change",
    "sd",
    "p05",
    "p95",
)
"""Columns of the result CSV (architecture.md contract), in order."""

UNCERTAINTY_COLUMNS = ("param_cri05", "param_cri95")
"""Columns appended (compatible extension) when parameter uncertainty is requested: the 5-95 %
credible interval of the typical patient's change over posterior parameter draws (with
``predictive``, the 5-95 % predictive interval of a new trial's mean change; same columns)."""

CHUNK_SIZE = 10_000
"""Patients simulated at once (at most); results do not depend on it (counter-based randomness,
exact summaries). 10,000 patients x 10 years keep a worker under about 500 MB."""
MIN_CHUNK_SIZE = 2_500
"""Fewest patients in a chunk of a distributed run (unless the population is smaller): a chunk
has a fixed cost of about 25-30 ms (sampling, compiling the regimen, kernel calls, summaries,
the task's round trip) against about 0.14 ms a patient-arm over 10 years on one core, so at
this size the fixed cost stays under about 8 % (benchmarks/README.md)."""
CHUNKS_PER_TASK_THREAD = 4
"""Chunks a distributed run aims to give each task thread, so that no thread idles long at the
end of the run (the last chunks finish within about a quarter of a thread's work)."""


def chunk_size_for(patients: int, parallelism: int) -> int:
    """Patients per chunk for ``patients`` run on ``parallelism`` task threads.

    Serially (one thread): :data:`CHUNK_SIZE` (a chunk is cut only to bound memory). In
    parallel: :data:`CHUNKS_PER_TASK_THREAD` chunks per thread, each of at least
    :data:`MIN_CHUNK_SIZE` and at most :data:`CHUNK_SIZE` patients, and never so large that
    a thread gets no chunk at all. Results do not depend on it.
    """
    if patients < 1 or parallelism < 1:
        raise ValueError(f"need patients >= 1 and parallelism >= 1, got {patients}, {parallelism}")
    if parallelism == 1:
        return min(patients, CHUNK_SIZE)
    balanced = math.ceil(patients / (parallelism * CHUNKS_PER_TASK_THREAD))
    every_thread = math.ceil(patients / parallelism)
    return min(max(balanced, MIN_CHUNK_SIZE), CHUNK_SIZE, every_thread)


class OutputSpec(BaseModel):
    """What a trial reports: quantities at months (from baseline) and over intervals."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quantities: list[Quantity] = Field(min_length=1)
    months: list[float] = Field(min_length=1)
    intervals: list[tuple[float, float]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> OutputSpec:
        for i, month in enumerate(self.months):
            if not 0 <= month <= 600:
                raise ValueError(f"months[{i}]: {month:g} is outside 0..600")
        for i, (start, stop) in enumerate(self.intervals):
            if not 0 <= start < stop <= 600:
                raise ValueError(
                    f"intervals[{i}]: [{start:g}, {stop:g}] needs 0 <= from < to <= 600"
                )
        return self

    @property
    def horizon_months(self) -> float:
        """The last month any output needs."""
        return max([*self.months, *(stop for _, stop in self.intervals)])


class ArmSpec(BaseModel):
    """One arm: a name and its treatments (none = untreated/placebo)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    treatments: list[Treatment] = Field(default_factory=list)


class TrialSpec(BaseModel):
    """A virtual trial (architecture.md, 'Trial specification')."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    seed: int = Field(default=0, ge=0)
    population: PopulationSpec
    arms: list[ArmSpec] = Field(min_length=1)
    outputs: OutputSpec
    fracture: FractureSetting = Field(default_factory=FractureSetting)

    @model_validator(mode="after")
    def _consistent(self) -> TrialSpec:
        names = [arm.name for arm in self.arms]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"arms: duplicate arm names {duplicates}")
        for i, arm in enumerate(self.arms):
            try:
                check_plan_for_sex(arm.treatments, self.population.sex)
            except ValueError as error:
                raise ValueError(f"arms[{i}].{error}") from None
        if self.population.sex != "male":
            for q in MALE_ONLY_QUANTITIES & set(self.outputs.quantities):
                raise ValueError(f"outputs.quantities: {q} is modelled in men only (sex: male)")
        if self.population.menopausal_status == "premenopausal":
            for i, arm in enumerate(self.arms):
                try:
                    check_premenopausal_plan(arm.treatments, self.outputs.horizon_months)
                except ValueError as error:
                    raise ValueError(f"arms[{i}].{error}") from None
        return self

    @property
    def horizon_days(self) -> int:
        """Simulated days (up to the last month any output needs)."""
        return month_to_day(self.outputs.horizon_months)

    def output_pairs(self) -> list[tuple[float, float]]:
        """(month_from, month) of every output row: from baseline, then the intervals."""
        return [(0.0, float(m)) for m in self.outputs.months] + [
            (float(a), float(b)) for a, b in self.outputs.intervals
        ]


class TrialSpecError(ValueError):
    """A trial spec that cannot be run; ``problems`` lists 'field: what is accepted' lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(
            f"invalid trial spec {source}:\n" + "\n".join(f"  - {p}" for p in problems)
        )
        self.problems = problems


def _location(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part) in (
            "float",
            "int",
            "Distribution",
            "function-after[_bounds(), Distribution]",
        ):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def describe_validation_error(error: ValidationError) -> list[str]:
    """One readable line per problem: the field path, what is wrong, what was given."""
    lines = []
    for item in error.errors():
        where = _location(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (not part of the trial spec)"
        given = item.get("input")
        shown = (
            ""
            if item["type"] in ("missing", "extra_forbidden") or isinstance(given, dict)
            else f" (given: {given!r})"
        )
        lines.append(f"{where}: {message}{shown}" if where else f"{message}{shown}")
    return lines


def parse_trial_spec(data: Any, source: str = "<spec>") -> TrialSpec:
    """Validate a decoded spec (a mapping), raising :class:`TrialSpecError` on any problem."""
    if not isinstance(data, dict):
        raise TrialSpecError(source, ["the spec must be a mapping of keys to values"])
    try:
        return TrialSpec.model_validate(data)
    except ValidationError as error:
        raise TrialSpecError(source, describe_validation_error(error)) from None


def load_trial_spec(path: str | Path) -> TrialSpec:
    """Read and validate a trial spec from a YAML or JSON file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise TrialSpecError(str(path), [f"cannot read the file: {error.strerror}"]) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise TrialSpecError(str(path), [f"not valid YAML/JSON: {error}"]) from None
    return parse_trial_spec(data, str(path))


@dataclass(frozen=True)
class SummaryRow:
    """One row of the result CSV."""

    arm: str
    quantity: str
    month_from: float
    month: float
    n: int
    mean_pct_change: float
    median_pct_change: float | None
    sd: float | None
    p05: float | None
    p95: float | None
    param_cri05: float | None = None
    param_cri95: float | None = None

    def as_csv(self) -> list[str]:
        """The row as CSV fields (numbers with 4 decimals; empty where not applicable)."""

        def month(x: float) -> str:
            return f"{x:g}" if float(x).is_integer() else f"{x:.4f}"

        def value(x: float | None) -> str:
            return "" if x is None else f"{x:.4f}"

        stats = (self.mean_pct_change, self.median_pct_change, self.sd, self.p05, self.p95)
        credible = (self.param_cri05, self.param_cri95)
        extra = [] if self.param_cri05 is None else [value(v) for v in credible]
        return [
            self.arm,
            self.quantity,
            month(self.month_from),
            month(self.month),
            str(self.n),
            *(value(v) for v in stats),
            *extra,
        ]


@dataclass(frozen=True)
class Band:
    """Mean and 5-95 % band of one quantity over time for one arm (% change from baseline).

    Bands show between-patient variability of the true (simulated) values, without the DXA
    measurement error that the summary rows include.
    """

    months: Array
    mean: Array
    p05: Array
    p95: Array


@dataclass(frozen=True)
class TrialResult:
    """What a trial produced: the contract's rows and monthly bands per arm and quantity."""

    spec: TrialSpec
    rows: list[SummaryRow]
    bands: dict[str, dict[str, Band]]  # arm -> quantity -> band
    parameter_set_name: str
    parameter_digest: str

    def write_csv(self, path: str | Path) -> None:
        """Write the result CSV atomically (a partial file is never left behind)."""
        write_rows_csv(path, self.rows)

    def to_frame(self) -> Any:
        """The summary rows as a pandas DataFrame (columns of :data:`RESULT_COLUMNS`, then the
        credible-interval columns when requested; empty statistics are NaN)."""
        import pandas as pd

        columns = list(RESULT_COLUMNS)
        if any(row.param_cri05 is not None for row in self.rows):
            columns += list(UNCERTAINTY_COLUMNS)
        return pd.DataFrame(
            [[getattr(row, c) for c in columns] for row in self.rows], columns=columns
        ).astype({c: float for c in columns[5:]})


def write_rows_csv(path: str | Path, rows: Iterable[SummaryRow]) -> None:
    """Write summary rows with the contract's header, atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            listed = list(rows)
            uncertain = any(row.param_cri05 is not None for row in listed)
            writer.writerow(RESULT_COLUMNS + (UNCERTAINTY_COLUMNS if uncertain else ()))
            writer.writerows(row.as_csv() for row in listed)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


RowKey = tuple[str, str, float, float]
"""(arm, quantity, month_from, month) of a result row."""
BandKey = tuple[str, str, float]
"""(arm, quantity, month) of a point of a plotted band."""
K = TypeVar("K")


def _observed(
    quantity: str,
    sim: SimulationResult,
    population: VirtualPopulation,
    fracture: FractureSetting | None = None,
) -> Array:
    """True per-visit values of ``quantity`` (n_days, N).

    The BMD ratio to baseline for a site, a cell state for a marker, or the cumulative fracture
    hazard for a fracture quantity (in a trial with fracture covariates ``fracture``).
    """
    if quantity in FRACTURE_QUANTITIES:
        months = sim.days.astype(float) / DAYS_PER_MONTH
        incidence = fracture_incidence(
            default_fracture_model(),
            months,
            population.age_years,
            np.moveaxis(sim.t_scores(), 1, 0),
            np.moveaxis(sim.bmd_ratio, 1, 0),
            sim.osteoclasts,
            fracture,
        )
        return incidence.cumulative_hazard[quantity]
    if quantity in SITES:
        return sim.bmd_ratio[:, SITES.index(quantity)]
    observed = {
        "estradiol": sim.estradiol_pg_ml,
        "testosterone": sim.testosterone_ng_dl,
        "rankl": sim.rankl,
        "osteoclasts": sim.osteoclasts,
        "osteoblasts": sim.osteoblasts,
    }
    if quantity in observed:
        return observed[quantity]
    return sim.osteoclasts if quantity in ("ctx", "ntx") else sim.osteoblasts


def _change(quantity: str, before: Array, after: Array) -> Array:
    """% change between visits; for a fracture quantity, cumulative incidence (%) in between."""
    if quantity in FRACTURE_QUANTITIES:
        return np.asarray(100.0 * (1.0 - np.exp(-(after - before))))
    return np.asarray(100.0 * (after / before - 1.0))


def _parameter_draw_changes(
    spec: TrialSpec, params: ParameterSet, record_days: Sequence[int], draws: int
) -> dict[RowKey, Array]:
    """The typical patient's change under each posterior draw, per output row.

    One batch of ``draws`` (at most a few hundred) typical patients per arm, whatever the
    population size, so it runs here.
    """
    sample = posterior_draws(params)[:draws]
    if not sample:
        raise ValueError(f"parameter set {params.name} has no posterior sample")
    typical = sample_population(
        spec.population.model_copy(update={"n": 1, "variability": False}), params, spec.seed
    ).with_parameter_draws(sample)
    column = {day: i for i, day in enumerate(record_days)}
    out: dict[RowKey, Array] = {}
    for arm in spec.arms:
        sim = simulate(
            typical, arm.treatments, spec.horizon_days, seed=spec.seed, record_days=record_days
        )
        for q in spec.outputs.quantities:
            values = _observed(q, sim, typical, spec.fracture)
            for month_from, month in spec.output_pairs():
                out[(arm.name, q, month_from, month)] = _change(
                    q,
                    values[column[month_to_day(month_from)]],
                    values[column[month_to_day(month)]],
                )
    return out


@dataclass(frozen=True)
class _Intervals:
    """How the 5-95 % columns are made from the posterior draws' changes: their percentiles
    (parameter uncertainty) or, with ``heterogeneity``, the predictive interval of a new
    trial's mean change (draws widened by the site's between-trial SD and the sampling error
    of a mean of ``n`` women; :mod:`bonecast.simulation.calibration.heterogeneity`)."""

    changes: dict[RowKey, Array]
    heterogeneity: Heterogeneity | None
    n: int

    def of(self, key: RowKey, sd: float | None) -> list[float | None]:
        """The 5 and 95 % bounds of row ``key`` whose between-patient SD is ``sd``."""
        if key not in self.changes:
            return [None, None]
        scale = 0.0
        if self.heterogeneity is not None:
            scale = predictive_sd(self.heterogeneity.tau(key[1]), sd, self.n)
        low, high = predictive_quantiles(self.changes[key], scale, (0.05, 0.95))
        return [float(low), float(high)]


def _merged(mine: dict[K, Summary], theirs: dict[K, Summary]) -> dict[K, Summary]:
    """Key-wise merge of two maps of summaries (a key in one map only is kept as it is)."""
    return {**mine, **{k: mine[k].merge(v) if k in mine else v for k, v in theirs.items()}}


@dataclass(frozen=True)
class ChunkSummary:
    """What a chunk of patients sends back: exact, mergeable summaries, no per-patient values.

    ``rows``: per result row, the :class:`Summary` of its % change (mean only for fracture
    quantities). ``bands``: per arm, quantity and month of the plotting grid, the summary of the
    true % change from baseline (mean and coarse histogram). Its size depends on the number
    of rows and months and on the spread of the values, never on the number of days simulated;
    each histogram has at most as many bins as the chunk has patients.
    """

    patients: int
    rows: dict[RowKey, Summary]
    bands: dict[BandKey, Summary]

    def merge(self, other: ChunkSummary) -> ChunkSummary:
        """Both chunks' summaries together (exact: the same for any chunking and order)."""
        return ChunkSummary(
            self.patients + other.patients,
            _merged(self.rows, other.rows),
            _merged(self.bands, other.bands),
        )


NO_PATIENTS = ChunkSummary(0, {}, {})
"""The summary of no patients (what merging starts from)."""


def _scaled(progress: Callable[[int], None] | None, patients: int) -> Callable[[int], None] | None:
    """Turn a simulator's day counts into patient-day counts for ``progress``."""
    if progress is None:
        return None
    report = progress
    return lambda days: report(days * patients)


@dataclass(frozen=True)
class TrialChunk:
    """The per-chunk work of :func:`run_trial`, picklable so that an executor can run it.

    Called with ``(start, stop)``: samples patients ``start .. stop-1``, simulates every arm and
    reduces the per-visit values to a :class:`ChunkSummary` where it runs (a pure function of
    the spec, the parameters and the bounds). ``record_days`` are the simulated days kept,
    ``band_months`` the months of the plotting grid.
    """

    spec: TrialSpec
    params: ParameterSet
    record_days: tuple[int, ...]
    band_months: tuple[float, ...]
    engine: Engine = "numpy"
    progress: Callable[[int], None] | None = None  # per simulated day; serial runs only

    def __call__(self, bounds: tuple[int, int]) -> ChunkSummary:
        """Summaries of every row and band for patients ``bounds[0] .. bounds[1]-1``."""
        spec, seed = self.spec, self.spec.seed
        if self.engine != "numpy":
            share_kernel_threads()
        population = sample_population(spec.population, self.params, seed, *bounds)
        column = {day: i for i, day in enumerate(self.record_days)}
        pairs = [(a, b, month_to_day(a), month_to_day(b)) for a, b in spec.output_pairs()]
        # per-visit DXA error (docs/model/numerics.md section 9) of the reported visits; the same in
        # every arm
        pair_days = sorted({d for *_, a, b in pairs for d in (a, b)})
        dxa_error_pp = (
            {d: residual_error_pp(self.params, population.patient_ids, seed, d) for d in pair_days}
            if spec.population.variability
            else {}
        )
        rows: dict[RowKey, Summary] = {}
        bands: dict[BandKey, Summary] = {}
        for arm in spec.arms:
            sim = simulate(
                population,
                arm.treatments,
                spec.horizon_days,
                seed=seed,
                record_days=self.record_days,
                engine=self.engine,
                progress=_scaled(self.progress, bounds[1] - bounds[0]),
            )
            for q in spec.outputs.quantities:
                true = _observed(q, sim, population, spec.fracture)
                visits = {day: true[column[day]] for day in pair_days}
                if q in SITES and dxa_error_pp:
                    k = SITES.index(q)
                    visits = {d: v * (1.0 + dxa_error_pp[d][k] / 100.0) for d, v in visits.items()}
                for month_from, month, day_from, day in pairs:
                    change = _change(q, visits[day_from], visits[day])
                    rows[(arm.name, q, month_from, month)] = (
                        Summary.of(change, shift=None, spread=False)
                        if q in FRACTURE_QUANTITIES
                        else Summary.of(change)
                    )
                for month in self.band_months:
                    series = _change(q, true[column[0]], true[column[month_to_day(month)]])
                    bands[(arm.name, q, month)] = Summary.of(series, BAND_BIN_SHIFT, spread=False)
        return ChunkSummary(bounds[1] - bounds[0], rows, bands)


def _summary_rows(summary: ChunkSummary, intervals: _Intervals) -> list[SummaryRow]:
    """The result rows of merged summaries (``n`` = patients merged so far)."""
    rows = []
    for key, s in summary.rows.items():
        arm, quantity, month_from, month = key
        spread: list[float | None] = [None] * 4  # median, sd, p05, p95: none for fractures
        if quantity not in FRACTURE_QUANTITIES:
            p05, median, p95 = s.percentiles([5, 50, 95])
            spread = [median, s.sd, p05, p95]
        cri = intervals.of(key, spread[1])
        rows.append(SummaryRow(arm, quantity, month_from, month, s.count, s.mean, *spread, *cri))
    return rows


def _bands(summary: ChunkSummary, months: Sequence[float]) -> dict[str, dict[str, Band]]:
    """Per arm and quantity, the mean and 5-95 % band over the plotting grid ``months``."""
    bands: dict[str, dict[str, Band]] = {}
    for arm, quantity, month in summary.bands:
        if month != months[0]:
            continue
        per_month = [summary.bands[(arm, quantity, m)] for m in months]
        p05, p95 = np.array([s.percentiles([5, 95]) for s in per_month]).T
        bands.setdefault(arm, {})[quantity] = Band(
            months=np.array(months, dtype=float),
            mean=np.array([s.mean for s in per_month]),
            p05=p05,
            p95=p95,
        )
    return bands


def run_trial(
    spec: TrialSpec,
    parameter_set: ParameterSet | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_size: int | None = None,
    parameter_draws: int = 0,
    engine: Engine = "numpy",
    executor: Executor | None = None,
    on_rows: Callable[[list[SummaryRow]], None] | None = None,
    predictive: bool = False,
) -> TrialResult:
    """Run every arm of ``spec`` and summarise it.

    Patients are simulated in chunks of ``chunk_size`` (default: :func:`chunk_size_for` the
    executor's parallelism) by ``executor`` (default: serially, here).
    Each chunk is reduced where it runs to a :class:`ChunkSummary` (exact integer accumulators,
    :mod:`bonecast.simulation.summaries`), and the summaries are merged here in chunk order, so
    the rows are bit-identical for any chunk size and number of workers, and memory here does
    not grow with the number of patients. Medians and percentiles are within 0.0005 pp of the
    exact ones (histogram bins of 2**-10 pp); means and sds are exact to about 1e-6 pp.

    ``on_rows``, when given, is called after every merged chunk with the rows so far (their
    ``n`` is the number of patients merged), e.g. to write a running result CSV.

    ``engine`` selects the integrator (:data:`bonecast.simulation.solver.Engine`); results agree
    to rounding (the compiled engine is checked against the NumPy reference to 0.01 pp).

    ``parameter_draws`` > 0 adds, per row, the 5-95 % credible interval of the typical
    patient's change over that many posterior draws of the calibrated parameters (parameter
    uncertainty, separate from the between-patient spread of the other columns); it is
    computed first, so a parameter set without a posterior fails before any chunk runs.
    ``predictive`` (with ``parameter_draws``) makes those columns the 5-95 % *predictive*
    interval of a new trial's mean change: the draws widened by the site's between-trial SD
    tau and the sampling error sd / sqrt(n) of the spec's n women (fracture and marker rows:
    no tau); a set without a between-trial SD fails here too.

    ``progress`` is called with simulated patient-days as they complete (serial runs: about
    monthly; distributed runs: per finished chunk), for a progress bar; the total is
    ``len(spec.arms) * n * spec.horizon_days``, n = 1 without variability.
    """
    params = parameter_set or default_parameter_set()
    n = spec.population.n if spec.population.variability else 1
    grid_months = sorted(
        {
            *range(math.floor(spec.outputs.horizon_months) + 1),
            *spec.outputs.months,
            *(m for pair in spec.outputs.intervals for m in pair),
        }
    )
    record_days = tuple(sorted({month_to_day(m) for m in grid_months}))
    if predictive and not parameter_draws:
        raise ValueError("a predictive interval needs posterior draws (parameter_draws > 0)")
    intervals = _Intervals(
        _parameter_draw_changes(spec, params, record_days, parameter_draws)
        if parameter_draws
        else {},
        Heterogeneity.of(params) if predictive else None,
        spec.population.n,
    )
    runner = executor or SerialExecutor()
    size = chunk_size or chunk_size_for(n, runner.parallelism)
    bounds = [(start, min(n, start + size)) for start in range(0, n, size)]
    serial = isinstance(runner, SerialExecutor)
    # a serial run reports every simulated month; a distributed one each finished chunk
    work = TrialChunk(
        spec, params, record_days, tuple(grid_months), engine, progress if serial else None
    )
    merged = NO_PATIENTS
    for chunk in runner.map(work, bounds):
        merged = merged.merge(chunk)
        if progress is not None and not serial:
            progress(len(spec.arms) * chunk.patients * spec.horizon_days)
        if on_rows is not None:
            on_rows(_summary_rows(merged, intervals))
    return TrialResult(
        spec,
        _summary_rows(merged, intervals),
        _bands(merged, grid_months),
        params.name,
        params.digest(),
    )
