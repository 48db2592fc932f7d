"""AIBL-2C model equations, written once (docs/model/equations.md sections 5-6).

Every algebraic relation and every rate of the model is one small pure function below, of plain
arithmetic and the math namespace ``exp``, ``power``, ``maximum``, ``minimum`` (module globals,
NumPy's by default). Three paths evaluate the *same* functions:

* the NumPy reference (:mod:`bonecast.simulation.model`) calls them with arrays of patients;
* the compiled kernel (:mod:`bonecast.simulation.engine_numba`) calls Numba-compiled copies on
  one patient's floats, with the vectorisable ``fast_exp``/``fast_power`` of
  :mod:`bonecast.simulation.numba_math` as its math namespace (:func:`with_math`);
* the SBML export (:mod:`bonecast.simulation.sbml`) calls them with symbols, which record the
  arithmetic as SBML Level 3 infix formulas, so no equation is written by hand there.

What the three paths add is only how states are *integrated* (exponential Euler, exact 2x2
steps, the denosumab predictor-corrector; docs/model/numerics.md sections 8.1 and 8.3) or
written (SBML rate rules ``dx/dt``, built from :func:`first_order_rate` and the pair rates
below).

:data:`STATES` lists the states with their units; each function's docstring gives its unit and
the section of docs/model/equations.md it states. To change the model, change a function here
(or add one and call it from the three paths); to add a drug of an existing class, change only
the drug catalogue (:mod:`bonecast.simulation.drugs`).

Rules for this module (the three paths rely on them): only arithmetic operators, the namespace
functions and other functions of this module; no branches on values (use ``maximum`` /
``minimum``); no NumPy-only calls (``np.sum``, ``axis``); float literals.

Units: time in days, drug amounts in mg, volumes in L, concentrations in mg/L, estradiol in
pg/mL, testosterone in ng/dL; cell states and bone volumes relative to the patient's untreated
baseline (= 1).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from numpy import exp, maximum, minimum, power

MATH_NAMES = ("exp", "power", "maximum", "minimum")
"""The math namespace every equation may use (exp, x ** y for x > 0, elementwise max/min)."""


@dataclass(frozen=True)
class State:
    """A state variable: :class:`~bonecast.simulation.model.ModelState` field, SBML id, unit."""

    field: str
    sbml_id: str
    unit: str
    description: str


STATES: tuple[State, ...] = (
    State("p", "p", "dimensionless", "osteoclast precursors (relative)"),
    State("c", "c", "dimensionless", "active osteoclasts (relative; CTX proxy)"),
    State("osteomorphs", "W", "dimensionless", "osteomorphs (relative to baseline osteoclasts)"),
    State("q", "q", "dimensionless", "pre-osteoblasts (relative)"),
    State("b", "b", "dimensionless", "active osteoblasts (relative; P1NP proxy)"),
    State("young", "Y_{j}", "dimensionless", "young bone volume, compartment {j}"),
    State("old", "O_{j}", "dimensionless", "old bone volume, compartment {j}"),
    State("tamoxifen", "X_T", "dimensionless", "tamoxifen exposure (0-1 of steady state)"),
    State("bp_surface_mg", "A_s_{drug}", "mg", "{drug} on the resorbable surface"),
    State("bp_buried_mg", "A_b_{drug}", "mg", "{drug} buried under new bone"),
    State("den_depot_mg", "D_sc", "mg", "denosumab SC depot"),
    State("den_central_mg", "D_c", "mg", "denosumab central amount"),
    State("den_peripheral_mg", "D_p", "mg", "denosumab peripheral amount"),
)
"""The state variables (docs/model/equations.md section 4); ``{j}`` is a bone compartment
(t, c) and ``{drug}`` a bisphosphonate."""


# ---------------------------------------------------------------- 5. inputs: natural menopause


def untreated_estradiol(
    t_day: Any, e2_pre: Any, e2_post: Any, fmp_day: Any, width_days: Any
) -> Any:
    """Untreated serum estradiol E2_base (pg/mL) over the natural menopause: a logistic fall
    from E2_pre to E2_post around the final menstrual period (docs/model/equations.md
    section 5)."""
    return e2_post + (e2_pre - e2_post) / (1.0 + exp((t_day - fmp_day) / width_days))


# ---------------------------------------------------------------- 6.1 estrogen-receptor activity


def female_estradiol(e2_base: Any, e2_post: Any, ovarian_suppression: Any, ai: Any) -> Any:
    """A woman's serum estradiol (pg/mL) under ovarian suppression (to E2_post) and an
    aromatase inhibitor removing the share ``ai`` (docs/model/equations.md section 6.1)."""
    return (e2_base - ovarian_suppression * (e2_base - e2_post)) * (1.0 - ai)


def male_estradiol(e2_base: Any, ratio: Any) -> Any:
    """A man's serum estradiol (pg/mL): his untreated level times E2 / E2_0
    (:func:`male_estradiol_ratio`)."""
    return e2_base * ratio


def aromatase_activity(ai: Any, male_ai_effect: Any) -> Any:
    """k: a man's aromatase activity left by an inhibitor, 1 - m_AI s_AI (dimensionless;
    docs/model/index.md, men; Burnett-Bowie et al., J Clin Endocrinol Metab 2009)."""
    return 1.0 - male_ai_effect * ai


def exogenous_testosterone_ratio(
    testosterone_mg_per_day: Any, ng_dl_per_mg_day: Any, testosterone0_ng_dl: Any
) -> Any:
    """x = T_exo / T_0: serum testosterone from replacement relative to his own untreated
    level (dimensionless; absorbed mg/day times serum ng/dL per mg/day)."""
    return testosterone_mg_per_day * ng_dl_per_mg_day / testosterone0_ng_dl


def endogenous_testosterone_share(ovarian_suppression: Any, x: Any) -> Any:
    """u: a man's testicular production left by a GnRH agonist and by the feedback of
    exogenous testosterone, (1 - OFS) / (1 + x) (dimensionless)."""
    return (1.0 - ovarian_suppression) / (1.0 + x)


def male_estradiol_ratio(k: Any, u: Any, x: Any, hpg_gain: Any) -> Any:
    """e = E2 / E2_0 of a man: aromatisation of his testosterone with the estradiol feedback
    gain g on LH, k (u (1 + g) + x) / (1 + k u g) (dimensionless, closed-form steady state)."""
    return k * (u * (1.0 + hpg_gain) + x) / (1.0 + k * u * hpg_gain)


def male_testosterone_ratio(e: Any, u: Any, x: Any, hpg_gain: Any) -> Any:
    """T / T_0 of a man, u (1 + g (1 - e)) + x (dimensionless)."""
    return u * (1.0 + hpg_gain * (1.0 - e)) + x


def estradiol_activity(e2: Any, ec50_e2: Any, n_e: Any) -> Any:
    """e = (E2 / EC50_E2)^n_E (dimensionless; docs/model/equations.md section 6.1)."""
    return power(e2 / ec50_e2, n_e)


def estrogen_receptor_activity(e: Any, tamoxifen: Any, tau_t: Any, epsilon_t: Any) -> Any:
    """S_E with tamoxifen a partial agonist, (e + eps_T tau_T X_T) / (1 + e + tau_T X_T)
    (dimensionless; docs/model/equations.md section 6.1)."""
    occupancy = tau_t * tamoxifen
    return (e + epsilon_t * occupancy) / (1.0 + e + occupancy)


# ---------------------------------------------------------------- 6.2 RANKL, OPG, RANK, denosumab


def rankl_production(s_e: Any, alpha_l: Any, per_baseline: Any) -> Any:
    """P_L: RANKL production, (1 + alpha_L (1 - S_E)) times ``per_baseline``, the inverse of its
    untreated value (this function at S_E0 with ``per_baseline`` = 1), so P_L = 1 untreated
    (dimensionless; docs/model/equations.md section 6.2)."""
    return (1.0 + alpha_l * (1.0 - s_e)) * per_baseline


def opg_production(s_e: Any, b: Any, alpha_o: Any, per_baseline: Any) -> Any:
    """P_O: OPG production by osteoblasts, (1 + alpha_O S_E) b times ``per_baseline`` (the
    inverse of 1 + alpha_O S_E0) (dimensionless; docs/model/equations.md section 6.2)."""
    return (1.0 + alpha_o * s_e) * per_baseline * b


def denosumab_concentration(central_mg: Any, vc_l: Any) -> Any:
    """Serum denosumab C = D_c / V_c (mg/L = ug/mL; docs/model/equations.md section 6.7)."""
    return central_mg / vc_l


def free_rankl(
    p_l: Any,
    p_o: Any,
    conc_mg_l: Any,
    theta_o: Any,
    theta_k: Any,
    theta_d_per_nm: Any,
    nm_per_mg_l: Any,
) -> Any:
    """L: free RANKL relative to baseline, quasi-steady state with OPG, RANK and denosumab
    binding (dimensionless; Pivonka et al., Bone 2008; Martinez-Reina and Pivonka, Bone 2019;
    docs/model/equations.md section 6.2)."""
    return (
        p_l
        * (1.0 + theta_o + theta_k)
        / (1.0 + theta_o * p_o + theta_k + theta_d_per_nm * conc_mg_l * nm_per_mg_l)
    )


def rank_signal(free: Any, kappa_l: Any) -> Any:
    """f_L: RANK signalling, L (1 + kappa_L) / (1 + kappa_L L) (dimensionless;
    docs/model/equations.md section 6.2)."""
    return free * (1.0 + kappa_l) / (1.0 + kappa_l * free)


# ---------------------------------------------------------------- 6.3 cell core


def osteoclast_apoptosis(signal: Any, s_l: Any) -> Any:
    """a_L = (1 + s_L) / (1 + s_L f_L): osteoclast removal relative to baseline
    (dimensionless; docs/model/equations.md section 6.3)."""
    return (1.0 + s_l) / (1.0 + s_l * signal)


def bisphosphonate_occupancy(surface_mg: Any, ec50_mg: Any, n_bp: Any) -> Any:
    """x / (1 + x), x = (A_s / EC50)^n_BP: one bisphosphonate's share of E_BP / E_max
    (dimensionless; docs/model/equations.md section 6.3)."""
    x = power(surface_mg / ec50_mg, n_bp)
    return x / (1.0 + x)


def bisphosphonate_effect(emax_bp: Any, occupancy_sum: Any) -> Any:
    """E_BP = E_max,BP times the occupancies summed over the drugs on the surface
    (dimensionless; docs/model/equations.md section 6.3)."""
    return emax_bp * occupancy_sum


def precursor_production(k_p: Any, signal: Any) -> Any:
    """Production of osteoclast precursors, k_p f_L (per day; loss rate k_p; section 6.3)."""
    return k_p * signal


def osteoclast_production(k_c: Any, p: Any, refusion: Any, osteomorphs: Any) -> Any:
    """Production of active osteoclasts, k_c p + k_W f_L W: from precursors and by the re-fusion
    of osteomorphs (per day; docs/model/equations.md sections 6.3 and 6.3.1)."""
    return k_c * p + refusion * osteomorphs


def osteoclast_fission(k_c: Any, apoptosis: Any, signal: Any, share: Any) -> Any:
    """Rate at which active osteoclasts fission into osteomorphs,
    phi_W k_c max(a_L - 1, 0) max(1 - f_L, 0)^2 (1/day): a share of the osteoclast removal that
    low RANK signalling adds to the baseline's, the larger the deeper the blockade.

    Under RANKL inhibition osteoclasts do not all die: they fission into osteomorphs, which
    persist and re-fuse into osteoclasts when RANKL returns (McDonald MM et al., Cell
    2021;184:1330-1347, under OPG-Fc, i.e. near-complete blockade). Zero whenever RANK signalling
    is at or above baseline (untreated, estrogen deprivation, bisphosphonates) and about 1 % of
    the added removal under the mild lowering of RANKL by tamoxifen (f_L near 0.9), so the
    reservoir is inert there (docs/model/equations.md section 6.3.1)."""
    blockade = maximum(1.0 - signal, 0.0)
    return share * k_c * maximum(apoptosis - 1.0, 0.0) * blockade * blockade


def osteomorph_refusion(k_w: Any, signal: Any, n_w: Any) -> Any:
    """Re-fusion of osteomorphs into active osteoclasts, k_W f_L^n_W: driven by RANK signalling
    (RANKL is needed for fusion), so slow while RANKL is blocked and at its baseline rate when
    signalling returns (1/day; McDonald et al., Cell 2021; docs/model/equations.md
    section 6.3.1)."""
    return k_w * power(signal, n_w)


def osteomorph_loss(refusion: Any, k_wd: Any) -> Any:
    """Loss rate of osteomorphs, k_W f_L^n_W + k_Wd: re-fusion plus their own death (1/day;
    docs/model/equations.md section 6.3.1)."""
    return refusion + k_wd


def osteoclast_loss(k_c: Any, apoptosis: Any, e_bp: Any) -> Any:
    """Loss rate of active osteoclasts, k_c a_L (1 + E_BP) (1/day; section 6.3)."""
    return k_c * apoptosis * (1.0 + e_bp)


def preosteoblast_production(k_q: Any, c: Any, gamma_t: Any) -> Any:
    """Production of pre-osteoblasts, k_q c^gamma_T (per day; loss rate k_q; section 6.3)."""
    return k_q * power(c, gamma_t)


def osteoblast_production(k_b: Any, q: Any) -> Any:
    """Production of active osteoblasts, k_b q (per day; loss rate k_b; section 6.3)."""
    return k_b * q


def tamoxifen_production(k_t: Any, exposure: Any) -> Any:
    """Production of tamoxifen exposure, k_T TAM (per day; loss rate k_T; section 6.1)."""
    return k_t * exposure


# ---------------------------------------------------------------- 6.4 bone compartments


def resorption_rate(rho: Any, c: Any, volume: Any, nu: Any) -> Any:
    """r_j = R_j / V_j = rho_j c V_j^(nu_j - 1): fractional resorption of each bone pool, with
    the mechanostat slowing it as bone is lost (1/day; docs/model/equations.md section 6.4)."""
    return rho * c * power(volume, nu - 1.0)


def ageing_factor(age_deficit_per_day: Any, t_day: Any) -> Any:
    """exp(beta_age t / 365.25): growth of the age-related focal deficit since t = 0
    (dimensionless; Ensrud et al., J Bone Miner Res 1995; docs/model/equations.md
    section 6.4)."""
    return exp(age_deficit_per_day * t_day)


def focal_deficit(
    delta0: Any, ageing: Any, delta_e: Any, s_e: Any, s_e0: Any, per_s_e0: Any
) -> Any:
    """delta_j = delta0_j ageing + delta_Ej (S_E0 - S_E) / S_E0, ``per_s_e0`` = 1 / S_E0
    (dimensionless; docs/model/equations.md section 6.4)."""
    return delta0 * ageing + delta_e * (s_e0 - s_e) * per_s_e0


def bone_formation(rho: Any, b: Any, deficit: Any, modeling: Any, c: Any) -> Any:
    """F_j = rho_j (b (1 - min(delta_j, 1)) + mu_j max(1 - c, 0)): remodeling coupled to the
    osteoblasts (never negative) plus modeling-based formation on quiescent surfaces when
    resorption is suppressed (Ominsky et al., J Bone Miner Res 2015) (volume fraction per day;
    docs/model/equations.md section 6.4)."""
    return rho * (b * (1.0 - minimum(deficit, 1.0)) + modeling * maximum(1.0 - c, 0.0))


def young_bone_rate(formation: Any, kappa: Any, turnover: Any, young: Any) -> Any:
    """dY_j/dt = F_j - kappa Y_j - r_j Y_j (per day; docs/model/equations.md section 6.4)."""
    return formation - (kappa + turnover) * young


def old_bone_rate(kappa: Any, turnover: Any, young: Any, old: Any) -> Any:
    """dO_j/dt = kappa Y_j - r_j O_j (per day; docs/model/equations.md section 6.4)."""
    return kappa * young - turnover * old


def mineral(m_p: Any, young: Any, old: Any) -> Any:
    """M_j = m_p Y_j + O_j, in units of fully mineralised baseline volume (section 6.4)."""
    return m_p * young + old


# ---------------------------------------------------------------- 6.5 site BMD


def bmd_ratio(f_site: Any, trabecular_ratio: Any, cortical_ratio: Any) -> Any:
    """BMD_s(t) / BMD_s(0) = f_s M_t/M_t(0) + (1 - f_s) M_c/M_c(0) (dimensionless;
    docs/model/equations.md section 6.5)."""
    return f_site * trabecular_ratio + (1.0 - f_site) * cortical_ratio


# ---------------------------------------------------------------- 6.6 bisphosphonate pools


def bp_surface_loss(k_surface: Any, burial_share: Any, b: Any) -> Any:
    """a: total loss rate of surface drug, k_s (f_bur b + 1 - f_bur) (1/day; section 6.6)."""
    return k_surface * (burial_share * b + 1.0 - burial_share)


def bp_release_to_surface(f_bone: Any, k_release: Any, c: Any) -> Any:
    """d: buried -> surface rate, f_bone k_rel c (1/day; section 6.6)."""
    return f_bone * k_release * c


def bp_burial(k_surface: Any, burial_share: Any, b: Any) -> Any:
    """e: surface -> buried rate, k_s f_bur b (1/day; section 6.6)."""
    return k_surface * burial_share * b


def bp_release(k_release: Any, c: Any) -> Any:
    """g: total loss rate of buried drug, k_rel c (1/day; section 6.6)."""
    return k_release * c


# ---------------------------------------------------------------- 6.7 denosumab PK


def depot_absorption(ka_per_day: Any, depot_mg: Any) -> Any:
    """k_a D_sc: denosumab absorbed from the SC depot into the central compartment (mg/day;
    docs/model/equations.md section 6.7)."""
    return ka_per_day * depot_mg


def denosumab_central_loss(
    conc_mg_l: Any, vc_l: Any, q_l_per_day: Any, cl_l_per_day: Any, vmax: Any, km_mg_l: Any
) -> Any:
    """Loss rate of central denosumab, linear, to the periphery and Michaelis-Menten,
    (CL + Q)/V_c + V_max / (V_c (K_m + C)) (1/day; docs/model/equations.md section 6.7)."""
    return (cl_l_per_day + q_l_per_day) / vc_l + vmax / (vc_l * (km_mg_l + conc_mg_l))


def compartment_transfer(q_l_per_day: Any, volume_l: Any) -> Any:
    """Q / V: first-order transfer out of a compartment of volume V (1/day; section 6.7)."""
    return q_l_per_day / volume_l


# ---------------------------------------------------------------- rate forms


def first_order_rate(production: Any, loss: Any, x: Any) -> Any:
    """dx/dt = P - k x, the form of every scalar state (per day)."""
    return production - loss * x


def pair_rate_first(a: Any, d: Any, x: Any, y: Any) -> Any:
    """dx/dt = -a x + d y of a linear pair (surface/buried drug; central/peripheral)."""
    return -a * x + d * y


def pair_rate_second(e: Any, g: Any, x: Any, y: Any) -> Any:
    """dy/dt = e x - g y of a linear pair."""
    return e * x - g * y


EQUATIONS: tuple[Callable[..., Any], ...] = (
    untreated_estradiol,
    female_estradiol,
    male_estradiol,
    aromatase_activity,
    exogenous_testosterone_ratio,
    endogenous_testosterone_share,
    male_estradiol_ratio,
    male_testosterone_ratio,
    estradiol_activity,
    estrogen_receptor_activity,
    rankl_production,
    opg_production,
    denosumab_concentration,
    free_rankl,
    rank_signal,
    osteoclast_apoptosis,
    bisphosphonate_occupancy,
    bisphosphonate_effect,
    precursor_production,
    osteoclast_production,
    osteoclast_fission,
    osteomorph_refusion,
    osteomorph_loss,
    osteoclast_loss,
    preosteoblast_production,
    osteoblast_production,
    tamoxifen_production,
    resorption_rate,
    ageing_factor,
    focal_deficit,
    bone_formation,
    young_bone_rate,
    old_bone_rate,
    mineral,
    bmd_ratio,
    bp_surface_loss,
    bp_release_to_surface,
    bp_burial,
    bp_release,
    depot_absorption,
    denosumab_central_loss,
    compartment_transfer,
    first_order_rate,
    pair_rate_first,
    pair_rate_second,
)
"""Every equation of the model, in the order of docs/model/equations.md."""


def with_math(
    math: Mapping[str, Any], wrap: Callable[[Callable[..., Any]], Any] = lambda f: f
) -> types.ModuleType:
    """The equations re-bound to another math namespace (the same source, new globals).

    ``math`` maps each of :data:`MATH_NAMES` to its replacement; ``wrap`` is applied to every
    re-bound function (``numba.njit(inline="always")`` for the compiled kernel), and calls
    between equations go to the wrapped versions. Returns a module object with one attribute
    per equation (Numba resolves ``module.function`` in compiled code).
    """
    missing = set(MATH_NAMES) - set(math)
    if missing:
        raise ValueError(f"the math namespace lacks {sorted(missing)}")
    scope: dict[str, Any] = {**globals(), **math}
    bound = types.ModuleType(f"{__name__}.with_math")
    for equation in EQUATIONS:
        copy = types.FunctionType(
            equation.__code__, scope, equation.__name__, equation.__defaults__
        )
        copy.__doc__ = equation.__doc__
        copy.__module__ = equation.__module__
        copy.__qualname__ = equation.__qualname__
        scope[equation.__name__] = wrapped = wrap(copy)
        setattr(bound, equation.__name__, wrapped)
    return bound
