"""Exactly mergeable statistics of a sample: count, mean, sd and percentiles from integers.

A trial's patients are simulated in chunks, on any number of workers; each chunk reduces its
values to a :class:`Summary` and the client merges the summaries. To give the same numbers
whatever the chunking, every accumulator is an integer, so merging is exact and independent of
order:

* values (percentage points, pp) are rounded to fixed point, integers of 2**-20 pp
  (:data:`FIXED_POINT_BITS`; about 1e-6 pp, far below the 4 decimals of the result CSV);
* count, sum and sum of squares of those integers are Python ints (no overflow); mean and sd
  (ddof = 1) follow exactly from them and are rounded once, to float;
* medians and percentiles come from a sparse histogram of counts per bin of
  ``2**(shift - FIXED_POINT_BITS)`` pp: :data:`ROW_BIN_SHIFT` gives bins of 2**-10 pp (about
  0.001 pp) for the result rows and :data:`BAND_BIN_SHIFT` 2**-6 pp (about 0.016 pp) for the
  plotted bands. A percentile (NumPy's linear interpolation between order statistics, each
  taken at the centre of its bin) is within half a bin of the exact one: about 0.0005 pp in
  the rows.
  Only occupied bins are kept, so a chunk's histogram is never larger than the chunk and a
  merged one never larger than the range of the values over the bin width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bonecast.simulation.model import Array

IntArray = NDArray[np.int64]

FIXED_POINT_BITS = 20
"""Values are summed as integers of 2**-FIXED_POINT_BITS pp (about 9.5e-7 pp)."""
LIMIT_PP = 2.0**20
"""Largest accepted |value|, pp (keeps every fixed-point value below 2**40)."""
ROW_BIN_SHIFT = 10
"""Histogram bins of the result rows: 2**(10 - 20) pp, about 0.001 pp."""
BAND_BIN_SHIFT = 14
"""Histogram bins of the plotted 5-95 % bands: 2**(14 - 20) pp, about 0.016 pp."""
_SPLIT = 20  # q = high * 2**_SPLIT + low, so every partial product stays below 2**40
_BLOCK = 2**22  # at most 2**22 terms below 2**40 per int64 sum: no overflow
_DENSE = 4  # count bins densely when the occupied range is at most 4x the number of values


def to_fixed_point(values: Array) -> IntArray:
    """``values`` (pp) as integers of 2**-FIXED_POINT_BITS pp; an error if not finite or huge."""
    x = np.asarray(values, dtype=float).ravel()
    if not np.all(np.abs(x) < LIMIT_PP):  # also catches NaN
        raise ValueError(f"values outside +-{LIMIT_PP:g} pp (or not finite) cannot be summarised")
    return np.rint(x * 2.0**FIXED_POINT_BITS).astype(np.int64)


def _exact_sum(values: IntArray) -> int:
    """Sum of int64 values each below 2**40 in magnitude, as an exact Python int."""
    return sum(int(values[s : s + _BLOCK].sum()) for s in range(0, values.size, _BLOCK))


def _exact_sum_of_squares(values: IntArray) -> int:
    """Sum of squares of int64 values below 2**40 in magnitude, exactly (no int64 overflow)."""
    high = values >> _SPLIT
    low = values & ((1 << _SPLIT) - 1)
    return (
        (_exact_sum(high * high) << (2 * _SPLIT))
        + (_exact_sum(high * low) << (_SPLIT + 1))
        + _exact_sum(low * low)
    )


def _histogram(bins: IntArray) -> tuple[IntArray, IntArray]:
    """Occupied bins (sorted) and their counts."""
    if bins.size == 0:
        return bins, bins
    low = int(bins.min())
    span = int(bins.max()) - low + 1
    if span <= _DENSE * bins.size:
        counts = np.bincount(bins - low, minlength=span)
        occupied = np.flatnonzero(counts)
        return (occupied + low).astype(np.int64), counts[occupied].astype(np.int64)
    occupied, counts = np.unique(bins, return_counts=True)
    return occupied.astype(np.int64), counts.astype(np.int64)


def _merged_histogram(
    bins_a: IntArray, counts_a: IntArray, bins_b: IntArray, counts_b: IntArray
) -> tuple[IntArray, IntArray]:
    """Two sparse histograms (sorted, distinct bins) added bin by bin.

    Counted densely over the occupied range when it is at most :data:`_DENSE` times the
    bins given (the usual case: chunks of one quantity cover the same range), which is linear
    in that range; otherwise through the sorted union of the bins. Both give the same arrays.
    """
    if bins_a.size == 0 or bins_b.size == 0:
        return (bins_b, counts_b) if bins_a.size == 0 else (bins_a, counts_a)
    low = min(int(bins_a[0]), int(bins_b[0]))
    span = max(int(bins_a[-1]), int(bins_b[-1])) - low + 1
    if span <= _DENSE * (bins_a.size + bins_b.size):
        dense = np.zeros(span, dtype=np.int64)
        dense[bins_a - low] = counts_a
        dense[bins_b - low] += counts_b
        occupied = np.flatnonzero(dense)
        return occupied + low, dense[occupied]
    bins = np.union1d(bins_a, bins_b).astype(np.int64)
    counts = np.zeros(bins.size, dtype=np.int64)
    counts[np.searchsorted(bins, bins_a)] += counts_a
    counts[np.searchsorted(bins, bins_b)] += counts_b
    return bins, counts


def _smallest_unsigned(values: IntArray) -> NDArray[np.unsignedinteger[Any]]:
    """Non-negative ``values`` in the smallest unsigned integer type that holds them all."""
    top = int(values.max()) if values.size else 0
    for kind in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(kind).max:
            return values.astype(kind)
    return values.astype(np.uint64)


def _unpickled(
    count: int,
    total: int,
    squares: int,
    shift: int,
    first: int,
    gaps: NDArray[np.unsignedinteger[Any]],
    counts: NDArray[np.unsignedinteger[Any]],
) -> Summary:
    """The :class:`Summary` that :meth:`Summary.__reduce__` packed."""
    bins = np.empty(counts.size, dtype=np.int64)
    if counts.size:
        bins[0] = 0
        np.cumsum(gaps, dtype=np.int64, out=bins[1:])
        bins += first
    return Summary(count, total, squares, shift, bins, counts.astype(np.int64))


@dataclass(frozen=True)
class Summary:
    """Count, exact sums and (optionally) a sparse histogram of a sample, in fixed point.

    ``total`` and ``squares`` are the sum and sum of squares of the fixed-point values;
    ``bins``/``counts`` the occupied histogram bins (bin = value >> ``shift``) and their counts,
    empty when the summary keeps only the mean.
    """

    count: int
    total: int
    squares: int
    shift: int
    bins: IntArray
    counts: IntArray

    @classmethod
    def of(cls, values: Array, shift: int | None = ROW_BIN_SHIFT, spread: bool = True) -> Summary:
        """Summary of ``values`` (pp); ``shift=None`` keeps no histogram, ``spread=False`` no
        sum of squares (then only the mean is available)."""
        fixed = to_fixed_point(values)
        if shift is None:
            bins = counts = np.zeros(0, dtype=np.int64)
        else:
            bins, counts = _histogram(fixed >> shift)
        squares = _exact_sum_of_squares(fixed) if spread else 0
        return cls(fixed.size, _exact_sum(fixed), squares, shift or 0, bins, counts)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickle compactly (a chunk's summaries travel from worker to client): the histogram
        as its first bin, the gaps between bins and the counts, each in the smallest unsigned
        integer type that holds it (usually one byte instead of sixteen per bin)."""
        first = int(self.bins[0]) if self.bins.size else 0
        gaps = _smallest_unsigned(np.diff(self.bins))
        return (
            _unpickled,
            (
                self.count,
                self.total,
                self.squares,
                self.shift,
                first,
                gaps,
                _smallest_unsigned(self.counts),
            ),
        )

    def merge(self, other: Summary) -> Summary:
        """The summary of both samples together (exact, and the same in either order)."""
        if self.shift != other.shift:
            raise ValueError("summaries with different histogram bins cannot be merged")
        bins, counts = _merged_histogram(self.bins, self.counts, other.bins, other.counts)
        return Summary(
            self.count + other.count,
            self.total + other.total,
            self.squares + other.squares,
            self.shift,
            bins,
            counts,
        )

    @property
    def mean(self) -> float:
        """Mean, pp (the exact mean of the fixed-point values, rounded once)."""
        return self.total / (self.count << FIXED_POINT_BITS)

    @property
    def sd(self) -> float:
        """Sample standard deviation (ddof = 1; 0 for one value), pp."""
        n = self.count
        if n < 2:
            return 0.0
        variance = (n * self.squares - self.total * self.total) / (n * (n - 1))
        return math.sqrt(variance) / 2.0**FIXED_POINT_BITS

    def percentiles(self, q: Sequence[float]) -> list[float]:
        """Percentiles ``q`` (0-100), pp, as NumPy's linear method on bin centres.

        Each is within half a bin (2**(shift - 21) pp) of the exact percentile of the values.
        """
        if self.counts.size == 0:
            raise ValueError("this summary keeps no histogram")
        cumulative = np.cumsum(self.counts)
        width = 1 << self.shift
        centres = (self.bins * width + (width - 1) / 2) / 2.0**FIXED_POINT_BITS
        out = []
        for p in q:
            position = (self.count - 1) * p / 100.0
            below = int(np.floor(position))
            ranks = [below, min(below + 1, self.count - 1)]
            lower, upper = centres[np.searchsorted(cumulative, ranks, side="right")]
            out.append(float(lower + (position - below) * (upper - lower)))
        return out
