"""Vectorisable ``exp``, ``expm1`` and ``log`` for the compiled engine (Numba, float64).

LLVM can turn a loop over patients into SIMD code (AVX2/AVX-512) only when every call in it has
a vector form; libm's ``exp``/``expm1``/``log`` have none in Numba without Intel SVML, and they
were most of the compiled engine's time. These are the classic fdlibm reductions (Cody-Waite
``x = k ln2 + r``; ``log(1 + f) = 2 atanh(f / (2 + f))``) with Taylor polynomials that are
truncated beyond double precision, written with plain arithmetic and bit casts so that they
inline and vectorise.

Accuracy: at most 2 ulp from libm where measured (tests/simulation/test_numba_math.py asserts
4 ulp, relative 1e-15, over the model's ranges); the truncated terms are below 1e-17 relative.
Domain: ``exp``/``expm1`` clamp their argument to [-708, 709] (no overflow, no subnormals);
``log`` is for positive normal numbers (``log(0)`` returns about -709.1, not ``-inf``).

Sources: Sun fdlibm ``e_exp.c``, ``s_expm1.c``, ``e_log.c`` (range reduction and the split of
ln 2); Muller, *Elementary Functions*, 3rd ed. (2016), chapters 11-12.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final, cast

from numba import njit, types
from numba.extending import intrinsic

LN2_HI: Final = 6.93147180369123816490e-01
"""High part of ln 2 (fdlibm): its low 32 bits are zero, so ``k * LN2_HI`` is exact."""
LN2_LO: Final = 1.90821492927058770002e-10
"""ln 2 - LN2_HI."""
LOG2_E: Final = 1.44269504088896338700e00
"""1 / ln 2."""
ROUNDING_SHIFTER: Final = 6755399441055744.0
"""1.5 * 2**52: ``(y + shifter) - shifter`` rounds ``y`` to an integer held in the low bits."""
SQRT2: Final = 1.4142135623730951
EXPONENT_BIAS: Final = 1023
MANTISSA_MASK: Final = (1 << 52) - 1
ONE_BITS: Final = EXPONENT_BIAS << 52
"""Bit pattern of 1.0."""
EXP_MIN: Final = -708.0
EXP_MAX: Final = 709.0
EXPM1_TAYLOR: Final = tuple(1.0 / math.factorial(n) for n in range(2, 14))
"""(expm1(r) - r) / r**2 = 1/2! + r/3! + ... + r**11/13! + O(r**12)."""
ATANH_TAYLOR: Final = tuple(2.0 / (2 * n + 1) for n in range(1, 13))
"""(2 atanh(s) - 2 s) / (s z) = 2/3 + 2 z/5 + ... + 2 z**11/25 + O(z**12), z = s**2."""
FUSED: Final = {"contract"}
"""The only fast-math flag used: a * b + c may become one FMA (one rounding instead of two)."""


def _bitcast(source: Any, target: Any) -> Callable[[Any, Any], Any]:
    """A Numba intrinsic that reinterprets the bits of a ``source`` value as ``target``."""

    def typer(typingctx: Any, x: Any) -> Any:
        if x != source:
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.bitcast(args[0], context.get_value_type(target))

        return target(source), codegen

    typer.__name__ = f"bitcast_{source}_to_{target}"  # Numba names the intrinsic after it
    return typer


float_bits = cast(Callable[[float], int], intrinsic(_bitcast(types.float64, types.int64)))
"""The IEEE-754 bit pattern of a float64 as an int64 (an LLVM bitcast, no conversion)."""
bits_float = cast(Callable[[int], float], intrinsic(_bitcast(types.int64, types.float64)))
"""The float64 whose IEEE-754 bit pattern is the int64 ``x`` (inverse of float_bits)."""


@njit(cache=True, error_model="numpy", fastmath=FUSED, inline="always")
def polynomial_11(x: float, c: tuple[float, ...]) -> float:
    """c[0] + c[1] x + ... + c[11] x**11 by Estrin's scheme (4 multiply-adds deep, not 11)."""
    x2 = x * x
    x4 = x2 * x2
    low = (c[0] + c[1] * x) + (c[2] + c[3] * x) * x2
    middle = (c[4] + c[5] * x) + (c[6] + c[7] * x) * x2
    high = (c[8] + c[9] * x) + (c[10] + c[11] * x) * x2
    return (low + middle * x4) + high * (x4 * x4)


@njit(cache=True, error_model="numpy", fastmath=FUSED, inline="always")
def exp_parts(x: float) -> tuple[float, float]:
    """``(2**k, expm1(r))`` with ``exp(x) = 2**k (1 + expm1(r))``, ``|r| <= ln2 / 2`` (about).

    ``x`` is clamped to [EXP_MIN, EXP_MAX]. expm1(r) is its Taylor series to r**13 (the first
    dropped term is below 2e-17 relative).
    """
    x = min(max(x, EXP_MIN), EXP_MAX)
    shifted = x * LOG2_E + ROUNDING_SHIFTER
    k = shifted - ROUNDING_SHIFTER
    r = (x - k * LN2_HI) - k * LN2_LO
    # only the low 12 bits of (k + 1023) survive the shift: exactly the biased exponent
    scale = bits_float((float_bits(shifted) + EXPONENT_BIAS) << 52)
    q = r + r * r * polynomial_11(r, EXPM1_TAYLOR)
    return scale, q


@njit(cache=True, error_model="numpy", fastmath=FUSED, inline="always")
def fast_exp(x: float) -> float:
    """exp(x), within 4 ulp of libm (argument clamped to [-708, 709])."""
    scale, q = exp_parts(x)
    return scale + scale * q


@njit(cache=True, error_model="numpy", fastmath=FUSED, inline="always")
def fast_expm1(x: float) -> float:
    """exp(x) - 1 without cancellation near 0, within 4 ulp of libm ``expm1``."""
    scale, q = exp_parts(x)
    return (scale - 1.0) + scale * q


@njit(cache=True, error_model="numpy", fastmath=FUSED, inline="always")
def fast_log(x: float) -> float:
    """Natural log of a positive normal ``x``, within 4 ulp of libm.

    ``x = 2**e m`` with ``m`` in [sqrt(2)/2, sqrt(2)); ``log(m) = log(1 + f)`` from
    ``s = f / (2 + f)`` and the series of ``2 atanh(s)`` to s**25 (|s| < 0.172; the first dropped
    term is below 1e-20 relative).
    """
    bits = float_bits(x)
    mantissa = bits_float((bits & MANTISSA_MASK) | ONE_BITS)
    big = mantissa > SQRT2
    mantissa = 0.5 * mantissa if big else mantissa
    exponent = float((bits >> 52) - EXPONENT_BIAS + (1 if big else 0))
    f = mantissa - 1.0
    s = f / (2.0 + f)
    z = s * s
    r = z * polynomial_11(z, ATANH_TAYLOR)
    half_f2 = 0.5 * f * f
    # fdlibm e_log.c: log(1 + f) = f - (f^2/2 - s (f^2/2 + R))
    return exponent * LN2_HI - ((half_f2 - (s * (half_f2 + r) + exponent * LN2_LO)) - f)


@njit(cache=True, error_model="numpy", fastmath=FUSED, inline="always")
def fast_power(x: float, n: float) -> float:
    """x ** n for x > 0 as exp(n log x); exactly x when n == 1 (Hill exponents often are)."""
    return x if n == 1.0 else fast_exp(n * fast_log(x))
