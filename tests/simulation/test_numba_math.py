"""Vectorisable exp/expm1/log of the compiled engine against NumPy's libm (issue 6, item 1)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

pytest.importorskip("numba")

from numba import njit

from bonecast.simulation.numba_math import (
    FUSED,
    fast_exp,
    fast_expm1,
    fast_log,
    fast_power,
)

Array = np.ndarray
MAX_ULP = 4.0


def _elementwise(function: Callable[[float], float]) -> Callable[[Array], Array]:
    """A compiled loop applying ``function`` to each element, with the engine's flags."""

    @njit(error_model="numpy", fastmath=FUSED)
    def apply(values: Array) -> Array:
        out = np.empty_like(values)
        for i in range(values.size):
            out[i] = function(values[i])
        return out

    return apply


def _ulp_error(got: Array, want: Array) -> float:
    return float(np.max(np.abs(got - want) / np.spacing(np.abs(want))))


RNG = np.random.default_rng(11)


@pytest.mark.parametrize("half_width", [1e-9, 1e-3, 0.35, 1.0, 30.0, 700.0])
def test_exp_and_expm1_within_4_ulp(half_width: float) -> None:
    x = RNG.uniform(-half_width, half_width, 50_000)
    assert _ulp_error(_elementwise(fast_exp)(x), np.exp(x)) <= MAX_ULP
    assert _ulp_error(_elementwise(fast_expm1)(x), np.expm1(x)) <= MAX_ULP


@pytest.mark.parametrize(("low", "high"), [(0.5, 2.0), (0.99, 1.01), (1e-300, 1e300)])
def test_log_within_4_ulp(low: float, high: float) -> None:
    x = np.exp(RNG.uniform(np.log(low), np.log(high), 50_000))
    assert _ulp_error(_elementwise(fast_log)(x), np.log(x)) <= MAX_ULP


def test_exp_clamps_instead_of_overflowing() -> None:
    """Arguments beyond [-708, 709] (e.g. +-inf for a patient without menopause) stay finite."""
    x = np.array([-np.inf, -1e9, 1e9, np.inf])
    out = _elementwise(fast_exp)(x)
    assert np.all(np.isfinite(out))
    assert out[0] == out[1] < 1e-307
    assert out[2] == out[3] > 1e307
    assert np.all(_elementwise(fast_expm1)(x[:2]) == -1.0)


def test_power_is_exact_for_exponent_one() -> None:
    x = RNG.uniform(1e-6, 10.0, 1_000)
    assert all(fast_power(v, 1.0) == v for v in x)
    assert fast_power(2.0, 0.5) == pytest.approx(np.sqrt(2.0), rel=1e-15)
