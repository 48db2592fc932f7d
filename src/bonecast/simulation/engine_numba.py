"""Compiled (Numba) population engine: the same model as :mod:`bonecast.simulation.model`.

The NumPy path (:func:`bonecast.simulation.model.exponential_euler_step`) stays the reference.
Both evaluate the same equations (:mod:`bonecast.simulation.equations`; here compiled with the
fast math below as :data:`eqn`, docs/model/numerics.md section 8.3), and this module applies the
same integrator in a kernel, :func:`advance_block`, that advances every patient over a block of days
during which exposures are constant and no dose falls. Doses, start rules and recording happen
between blocks, in Python, with the same :class:`CompiledRegimen` as the NumPy path (see
:func:`bonecast.simulation.solver.simulate_arms`).

Speed (issue 6): threads take chunks of :data:`LANES` patients (``prange``); a chunk's states
and constants live in one flat work buffer (about 20 KB, in L1 cache) for the whole block, and
every step is a few loops over the chunk's lanes that LLVM turns into SIMD code. That needs
vectorisable ``exp``/``expm1``/``log`` (:mod:`bonecast.simulation.numba_math`, within 2 ulp of
libm), NumPy's error model (no ZeroDivisionError branch), and constant row offsets in the
buffer (row ``r`` of lane ``j`` at ``r * LANES + j``), so LLVM can prove that rows never overlap.
The one fast-math flag is ``contract`` (``a * b + c`` may be one FMA, rounded once): it halves
the dependency chains of the polynomials, which bound the speed. Profile (10,000 patients x 10
years, anastrozole + zoledronic acid, 2 threads): libm ``expm1``/``exp``/``sinh``/``log`` took
about half of the 1.95 s of the former per-patient scalar kernel; this one takes 0.5 s.

Layout: the state of N patients is one C-ordered ``(n_states, N)`` array whose row slices are
the arrays of a :class:`ModelState` (views, so ``apply_doses`` and the recorder see the kernel's
updates); constants are ``(n_params, N)`` and ``(n_bp_params, n_bp, N)`` arrays.

Differences from the NumPy path, all at rounding level (measured: about 1e-11 pp of BMD over 10
years; tests/simulation/test_engine_numba.py asserts 0.01 pp): FMAs; ``exp``, ``expm1`` and
``log`` of the per-step rates are the 2-ulp versions above; non-integer powers are ``exp(y log x)``;
``exp(-(kappa + r) dt)`` is ``exp(-kappa dt) exp(-r dt)``; a step factor ``exp(-k dt)`` and
``phi(k)`` of the same ``k`` come from one ``expm1``; ``sinh``/``cosh`` of the exact 2x2 steps
come from one ``expm1``; the denosumab PK's two half-steps share their matrix exponential; and
a chunk none of whose patients carries denosumab (or a bisphosphonate) skips that drug's step
(the NumPy path skips the PK when that holds for every patient; the steps map zeros to zeros).

Units: time in days, drug amounts in mg, volumes in L, concentrations in mg/L.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numba
import numpy as np
from numba import njit, prange

from bonecast.simulation import equations, numba_math
from bonecast.simulation.model import Array, IdArray, ModelConstants, ModelInputs, ModelState
from bonecast.simulation.numba_math import FUSED, fast_exp, fast_expm1, fast_power

# ---- state rows, derived from the state table (ModelState fields, equations.STATES order) ----


def _state_layout() -> tuple[dict[str, int | slice], tuple[str, ...]]:
    """Rows of each state in the ``(n_states, N)`` buffer, from :data:`equations.STATES`.

    Every state that is not per bisphosphonate gets one row, or two for a per-compartment state
    (trabecular, cortical), in the table's order; the per-bisphosphonate states follow, each
    ``n_bp`` rows (see :func:`state_rows`). Returns the rows of the former and the names of the
    latter, so a new state needs no row written here by hand.
    """
    rows: dict[str, int | slice] = {}
    at = 0
    for state in equations.STATES:
        if "{drug}" in state.sbml_id:
            continue
        if "{j}" in state.sbml_id:
            rows[state.field] = slice(at, at + 2)
            at += 2
        else:
            rows[state.field] = at
            at += 1
    per_drug = tuple(s.field for s in equations.STATES if "{drug}" in s.sbml_id)
    return rows, per_drug


_FIXED_ROWS, DRUG_STATES = _state_layout()
N_SCALAR_STATES: Final = sum(
    r.stop - r.start if isinstance(r, slice) else 1 for r in _FIXED_ROWS.values()
)
"""Rows of the states that are not per bisphosphonate (the per-drug rows follow them)."""


def _row(field: str, compartment: int = 0) -> int:
    rows = _FIXED_ROWS[field]
    return rows.start + compartment if isinstance(rows, slice) else rows


S_P, S_C, S_W, S_Q, S_B = (_row(f) for f in ("p", "c", "osteomorphs", "q", "b"))
S_YT, S_YC, S_OT, S_OC = _row("young"), _row("young", 1), _row("old"), _row("old", 1)
S_TAM, S_DEPOT = _row("tamoxifen"), _row("den_depot_mg")
S_CENTRAL, S_PERIPH = _row("den_central_mg"), _row("den_peripheral_mg")


def state_rows(n_bp: int) -> dict[str, int | slice]:
    """Row (a scalar state) or rows (per compartment or per bisphosphonate) of every
    :class:`ModelState` field in a buffer with ``n_bp`` bisphosphonates."""
    rows = dict(_FIXED_ROWS)
    for k, field in enumerate(DRUG_STATES):
        first = N_SCALAR_STATES + k * n_bp
        rows[field] = slice(first, first + n_bp)
    return rows


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
    "age_deficit_per_day",
    "male",
    "testosterone0_ng_dl",
    "hpg_gain",
    "male_ai_effect",
    "testosterone_ng_dl_per_mg_day",
    "phi_W",
    "k_W",
    "k_Wd",
    "n_W",
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
    AGE_DEFICIT,
    MALE,
    T0_MALE,
    HPG_GAIN,
    MALE_AI,
    T_PER_MG_DAY,
    PHI_W,
    K_W,
    K_WD,
    N_W,
) = range(len(_PARAM_NAMES))
# (2, N) rows: trabecular, cortical
(
    RHO_T,
    RHO_C,
    DELTA0_T,
    DELTA0_C,
    DELTAE_T,
    DELTAE_C,
    NU_T,
    NU_C,
    MOD_T,
    MOD_C,
    E2_FIXED,
) = range(len(_PARAM_NAMES), len(_PARAM_NAMES) + 11)
N_PARAMS: Final = len(_PARAM_NAMES) + 11

# ---- per-bisphosphonate constant rows, (n_bp_params, n_bp, N) ----
_BP_NAMES: Final = ("bp_ec50_mg", "bp_f_bone", "bp_k_surface", "bp_burial_share", "bp_k_release")
BP_EC50, BP_F_BONE, BP_K_S, BP_F_BUR, BP_K_REL = range(len(_BP_NAMES))

# ---- inputs rows ----
U_AI, U_OFS, U_TAM, U_TESTO = 0, 1, 2, 3

NUMBA_VERSION: Final = str(numba.__version__)

# ---- the work buffer of one chunk: flat, row r of lane j at r * LANES + j ----
LANES: Final = 32
"""Patients advanced together by one thread; the SIMD loops run over them (a row is 256 bytes:
8 AVX2 vectors). A chunk's buffer (98 rows, 25 KB with one bisphosphonate) stays in L1 cache."""
PAR: Final = N_SCALAR_STATES
"""First row of the per-patient constants (``PAR + K_C`` is k_c); the rows before it are the
states."""
(
    D_E,  # (E2 / EC50)^nE, fixed over the block unless a menopause falls in the simulation
    D_CONC,  # denosumab at mid-step, mg/L
    D_E_BP,  # sum over bisphosphonates of x / (1 + x), x = (surface / EC50)^n_BP
    D_AI,
    D_OFS,
    D_TAM_PROD,  # k_T * tamoxifen exposure, per day
    D_DECAY_P,  # exp(-k dt) and phi(k) of the constant-rate states (model.py step cache)
    D_GAIN_P,
    D_DECAY_Q,
    D_GAIN_Q,
    D_DECAY_B,
    D_GAIN_B,
    D_DECAY_T,
    D_GAIN_T,
    D_DECAY_KAPPA,  # exp(-kappa dt), young bone's maturation over a step
    D_PER_RANKL0,  # 1 / baseline RANKL and OPG productions (products, not divisions, per step)
    D_PER_OPG0,
    D_PER_S_E0,  # 1 / S_E at t = 0
    D_DECAY_KA,  # exp(-k_a dt), denosumab depot
    D_AGEING,  # exp(beta_age t / 365.25) at the current step: growth of the age-related deficit
    D_AGEING_STEP,  # exp(beta_age dt / 365.25), D_AGEING's factor per step
    D_TESTO,  # absorbed exogenous testosterone, mg/day (men)
    D_MALE_E,  # a man's E2 / E2_0 under the block's exposures (model.py male_hormone_ratios)
) = range(PAR + N_PARAMS, PAR + N_PARAMS + 23)
BP_ROWS: Final = PAR + N_PARAMS + 23
"""First row of the bisphosphonates: per drug, its two states then its five constants."""
B_SURFACE, B_BURIED = DRUG_STATES.index("bp_surface_mg"), DRUG_STATES.index("bp_buried_mg")
B_CONST: Final = len(DRUG_STATES)
"""Offset of the drug's constants (``B_CONST + BP_EC50`` ...) within its rows."""
N_B_ROWS: Final = B_CONST + len(_BP_NAMES)


# ------------------------------------------------------------------ scalar model functions


def _inline(function: Any) -> Any:
    """Numba-compile an equation for one patient's floats, inlined into its caller."""
    return njit(error_model="numpy", fastmath=FUSED, inline="always")(function)


eqn = equations.with_math(
    {"exp": fast_exp, "power": fast_power, "maximum": max, "minimum": min}, _inline
)
"""The model's equations (:mod:`bonecast.simulation.equations`) compiled for the kernel, with
the vectorisable math of :mod:`bonecast.simulation.numba_math`."""


@njit(cache=True, error_model="numpy", inline="always")
def libm_power(x: float, n: float) -> float:
    """x ** n with libm's pow."""
    power: float = x**n
    return power


eqn_libm = equations.with_math(
    {"exp": math.exp, "power": libm_power, "maximum": max, "minimum": min}, _inline
)
"""The equations with libm's math, for the once-per-block constants (:func:`derive_chunk`):
they need no SIMD, and libm's calls compile faster than the inlined fast math."""


@njit(cache=True, error_model="numpy", fastmath=FUSED)
def phi(k: float, dt: float) -> float:
    """(1 - exp(-k dt)) / k (model.py ``_phi``), days."""
    return -math.expm1(-k * dt) / k


@njit(cache=True, error_model="numpy", fastmath=FUSED, inline="always")
def pair_factors(a: float, d: float, e: float, g: float, dt: float) -> tuple[float, float, float]:
    """``(exp(s dt), cosh(w dt), sinh(w dt) / w)`` of x' = -a x + d y, y' = e x - g y.

    s = -(a + g)/2, w = sqrt((a - g)^2/4 + d e) (model.py ``_linear_pair_step``); sinh and cosh
    from one expm1, without cancellation for small w dt.
    """
    s = -(a + g) / 2.0
    w = math.sqrt((a - g) ** 2 / 4.0 + d * e)
    wt = w * dt
    em1 = fast_expm1(wt)
    ratio = em1 / (1.0 + em1)  # = 1 - exp(-w dt)
    sinhc = 0.5 * (em1 + ratio) / (w if w > 0 else 1.0) if wt > 1e-8 else dt
    return fast_exp(s * dt), 1.0 + 0.5 * em1 * ratio, sinhc


@njit(cache=True, error_model="numpy", fastmath=FUSED, inline="always")
def pair_apply(
    x: float, y: float, a: float, d: float, e: float, g: float, factors: tuple[float, float, float]
) -> tuple[float, float]:
    """One exact step of the pair with :func:`pair_factors` (model.py ``_linear_pair_step``)."""
    growth, cosh, sinhc = factors
    s = -(a + g) / 2.0
    x_new = growth * (cosh * x + sinhc * ((-a - s) * x + d * y))
    y_new = growth * (cosh * y + sinhc * (e * x + (-g - s) * y))
    return x_new, y_new


@njit(cache=True, error_model="numpy", fastmath=FUSED, inline="always")
def denosumab_advance(
    central: float,
    peripheral: float,
    released: float,
    loss: float,
    to_central: float,
    to_peripheral: float,
    dt: float,
) -> tuple[float, float]:
    """Central/peripheral pair over dt, the depot's release added at mid-step (model.py).

    Both half-steps have the same coefficients, so they share one matrix exponential.
    """
    factors = pair_factors(loss, to_central, to_peripheral, to_central, 0.5 * dt)
    c1, p1 = pair_apply(central, peripheral, loss, to_central, to_peripheral, to_central, factors)
    return pair_apply(c1 + released, p1, loss, to_central, to_peripheral, to_central, factors)


@njit(cache=True, error_model="numpy", fastmath=FUSED, inline="always")
def denosumab_central_loss(
    central_mg: float, vc: float, q_flow: float, cl: float, vmax: float, km: float
) -> float:
    """Loss rate of central denosumab at the amount ``central_mg`` (1/day; section 6.7)."""
    conc = eqn.denosumab_concentration(central_mg, vc)
    loss: float = eqn.denosumab_central_loss(conc, vc, q_flow, cl, vmax, km)
    return loss


# ------------------------------------------------------------------ lane loops (SIMD)


@njit(cache=True, error_model="numpy", fastmath=FUSED)
def estrogen_lanes(w: Array, t_day: float) -> None:
    """D_E at ``t_day`` with the logistic E2_base of docs/model/equations.md section 5 (6.1)."""
    for j in range(LANES):
        e2_post = w[(PAR + E2_POST) * LANES + j]
        base = eqn.untreated_estradiol(
            t_day,
            w[(PAR + E2_PRE) * LANES + j],
            e2_post,
            w[(PAR + FMP) * LANES + j],
            w[(PAR + MENO_W) * LANES + j],
        )
        female = eqn.female_estradiol(base, e2_post, w[D_OFS * LANES + j], w[D_AI * LANES + j])
        male = eqn.male_estradiol(base, w[D_MALE_E * LANES + j])
        e2 = male if w[(PAR + MALE) * LANES + j] > 0.0 else female
        w[D_E * LANES + j] = eqn.estradiol_activity(
            e2, w[(PAR + EC50_E2) * LANES + j], w[(PAR + N_E) * LANES + j]
        )


@njit(cache=True, error_model="numpy", fastmath=FUSED)
def denosumab_lanes(w: Array, dt: float) -> None:
    """Second-order denosumab PK step (docs/model/equations.md section 6.7; model.py
    ``_denosumab_step``); D_CONC."""
    for j in range(LANES):
        depot = w[S_DEPOT * LANES + j]
        central = w[S_CENTRAL * LANES + j]
        peripheral = w[S_PERIPH * LANES + j]
        vc = w[(PAR + DEN_VC) * LANES + j]
        q_flow = w[(PAR + DEN_Q) * LANES + j]
        cl = w[(PAR + DEN_CL) * LANES + j]
        vmax = w[(PAR + DEN_VMAX) * LANES + j]
        km = w[(PAR + DEN_KM) * LANES + j]
        new_depot = depot * w[D_DECAY_KA * LANES + j]
        released = depot - new_depot
        to_central = eqn.compartment_transfer(q_flow, w[(PAR + DEN_VP) * LANES + j])
        to_peripheral = eqn.compartment_transfer(q_flow, vc)
        start_loss = denosumab_central_loss(central, vc, q_flow, cl, vmax, km)
        predicted, _ = denosumab_advance(
            central, peripheral, released, start_loss, to_central, to_peripheral, dt
        )
        loss = 0.5 * (start_loss + denosumab_central_loss(predicted, vc, q_flow, cl, vmax, km))
        new_central, new_peripheral = denosumab_advance(
            central, peripheral, released, loss, to_central, to_peripheral, dt
        )
        w[D_CONC * LANES + j] = eqn.denosumab_concentration(0.5 * (central + new_central), vc)
        w[S_DEPOT * LANES + j] = new_depot
        w[S_CENTRAL * LANES + j] = new_central
        w[S_PERIPH * LANES + j] = new_peripheral


@njit(cache=True, error_model="numpy", fastmath=FUSED)
def bisphosphonate_lanes(w: Array, drug: Array, dt: float) -> None:
    """One bisphosphonate: add its Emax term to D_E_BP (6.3), then step its pools (6.6).

    ``drug`` is the view of the drug's rows in ``w`` (a separate array with constant offsets, so
    the loop vectorises). Surface/buried pair exact for b and c frozen at the start of the step.
    """
    for j in range(LANES):
        surface = drug[B_SURFACE * LANES + j]
        buried = drug[B_BURIED * LANES + j]
        b = w[S_B * LANES + j]
        c = w[S_C * LANES + j]
        w[D_E_BP * LANES + j] += eqn.bisphosphonate_occupancy(
            surface, drug[(B_CONST + BP_EC50) * LANES + j], w[(PAR + N_BP) * LANES + j]
        )
        k_s = drug[(B_CONST + BP_K_S) * LANES + j]
        f_bur = drug[(B_CONST + BP_F_BUR) * LANES + j]
        k_rel = drug[(B_CONST + BP_K_REL) * LANES + j]
        a = eqn.bp_surface_loss(k_s, f_bur, b)
        d = eqn.bp_release_to_surface(drug[(B_CONST + BP_F_BONE) * LANES + j], k_rel, c)
        e = eqn.bp_burial(k_s, f_bur, b)
        g = eqn.bp_release(k_rel, c)
        surface, buried = pair_apply(surface, buried, a, d, e, g, pair_factors(a, d, e, g, dt))
        drug[B_SURFACE * LANES + j] = surface
        drug[B_BURIED * LANES + j] = buried


@njit(cache=True, error_model="numpy", fastmath=FUSED, inline="always")
def bone_pair_step(
    young: float,
    old: float,
    formation: float,
    turnover: float,
    kappa: float,
    decay_kappa: float,
    dt: float,
) -> tuple[float, float]:
    """Young/old bone of one compartment, exact for frozen F and R/V
    (docs/model/equations.md section 6.4), volume."""
    k_young = kappa + turnover
    per_both = 1.0 / (k_young * turnover)  # one division for F / k_young and phi(r)
    young_inf = formation * turnover * per_both
    old_m1 = fast_expm1(-turnover * dt)  # exp(-r dt) and phi(r) from one expm1
    decay_old = 1.0 + old_m1
    decay_young = decay_kappa * decay_old  # exp(-(kappa + r) dt)
    new_young = young_inf + (young - young_inf) * decay_young
    new_old = (
        old * decay_old
        + kappa * young_inf * (-old_m1 * k_young * per_both)
        + (young - young_inf) * (decay_old - decay_young)
    )
    return new_young, new_old


@njit(cache=True, error_model="numpy", fastmath=FUSED)
def bone_cell_lanes(w: Array, dt: float) -> None:
    """Cells (6.2, 6.3), tamoxifen and bone (6.4) over one step of exponential Euler (8.1).

    Reads D_E, D_CONC and D_E_BP of this step; model.py ``rates`` and
    ``exponential_euler_step`` line by line.
    """
    for j in range(LANES):
        p, c = w[S_P * LANES + j], w[S_C * LANES + j]
        q, b = w[S_Q * LANES + j], w[S_B * LANES + j]
        y_t, y_c = w[S_YT * LANES + j], w[S_YC * LANES + j]
        o_t, o_c = w[S_OT * LANES + j], w[S_OC * LANES + j]
        tam = w[S_TAM * LANES + j]
        e = w[D_E * LANES + j]
        s_e0 = w[(PAR + S_E0) * LANES + j]
        # 6.1 estrogen-receptor activity, tamoxifen a partial agonist
        s_e = eqn.estrogen_receptor_activity(
            e, tam, w[(PAR + TAU_T) * LANES + j], w[(PAR + EPS_T) * LANES + j]
        )
        # 6.2 RANKL / OPG / RANK / denosumab (relative, quasi-steady state)
        free = eqn.free_rankl(
            eqn.rankl_production(s_e, w[(PAR + ALPHA_L) * LANES + j], w[D_PER_RANKL0 * LANES + j]),
            eqn.opg_production(s_e, b, w[(PAR + ALPHA_O) * LANES + j], w[D_PER_OPG0 * LANES + j]),
            w[D_CONC * LANES + j],
            w[(PAR + THETA_O) * LANES + j],
            w[(PAR + THETA_K) * LANES + j],
            w[(PAR + THETA_D) * LANES + j],
            w[(PAR + NM_PER_MG_L) * LANES + j],
        )
        signal = eqn.rank_signal(free, w[(PAR + KAPPA_L) * LANES + j])
        apoptosis = eqn.osteoclast_apoptosis(signal, w[(PAR + S_L) * LANES + j])
        e_bp = eqn.bisphosphonate_effect(w[(PAR + EMAX_BP) * LANES + j], w[D_E_BP * LANES + j])
        # 6.3.1 osteomorphs: fission under low RANK signalling, re-fusion when it returns
        osteomorphs = w[S_W * LANES + j]
        refusion = eqn.osteomorph_refusion(
            w[(PAR + K_W) * LANES + j], signal, w[(PAR + N_W) * LANES + j]
        )
        # 6.4 resorption R/V and formation F per compartment
        rho_t, rho_c = w[(PAR + RHO_T) * LANES + j], w[(PAR + RHO_C) * LANES + j]
        turnover_t = eqn.resorption_rate(rho_t, c, y_t + o_t, w[(PAR + NU_T) * LANES + j])
        turnover_c = eqn.resorption_rate(rho_c, c, y_c + o_c, w[(PAR + NU_C) * LANES + j])
        per_s_e0 = w[D_PER_S_E0 * LANES + j]
        ageing = w[D_AGEING * LANES + j]
        w[D_AGEING * LANES + j] = ageing * w[D_AGEING_STEP * LANES + j]  # for the next step
        deficit_t = eqn.focal_deficit(
            w[(PAR + DELTA0_T) * LANES + j],
            ageing,
            w[(PAR + DELTAE_T) * LANES + j],
            s_e,
            s_e0,
            per_s_e0,
        )
        deficit_c = eqn.focal_deficit(
            w[(PAR + DELTA0_C) * LANES + j],
            ageing,
            w[(PAR + DELTAE_C) * LANES + j],
            s_e,
            s_e0,
            per_s_e0,
        )
        formation_t = eqn.bone_formation(rho_t, b, deficit_t, w[(PAR + MOD_T) * LANES + j], c)
        formation_c = eqn.bone_formation(rho_c, b, deficit_c, w[(PAR + MOD_C) * LANES + j], c)
        # 6.3 cell core: osteoclasts and osteomorphs an exact pair around its frozen steady
        # state (model.py _osteoclast_pair_step), the others exponential Euler
        k_c = w[(PAR + K_C) * LANES + j]
        loss_c = eqn.osteoclast_loss(k_c, apoptosis, e_bp)
        loss_w = eqn.osteomorph_loss(refusion, w[(PAR + K_WD) * LANES + j])
        fission = eqn.osteoclast_fission(k_c, apoptosis, signal, w[(PAR + PHI_W) * LANES + j])
        recruitment = eqn.osteoclast_production(k_c, p, refusion, 0.0)
        per_det = 1.0 / (loss_c * loss_w - refusion * fission)
        c_eq, w_eq = recruitment * loss_w * per_det, recruitment * fission * per_det
        c_dev, w_dev = pair_apply(
            c - c_eq,
            osteomorphs - w_eq,
            loss_c,
            refusion,
            fission,
            loss_w,
            pair_factors(loss_c, refusion, fission, loss_w, dt),
        )
        prod_q = eqn.preosteoblast_production(
            w[(PAR + K_Q) * LANES + j], c, w[(PAR + GAMMA_T) * LANES + j]
        )
        w[S_C * LANES + j] = c_eq + c_dev
        w[S_W * LANES + j] = w_eq + w_dev
        w[S_P * LANES + j] = (
            p * w[D_DECAY_P * LANES + j]
            + eqn.precursor_production(w[(PAR + K_P) * LANES + j], signal) * w[D_GAIN_P * LANES + j]
        )
        w[S_Q * LANES + j] = q * w[D_DECAY_Q * LANES + j] + prod_q * w[D_GAIN_Q * LANES + j]
        w[S_B * LANES + j] = (
            b * w[D_DECAY_B * LANES + j]
            + eqn.osteoblast_production(w[(PAR + K_B) * LANES + j], q) * w[D_GAIN_B * LANES + j]
        )
        w[S_TAM * LANES + j] = (
            tam * w[D_DECAY_T * LANES + j] + w[D_TAM_PROD * LANES + j] * w[D_GAIN_T * LANES + j]
        )
        # 6.4 young/old bone, exact per compartment
        kappa = w[(PAR + KAPPA) * LANES + j]
        decay_kappa = w[D_DECAY_KAPPA * LANES + j]
        y_t, o_t = bone_pair_step(y_t, o_t, formation_t, turnover_t, kappa, decay_kappa, dt)
        y_c, o_c = bone_pair_step(y_c, o_c, formation_c, turnover_c, kappa, decay_kappa, dt)
        w[S_YT * LANES + j], w[S_OT * LANES + j] = y_t, o_t
        w[S_YC * LANES + j], w[S_OC * LANES + j] = y_c, o_c


# ------------------------------------------------------------------ one chunk, one block


@njit(cache=True, error_model="numpy", fastmath=FUSED)
def load_chunk(
    w: Array, state: Array, par: Array, bpp: Array, inputs: Array, first: int, count: int
) -> None:
    """Copy patients ``first .. first + count - 1`` into the work buffer ``w``.

    Lanes past ``count`` repeat the first patient (finite values; never written back).
    """
    n_bp = bpp.shape[1]
    for j in range(LANES):
        i = first + j if j < count else first
        for row in range(N_SCALAR_STATES):
            w[row * LANES + j] = state[row, i]
        for row in range(N_PARAMS):
            w[(PAR + row) * LANES + j] = par[row, i]
        w[D_AI * LANES + j] = inputs[U_AI, i]
        w[D_OFS * LANES + j] = inputs[U_OFS, i]
        w[D_TAM_PROD * LANES + j] = eqn.tamoxifen_production(par[K_T, i], inputs[U_TAM, i])
        w[D_TESTO * LANES + j] = inputs[U_TESTO, i]
        for k in range(n_bp):
            at = (BP_ROWS + k * N_B_ROWS) * LANES + j
            for m in range(B_CONST):
                w[at + m * LANES] = state[N_SCALAR_STATES + m * n_bp + k, i]
            for row in range(len(_BP_NAMES)):
                w[at + (B_CONST + row) * LANES] = bpp[row, k, i]


@njit(cache=True, error_model="numpy", fastmath=FUSED)
def derive_chunk(w: Array, dt: float, first_day: int) -> None:
    """Per-lane constants of the block: step factors, baselines and the fixed D_E (libm)."""
    for j in range(LANES):
        for decay, gain, rate in (
            (D_DECAY_P, D_GAIN_P, K_P),
            (D_DECAY_Q, D_GAIN_Q, K_Q),
            (D_DECAY_B, D_GAIN_B, K_B),
            (D_DECAY_T, D_GAIN_T, K_T),
        ):
            k = w[(PAR + rate) * LANES + j]
            w[decay * LANES + j] = math.exp(-k * dt)
            w[gain * LANES + j] = phi(k, dt)
        w[D_DECAY_KAPPA * LANES + j] = math.exp(-w[(PAR + KAPPA) * LANES + j] * dt)
        w[D_DECAY_KA * LANES + j] = math.exp(-w[(PAR + DEN_KA) * LANES + j] * dt)
        ageing_rate = w[(PAR + AGE_DEFICIT) * LANES + j]
        w[D_AGEING * LANES + j] = eqn_libm.ageing_factor(ageing_rate, float(first_day))
        w[D_AGEING_STEP * LANES + j] = eqn_libm.ageing_factor(ageing_rate, dt)
        s_e0 = w[(PAR + S_E0) * LANES + j]
        alpha_l, alpha_o = w[(PAR + ALPHA_L) * LANES + j], w[(PAR + ALPHA_O) * LANES + j]
        w[D_PER_RANKL0 * LANES + j] = 1.0 / eqn_libm.rankl_production(s_e0, alpha_l, 1.0)
        w[D_PER_OPG0 * LANES + j] = 1.0 / eqn_libm.opg_production(s_e0, 1.0, alpha_o, 1.0)
        w[D_PER_S_E0 * LANES + j] = 1.0 / s_e0
        # E2 without a menopause transition (model.py serum_estradiol_pg_ml)
        e2_fixed = w[(PAR + E2_FIXED) * LANES + j]
        ai, ofs = w[D_AI * LANES + j], w[D_OFS * LANES + j]
        hpg_gain = w[(PAR + HPG_GAIN) * LANES + j]
        x = eqn_libm.exogenous_testosterone_ratio(
            w[D_TESTO * LANES + j],
            w[(PAR + T_PER_MG_DAY) * LANES + j],
            w[(PAR + T0_MALE) * LANES + j],
        )
        male_e = eqn_libm.male_estradiol_ratio(
            eqn_libm.aromatase_activity(ai, w[(PAR + MALE_AI) * LANES + j]),
            eqn_libm.endogenous_testosterone_share(ofs, x),
            x,
            hpg_gain,
        )
        w[D_MALE_E * LANES + j] = male_e
        if w[(PAR + MALE) * LANES + j] > 0.0:
            e2 = eqn_libm.male_estradiol(e2_fixed, male_e)
        else:
            e2 = eqn_libm.female_estradiol(e2_fixed, w[(PAR + E2_POST) * LANES + j], ofs, ai)
        w[D_E * LANES + j] = eqn_libm.estradiol_activity(
            e2, w[(PAR + EC50_E2) * LANES + j], w[(PAR + N_E) * LANES + j]
        )
        w[D_CONC * LANES + j] = 0.0


@njit(cache=True, error_model="numpy", fastmath=FUSED)
def store_chunk(w: Array, state: Array, first: int, count: int, n_bp: int) -> None:
    """Copy the states of the chunk's ``count`` real lanes back into ``state``."""
    for j in range(count):
        i = first + j
        for row in range(N_SCALAR_STATES):
            state[row, i] = w[row * LANES + j]
        for k in range(n_bp):
            at = (BP_ROWS + k * N_B_ROWS) * LANES + j
            for m in range(B_CONST):
                state[N_SCALAR_STATES + m * n_bp + k, i] = w[at + m * LANES]


@njit(cache=True, error_model="numpy", fastmath=FUSED)
def carries(w: Array, rows: tuple[int, int]) -> bool:
    """Whether any lane holds drug in either state row (zeros stay zeros without doses)."""
    for row in rows:
        for j in range(LANES):
            if w[row * LANES + j] != 0.0:
                return True
    return False


@njit(cache=True, error_model="numpy", fastmath=FUSED)
def advance_chunk(
    state: Array,
    par: Array,
    bpp: Array,
    inputs: Array,
    first: int,
    count: int,
    first_day: int,
    n_days: int,
    steps_per_day: int,
    dt: float,
    menopause: bool,
    snap_days: IdArray,
    snaps: Array,
) -> None:
    """Advance patients ``first .. first + count - 1`` (count <= LANES) over the block.

    At the start of each day of ``snap_days`` (sorted, inside the block) their states are copied
    into ``snaps[k]`` (the recorder reads them after the call: no split of the block).
    """
    n_bp = bpp.shape[1]
    w = np.empty((BP_ROWS + n_bp * N_B_ROWS) * LANES)
    load_chunk(w, state, par, bpp, inputs, first, count)
    derive_chunk(w, dt, first_day)
    denosumab = carries(w, (S_DEPOT, S_CENTRAL))
    bisphosphonates = [  # offsets of the drugs' rows in w
        (BP_ROWS + k * N_B_ROWS) * LANES
        for k in range(n_bp)
        if carries(w, (BP_ROWS + k * N_B_ROWS + B_SURFACE, BP_ROWS + k * N_B_ROWS + B_BURIED))
    ]
    next_snap = 0
    for day in range(first_day, first_day + n_days):
        if next_snap < snap_days.size and snap_days[next_snap] == day:
            store_chunk(w, snaps[next_snap], first, count, n_bp)
            next_snap += 1
        for sub in range(steps_per_day):
            if menopause:
                estrogen_lanes(w, day + sub * dt)
            # 6.7 denosumab PK first; the bone model sees its mid-step concentration
            if denosumab:
                denosumab_lanes(w, dt)
            w[D_E_BP * LANES : (D_E_BP + 1) * LANES] = 0.0
            for at in bisphosphonates:
                bisphosphonate_lanes(w, w[at : at + N_B_ROWS * LANES], dt)
            bone_cell_lanes(w, dt)
    store_chunk(w, state, first, count, n_bp)


@njit(cache=True, error_model="numpy", fastmath=FUSED, parallel=True)
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
    snap_days: IdArray,
    snaps: Array,
) -> None:
    """Advance every patient (chunks of LANES in parallel) over ``n_days`` from ``first_day``.

    ``inputs`` (4, N) are the exposures of the whole block (constant); ``menopause`` selects the
    time-varying E2_base of docs/model/equations.md section 5 instead of the fixed value. ``dt`` in
    days. The states at the start of the days ``snap_days`` go to ``snaps`` (len(snap_days),
    n_states, N).
    """
    n = state.shape[1]
    for chunk in prange((n + LANES - 1) // LANES):
        first = chunk * LANES
        advance_chunk(
            state,
            par,
            bpp,
            inputs,
            first,
            min(LANES, n - first),
            first_day,
            n_days,
            steps_per_day,
            dt,
            menopause,
            snap_days,
            snaps,
        )


# ------------------------------------------------------------------ the on-disk cache

INLINED_SOURCES: Final = tuple(Path(inspect.getfile(m)) for m in (equations, numba_math))
"""Files whose functions are compiled into this module's kernels."""


def drop_stale_kernels(cache_dir: Path, module: str, fingerprint: str) -> bool:
    """Delete ``module``'s cached kernels in ``cache_dir`` unless they were compiled from the
    sources with ``fingerprint``; True when they were deleted (or there was no record).

    Numba loads a cached kernel when *its own* file is unchanged, without looking at the files
    of the functions it inlines (the equations, the fast math), so an edit to the model would
    otherwise run the old kernel. A record of the fingerprint is kept next to the cache.
    """
    record = cache_dir / f"{module}.sources.sha256"
    try:
        if record.read_text() == fingerprint:
            return False
    except OSError:
        pass
    for stale in cache_dir.glob(f"{module}.*.nb[ic]"):
        stale.unlink(missing_ok=True)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        record.write_text(fingerprint)
    except OSError:
        pass  # a read-only cache: Numba cannot save kernels there either
    return True


_CACHE_DIR = advance_block.stats.cache_path  # None when Numba cannot cache here
if _CACHE_DIR is not None:
    drop_stale_kernels(
        Path(_CACHE_DIR),
        Path(__file__).stem,
        hashlib.sha256(b"".join(path.read_bytes() for path in INLINED_SOURCES)).hexdigest(),
    )


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
        par[MOD_T], par[MOD_C] = const.modeling
        par[E2_FIXED] = 0.0 if const.e2_base_fixed is None else const.e2_base_fixed
        self.par = par
        self.bpp = np.ascontiguousarray(
            np.stack([getattr(const, name) for name in _BP_NAMES]).reshape(len(_BP_NAMES), n_bp, n)
        )
        self.menopause = const.e2_base_fixed is None
        buffer = np.empty((N_SCALAR_STATES + len(DRUG_STATES) * n_bp, n))
        for field, rows in state_rows(n_bp).items():
            buffer[rows] = getattr(start, field)
        self.buffer = buffer
        self.state = state_view(buffer, n_bp)

    def advance(
        self,
        inputs: ModelInputs,
        first_day: int,
        n_days: int,
        steps_per_day: int,
        dt: float,
        snap_days: Sequence[int] = (),
    ) -> list[ModelState]:
        """Advance the state in place over ``n_days`` days with constant ``inputs``.

        Returns the states at the start of each of ``snap_days`` (sorted days strictly inside
        the block), copied by the kernel on its way.
        """
        packed = np.stack(
            [
                inputs.ai_suppression,
                inputs.ovarian_suppression,
                inputs.tamoxifen,
                inputs.exogenous_testosterone(),
            ]
        )
        days = np.asarray(snap_days, dtype=np.int64)
        if days.size and not (first_day < days[0] and days[-1] < first_day + n_days):
            raise ValueError(
                f"snap_days must lie inside the block {first_day}..{first_day + n_days}"
            )
        snaps = np.empty((days.size, *self.buffer.shape))
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
            days,
            snaps,
        )
        n_bp = len(self.const.bp_drugs)
        return [state_view(snap, n_bp) for snap in snaps]


def state_view(buffer: Array, n_bp: int) -> ModelState:
    """A :class:`ModelState` whose arrays are row views of a ``(n_states, N)`` buffer."""
    return ModelState(**{field: buffer[rows] for field, rows in state_rows(n_bp).items()})
