"""Fracture outcomes of virtual trials: cumulative incidence from the simulated BMD trajectory.

A proportional-hazards model with three fracture types k (hip, clinical vertebral, other clinical;
coefficients and sources in ``data/fracture_model.yaml``). Hip and vertebral fractures:

    h_k(t) = s * I_k * 2^((age(t) - 65) / D_k) * GR_k^(-(z_k(0) + w min(z_k(t) - z_k(0), 0)))
             * exp(b_k * max(dTH(t) - dTHbar(t), 0)) * max(OC(t), 1)^gamma * C

other fractures:

    h_k(t) = s * I_k * 2^((age(t) - 65) / D_k) * GR_k^(-(z_k(0) + w (z_k(t) - z_k(0))))
             * max(OC(t), 1)^gamma * min(OC(t), 1)^gamma_s * C

with I_k the incidence of the average 65-year-old woman, D_k the age-doubling time, GR_k the
cross-sectional gradient of risk per SD of BMD at the type's DXA site (Marshall 1996), z_k(t) =
T_k(t) - Tbar(age(t)) the patient's simulated T-score at that site relative to the average woman
of her age, s the ratio of the clinical-fracture incidence recorded in adjuvant and prevention
trials to these population incidences, OC(t) the simulated osteoclast activity relative to the
patient's untreated baseline, gamma the turnover exponent and w the weight of a change of
standing since baseline relative to the cross-sectional gradient (w = 1: a woman who lost 1 SD
carries the risk of a woman who always stood 1 SD lower) and C the trial's covariate factor
(below).

Turnover term (fracture model v2, one-sided since v3). Part of the fracture excess on an
aromatase inhibitor is not carried by BMD: in ATAC the anastrozole/tamoxifen fracture ratio fell
from 1.33 during treatment to 0.99 after it (Tseng 2018), while the hip BMD lost on anastrozole
is not regained. High remodeling weakens bone beyond its density (more resorption cavities,
stress risers), and the term follows resorption in the model: OC rises about 40 % on an
aromatase inhibitor and returns to baseline within months of stopping, so the excess reverses.
For hip and vertebral fractures resorption suppressed below baseline (tamoxifen,
antiresorptives) adds nothing: their benefit acts through the BMD gain term below, whose
treatment-related gradient (Bouxsein 2019) was fitted to trials of such agents and so already
carries it; a two-sided term on every type counted it twice (fitted to trials without ABCSG-18
it predicted 2.6 % instead of 5.0 % for denosumab there). Other fractures: next paragraph.
The split between what BMD and what turnover carry is w (w < 1: a loss on treatment carries
less risk than the same difference between women).
Suppressed resorption (fracture model v4). Other (nonvertebral, non-hip) fractures have no
treatment-related BMD gradient, yet antiresorptives lower them: Bouxsein et al. 2019 found
nonvertebral fracture reductions in the trials unrelated to the size of the BMD improvement,
and the reductions in resorption on treatment explain a share of the fracture benefit that BMD
does not (Eastell et al., J Bone Miner Res 2003;18:1051, risedronate; Bauer et al., J Bone
Miner Res 2004;19:1250, alendronate in FIT; UNVERIFIED details). Their benefit appears within
months (HORIZON-RFT: HR 0.65 over 2 years after one or two infusions), before much BMD is
gained. So for these fractures resorption below the patient's baseline lowers the hazard by
OC^gamma_s, the same form as the AI's excess above baseline with an exponent of its own. The
leave-one-trial-out check chose this form over a saturating one, exp(gamma_s (OC - 1)), by one
target (10 against 9 of 17); both under-predict ABCSG-18's denosumab arm when that trial is
left out (2.8 and 3.5 % against 5.0 %), the power form more, as it extrapolates denosumab's
deeper suppression from tamoxifen's and zoledronic acid's; by the check's log score the
shipped fit leaves the term out (gamma_s = 0) until more antiresorptive trials support it.
Hip and vertebral fractures keep their benefit in the BMD gain term alone (counting both would
count it twice).
s, gamma, gamma_s, w, the ascertainment ratio r (below) and the between-trial SD tau are the
model's fitted fracture parameters, calibrated to published fracture results of AI and
antiresorptive trials (``data/fracture_targets.csv``,
:mod:`bonecast.simulation.calibration.fracture_fit`, which also checks the model on each trial
left out of the fit). Which terms the shipped fit uses is chosen by that check
(``SHIPPED_STRUCTURE`` there); the others are held at no effect (gamma = gamma_s = 0, r = 1),
so each term is kept only where it predicts trials left out of the fit better.

For hip and vertebral fractures a BMD *gain* over the average woman's course acts through the
treatment-related gradient of Bouxsein et al. 2019 (J Bone Miner Res 34:632, meta-regression of
38 placebo-controlled trials of 19 agents): log RR is linear in the difference in total-hip BMD
change between the arms, b_k per percentage point, the line through the paper's predicted points
(2 % and 6 % more total-hip BMD: vertebral RR 0.72 and 0.34, hip RR 0.84 and 0.60). dTH(t) is
her % change of total-hip BMD since baseline and dTHbar(t) that of the average woman over the
same time (the placebo arm's change in those trials). The regression was fitted to BMD
improvements on treatment, so a *loss* beyond the average woman's (an aromatase inhibitor's)
keeps the cross-sectional gradient, weighted by w: her standing z_k falls and GR_k^w applies.
The cross-sectional gradient alone understates the benefit of a treatment-related gain (in
version 1, without the gain term, adjuvant zoledronic acid lowered 5-year clinical fractures by
20 % against 36 % in the trials; with it by 25 %; applying Bouxsein's gradient to losses too
gave ATAC ratios of 1.73 during and 1.55 after treatment against 1.49 and about 1.0). The
regression's intercept (about +0.05 for vertebral, -0.01 for hip fractures: the effect at no
BMD difference) is left out; an agent acts through BMD and the turnover term only.
Other (nonvertebral, non-hip) fractures follow the simulated standing through the
cross-sectional gradient only: Bouxsein et al. found no association between BMD improvement and
nonvertebral fracture reduction.

Trial-level covariates (fracture model v3; the ``fracture`` block of a trial spec,
:class:`FractureSetting`). Absolute incidences differ between trials (-33 to +27 % around one
scale in v2); what a spec can state and what generalises multiplies every hazard:

    s * r^[prespecified] * (1 + p (RR_pf - 1)) / (1 + p_ref (RR_pf - 1))

with r the ratio of the incidence recorded when clinical fractures are a pre-specified endpoint,
asked for at every visit (ABCSG-18, MAP.3), to that recorded as adverse events (ATAC, BIG 1-98,
MA.17), fitted; p the share of women with a fracture before entry and RR_pf the relative risk
of any fracture after a prior one (Kanis et al., Bone 2004;35:375), relative to p_ref, the
share among the women the population incidences describe (a spec without p gets p_ref, a
factor of 1). Age and baseline T-scores already come from the spec's population. Between-trial
differences left after these are a trial random effect on the log incidence with SD tau
(:mod:`bonecast.simulation.calibration.fracture_fit`): a prediction for a new trial uses the
fixed part; its predictive interval adds tau and the binomial error of the trial's n.

Clinical fracture is the first fracture of any type (hazards add). Cumulative incidence over
[a, b]: 1 - exp(-integral of h), averaged over the virtual patients.

Limitations, said wherever the numbers are shown: applying a trial-level regression of arm means
to each patient's change is an assumption, and so is the split between gains and losses. The
turnover terms are one exponent each for every drug (their size is set by the trials they were
fitted to, not measured), the trials fix the size of an AI's excess better than its split
between BMD and turnover (gamma and w trade off along a ridge of the likelihood), and BMD lost
on an AI keeps w of its risk after the AI stops; the model has no falls, prior fractures or
other risk factors, and trials differ in how they record fractures (s is a compromise between
them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Annotated, Literal

import numpy as np
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bonecast.simulation.model import DAYS_PER_MONTH, Array
from bonecast.simulation.parameters import SITES

FRACTURE_QUANTITIES = ("clinical_fracture", "hip_fracture", "vertebral_fracture")
"""Fracture quantities a trial can report (cumulative incidence, %)."""


def _known_site(site: str) -> str:
    if site not in SITES:
        raise ValueError(f"unknown BMD site {site!r}; expected one of {SITES}")
    return site


Site = Annotated[str, AfterValidator(_known_site)]
"""A DXA site of :data:`SITES`."""


class ChangePoint(BaseModel):
    """A predicted relative risk at a given improvement of BMD over the comparator arm (%)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bmd_gain_pct: float
    relative_risk: float = Field(gt=0)


class ChangeGradient(BaseModel):
    """Treatment-related gradient of BMD change: log RR linear in the % BMD change at ``site``.

    The line through two predicted points of a meta-regression; only its slope is used (see the
    module docstring for why the intercept is left out).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: Site
    points: tuple[ChangePoint, ChangePoint]
    source: str

    @model_validator(mode="after")
    def _distinct_points(self) -> ChangeGradient:
        if self.points[0].bmd_gain_pct == self.points[1].bmd_gain_pct:
            raise ValueError("the two points need different BMD gains")
        return self

    @property
    def slope_per_pct(self) -> float:
        """b: change of log RR per percentage point of BMD gain, ln(RR2 / RR1) / (g2 - g1)."""
        p, q = self.points
        return math.log(q.relative_risk / p.relative_risk) / (q.bmd_gain_pct - p.bmd_gain_pct)

    @property
    def intercept(self) -> float:
        """a: log RR at no BMD difference, ln(RR1) - b * g1 (reported; not used by the model)."""
        p = self.points[0]
        return math.log(p.relative_risk) - self.slope_per_pct * p.bmd_gain_pct


class FractureType(BaseModel):
    """Coefficients of one fracture type, each with its source.

    With ``bmd_change``, a BMD gain over the average woman's course acts through ``bmd_change``
    and a loss through the cross-sectional gradient; without it, the cross-sectional gradient
    acts on the simulated T-score (module docstring).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    bmd_site: Site
    incidence_per_year: float = Field(gt=0)
    incidence_source: str
    age_doubling_years: float = Field(gt=0)
    age_source: str
    gradient_per_sd: float = Field(ge=1)
    gradient_source: str
    bmd_change: ChangeGradient | None = None


class PopulationTScore(BaseModel):
    """Average T-score of women by age: at the reference age and its slope per year."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at_reference_age: float
    per_year: float
    source: str

    def at_age(self, age_years: Array, reference_age_years: float) -> Array:
        """Average T-score of women aged ``age_years``."""
        return self.at_reference_age + self.per_year * (age_years - reference_age_years)


class PopulationBmdChange(BaseModel):
    """BMD change of the average woman (% per year) at the site of the change gradients."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pct_per_year: float
    source: str


Ascertainment = Literal["adverse_events", "prespecified"]
"""How a trial records clinical fractures: reported as adverse events, or asked for at every
visit as a pre-specified endpoint."""


class FractureSetting(BaseModel):
    """The trial-level fracture covariates of a trial spec (its ``fracture`` block)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ascertainment: Ascertainment = Field(
        default="adverse_events",
        description="how the trial records clinical fractures: 'adverse_events' (reported as "
        "adverse events, as in ATAC, BIG 1-98, MA.17) or 'prespecified' (a pre-specified "
        "endpoint asked for at every visit, as in ABCSG-18 and MAP.3)",
    )
    prior_fracture_pct: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="% of women with a fracture before entry (default: the share among the "
        "women the population incidences describe, i.e. no adjustment)",
    )


class PriorFracture(BaseModel):
    """Relative risk of any fracture after a prior fracture, and the share of women with one
    among those the population incidences describe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    relative_risk: float = Field(ge=1)
    reference_pct: float = Field(ge=0, le=100)
    source: str

    def factor(self, prior_fracture_pct: float | None) -> float:
        """Hazard multiplier of a trial with ``prior_fracture_pct`` % women with a prior
        fracture (1 when not given)."""
        if prior_fracture_pct is None:
            return 1.0
        excess = self.relative_risk - 1.0
        return (1.0 + prior_fracture_pct / 100.0 * excess) / (
            1.0 + self.reference_pct / 100.0 * excess
        )


class FittedValue(BaseModel):
    """A fitted fracture parameter: its value and how it was obtained."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float
    source: str


class FractureModel(BaseModel):
    """The fracture hazard model (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reference_age_years: float
    population_t_score: PopulationTScore
    population_bmd_change: PopulationBmdChange
    prior_fracture: PriorFracture
    incidence_scale: FittedValue
    turnover_exponent: FittedValue
    suppression_exponent: FittedValue = FittedValue(
        value=0.0, source="no term (a fit file of fracture model v3)"
    )
    loss_weight: FittedValue
    ascertainment_ratio: FittedValue
    trial_sd: FittedValue
    types: dict[str, FractureType]

    @model_validator(mode="after")
    def _positive_scale(self) -> FractureModel:
        for name in ("incidence_scale", "ascertainment_ratio"):
            value = getattr(self, name).value
            if value <= 0:
                raise ValueError(f"{name}: {value} must be > 0")
        if self.trial_sd.value < 0:
            raise ValueError(f"trial_sd: {self.trial_sd.value} must be >= 0")
        for name in ("turnover_exponent", "suppression_exponent"):
            value = getattr(self, name).value
            if not 0 <= value <= 3:
                raise ValueError(f"{name}: {value} is outside 0..3")
        if not 0 <= self.loss_weight.value <= 1:
            raise ValueError(f"loss_weight: {self.loss_weight.value} is outside 0..1")
        return self

    def with_fit(self, source: str, **values: float) -> FractureModel:
        """The same model with fitted parameters replaced (``incidence_scale=...``,
        ``turnover_exponent=...``, ``suppression_exponent=...``, ``loss_weight=...``,
        ``ascertainment_ratio=...``, ``trial_sd=...``; ``source`` says how they were obtained)."""
        unknown = sorted(set(values) - set(FITTED_PARAMETERS))
        if unknown:
            raise ValueError(f"not fitted parameters of the fracture model: {unknown}")
        update = {name: FittedValue(value=v, source=source) for name, v in values.items()}
        return FractureModel.model_validate({**self.model_dump(), **update})

    def trial_factor(self, setting: FractureSetting) -> float:
        """Multiplier of every hazard for a trial's fracture covariates: the incidence scale,
        the ascertainment ratio when fractures are a pre-specified endpoint, and the prior
        fracture prevalence against the reference (module docstring)."""
        factor = self.incidence_scale.value * self.prior_fracture.factor(setting.prior_fracture_pct)
        if setting.ascertainment == "prespecified":
            factor *= self.ascertainment_ratio.value
        return factor

    def log_hazard_terms(
        self,
        age0_years: Array,
        years: Array,
        baseline_t_scores: Array,
        t_scores: Array,
        bmd_pct_change: Array,
    ) -> dict[str, LogHazardTerms]:
        """The parts of each type's log hazard that do not depend on the fitted parameters;
        arrays broadcast over (time, patient).

        ``age0_years`` is the age at baseline, ``years`` the time since baseline,
        ``baseline_t_scores`` (3, N) the T-scores at baseline, ``t_scores`` and
        ``bmd_pct_change`` (% change of BMD since baseline) have the site axis first, in
        :data:`SITES` order.
        """
        pop, ref = self.population_t_score, self.reference_age_years
        age = age0_years + years
        average_t = pop.at_age(age, ref)
        average_t0 = pop.at_age(age0_years, ref)
        average_change_pct = self.population_bmd_change.pct_per_year * years
        out = {}
        for name, k in self.types.items():
            site = SITES.index(k.bmd_site)
            log_gradient = math.log(k.gradient_per_sd)
            baseline_standing = baseline_t_scores[site] - average_t0
            changed_standing = t_scores[site] - average_t - baseline_standing
            fixed = (
                math.log(k.incidence_per_year)
                + math.log(2.0) * (age - ref) / k.age_doubling_years
                - log_gradient * baseline_standing
            )
            if k.bmd_change is None:
                loss = -log_gradient * changed_standing
            else:
                gain = bmd_pct_change[SITES.index(k.bmd_change.site)] - average_change_pct
                fixed = fixed + k.bmd_change.slope_per_pct * np.maximum(gain, 0.0)
                loss = -log_gradient * np.minimum(changed_standing, 0.0)
            out[name] = LogHazardTerms(np.asarray(fixed), np.asarray(loss), k.bmd_change is None)
        return out

    def hazard(
        self, terms: LogHazardTerms, log_osteoclasts: Array, setting: FractureSetting | None = None
    ) -> Array:
        """Hazard per year of one type: trial factor x exp(fixed + w loss + turnover term), with
        ``log_osteoclasts`` the log osteoclast activity relative to the patient's baseline
        (:meth:`turnover_term`)."""
        return self.trial_factor(setting or FractureSetting()) * np.exp(
            terms.fixed
            + self.loss_weight.value * terms.loss
            + self.turnover_term(log_osteoclasts, terms.suppressible)
        )

    def turnover_term(self, log_osteoclasts: Array, suppressible: bool) -> Array:
        """ln of the turnover factor: gamma ln max(OC, 1), plus gamma_s ln min(OC, 1) for a type
        whose BMD gains carry no treatment-related gradient (``suppressible``; module
        docstring, fracture model v4)."""
        excess = self.turnover_exponent.value * np.maximum(log_osteoclasts, 0.0)
        if not suppressible:
            return np.asarray(excess)
        suppressed = self.suppression_exponent.value * np.minimum(log_osteoclasts, 0.0)
        return np.asarray(excess + suppressed)

    def hazards_per_year(
        self,
        age0_years: Array,
        years: Array,
        baseline_t_scores: Array,
        t_scores: Array,
        bmd_pct_change: Array,
        osteoclasts: Array,
        setting: FractureSetting | None = None,
    ) -> dict[str, Array]:
        """Hazard of each type (per year) in a trial with fracture covariates ``setting``
        (default: none stated); arrays as in :meth:`log_hazard_terms`, ``osteoclasts`` the
        osteoclast activity relative to the patient's untreated baseline."""
        terms = self.log_hazard_terms(
            age0_years, years, baseline_t_scores, t_scores, bmd_pct_change
        )
        log_oc = np.log(osteoclasts)
        return {name: self.hazard(term, log_oc, setting) for name, term in terms.items()}


@dataclass(frozen=True)
class LogHazardTerms:
    """ln hazard of one type = ln trial factor + fixed + w * loss + turnover term (module
    docstring): ``fixed`` holds the age, baseline-standing and BMD-gain terms, ``loss`` the
    change of standing through the cross-sectional gradient, -ln GR_k x (fall of standing);
    ``suppressible``: resorption below baseline lowers this type's hazard (a type without a
    treatment-related BMD gradient)."""

    fixed: Array
    loss: Array
    suppressible: bool


FITTED_PARAMETERS = (
    "incidence_scale",
    "turnover_exponent",
    "suppression_exponent",
    "loss_weight",
    "ascertainment_ratio",
    "trial_sd",
)
"""The fracture model's fitted parameters, written by the fit to ``data/fracture_fit.yaml``."""


def _data_text(name: str) -> str:
    return (
        resources.files("bonecast.simulation")
        .joinpath("data")
        .joinpath(name)
        .read_text(encoding="utf-8")
    )


@cache
def default_fracture_model() -> FractureModel:
    """The fracture model shipped with bonecast: the coefficients of ``data/fracture_model.yaml``
    and the fitted parameters of ``data/fracture_fit.yaml`` (written by
    ``python -m bonecast.simulation.calibration.fracture_fit``)."""
    coefficients = yaml.safe_load(_data_text("fracture_model.yaml"))
    fitted = yaml.safe_load(_data_text("fracture_fit.yaml"))["parameters"]
    return FractureModel.model_validate({**coefficients, **fitted})


@dataclass(frozen=True)
class FractureIncidence:
    """Cumulative hazard per fracture quantity at each grid month, (n_months, N)."""

    months: Array
    cumulative_hazard: dict[str, Array]

    def incidence_pct(self, quantity: str, month_from: float, month_to: float) -> Array:
        """Per-patient cumulative incidence (%) between two grid months."""
        index = {float(m): i for i, m in enumerate(self.months)}
        h = self.cumulative_hazard[quantity]
        return np.asarray(100.0 * (1.0 - np.exp(-(h[index[month_to]] - h[index[month_from]]))))


@dataclass(frozen=True)
class HazardInputs:
    """A simulated arm prepared for the hazards on a month grid (midpoint rule): interval
    (m[i-1], m[i]] uses the mean T-score, BMD change and osteoclast activity of its ends and the
    time at its middle. The fitted parameters enter only in :meth:`integrate`, so a fit
    prepares each arm once."""

    months: Array
    step_years: Array  # (n_months - 1, 1)
    log_osteoclasts: Array  # (n_months - 1, N)
    terms: dict[str, LogHazardTerms]

    @classmethod
    def of(
        cls,
        model: FractureModel,
        months: Array,
        age0_years: Array,
        t_scores: Array,
        bmd_ratio: Array,
        osteoclasts: Array,
    ) -> HazardInputs:
        """Arrays as in :func:`fracture_incidence`."""
        if months[0] != 0:
            raise ValueError(f"the month grid starts at baseline, month 0, not {months[0]}")
        middle = 0.5 * (months[1:] + months[:-1])
        years = (middle * DAYS_PER_MONTH / 365.25)[:, None]
        t_middle = 0.5 * (t_scores[:, 1:] + t_scores[:, :-1])
        change_middle = 100.0 * (0.5 * (bmd_ratio[:, 1:] + bmd_ratio[:, :-1]) - 1.0)
        oc_middle = 0.5 * (osteoclasts[1:] + osteoclasts[:-1])
        terms = model.log_hazard_terms(
            age0_years[None, :], years, t_scores[:, 0], t_middle, change_middle
        )
        step_years = (np.diff(months) * DAYS_PER_MONTH / 365.25)[:, None]
        return cls(months, step_years, np.log(oc_middle), terms)

    def cumulative_hazard(
        self, model: FractureModel, quantity: str, setting: FractureSetting | None = None
    ) -> Array:
        """Cumulative hazard (n_months, N) of one fracture quantity (clinical: all types)."""
        names = list(self.terms) if quantity == "clinical_fracture" else [quantity]
        hazard = sum(model.hazard(self.terms[k], self.log_osteoclasts, setting) for k in names)
        start = np.zeros((1, self.log_osteoclasts.shape[1]))
        return np.vstack([start, np.cumsum(hazard * self.step_years, axis=0)])

    def integrate(
        self, model: FractureModel, setting: FractureSetting | None = None
    ) -> FractureIncidence:
        """Cumulative hazards of every fracture quantity."""
        cumulative = {q: self.cumulative_hazard(model, q, setting) for q in FRACTURE_QUANTITIES}
        return FractureIncidence(self.months, cumulative)


def fracture_incidence(
    model: FractureModel,
    months: Array,
    age0_years: Array,
    t_scores: Array,
    bmd_ratio: Array,
    osteoclasts: Array,
    setting: FractureSetting | None = None,
) -> FractureIncidence:
    """Integrate the hazards over a month grid (midpoint rule, :class:`HazardInputs`) for a
    trial with fracture covariates ``setting`` (default: none stated).

    ``months`` (n_months,) starts at baseline, month 0; ``age0_years`` (N,) is the age then;
    ``t_scores`` (3, n_months, N) the T-scores and ``bmd_ratio`` (3, n_months, N) the BMD
    relative to baseline at the grid months, sites in :data:`SITES` order; ``osteoclasts``
    (n_months, N) the osteoclast activity relative to the untreated baseline.
    """
    inputs = HazardInputs.of(model, months, age0_years, t_scores, bmd_ratio, osteoclasts)
    return inputs.integrate(model, setting)
