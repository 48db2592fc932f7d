"""Between-trial heterogeneity: a random effect per calibration trial and BMD site
(docs/model/calibration.md section 10.5).

The calibration trials disagree with one another by more than their stated uncertainty (e.g.
SABRE's osteopenic stratum loses about half of what ARIBON's and IBIS-II's lose on the same
drug). The field's answer is a model-based meta-analysis with a trial-level random effect; here:

    target_i = f_i(theta) + b_(trial, site) + e_i,   b ~ N(0, tau_site^2),   e_i ~ N(0, sigma_i^2)

* **Groups**: one effect per calibration trial spec (a trial, or a separately recruited stratum
  of one, such as IBIS-II's strata) and BMD site (lumbar spine, total hip, femoral neck), shared
  by all of that trial's targets at that site, every arm and time. It enters **additively on the
  percentage-point scale**, so it cancels in between-arm differences (rows with ``minus``), and
  markers and direction-only rows get none.
* **Estimation** (``bonecast calibrate``, its last stage): the between-trial SDs by the
  marginal likelihood of the targets with the random effects **integrated out**, the model's
  parameters held at their (robust) fit: a two-stage random-effects fit. Because the effects
  enter additively and the noise is normal, the integral is a Gaussian one: minimising the
  penalised sum of squares sum_i ((f_i + b_g - y_i) / sigma_i)^2 + sum_g (b_g / tau)^2 over b
  and adding sum_g log(1 + tau^2 s_g), s_g = sum_(i in g) 1 / sigma_i^2 (the Laplace term, exact
  here) gives -2 log of the marginal likelihood. So the effects ride along in the least-squares
  fit as parameters (their estimates are the empirical-Bayes, shrunken effects) and the
  log-determinant enters as one residual per group, sqrt(log(1 + tau^2 s_g)). Intervals of tau
  and of every effect come from the Laplace (Gauss-Newton) covariance of parameters, effects
  and log taus together. Why not a joint mode of parameters and taus, or a Bayesian (MCMC)
  fit: the joint mode was computed and reproduced fewer targets (fit.py docstring), and a
  posterior sample by MCMC needs thousands of evaluations that each simulate every trial (the
  staged fit needs a few hundred).
* **Prior on tau** (per site): log-normal with 95 % range 0.25-4 pp, weakly informative; it
  only keeps tau off zero where a site has few trials (femoral neck: 3).

A new trial's prediction uses the fixed effects (b = 0); its predictive interval adds tau and
the sampling error of a mean of n women (:func:`predictive_quantiles`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from bonecast.simulation.calibration.targets import MARKERS, Target
from bonecast.simulation.model import Array
from bonecast.simulation.parameters import ParameterSet

RANDOM_EFFECT_SITES = ("lumbar_spine", "total_hip", "femoral_neck")
"""BMD sites with a between-trial random effect (one tau each)."""
TAU_PRIOR_RANGE_PP = (0.25, 4.0)
"""95 % range of the log-normal prior on each site's between-trial SD (percentage points)."""
TAU_BOUNDS_PP = (0.01, 20.0)
"""Search bounds of tau (percentage points)."""
PROVENANCE_KEY = "heterogeneity"
"""Key of the random-effects summary in a calibrated set's provenance."""

Group = tuple[str, str]
"""(trial spec, BMD site) of a random effect."""


def effect_group(target: Target) -> Group | None:
    """The random effect a target carries, or ``None`` (markers, differences between arms,
    direction-only rows, sites without an effect)."""
    link = target.link
    if (
        link.minus is not None
        or target.is_sign_check
        or link.quantity in MARKERS
        or link.quantity not in RANDOM_EFFECT_SITES
    ):
        return None
    return (link.trial, link.quantity)


def tau_prior() -> tuple[float, float]:
    """Mean and SD of the normal prior on log tau (from :data:`TAU_PRIOR_RANGE_PP`)."""
    low, high = (math.log(v) for v in TAU_PRIOR_RANGE_PP)
    return (low + high) / 2.0, (high - low) / 3.92


@dataclass(frozen=True)
class EffectDesign:
    """Which target carries which effect, and the residuals of the random-effects model.

    The parameter block is ``[b_1 .. b_G, log tau_1 .. log tau_S]`` (percentage points).
    """

    groups: tuple[Group, ...]
    sites: tuple[str, ...]
    member: np.ndarray  # per target: index of its group, -1 for none
    site_of_group: np.ndarray  # per group: index of its site
    curvature: Array  # per group: s_g = sum of 1 / sigma_i^2 over its targets

    @classmethod
    def of(cls, targets: Sequence[Target], sigma: Array) -> EffectDesign:
        """The design of ``targets`` with noise scales ``sigma`` (pp)."""
        keys = [effect_group(t) for t in targets]
        groups = tuple(sorted({k for k in keys if k is not None}))
        sites = tuple(s for s in RANDOM_EFFECT_SITES if any(g[1] == s for g in groups))
        index = {g: i for i, g in enumerate(groups)}
        member = np.array([-1 if k is None else index[k] for k in keys], dtype=np.int64)
        curvature = np.zeros(len(groups))
        np.add.at(curvature, member[member >= 0], 1.0 / np.asarray(sigma)[member >= 0] ** 2)
        site_of_group = np.array([sites.index(g[1]) for g in groups], dtype=np.int64)
        return cls(groups, sites, member, site_of_group, curvature)

    @property
    def size(self) -> int:
        """Number of parameters in the block (effects and log taus)."""
        return len(self.groups) + len(self.sites)

    def start(self) -> Array:
        """Starting block: no effects, tau at its prior median."""
        return np.concatenate(
            [np.zeros(len(self.groups)), np.full(len(self.sites), tau_prior()[0])]
        )

    def bounds(self) -> tuple[Array, Array]:
        """Lower and upper bounds of the block."""
        g, s = len(self.groups), len(self.sites)
        low, high = (math.log(v) for v in TAU_BOUNDS_PP)
        return (
            np.concatenate([np.full(g, -math.inf), np.full(s, low)]),
            np.concatenate([np.full(g, math.inf), np.full(s, high)]),
        )

    def shift(self, block: Array) -> Array:
        """Per target, the effect added to its prediction (0 for targets without one)."""
        effects: Array = np.concatenate([block[: len(self.groups)], [0.0]])
        return np.asarray(effects[self.member], dtype=float)

    def residuals(self, block: Array) -> Array:
        """Effect penalties b_g / tau, the Laplace terms sqrt(log(1 + tau^2 s_g)) and the tau
        priors (module docstring)."""
        effects, log_tau = block[: len(self.groups)], block[len(self.groups) :]
        tau = np.exp(log_tau)[self.site_of_group]
        mean, sd = tau_prior()
        return np.concatenate(
            [
                effects / tau,
                np.sqrt(np.log1p(tau**2 * self.curvature)),
                (log_tau - mean) / sd,
            ]
        )

    def summary(self, block: Array, covariance: Array) -> Heterogeneity:
        """Estimates and 95 % intervals (Laplace) of every tau and effect; ``covariance`` is the
        block's covariance on the fitted scale."""
        sd = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
        g = len(self.groups)
        taus = {
            site: _interval(block[g + k], sd[g + k], log_scale=True)
            for k, site in enumerate(self.sites)
        }
        counts = np.bincount(self.member[self.member >= 0], minlength=g)
        effects = tuple(
            TrialEffect(trial, site, *_interval(block[i], sd[i], log_scale=False), int(counts[i]))
            for i, (trial, site) in enumerate(self.groups)
        )
        return Heterogeneity(taus, effects)


def _interval(x: float, sd: float, *, log_scale: bool) -> tuple[float, float, float]:
    z = float(ndtri(0.975))
    values = (x, x - z * sd, x + z * sd)
    return tuple(math.exp(v) if log_scale else v for v in values)  # type: ignore[return-value]


@dataclass(frozen=True)
class TrialEffect:
    """One trial's estimated effect at one site (pp) with its 95 % interval."""

    trial: str
    site: str
    estimate_pp: float
    low_pp: float
    high_pp: float
    targets: int


@dataclass(frozen=True)
class Heterogeneity:
    """Between-trial SD per site (estimate, 95 % interval; pp) and every trial's effect."""

    tau_pp: Mapping[str, tuple[float, float, float]]
    effects: tuple[TrialEffect, ...]

    def tau(self, site: str) -> float:
        """Between-trial SD of ``site`` (pp); 0 for a quantity without a random effect."""
        return self.tau_pp[site][0] if site in self.tau_pp else 0.0

    def as_provenance(self) -> dict[str, object]:
        """The summary as stored in a calibrated set's provenance (plain, rounded values)."""

        def r(v: float) -> float:
            return round(float(v), 4)

        return {
            "method": "trial x site random effects, additive on the pp scale, integrated out "
            "(exact for additive normal effects); tau by marginal likelihood with the model's "
            "parameters at their robust fit; intervals from the joint Laplace covariance",
            "tau_pp": {s: [r(v) for v in t] for s, t in self.tau_pp.items()},
            "trial_effects": [
                {
                    "trial": e.trial,
                    "site": e.site,
                    "estimate_pp": r(e.estimate_pp),
                    "ci95_pp": [r(e.low_pp), r(e.high_pp)],
                    "targets": e.targets,
                }
                for e in self.effects
            ],
        }

    @classmethod
    def of(cls, parameter_set: ParameterSet) -> Heterogeneity:
        """The summary stored in ``parameter_set``; a clear error for a set calibrated before
        the random effects (bonecast < 1.1 parameter sets) or never calibrated."""
        data = parameter_set.provenance.get(PROVENANCE_KEY)
        if not isinstance(data, dict):
            raise ValueError(
                f"parameter set {parameter_set.name} {parameter_set.version} has no between-trial "
                "SD (it was calibrated without trial random effects); run bonecast calibrate "
                "to make one that has, or leave out --predictive"
            )
        taus = {str(s): (float(v[0]), float(v[1]), float(v[2])) for s, v in data["tau_pp"].items()}
        effects = tuple(
            TrialEffect(
                str(e["trial"]),
                str(e["site"]),
                float(e["estimate_pp"]),
                float(e["ci95_pp"][0]),
                float(e["ci95_pp"][1]),
                int(e["targets"]),
            )
            for e in data["trial_effects"]
        )
        return cls(taus, effects)


def predictive_sd(tau_pp: float, sd_pp: float | None, n: int) -> float:
    """SD (pp) a new trial's mean change has around its fixed-effect prediction, beyond
    parameter uncertainty: between-trial SD and the sampling error of a mean of ``n`` women
    whose changes have SD ``sd_pp`` (none: a typical patient only)."""
    sampling = 0.0 if sd_pp is None or n < 1 else sd_pp / math.sqrt(n)
    return math.hypot(tau_pp, sampling)


def predictive_quantiles(centres: Array, scale: float, probabilities: Sequence[float]) -> Array:
    """Quantiles of an equal mixture of N(centre_j, scale^2) (parameter draws widened by the
    predictive SD ``scale``), found by bisection on the mixture's CDF; ``scale`` 0 gives the
    draws' own (empirical) quantiles."""
    centres = np.asarray(centres, dtype=float)
    if scale <= 0.0:
        return np.percentile(centres, [100.0 * p for p in probabilities])
    out = []
    for p in probabilities:
        low, high = centres.min() - 10.0 * scale, centres.max() + 10.0 * scale
        for _ in range(60):
            mid = 0.5 * (low + high)
            if float(np.mean(ndtr((mid - centres) / scale))) < p:
                low = mid
            else:
                high = mid
        out.append(0.5 * (low + high))
    return np.array(out)
