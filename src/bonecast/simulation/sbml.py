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
import re
from collections.abc import Sequence

import libsbml
import numpy as np

from bonecast.simulation import equations
from bonecast.simulation.equations import STATES
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


class Formula:
    """A symbolic value: arithmetic on it records an SBML Level 3 infix formula.

    The equations of :mod:`bonecast.simulation.equations` evaluated on formulas (with
    :data:`SBML_MATH` as their math namespace) give their SBML text, so the export writes no
    equation by hand. Every compound operand is parenthesised; libsbml parses the text into
    MathML.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Formula({self.text!r})"

    @staticmethod
    def text_of(value: Formula | float) -> str:
        """The formula text of a formula or a number."""
        return value.text if isinstance(value, Formula) else repr(float(value))

    @staticmethod
    def operand(value: Formula | float) -> str:
        """The text of ``value`` as an operand: a name, a number or a parenthesised formula."""
        text = Formula.text_of(value)
        return text if _ATOM.fullmatch(text) else f"({text})"

    @classmethod
    def binary(cls, left: Formula | float, op: str, right: Formula | float) -> Formula | float:
        """``left op right``, leaving out an identity (``x * 1``, ``1 * x``, ``x + 0``, ...)."""
        if isinstance(right, float | int) and (op, right) in {
            ("*", 1),
            ("/", 1),
            ("+", 0),
            ("-", 0),
        }:
            return left
        if isinstance(left, float | int) and (left, op) in {(1, "*"), (0, "+")}:
            return right
        return cls(f"{cls.operand(left)} {op} {cls.operand(right)}")

    @classmethod
    def call(cls, function: str, *args: Formula | float) -> Formula:
        """An SBML L3 function call, e.g. ``exp(x)``."""
        return cls(f"{function}({', '.join(cls.operand(a) for a in args)})")

    def __add__(self, other: Formula | float) -> Formula | float:
        return Formula.binary(self, "+", other)

    def __radd__(self, other: Formula | float) -> Formula | float:
        return Formula.binary(other, "+", self)

    def __sub__(self, other: Formula | float) -> Formula | float:
        return Formula.binary(self, "-", other)

    def __rsub__(self, other: Formula | float) -> Formula | float:
        return Formula.binary(other, "-", self)

    def __mul__(self, other: Formula | float) -> Formula | float:
        return Formula.binary(self, "*", other)

    def __rmul__(self, other: Formula | float) -> Formula | float:
        return Formula.binary(other, "*", self)

    def __truediv__(self, other: Formula | float) -> Formula | float:
        return Formula.binary(self, "/", other)

    def __rtruediv__(self, other: Formula | float) -> Formula | float:
        return Formula.binary(other, "/", self)

    def __pow__(self, other: Formula | float) -> Formula | float:
        return Formula.binary(self, "^", other)

    def __neg__(self) -> Formula:
        return Formula(f"-{Formula.operand(self)}")


_ATOM = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9.]+(e[+-]?[0-9]+)?")
"""A name or an unsigned number: an operand that needs no parentheses."""

SBML_MATH = {
    "exp": lambda x: Formula.call("exp", x),
    "power": lambda x, n: Formula.binary(x, "^", n),
    "maximum": lambda x, y: Formula.call("max", x, y),
    "minimum": lambda x, y: Formula.call("min", x, y),
}
"""The math namespace of the equations in SBML L3 infix."""
SBML_EQUATIONS = equations.with_math(SBML_MATH)
"""The model's equations writing SBML formulas."""


class _Ids:
    """``v.name`` is the formula of the SBML id ``name``."""

    def __getattr__(self, name: str) -> Formula:
        return Formula(name)


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
    v = _Ids()

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
    c("phi_W", const.phi_W, "dimensionless", "share of RANKL-blockade removal that is fission")
    c("k_W", const.k_W, "1/day", "osteomorph re-fusion at baseline RANK signalling")
    c("k_Wd", const.k_Wd, "1/day", "osteomorph death")
    c("n_W", const.n_W, "dimensionless", "Hill exponent of osteomorph re-fusion")
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

    # algebraic quantities (assignment rules), each the equation of
    # bonecast.simulation.equations evaluated on the SBML ids of its inputs
    def assign(sid: str, formula: Formula | float, unit: str, note: str) -> Formula:
        b.assign(sid, Formula.text_of(formula), unit, note)
        return Formula(sid)

    if const.e2_base_fixed is not None:
        c("E2_base", const.e2_base_fixed, "pg/mL", "untreated estradiol E2_base")
        e2_base = Formula("E2_base")
    else:
        c("fmp_day", const.fmp_day, "day", "final menstrual period (day from t = 0)")
        c("menopause_width", const.menopause_width_days, "day", "width of the menopause logistic")
        e2_base = assign(
            "E2_base",
            SBML_EQUATIONS.untreated_estradiol(
                v.time, v.e2_pre, v.e2_post, v.fmp_day, v.menopause_width
            ),
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
        k_arom = assign(
            "k_arom",
            SBML_EQUATIONS.aromatase_activity(v.AI_supp, v.m_AI),
            "dimensionless",
            "aromatase activity left",
        )
        x_t = assign(
            "x_T",
            SBML_EQUATIONS.exogenous_testosterone_ratio(v.T_exo, v.T_per_mg, v.T_0),
            "dimensionless",
            "exogenous T relative to T_0",
        )
        u_t = assign(
            "u_T",
            SBML_EQUATIONS.endogenous_testosterone_share(v.OFS, x_t),
            "dimensionless",
            "endogenous T production left",
        )
        e_male = assign(
            "e_male",
            SBML_EQUATIONS.male_estradiol_ratio(k_arom, u_t, x_t, v.hpg_gain),
            "dimensionless",
            "estradiol relative to its untreated level",
        )
        assign(
            "T_serum",
            v.T_0 * SBML_EQUATIONS.male_testosterone_ratio(e_male, u_t, x_t, v.hpg_gain),
            "ng/dL",
            "serum testosterone",
        )
        e2 = assign(
            "E2",
            SBML_EQUATIONS.male_estradiol(e2_base, e_male),
            "pg/mL",
            "serum estradiol (a man's)",
        )
    else:
        e2 = assign(
            "E2",
            SBML_EQUATIONS.female_estradiol(e2_base, v.e2_post, v.OFS, v.AI_supp),
            "pg/mL",
            "serum estradiol",
        )
    e_e2 = assign(
        "e_E2",
        SBML_EQUATIONS.estradiol_activity(e2, v.ec50_e2, v.n_e),
        "dimensionless",
        "relative estradiol activity",
    )
    s_e = assign(
        "S_E",
        SBML_EQUATIONS.estrogen_receptor_activity(e_e2, v.X_T, v.tau_T, v.epsilon_T),
        "dimensionless",
        "estrogen-receptor activity",
    )
    rankl0 = SBML_EQUATIONS.rankl_production(v.S_E0, v.alpha_L, 1.0)
    p_l = assign(
        "P_L",
        SBML_EQUATIONS.rankl_production(s_e, v.alpha_L, 1.0 / rankl0),
        "dimensionless",
        "RANKL production (relative)",
    )
    opg0 = SBML_EQUATIONS.opg_production(v.S_E0, 1.0, v.alpha_O, 1.0)
    p_o = assign(
        "P_O",
        SBML_EQUATIONS.opg_production(s_e, v.b, v.alpha_O, 1.0 / opg0),
        "dimensionless",
        "OPG production (relative)",
    )
    c_den = assign(
        "C_den",
        SBML_EQUATIONS.denosumab_concentration(v.D_c, v.den_Vc),
        "mg/L",
        "serum denosumab concentration (ug/mL)",
    )
    free = assign(
        "L",
        SBML_EQUATIONS.free_rankl(p_l, p_o, c_den, v.theta_O, v.theta_K, v.theta_D, v.nM_per_mg_l),
        "dimensionless",
        "free RANKL (relative)",
    )
    f_l = assign("f_L", SBML_EQUATIONS.rank_signal(free, v.kappa_L), "dimensionless", "RANK signal")
    a_l = assign(
        "a_L",
        SBML_EQUATIONS.osteoclast_apoptosis(f_l, v.s_L),
        "dimensionless",
        "osteoclast apoptosis modifier",
    )
    occupancy: Formula | float = 0.0
    for drug in const.bp_drugs:
        occupancy = occupancy + SBML_EQUATIONS.bisphosphonate_occupancy(
            Formula(f"A_s_{drug}"), Formula(f"ec50_{drug}"), v.n_bp
        )
    e_bp = assign(
        "E_BP",
        SBML_EQUATIONS.bisphosphonate_effect(v.emax_bp, occupancy),
        "dimensionless",
        "bisphosphonate effect on osteoclast removal",
    )
    ageing = SBML_EQUATIONS.ageing_factor(v.age_deficit, v.time)
    rates: dict[str, Formula | float] = {}
    for j in COMPARTMENTS:
        rho_j, young, old = Formula(f"rho_{j}"), Formula(f"Y_{j}"), Formula(f"O_{j}")
        volume = assign(f"V_{j}", young + old, "dimensionless", f"bone volume, compartment {j}")
        turnover = assign(
            f"r_{j}",
            SBML_EQUATIONS.resorption_rate(rho_j, v.c, volume, Formula(f"nu_{j}")),
            "1/day",
            f"fractional resorption R_{j} / V_{j}, compartment {j}",
        )
        deficit = assign(
            f"delta_{j}",
            SBML_EQUATIONS.focal_deficit(
                Formula(f"delta0_{j}"), ageing, Formula(f"deltaE_{j}"), s_e, v.S_E0, 1.0 / v.S_E0
            ),
            "dimensionless",
            f"focal-balance deficit, compartment {j}",
        )
        formation = assign(
            f"F_{j}",
            SBML_EQUATIONS.bone_formation(rho_j, v.b, deficit, Formula(f"mu_{j}"), v.c),
            "1/day",
            f"formation, compartment {j} (fraction of baseline volume per day)",
        )
        assign(
            f"M_{j}",
            SBML_EQUATIONS.mineral(v.m_p, young, old),
            "dimensionless",
            f"mineral, compartment {j}",
        )
        rates[f"Y_{j}"] = SBML_EQUATIONS.young_bone_rate(formation, v.kappa, turnover, young)
        rates[f"O_{j}"] = SBML_EQUATIONS.old_bone_rate(v.kappa, turnover, young, old)
    for site, short in SITE_IDS.items():
        ratio = assign(
            f"BMD_{short}",
            SBML_EQUATIONS.bmd_ratio(
                Formula(f"f_{short}"),
                Formula("M_t") / Formula("M0_t"),
                Formula("M_c") / Formula("M0_c"),
            ),
            "dimensionless",
            f"{site} BMD relative to baseline",
        )
        assign(f"pct_{short}", 100.0 * (ratio - 1.0), "percent", f"{site} BMD change from baseline")

    # states (docs/model/equations.md section 4) with their rate rules (6.1-6.7)
    rates["p"] = SBML_EQUATIONS.first_order_rate(
        SBML_EQUATIONS.precursor_production(v.k_p, f_l), v.k_p, Formula("p")
    )
    refusion = assign(
        "refusion_W",
        SBML_EQUATIONS.osteomorph_refusion(v.k_W, f_l, v.n_W),
        "1/day",
        "osteomorph re-fusion rate",
    )
    rates["c"] = SBML_EQUATIONS.first_order_rate(
        SBML_EQUATIONS.osteoclast_production(v.k_c, Formula("p"), refusion, v.W),
        SBML_EQUATIONS.osteoclast_loss(v.k_c, a_l, e_bp),
        v.c,
    )
    rates["W"] = SBML_EQUATIONS.first_order_rate(
        SBML_EQUATIONS.osteoclast_fission(v.k_c, a_l, f_l, v.phi_W) * v.c,
        SBML_EQUATIONS.osteomorph_loss(refusion, v.k_Wd),
        v.W,
    )
    rates["q"] = SBML_EQUATIONS.first_order_rate(
        SBML_EQUATIONS.preosteoblast_production(v.k_q, v.c, v.gamma_T), v.k_q, Formula("q")
    )
    rates["b"] = SBML_EQUATIONS.first_order_rate(
        SBML_EQUATIONS.osteoblast_production(v.k_b, Formula("q")), v.k_b, v.b
    )
    rates["X_T"] = SBML_EQUATIONS.first_order_rate(
        SBML_EQUATIONS.tamoxifen_production(v.k_T, v.TAM), v.k_T, v.X_T
    )
    for drug in const.bp_drugs:
        surface, buried = Formula(f"A_s_{drug}"), Formula(f"A_b_{drug}")
        k_s, f_bur, k_rel = (
            Formula(f"k_s_{drug}"),
            Formula(f"f_bur_{drug}"),
            Formula(f"k_rel_{drug}"),
        )
        rates[f"A_s_{drug}"] = SBML_EQUATIONS.pair_rate_first(
            SBML_EQUATIONS.bp_surface_loss(k_s, f_bur, v.b),
            SBML_EQUATIONS.bp_release_to_surface(Formula(f"f_bone_{drug}"), k_rel, v.c),
            surface,
            buried,
        )
        rates[f"A_b_{drug}"] = SBML_EQUATIONS.pair_rate_second(
            SBML_EQUATIONS.bp_burial(k_s, f_bur, v.b),
            SBML_EQUATIONS.bp_release(k_rel, v.c),
            surface,
            buried,
        )
    to_central = SBML_EQUATIONS.compartment_transfer(v.den_Q, v.den_Vp)
    absorbed = SBML_EQUATIONS.depot_absorption(v.den_ka, v.D_sc)
    rates["D_sc"] = SBML_EQUATIONS.first_order_rate(0.0, v.den_ka, v.D_sc)
    rates["D_c"] = SBML_EQUATIONS.first_order_rate(
        absorbed + to_central * v.D_p,
        SBML_EQUATIONS.denosumab_central_loss(
            c_den, v.den_Vc, v.den_Q, v.den_CL, v.den_Vmax, v.den_Km
        ),
        v.D_c,
    )
    rates["D_p"] = SBML_EQUATIONS.first_order_rate(
        SBML_EQUATIONS.compartment_transfer(v.den_Q, v.den_Vc) * v.D_c, to_central, v.D_p
    )
    for state in STATES:
        initial = np.reshape(getattr(start, state.field), (-1,))
        names = (
            COMPARTMENTS
            if "{j}" in state.sbml_id
            else const.bp_drugs
            if "{drug}" in state.sbml_id
            else ("",)
        )
        for k, name in enumerate(names):
            sid = state.sbml_id.format(j=name, drug=name)
            b.state(
                sid,
                float(initial[k]),
                Formula.text_of(rates[sid]),
                state.unit,
                state.description.format(j=name, drug=name),
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
