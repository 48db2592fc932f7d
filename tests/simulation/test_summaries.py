"""Exactly mergeable summaries: the same numbers for any split of a sample, close to NumPy's."""

from __future__ import annotations

import numpy as np
import pytest

from bonecast.simulation.summaries import (
    BAND_BIN_SHIFT,
    FIXED_POINT_BITS,
    ROW_BIN_SHIFT,
    Summary,
)

HALF_ROW_BIN_PP = 2.0 ** (ROW_BIN_SHIFT - FIXED_POINT_BITS - 1)


def _merged(values: np.ndarray, cuts: list[int], shift: int = ROW_BIN_SHIFT) -> Summary:
    parts = np.split(values, cuts)
    total = Summary.of(parts[0], shift)
    for part in parts[1:]:
        total = total.merge(Summary.of(part, shift))
    return total


@pytest.fixture(scope="module")
def values() -> np.ndarray:
    rng = np.random.default_rng(3)
    # a skewed sample with a far outlier: the histogram is sparse, not one dense range
    return np.concatenate([rng.normal(-4.0, 3.0, 4000), rng.exponential(2.0, 999), [900.0]])


def test_any_split_and_order_gives_identical_statistics(values: np.ndarray) -> None:
    whole = Summary.of(values)
    for cuts in ([1], [7, 2000, 2001], list(range(100, values.size, 100))):
        part = _merged(values, cuts)
        assert (part.count, part.total, part.squares) == (whole.count, whole.total, whole.squares)
        np.testing.assert_array_equal(part.bins, whole.bins)
        np.testing.assert_array_equal(part.counts, whole.counts)
        assert part.percentiles([5, 50, 95]) == whole.percentiles([5, 50, 95])
    a, b = Summary.of(values[:3000]), Summary.of(values[3000:])
    assert a.merge(b).sd == b.merge(a).sd
    assert a.merge(b).percentiles([50]) == b.merge(a).percentiles([50])


def test_statistics_match_numpy_within_the_resolution(values: np.ndarray) -> None:
    summary = _merged(values, [13, 1500, 4100])
    assert summary.mean == pytest.approx(values.mean(), abs=1e-6)
    assert summary.sd == pytest.approx(values.std(ddof=1), abs=1e-6)
    expected = np.percentile(values, [0, 5, 37.5, 50, 95, 100])
    got = summary.percentiles([0, 5, 37.5, 50, 95, 100])
    np.testing.assert_allclose(got, expected, rtol=0, atol=HALF_ROW_BIN_PP + 1e-6)


def test_band_bins_are_coarser_but_bounded(values: np.ndarray) -> None:
    coarse = _merged(values, [2500], BAND_BIN_SHIFT)
    half_bin = 2.0 ** (BAND_BIN_SHIFT - FIXED_POINT_BITS - 1)
    expected = np.percentile(values, [5, 95])
    np.testing.assert_allclose(coarse.percentiles([5, 95]), expected, atol=half_bin + 1e-6)
    assert coarse.bins.size < Summary.of(values).bins.size


def test_one_value_and_mean_only_summaries() -> None:
    one = Summary.of(np.array([-2.5]))
    assert one.mean == -2.5 and one.sd == 0.0
    assert one.percentiles([5, 50, 95]) == pytest.approx([-2.5] * 3, abs=HALF_ROW_BIN_PP)
    mean_only = Summary.of(np.array([1.0, 2.0, 4.0]), shift=None, spread=False)
    assert mean_only.mean == pytest.approx(7 / 3)
    with pytest.raises(ValueError, match="no histogram"):
        mean_only.percentiles([50])


@pytest.mark.parametrize("bad", [np.nan, np.inf, 2.0e6])
def test_values_that_cannot_be_summarised_exactly_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="cannot be summarised"):
        Summary.of(np.array([1.0, bad]))


def test_sums_of_squares_stay_exact_near_the_limit() -> None:
    """Values near +-2**20 pp would overflow int64 squares; the split keeps them exact."""
    big = np.array([1.0e6, -1.0e6 + 0.5, 999_999.25])
    fixed = [round(v * 2**FIXED_POINT_BITS) for v in big]
    summary = Summary.of(big)
    assert summary.squares == sum(q * q for q in fixed)
    assert summary.total == sum(fixed)


def test_dense_and_sparse_merges_agree(values: np.ndarray) -> None:
    """Overlapping chunks merge densely, far-apart ones through the sorted union: either way
    the histogram is the one of all the values."""
    near = Summary.of(values[:2500], BAND_BIN_SHIFT).merge(
        Summary.of(values[2500:4000], BAND_BIN_SHIFT)
    )
    np.testing.assert_array_equal(near.bins, Summary.of(values[:4000], BAND_BIN_SHIFT).bins)
    np.testing.assert_array_equal(near.counts, Summary.of(values[:4000], BAND_BIN_SHIFT).counts)
    far = Summary.of(values[:10]).merge(Summary.of(values[10:20] + 5000.0))
    together = Summary.of(np.concatenate([values[:10], values[10:20] + 5000.0]))
    np.testing.assert_array_equal(far.bins, together.bins)
    np.testing.assert_array_equal(far.counts, together.counts)
    empty = Summary.of(np.array([1.0]), shift=None, spread=False)
    assert empty.merge(empty).bins.size == 0


def test_a_pickled_summary_comes_back_identical_and_small(values: np.ndarray) -> None:
    """Chunks' summaries travel from workers to the client: exact round trip, and the
    histogram packed to a few bytes a bin instead of sixteen."""
    import pickle

    for summary in (
        Summary.of(values),
        Summary.of(values, BAND_BIN_SHIFT),
        Summary.of(values, shift=None, spread=False),
        Summary.of(np.array([-3.0])),
    ):
        back = pickle.loads(pickle.dumps(summary))
        assert (back.count, back.total, back.squares, back.shift) == (
            summary.count,
            summary.total,
            summary.squares,
            summary.shift,
        )
        assert back.bins.dtype == back.counts.dtype == np.int64
        np.testing.assert_array_equal(back.bins, summary.bins)
        np.testing.assert_array_equal(back.counts, summary.counts)
    # without the far outlier every gap and count fits one byte
    bulk = Summary.of(values[:4000])
    assert len(pickle.dumps(bulk)) < (bulk.bins.nbytes + bulk.counts.nbytes) / 4
