"""The AIBL-2C equations (docs/model/equations.md sections 4 and 6) and their untreated steady
state."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from bonecast.simulation import DAYS_PER_YEAR, SITES, ParameterSet, simulate
from bonecast.simulation.model import (
    ModelConstants,
    ModelInputs,
    ModelState,
    _linear_pair_step,
    derivatives,
    exponential_euler_step,
)

TEN_YEARS = round(10 * DAYS_PER_YEAR)
BP_DRUGS = ("zoledronic_acid", "alendronate", "risedronate", "ibandronate")


# --------------------------------------------------------------------------------------------
# Untreated steady state (docs/model/calibration.md section 14.5: "the untreated steady state stays
# at 1 (cells) and drifts only by delta0")
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["postmenopausal", "premenopausal"])
def test_untreated_cell_states_stay_at_one(make_patient, untreated_inputs, status):
    """p, c, q, b stay at their normalised baseline 1 for 10 years without treatment."""
    patient = make_patient(menopausal_status=status, age_years=64 if status[0] == "p" else 40)
    # all four cell states, integrated with the model's own step function
    const = ModelConstants.from_values(
        patient.values, patient.n, patient.fmp_day, (), patient.age_years
    )
    state = ModelState.baseline(const)
    inputs = untreated_inputs
    worst = 0.0
    for day in range(TEN_YEARS):
        state = exponential_euler_step(const, state, inputs, float(day), 1.0)
        worst = max(worst, *(float(abs(getattr(state, s)[0] - 1.0)) for s in "pcqb"))
    assert worst < 1e-12
    # c and b as the public simulator reports them (CTX and P1NP proxies)
    result = simulate(patient, [], TEN_YEARS)
    assert np.max(np.abs(result.osteoclasts - 1.0)) < 1e-12
    assert np.max(np.abs(result.osteoblasts - 1.0)) < 1e-12


@pytest.mark.parametrize("status", ["postmenopausal", "premenopausal"])
def test_no_focal_deficit_means_no_bone_change(make_patient, params: ParameterSet, status):
    """With delta0_t = delta0_c = 0 an untreated patient keeps her BMD at every site."""
    no_deficit = params.with_values(delta0_t=0.0, delta0_c=0.0)
    patient = make_patient(
        parameter_set=no_deficit,
        menopausal_status=status,
        age_years=64 if status[0] == "p" else 40,
    )
    result = simulate(patient, [], TEN_YEARS)
    assert result.bmd_ratio.shape == (TEN_YEARS + 1, len(SITES), 1)
    assert np.max(np.abs(result.bmd_ratio - 1.0)) < 1e-10


def _reduced_drift_bmd(params: ParameterSet, days: np.ndarray, age: float) -> np.ndarray:
    """Independent solve of the drift-only model (cells fixed at 1), (len(days), 3).

    Per compartment j: dY/dt = rho_j (1 - delta0_j(t)) - (kappa + rho_j V^(nu-1)) Y, with
    delta0_j(t) = delta0_j m_life exp(beta_age (age + t - a_ref)) (t in years),
    dO/dt = kappa Y - rho_j V^(nu-1) O, V = Y + O; M = m_p Y + O;
    BMD_s = f_s M_t/M_t0 + (1 - f_s) M_c/M_c0 (docs/model/equations.md sections 6.4-6.5).
    """
    v = params.values()
    rho = np.array([v["rho_t_per_year"], v["rho_c_per_year"]]) / 365.25
    kappa = v["kappa_per_year"] / 365.25
    delta0 = np.array([v["delta0_t"], v["delta0_c"]]) * v["m_life"]
    nu, m_p = np.array([v["nu_t"], v["nu_c"]]), v["m_p"]

    beta, a_ref = v["age_deficit_per_year"], v["age_deficit_ref_years"]

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        young, old = y[:2], y[2:]
        turnover = rho * (young + old) ** (nu - 1.0)
        deficit = delta0 * np.exp(beta * (age + t / 365.25 - a_ref))
        return np.concatenate(
            [rho * (1.0 - deficit) - (kappa + turnover) * young, kappa * young - turnover * old]
        )

    young0 = rho / (kappa + rho)
    sol = solve_ivp(
        rhs,
        (0.0, float(days[-1])),
        np.concatenate([young0, 1.0 - young0]),
        method="LSODA",
        rtol=1e-11,
        atol=1e-13,
        t_eval=days.astype(float),
    )
    assert sol.success
    mineral = m_p * sol.y[:2] + sol.y[2:]
    rel = mineral / (m_p * young0 + 1.0 - young0)[:, None]
    f = np.array([v[f"f_{site}"] for site in SITES])[:, None]
    return (f * rel[0] + (1.0 - f) * rel[1]).T


def test_untreated_bmd_follows_the_age_related_drift(typical_patient, params):
    """Default deficits: the BMD drift equals the reduced drift-only model to 0.01 pp."""
    result = simulate(typical_patient, [], TEN_YEARS)
    expected = _reduced_drift_bmd(params, result.days, float(typical_patient.age_years[0]))
    diff_pp = 100.0 * np.abs(result.bmd_ratio[:, :, 0] - expected)
    assert diff_pp.max() < 0.01
    # and the drift is a real, monotone loss at every site (not a trivially flat curve)
    assert np.all(result.bmd_ratio[-1, :, 0] < 0.99)
    assert np.all(np.diff(result.bmd_ratio[:, :, 0], axis=0) <= 0.0)


def test_baseline_state_is_a_steady_state(typical_patient, params, untreated_inputs):
    """With no deficit every derivative vanishes at the baseline state
    (docs/model/equations.md section 4)."""
    values = dict(typical_patient.values)
    values["delta0_t"] = np.zeros(1)
    values["delta0_c"] = np.zeros(1)
    const = ModelConstants.from_values(
        values, 1, typical_patient.fmp_day, BP_DRUGS, typical_patient.age_years
    )
    state = ModelState.baseline(const)
    v = params.values()
    kappa = v["kappa_per_year"]
    for j, name in enumerate(("rho_t_per_year", "rho_c_per_year")):
        # Y0 = rho/(kappa + rho), O0 = 1 - Y0 (docs/model/equations.md section 4; rates per year
        # cancel)
        assert state.young[j, 0] == pytest.approx(v[name] / (kappa + v[name]), rel=1e-12)
        assert state.young[j, 0] + state.old[j, 0] == pytest.approx(1.0, abs=1e-15)
    rates = derivatives(const, state, untreated_inputs, 0.0).to_vector()
    assert np.max(np.abs(rates)) < 1e-15


# --------------------------------------------------------------------------------------------
# Right-hand side against an independent transcription of docs/model/equations.md sections 6.1-6.7
# --------------------------------------------------------------------------------------------


def _spec_rhs(
    v: dict[str, float], e2_base: float, s: dict, u: dict, age_now: float
) -> dict[str, object]:
    """docs/model/equations.md sections 6.1-6.7 for one patient aged ``age_now`` years, written
    independently of bonecast.simulation.model."""
    per_day = 1.0 / 365.25
    ageing = math.exp(v["age_deficit_per_year"] * (age_now - v["age_deficit_ref_years"]))
    # 6.1
    e2 = e2_base * (1 - u["ofs"] * (1 - v["e2_post_pg_ml"] / e2_base)) * (1 - u["ai"])
    e = (e2 / v["ec50_e2_pg_ml"]) ** v["n_e"]
    e0 = (e2_base / v["ec50_e2_pg_ml"]) ** v["n_e"]
    occ = v["tau_T"] * s["X"]
    s_e = (e + v["epsilon_T"] * occ) / (1 + e + occ)
    s_e0 = e0 / (1 + e0)
    dX = v["k_T_per_day"] * (u["tam"] - s["X"])
    # 6.2
    p_l = (1 + v["alpha_L"] * (1 - s_e)) / (1 + v["alpha_L"] * (1 - s_e0))
    p_o = (1 + v["alpha_O"] * s_e) / (1 + v["alpha_O"] * s_e0) * s["b"]
    c_nm = 1e6 * (s["Dc"] / v["den.vc_l"]) / (v["denosumab_mw_kda"] * 1000)
    th_o, th_k, k_l = v["theta_O"], v["theta_K"], v["kappa_L"]
    free = p_l * (1 + th_o + th_k) / (1 + th_o * p_o + th_k + v["theta_D_per_nM"] * c_nm)
    f_l = free * (1 + k_l) / (1 + k_l * free)
    # 6.3
    a_l = (1 + v["s_L"]) / (1 + v["s_L"] * f_l)
    e_bp = 0.0
    for k, drug in enumerate(BP_DRUGS):
        x = (s["As"][k] / v[f"bp.{drug}.ec50_mg"]) ** v["n_bp"]
        e_bp += x / (1 + x)
    e_bp *= v["emax_bp"]
    dp = v["k_p_per_day"] * (f_l - s["p"])
    # 6.3.1 osteomorphs (McDonald 2021): fission of the blockade-added removal, re-fusion
    refusion = v["osteomorph_refusion_per_day"] * f_l ** v["osteomorph_refusion_hill"]
    fission = (
        v["osteomorph_share"]
        * v["k_c_per_day"]
        * max(a_l - 1, 0.0)
        * max(1 - f_l, 0.0) ** 2
        * s["c"]
    )
    dW = fission - (refusion + v["osteomorph_death_per_day"]) * s["W"]
    dc = v["k_c_per_day"] * (s["p"] - a_l * (1 + e_bp) * s["c"]) + refusion * s["W"]
    dq = v["k_q_per_day"] * (s["c"] ** v["gamma_T"] - s["q"])
    db = v["k_b_per_day"] * (s["q"] - s["b"])
    # 6.4
    dY, dO = [], []
    for j, tag in enumerate(("t", "c")):
        rho = v[f"rho_{tag}_per_year"] * per_day
        vol = s["Y"][j] + s["O"][j]
        resorb = rho * s["c"] * vol ** v[f"nu_{tag}"]
        delta = v[f"delta0_{tag}"] * v["m_life"] * ageing + v[f"deltaE_{tag}"] * (s_e0 - s_e) / s_e0
        form = rho * (s["b"] * (1 - min(delta, 1.0)) + v[f"modeling_{tag}"] * max(1 - s["c"], 0))
        kappa = v["kappa_per_year"] * per_day
        dY.append(form - kappa * s["Y"][j] - resorb * s["Y"][j] / vol)
        dO.append(kappa * s["Y"][j] - resorb * s["O"][j] / vol)
    # 6.6
    f_bur, k_rel = v["bp_burial_share"], v["bp_release_per_year"] * per_day
    dAs, dAb = [], []
    for k, drug in enumerate(BP_DRUGS):
        a_s, a_b = s["As"][k], s["Ab"][k]
        f_bone = v[f"bp.{drug}.f_bone"]
        k_s = math.log(2) / v[f"bp.{drug}.t_s_days"]
        dAs.append(-k_s * (f_bur * s["b"] + 1 - f_bur) * a_s + f_bone * k_rel * s["c"] * a_b)
        dAb.append(k_s * f_bur * s["b"] * a_s - k_rel * s["c"] * a_b)
    # 6.7
    conc = s["Dc"] / v["den.vc_l"]
    exchange = v["den.q_l_per_day"] * (conc - s["Dp"] / v["den.vp_l"])
    dDsc = -v["den.ka_per_day"] * s["Dsc"]
    dDc = (
        v["den.ka_per_day"] * s["Dsc"]
        - v["den.cl_l_per_day"] / v["den.vc_l"] * s["Dc"]
        - v["den.vmax_mg_per_day"] * conc / (v["den.km_mg_l"] + conc)
        - exchange
    )
    return {
        "p": dp,
        "c": dc,
        "osteomorphs": dW,
        "q": dq,
        "b": db,
        "young": dY,
        "old": dO,
        "tamoxifen": dX,
        "bp_surface_mg": dAs,
        "bp_buried_mg": dAb,
        "den_depot_mg": dDsc,
        "den_central_mg": dDc,
        "den_peripheral_mg": exchange,
    }


_unit = st.floats(0.0, 1.0)
_cells = st.floats(0.05, 3.0)


@settings(max_examples=60, deadline=None)
@given(
    premenopausal=st.booleans(),
    cells=st.tuples(_cells, _cells, _cells, _cells),
    osteomorphs=st.floats(0.0, 20.0),
    young=st.tuples(st.floats(0.005, 0.3), st.floats(0.0005, 0.1)),
    old=st.tuples(st.floats(0.3, 1.2), st.floats(0.3, 1.2)),
    tam_state=_unit,
    surface=st.lists(st.floats(0.0, 5.0), min_size=4, max_size=4),
    buried=st.lists(st.floats(0.0, 20.0), min_size=4, max_size=4),
    den=st.tuples(st.floats(0.0, 50.0), st.floats(0.0, 30.0), st.floats(0.0, 20.0)),
    ai=st.floats(0.0, 0.97),
    ofs=_unit,
    tam=_unit,
)
def test_derivatives_match_the_specification(
    params,
    premenopausal,
    cells,
    osteomorphs,
    young,
    old,
    tam_state,
    surface,
    buried,
    den,
    ai,
    ofs,
    tam,
):
    """derivatives() equals an independent transcription of docs/model/equations.md sections 6.1-6.7
    (rel 1e-10)."""
    v = {  # an osteomorph reservoir that acts, whatever the shipped set holds
        **params.values(),
        "osteomorph_share": 0.8,
        "osteomorph_refusion_per_day": 0.02,
        "osteomorph_death_per_day": 0.001,
        "osteomorph_refusion_hill": 3.0,
    }
    fmp = math.inf if premenopausal else -math.inf
    e2_base = v["e2_pre_pg_ml"] if premenopausal else v["e2_post_pg_ml"]
    const = ModelConstants.from_values(v, 1, fmp, BP_DRUGS, 58.0)
    p, c, q, b = cells
    state = ModelState(
        p=np.array([p]),
        c=np.array([c]),
        osteomorphs=np.array([osteomorphs]),
        q=np.array([q]),
        b=np.array([b]),
        young=np.array(young, dtype=float).reshape(2, 1),
        old=np.array(old, dtype=float).reshape(2, 1),
        tamoxifen=np.array([tam_state]),
        bp_surface_mg=np.array(surface).reshape(4, 1),
        bp_buried_mg=np.array(buried).reshape(4, 1),
        den_depot_mg=np.array([den[0]]),
        den_central_mg=np.array([den[1]]),
        den_peripheral_mg=np.array([den[2]]),
    )
    inputs = ModelInputs(
        ai_suppression=np.array([ai]),
        ovarian_suppression=np.array([ofs]),
        tamoxifen=np.array([tam]),
    )
    got = derivatives(const, state, inputs, 100.0)
    expected = _spec_rhs(
        v,
        e2_base,
        {
            "p": p,
            "c": c,
            "W": osteomorphs,
            "q": q,
            "b": b,
            "Y": young,
            "O": old,
            "X": tam_state,
            "As": surface,
            "Ab": buried,
            "Dsc": den[0],
            "Dc": den[1],
            "Dp": den[2],
        },
        {"ai": ai, "ofs": ofs, "tam": tam},
        58.0 + 100.0 / 365.25,
    )
    for name, value in expected.items():
        np.testing.assert_allclose(
            np.ravel(getattr(got, name)),
            np.ravel(np.asarray(value, dtype=float)),
            rtol=1e-10,
            atol=1e-14,
            err_msg=name,
        )


# --------------------------------------------------------------------------------------------
# Exact linear-pair step used for bone pools, bisphosphonate pools and denosumab PK
# --------------------------------------------------------------------------------------------

_rate = st.floats(0.0, 2.0)


@settings(max_examples=200, deadline=None)
@given(
    x=st.floats(0.0, 10.0),
    y=st.floats(0.0, 10.0),
    a=_rate,
    d=_rate,
    e=_rate,
    g=_rate,
    dt=st.sampled_from([0.05, 0.1, 1.0, 7.0]),
)
def test_linear_pair_step_is_the_matrix_exponential(x, y, a, d, e, g, dt):
    """x' = -a x + d y, y' = e x - g y advanced exactly (checked against scipy's expm)."""
    got = _linear_pair_step(
        np.array([x]), np.array([y]), np.array([a]), np.array([d]), np.array([e]), np.array([g]), dt
    )
    expected = expm(np.array([[-a, d], [e, -g]]) * dt) @ np.array([x, y])
    np.testing.assert_allclose(np.ravel(got), expected, rtol=1e-9, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(a=st.floats(1e-4, 2.0), g=st.floats(1e-4, 2.0), x=st.floats(0.1, 10.0), y=st.floats(0, 10))
def test_linear_pair_step_conserves_mass_for_a_closed_pair(a, g, x, y):
    """With every loss going to the other pool (d = g, e = a) the total is unchanged."""
    new_x, new_y = _linear_pair_step(
        np.array([x]),
        np.array([y]),
        np.array([a]),
        np.array([g]),
        np.array([a]),
        np.array([g]),
        1.0,
    )
    assert float(new_x[0] + new_y[0]) == pytest.approx(x + y, rel=1e-13)


def test_a_copy_with_other_rates_does_not_reuse_cached_step_factors(typical_patient):
    """dataclasses.replace(const, k_p=...) must not inherit the cached exp(-k dt) factors."""
    const = ModelConstants.from_values(
        typical_patient.values,
        typical_patient.n,
        typical_patient.fmp_day,
        (),
        typical_patient.age_years,
    )
    decay, _ = const.constant_rate_step("p", const.k_p, 1.0)
    faster = dataclasses.replace(const, k_p=const.k_p * 10)
    decay_fast, _ = faster.constant_rate_step("p", faster.k_p, 1.0)
    np.testing.assert_allclose(decay_fast, np.exp(-const.k_p * 10))
    assert decay_fast[0] < decay[0]
