"""Compiled (Numba) population engine: the same model as :mod:`bonecast.simulation.model`.

The NumPy path (:func:`bonecast.simulation.model.exponential_euler_step`) stays the reference.
This module re-states its per-step arithmetic once, for one patient, in small ``@njit`` scalar
functions that follow ``model.py`` line by line (model.md section 6 equation numbers in the
comments), and a kernel, :func:`advance_block`, that advances every patient (in parallel,
``prange``) over a block of days during which exposures are constant. Doses, start rules and
recording happen between blocks, in Python, with the same :class:`CompiledRegimen` as the NumPy
path (see :func:`bonecast.simulation.solver.simulate_arms`).

Layout: the state of N patients is one C-ordered ``(n_states, N)`` array whose row slices are
the arrays of a :class:`ModelState` (views, so ``apply_doses`` and the recorder see the kernel's
updates); constants are ``(n_params, N)`` and ``(n_bp_params, n_bp, N)`` arrays.

Differences from the NumPy path, all at rounding level (measured: < 1e-11 pp of BMD over 10
years): ``x ** 1.0`` is skipped when an exponent is exactly 1; the non-integer powers of the
cell core and mechanostat (``c ** gamma_T``, ``V ** (nu - 1)``) are ``exp(y * log(x))``, which is
about twice as fast as libm ``pow`` here; ``exp(-k dt)`` and ``phi(k)`` of the same ``k`` come
from one ``expm1``; and a patient whose denosumab depot and central amounts are both zero skips
the PK step (the NumPy path skips it when that holds for every patient; the step maps zeros to
zeros).

Units: time in days, drug amounts in mg, volumes in L, concentrations in mg/L.
"""

from __future__ import annotations

import math
from typing import Final

import numba
import numpy as np
from numba import njit, prange

from bonecast.simulation.model import Array, ModelConstants, ModelInputs, ModelState

# ---- state rows (ModelState fields; bisphosphonates after the 12 scalar rows) ----
S_P, S_C, S_Q, S_B = 0, 1, 2, 3
S_YT, S_YC, S_OT, S_OC = 4, 5, 6, 7
S_TAM, S_DEPOT, S_CENTRAL, S_PERIPH = 8, 9, 10, 11
N_SCALAR_STATES: Final = 12

# ---- per-patient constant rows ----
_PARAM_NAMES: Final = (
    "e2_pre_pg_ml",
    "e2_post_pg_ml",
    "fmp_day",
    "menopause_width_days",
    "ec50_e2_pg_ml",
    "n_e",
    "epsilon_T",
    "tau_T",
    "k_T",
    "alpha_L",
    "alpha_O",
    "theta_O",
    "theta_K",
    "kappa_L",
    "theta_D_per_nM",
    "nM_per_mg_l",
    "k_p",
    "k_c",
    "s_L",
    "k_q",
    "k_b",
    "gamma_T",
    "emax_bp",
    "n_bp",
    "m_p",
    "kappa",
    "den_ka",
    "den_vc_l",
    "den_vp_l",
    "den_q_l_per_day",
    "den_cl_l_per_day",
    "den_vmax_mg_per_day",
    "den_km_mg_l",
    "s_e0",
)
(
    E2_PRE,
    E2_POST,
    FMP,
    MENO_W,
    EC50_E2,
    N_E,
    EPS_T,
    TAU_T,
    K_T,
    ALPHA_L,
    ALPHA_O,
    THETA_O,
    THETA_K,
    KAPPA_L,
    THETA_D,
    NM_PER_MG_L,
    K_P,
    K_C,
    S_L,
    K_Q,
    K_B,
    GAMMA_T,
    EMAX_BP,
    N_BP,
    M_P,
    KAPPA,
    DEN_KA,
    DEN_VC,
    DEN_VP,
    DEN_Q,
    DEN_CL,
    DEN_VMAX,
    DEN_KM,
    S_E0,
) = range(len(_PARAM_NAMES))
# (2, N) rows: trabecular, cortical
RHO_T, RHO_C, DELTA0_T, DELTA0_C, DELTAE_T, DELTAE_C, NU_T, NU_C, E2_FIXED = range(
    len(_PARAM_NAMES), len(_PARAM_NAMES) + 9
)
N_PARAMS: Final = len(_PARAM_NAMES) + 9

# ---- per-bisphosphonate constant rows, (n_bp_params, n_bp, N) ----
_BP_NAMES: Final = ("bp_ec50_mg", "bp_f_bone", "bp_k_surface", "bp_burial_share", "bp_k_release")
BP_EC50, BP_F_BONE, BP_K_S, BP_F_BUR, BP_K_REL = range(len(_BP_NAMES))

# ---- inputs rows ----
U_AI, U_OFS, U_TAM = 0, 1, 2

NUMBA_VERSION: Final = str(numba.__version__)


# ------------------------------------------------------------------ scalar model functions


@njit(cache=True, fastmath=False)
def phi(k: float, dt: float) -> float:
    """(1 - exp(-k dt)) / k (model.py ``_phi``), days."""
    return -math.expm1(-k * dt) / k


@njit(cache=True, fastmath=False)
def linear_pair_step(
    x: float, y: float, a: float, d: float, e: float, g: float, dt: float
) -> tuple[float, float]:
    """Exact step of x' = -a x + d y, y' = e x - g y (model.py ``_linear_pair_step``)."""
    s = -(a + g) / 2.0
    w = math.sqrt((a - g) ** 2 / 4.0 + d * e)
    wt = w * dt
    sinhc = math.sinh(wt) / (w if w > 0 else 1.0) if wt > 1e-8 else dt
    growth = math.exp(s * dt)
    cosh = math.cosh(wt)
    x_new = growth * (cosh * x + sinhc * ((-a - s) * x + d * y))
    y_new = growth * (cosh * y + sinhc * (e * x + (-g - s) * y))
    return x_new, y_new


@njit(cache=True, fastmath=False)
def denosumab_central_loss(
    central_mg: float, vc: float, q_flow: float, cl: float, vmax: float, km: float
) -> float:
    """Loss rate of central denosumab, linear + Michaelis-Menten (model.md 6.7), per day."""
    conc = central_mg / vc
    return (cl + q_flow) / vc + vmax / (vc * (km + conc))


@njit(cache=True, fastmath=False)
def denosumab_advance(
    central: float,
    peripheral: float,
    released: float,
    loss: float,
    to_central: float,
    to_peripheral: float,
    dt: float,
) -> tuple[float, float]:
    """Central/peripheral pair over dt, the depot's release added at mid-step (model.py)."""
    half = 0.5 * dt
    c1, p1 = linear_pair_step(
        central, peripheral, loss, to_central, to_peripheral, to_central, half
    )
    return linear_pair_step(c1 + released, p1, loss, to_central, to_peripheral, to_central, half)


@njit(cache=True, fastmath=False)
def denosumab_step(
    depot: float,
    central: float,
    peripheral: float,
    ka: float,
    vc: float,
    vp: float,
    q_flow: float,
    cl: float,
    vmax: float,
    km: float,
    dt: float,
) -> tuple[float, float, float]:
    """Second-order denosumab PK step (model.md 6.7; model.py ``_denosumab_step``), mg."""
    if depot == 0.0 and central == 0.0:
        return depot, central, peripheral
    new_depot = depot * math.exp(-ka * dt)
    released = depot - new_depot
    to_central = q_flow / vp
    to_peripheral = q_flow / vc
    start_loss = denosumab_central_loss(central, vc, q_flow, cl, vmax, km)
    predicted, _ = denosumab_advance(
        central, peripheral, released, start_loss, to_central, to_peripheral, dt
    )
    loss = 0.5 * (start_loss + denosumab_central_loss(predicted, vc, q_flow, cl, vmax, km))
    new_central, new_peripheral = denosumab_advance(
        central, peripheral, released, loss, to_central, to_peripheral, dt
    )
    return new_depot, new_central, new_peripheral


@njit(cache=True, fastmath=False)
def bone_pair_step(
    young: float, old: float, formation: float, turnover: float, kappa: float, dt: float
) -> tuple[float, float]:
    """Young/old bone of one compartment, exact for frozen F and R/V (model.md 6.4), volume."""
    k_young = kappa + turnover
    young_inf = formation / k_young
    decay_young = math.exp(-k_young * dt)
    # exp(-r dt) and phi(r) from one expm1 (model.py calls exp and expm1: same to 1 ulp)
    old_m1 = math.expm1(-turnover * dt)
    decay_old = 1.0 + old_m1
    new_young = young_inf + (young - young_inf) * decay_young
    new_old = (
        old * decay_old
        + kappa * young_inf * (-old_m1 / turnover)
        + (young - young_inf) * (decay_old - decay_young)
    )
    return new_young, new_old


@njit(cache=True, fastmath=False)
def power(x: float, n: float) -> float:
    """x ** n, exact shortcut for n == 1 (Hill exponents are often 1)."""
    return x if n == 1.0 else x**n


# ------------------------------------------------------------------ the kernel


@njit(cache=True, fastmath=False)
def advance_patient(
    state: Array,
    par: Array,
    bpp: Array,
    inputs: Array,
    i: int,
    first_day: int,
    n_days: int,
    steps_per_day: int,
    dt: float,
    menopause: bool,
) -> None:
    """Advance patient ``i`` over days ``first_day .. first_day + n_days - 1`` in place.

    One exponential-Euler step per ``dt`` days (model.md 8.1), as model.py
    ``exponential_euler_step``; the state is held in locals over the whole block.
    """
    n_bp = bpp.shape[1]
    # per-patient constants
    e2_pre, e2_post = par[E2_PRE, i], par[E2_POST, i]
    fmp, meno_w = par[FMP, i], par[MENO_W, i]
    ec50_e2, n_e = par[EC50_E2, i], par[N_E, i]
    eps_t, tau_t, k_t = par[EPS_T, i], par[TAU_T, i], par[K_T, i]
    alpha_l, alpha_o = par[ALPHA_L, i], par[ALPHA_O, i]
    theta_o, theta_k, kappa_l = par[THETA_O, i], par[THETA_K, i], par[KAPPA_L, i]
    theta_d, nm_per_mg_l = par[THETA_D, i], par[NM_PER_MG_L, i]
    k_p, k_c, s_l, k_q, k_b = par[K_P, i], par[K_C, i], par[S_L, i], par[K_Q, i], par[K_B, i]
    gamma_t, emax_bp, n_bp_hill = par[GAMMA_T, i], par[EMAX_BP, i], par[N_BP, i]
    m_kappa = par[KAPPA, i]
    ka, vc, vp = par[DEN_KA, i], par[DEN_VC, i], par[DEN_VP, i]
    q_flow, cl = par[DEN_Q, i], par[DEN_CL, i]
    vmax, km = par[DEN_VMAX, i], par[DEN_KM, i]
    s_e0 = par[S_E0, i]
    rho_t, rho_c = par[RHO_T, i], par[RHO_C, i]
    delta0_t, delta0_c = par[DELTA0_T, i], par[DELTA0_C, i]
    deltae_t, deltae_c = par[DELTAE_T, i], par[DELTAE_C, i]
    nu_t, nu_c = par[NU_T, i], par[NU_C, i]
    e2_fixed = par[E2_FIXED, i]
    ai, ofs, tam_in = inputs[U_AI, i], inputs[U_OFS, i], inputs[U_TAM, i]
    # constant-rate states (p, q, b, tamoxifen): cached step factors, as in model.py
    decay_p, gain_p = math.exp(-k_p * dt), phi(k_p, dt)
    decay_q, gain_q = math.exp(-k_q * dt), phi(k_q, dt)
    decay_b, gain_b = math.exp(-k_b * dt), phi(k_b, dt)
    decay_t, gain_t = math.exp(-k_t * dt), phi(k_t, dt)
    rankl0 = 1.0 + alpha_l * (1.0 - s_e0)
    opg0 = 1.0 + alpha_o * s_e0
    # state
    p, c, q, b = state[S_P, i], state[S_C, i], state[S_Q, i], state[S_B, i]
    y_t, y_c, o_t, o_c = state[S_YT, i], state[S_YC, i], state[S_OT, i], state[S_OC, i]
    tam = state[S_TAM, i]
    depot, central, periph = state[S_DEPOT, i], state[S_CENTRAL, i], state[S_PERIPH, i]
    # e = (E2/EC50)^nE is constant over the block without a menopause transition
    e_fixed = 0.0
    if not menopause:
        e2 = e2_fixed - ofs * (e2_fixed - e2_post)
        e_fixed = power(e2 * (1.0 - ai) / ec50_e2, n_e)
    for day in range(first_day, first_day + n_days):
        for sub in range(steps_per_day):
            t_day = day + sub * dt
            # 6.7 denosumab PK first; the bone model sees its mid-step concentration
            new_depot, new_central, new_periph = denosumab_step(
                depot, central, periph, ka, vc, vp, q_flow, cl, vmax, km, dt
            )
            conc = 0.5 * (central + new_central) / vc
            # 6.1 estrogen-receptor activity (section 5: natural menopause)
            if menopause:
                logistic = 1.0 / (1.0 + math.exp((t_day - fmp) / meno_w))
                base = e2_post + (e2_pre - e2_post) * logistic
                e2 = (base - ofs * (base - e2_post)) * (1.0 - ai)
                e = power(e2 / ec50_e2, n_e)
            else:
                e = e_fixed
            occupancy = tau_t * tam
            s_e = (e + eps_t * occupancy) / (1.0 + e + occupancy)
            # 6.2 RANKL / OPG / RANK / denosumab (relative, quasi-steady state)
            prod_rankl = (1.0 + alpha_l * (1.0 - s_e)) / rankl0
            prod_opg = (1.0 + alpha_o * s_e) / opg0 * b
            free_rankl = (
                prod_rankl
                * (1.0 + theta_o + theta_k)
                / (1.0 + theta_o * prod_opg + theta_k + theta_d * conc * nm_per_mg_l)
            )
            rank_signal = free_rankl * (1.0 + kappa_l) / (1.0 + kappa_l * free_rankl)
            apoptosis = (1.0 + s_l) / (1.0 + s_l * rank_signal)
            # 6.3 bisphosphonate effect E_BP (Emax over the drugs on the surface)
            e_bp_sum = 0.0
            for k in range(n_bp):
                x = power(state[N_SCALAR_STATES + k, i] / bpp[BP_EC50, k, i], n_bp_hill)
                e_bp_sum += x / (1.0 + x)
            e_bp = emax_bp * e_bp_sum
            # 6.4 bone compartments: resorption R/V and formation F
            # V ** (nu - 1) and c ** gamma_T as exp(y log x): libm pow is the slowest call here
            turnover_t = rho_t * c * math.exp((nu_t - 1.0) * math.log(y_t + o_t))
            turnover_c = rho_c * c * math.exp((nu_c - 1.0) * math.log(y_c + o_c))
            deficit_t = delta0_t + deltae_t * (s_e0 - s_e) / s_e0
            deficit_c = delta0_c + deltae_c * (s_e0 - s_e) / s_e0
            formation_t = rho_t * b * (1.0 - deficit_t)
            formation_c = rho_c * b * (1.0 - deficit_c)
            # 6.3 cell core (exponential Euler, model.md 8.1)
            loss_c = k_c * apoptosis * (1.0 + e_bp)
            c_m1 = math.expm1(-loss_c * dt)  # exp and phi from one expm1, as above
            new_c = c * (1.0 + c_m1) + k_c * p * (-c_m1 / loss_c)
            new_p = p * decay_p + k_p * rank_signal * gain_p
            new_q = q * decay_q + k_q * math.exp(gamma_t * math.log(c)) * gain_q
            new_b = b * decay_b + k_b * q * gain_b
            tam = tam * decay_t + k_t * tam_in * gain_t
            # 6.4 young/old bone, exact per compartment
            y_t, o_t = bone_pair_step(y_t, o_t, formation_t, turnover_t, m_kappa, dt)
            y_c, o_c = bone_pair_step(y_c, o_c, formation_c, turnover_c, m_kappa, dt)
            # 6.6 bisphosphonate surface/buried pairs, exact for frozen b, c
            for k in range(n_bp):
                surface = state[N_SCALAR_STATES + k, i]
                buried = state[N_SCALAR_STATES + n_bp + k, i]
                if surface == 0.0 and buried == 0.0:
                    continue
                k_s, f_bur, k_rel = bpp[BP_K_S, k, i], bpp[BP_F_BUR, k, i], bpp[BP_K_REL, k, i]
                surface, buried = linear_pair_step(
                    surface,
                    buried,
                    k_s * (f_bur * b + 1.0 - f_bur),
                    bpp[BP_F_BONE, k, i] * k_rel * c,
                    k_s * f_bur * b,
                    k_rel * c,
                    dt,
                )
                state[N_SCALAR_STATES + k, i] = surface
                state[N_SCALAR_STATES + n_bp + k, i] = buried
            p, c, q, b = new_p, new_c, new_q, new_b
            depot, central, periph = new_depot, new_central, new_periph
    state[S_P, i], state[S_C, i], state[S_Q, i], state[S_B, i] = p, c, q, b
    state[S_YT, i], state[S_YC, i], state[S_OT, i], state[S_OC, i] = y_t, y_c, o_t, o_c
    state[S_TAM, i] = tam
    state[S_DEPOT, i], state[S_CENTRAL, i], state[S_PERIPH, i] = depot, central, periph


@njit(cache=True, fastmath=False, parallel=True)
def advance_block(
    state: Array,
    par: Array,
    bpp: Array,
    inputs: Array,
    first_day: int,
    n_days: int,
    steps_per_day: int,
    dt: float,
    menopause: bool,
) -> None:
    """Advance every patient (in parallel) over days ``first_day .. first_day + n_days - 1``.

    ``inputs`` (3, N) are the exposures of the whole block (constant); ``menopause`` selects the
    time-varying E2_base of model.md section 5 instead of the fixed value. ``dt`` in days.
    """
    for i in prange(state.shape[1]):
        advance_patient(state, par, bpp, inputs, i, first_day, n_days, steps_per_day, dt, menopause)


# ------------------------------------------------------------------ Python-side helpers


class CompiledModel:
    """Packed constants and a state buffer for :func:`advance_block` (N patients).

    ``state`` is a :class:`ModelState` whose arrays are row views of :attr:`buffer`, so in-place
    dose application and recording act on what the kernel advances.
    """

    def __init__(self, const: ModelConstants, start: ModelState) -> None:
        n, n_bp = const.n, len(const.bp_drugs)
        self.const = const
        par = np.empty((N_PARAMS, n))
        for row, name in enumerate(_PARAM_NAMES):
            par[row] = getattr(const, name)
        par[RHO_T], par[RHO_C] = const.rho
        par[DELTA0_T], par[DELTA0_C] = const.delta0
        par[DELTAE_T], par[DELTAE_C] = const.deltaE
        par[NU_T], par[NU_C] = const.nu
        par[E2_FIXED] = 0.0 if const.e2_base_fixed is None else const.e2_base_fixed
        self.par = par
        self.bpp = np.ascontiguousarray(
            np.stack([getattr(const, name) for name in _BP_NAMES]).reshape(len(_BP_NAMES), n_bp, n)
        )
        self.menopause = const.e2_base_fixed is None
        buffer = np.empty((N_SCALAR_STATES + 2 * n_bp, n))
        buffer[S_P], buffer[S_C], buffer[S_Q], buffer[S_B] = start.p, start.c, start.q, start.b
        buffer[S_YT : S_YC + 1] = start.young
        buffer[S_OT : S_OC + 1] = start.old
        buffer[S_TAM] = start.tamoxifen
        buffer[S_DEPOT] = start.den_depot_mg
        buffer[S_CENTRAL] = start.den_central_mg
        buffer[S_PERIPH] = start.den_peripheral_mg
        buffer[N_SCALAR_STATES : N_SCALAR_STATES + n_bp] = start.bp_surface_mg
        buffer[N_SCALAR_STATES + n_bp :] = start.bp_buried_mg
        self.buffer = buffer
        self.state = ModelState(
            p=buffer[S_P],
            c=buffer[S_C],
            q=buffer[S_Q],
            b=buffer[S_B],
            young=buffer[S_YT : S_YC + 1],
            old=buffer[S_OT : S_OC + 1],
            tamoxifen=buffer[S_TAM],
            bp_surface_mg=buffer[N_SCALAR_STATES : N_SCALAR_STATES + n_bp],
            bp_buried_mg=buffer[N_SCALAR_STATES + n_bp :],
            den_depot_mg=buffer[S_DEPOT],
            den_central_mg=buffer[S_CENTRAL],
            den_peripheral_mg=buffer[S_PERIPH],
        )

    def advance(
        self, inputs: ModelInputs, first_day: int, n_days: int, steps_per_day: int, dt: float
    ) -> None:
        """Advance the state in place over ``n_days`` days with constant ``inputs``."""
        packed = np.stack([inputs.ai_suppression, inputs.ovarian_suppression, inputs.tamoxifen])
        advance_block(
            self.buffer,
            self.par,
            self.bpp,
            np.ascontiguousarray(packed, dtype=np.float64),
            first_day,
            n_days,
            steps_per_day,
            float(dt),
            self.menopause,
        )
