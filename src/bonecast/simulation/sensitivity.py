"""Global sensitivity (Sobol indices) of a trial output to the calibrated parameters.

Every parameter marked ``calibrate: true`` varies within its prior when it has one, otherwise
over +-50 % on the log scale (value / 1.5 .. value x 1.5); positive ranges are sampled on the
log scale. The output is the typical patient's change of one quantity from baseline to one
month in one arm. The Saltelli samples (one simulated patient each) are simulated in vectorised
blocks through an :class:`~bonecast.simulation.executors.Executor`: one block here by default,
or one block per worker on a Dask cluster; every sample's output is a pure function of its
parameter values, so the indices are identical whatever the blocks.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from SALib.analyze import sobol
from SALib.sample import sobol as saltelli

from bonecast.simulation.executors import Executor, SerialExecutor
from bonecast.simulation.fracture import FRACTURE_QUANTITIES
from bonecast.simulation.model import Array
from bonecast.simulation.parameters import ParameterSet
from bonecast.simulation.population import PopulationSpec, sample_population
from bonecast.simulation.regimens import Treatment, month_to_day
from bonecast.simulation.solver import simulate
from bonecast.simulation.trials import (
    QUANTITIES,
    TrialSpec,
    _change,
    _observed,
    _scaled,
)

LOG_SPREAD = 1.5
"""Range of a parameter without a prior: value / LOG_SPREAD .. value x LOG_SPREAD."""

SOBOL_COLUMNS = ("parameter", "low", "high", "S1", "S1_conf", "ST", "ST_conf")
"""Columns of the indices CSV."""


@dataclass(frozen=True)
class SobolIndices:
    """First- and total-order indices (with 95 % bootstrap half-widths) per parameter."""

    names: list[str]
    bounds: list[tuple[float, float]]
    S1: Array
    S1_conf: Array
    ST: Array
    ST_conf: Array
    samples: int


def parse_output(text: str) -> tuple[str, float]:
    """``quantity@month`` (e.g. ``lumbar_spine@60``) as (quantity, month)."""
    quantity, sep, month = text.partition("@")
    if not sep or quantity not in QUANTITIES or quantity in FRACTURE_QUANTITIES:
        raise ValueError(f"{text!r}: expected QUANTITY@MONTH with a BMD site or marker quantity")
    try:
        value = float(month)
    except ValueError:
        raise ValueError(f"{text!r}: {month!r} is not a month") from None
    if not 0 < value <= 600:
        raise ValueError(f"{text!r}: the month must be in (0, 600]")
    return quantity, value


def calibrated_ranges(params: ParameterSet) -> dict[str, tuple[float, float]]:
    """Range of every calibrated parameter: its prior, else +-50 % on the log scale."""
    ranges = {}
    for name, entry in params.parameters.items():
        if entry.calibrate:
            ranges[name] = entry.prior or (entry.value / LOG_SPREAD, entry.value * LOG_SPREAD)
    if not ranges:
        raise ValueError(f"parameter set {params.name} has no calibrated parameters")
    return ranges


def sobol_patient_days(params: ParameterSet, samples: int, month: float) -> int:
    """Patient-days :func:`sobol_indices` simulates (the total of its ``progress``)."""
    return samples * (len(calibrated_ranges(params)) + 2) * month_to_day(month)


@dataclass(frozen=True)
class SobolBlock:
    """The simulation of one block of Saltelli samples, picklable so that an executor runs it.

    Called with a block of parameter draws: the typical patient of ``population`` once per
    draw, simulated to ``day`` under ``treatments``; returns each draw's % change of
    ``quantity`` from baseline to ``day``.
    """

    population: PopulationSpec
    params: ParameterSet
    treatments: tuple[Treatment, ...]
    quantity: str
    day: int
    seed: int
    progress: Callable[[int], None] | None = None  # per simulated day; serial runs only

    def __call__(self, draws: list[Mapping[str, float]]) -> Array:
        """The output of every draw of the block, in order."""
        typical = sample_population(self.population, self.params, self.seed)
        population = typical.with_parameter_draws(draws)
        sim = simulate(
            population,
            self.treatments,
            self.day,
            seed=self.seed,
            record_days=[0, self.day],
            progress=_scaled(self.progress, len(draws)),
        )
        visits = _observed(self.quantity, sim, population)
        return _change(self.quantity, visits[0], visits[1])


def sobol_indices(
    spec: TrialSpec,
    arm: str,
    quantity: str,
    month: float,
    params: ParameterSet,
    samples: int = 256,
    seed: int = 0,
    executor: Executor | None = None,
    progress: Callable[[int], None] | None = None,
) -> SobolIndices:
    """Sobol indices of the typical patient's % change of ``quantity`` at ``month`` in ``arm``.

    ``samples`` is the Saltelli base sample size N (a power of two); N x (D + 2) patients are
    simulated, D being the number of calibrated parameters, in one block per worker of
    ``executor`` (default: one block, here). ``progress`` gets simulated patient-days (serial:
    about monthly; distributed: per finished block), in all :func:`sobol_patient_days`.
    """
    arms = {a.name: a for a in spec.arms}
    if arm not in arms:
        raise ValueError(f"no arm {arm!r}; arms: {', '.join(arms)}")
    ranges = calibrated_ranges(params)
    names = list(ranges)
    logged = [low > 0 for low, _ in ranges.values()]
    problem = {
        "num_vars": len(names),
        "names": names,
        "bounds": [
            [math.log(low), math.log(high)] if log else [low, high]
            for (low, high), log in zip(ranges.values(), logged, strict=True)
        ],
    }
    unit = saltelli.sample(problem, samples, calc_second_order=False, seed=seed)
    values = np.where(logged, np.exp(unit), unit)
    draws: list[Mapping[str, float]] = [
        dict(zip(names, map(float, row), strict=True)) for row in values
    ]
    runner = executor or SerialExecutor()
    serial = isinstance(runner, SerialExecutor)
    size = math.ceil(len(draws) / runner.parallelism)
    blocks = [draws[start : start + size] for start in range(0, len(draws), size)]
    day = month_to_day(month)
    work = SobolBlock(
        spec.population.model_copy(update={"n": 1, "variability": False}),
        params,
        tuple(arms[arm].treatments),
        quantity,
        day,
        spec.seed,
        progress if serial else None,
    )
    outputs = []
    for block, output in zip(blocks, runner.map(work, blocks), strict=True):
        outputs.append(output)
        if progress is not None and not serial:
            progress(len(block) * day)
    result = sobol.analyze(
        problem,
        np.concatenate(outputs),
        calc_second_order=False,
        print_to_console=False,
        seed=seed + 1,  # SALib bootstraps with NumPy's global generator when the seed is 0
    )
    return SobolIndices(
        names=names,
        bounds=list(ranges.values()),
        S1=np.asarray(result["S1"]),
        S1_conf=np.asarray(result["S1_conf"]),
        ST=np.asarray(result["ST"]),
        ST_conf=np.asarray(result["ST_conf"]),
        samples=len(draws),
    )


def write_indices_csv(indices: SobolIndices, path: str | Path) -> None:
    """One row per parameter: its range and S1, ST with their confidence half-widths."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SOBOL_COLUMNS)
        for k, name in enumerate(indices.names):
            low, high = indices.bounds[k]
            stats = (indices.S1[k], indices.S1_conf[k], indices.ST[k], indices.ST_conf[k])
            writer.writerow([name, f"{low:.6g}", f"{high:.6g}", *(f"{v:.4f}" for v in stats)])


def plot_indices(indices: SobolIndices, path: str | Path, title: str) -> None:
    """Horizontal bars of S1 and ST per parameter (with confidence half-widths)."""
    k = np.arange(len(indices.names))
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(k) + 1.6))
    ax.barh(k - 0.2, indices.S1, 0.4, xerr=indices.S1_conf, label="first order (S1)")
    ax.barh(k + 0.2, indices.ST, 0.4, xerr=indices.ST_conf, label="total order (ST)")
    ax.set_yticks(k, indices.names)
    ax.invert_yaxis()
    ax.set_xlabel("Sobol index")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
