"""T- and Z-scores, standardised BMD and the WHO category (docs/clinical/scores.md section 2).

Reference data (with sources and UNVERIFIED flags) are in ``data/scores.yaml``.

* A T-score printed by the densitometer is used as reported (the manufacturer's reference is on
  the right scale). A missing one is computed, ``T = (BMD - mean) / SD``: total hip and femoral
  neck against NHANES III white women 20-29 (ISCD 2013, also for men); the lumbar spine against
  the maker's L1-L4 reference, with a warning (no Norland spine reference is held).
* NHANES III is on the Hologic scale, so hip T-scores are computed for Hologic BMD only
  (docs/clinical/scores.md section 2.1); a GE Lunar or Norland hip needs the report's T-score.
  Converting through standardised BMD is not used for diagnosis: the femoral-neck equations carry an
  unresolved sign question (a Lunar FN of 0.688 g/cm2 would read about half a T-score too low).
* Z-scores are taken from the report only: the age-matched tables are not transcribed.
* ISCD vertebral exclusion: a vertebra marked ``excluded``, or one whose T-score differs from a
  neighbour by more than 1.0, is left out; at least two vertebrae must remain. When vertebrae are
  left out, the spine T-score and BMD are the means over the remaining vertebrae (our
  approximation of the scanner's re-analysis, flagged in the notes).
* Scores are computed and rounded in decimal arithmetic on the numbers as written (the BMD as
  entered, the reference mean and SD as published): a femoral neck of 0.672 g/cm2 on a Hologic
  scanner is (0.672 - 0.858) / 0.120 = -1.55 exactly, shown and classified as -1.6. Rounding is
  half away from zero to one decimal, and the rounded score is used for classification when
  ``classify_on_rounded`` is set (the default, as reports are read), so the number shown and the
  number the rules use are the same.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import cache
from itertools import pairwise
from statistics import fmean, median

from pydantic import BaseModel, ConfigDict, Field

from bonecast.clinical._data import Sourced, SourcedNumber, read_data
from bonecast.clinical.patient import Measurement, Scan, Scanner, SpineMeasurement, Vertebrae
from bonecast.simulation import SITES


class WhoCategory(StrEnum):
    """WHO (1994) diagnostic category by the lowest T-score."""

    NORMAL = "normal"
    OSTEOPENIA = "osteopenia"
    OSTEOPOROSIS = "osteoporosis"
    SEVERE_OSTEOPOROSIS = "severe_osteoporosis"


WHO_SEVERITY = {category: rank for rank, category in enumerate(WhoCategory)}
"""Order of the WHO categories, mildest first."""


class ZCategory(StrEnum):
    """ISCD wording for Z-scores (premenopausal women, men under 50)."""

    WITHIN = "within_expected_range_for_age"
    BELOW = "below_expected_range_for_age"


class YoungAdultReference(Sourced):
    """Young-adult mean and SD of one site on one maker's scale (g/cm2)."""

    mean_g_cm2: float = Field(gt=0)
    sd_g_cm2: float = Field(gt=0)
    population: str


class LinearEquation(BaseModel):
    """``sBMD_g_cm2 = intercept + slope * BMD``, or centred: ``slope * (BMD - centre) + target``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slope: float
    intercept: float | None = None
    centre: float | None = None
    target: float | None = None

    @property
    def offset(self) -> float:
        """The intercept of the equation written as ``offset + slope * BMD`` (g/cm2)."""
        if self.intercept is not None:
            return self.intercept
        assert self.centre is not None and self.target is not None
        return self.target - self.slope * self.centre


class SbmdSite(Sourced):
    """The standardised-BMD equations of one site, per maker."""

    equations: dict[Scanner, LinearEquation]
    warning: str | None = None


class WhoThresholds(BaseModel):
    """WHO and ISCD cut-offs (data/scores.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    osteopenia_below: SourcedNumber
    osteoporosis_at_most: SourcedNumber
    t_score_from_age_men: SourcedNumber
    z_below_expected_at_most: SourcedNumber


class VertebraRules(BaseModel):
    """ISCD vertebral-exclusion parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exclusion_t_difference: SourcedNumber
    minimum_used: SourcedNumber


class ClassifyOnRounded(Sourced):
    """Whether classification uses the one-decimal score."""

    value: bool


class ScoreData(BaseModel):
    """Everything in ``data/scores.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    classify_on_rounded: ClassifyOnRounded
    who: WhoThresholds
    vertebrae: VertebraRules
    references: dict[str, dict[Scanner, YoungAdultReference]]
    sbmd: dict[str, SbmdSite]


@cache
def score_data() -> ScoreData:
    """The reference data for scores (cached; immutable)."""
    return ScoreData.model_validate(read_data("scores.yaml"))


def as_written(value: float | Decimal) -> Decimal:
    """The decimal number a float was written as (``0.672``, not its binary neighbour)."""
    return value if isinstance(value, Decimal) else Decimal(repr(value))


def round_half_away(value: float | Decimal, digits: int = 0) -> float:
    """Round half away from zero (not Python's banker's rounding), on the decimal value shown."""
    quantum = Decimal(1).scaleb(-digits)
    return float(as_written(value).quantize(quantum, rounding=ROUND_HALF_UP))


def exact_t_score(bmd_g_cm2: float, reference: YoungAdultReference) -> Decimal:
    """``(BMD - young-adult mean) / young-adult SD`` in decimal arithmetic
    (docs/clinical/scores.md section 2.1).

    Exact whenever the quotient terminates (every rounding tie does), else to 28 digits.
    """
    mean, sd = as_written(reference.mean_g_cm2), as_written(reference.sd_g_cm2)
    return (as_written(bmd_g_cm2) - mean) / sd


def t_score(bmd_g_cm2: float, reference: YoungAdultReference) -> float:
    """``(BMD - young-adult mean) / young-adult SD`` (docs/clinical/scores.md section 2.1),
    unrounded."""
    return float(exact_t_score(bmd_g_cm2, reference))


def standardised_bmd_mg_cm2(site: str, scanner: Scanner, bmd_g_cm2: float) -> float:
    """Standardised BMD in mg/cm2 (docs/clinical/scores.md section 2.3): for display and trend
    context only.

    Never use it to call a change between makers real (Fan et al. 2010;
    docs/clinical/scores.md section 2.3).
    """
    equation = score_data().sbmd[site].equations[scanner]
    return 1000.0 * (equation.offset + equation.slope * bmd_g_cm2)


def convert_bmd_g_cm2(site: str, scanner: Scanner, bmd_g_cm2: float, to: Scanner) -> float:
    """The BMD on maker ``to``'s scale with the same standardised BMD (context, not diagnosis)."""
    target = score_data().sbmd[site].equations[to]
    return (standardised_bmd_mg_cm2(site, scanner, bmd_g_cm2) / 1000.0 - target.offset) / (
        target.slope
    )


def classification_value(score: float | Decimal) -> float:
    """The score shown and used for classification: one decimal when ``classify_on_rounded``."""
    return round_half_away(score, 1) if score_data().classify_on_rounded.value else float(score)


def who_category(lowest_t_score: float, fragility_fracture: bool) -> WhoCategory:
    """WHO category of a (classification) T-score; 'severe' needs a fragility fracture."""
    who = score_data().who
    if lowest_t_score <= who.osteoporosis_at_most.value:
        return WhoCategory.SEVERE_OSTEOPOROSIS if fragility_fracture else WhoCategory.OSTEOPOROSIS
    if lowest_t_score < who.osteopenia_below.value:
        return WhoCategory.OSTEOPENIA
    return WhoCategory.NORMAL


def z_category(lowest_z_score: float) -> ZCategory:
    """ISCD Z-score wording: at or below -2.0 is 'below the expected range for age'."""
    below = lowest_z_score <= score_data().who.z_below_expected_at_most.value
    return ZCategory.BELOW if below else ZCategory.WITHIN


class VertebralSelection(BaseModel):
    """Which vertebrae the spine result rests on (ISCD exclusion)."""

    model_config = ConfigDict(frozen=True)

    used: list[str]
    excluded: dict[str, str]

    @property
    def reportable(self) -> bool:
        """At least the ISCD minimum of vertebrae remains."""
        return len(self.used) >= score_data().vertebrae.minimum_used.value


def select_vertebrae(vertebrae: Vertebrae) -> VertebralSelection:
    """Apply the ISCD exclusion rules to the per-vertebra T-scores.

    While more than the minimum remain and two neighbouring remaining vertebrae differ by more
    than the limit, the vertebra furthest from the median of the remaining ones is excluded
    (ties: the higher T-score, since artefacts raise BMD). If the last two still differ by more
    than the limit, neither can be trusted and the spine is not reportable.
    """
    rules = score_data().vertebrae
    limit = rules.exclusion_t_difference.value
    minimum = int(rules.minimum_used.value)
    excluded = {name: "marked non-assessable" for name, v in vertebrae.items() if v.excluded}
    scores = {name: v.t_score for name, v in vertebrae.items() if not v.excluded}

    def discordant(names: list[str]) -> set[str]:
        pairs = pairwise(names)
        return {n for a, b in pairs if abs(scores[a] - scores[b]) > limit for n in (a, b)}

    used = list(scores)
    while len(used) > minimum and (suspects := discordant(used)):
        centre = median(scores[name] for name in used)
        worst = max(suspects, key=lambda n: (abs(scores[n] - centre), scores[n]))
        excluded[worst] = f"T-score differs by more than {limit:g} from a neighbour"
        used.remove(worst)
    if len(used) == minimum and discordant(used):
        for name in used:
            excluded[name] = f"the two remaining vertebrae differ by more than {limit:g}"
        used = []
    return VertebralSelection(used=used, excluded=excluded)


class SiteScore(BaseModel):
    """The scores of one site of one scan, with where each number came from."""

    model_config = ConfigDict(frozen=True)

    site: str
    bmd_g_cm2: float | None
    t_score: float | None = Field(description="used for classification (one decimal by default)")
    t_score_unrounded: float | None
    t_score_source: str | None = Field(
        description="'reported', or the reference it was computed from"
    )
    z_score: float | None
    sbmd_mg_cm2: float | None
    vertebrae_used: list[str] | None = None
    vertebrae_excluded: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


def _computed_t(site: str, scanner: Scanner, bmd: float) -> tuple[Decimal | None, str | None, str]:
    """A T-score computed from BMD, the reference population used, and a note."""
    reference = score_data().references[site].get(scanner)
    if reference is None:
        why = (
            "no Norland spine reference"
            if site == "lumbar_spine"
            else "NHANES III is Hologic-scale"
        )
        return (
            None,
            None,
            f"{site}: T-score not computed for {scanner} BMD ({why}); give the report's",
        )
    note = f"{site}: T-score computed against {reference.population} ({reference.verification})"
    if site == "lumbar_spine":
        note += "; prefer the T-score printed on the report (spine references are the maker's)"
    return exact_t_score(bmd, reference), reference.population, note


def _decimal_mean(values: list[float]) -> Decimal:
    """The mean of scores as written, in decimal arithmetic."""
    return sum((as_written(v) for v in values), Decimal(0)) / len(values)


def score_site(site: str, measurement: Measurement, scanner: Scanner) -> SiteScore:
    """Scores of one measured site (vertebral exclusion applied to the lumbar spine)."""
    bmd = measurement.bmd_g_cm2
    t_value = None if measurement.t_score is None else as_written(measurement.t_score)
    z_value = measurement.z_score
    source: str | None = "reported" if t_value is not None else None
    notes: list[str] = []
    used: list[str] | None = None
    excluded: dict[str, str] = {}
    vertebrae = measurement.vertebrae if isinstance(measurement, SpineMeasurement) else None
    if vertebrae is not None:
        selection = select_vertebrae(vertebrae)
        used, excluded = selection.used, selection.excluded
        by_name = dict(vertebrae.items())
        if not selection.reportable:
            bmd = t_value = z_value = None
            source = None
            notes.append("lumbar spine not reportable: fewer than two valid vertebrae (ISCD)")
        elif excluded or t_value is None:
            t_value = _decimal_mean([by_name[name].t_score for name in used])
            bmds = [by_name[name].bmd_g_cm2 for name in used]
            bmd = fmean(b for b in bmds if b is not None) if None not in bmds else None
            z_value = None
            source = f"mean of vertebrae {'+'.join(used)}"
            notes.append(
                f"spine from {'+'.join(used)}: mean of the vertebral values, an approximation of "
                "the scanner's re-analysis of that combination"
            )
    if t_value is None and bmd is not None:
        t_value, source, note = _computed_t(site, scanner, bmd)
        notes.append(note)
    if t_value is None and bmd is None and z_value is not None:
        notes.append(
            f"{site}: Z-score only (no BMD or T-score); shown, not used for T-score decisions"
        )
    return SiteScore(
        site=site,
        bmd_g_cm2=bmd,
        t_score=None if t_value is None else classification_value(t_value),
        t_score_unrounded=None if t_value is None else float(t_value),
        t_score_source=source,
        z_score=None if z_value is None else classification_value(z_value),
        sbmd_mg_cm2=None if bmd is None else standardised_bmd_mg_cm2(site, scanner, bmd),
        vertebrae_used=used,
        vertebrae_excluded=excluded,
        notes=notes,
    )


def score_scan(scan: Scan) -> dict[str, SiteScore]:
    """Scores of every measured site of a scan, keyed by site name."""
    return {
        site: score_site(site, measurement, scan.scanner)
        for site in SITES
        if (measurement := scan.site(site)) is not None
    }


def lowest(scores: dict[str, SiteScore], attribute: str) -> tuple[str, float] | None:
    """(site, value) of the lowest ``t_score`` or ``z_score`` over the sites (ISCD: lowest site)."""
    values = [(getattr(s, attribute), s.site) for s in scores.values()]
    present = [(value, site) for value, site in values if value is not None]
    if not present:
        return None
    value, site = min(present, key=lambda item: (item[0], SITES.index(item[1])))
    return site, value
