"""T-scores computed and rounded on the numbers as written (issue 15 item 2).

The oracle is exact rational arithmetic (:class:`fractions.Fraction`) on the BMD and the published
reference mean and SD as decimal strings, rounded half away from zero to one decimal: the number a
careful reader computes by hand. Every BMD of the 0.001 g/cm2 grid from 0.300 to 1.600 g/cm2 is
checked for every site and maker with a reference.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bonecast.clinical.patient import Measurement
from bonecast.clinical.scores import (
    WhoCategory,
    score_data,
    score_site,
    who_category,
)

GRID_MILLI = range(300, 1601)
"""The plausible BMD range in 0.001 g/cm2 steps (g/cm2 x 1000)."""
REFERENCES = [
    (site, scanner) for site, by_maker in score_data().references.items() for scanner in by_maker
]


def _oracle(bmd_milli: int, site: str, scanner: str) -> Fraction:
    """The T-score to one decimal, rounded half away from zero, in exact arithmetic."""
    reference = score_data().references[site][scanner]  # type: ignore[index]
    exact = (Fraction(bmd_milli, 1000) - Fraction(repr(reference.mean_g_cm2))) / Fraction(
        repr(reference.sd_g_cm2)
    )
    tenths = abs(exact) * 10
    rounded = int(tenths) + (1 if tenths - int(tenths) >= Fraction(1, 2) else 0)
    return Fraction(rounded if exact >= 0 else -rounded, 10)


def _shown(bmd_milli: int, site: str, scanner: str) -> float | None:
    measurement = Measurement(bmd_g_cm2=bmd_milli / 1000)
    return score_site(site, measurement, scanner).t_score  # type: ignore[arg-type]


def test_femoral_neck_0672_hologic_is_minus_1_6() -> None:
    """(0.672 - 0.858) / 0.120 = -1.55 exactly: shown and classified as -1.6, not -1.5."""
    score = score_site("femoral_neck", Measurement(bmd_g_cm2=0.672), "hologic")
    assert score.t_score == -1.6
    assert score.t_score_unrounded == pytest.approx(-1.55, abs=1e-12)
    assert who_category(score.t_score, fragility_fracture=False) is WhoCategory.OSTEOPENIA


@pytest.mark.parametrize(("site", "scanner"), REFERENCES)
def test_every_grid_point_matches_the_exact_oracle(site: str, scanner: str) -> None:
    wrong = [
        (m, _shown(m, site, scanner), float(_oracle(m, site, scanner)))
        for m in GRID_MILLI
        if _shown(m, site, scanner) != float(_oracle(m, site, scanner))
    ]
    assert wrong == []


@given(
    bmd_milli=st.sampled_from(GRID_MILLI),
    site_scanner=st.sampled_from(REFERENCES),
)
def test_shown_t_score_is_the_exact_rounded_value(
    bmd_milli: int, site_scanner: tuple[str, str]
) -> None:
    site, scanner = site_scanner
    shown = _shown(bmd_milli, site, scanner)
    assert shown is not None
    assert Fraction(repr(shown)) == _oracle(bmd_milli, site, scanner)


@given(bmd_milli=st.sampled_from(GRID_MILLI), site_scanner=st.sampled_from(REFERENCES))
def test_classification_uses_the_number_shown(
    bmd_milli: int, site_scanner: tuple[str, str]
) -> None:
    """The WHO category of the score equals the category of the exact one-decimal score."""
    site, scanner = site_scanner
    shown = _shown(bmd_milli, site, scanner)
    assert shown is not None
    exact = _oracle(bmd_milli, site, scanner)
    expected = (
        WhoCategory.OSTEOPOROSIS
        if exact <= Fraction(-25, 10)
        else WhoCategory.OSTEOPENIA
        if exact < -1
        else WhoCategory.NORMAL
    )
    assert who_category(shown, fragility_fracture=False) is expected


@given(
    reported=st.integers(-60, 60).map(lambda tenths: tenths / 10),
)
def test_reported_scores_keep_their_one_decimal(reported: float) -> None:
    score = score_site("total_hip", Measurement(bmd_g_cm2=0.8, t_score=reported), "hologic")
    assert score.t_score == reported
