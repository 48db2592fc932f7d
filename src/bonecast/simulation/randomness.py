"""Counter-based random numbers: each draw is a pure function of (seed, stream, patient, counter).

A virtual patient's draws therefore do not depend on which other patients are simulated with her,
so results are identical whatever the population is cut into (chunks, workers). The generator is
the SplitMix64 finaliser (Steele, Lea & Flood, OOPSLA 2014) applied to a hash of the four keys;
uniforms use the top 53 bits, normals the Box-Muller transform.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtri

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


class Stream(IntEnum):
    """Independent random streams, one per use."""

    VARIABILITY = 1
    AGE = 2
    T_SCORE = 3
    ADHERENCE = 4
    ABSORPTION = 5
    RESIDUAL = 6
    DISCONTINUATION = 7
    INJECTION_DELAY = 8


def _mix(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _hash(
    seed: int, stream: int, patients: NDArray[np.int64], counter: NDArray[np.int64] | int
) -> NDArray[np.uint64]:
    key = np.full(np.shape(patients), np.uint64(seed & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    for part in (
        np.uint64(stream),
        patients.astype(np.uint64),
        np.asarray(counter).astype(np.uint64),
    ):
        key = _mix(key + _GOLDEN + part)
    return key


def uniform(
    seed: int, stream: Stream, patients: NDArray[np.int64], counter: NDArray[np.int64] | int
) -> NDArray[np.float64]:
    """Uniform draws in (0, 1), one per patient id."""
    bits = _hash(seed, int(stream), patients, counter) >> np.uint64(11)
    return (bits.astype(np.float64) + 0.5) * 2.0**-53


def standard_normal(
    seed: int, stream: Stream, patients: NDArray[np.int64], counter: NDArray[np.int64] | int
) -> NDArray[np.float64]:
    """Standard normal draws, one per patient id (inverse-CDF transform of :func:`uniform`)."""
    return np.asarray(ndtri(uniform(seed, stream, patients, counter)), dtype=np.float64)
