"""Conditioning the virtual twins of a forecast on every measurement of the patient (issue 15).

Each twin ``i`` (a draw of between-patient variability and of the calibrated parameters) gives,
from the start of the simulation, the *relative* course ``m_i(t)`` of everything she has
measured: BMD at each DXA site (relative to its value at the start) and osteoclast and osteoblast
activity (relative to baseline; the model's CTX and P1NP proxies, :mod:`bonecast.simulation.model`).
Her measurement ``j`` is modelled as

    log y_j = x_g(t_j) + log m_i(t_j) + e_j,    e_j ~ N(0, s_j^2),

with one unknown *offset* ``x_g`` per calibration group ``g`` (a DXA site on one scanner, a
marker on one assay) and the measurement error ``s_j`` of that measurement (DXA: the precision
error, LSC / 2.77, from the facility's precision study when there is one; markers: their LSC /
2.77; Gluer et al., Osteoporos Int 1995;5:262-70). The offset starts flat (unknown) at her first
measurement of the group and, at the DXA sites, moves as a random walk: her own drift from the
twin's course (:data:`INDIVIDUAL_DRIFT_PCT`); marker offsets are constant.

Why this choice. The offset carries what the model does not know about her absolute BMD (or her
marker concentration on that assay) and about her individual drift; the twins carry the rates
the model explains. For a given twin the offset is a linear Gaussian state, so a Kalman filter
gives its posterior from every measurement in closed form, for all twins at once (the gains do
not depend on the data): every scan narrows it, and the twin's course passes through her
measurements within measurement error. Integrating the offset out leaves a twin likelihood (the
prediction-error decomposition) that depends only on how well the twin reproduces her *changes*,
so no twin is spent on matching her absolute BMD and the importance weights stay well spread; a
scan on another maker or serial only informs the changes it shares a group with, as clinical
comparisons between scanners are not valid (ISCD). With a single measurement per group all twins
are equally likely and the forecast is her latest scan carried forward by the twins. When the
weights matter (two or more measurements in a group) the forecast draws its twins from a larger
pool, simulated over her history only, by systematic resampling (sampling importance
resampling): this keeps the effective number of twins behind the band near the forecast's size
at the cost of simulating the pool's history. Importance weights alone over a fixed set of twins
collapse with several scans; anchoring each twin on one scan ignores the others.

Bands are for a *scan*: the 5-95 % range of what a DXA on that date would read (her unknown
offset and drift, her unknown rates and the scan's own precision error), so a measurement can be
compared with the band directly and the band just after her latest scan is about the precision
error wide.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
from scipy.special import ndtr, ndtri

from bonecast.clinical.markers import marker_data
from bonecast.clinical.patient import DAYS_PER_YEAR, Lab, Scan
from bonecast.clinical.precision import Lsc, precision_data
from bonecast.clinical.scores import SiteScore
from bonecast.simulation import SITES
from bonecast.simulation.model import Array, IdArray

MARKER_STATES: dict[str, str] = {
    "ctx": "osteoclasts",
    "ntx": "osteoclasts",
    "p1np": "osteoblasts",
    "balp": "osteoblasts",
}
"""Model state each bone turnover marker follows (bonecast.simulation.model: active osteoclasts
are the resorption-marker proxy, active osteoblasts the formation-marker proxy)."""


INDIVIDUAL_DRIFT_PCT: dict[str, float] = {
    "lumbar_spine": 1.5,
    "total_hip": 1.5,
    "femoral_neck": 1.5,
}
"""SD of her own deviation from the twins' course after one year (% of BMD; a random walk, so
sqrt(years) x this after several). Derived, UNVERIFIED: the between-woman SD of the 2-year
lumbar-spine change on anastrozole is about 3-4 % (ARIBON placebo arm, Lester et al., Clin
Cancer Res 2008;14:6336-42: range -16.0 to +4.3 %; IBIS-II bone substudy year 5 to 7
confidence interval, Sestak et al., Br J Cancer 2021;124:1373-8); from its lower end (3 %),
less the measurement error of two trial scans (1.0 % each) and the spread of the calibrated
twins' own 2-year change (1.6 % for a woman of 62 on anastrozole), a random walk of 1.5 % per
sqrt(year) remains. The hips are assumed to follow the spine (no published spread found)."""


@dataclass(frozen=True)
class Observation:
    """One measurement the twins are conditioned on."""

    date: date
    quantity: str  # a DXA site of SITES, or a model state of MARKER_STATES
    name: str  # the site, or the lab test
    value: float  # g/cm2, or the marker in its canonical unit
    sd_log: float  # measurement error on the log scale (a relative SD)
    group: Hashable  # calibration group: one unknown level per group
    drift_per_day: float = 0.0  # random-walk variance of her deviation from the twin, per day


def _scanner_keys(scans: Sequence[Scan]) -> dict[date, tuple[str, str | None]]:
    """(maker, serial) of each scan; a scan without a serial takes the latest serial of its
    maker (scans are compared when either serial is missing, as in clinical.precision)."""
    latest_serial: dict[str, str] = {}
    for scan in scans:
        if scan.scanner_id:
            latest_serial[scan.scanner] = scan.scanner_id
    return {
        scan.date: (scan.scanner, scan.scanner_id or latest_serial.get(scan.scanner))
        for scan in scans
    }


def bmd_observations(
    scans: Sequence[Scan],
    scores: Sequence[Mapping[str, SiteScore]],
    lsc: Mapping[str, Lsc],
    start: date,
) -> list[Observation]:
    """Every BMD of every scan on or after ``start``; the group is (site, maker, serial,
    vertebrae used when some were excluded)."""
    factor = precision_data().lsc_factor.value
    keys = _scanner_keys(scans)
    found = []
    for scan, by_site in zip(scans, scores, strict=True):
        if scan.date < start:
            continue
        for site, score in by_site.items():
            bmd = score.bmd_g_cm2
            if site not in SITES or bmd is None:
                continue
            precision = lsc[site]
            sd_log = (
                precision.lsc_g_cm2 / factor / bmd
                if precision.lsc_g_cm2 is not None
                else precision.lsc_pct / factor / 100.0
            )
            vertebrae = tuple(score.vertebrae_used or ()) if score.vertebrae_excluded else ()
            group = (site, *keys[scan.date], vertebrae)
            drift = (INDIVIDUAL_DRIFT_PCT[site] / 100.0) ** 2 / DAYS_PER_YEAR
            found.append(Observation(scan.date, site, site, bmd, sd_log, group, drift))
    return found


def marker_observations(labs: Sequence[Lab], start: date) -> list[Observation]:
    """Every turnover-marker value on or after ``start``; the group is (marker, assay)."""
    lsc = marker_data().lsc_pct
    factor = precision_data().lsc_factor.value
    return [
        Observation(
            lab.date,
            MARKER_STATES[lab.test],
            lab.test,
            lab.canonical_value,
            lsc[lab.test].value / factor / 100.0,
            (lab.test, lab.assay),
        )
        for lab in sorted(labs, key=lambda lab: lab.date)
        if lab.test in MARKER_STATES and lab.date >= start
    ]


def informative(observations: Sequence[Observation]) -> list[Observation]:
    """The observations in groups of two or more (only those tell twins apart)."""
    counts: dict[Hashable, int] = {}
    for obs in observations:
        counts[obs.group] = counts.get(obs.group, 0) + 1
    return [obs for obs in observations if counts[obs.group] >= 2]


@dataclass(frozen=True)
class Levels:
    """Each twin's offset per group after her measurements (Kalman filter and smoother).

    Offsets are on the log scale; their variances are the same for every twin (the gains do not
    depend on the data), their means differ.
    """

    latest: dict[Hashable, tuple[date, Array, float]]  # group: (last date, mean (N,), variance)
    drift: dict[Hashable, float]  # group: random-walk variance per day
    at: dict[Observation, tuple[Array, float]]  # smoothed (mean (N,), variance) at each one
    log_likelihood: Array  # (N,) up to a constant shared by all twins

    def predict(self, group: Hashable, day: date) -> tuple[Array, float]:
        """The offset of ``group`` on ``day`` (on or after its last measurement)."""
        last, mean, variance = self.latest[group]
        return mean, variance + self.drift[group] * (day - last).days


def fit_levels(observations: Sequence[Observation], modelled: Array) -> Levels:
    """Kalman filter and smoother of every group's offset, for every twin at once.

    ``modelled[j, i]`` is twin ``i``'s relative course at observation ``j`` (positive). The
    offset starts diffuse (flat prior) at a group's first measurement and moves as a random walk
    of ``drift_per_day`` between measurements; the log-likelihood is the sum of the innovations'
    log-densities after the first (prediction-error decomposition).
    """
    residual = np.log([obs.value for obs in observations])[:, None] - np.log(modelled)
    log_likelihood = np.zeros(modelled.shape[1])
    latest: dict[Hashable, tuple[date, Array, float]] = {}
    drift: dict[Hashable, float] = {}
    at: dict[Observation, tuple[Array, float]] = {}
    for group in dict.fromkeys(obs.group for obs in observations):
        rows = sorted(
            (j for j, obs in enumerate(observations) if obs.group == group),
            key=lambda j: observations[j].date,
        )
        q = observations[rows[0]].drift_per_day
        means = [residual[rows[0]]]
        variances = [observations[rows[0]].sd_log ** 2]
        predicted = [math.inf]
        for before, j in itertools.pairwise(rows):
            obs = observations[j]
            ahead = variances[-1] + q * (obs.date - observations[before].date).days
            innovation = residual[j] - means[-1]
            total = ahead + obs.sd_log**2
            log_likelihood -= 0.5 * innovation**2 / total
            gain = ahead / total
            means.append(means[-1] + gain * innovation)
            variances.append((1.0 - gain) * ahead)
            predicted.append(ahead)
        latest[group] = (observations[rows[-1]].date, means[-1], variances[-1])
        drift[group] = q
        smooth_mean, smooth_var = means[-1], variances[-1]
        at[observations[rows[-1]]] = (smooth_mean, smooth_var)
        for k in range(len(rows) - 2, -1, -1):  # Rauch-Tung-Striebel, backwards
            c = variances[k] / predicted[k + 1]
            smooth_mean = means[k] + c * (smooth_mean - means[k])
            smooth_var = variances[k] + c * c * (smooth_var - predicted[k + 1])
            at[observations[rows[k]]] = (smooth_mean, smooth_var)
    return Levels(latest, drift, at, log_likelihood)


def normalised_weights(log_likelihood: Array) -> tuple[Array, float]:
    """Importance weights summing to 1 and their effective sample size (Kish)."""
    weights = np.exp(log_likelihood - log_likelihood.max())
    weights /= weights.sum()
    return weights, float(1.0 / np.sum(weights**2))


def systematic_resample(weights: Array, n: int, seed: int) -> IdArray:
    """``n`` indices drawn in proportion to ``weights`` (systematic resampling, sorted)."""
    u = (np.random.default_rng(seed).random() + np.arange(n)) / n
    cumulative = np.cumsum(weights)
    cumulative[-1] = 1.0
    return np.asarray(np.searchsorted(cumulative, u), dtype=np.int64)


def mixture_quantiles(
    mu: Array, sd: Array, qs: Sequence[float], weights: Array | None = None
) -> Array:
    """Quantiles ``qs`` of mixtures of log-normals, (len(qs), K).

    Mixture ``k`` has components ``exp(N(mu[k, i], sd[k]^2))`` with ``weights[i]`` (summing to
    1; equal by default). Solved on the log scale by Newton's method on the mixture CDF from the
    quantile of a normal with the mixture's mean and variance, inside a bracket that every step
    narrows (a Newton step that would leave it is a bisection step instead), from 3 SD beyond the
    extreme components (it holds the quantiles 0.0014 to 0.9986), until a step is below 1e-10
    (about 5 iterations where bisection to the same precision needed 24).
    """
    centre = np.asarray(mu, dtype=float)
    scale = np.asarray(sd, dtype=float)[:, None]
    share = np.full(centre.shape[1], 1.0 / centre.shape[1]) if weights is None else weights
    low = np.min(centre, axis=1) - 3.0 * scale[:, 0]
    high = np.max(centre, axis=1) + 3.0 * scale[:, 0]
    mean = centre @ share
    spread = np.sqrt(((centre - mean[:, None]) ** 2) @ share + scale[:, 0] ** 2)
    out = []
    for q in qs:
        lo, hi = low.copy(), high.copy()
        x = np.clip(mean + spread * ndtri(q), lo, hi)
        for _ in range(60):
            z = (x[:, None] - centre) / scale
            excess = ndtr(z) @ share - q
            density = (np.exp(-0.5 * z * z) @ share) / (math.sqrt(2.0 * math.pi) * scale[:, 0])
            lo = np.where(excess < 0, x, lo)
            hi = np.where(excess < 0, hi, x)
            with np.errstate(divide="ignore", invalid="ignore"):
                step = np.where(density > 0, excess / density, np.inf)
            proposal = x - step
            outside = ~((proposal >= lo) & (proposal <= hi))
            proposal = np.where(outside, 0.5 * (lo + hi), proposal)
            moved = np.abs(proposal - x)
            x = proposal
            if np.all(moved < 1e-10):
                break
        out.append(np.exp(x))
    return np.stack(out)


def quantile_standard_error(mu: Array, sd: Array, quantiles: Array, effective: float) -> Array:
    """Monte Carlo standard error, on the log scale, of quantiles (Q, K) of the equal-weight
    mixtures of ``mu`` and ``sd`` (:func:`mixture_quantiles`), as estimates of the quantiles of
    the mixture over every possible twin, from ``effective`` independent twins.

    The delta method for a quantile (van der Vaart, Asymptotic Statistics, 1998, section 21.2):
    the mixture CDF at the quantile is a mean over twins of Phi((x - mu_i) / sd), with variance
    Var_i / ``effective``; divided by the mixture density there, that is the quantile's error.
    On the log scale, so 100 x the result is the error in % of BMD.
    """
    centre = np.asarray(mu, dtype=float)
    scale = np.asarray(sd, dtype=float)[:, None]
    out = []
    for x in np.log(np.asarray(quantiles, dtype=float)):
        z = (x[:, None] - centre) / scale
        variance = np.var(ndtr(z), axis=1)
        density = np.mean(np.exp(-0.5 * z * z), axis=1) / (math.sqrt(2.0 * math.pi) * scale[:, 0])
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append(np.where(density > 0, np.sqrt(variance / effective) / density, np.inf))
    return np.stack(out)
