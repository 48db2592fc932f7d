"""The AIBL-2C parameter set: typed, documented, loaded from a data file shipped in the package.

Every value carries its unit and its source (docs/model/parameters.md section 7). The code states
which parameters the model needs and in which unit (:data:`PARAMETER_UNITS`); the data file supplies
the values and sources, and loading fails loudly if a name or a unit disagrees. A calibrated
parameter set is the same file format with different values and a filled-in ``provenance``.
"""

from __future__ import annotations

import csv
import hashlib
import io
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from bonecast.simulation.drugs import AROMATASE_INHIBITORS, BISPHOSPHONATES

SITES: tuple[str, ...] = ("lumbar_spine", "total_hip", "femoral_neck")
"""DXA sites the model reports, in a fixed order."""

START_PARAMETER_FILE = "aibl2c_start.yaml"
"""Starting values of docs/model/parameters.md section 7 (the calibration starts here)."""
DEFAULT_PARAMETER_FILE = "aibl2c_calibrated.yaml"
"""The parameter set bonecast uses by default."""


def _bp_units() -> dict[str, str]:
    units: dict[str, str] = {}
    for drug in BISPHOSPHONATES:
        units[f"bp.{drug}.f_oral"] = "1"
        units[f"bp.{drug}.f_bone"] = "1"
        units[f"bp.{drug}.ec50_mg"] = "mg"
        units[f"bp.{drug}.t_s_days"] = "day"
    return units


PARAMETER_UNITS: dict[str, str] = {
    "e2_post_pg_ml": "pg/mL",
    "e2_pre_pg_ml": "pg/mL",
    "menopause_width_years": "year",
    **{f"ai.{drug}.suppression": "1" for drug in AROMATASE_INHIBITORS},
    "ec50_e2_pg_ml": "pg/mL",
    "n_e": "1",
    "epsilon_T": "1",
    "tau_T": "1",
    "k_T_per_day": "1/day",
    "alpha_L": "1",
    "alpha_O": "1",
    "theta_O": "1",
    "theta_K": "1",
    "kappa_L": "1",
    "theta_D_per_nM": "1/nM",
    "denosumab_mw_kda": "kDa",
    "k_p_per_day": "1/day",
    "k_c_per_day": "1/day",
    "s_L": "1",
    "osteomorph_share": "1",
    "osteomorph_refusion_per_day": "1/day",
    "osteomorph_death_per_day": "1/day",
    "osteomorph_refusion_hill": "1",
    "k_q_per_day": "1/day",
    "k_b_per_day": "1/day",
    "gamma_T": "1",
    "emax_bp": "1",
    "n_bp": "1",
    "rho_t_per_year": "1/year",
    "rho_c_per_year": "1/year",
    "delta0_t": "1",
    "delta0_c": "1",
    "deltaE_t": "1",
    "deltaE_c": "1",
    "nu_t": "1",
    "nu_c": "1",
    "modeling_t": "1",
    "modeling_c": "1",
    "m_p": "1",
    "kappa_per_year": "1/year",
    **{f"f_{site}": "1" for site in SITES},
    "m_life": "1",
    "age_deficit_per_year": "1/year",
    "age_deficit_ref_years": "year",
    **_bp_units(),
    "bp_burial_share": "1",
    "bp_release_per_year": "1/year",
    "den.ka_per_day": "1/day",
    "den.f_sc": "1",
    "den.vc_l": "L",
    "den.vp_l": "L",
    "den.q_l_per_day": "L/day",
    "den.cl_l_per_day": "L/day",
    "den.vmax_mg_per_day": "mg/day",
    "den.km_mg_l": "mg/L",
}
"""Every parameter the model reads, with the unit the equations expect."""


class Parameter(BaseModel):
    """One model parameter: value, unit and where the number comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float
    unit: str
    symbol: str
    description: str
    source: str
    calibrate: bool = False
    prior: tuple[float, float] | None = None


NEUTRAL_ADDITIONS: dict[str, Parameter] = {
    f"modeling_{j}": Parameter(
        value=0.0,
        unit="1",
        symbol=f"μ_{j}",
        description=f"Modeling-based formation at full resorption suppression, {name}",
        source="absent from this parameter set (made before model 1.2): 0, no modeling-based "
        "formation, the earlier model's behaviour; recalibrate to use it",
    )
    for j, name in (("t", "trabecular"), ("c", "cortical"))
} | {
    name: Parameter(
        value=value,
        unit=unit,
        symbol=symbol,
        description=description,
        source="absent from this parameter set (made before model 1.4): "
        + (
            "0, no osteomorph reservoir, the earlier model's behaviour; recalibrate to use it"
            if name == "osteomorph_share"
            else "inert while osteomorph_share is 0"
        ),
    )
    for name, value, unit, symbol, description in (
        (
            "osteomorph_share",
            0.0,
            "1",
            "φ_W",
            "Share of the osteoclast removal added by low RANK signalling that is fission into "
            "osteomorphs",
        ),
        (
            "osteomorph_refusion_per_day",
            0.05,
            "1/day",
            "k_W",
            "Re-fusion rate of osteomorphs into osteoclasts at baseline RANK signalling",
        ),
        ("osteomorph_death_per_day", 0.001, "1/day", "k_Wd", "Death rate of osteomorphs"),
        (
            "osteomorph_refusion_hill",
            1.0,
            "1",
            "n_W",
            "Hill exponent of osteomorph re-fusion in RANK signalling",
        ),
    )
}
"""Parameters added after a parameter-set format was shipped, with the value that reproduces the
model before them; a set that lacks them loads with these (and says so in their source)."""

SHARED_BISPHOSPHONATE_KINETICS: dict[str, str] = {
    "bp_surface_half_life_days": "t_s_days",
}
"""Bisphosphonate kinetics that parameter sets before model 1.3 shared between the drugs (old
name -> per-drug key): such a set loads with the shared value copied to every drug, which
reproduces the earlier model exactly."""


def _split_shared_kinetics(params: dict[str, object]) -> dict[str, object]:
    """``params`` with the shared bisphosphonate kinetics of an older set copied to each drug."""
    out = dict(params)
    for old, key in SHARED_BISPHOSPHONATE_KINETICS.items():
        shared = out.pop(old, None)
        if isinstance(shared, Parameter):
            shared = shared.model_dump()
        if not isinstance(shared, dict):
            continue
        for drug in BISPHOSPHONATES:
            out.setdefault(
                f"bp.{drug}.{key}",
                {
                    **shared,
                    "symbol": f"{shared.get('symbol', key)}_{drug}",
                    "calibrate": False,
                    "prior": None,
                    "source": f"shared value of a parameter set made before model 1.3 (one value "
                    f"for every bisphosphonate): {shared.get('source', '')}",
                },
            )
    return out


class ReferenceBMD(BaseModel):
    """Young-adult reference BMD of one site, for T-scores (g/cm2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean_g_cm2: float = Field(gt=0)
    sd_g_cm2: float = Field(gt=0)
    source: str


class Variability(BaseModel):
    """Between-patient variability of one parameter (or a correlated group)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parameters: tuple[str, ...] = Field(min_length=1)
    distribution: Literal["lognormal", "logitnormal"]
    cv: float | None = Field(default=None, gt=0)
    sd: float | None = Field(default=None, gt=0)
    correlation: float | None = Field(default=None, ge=-1, le=1)
    source: str

    @model_validator(mode="after")
    def _spread_given(self) -> Variability:
        if self.distribution == "lognormal" and self.cv is None:
            raise ValueError(f"{self.parameters}: a lognormal variability needs 'cv'")
        if self.distribution == "logitnormal" and self.sd is None:
            raise ValueError(f"{self.parameters}: a logit-normal variability needs 'sd'")
        return self


class SourcedValue(BaseModel):
    """A number with its source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float = Field(ge=0)
    source: str


class ParameterSet(BaseModel):
    """A complete, versioned AIBL-2C parameter set with its provenance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    description: str
    provenance: dict[str, object]
    parameters: dict[str, Parameter]
    reference_bmd: dict[str, ReferenceBMD]
    variability: tuple[Variability, ...]
    within_subject: dict[str, SourcedValue]
    residual_error_pp: dict[str, SourcedValue]
    _folder: Path | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _add_neutral_additions(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("parameters"), dict):
            params = _split_shared_kinetics(data["parameters"])
            data = {**data, "parameters": params}
            added = {k: v for k, v in NEUTRAL_ADDITIONS.items() if k not in params}
            if added:
                data = {**data, "parameters": {**params, **added}}
        return data

    @model_validator(mode="after")
    def _complete_and_in_units(self) -> ParameterSet:
        missing = sorted(set(PARAMETER_UNITS) - set(self.parameters))
        unknown = sorted(set(self.parameters) - set(PARAMETER_UNITS))
        if missing or unknown:
            raise ValueError(f"parameter set: missing {missing}, unknown {unknown}")
        for name, entry in self.parameters.items():
            if entry.unit != PARAMETER_UNITS[name]:
                raise ValueError(
                    f"parameter {name!r}: unit {entry.unit!r}, the model expects "
                    f"{PARAMETER_UNITS[name]!r}"
                )
        for where, mapping in (
            ("reference_bmd", self.reference_bmd),
            ("residual_error_pp", self.residual_error_pp),
        ):
            if set(mapping) != set(SITES):
                raise ValueError(f"{where}: needs exactly the sites {list(SITES)}")
        for item in self.variability:
            for name in item.parameters:
                if name not in PARAMETER_UNITS:
                    raise ValueError(f"variability: unknown parameter {name!r}")
        if "oral_absorption_cv" not in self.within_subject:
            raise ValueError("within_subject: needs 'oral_absorption_cv'")
        return self

    def reference_bmd_columns(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Young-adult mean and SD (g/cm2) of every site as (3, 1) columns in :data:`SITES`
        order, to broadcast against (3, N) per-patient arrays."""
        ref = self.reference_bmd
        mean = np.array([[ref[s].mean_g_cm2] for s in SITES])
        return mean, np.array([[ref[s].sd_g_cm2] for s in SITES])

    def values(self) -> dict[str, float]:
        """Plain name -> value mapping (units as in :data:`PARAMETER_UNITS`)."""
        return {name: entry.value for name, entry in self.parameters.items()}

    def with_values(self, **changes: float) -> ParameterSet:
        """A copy with some values replaced (names as in the file; dots allowed via ``**{}``)."""
        unknown = sorted(set(changes) - set(self.parameters))
        if unknown:
            raise KeyError(f"unknown parameters {unknown}")
        params = {
            name: entry.model_copy(update={"value": float(changes[name])})
            if name in changes
            else entry
            for name, entry in self.parameters.items()
        }
        return self.model_copy(update={"parameters": params})

    def digest(self) -> str:
        """SHA-256 of the parameter values, to tie results to the parameters that made them."""
        text = ";".join(f"{k}={v.value!r}" for k, v in sorted(self.parameters.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_parameter_set(path: str | Path | None = None) -> ParameterSet:
    """Load a parameter set from ``path`` (YAML), or bonecast's default one when ``None``."""
    if path is None:
        return default_parameter_set()
    with open(path, encoding="utf-8") as handle:
        parameter_set = ParameterSet.model_validate(yaml.safe_load(handle))
    parameter_set._folder = Path(path).parent
    return parameter_set


def posterior_draws(parameter_set: ParameterSet) -> list[dict[str, float]]:
    """The posterior sample shipped with a calibrated set (``provenance.posterior_file``).

    Each draw maps the calibrated parameter names to values; an uncalibrated set has none. The
    file is read once per process (every forecast uses it); each call gets its own copy.
    """
    name = parameter_set.provenance.get("posterior_file")
    if not isinstance(name, str):
        return []
    return [dict(draw) for draw in _read_posterior(parameter_set._folder, name)]


@cache
def _read_posterior(folder: Path | None, name: str) -> tuple[dict[str, float], ...]:
    """The draws of the posterior file ``name`` in ``folder`` (None: bonecast's data)."""
    if folder is not None:
        text = (folder / name).read_text(encoding="utf-8")
    else:
        text = (
            resources.files("bonecast.simulation")
            .joinpath("data")
            .joinpath(name)
            .read_text(encoding="utf-8")
        )
    rows = list(csv.DictReader(io.StringIO(text)))
    return tuple({key: float(value) for key, value in row.items()} for row in rows)


PARAMETER_SUMMARY_COLUMNS = (
    "name",
    "symbol",
    "value",
    "unit",
    "calibrated",
    "prior_low",
    "prior_high",
    "posterior_p2_5",
    "posterior_p97_5",
    "source",
)
"""Columns of :func:`parameter_summary` (``bonecast parameters --format csv``)."""


def parameter_summary(parameter_set: ParameterSet) -> list[dict[str, str]]:
    """One row per parameter: value, unit, prior range and 95 % posterior interval, source.

    The prior range is the 95 % range given in the file (empty when the parameter has none);
    the posterior interval is the 2.5th-97.5th percentile of the shipped posterior sample
    (empty for a fixed parameter or a set without a sample).
    """
    draws = posterior_draws(parameter_set)
    rows = []
    for name, entry in parameter_set.parameters.items():
        sample = [draw[name] for draw in draws if name in draw]
        interval = np.percentile(sample, [2.5, 97.5]) if sample else None
        rows.append(
            {
                "name": name,
                "symbol": entry.symbol,
                "value": f"{entry.value:.6g}",
                "unit": entry.unit,
                "calibrated": "yes" if entry.calibrate else "no",
                "prior_low": "" if entry.prior is None else f"{entry.prior[0]:g}",
                "prior_high": "" if entry.prior is None else f"{entry.prior[1]:g}",
                "posterior_p2_5": "" if interval is None else f"{interval[0]:.6g}",
                "posterior_p97_5": "" if interval is None else f"{interval[1]:.6g}",
                "source": entry.source,
            }
        )
    return rows


def _packaged(name: str) -> ParameterSet:
    text = (
        resources.files("bonecast.simulation")
        .joinpath("data")
        .joinpath(name)
        .read_text(encoding="utf-8")
    )
    return ParameterSet.model_validate(yaml.safe_load(text))


@cache
def default_parameter_set() -> ParameterSet:
    """The parameter set bonecast uses unless told otherwise (cached; immutable)."""
    return _packaged(DEFAULT_PARAMETER_FILE)


@cache
def start_parameter_set() -> ParameterSet:
    """The uncalibrated starting values of docs/model/parameters.md section 7 (where calibration
    starts)."""
    return _packaged(START_PARAMETER_FILE)
