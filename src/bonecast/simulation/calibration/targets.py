"""Calibration targets: the published numbers (model.md 10.1) and what simulates each of them.

``data/calibration_targets.csv`` is a verbatim copy of ``shared/science/calibration_targets.csv``
(its SHA-256 goes into every calibrated parameter set); ``data/calibration_map.yaml`` links each
row to a trial spec in ``examples/trials/calibration/``, an arm (or arms pooled by their mean, or
an arm minus another), and a quantity.

Tolerances and weights (our reading of model.md 10.1): a target's noise scale is the larger of
its 95 % CI half-width and a floor set by its weight class (H 1.0, M 1.5, L 2.5 percentage
points); an unverified row drops one class; marker rows (% changes of tens of percent) use five
times the floor; rows whose 0 is "our encoding" of "unchanged" use twice the floor.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

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
        return {"yes": True, "no": False}.get(str(value), value)


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
        """Half-width of a reported 95 % CI (or an encoded +/- range), else ``None``."""
        text = self.row.uncertainty
        ci = re.search(r"CI\s*(-?[\d.]+)\s*to\s*(-?[\d.]+)", text)
        if ci:
            return abs(float(ci.group(2)) - float(ci.group(1))) / 2.0
        plus_minus = re.search(r"\+/-\s*([\d.]+)", text)
        return float(plus_minus.group(1)) if plus_minus else None

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


def load_targets(csv_path: str | Path | None = None) -> TargetSet:
    """Read the targets (bonecast's copy by default) and link every row to the simulation."""
    text = (
        _data_text("calibration_targets.csv")
        if csv_path is None
        else Path(csv_path).read_text(encoding="utf-8")
    )
    links = {
        k: TargetLink.model_validate(v)
        for k, v in yaml.safe_load(_data_text("calibration_map.yaml")).items()
    }
    targets = []
    for record in csv.DictReader(io.StringIO(text)):
        row = TargetRow.model_validate(record)
        if row.target_id not in links:
            raise ValueError(f"target {row.target_id}: no entry in calibration_map.yaml")
        link = links[row.target_id]
        expected = QUANTITY_OF_SITE.get(row.site_or_marker)
        if expected != link.quantity:
            raise ValueError(
                f"target {row.target_id}: site_or_marker {row.site_or_marker!r} but the map "
                f"simulates {link.quantity!r}"
            )
        targets.append(Target(row, link))
    return TargetSet(tuple(targets), hashlib.sha256(text.encode("utf-8")).hexdigest())
