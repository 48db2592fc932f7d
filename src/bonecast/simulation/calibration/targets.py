"""Calibration targets: the published numbers (docs/model/calibration.md section 10.1) and what
simulates each of them.

``data/calibration_targets.csv`` is a verbatim copy of ``shared/science/calibration_targets.csv``
(its SHA-256 goes into every calibrated parameter set); ``data/calibration_map.yaml`` links each
row to a trial spec in ``examples/trials/calibration/``, an arm (or arms pooled by their mean, or
an arm minus another), and a quantity.

Tolerances and weights (our reading of docs/model/calibration.md section 10.1): a target's noise
scale is the larger of its 95 % CI half-width and a floor set by its weight class (H 1.0, M 1.5, L
2.5 percentage points); an unverified row drops one class; marker rows (% changes of tens of
percent) use five times the floor; rows whose 0 is "our encoding" of "unchanged" use twice the
floor.

The 95 % CI half-width is the reported one; where a row reports only the range of the women's
changes (ARIBON's medians), it is estimated from that range and n: SD = range / xi(n) with
xi(n) = 2 Phi^-1((n - 0.375) / (n + 0.25)) (Wan et al. 2014, BMC Med Res Methodol 14:135), the
standard error of a median sqrt(pi / 2) SD / sqrt(n) (of a mean SD / sqrt(n)), times 1.96. The
row's n is used as given; where it counts both arms this understates the CI (conservative).
Where a row reports instead the exact P-value of its own change (``P = x`` in its note, as SABRE's
and ATAC's off-treatment rows do), the CI follows from it: SE = |value| / z(1 - P/2), half-width
1.96 SE (Altman & Bland 2011, BMJ 343:d2090); an inequality (``P < .0001``, which in this file
belongs to between-arm ratios) gives nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy.special import ndtri

CALIBRATION_MAP = "calibration_map.yaml"
"""Links of the calibration (and male) targets to their trial specs."""
MARKERS = ("ctx", "ntx", "p1np", "bsap", "bone_turnover_markers")
"""Quantities that are bone turnover markers."""
FLOOR_PP = {"H": 1.0, "M": 1.5, "L": 2.5}
"""Noise floor per weight class (percentage points)."""
DEMOTED = {"H": "M", "M": "L", "L": "L"}
"""Weight class of an unverified row (one class down)."""
QUANTITY_OF_SITE = {
    "lumbar_spine": "lumbar_spine",
    "total_hip": "total_hip",
    "femoral_neck": "femoral_neck",
    "CTX": "ctx",
    "uNTX": "ntx",
    "BSAP": "bsap",
    "bmd_overall": "bmd_overall",
    "bone_turnover_markers": "bone_turnover_markers",
}


class TargetRow(BaseModel):
    """One row of calibration_targets.csv."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_id: str
    trial: str
    citation: str
    population: str
    arm: str
    regimen: str
    site_or_marker: str
    month_from: float = Field(ge=0)
    month_to: float = Field(gt=0)
    statistic: Literal["mean", "median"]
    value_pct: float | None
    uncertainty: str
    n: int | None
    weight: Literal["H", "M", "L"]
    verified: bool
    note: str

    @field_validator("value_pct", "n", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("verified", mode="before")
    @classmethod
    def _yes_no(cls, value: object) -> object:
        # "partial" (part of the row checked, the note says which) counts as not verified
        return {"yes": True, "no": False, "partial": False}.get(str(value), value)


class TargetLink(BaseModel):
    """What simulates a target: trial spec, arm(s), quantity, optional arm to subtract."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trial: str
    arm: str | list[str]
    quantity: str
    minus: str | None = None
    sign: Literal[-1, 1] | None = None

    @property
    def arms(self) -> list[str]:
        """The arms pooled (by their mean) for this target."""
        return [self.arm] if isinstance(self.arm, str) else list(self.arm)


def ci_half_width_from_range(width_pp: float, n: int, statistic: str) -> float:
    """95 % CI half-width (pp) of a mean or median of ``n`` changes whose range is ``width_pp``.

    SD from the range by Wan et al. 2014 (BMC Med Res Methodol 14:135, eq. 7), standard error of
    a median sqrt(pi/2) times that of a mean (normal data).
    """
    if n < 2:
        raise ValueError(f"n: {n} women cannot give a range (needs n >= 2)")
    sd = width_pp / (2.0 * float(ndtri((n - 0.375) / (n + 0.25))))
    efficiency = math.sqrt(math.pi / 2.0) if statistic == "median" else 1.0
    return 1.96 * efficiency * sd / math.sqrt(n)


def ci_half_width_from_p_value(value_pct: float, p_value: float) -> float:
    """95 % CI half-width (pp) of a change ``value_pct`` whose two-sided test against no change
    gave ``p_value`` (Altman & Bland 2011, BMJ 343:d2090)."""
    if not 0.0 < p_value < 1.0:
        raise ValueError(f"p_value: {p_value:g} must lie strictly between 0 and 1")
    return 1.96 * abs(value_pct) / float(ndtri(1.0 - p_value / 2.0))


@dataclass(frozen=True)
class Target:
    """A published number with its link to the simulation and its noise scale."""

    row: TargetRow
    link: TargetLink

    @property
    def target_id(self) -> str:
        """Stable short id (e.g. ``A6``)."""
        return self.row.target_id

    @property
    def is_sign_check(self) -> bool:
        """True for rows with a direction only (no value)."""
        return self.row.value_pct is None

    @property
    def weight_class(self) -> str:
        """Weight class after down-weighting unverified rows."""
        return self.row.weight if self.row.verified else DEMOTED[self.row.weight]

    @property
    def ci_half_width_pp(self) -> float | None:
        """Half-width of the 95 % CI: reported, an encoded +/- range, or estimated from the
        reported range of changes and n (module docstring); else ``None``."""
        text = self.row.uncertainty
        ci = re.search(r"CI\s*(-?[\d.]+)\s*to\s*(-?[\d.]+)", text)
        if ci:
            return abs(float(ci.group(2)) - float(ci.group(1))) / 2.0
        plus_minus = re.search(r"\+/-\s*([\d.]+)", text)
        if plus_minus:
            return float(plus_minus.group(1))
        spread = re.search(r"range\s*([-+]?[\d.]+)\s*to\s*([-+]?[\d.]+)", text)
        if spread and self.row.n is not None:
            width = abs(float(spread.group(2)) - float(spread.group(1)))
            return ci_half_width_from_range(width, self.row.n, self.row.statistic)
        p_value = re.search(r"\bP\s*=\s*(0?\.\d+)", f"{text} {self.row.note}")
        if p_value and self.row.value_pct is not None:
            return ci_half_width_from_p_value(self.row.value_pct, float(p_value.group(1)))
        return None

    @property
    def sigma_pp(self) -> float:
        """Noise scale used in the fit (percentage points), see the module docstring."""
        floor = FLOOR_PP[self.weight_class]
        if self.link.quantity in MARKERS:
            floor *= 5.0
        if "our encoding" in self.row.note or "our encoding" in self.row.uncertainty:
            floor *= 2.0
        half = self.ci_half_width_pp
        return max(floor, half) if half is not None else floor

    def tolerance_pp(self, high_weight_rule: bool) -> float:
        """Acceptance tolerance: max(CI half-width, 1.0 pp) for high-weight, else 1.5 pp."""
        floor = 1.0 if high_weight_rule else 1.5
        if self.link.quantity in MARKERS:
            floor *= 5.0
        half = self.ci_half_width_pp
        return max(floor, half) if half is not None else floor


@dataclass(frozen=True)
class TargetSet:
    """All targets with the SHA-256 of the targets file they were read from."""

    targets: tuple[Target, ...]
    sha256: str

    def by_trial(self) -> dict[str, list[Target]]:
        """Targets grouped by the trial spec that simulates them."""
        groups: dict[str, list[Target]] = {}
        for target in self.targets:
            groups.setdefault(target.link.trial, []).append(target)
        return groups


def _data_text(name: str) -> str:
    return (
        resources.files("bonecast.simulation")
        .joinpath("data")
        .joinpath(name)
        .read_text(encoding="utf-8")
    )


def load_targets(csv_path: str | Path | None = None, map_name: str = CALIBRATION_MAP) -> TargetSet:
    """Read the targets (bonecast's copy by default) and link every row to the simulation
    through ``map_name`` (a links file in ``data/``)."""
    text = (
        _data_text("calibration_targets.csv")
        if csv_path is None
        else Path(csv_path).read_text(encoding="utf-8")
    )
    links = {
        k: TargetLink.model_validate(v) for k, v in yaml.safe_load(_data_text(map_name)).items()
    }
    targets = []
    for record in csv.DictReader(io.StringIO(text)):
        row = TargetRow.model_validate(record)
        if row.target_id not in links:
            raise ValueError(f"target {row.target_id}: no entry in {map_name}")
        link = links[row.target_id]
        expected = QUANTITY_OF_SITE.get(row.site_or_marker)
        if expected != link.quantity:
            raise ValueError(
                f"target {row.target_id}: site_or_marker {row.site_or_marker!r} but the map "
                f"simulates {link.quantity!r}"
            )
        targets.append(Target(row, link))
    return TargetSet(tuple(targets), hashlib.sha256(text.encode("utf-8")).hexdigest())
