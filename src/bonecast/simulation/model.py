"""AIBL-2C model, NumPy reference path: state, constants, rates and the integrator
(docs/model/equations.md section 6).

The equations themselves are written once, in :mod:`bonecast.simulation.equations`; this module
calls them with arrays of patients and integrates the states.

Every differential equation is written as ``dx/dt = P - k*x`` (production ``P``, loss rate ``k``),
or, for the two coupled linear blocks (young/old bone per compartment; surface/buried drug per
bisphosphonate), as a linear system with frozen coefficients. :func:`rates` computes all of them
once; the fast integrator (:func:`exponential_euler_step`) and the reference right-hand side
(:func:`derivatives`, used with :func:`scipy.integrate.solve_ivp`) both call it, so the two paths
can never disagree about the model.

Units: time in days, drug amounts in mg, volumes in L, concentrations in mg/L (= ug/mL),
estradiol in pg/mL. Cell states are relative to the patient's own untreated baseline (= 1).
Arrays hold one value per patient along their last axis.

Choices made where docs/model/index.md leaves them open (see also the closing note of issue 2):

* Dose events are applied at the start of the day they fall on; exposure flags (aromatase
  inhibitor, goserelin, tamoxifen) are constant over each day.
* Within a step, the young/old bone pair and each bisphosphonate's surface/buried pair are solved
  exactly for frozen coupling coefficients (exact matrix exponential), which keeps drug mass
  exactly balanced; every other state uses exponential Euler.
* The estradiol of a perimenopausal patient follows the logistic fall of
  docs/model/equations.md section 5 around her final menstrual period; both her pre- and
  postmenopausal levels carry her own between-patient factor.
* The optional direct estrogen effects of section 6.3 (epsilon_OC, beta_E) are neutral and
  therefore not implemented.
* **Age** (an addition to docs/model/equations.md section 6.4, made during calibration): the
  age-related focal deficit grows with the patient's age, delta0_j(t) = delta0_j m_life exp(beta_age
  (age(t) - a_ref)), age(t) = age at t = 0 + t / 365.25. Untreated hip loss speeds up with age
  (Ensrud 1995 J Bone Miner Res 10:1778, SOF: 0.3 %/y at 67-69 to 1.5 %/y at >= 85), and women in
  their forties lose little before the menopause transition (SWAN, Greendale 2012); a deficit fixed
  at its postmenopausal value made SWAN's 10-year femoral-neck loss 2.3 pp too large and ATAC's
  5-year losses too small. The deficit is capped at 1 (formation cannot be negative), which only
  the oldest patients under estrogen deprivation can reach.
* **Men** (an addition to docs/model/index.md, issue 14): a man's estradiol is made by aromatisation
  of his testosterone, so both are algebraic functions of the exposures (no new state). With
  k = 1 - m_AI s_AI the aromatase activity left by an inhibitor, x = T_exo / T_0 the exogenous
  testosterone relative to his own baseline, u = (1 - OFS) / (1 + x) his endogenous production
  left by GnRH-agonist suppression and by the feedback of exogenous testosterone, and g the
  gain of estradiol's negative feedback on LH (hypothalamic-pituitary-gonadal axis):
  T / T_0 = u (1 + g (1 - e)) + x and e = E2 / E2_0 = k T / T_0, i.e.
  e = k (u (1 + g) + x) / (1 + k u g). An inhibitor therefore lowers his estradiol only partly
  while his testosterone rises (:func:`male_hormone_ratios`; parameters in
  :mod:`bonecast.simulation.male`). His bone reads estradiol through the same receptor activity
  as a woman's, with his own EC50 and Hill exponent.
* **Bone volume** (an addition to docs/model/equations.md section 6.4, made during calibration): the
  mechanostat term rho_j c V^(nu_j - 1) reads V against the skeleton of a woman at T = -1 rather
  than against the patient's own baseline, so each patient's turnover is rho_j (BMD0 / BMD at T =
  -1)^(nu_j
  - 1), trabecular from her lumbar-spine and cortical from her total-hip baseline. The tabulated
  rho_t, rho_c are those of a woman at T = -1; the cells (and so the markers) are unchanged.
* **Modeling-based formation** (docs/model/equations.md section 6.4, issue 14): when resorption is
  suppressed below its baseline, osteoblasts also lay bone on quiescent surfaces without prior
  resorption (Ominsky et al., J Bone Miner Res 2015;30:1280: modeling-based formation kept
  femoral-neck BMD rising in monkeys on denosumab while remodeling was near absent), so
  F_j = rho_j (b (1 - delta_j) + mu_j max(1 - c, 0)). It is zero at baseline and whenever
  resorption is raised (estrogen deprivation, after denosumab stops). Under denosumab (c near
  0.1-0.2) it keeps BMD rising for years, slowed only by the mechanostat; under a
  bisphosphonate (c near 0.5) the mechanostat, which then acts on twice the resorption, levels it
  off sooner: the continued gains of the FREEDOM extension (Bone et al., Lancet Diabetes
  Endocrinol 2017;5:513) against the plateau of alendronate in FLEX (Black et al., JAMA
  2006;296:2927). mu_j is calibrated (parameters ``modeling_t``, ``modeling_c``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bonecast.simulation import equations as eq
from bonecast.simulation.parameters import SITES

Array = NDArray[np.float64]
IdArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
DAYS_PER_YEAR = 365.25
"""Days in a year (docs/model/index.md section 0)."""
DAYS_PER_MONTH = DAYS_PER_YEAR / 12.0
"""Days in a month, used to turn trial months into model days."""


def _as_patients(value: Any, n: int) -> Array:
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()


@dataclass(frozen=True)
class ModelConstants:
    """Per-patient constants in model units, derived once from per-patient parameter values.

    Shapes: ``(N,)`` per patient, ``(2, N)`` for (trabecular, cortical), ``(3, N)`` per site
    (:data:`SITES` order), ``(n_bp, N)`` per simulated bisphosphonate (``bp_drugs`` order).
    """

    n: int
    e2_pre_pg_ml: Array
    e2_post_pg_ml: Array
    fmp_day: Array  # final menstrual period: -inf postmenopausal, +inf premenopausal throughout
    menopause_width_days: Array
    ec50_e2_pg_ml: Array
    n_e: Array
    epsilon_T: Array
    tau_T: Array
    k_T: Array
    alpha_L: Array
    alpha_O: Array
    theta_O: Array
    theta_K: Array
    kappa_L: Array
    theta_D_per_nM: Array
    nM_per_mg_l: Array
    k_p: Array
    k_c: Array
    s_L: Array
    phi_W: Array  # share of the RANKL-blockade removal of osteoclasts that is fission
    k_W: Array  # osteomorph re-fusion at baseline RANK signalling, per day
    k_Wd: Array  # osteomorph death, per day
    n_W: Array  # Hill exponent of osteomorph re-fusion in RANK signalling
    k_q: Array
    k_b: Array
    gamma_T: Array
    emax_bp: Array
    n_bp: Array
    rho: Array  # (2, N) per day
    delta0: Array  # (2, N) at t = 0: x m_life x exp(beta_age (age - reference age))
    age_deficit_per_day: Array  # beta_age / 365.25: the deficit grows as exp(this * t_day)
    deltaE: Array  # (2, N)
    nu: Array  # (2, N) mechanostat exponent per compartment
    modeling: Array  # (2, N) modeling-based formation at full resorption suppression
    m_p: Array
    kappa: Array  # per day
    f_site: Array  # (3, N)
    bp_drugs: tuple[str, ...]
    bp_f_oral: Array  # (n_bp, N)
    bp_f_bone: Array
    bp_ec50_mg: Array
    bp_k_surface: Array  # ln2 / t_s, per day
    bp_burial_share: Array
    bp_k_release: Array  # per day
    den_ka: Array
    den_f_sc: Array
    den_vc_l: Array
    den_vp_l: Array
    den_q_l_per_day: Array
    den_cl_l_per_day: Array
    den_vmax_mg_per_day: Array
    den_km_mg_l: Array
    s_e0: Array  # untreated baseline estrogen-receptor activity at t = 0
    male: Array  # 1 for a man, 0 for a woman
    testosterone0_ng_dl: Array  # a man's untreated serum testosterone T_0 (1 for a woman)
    hpg_gain: Array  # g: estradiol feedback gain on a man's testosterone production
    male_ai_effect: Array  # m_AI: share of an inhibitor's suppression seen in a man's E2
    testosterone_ng_dl_per_mg_day: Array  # serum T per absorbed mg/day (1e5 / clearance in L/d)
    has_men: bool = False
    e2_base_fixed: Array | None = None  # E2_base when no menopause falls in the simulation
    step_cache: dict[tuple[str, float], tuple[Array, Array]] = dataclasses.field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @classmethod
    def from_values(
        cls,
        values: dict[str, Any],
        n: int,
        fmp_day: Any,
        bp_drugs: tuple[str, ...],
        age_years: Any,
        relative_volume: Any = 1.0,
    ) -> ModelConstants:
        """Build constants for ``n`` patients from name -> value (scalar or ``(n,)``) mappings.

        ``fmp_day`` is the day of the final menstrual period relative to t = 0 (``-inf`` for a
        postmenopausal patient, ``+inf`` for one who stays premenopausal); ``age_years`` the
        patients' ages at t = 0 (they scale the age-related focal deficit,
        docs/model/equations.md section 6.4); ``relative_volume`` (2, N) each compartment's baseline
        bone volume relative to a woman at T = -1 (trabecular: spine, cortical: hip), which scales
        turnover by its power nu_j - 1 (module docstring). A man carries ``male`` = 1 and his
        ``male.*`` values (:mod:`bonecast.simulation.male`); without them every patient is a woman.
        """
        v = {name: _as_patients(value, n) for name, value in values.items()}

        def per_bp(key: str) -> Array:
            return (
                np.stack([v[f"bp.{d}.{key}"] for d in bp_drugs]) if bp_drugs else np.zeros((0, n))
            )

        def bp_shared(value: Array) -> Array:
            return np.broadcast_to(value, (len(bp_drugs), n)).copy()

        age_factor = np.exp(
            v["age_deficit_per_year"] * (_as_patients(age_years, n) - v["age_deficit_ref_years"])
        )
        constants = dict(
            n=n,
            e2_pre_pg_ml=v["e2_pre_pg_ml"],
            e2_post_pg_ml=v["e2_post_pg_ml"],
            fmp_day=_as_patients(fmp_day, n),
            menopause_width_days=v["menopause_width_years"] * DAYS_PER_YEAR,
            ec50_e2_pg_ml=v["ec50_e2_pg_ml"],
            n_e=v["n_e"],
            epsilon_T=v["epsilon_T"],
            tau_T=v["tau_T"],
            k_T=v["k_T_per_day"],
            alpha_L=v["alpha_L"],
            alpha_O=v["alpha_O"],
            theta_O=v["theta_O"],
            theta_K=v["theta_K"],
            kappa_L=v["kappa_L"],
            theta_D_per_nM=v["theta_D_per_nM"],
            # mg/L -> nM: 1 mg/L = 1e-3 g/L / (MW_kDa * 1e3 g/mol) = 1e6 / (MW_kDa * 1e3) nM
            nM_per_mg_l=1e6 / (v["denosumab_mw_kda"] * 1e3),
            k_p=v["k_p_per_day"],
            k_c=v["k_c_per_day"],
            s_L=v["s_L"],
            phi_W=v["osteomorph_share"],
            k_W=v["osteomorph_refusion_per_day"],
            k_Wd=v["osteomorph_death_per_day"],
            n_W=v["osteomorph_refusion_hill"],
            k_q=v["k_q_per_day"],
            k_b=v["k_b_per_day"],
            gamma_T=v["gamma_T"],
            emax_bp=v["emax_bp"],
            n_bp=v["n_bp"],
            rho=np.stack([v["rho_t_per_year"], v["rho_c_per_year"]])
            / DAYS_PER_YEAR
            * np.broadcast_to(relative_volume, (2, n)) ** (np.stack([v["nu_t"], v["nu_c"]]) - 1.0),
            delta0=np.stack([v["delta0_t"], v["delta0_c"]]) * v["m_life"] * age_factor,
            age_deficit_per_day=v["age_deficit_per_year"] / DAYS_PER_YEAR,
            deltaE=np.stack([v["deltaE_t"], v["deltaE_c"]]),
            nu=np.stack([v["nu_t"], v["nu_c"]]),
            modeling=np.stack([v["modeling_t"], v["modeling_c"]]),
            m_p=v["m_p"],
            kappa=v["kappa_per_year"] / DAYS_PER_YEAR,
            f_site=np.stack([v[f"f_{site}"] for site in SITES]),
            bp_drugs=bp_drugs,
            bp_f_oral=per_bp("f_oral"),
            bp_f_bone=per_bp("f_bone"),
            bp_ec50_mg=per_bp("ec50_mg"),
            bp_k_surface=np.log(2.0) / per_bp("t_s_days"),
            bp_burial_share=bp_shared(v["bp_burial_share"]),
            bp_k_release=bp_shared(v["bp_release_per_year"] / DAYS_PER_YEAR),
            den_ka=v["den.ka_per_day"],
            den_f_sc=v["den.f_sc"],
            den_vc_l=v["den.vc_l"],
            den_vp_l=v["den.vp_l"],
            den_q_l_per_day=v["den.q_l_per_day"],
            den_cl_l_per_day=v["den.cl_l_per_day"],
            den_vmax_mg_per_day=v["den.vmax_mg_per_day"],
            den_km_mg_l=v["den.km_mg_l"],
            s_e0=np.zeros(n),
            male=v.get("male", np.zeros(n)),
            testosterone0_ng_dl=v.get("male.testosterone_ng_dl", np.ones(n)),
            hpg_gain=v.get("male.hpg_gain", np.zeros(n)),
            male_ai_effect=v.get("male.ai_effect", np.ones(n)),
            testosterone_ng_dl_per_mg_day=1e5
            / v.get("male.testosterone_clearance_l_per_day", np.full(n, 1e5)),
            has_men=bool(np.any(v.get("male", np.zeros(n)) > 0)),
        )
        partial = cls(**constants)
        e2_0 = e2_base_pg_ml(partial, 0.0)
        s_e0 = estrogen_activity(partial, e2_0, np.zeros(n))
        fixed = e2_0 if np.all(np.isinf(partial.fmp_day)) else None
        return cls(**{**constants, "s_e0": s_e0, "e2_base_fixed": fixed})

    def constant_rate_step(self, name: str, rate: Array, dt: float) -> tuple[Array, Array]:
        """``(exp(-k dt), phi(k, dt))`` of a state whose loss rate ``k`` never changes (cached)."""
        key = (name, dt)
        if key not in self.step_cache:
            self.step_cache[key] = (np.exp(-rate * dt), _phi(rate, dt))
        return self.step_cache[key]


@dataclass
class ModelState:
    """The state of N patients (docs/model/equations.md section 4). Shapes as in
    :class:`ModelConstants`."""

    p: Array  # osteoclast precursors (relative)
    c: Array  # active osteoclasts (relative; CTX proxy)
    osteomorphs: Array  # osteomorphs, relative to baseline osteoclasts (0 untreated)
    q: Array  # pre-osteoblasts (relative)
    b: Array  # active osteoblasts (relative; P1NP/BSAP proxy)
    young: Array  # (2, N) partly mineralised bone volume, fraction of baseline compartment volume
    old: Array  # (2, N) fully mineralised bone volume
    tamoxifen: Array  # tamoxifen exposure, 0-1 of steady state
    bp_surface_mg: Array  # (n_bp, N) bisphosphonate on the resorbable surface
    bp_buried_mg: Array  # (n_bp, N) bisphosphonate buried under new bone
    den_depot_mg: Array  # denosumab SC depot
    den_central_mg: Array
    den_peripheral_mg: Array

    @classmethod
    def baseline(cls, const: ModelConstants) -> ModelState:
        """The untreated steady state: cells at 1, young bone at rho/(kappa + rho), no drug."""
        n, n_bp = const.n, len(const.bp_drugs)
        young = const.rho / (const.kappa + const.rho)
        return cls(
            p=np.ones(n),
            c=np.ones(n),
            osteomorphs=np.zeros(n),
            q=np.ones(n),
            b=np.ones(n),
            young=young,
            old=1.0 - young,
            tamoxifen=np.zeros(n),
            bp_surface_mg=np.zeros((n_bp, n)),
            bp_buried_mg=np.zeros((n_bp, n)),
            den_depot_mg=np.zeros(n),
            den_central_mg=np.zeros(n),
            den_peripheral_mg=np.zeros(n),
        )

    def copy(self) -> ModelState:
        """A deep copy."""
        return ModelState(**{f.name: getattr(self, f.name).copy() for f in fields(self)})

    def to_vector(self) -> Array:
        """Flatten one patient's state (N = 1) for :func:`scipy.integrate.solve_ivp`."""
        return np.concatenate([np.ravel(getattr(self, f.name)) for f in fields(self)])

    @classmethod
    def from_vector(cls, y: Array, n_bp: int) -> ModelState:
        """Inverse of :meth:`to_vector` for one patient."""
        sizes = {"young": 2, "old": 2, "bp_surface_mg": n_bp, "bp_buried_mg": n_bp}
        parts: dict[str, Array] = {}
        i = 0
        for f in fields(cls):
            size = sizes.get(f.name, 1)
            chunk = np.asarray(y[i : i + size], dtype=np.float64)
            parts[f.name] = chunk.reshape(size, 1) if f.name in sizes else chunk
            i += size
        return cls(**parts)


@dataclass(frozen=True)
class ModelInputs:
    """Drug exposures over one step, per patient (each 0-1, or an aggregated suppression).

    ``ai_suppression`` is the fraction of estradiol removed (s_AI of the inhibitor taken, times
    its exposure); ``ovarian_suppression`` and ``tamoxifen`` are exposures (in a man, the GnRH
    agonist suppresses his testicular testosterone); ``testosterone_mg_per_day`` the absorbed
    dose rate of testosterone replacement.
    """

    ai_suppression: Array
    ovarian_suppression: Array
    tamoxifen: Array
    testosterone_mg_per_day: Array | None = None  # absorbed exogenous testosterone (men), mg/d

    def exogenous_testosterone(self) -> Array:
        """Absorbed exogenous testosterone, mg/day (zeros when none is given)."""
        if self.testosterone_mg_per_day is None:
            return np.zeros_like(self.ai_suppression)
        return self.testosterone_mg_per_day


def e2_base_pg_ml(const: ModelConstants, t_day: float) -> Array:
    """Untreated serum estradiol at time ``t_day`` (docs/model/equations.md section 5, natural
    menopause)."""
    if const.e2_base_fixed is not None:
        return const.e2_base_fixed
    with np.errstate(over="ignore"):
        base: Array = eq.untreated_estradiol(
            t_day,
            const.e2_pre_pg_ml,
            const.e2_post_pg_ml,
            const.fmp_day,
            const.menopause_width_days,
        )
    return base


def estrogen_activity(const: ModelConstants, e2_pg_ml: Array, tamoxifen: Array) -> Array:
    """Estrogen-receptor activity S_E with tamoxifen as a partial agonist
    (docs/model/equations.md section 6.1)."""
    e = eq.estradiol_activity(e2_pg_ml, const.ec50_e2_pg_ml, const.n_e)
    s_e: Array = eq.estrogen_receptor_activity(e, tamoxifen, const.tau_T, const.epsilon_T)
    return s_e


def male_hormone_ratios(const: ModelConstants, inputs: ModelInputs) -> tuple[Array, Array]:
    """A man's estradiol and testosterone relative to his untreated values, ``(E2/E2_0, T/T_0)``.

    Closed-form steady state of aromatisation and HPG feedback (module docstring, "Men"):
    e = k (u (1 + g) + x) / (1 + k u g), T/T_0 = u (1 + g (1 - e)) + x. Meaningless for a woman.
    """
    k = eq.aromatase_activity(inputs.ai_suppression, const.male_ai_effect)
    x = eq.exogenous_testosterone_ratio(
        inputs.exogenous_testosterone(),
        const.testosterone_ng_dl_per_mg_day,
        const.testosterone0_ng_dl,
    )
    u = eq.endogenous_testosterone_share(inputs.ovarian_suppression, x)
    e = eq.male_estradiol_ratio(k, u, x, const.hpg_gain)
    return e, eq.male_testosterone_ratio(e, u, x, const.hpg_gain)


def serum_estradiol_pg_ml(const: ModelConstants, inputs: ModelInputs, t_day: float) -> Array:
    """Serum estradiol under ovarian suppression and aromatase inhibition
    (docs/model/equations.md section 6.1).

    A man's is his untreated level times :func:`male_hormone_ratios`.
    """
    base = e2_base_pg_ml(const, t_day)
    female: Array = eq.female_estradiol(
        base, const.e2_post_pg_ml, inputs.ovarian_suppression, inputs.ai_suppression
    )
    if not const.has_men:
        return female
    e, _ = male_hormone_ratios(const, inputs)
    return np.where(const.male > 0, eq.male_estradiol(base, e), female)


def serum_testosterone_ng_dl(const: ModelConstants, inputs: ModelInputs) -> Array:
    """A man's serum testosterone (ng/dL); NaN for a woman (not modelled)."""
    _, r = male_hormone_ratios(const, inputs)
    return np.where(const.male > 0, const.testosterone0_ng_dl * r, np.nan)


def denosumab_mg_l(const: ModelConstants, state: ModelState) -> Array:
    """Serum denosumab concentration (mg/L = ug/mL)."""
    conc: Array = eq.denosumab_concentration(state.den_central_mg, const.den_vc_l)
    return conc


def mineral(const: ModelConstants, state: ModelState) -> Array:
    """Mineral per compartment, (2, N), in units of fully mineralised baseline volume."""
    m: Array = eq.mineral(const.m_p, state.young, state.old)
    return m


def bmd_ratio(const: ModelConstants, state: ModelState, mineral0: Array) -> Array:
    """Site BMD relative to baseline, (3, N) in :data:`SITES` order
    (docs/model/equations.md section 6.5)."""
    rel = mineral(const, state) / mineral0
    ratio: Array = eq.bmd_ratio(const.f_site, rel[0], rel[1])
    return ratio


@dataclass(frozen=True)
class Rates:
    """Production terms and loss rates (per day) of every equation at one instant."""

    prod: dict[str, Array]  # cell and tamoxifen states: P in dx/dt = P - k*x
    loss: dict[str, Array]  # cell and tamoxifen states: k
    bone_formation: Array  # (2, N) F_j, into the young pool
    bone_resorption_rate: Array  # (2, N) R_j / V_j, fractional loss of each pool
    bp_surface_loss: Array  # (n_bp, N) a: total loss rate of surface drug
    bp_release_to_surface: Array  # (n_bp, N) d: buried -> surface rate
    bp_burial: Array  # (n_bp, N) e: surface -> buried rate
    bp_release: Array  # (n_bp, N) g: total loss rate of buried drug
    osteoclast_fission: Array  # (N,) c -> osteomorphs rate, 1/day
    osteomorph_refusion: Array  # (N,) osteomorphs -> c rate, 1/day


DENOSUMAB_STATES = ("den_depot_mg", "den_central_mg", "den_peripheral_mg")
CONSTANT_RATE_STATES = ("p", "q", "b", "tamoxifen")
"""States whose loss rate is a constant of the patient (their step factors are cached)."""
SCALAR_STATES = ("p", "c", "osteomorphs", "q", "b", "tamoxifen", *DENOSUMAB_STATES)


def denosumab_rates(
    const: ModelConstants, state: ModelState
) -> tuple[dict[str, Array], dict[str, Array]]:
    """Productions and loss rates of the denosumab PK states (docs/model/equations.md section 6.7).

    SC depot -> central, central <-> peripheral, linear and Michaelis-Menten elimination.
    """
    to_central = eq.compartment_transfer(const.den_q_l_per_day, const.den_vp_l)
    to_peripheral = eq.compartment_transfer(const.den_q_l_per_day, const.den_vc_l)
    prod = {
        "den_depot_mg": np.zeros_like(const.den_ka),
        "den_central_mg": eq.depot_absorption(const.den_ka, state.den_depot_mg)
        + to_central * state.den_peripheral_mg,
        "den_peripheral_mg": to_peripheral * state.den_central_mg,
    }
    loss = {
        "den_depot_mg": const.den_ka,
        "den_central_mg": _central_loss(const, state.den_central_mg),
        "den_peripheral_mg": to_central,
    }
    return prod, loss


def _central_loss(const: ModelConstants, central_mg: Array) -> Array:
    """Loss rate of central denosumab (1/day) at the amount ``central_mg``."""
    loss: Array = eq.denosumab_central_loss(
        eq.denosumab_concentration(central_mg, const.den_vc_l),
        const.den_vc_l,
        const.den_q_l_per_day,
        const.den_cl_l_per_day,
        const.den_vmax_mg_per_day,
        const.den_km_mg_l,
    )
    return loss


def free_rankl_relative(const: ModelConstants, state: ModelState, s_e: Array) -> Array:
    """Free RANKL relative to the untreated baseline (docs/model/equations.md section 6.2,
    quasi-steady state)."""
    rankl0 = eq.rankl_production(const.s_e0, const.alpha_L, 1.0)
    opg0 = eq.opg_production(const.s_e0, 1.0, const.alpha_O, 1.0)
    free: Array = eq.free_rankl(
        eq.rankl_production(s_e, const.alpha_L, 1.0 / rankl0),
        eq.opg_production(s_e, state.b, const.alpha_O, 1.0 / opg0),
        denosumab_mg_l(const, state),
        const.theta_O,
        const.theta_K,
        const.theta_D_per_nM,
        const.nM_per_mg_l,
    )
    return free


def observables(
    const: ModelConstants, state: ModelState, inputs: ModelInputs, t_day: float
) -> dict[str, Array]:
    """Hormones and free RANKL at one instant: estradiol (pg/mL), testosterone (ng/dL, men;
    NaN for women) and free RANKL relative to baseline
    (docs/model/equations.md sections 6.1-6.2)."""
    e2 = serum_estradiol_pg_ml(const, inputs, t_day)
    s_e = estrogen_activity(const, e2, state.tamoxifen)
    testosterone = (
        serum_testosterone_ng_dl(const, inputs) if const.has_men else np.full(const.n, np.nan)
    )
    return {
        "estradiol": e2,
        "testosterone": testosterone,
        "rankl": free_rankl_relative(const, state, s_e),
    }


def rates(const: ModelConstants, state: ModelState, inputs: ModelInputs, t_day: float) -> Rates:
    """All rates of the model at time ``t_day`` for the given state
    (docs/model/equations.md sections 6.1-6.7)."""
    # 6.1 estrogen-receptor activity
    e2 = serum_estradiol_pg_ml(const, inputs, t_day)
    s_e = estrogen_activity(const, e2, state.tamoxifen)
    # 6.2 RANKL / OPG / RANK / denosumab, quasi-steady state (all relative to baseline)
    signal = eq.rank_signal(free_rankl_relative(const, state, s_e), const.kappa_L)
    apoptosis = eq.osteoclast_apoptosis(signal, const.s_L)
    # 6.3 bisphosphonate effect on osteoclast removal (Emax over the drugs on the surface)
    occupancy = eq.bisphosphonate_occupancy(state.bp_surface_mg, const.bp_ec50_mg, const.n_bp)
    e_bp = eq.bisphosphonate_effect(const.emax_bp, np.sum(occupancy, axis=0))
    # 6.3.1 osteomorphs: fission under low RANK signalling, re-fusion when it returns
    refusion = eq.osteomorph_refusion(const.k_W, signal, const.n_W)
    fission = eq.osteoclast_fission(const.k_c, apoptosis, signal, const.phi_W)
    # 6.4 bone compartments
    deficit = eq.focal_deficit(
        const.delta0,
        eq.ageing_factor(const.age_deficit_per_day, t_day),
        const.deltaE,
        s_e,
        const.s_e0,
        1.0 / const.s_e0,
    )
    # 6.6 bisphosphonate pools (frozen b, c over a step -> linear)
    k_s, f_bur, k_rel = const.bp_k_surface, const.bp_burial_share, const.bp_k_release
    return Rates(
        prod={
            "p": eq.precursor_production(const.k_p, signal),
            "c": eq.osteoclast_production(const.k_c, state.p, refusion, state.osteomorphs),
            "osteomorphs": fission * state.c,
            "q": eq.preosteoblast_production(const.k_q, state.c, const.gamma_T),
            "b": eq.osteoblast_production(const.k_b, state.q),
            "tamoxifen": eq.tamoxifen_production(const.k_T, inputs.tamoxifen),
        },
        loss={
            "p": const.k_p,
            "c": eq.osteoclast_loss(const.k_c, apoptosis, e_bp),
            "osteomorphs": eq.osteomorph_loss(refusion, const.k_Wd),
            "q": const.k_q,
            "b": const.k_b,
            "tamoxifen": const.k_T,
        },
        bone_formation=eq.bone_formation(const.rho, state.b, deficit, const.modeling, state.c),
        bone_resorption_rate=eq.resorption_rate(
            const.rho, state.c, state.young + state.old, const.nu
        ),
        bp_surface_loss=eq.bp_surface_loss(k_s, f_bur, state.b),
        bp_release_to_surface=eq.bp_release_to_surface(const.bp_f_bone, k_rel, state.c),
        bp_burial=eq.bp_burial(k_s, f_bur, state.b),
        bp_release=eq.bp_release(k_rel, state.c),
        osteoclast_fission=fission,
        osteomorph_refusion=refusion,
    )


def derivatives(
    const: ModelConstants, state: ModelState, inputs: ModelInputs, t_day: float
) -> ModelState:
    """Time derivatives of every state (per day), for the reference solver."""
    r = rates(const, state, inputs, t_day)
    pk_prod, pk_loss = denosumab_rates(const, state)
    prod, loss = {**r.prod, **pk_prod}, {**r.loss, **pk_loss}
    scalar = {
        name: eq.first_order_rate(prod[name], loss[name], getattr(state, name))
        for name in SCALAR_STATES
    }
    turnover = r.bone_resorption_rate
    surface, buried = state.bp_surface_mg, state.bp_buried_mg
    return ModelState(
        **scalar,
        young=eq.young_bone_rate(r.bone_formation, const.kappa, turnover, state.young),
        old=eq.old_bone_rate(const.kappa, turnover, state.young, state.old),
        bp_surface_mg=eq.pair_rate_first(
            r.bp_surface_loss, r.bp_release_to_surface, surface, buried
        ),
        bp_buried_mg=eq.pair_rate_second(r.bp_burial, r.bp_release, surface, buried),
    )


def _phi(k: Array, dt: float) -> Array:
    """(1 - exp(-k dt)) / k, the exact step of a unit production against loss rate k > 0."""
    return -np.expm1(-k * dt) / k


def exponential_euler_step(
    const: ModelConstants, state: ModelState, inputs: ModelInputs, t_day: float, dt: float
) -> ModelState:
    """Advance ``state`` by ``dt`` days with exponential Euler (docs/model/numerics.md section 8.1).

    Each scalar state: ``x <- x*exp(-k dt) + P*phi(k)``, with ``P`` and ``k`` frozen at the start
    of the step, except that the denosumab PK is advanced first (second order, see
    :func:`_denosumab_step`) and the bone model sees its mid-step concentration. The young/old
    bone pair and each bisphosphonate's surface/buried pair are linear for frozen coefficients
    and are advanced with their exact matrix exponential.
    """
    new = _denosumab_step(const, state, dt)
    # The bone model sees denosumab at the middle of the step (the PK is already advanced).
    middle = dataclasses.replace(
        state, den_central_mg=0.5 * (state.den_central_mg + new["den_central_mg"])
    )
    r = rates(const, middle, inputs, t_day)
    new["c"], new["osteomorphs"] = _osteoclast_pair_step(state, r, dt)
    for name in CONSTANT_RATE_STATES:
        decay, gain = const.constant_rate_step(name, r.loss[name], dt)
        new[name] = getattr(state, name) * decay + r.prod[name] * gain
    # bone: dY = F - (kappa + r) Y ; dO = kappa Y - r O (triangular; kappa + r - r = kappa)
    turnover = r.bone_resorption_rate
    k_young = const.kappa + turnover
    young_inf = r.bone_formation / k_young
    decay_young = np.exp(-k_young * dt)
    decay_old = np.exp(-turnover * dt)
    young = young_inf + (state.young - young_inf) * decay_young
    old = (
        state.old * decay_old
        + const.kappa * young_inf * _phi(turnover, dt)
        + (state.young - young_inf) * (decay_old - decay_young)
    )
    surface, buried = _linear_pair_step(
        state.bp_surface_mg,
        state.bp_buried_mg,
        r.bp_surface_loss,
        r.bp_release_to_surface,
        r.bp_burial,
        r.bp_release,
        dt,
    )
    return ModelState(**new, young=young, old=old, bp_surface_mg=surface, bp_buried_mg=buried)


def _osteoclast_pair_step(state: ModelState, r: Rates, dt: float) -> tuple[Array, Array]:
    """Osteoclasts and osteomorphs over ``dt``: for frozen rates a linear pair with a source,
    c' = P - a c + d W, W' = e c - g W (recruitment P, removal a, re-fusion d, fission e, loss g;
    docs/model/equations.md section 6.3.1), stepped exactly around its frozen steady state.
    Re-fusion can outpace a day's step when the reservoir empties, so exponential Euler on each
    state alone is not enough."""
    a, d, e, g = r.loss["c"], r.osteomorph_refusion, r.osteoclast_fission, r.loss["osteomorphs"]
    recruitment = r.prod["c"] - d * state.osteomorphs
    per_det = 1.0 / (a * g - d * e)  # > 0: e < a and d <= g
    c_eq, w_eq = recruitment * g * per_det, recruitment * e * per_det
    c_dev, w_dev = _linear_pair_step(state.c - c_eq, state.osteomorphs - w_eq, a, d, e, g, dt)
    return c_eq + c_dev, w_eq + w_dev


def _denosumab_step(const: ModelConstants, state: ModelState, dt: float) -> dict[str, Array]:
    """Denosumab PK step, second order and exact in its linear part.

    The depot empties exactly (``exp(-k_a dt)``); the central/peripheral pair is advanced with its
    exact matrix exponential, receiving the depot's release at mid-step; the Michaelis-Menten
    loss rate is frozen at the mean of its start and predicted-end values (predictor-corrector).
    First-order exponential Euler is not enough here: concentrations decay over many e-folds
    between doses, and the trough (which decides the RANKL rebound) was off six-fold against
    solve_ivp.
    """
    if not np.any(state.den_depot_mg) and not np.any(state.den_central_mg):
        return {name: getattr(state, name) for name in DENOSUMAB_STATES}
    depot = state.den_depot_mg * np.exp(-const.den_ka * dt)
    released = state.den_depot_mg - depot
    to_central = eq.compartment_transfer(const.den_q_l_per_day, const.den_vp_l)
    to_peripheral = eq.compartment_transfer(const.den_q_l_per_day, const.den_vc_l)

    def advance(loss: Array) -> tuple[Array, Array]:
        half = 0.5 * dt
        central, peripheral = _linear_pair_step(
            state.den_central_mg,
            state.den_peripheral_mg,
            loss,
            to_central,
            to_peripheral,
            to_central,
            half,
        )
        return _linear_pair_step(
            central + released, peripheral, loss, to_central, to_peripheral, to_central, half
        )

    start_loss = _central_loss(const, state.den_central_mg)
    predicted, _ = advance(start_loss)
    central, peripheral = advance(0.5 * (start_loss + _central_loss(const, predicted)))
    return {
        "den_depot_mg": depot,
        "den_central_mg": central,
        "den_peripheral_mg": peripheral,
    }


def _linear_pair_step(
    x: Array, y: Array, a: Array, d: Array, e: Array, g: Array, dt: float
) -> tuple[Array, Array]:
    """Exact step of ``x' = -a x + d y``, ``y' = e x - g y`` (a, d, e, g >= 0, frozen).

    Uses exp(M dt) = exp(s dt) [cosh(w dt) I + sinh(w dt)/w (M - s I)] with s = -(a + g)/2 and
    w = sqrt((a - g)^2/4 + d e) >= 0, which stays accurate when the eigenvalues coincide.
    """
    s = -(a + g) / 2.0
    w = np.sqrt((a - g) ** 2 / 4.0 + d * e)
    wt = w * dt
    sinhc = np.where(wt > 1e-8, np.sinh(wt) / np.where(w > 0, w, 1.0), dt)
    growth = np.exp(s * dt)
    cosh = np.cosh(wt)
    x_new = growth * (cosh * x + sinhc * ((-a - s) * x + d * y))
    y_new = growth * (cosh * y + sinhc * (e * x + (-g - s) * y))
    return x_new, y_new
