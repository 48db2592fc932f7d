"""Precision error, least significant change (LSC) and real change between scans
(docs/clinical/scores.md section 3).

A facility precision study (each patient scanned 2-3 times with repositioning) gives, per site,
the root-mean-square SD ``RMS-SD = sqrt(mean_j SD_j^2)`` (g/cm2, ISCD-preferred), the RMS %CV
and ``LSC = 2.77 x precision``. Until a clinic has its own study, the defaults of
``data/precision.yaml`` apply (ISCD minimum acceptable precision x 2.77, UNVERIFIED).

A change between consecutive scans is real when ``|BMD_now - BMD_prev| >= LSC``: with a facility
study the absolute LSC is used (``lsc_pct`` then reports it relative to the earlier BMD); with the
defaults the percentage one. Scans from different makers or different scanner serials are not
compared (``significant`` is ``None``; docs/clinical/scores.md sections 3.2-3.3). When vertebrae
were excluded from the later scan, both scans are compared on the same vertebrae (mean of their
BMDs) if the earlier one lists them, and the site LSC is used with a note (ISCD asks for an LSC of
that combination).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date
from functools import cache
from itertools import pairwise
from pathlib import Path
from statistics import fmean, variance

from pydantic import BaseModel, ConfigDict

from bonecast.clinical._data import SourcedNumber, read_data
from bonecast.clinical.patient import DAYS_PER_YEAR, Scan, SpineMeasurement
from bonecast.clinical.scores import SiteScore
from bonecast.simulation import SITES


class PrecisionData(BaseModel):
    """Everything in ``data/precision.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lsc_factor: SourcedNumber
    minimum_degrees_of_freedom: SourcedNumber
    default_lsc_pct: dict[str, SourcedNumber]


@cache
def precision_data() -> PrecisionData:
    """The precision constants and defaults (cached; immutable)."""
    return PrecisionData.model_validate(read_data("precision.yaml"))


class PrecisionError(ValueError):
    """A precision study that cannot be used; the message says why."""


class SitePrecision(BaseModel):
    """The result of a precision study at one site."""

    model_config = ConfigDict(frozen=True)

    site: str
    n_patients: int
    degrees_of_freedom: int
    rms_sd_g_cm2: float
    rms_cv_pct: float
    lsc_g_cm2: float
    lsc_pct: float


class Lsc(BaseModel):
    """The least significant change used at one site, and where it comes from."""

    model_config = ConfigDict(frozen=True)

    site: str
    lsc_pct: float
    lsc_g_cm2: float | None
    source: str
    facility_study: bool


def site_precision(site: str, scans_by_patient: Mapping[str, Sequence[float]]) -> SitePrecision:
    """RMS-SD, RMS %CV and LSC of one site from repeated BMDs (g/cm2) per patient (ISCD)."""
    data = precision_data()
    short = sorted(p for p, values in scans_by_patient.items() if len(values) < 2)
    if short:
        raise PrecisionError(f"{site}: patients {short} have fewer than two scans")
    variances = [variance(values) for values in scans_by_patient.values()]
    cvs = [
        math.sqrt(v) / fmean(values)
        for v, values in zip(variances, scans_by_patient.values(), strict=True)
    ]
    df = sum(len(values) - 1 for values in scans_by_patient.values())
    if df < data.minimum_degrees_of_freedom.value:
        raise PrecisionError(
            f"{site}: {df} degrees of freedom; at least {data.minimum_degrees_of_freedom.value:g} "
            "are needed (30 patients x 2 scans or 15 x 3)"
        )
    rms_sd = math.sqrt(fmean(variances))
    rms_cv_pct = 100 * math.sqrt(fmean(cv * cv for cv in cvs))
    factor = data.lsc_factor.value
    return SitePrecision(
        site=site,
        n_patients=len(variances),
        degrees_of_freedom=df,
        rms_sd_g_cm2=rms_sd,
        rms_cv_pct=rms_cv_pct,
        lsc_g_cm2=factor * rms_sd,
        lsc_pct=factor * rms_cv_pct,
    )


def load_precision_study(path: str | Path) -> dict[str, SitePrecision]:
    """Read a precision study CSV (columns ``patient_id,site,bmd_g_cm2``, one row per scan)."""
    measurements: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"patient_id", "site", "bmd_g_cm2"} - set(reader.fieldnames or ())
            if missing:
                raise PrecisionError(f"{path}: missing columns {sorted(missing)}")
            for line, row in enumerate(reader, start=2):
                site = row["site"]
                if site not in SITES:
                    raise PrecisionError(f"{path} line {line}: unknown site {site!r}")
                try:
                    bmd = float(row["bmd_g_cm2"])
                except ValueError:
                    raise PrecisionError(f"{path} line {line}: bmd_g_cm2 is not a number") from None
                if not 0.2 <= bmd <= 2.0:
                    raise PrecisionError(f"{path} line {line}: {bmd:g} is outside 0.2-2.0 g/cm2")
                measurements[site][row["patient_id"]].append(bmd)
    except OSError as error:
        raise PrecisionError(f"cannot read {path}: {error.strerror}") from None
    return {site: site_precision(site, by_patient) for site, by_patient in measurements.items()}


def lsc_table(study: Mapping[str, SitePrecision] | None = None) -> dict[str, Lsc]:
    """The LSC of every site: the facility study where it has the site, the default otherwise."""
    table = {}
    for site in SITES:
        if study is not None and site in study:
            result = study[site]
            table[site] = Lsc(
                site=site,
                lsc_pct=result.lsc_pct,
                lsc_g_cm2=result.lsc_g_cm2,
                source=(
                    f"facility precision study ({result.n_patients} patients, "
                    f"{result.degrees_of_freedom} df)"
                ),
                facility_study=True,
            )
        else:
            default = precision_data().default_lsc_pct[site]
            table[site] = Lsc(
                site=site,
                lsc_pct=default.value,
                lsc_g_cm2=None,
                source=f"default, facility precision study missing: {default.source}",
                facility_study=False,
            )
    return table


class SiteChange(BaseModel):
    """The change at one site between two consecutive scans."""

    model_config = ConfigDict(frozen=True)

    site: str
    from_date: date
    to_date: date
    comparable: bool
    bmd_from_g_cm2: float | None = None
    bmd_to_g_cm2: float | None = None
    change_g_cm2: float | None = None
    pct_change: float | None = None
    annualised_pct_change: float | None = None
    lsc_pct: float | None = None
    lsc_g_cm2: float | None = None
    significant: bool | None = None
    lsc_source: str | None = None
    note: str | None = None


def _compared_bmds(
    site: str, earlier: Scan, later: Scan, later_score: SiteScore
) -> tuple[float, float] | str:
    """The two BMDs to compare at ``site``, or why they cannot be compared."""
    if earlier.scanner != later.scanner:
        return f"different makers ({earlier.scanner}, {later.scanner}): not comparable"
    if earlier.scanner_id and later.scanner_id and earlier.scanner_id != later.scanner_id:
        return "different scanners: not comparable without cross-calibration"
    before, after = earlier.site(site), later.site(site)
    if before is None or after is None:
        return "site not measured on both scans"
    subset = later_score.vertebrae_used if later_score.vertebrae_excluded else None
    if subset is None:
        if before.bmd_g_cm2 is None or after.bmd_g_cm2 is None:
            return "BMD not given on both scans"
        return before.bmd_g_cm2, after.bmd_g_cm2
    assert isinstance(before, SpineMeasurement)
    by_name = dict(before.vertebrae.items()) if before.vertebrae is not None else {}
    earlier_bmds = [by_name[n].bmd_g_cm2 if n in by_name else None for n in subset]
    if later_score.bmd_g_cm2 is None or not subset or None in earlier_bmds:
        return f"vertebral BMDs of {'+'.join(subset) or 'the spine'} not given on both scans"
    return fmean(b for b in earlier_bmds if b is not None), later_score.bmd_g_cm2


def site_change(
    site: str, earlier: Scan, later: Scan, later_score: SiteScore, lsc: Lsc
) -> SiteChange:
    """Change at ``site`` from ``earlier`` to ``later`` with its significance against ``lsc``."""
    compared = _compared_bmds(site, earlier, later, later_score)
    if isinstance(compared, str):
        return SiteChange(
            site=site, from_date=earlier.date, to_date=later.date, comparable=False, note=compared
        )
    before, after = compared
    change = after - before
    pct = 100 * change / before
    if lsc.lsc_g_cm2 is not None:  # facility study: absolute LSC (ISCD-preferred)
        lsc_g_cm2, lsc_pct = lsc.lsc_g_cm2, 100 * lsc.lsc_g_cm2 / before
        significant = abs(change) >= lsc_g_cm2
    else:  # default: percentage LSC
        lsc_g_cm2, lsc_pct = lsc.lsc_pct / 100 * before, lsc.lsc_pct
        significant = abs(pct) >= lsc_pct
    years = (later.date - earlier.date).days / DAYS_PER_YEAR
    note = None
    if later_score.vertebrae_excluded:
        note = f"compared on {'+'.join(later_score.vertebrae_used or [])} with the L1-L4 LSC"
    return SiteChange(
        site=site,
        from_date=earlier.date,
        to_date=later.date,
        comparable=True,
        bmd_from_g_cm2=before,
        bmd_to_g_cm2=after,
        change_g_cm2=change,
        pct_change=pct,
        annualised_pct_change=pct / years,
        lsc_pct=lsc_pct,
        lsc_g_cm2=lsc_g_cm2,
        significant=significant,
        lsc_source=lsc.source,
        note=note,
    )


def scan_changes(
    scans: Sequence[Scan], scores: Sequence[Mapping[str, SiteScore]], lsc: Mapping[str, Lsc]
) -> list[SiteChange]:
    """Every scan-to-scan change per site, for consecutive scans (sorted by date)."""
    changes = []
    for (earlier, _), (later, later_scores) in pairwise(zip(scans, scores, strict=True)):
        for site in SITES:
            if site in later_scores and earlier.site(site) is not None:
                changes.append(site_change(site, earlier, later, later_scores[site], lsc[site]))
    return changes
