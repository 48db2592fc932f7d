"""The model written once (issue 17): every equation gives the same value in its three paths.

Each function of :mod:`bonecast.simulation.equations` is evaluated with NumPy (the reference
path), compiled by Numba with the kernel's fast math and with libm (the compiled engine) and
written as an
SBML formula that libsbml parses and a small MathML evaluator computes (the SBML export).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import fields
from typing import Any

import libsbml
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bonecast.simulation import equations
from bonecast.simulation.engine_numba import eqn, eqn_libm
from bonecast.simulation.model import ModelState
from bonecast.simulation.sbml import SBML_EQUATIONS, Formula

RELATIVE_TOLERANCE = 1e-12
"""NumPy, Numba (exp within 4 ulp, fused multiply-add) and SBML differ at rounding level only."""

_BINARY = {
    libsbml.AST_PLUS: lambda a, b: a + b,
    libsbml.AST_MINUS: lambda a, b: a - b,
    libsbml.AST_TIMES: lambda a, b: a * b,
    libsbml.AST_DIVIDE: lambda a, b: a / b,
    libsbml.AST_POWER: lambda a, b: a**b,
}


def _evaluate(node: libsbml.ASTNode, values: dict[str, float]) -> float:
    """Value of a parsed SBML formula (the operators and functions the equations may use)."""
    kind = node.getType()
    args = [_evaluate(node.getChild(i), values) for i in range(node.getNumChildren())]
    if kind == libsbml.AST_NAME:
        return values[node.getName()]
    if kind in (libsbml.AST_REAL, libsbml.AST_REAL_E, libsbml.AST_INTEGER):
        return float(node.getValue())
    if kind == libsbml.AST_MINUS and len(args) == 1:
        return -args[0]
    if kind in (libsbml.AST_PLUS, libsbml.AST_TIMES):
        return math.fsum(args) if kind == libsbml.AST_PLUS else math.prod(args)
    if kind in _BINARY:
        return float(_BINARY[kind](*args))
    if kind == libsbml.AST_FUNCTION_EXP:
        return math.exp(args[0])
    if kind == libsbml.AST_FUNCTION_MAX:
        return max(args)
    if kind == libsbml.AST_FUNCTION_MIN:
        return min(args)
    raise AssertionError(f"unexpected SBML math {libsbml.formulaToL3String(node)}")


def _sbml_value(name: str, args: list[float]) -> float:
    parameters = list(inspect.signature(getattr(equations, name)).parameters)
    formula = getattr(SBML_EQUATIONS, name)(*(Formula(p) for p in parameters))
    ast = libsbml.parseL3Formula(Formula.text_of(formula))
    assert ast is not None, libsbml.getLastParseL3Error()
    return _evaluate(ast, dict(zip(parameters, args, strict=True)))


@pytest.mark.parametrize("name", [f.__name__ for f in equations.EQUATIONS])
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_numpy_numba_and_sbml_give_the_same_value(name: str, data: Any) -> None:
    arity = len(inspect.signature(getattr(equations, name)).parameters)
    args = data.draw(st.lists(st.floats(0.05, 5.0), min_size=arity, max_size=arity))
    reference = float(getattr(equations, name)(*(np.float64(a) for a in args)))
    for compiled in (eqn, eqn_libm):  # the kernel's fast math; libm for per-block constants
        assert getattr(compiled, name)(*args) == pytest.approx(reference, rel=RELATIVE_TOLERANCE)
    assert _sbml_value(name, args) == pytest.approx(reference, rel=RELATIVE_TOLERANCE)


def test_published_behaviour_of_the_shared_equations() -> None:
    """A few values a reader can check by hand (docs/model/equations.md sections 6.1-6.4)."""
    # tamoxifen alone at full occupancy (tau_T X_T >> 1) gives S_E -> epsilon_T
    assert equations.estrogen_receptor_activity(0.0, 1.0, 1e9, 0.3) == pytest.approx(0.3)
    # at baseline production and no denosumab, free RANKL is 1 (normalised quasi-steady state)
    assert equations.free_rankl(1.0, 1.0, 0.0, 2.0, 0.5, 1.0, 6.7) == pytest.approx(1.0)
    # formation never negative, however large the deficit; modeling only below baseline c
    assert equations.bone_formation(0.1, 1.0, 3.0, 0.05, 1.5) == 0.0
    assert equations.bone_formation(0.1, 1.0, 0.0, 0.05, 0.2) == pytest.approx(0.1 * 1.04)
    # osteomorphs (McDonald 2021): no fission at or above baseline RANK signalling (a_L <= 1),
    # the share phi_W (1 - f_L)^2 of the added removal below it; re-fusion at k_W when
    # signalling is at baseline
    assert equations.osteoclast_fission(0.07, 1.0, 1.0, 0.9) == 0.0
    assert equations.osteoclast_fission(0.07, 0.6, 1.4, 0.9) == 0.0
    assert equations.osteoclast_fission(0.07, 3.0, 0.0, 0.5) == pytest.approx(0.07)
    assert equations.osteoclast_fission(0.07, 3.0, 0.9, 0.5) == pytest.approx(0.0007)
    assert equations.osteomorph_refusion(0.02, 1.0, 8.0) == pytest.approx(0.02)
    assert equations.osteomorph_refusion(0.02, 0.5, 8.0) == pytest.approx(0.02 / 256)


def test_the_state_table_lists_every_model_state_in_order() -> None:
    assert [s.field for s in equations.STATES] == [f.name for f in fields(ModelState)]


def test_a_math_namespace_must_be_complete() -> None:
    with pytest.raises(ValueError, match="maximum"):
        equations.with_math({"exp": math.exp, "power": math.pow, "minimum": min})


def test_formulas_leave_out_identities_and_parenthesise_compounds() -> None:
    x, y = Formula("x"), Formula("y")
    assert Formula.text_of(1.0 * x + 0.0) == "x"
    assert Formula.text_of((x + y) * 2.0) == "(x + y) * 2.0"
    assert Formula.text_of(-(x - y) / x**y) == "(-(x - y)) / (x ^ y)"
