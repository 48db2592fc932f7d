"""``bonecast calibrate``: a staged MAP fit of AIBL-2C to the published targets
(docs/model/calibration.md section 10).

Method (choices documented here and in the closing note of issue 3):

* **Parameters** fitted (docs/model/parameters.md section 7.6): those marked ``calibrate`` in the
  parameter file (the alendronate EC50 since FLEX gave it a target, stage E). Positive
  parameters are fitted on the log scale, shares on the logit scale.
* **Priors**: a parameter with a prior range in the file gets a normal prior on the transformed
  scale whose 95 % interval is that range; the others get a normal prior centred on the starting
  value with SD 1.5 on the log or logit scale (the starting values come from a throw-away
  feasibility fit, docs/model/index.md section 0, so they deserve little weight). MAP = least
  squares of target residuals (model - target) / sigma plus prior residuals.
* **Stages** as in docs/model/calibration.md section 10.2: A natural progression, B estrogen
  deprivation and tamoxifen, C bisphosphonates, D denosumab, E long-term antiresorptive response
  (modeling-based formation, on the FREEDOM extension and FLEX), F bisphosphonates after stopping
  (each drug's surface residence half-life, on the after-stopping targets), G denosumab after
  stopping (the osteomorph reservoir, docs/model/equations.md section 6.3.1, on McClung 2017
  and the DEFEND off-treatment extension, Bone 2011, with the FREEDOM rows so that the reservoir
  does not undo the suppression under treatment), then a joint refit of everything. The
  discontinuation rows are kept out of stage D: they would bend the on-treatment denosumab
  parameters before the reservoir is fitted.
  ABCSG-12's endocrine-only rows are an external check and never fitted.
* **Loss**: robust (Cauchy, scale one sigma): the trials disagree with one another by more than
  their stated uncertainty (docs/model/calibration.md sections 12.1, 10.1); a robust loss lets the
  fit follow the consistent majority instead of splitting the difference.
* **Trial random effects** (docs/model/calibration.md section 10.5; :mod:`.heterogeneity`): a last
  stage gives every calibration trial a random effect per BMD site, additive on the percentage-point
  scale, and fits the between-trial SD tau per site by the normal marginal likelihood of the targets
  with the effects integrated out, the parameters held at their fit (a two-stage random-effects
  fit). The parameters are the fixed effects that predict a new trial. A joint mode of
  parameters and taus was tried (issue 14, session of 2026-12-07): with plain least squares it
  reproduced 31 of 38 high-weight targets, with the robust loss on the target rows 32 of 38,
  against 34 of 38 for the robust fit, and its taus were smaller (0.4-0.7 pp), the robust
  loss and the floors of the noise scales already absorbing the disagreement; so the parameters
  keep the robust fit and tau is estimated from what it leaves. The Laplace covariance below
  is nonetheless joint, so the parameters' uncertainty includes the trial effects'.
* **Statistic**: inside the optimiser each target is simulated for the typical patient of its
  trial (all trials and parameter perturbations in one vectorised run). The full mode then adds,
  per target, the offset between the population statistic the target reports (mean or median of
  the trial's virtual population) and the typical patient, and refits; twice.
* **Uncertainty**: a Laplace approximation at the MAP (Gauss-Newton Hessian of the objective on
  the transformed scale, random effects and log taus included); a sample of parameter sets
  drawn from its marginal for the parameters is shipped with the set, and tau per site and
  every trial's effect with 95 % intervals go into the set's provenance (``heterogeneity``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import least_squares

from bonecast.simulation.calibration.heterogeneity import (
    PROVENANCE_KEY,
    EffectDesign,
    Heterogeneity,
)
from bonecast.simulation.calibration.predictions import (
    TypicalBatch,
    load_trial_specs,
    population_predictions,
    run_trials,
)
from bonecast.simulation.calibration.targets import Target, TargetSet, load_targets
from bonecast.simulation.drugs import BISPHOSPHONATES
from bonecast.simulation.model import Array
from bonecast.simulation.parameters import ParameterSet

EXTERNAL_CHECKS = ("B16", "B18_NOZA_M36", "B18_NOZA_M60")
"""ABCSG-12 endocrine-only rows: an external check of the estrogen response, never fitted."""
ROBUST_LOSS = "cauchy"
"""Robust loss (scipy least_squares): residuals beyond one sigma count only logarithmically, so a
few trials that disagree with the rest (e.g. SABRE's small AI-alone loss vs ATAC) do not drag
every other fit off its target."""
ROBUST_SCALE = 1.0
RANDOM_EFFECTS_STAGE = "trial random effects (parameters at their fit)"
"""Name of the last stage: between-trial SDs and trial effects (module docstring)."""
"""Residual (in sigmas) beyond which the robust loss starts to discount a target."""
NATURAL = ("N2", "N3", "N4")
"""Natural-course targets (id prefixes): SWAN and the Michigan cohort."""
AI_SETTING_BISPHOSPHONATE = ("GR", "ZF", "ZO", "EZ", "NC")
"""Bisphosphonates on an aromatase inhibitor added in issue 14 (id prefixes): Greenspan's
risedronate, Z-FAST, ZO-FAST, E-ZO-FAST and N03CC zoledronic acid."""
AFTER_STOPPING_BISPHOSPHONATE = ("F1", "HZ", "ZS", "VM")
"""Targets of BMD after a bisphosphonate stopped (id prefixes): FLEX (alendronate), the HORIZON
extensions and a single zoledronic acid dose followed for five years (zoledronic acid), VERT-MN
(risedronate)."""
DEFAULT_PRIOR_SD = {"log": 1.5, "logit": 1.5}
LOGIT_PARAMETERS = ("epsilon_T", "osteomorph_share")
"""Shares (0-1) fitted on the logit scale besides the trabecular shares ``f_*``."""
"""Prior SD on the transformed scale when the parameter file gives no prior range."""
STAGES: dict[str, tuple[tuple[str, ...], Callable[[Target], bool]]] = {
    "A natural progression": (
        (
            "delta0_t",
            "delta0_c",
            "nu_t",
            "nu_c",
            "ec50_e2_pg_ml",
            "f_femoral_neck",
            "age_deficit_per_year",
        ),
        lambda t: t.target_id in ("I2", "I4", "I10", "I12") or t.target_id.startswith(NATURAL),
    ),
    "B estrogen deprivation and tamoxifen": (
        (
            "alpha_L",
            "gamma_T",
            "deltaE_c",
            "f_lumbar_spine",
            "f_total_hip",
            "f_femoral_neck",
            "epsilon_T",
            "k_p_per_day",
            "k_b_per_day",
        ),
        lambda t: (
            (t.target_id.startswith(("A", "L", "MA17", "IE")) and not t.target_id.startswith("A18"))
            or t.target_id
            in (
                "I1",
                "I3",
                "I9",
                "I11",
                "B2_LS",
                "B2_TH",
                "B4_uNTX",
                "B4_CTX",
                "B4_BSAP",
                "B5_LS",
                "B5_TH",
                "B7_PBO_LS",
                "B7_PBO_TH",
                "B10_LS",
                "B10_TH",
                "B12_LS",
                "B12_TH",
            )
        ),
    ),
    "C bisphosphonates": (
        (
            "bp.zoledronic_acid.ec50_mg",
            "bp.risedronate.ec50_mg",
            "bp.ibandronate.ec50_mg",
            "emax_bp",
        ),
        lambda t: t.target_id.startswith(
            (
                "I5",
                "I6",
                "I7",
                "I8",
                "B1_",
                "B3",
                "B6",
                "B7_IBN",
                "B8",
                "B9",
                "B11",
                "B17",
                "B18_ZA",
                *AI_SETTING_BISPHOSPHONATE,
            )
        ),
    ),
    "D denosumab": (
        ("theta_D_per_nM", "s_L"),
        lambda t: t.target_id.startswith(("D4", "D5", "HB", "A18")),
    ),
    "E long-term antiresorptive response": (
        ("modeling_t", "modeling_c", "bp.alendronate.ec50_mg"),
        lambda t: t.target_id.startswith(("D4", "D6", "F1")),
    ),
    "F bisphosphonates after stopping": (
        tuple(f"bp.{drug}.t_s_days" for drug in BISPHOSPHONATES),
        lambda t: t.target_id.startswith(AFTER_STOPPING_BISPHOSPHONATE),
    ),
    "G denosumab after stopping": (
        ("osteomorph_share", "osteomorph_refusion_per_day", "osteomorph_refusion_hill"),
        lambda t: t.target_id.startswith(("DS", "BD", "D4", "D5")),
    ),
}


@dataclass(frozen=True)
class FreeParameter:
    """A fitted parameter: its transform and normal prior on the transformed scale."""

    name: str
    transform: str  # "log" or "logit"
    prior_mean: float
    prior_sd: float
    lower: float
    upper: float

    def forward(self, value: float) -> float:
        """Natural -> transformed scale."""
        return math.log(value) if self.transform == "log" else math.log(value / (1.0 - value))

    def backward(self, x: float) -> float:
        """Transformed -> natural scale."""
        return math.exp(x) if self.transform == "log" else 1.0 / (1.0 + math.exp(-x))


def free_parameters(parameter_set: ParameterSet) -> list[FreeParameter]:
    """The parameters this calibration fits, with priors (see the module docstring)."""
    out = []
    for name, entry in parameter_set.parameters.items():
        if not entry.calibrate:
            continue
        transform = "logit" if name.startswith("f_") or name in LOGIT_PARAMETERS else "log"
        probe = FreeParameter(name, transform, 0.0, 1.0, -math.inf, math.inf)
        if entry.prior is not None:
            lo, hi = (probe.forward(v) for v in entry.prior)
            mean, sd = (lo + hi) / 2.0, (hi - lo) / 3.92
        else:
            mean, sd = probe.forward(entry.value), DEFAULT_PRIOR_SD[transform]
        out.append(FreeParameter(name, transform, mean, sd, mean - 5 * sd, mean + 5 * sd))
    return out


@dataclass
class StageResult:
    """Outcome of one stage of the fit."""

    name: str
    parameters: list[str]
    targets: list[str]
    objective_start: float
    objective_end: float
    evaluations: int


@dataclass
class CalibrationResult:
    """The MAP parameter set, its posterior sample and the fit's record."""

    parameter_set: ParameterSet
    posterior: list[dict[str, float]]
    stages: list[StageResult]
    objective: float
    offsets: dict[str, float]
    heterogeneity: Heterogeneity


class _Problem:
    """Residuals of a set of targets for the free parameters (transformed scale) and, with a
    random-effects ``design``, the trial effects and log between-trial SDs after them."""

    def __init__(
        self,
        batch: TypicalBatch,
        free: Sequence[FreeParameter],
        fixed: Mapping[str, float],
        offsets: Mapping[str, float],
        on_evaluation: Callable[[], None] | None,
        design: EffectDesign | None = None,
    ) -> None:
        self.batch, self.free, self.fixed = batch, list(free), dict(fixed)
        self.on_evaluation = on_evaluation
        targets = batch.targets
        self.value = np.array(
            [t.row.value_pct if t.row.value_pct is not None else 0 for t in targets]
        )
        self.sigma = np.array([t.sigma_pp for t in targets])
        self.sign = np.array([t.link.sign or 0 for t in targets], dtype=float)
        self.is_sign = np.array([t.is_sign_check for t in targets])
        self.offset = np.array([offsets.get(t.target_id, 0.0) for t in targets])
        self.prior_mean = np.array([p.prior_mean for p in self.free])
        self.prior_sd = np.array([p.prior_sd for p in self.free])
        self.design = design
        self.evaluations = 0
        self._fixed_predictions = None if self.free else batch.predict([self.fixed])[0]

    def _predict(self, points: Sequence[Array]) -> Array:
        """Predictions at transformed vectors ``points`` (one simulation when nothing
        simulated is free: the random-effects stage)."""
        if self._fixed_predictions is not None:
            return np.tile(self._fixed_predictions, (len(points), 1))
        return self.batch.predict([self.values(x) for x in points])

    def values(self, x: Array) -> dict[str, float]:
        """Parameter values (natural scale) for transformed vector ``x``."""
        return {
            **self.fixed,
            **{p.name: p.backward(float(v)) for p, v in zip(self.free, x, strict=False)},
        }

    def _residuals(self, predictions: Array, x: Array) -> Array:
        theta, block = x[: len(self.free)], x[len(self.free) :]
        model = predictions + self.offset
        if self.design is not None:
            model = model + self.design.shift(block)
        fit = np.where(
            self.is_sign,
            np.maximum(0.0, -self.sign * model) / self.sigma,
            (model - self.value) / self.sigma,
        )
        parts = [fit, (theta - self.prior_mean) / self.prior_sd]
        if self.design is not None:
            parts.append(self.design.residuals(block))
        return np.concatenate(parts)

    def residuals(self, x: Array) -> Array:
        """Target, prior and (with a design) random-effect residuals at ``x``."""
        self.evaluations += 1
        if self.on_evaluation is not None:
            self.on_evaluation()
        return self._residuals(self._predict([x])[0], x)

    def jacobian(self, x: Array, step: float = 1e-4) -> Array:
        """Forward-difference Jacobian: the fixed parameters' perturbations in one vectorised
        run; the random-effect block moves no simulation, so its columns reuse the base run."""
        p = len(self.free)
        points = [x + step * np.eye(len(x))[i] for i in range(len(x))]
        predictions = self._predict([x, *points[:p]])
        base = self._residuals(predictions[0], x)
        columns = [
            (self._residuals(predictions[i + 1] if i < p else predictions[0], points[i]) - base)
            / step
            for i in range(len(x))
        ]
        if self.on_evaluation is not None:
            self.on_evaluation()
        return np.stack(columns, axis=1)

    def start(self, theta: Array) -> Array:
        """Starting vector: ``theta`` and, with a design, its starting block."""
        return theta if self.design is None else np.concatenate([theta, self.design.start()])

    def bounds(self) -> tuple[Array, Array]:
        """Lower and upper bounds of the whole vector."""
        lower = np.array([p.lower for p in self.free])
        upper = np.array([p.upper for p in self.free])
        if self.design is None:
            return lower, upper
        low, high = self.design.bounds()
        return np.concatenate([lower, low]), np.concatenate([upper, high])


def _fit(problem: _Problem, x0: Array, max_evaluations: int) -> tuple[Array, float, float]:
    start = 0.5 * float(np.sum(problem.residuals(x0) ** 2))
    lower, upper = problem.bounds()
    solution = least_squares(
        problem.residuals,
        np.clip(x0, lower + 1e-9, upper - 1e-9),
        jac=problem.jacobian,
        bounds=(lower, upper),
        method="trf",
        loss=ROBUST_LOSS if problem.design is None else "linear",
        f_scale=ROBUST_SCALE,
        x_scale=1.0,
        xtol=1e-6,
        ftol=1e-7,
        max_nfev=max_evaluations,
    )
    return solution.x, start, float(solution.cost)


def calibrate(
    start: ParameterSet,
    targets: TargetSet,
    trials_folder: str | Path,
    *,
    quick: bool = False,
    posterior_draws: int = 200,
    seed: int = 20251122,
    on_evaluation: Callable[[], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> CalibrationResult:
    """Run the staged fit from ``start`` (see the module docstring).

    ``quick`` caps each stage at a few evaluations and skips the population-offset refits (for
    tests); the full mode is what ships as bonecast's default parameter set.
    """
    fitted = [t for t in targets.targets if t.target_id not in EXTERNAL_CHECKS]
    specs = load_trial_specs(trials_folder, sorted({t.link.trial for t in fitted}))
    free = {p.name: p for p in free_parameters(start)}
    current = {name: start.parameters[name].value for name in free}
    max_evaluations = 4 if quick else 60
    stages: list[StageResult] = []
    offsets: dict[str, float] = {}

    def run_stage(name: str, names: Sequence[str], chosen: Sequence[Target]) -> float:
        if on_stage is not None:
            on_stage(name)
        batch = TypicalBatch(chosen, specs, start)
        params = [free[n] for n in names]
        problem = _Problem(batch, params, current, offsets, on_evaluation)
        x0 = np.array([p.forward(current[p.name]) for p in params])
        x, before, after = _fit(problem, x0, max_evaluations)
        current.update(problem.values(x))
        stages.append(
            StageResult(
                name, list(names), [t.target_id for t in chosen], before, after, problem.evaluations
            )
        )
        return after

    for name, (names, selects) in STAGES.items():
        run_stage(name, [n for n in names if n in free], [t for t in fitted if selects(t)])
    objective = run_stage("joint", list(free), fitted)
    rounds = 0 if quick else 2
    for k in range(rounds):
        trial_set = start.with_values(**current)
        population = population_predictions(fitted, run_trials(specs, trial_set))
        typical = TypicalBatch(fitted, specs, start).predict([current])[0]
        offsets = {t.target_id: population[t.target_id] - typical[i] for i, t in enumerate(fitted)}
        objective = run_stage(f"joint with population offsets ({k + 1})", list(free), fitted)
    if on_stage is not None:
        on_stage(RANDOM_EFFECTS_STAGE)
    batch = TypicalBatch(fitted, specs, start)
    design = EffectDesign.of(fitted, np.array([t.sigma_pp for t in fitted]))
    effects = _Problem(batch, [], current, offsets, on_evaluation, design)
    block, before, after = _fit(effects, design.start(), 200)
    stages.append(
        StageResult(
            RANDOM_EFFECTS_STAGE,
            [f"tau {site}" for site in design.sites],
            [t.target_id for t in fitted],
            before,
            after,
            effects.evaluations,
        )
    )
    params = list(free.values())
    problem = _Problem(batch, params, current, offsets, None, design)
    x_map = np.concatenate([[p.forward(current[p.name]) for p in params], block])
    posterior, covariance = _laplace_sample(problem, x_map, posterior_draws, seed)
    heterogeneity = design.summary(block, covariance[len(params) :, len(params) :])
    result_set = _calibrated_set(
        start, current, targets.sha256, objective, stages, quick, posterior_draws, heterogeneity
    )
    return CalibrationResult(result_set, posterior, stages, objective, offsets, heterogeneity)


def _laplace_sample(
    problem: _Problem, x_map: Array, draws: int, seed: int
) -> tuple[list[dict[str, float]], Array]:
    """Draws of the fixed parameters from the Laplace approximation at the mode (Gauss-Newton
    Hessian; random effects and between-trial SDs marginalised out) and the covariance of the
    whole vector."""
    jac = problem.jacobian(x_map)
    hessian = jac.T @ jac
    covariance = np.linalg.pinv(hessian)
    covariance = 0.5 * (covariance + covariance.T)
    p = len(problem.free)
    rng = np.random.default_rng(seed)
    sample = rng.multivariate_normal(x_map[:p], covariance[:p, :p], size=draws, method="eigh")
    draws_out = [
        {p.name: p.backward(float(v)) for p, v in zip(problem.free, row, strict=True)}
        for row in sample
    ]
    return draws_out, covariance


def _calibrated_set(
    start: ParameterSet,
    values: Mapping[str, float],
    targets_sha256: str,
    objective: float,
    stages: Sequence[StageResult],
    quick: bool,
    draws: int,
    heterogeneity: Heterogeneity,
) -> ParameterSet:
    parameters = {}
    for name, entry in start.parameters.items():
        if name in values:
            note = f"cal: bonecast calibrate (MAP; start {entry.value:g}, {entry.source})"
            parameters[name] = entry.model_copy(
                update={"value": float(values[name]), "source": note}
            )
        else:
            parameters[name] = entry
    provenance: dict[str, object] = {
        "calibrated": True,
        "method": "staged MAP (docs/model/calibration.md section 10.2) with trial random effects "
        "(docs/model/calibration.md section 10.5), Laplace posterior",
        "mode": "quick" if quick else "full",
        "date": dt.date.today().isoformat(),
        "targets_sha256": targets_sha256,
        "start_parameter_set": f"{start.name} {start.version} ({start.digest()})",
        "objective": round(objective, 6),
        "posterior_draws": draws,
        "stages": [
            {
                "name": s.name,
                "parameters": s.parameters,
                "targets": len(s.targets),
                "objective_start": round(s.objective_start, 6),
                "objective_end": round(s.objective_end, 6),
                "evaluations": s.evaluations,
            }
            for s in stages
        ],
        PROVENANCE_KEY: heterogeneity.as_provenance(),
    }
    return start.model_copy(
        update={
            "name": "aibl2c-calibrated",
            "version": "1.1.0",
            "description": "AIBL-2C calibrated to the published trials by bonecast calibrate "
            "(staged MAP with priors, docs/model/calibration.md section 10.2); see provenance.",
            "provenance": provenance,
            "parameters": parameters,
        }
    )


def write_calibration(result: CalibrationResult, path: str | Path) -> Path:
    """Write the parameter set (YAML) and its posterior sample (CSV beside it).

    Returns the path of the posterior sample.
    """
    path = Path(path)
    posterior_path = path.with_name(path.stem + "_posterior.csv")
    data = result.parameter_set.model_dump(mode="json")
    data["provenance"]["posterior_file"] = posterior_path.name
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    buffer = io.StringIO()
    names = list(result.posterior[0]) if result.posterior else []
    writer = csv.DictWriter(buffer, fieldnames=names)
    writer.writeheader()
    for draw in result.posterior:
        writer.writerow({k: f"{v:.8g}" for k, v in draw.items()})
    posterior_path.write_text(buffer.getvalue(), encoding="utf-8")
    return posterior_path


__all__ = ["CalibrationResult", "calibrate", "free_parameters", "load_targets", "write_calibration"]
