"""SBML export of one patient's model and dosing (SBML Level 3 Version 2, via libsbml).

The document holds the continuous right-hand side of :func:`bonecast.simulation.model.derivatives`
for one patient: every state of :class:`~bonecast.simulation.model.ModelState` is a parameter
with a rate rule, the algebraic quantities of docs/model/equations.md sections 6.1-6.5 are
assignment rules, every model constant is a named constant parameter (its unit in its notes), and
the regimen becomes events: exposures (aromatase-inhibitor suppression, ovarian suppression,
tamoxifen, a man's absorbed testosterone replacement) are parameters
switched on the days they change, and each dose day is an event adding the deposited amount
(dose x bioavailability x f_bone for a bisphosphonate, dose x F for denosumab).

Doses and exposures come from the same :class:`~bonecast.simulation.regimens.CompiledRegimen` the
solvers use, so the exported model sees the doses :func:`~bonecast.simulation.solver.simulate`
and :func:`~bonecast.simulation.solver.simulate_reference` apply (a typical patient receives the
expected oral dose). Time is in days, drug amounts in mg, volumes in L.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import libsbml
import numpy as np

from bonecast.simulation.model import Array, ModelInputs, ModelState, mineral
from bonecast.simulation.parameters import SITES
from bonecast.simulation.population import VirtualPopulation
from bonecast.simulation.regimens import Treatment
from bonecast.simulation.solver import _constants, _regimen

COMPARTMENTS = ("t", "c")
"""Suffixes of the trabecular and cortical compartments."""
SITE_IDS = {"lumbar_spine": "LS", "total_hip": "TH", "femoral_neck": "FN"}
"""Short SBML suffix of each BMD site."""
EXPOSURES = {
    "ai_suppression": "AI_supp",
    "ovarian_suppression": "OFS",
    "tamoxifen": "TAM",
    "testosterone_mg_per_day": "T_exo",
}
"""ModelInputs field -> SBML id of the piecewise-constant exposure."""


XHTML = "http://www.w3.org/1999/xhtml"


class SbmlExportError(ValueError):
    """The model or regimen cannot be written as SBML (or libsbml rejected the document)."""


def _check(code: int, what: str) -> None:
    if code != libsbml.LIBSBML_OPERATION_SUCCESS:
        raise SbmlExportError(f"libsbml: {what}: {libsbml.OperationReturnValue_toString(code)}")


class _Builder:
    """Adds parameters, rules and events to a libsbml model (time unit: day)."""

    def __init__(self, model_id: str, name: str) -> None:
        self.document = libsbml.SBMLDocument(3, 2)
        self.model = self.document.createModel()
        self.model.setId(model_id)
        self.model.setName(name)
        day = self.model.createUnitDefinition()
        day.setId("day")
        unit = day.createUnit()
        unit.setKind(libsbml.UNIT_KIND_SECOND)
        unit.setExponent(1)
        unit.setScale(0)
        unit.setMultiplier(86400.0)
        _check(self.model.setTimeUnits("day"), "time units")

    def _parameter(
        self, sid: str, value: float | None, constant: bool, unit: str, note: str
    ) -> None:
        parameter = self.model.createParameter()
        parameter.setId(sid)
        if value is not None:
            parameter.setValue(value)
        parameter.setConstant(constant)
        text = html.escape(f"{note} [unit: {unit}]")
        _check(parameter.setNotes(f'<body xmlns="{XHTML}"><p>{text}</p></body>'), f"notes of {sid}")

    def _math(self, formula: str) -> libsbml.ASTNode:
        ast = libsbml.parseL3Formula(formula)
        if ast is None:
            raise SbmlExportError(
                f"libsbml cannot parse {formula!r}: {libsbml.getLastParseL3Error()}"
            )
        return ast

    def constant(self, sid: str, value: float, unit: str, note: str) -> None:
        """A model constant."""
        self._parameter(sid, value, True, unit, note)

    def switched(self, sid: str, initial: float, note: str) -> None:
        """A piecewise-constant input, changed only by events."""
        self._parameter(sid, initial, False, "dimensionless", note)

    def state(self, sid: str, initial: float, rate: str, unit: str, note: str) -> None:
        """A state variable with the rate rule ``d sid / dt = rate`` (per day)."""
        self._parameter(sid, initial, False, unit, note)
        rule = self.model.createRateRule()
        rule.setVariable(sid)
        _check(rule.setMath(self._math(rate)), f"rate rule of {sid}")

    def assign(self, sid: str, formula: str, unit: str, note: str) -> None:
        """An algebraic quantity ``sid = formula``."""
        self._parameter(sid, None, False, unit, note)
        rule = self.model.createAssignmentRule()
        rule.setVariable(sid)
        _check(rule.setMath(self._math(formula)), f"assignment rule of {sid}")

    def event(self, sid: str, day: int, assignments: dict[str, str]) -> None:
        """An event at ``day`` (it also fires at t = 0) applying ``target = formula``."""
        event = self.model.createEvent()
        event.setId(sid)
        event.setUseValuesFromTriggerTime(True)
        trigger = event.createTrigger()
        trigger.setInitialValue(False)
        trigger.setPersistent(True)
        _check(trigger.setMath(self._math(f"time >= {day}")), f"trigger of {sid}")
        for target, formula in assignments.items():
            assignment = event.createEventAssignment()
            assignment.setVariable(target)
            _check(assignment.setMath(self._math(formula)), f"assignment of {sid}")

    def validated(self) -> str:
        """The document as SBML text, after libsbml's consistency checks found no error."""
        self.document.setConsistencyChecks(libsbml.LIBSBML_CAT_UNITS_CONSISTENCY, False)
        self.document.checkConsistency()
        problems = [
            self.document.getError(i).getMessage().strip()
            for i in range(self.document.getNumErrors())
            if self.document.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR
        ]
        if problems:
            raise SbmlExportError("invalid SBML: " + "; ".join(problems))
        text: str = libsbml.writeSBMLToString(self.document)
        return text


def _scalar(value: Array) -> float:
    return float(np.ravel(value)[0])


def to_sbml(
    population: VirtualPopulation,
    treatments: Sequence[Treatment],
    horizon_days: int,
    *,
    seed: int = 0,
    name: str = "bonecast AIBL-2C",
) -> str:
    """SBML L3V2 text of one patient (``population.n == 1``) under ``treatments``.

    Doses and exposure changes on days ``0 .. horizon_days - 1`` become events (time in days);
    ``seed`` keys the dose draws of a patient with variability, as in the solvers. Start rules
    (``start_when``) cannot be exported: they depend on the simulated T-score.
    """
    if population.n != 1:
        raise SbmlExportError("the SBML export writes one patient at a time")
    const = _constants(population, treatments)
    regimen = _regimen(
        population, [treatments], np.zeros(1, dtype=np.int64), const, seed, horizon_days
    )
    try:
        change_days = regimen.input_change_days()
    except ValueError as error:
        raise SbmlExportError(str(error)) from None
    start = ModelState.baseline(const)
    mineral0 = mineral(const, start)
    b = _Builder("bonecast_aibl2c", name)

    def c(sid: str, value: Array, unit: str, note: str) -> None:
        b.constant(sid, _scalar(value), unit, note)

    # constants (docs/model/parameters.md section 7, converted to model units)
    c("e2_pre", const.e2_pre_pg_ml, "pg/mL", "premenopausal estradiol E2_pre")
    c("e2_post", const.e2_post_pg_ml, "pg/mL", "postmenopausal estradiol E2_post")
    c("ec50_e2", const.ec50_e2_pg_ml, "pg/mL", "estradiol for half-maximal receptor activity")
    c("n_e", const.n_e, "dimensionless", "Hill exponent of estradiol")
    c("epsilon_T", const.epsilon_T, "dimensionless", "tamoxifen intrinsic agonism on bone")
    c("tau_T", const.tau_T, "dimensionless", "tamoxifen occupancy factor at 20 mg/d")
    c("k_T", const.k_T, "1/day", "tamoxifen exposure onset/offset rate")
    c("alpha_L", const.alpha_L, "dimensionless", "RANKL production sensitivity to loss of S_E")
    c("alpha_O", const.alpha_O, "dimensionless", "OPG production sensitivity to S_E")
    c("theta_O", const.theta_O, "dimensionless", "baseline OPG-bound/free RANKL ratio")
    c("theta_K", const.theta_K, "dimensionless", "baseline RANK-bound/free RANKL ratio")
    c("kappa_L", const.kappa_L, "dimensionless", "RANK signalling saturation")
    c("theta_D", const.theta_D_per_nM, "1/nM", "RANKL sequestration per nM denosumab")
    c("nM_per_mg_l", const.nM_per_mg_l, "nM/(mg/L)", "denosumab molar conversion")
    c("k_p", const.k_p, "1/day", "osteoclast precursor turnover")
    c("k_c", const.k_c, "1/day", "baseline osteoclast removal")
    c("s_L", const.s_L, "dimensionless", "maximum fold increase of osteoclast removal")
    c("k_q", const.k_q, "1/day", "pre-osteoblast maturation")
    c("k_b", const.k_b, "1/day", "active osteoblast turnover")
    c("gamma_T", const.gamma_T, "dimensionless", "coupling exponent, formation vs resorption")
    c("emax_bp", const.emax_bp, "dimensionless", "maximum bisphosphonate effect E_max,BP")
    c("n_bp", const.n_bp, "dimensionless", "Hill exponent of bisphosphonates")
    c("m_p", const.m_p, "dimensionless", "primary mineral fraction of new bone")
    c("age_deficit", const.age_deficit_per_day, "1/day", "growth of the age-related deficit")
    c("kappa", const.kappa, "1/day", "secondary mineralisation rate")
    for k, j in enumerate(COMPARTMENTS):
        c(f"rho_{j}", const.rho[k], "1/day", f"baseline turnover, compartment {j}")
        c(f"delta0_{j}", const.delta0[k], "dimensionless", f"age-related deficit at t = 0, {j}")
        c(f"deltaE_{j}", const.deltaE[k], "dimensionless", f"estrogen-dependent deficit, {j}")
        c(f"nu_{j}", const.nu[k], "dimensionless", f"mechanostat exponent, {j}")
        c(f"mu_{j}", const.modeling[k], "dimensionless", f"modeling-based formation, {j}")
        c(f"M0_{j}", mineral0[k], "dimensionless", f"baseline mineral, compartment {j}")
    for k, site in enumerate(SITES):
        c(f"f_{SITE_IDS[site]}", const.f_site[k], "dimensionless", f"trabecular share, {site}")
    for k, drug in enumerate(const.bp_drugs):
        c(f"f_oral_{drug}", const.bp_f_oral[k], "dimensionless", f"{drug} oral bioavailability")
        c(f"f_bone_{drug}", const.bp_f_bone[k], "dimensionless", f"{drug} share taken up by bone")
        c(f"ec50_{drug}", const.bp_ec50_mg[k], "mg", f"{drug} surface amount for half effect")
        c(f"k_s_{drug}", const.bp_k_surface[k], "1/day", f"{drug} surface loss rate ln2/t_s")
        c(f"f_bur_{drug}", const.bp_burial_share[k], "dimensionless", f"{drug} burial share")
        c(f"k_rel_{drug}", const.bp_k_release[k], "1/day", f"{drug} buried-drug release")
    c("den_ka", const.den_ka, "1/day", "denosumab SC absorption rate")
    c("den_F", const.den_f_sc, "dimensionless", "denosumab SC bioavailability")
    c("den_Vc", const.den_vc_l, "L", "denosumab central volume")
    c("den_Vp", const.den_vp_l, "L", "denosumab peripheral volume")
    c("den_Q", const.den_q_l_per_day, "L/day", "denosumab intercompartmental clearance")
    c("den_CL", const.den_cl_l_per_day, "L/day", "denosumab linear clearance")
    c("den_Vmax", const.den_vmax_mg_per_day, "mg/day", "denosumab Michaelis-Menten capacity")
    c("den_Km", const.den_km_mg_l, "mg/L", "denosumab Michaelis-Menten constant")
    c("S_E0", const.s_e0, "dimensionless", "untreated estrogen-receptor activity at t = 0")

    # exposures: piecewise constant, switched by events below
    inputs0 = regimen.inputs(0)
    for field, sid in EXPOSURES.items():
        b.switched(sid, _scalar(getattr(inputs0, field)), f"exposure input {field}")

    # states (docs/model/equations.md section 4) with their rate rules (6.1-6.7)
    b.state("p", 1.0, "k_p * (f_L - p)", "dimensionless", "osteoclast precursors (relative)")
    b.state("c", 1.0, "k_c * p - k_c * a_L * (1 + E_BP) * c", "dimensionless", "osteoclasts")
    b.state("q", 1.0, "k_q * (c^gamma_T - q)", "dimensionless", "pre-osteoblasts (relative)")
    b.state("b", 1.0, "k_b * (q - b)", "dimensionless", "active osteoblasts (relative)")
    for k, j in enumerate(COMPARTMENTS):
        b.state(
            f"Y_{j}",
            _scalar(start.young[k]),
            f"F_{j} - kappa * Y_{j} - R_{j} * Y_{j} / V_{j}",
            "dimensionless",
            f"young bone volume, compartment {j} (fraction of baseline volume)",
        )
        b.state(
            f"O_{j}",
            _scalar(start.old[k]),
            f"kappa * Y_{j} - R_{j} * O_{j} / V_{j}",
            "dimensionless",
            f"old bone volume, compartment {j} (fraction of baseline volume)",
        )
    b.state("X_T", 0.0, "k_T * (TAM - X_T)", "dimensionless", "tamoxifen exposure")
    for drug in const.bp_drugs:
        b.state(
            f"A_s_{drug}",
            0.0,
            f"-k_s_{drug} * (f_bur_{drug} * b + 1 - f_bur_{drug}) * A_s_{drug}"
            f" + f_bone_{drug} * k_rel_{drug} * c * A_b_{drug}",
            "mg",
            f"{drug} on the resorbable surface",
        )
        b.state(
            f"A_b_{drug}",
            0.0,
            f"k_s_{drug} * f_bur_{drug} * b * A_s_{drug} - k_rel_{drug} * c * A_b_{drug}",
            "mg",
            f"{drug} buried under new bone",
        )
    b.state("D_sc", 0.0, "-den_ka * D_sc", "mg", "denosumab SC depot")
    b.state(
        "D_c",
        0.0,
        "den_ka * D_sc - (den_CL / den_Vc) * D_c - den_Vmax * C_den / (den_Km + C_den)"
        " - den_Q * (C_den - D_p / den_Vp)",
        "mg",
        "denosumab central amount",
    )
    b.state("D_p", 0.0, "den_Q * (C_den - D_p / den_Vp)", "mg", "denosumab peripheral amount")

    # algebraic quantities (assignment rules)
    if const.e2_base_fixed is not None:
        c("E2_base", const.e2_base_fixed, "pg/mL", "untreated estradiol E2_base")
    else:
        c("fmp_day", const.fmp_day, "day", "final menstrual period (day from t = 0)")
        c("menopause_width", const.menopause_width_days, "day", "width of the menopause logistic")
        b.assign(
            "E2_base",
            "e2_post + (e2_pre - e2_post) / (1 + exp((time - fmp_day) / menopause_width))",
            "pg/mL",
            "untreated estradiol over natural menopause",
        )
    if const.has_men:
        # a man (model.py male_hormone_ratios): aromatisation of testosterone, HPG feedback
        c("T_0", const.testosterone0_ng_dl, "ng/dL", "untreated serum testosterone T_0")
        c("hpg_gain", const.hpg_gain, "dimensionless", "estradiol feedback gain on testosterone")
        c("m_AI", const.male_ai_effect, "dimensionless", "share of s_AI seen in a man's E2")
        c(
            "T_per_mg",
            const.testosterone_ng_dl_per_mg_day,
            "(ng/dL)/(mg/day)",
            "serum testosterone per absorbed mg/day (1e5 / clearance)",
        )
        b.assign("k_arom", "1 - m_AI * AI_supp", "dimensionless", "aromatase activity left")
        b.assign("x_T", "T_exo * T_per_mg / T_0", "dimensionless", "exogenous T relative to T_0")
        b.assign("u_T", "(1 - OFS) / (1 + x_T)", "dimensionless", "endogenous T production left")
        b.assign(
            "e_male",
            "k_arom * (u_T * (1 + hpg_gain) + x_T) / (1 + k_arom * u_T * hpg_gain)",
            "dimensionless",
            "estradiol relative to its untreated level",
        )
        b.assign(
            "T_serum",
            "T_0 * (u_T * (1 + hpg_gain * (1 - e_male)) + x_T)",
            "ng/dL",
            "serum testosterone",
        )
        b.assign("E2", "E2_base * e_male", "pg/mL", "serum estradiol (a man's)")
    else:
        b.assign(
            "E2",
            "(E2_base - OFS * (E2_base - e2_post)) * (1 - AI_supp)",
            "pg/mL",
            "serum estradiol",
        )
    b.assign("e_E2", "(E2 / ec50_e2)^n_e", "dimensionless", "relative estradiol activity")
    b.assign(
        "S_E",
        "(e_E2 + epsilon_T * tau_T * X_T) / (1 + e_E2 + tau_T * X_T)",
        "dimensionless",
        "estrogen-receptor activity",
    )
    b.assign(
        "P_L",
        "(1 + alpha_L * (1 - S_E)) / (1 + alpha_L * (1 - S_E0))",
        "dimensionless",
        "RANKL production (relative)",
    )
    b.assign(
        "P_O",
        "(1 + alpha_O * S_E) / (1 + alpha_O * S_E0) * b",
        "dimensionless",
        "OPG production (relative)",
    )
    b.assign("C_den", "D_c / den_Vc", "mg/L", "serum denosumab concentration (ug/mL)")
    b.assign(
        "L",
        "P_L * (1 + theta_O + theta_K)"
        " / (1 + theta_O * P_O + theta_K + theta_D * C_den * nM_per_mg_l)",
        "dimensionless",
        "free RANKL (relative)",
    )
    b.assign("f_L", "L * (1 + kappa_L) / (1 + kappa_L * L)", "dimensionless", "RANK signal")
    b.assign("a_L", "(1 + s_L) / (1 + s_L * f_L)", "dimensionless", "osteoclast apoptosis modifier")
    occupancy = " + ".join(
        f"(A_s_{d} / ec50_{d})^n_bp / (1 + (A_s_{d} / ec50_{d})^n_bp)" for d in const.bp_drugs
    )
    b.assign(
        "E_BP",
        f"emax_bp * ({occupancy})" if occupancy else "0",
        "dimensionless",
        "bisphosphonate effect on osteoclast removal",
    )
    for j in COMPARTMENTS:
        b.assign(f"V_{j}", f"Y_{j} + O_{j}", "dimensionless", f"bone volume, compartment {j}")
        b.assign(
            f"R_{j}",
            f"rho_{j} * c * V_{j}^nu_{j}",
            "1/day",
            f"resorption, compartment {j} (fraction of baseline volume per day)",
        )
        b.assign(
            f"delta_{j}",
            f"min(delta0_{j} * exp(age_deficit * time) + deltaE_{j} * (S_E0 - S_E) / S_E0, 1)",
            "dimensionless",
            f"focal-balance deficit, compartment {j}",
        )
        b.assign(
            f"F_{j}",
            f"rho_{j} * (b * (1 - delta_{j}) + mu_{j} * max(1 - c, 0))",
            "1/day",
            f"formation, compartment {j} (fraction of baseline volume per day)",
        )
        b.assign(f"M_{j}", f"m_p * Y_{j} + O_{j}", "dimensionless", f"mineral, compartment {j}")
    for site, short in SITE_IDS.items():
        b.assign(
            f"BMD_{short}",
            f"f_{short} * M_t / M0_t + (1 - f_{short}) * M_c / M0_c",
            "dimensionless",
            f"{site} BMD relative to baseline",
        )
        b.assign(
            f"pct_{short}",
            f"100 * (BMD_{short} - 1)",
            "percent",
            f"{site} BMD change from baseline",
        )

    # events: exposure switches and doses (applied at the start of their day)
    previous: ModelInputs = inputs0
    for day in change_days:
        if day == 0:
            continue
        now = regimen.inputs(day)
        switched = {
            sid: repr(_scalar(getattr(now, field)))
            for field, sid in EXPOSURES.items()
            if _scalar(getattr(now, field)) != _scalar(getattr(previous, field))
        }
        if switched:
            b.event(f"exposure_day_{day}", day, switched)
        previous = now
    for day in change_days:
        if not regimen.has_dose(day):
            continue
        dosed = ModelState.baseline(const)
        regimen.apply_doses(day, dosed)
        added = {
            f"A_s_{drug}": _scalar(dosed.bp_surface_mg[k]) for k, drug in enumerate(const.bp_drugs)
        }
        added["D_sc"] = _scalar(dosed.den_depot_mg)
        b.event(
            f"dose_day_{day}",
            day,
            {sid: f"{sid} + {amount!r}" for sid, amount in added.items() if amount > 0},
        )
    return b.validated()
