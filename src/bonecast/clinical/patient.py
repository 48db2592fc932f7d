"""The patient file of ``bonecast assess`` (architecture.md, "Patient assessment"), validated.

Validation is strict: JSON types are not coerced (``"66"`` is not a number), unknown keys are
errors, and every problem names its field and what is accepted, e.g.
``scans[0].lumbar_spine.bmd_g_cm2: 2.4 is outside 0.2-2.0 g/cm2``. Impossible input is refused:
BMD outside 0.2-2.0 g/cm2, a T- or Z-score outside -6..+6, an age outside 18-110 years, a scan,
lab or dose dated after ``as_of`` or before birth, an unknown drug, site or lab unit.

Choices where the contract is silent (documented here, listed in the README):

* ``scanner`` (``hologic``, ``lunar`` for GE Lunar, ``norland``) is required on each scan: both
  computed T-scores and scan-to-scan comparisons depend on it. ``scanner_id`` (serial) is optional;
  scans from different serials are not compared.
* Birth is ``birth_date`` when given (it must agree with ``age_years`` within a year), otherwise
  ``as_of`` minus ``age_years``.
* ``menopausal_status`` is required for women and refused for men.
* Weight 20-300 kg and height 100-250 cm are the accepted ranges.
* Two scans on the same date are refused (a scan-to-scan change needs distinct dates).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bonecast.clinical._data import read_data
from bonecast.simulation import DRUGS, SITES, DrugClass, Route
from bonecast.simulation.drugs import DrugUse
from bonecast.validation import within

DAYS_PER_YEAR = 365.25
DAYS_PER_MONTH = DAYS_PER_YEAR / 12


Bmd = Annotated[float, within(0.2, 2.0, "0.2-2.0 g/cm2")]
Score = Annotated[float, within(-6.0, 6.0, "-6..+6")]
Percent = Annotated[float, within(0.0, 100.0, "0-100 %")]

Scanner = Literal["hologic", "lunar", "norland"]
Ethnicity = Literal[
    "white_or_not_recorded",
    "indian",
    "pakistani",
    "bangladeshi",
    "other_asian",
    "black_caribbean",
    "black_african",
    "chinese",
    "other",
]
"""QFracture-2012 ethnic groups (docs/clinical/fracture-risk.md section 4.2, codes 1-9 in this
order)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Measurement(_Strict):
    """One DXA site: BMD (g/cm2), and the T- and Z-scores printed on the report, if any.

    The one site schema of bonecast (the registry's scan sites are this model too). A site with
    only a Z-score is kept and shown, but takes no part in T-score decisions (a note says so).
    """

    bmd_g_cm2: Bmd | None = None
    t_score: Score | None = None
    z_score: Score | None = None

    @model_validator(mode="after")
    def _something_measured(self) -> Measurement:
        given = (self.bmd_g_cm2, self.t_score, self.z_score)
        if all(value is None for value in given) and not self._has_vertebrae():
            raise ValueError("give bmd_g_cm2, t_score or z_score")
        return self

    def _has_vertebrae(self) -> bool:
        return False


class Vertebra(_Strict):
    """One lumbar vertebra of the report; ``excluded`` marks it non-assessable (e.g. fractured)."""

    t_score: Score
    bmd_g_cm2: Bmd | None = None
    excluded: bool = False


class Vertebrae(_Strict):
    """Per-vertebra values L1-L4 (any subset given)."""

    L1: Vertebra | None = None
    L2: Vertebra | None = None
    L3: Vertebra | None = None
    L4: Vertebra | None = None

    def items(self) -> Iterator[tuple[str, Vertebra]]:
        """(name, vertebra) for each vertebra given, from L1 down."""
        for name in ("L1", "L2", "L3", "L4"):
            vertebra = getattr(self, name)
            if vertebra is not None:
                yield name, vertebra


class SpineMeasurement(Measurement):
    """The lumbar spine (L1-L4), optionally with per-vertebra values for ISCD exclusion."""

    vertebrae: Vertebrae | None = None

    def _has_vertebrae(self) -> bool:
        return self.vertebrae is not None and any(True for _ in self.vertebrae.items())


class Scan(_Strict):
    """One DXA visit."""

    date: date
    scanner: Scanner
    scanner_id: str | None = None
    lumbar_spine: SpineMeasurement | None = None
    total_hip: Measurement | None = None
    femoral_neck: Measurement | None = None

    @model_validator(mode="after")
    def _a_site(self) -> Scan:
        if all(self.site(site) is None for site in SITES):
            raise ValueError(f"a scan needs at least one of the sites {', '.join(SITES)}")
        return self

    def site(self, site: str) -> Measurement | None:
        """The measurement at ``site`` (one of :data:`bonecast.simulation.SITES`)."""
        measurement: Measurement | None = getattr(self, site)
        return measurement


class RiskFactors(_Strict):
    """Clinical risk factors: the AIBL list (docs/clinical/aibl-algorithm.md section 1.3) and
    QFracture-2012 inputs (4.2)."""

    current_smoker: bool = False
    past_smoker: bool = False
    cigarettes_per_day: Annotated[float, within(0, 200, "0-200 cigarettes/day")] | None = None
    alcohol_units_per_day: Annotated[float, within(0, 100, "0-100 units/day")] = 0.0
    family_history_hip_fracture: bool = False
    fragility_fracture_after_50: bool = False
    prior_vertebral_fracture: bool = False
    prior_hip_fracture: bool = False
    oral_glucocorticoids_over_6_months: bool = False
    rheumatoid_arthritis: bool = False
    systemic_lupus_erythematosus: bool = False
    history_of_falls: bool = False
    dementia: bool = False
    parkinsons_disease: bool = False
    type1_diabetes: bool = False
    type2_diabetes: bool = False
    cardiovascular_disease: bool = False
    asthma_or_copd: bool = False
    chronic_liver_disease: bool = False
    chronic_kidney_disease: bool = False
    malabsorption: bool = False
    endocrine_disorder: bool = False
    epilepsy_or_anticonvulsants: bool = False
    antidepressants: bool = False
    lives_in_care_home: bool = False

    @property
    def any_fragility_fracture(self) -> bool:
        """A fragility fracture of any recorded kind (for 'severe osteoporosis')."""
        return (
            self.fragility_fracture_after_50
            or self.prior_vertebral_fracture
            or self.prior_hip_fracture
        )


class Treatment(DrugUse, _Strict):
    """A drug taken, being taken or planned; ``drug`` is a name of the simulation catalogue."""

    drug: str
    start_date: date
    planned_stop_date: date | None = None
    stop_date: date | None = None
    last_dose_date: date | None = None
    dose_mg: Annotated[float, Field(gt=0)] | None = None
    interval_days: Annotated[float, Field(gt=0)] | None = None
    route: Route | None = None

    @model_validator(mode="after")
    def _known_and_ordered(self) -> Treatment:
        if self.drug not in DRUGS:
            raise ValueError(f"drug: unknown drug {self.drug!r}; accepted: {', '.join(DRUGS)}")
        routes = DRUGS[self.drug].routes
        if self.route is not None and self.route not in routes:
            raise ValueError(f"route: {self.drug} is given {', '.join(routes)}, not {self.route}")
        for name in ("planned_stop_date", "stop_date", "last_dose_date"):
            day = getattr(self, name)
            if day is not None and day < self.start_date:
                raise ValueError(f"{name}: {day} is before start_date {self.start_date}")
        return self

    @property
    def end_date(self) -> date | None:
        """When it stops (the actual stop date, else the planned one); ``None`` = open-ended."""
        return self.stop_date or self.planned_stop_date

    def active_on(self, day: date) -> bool:
        """Taken on ``day``: started and not yet stopped."""
        return self.start_date <= day and (self.end_date is None or day < self.end_date)

    def current_or_planned(self, day: date) -> bool:
        """Taken on ``day`` or starting later."""
        return self.active_on(day) or self.start_date > day


class Lab(_Strict):
    """One laboratory result; ``test`` and ``unit`` must be a known pair (data/labs.yaml)."""

    date: date
    test: str
    value: Annotated[float, Field(gt=0)]
    unit: str
    assay: str | None = None

    @model_validator(mode="after")
    def _known_test_and_unit(self) -> Lab:
        tests = lab_tests()
        if self.test not in tests:
            raise ValueError(f"test: unknown test {self.test!r}; accepted: {', '.join(tests)}")
        units = tests[self.test]["units"]
        if self.unit not in units:
            raise ValueError(
                f"unit: {self.unit!r} is not a unit of {self.test}; accepted: {', '.join(units)}"
            )
        return self

    @property
    def canonical_value(self) -> float:
        """The value in the test's canonical unit (data/labs.yaml)."""
        return self.value * float(lab_tests()[self.test]["units"][self.unit])


class FraxResult(_Strict):
    """A 10-year FRAX result obtained from the official tool (bonecast does not compute FRAX)."""

    major_osteoporotic_pct: Percent
    hip_pct: Percent
    computed_with_bmd: bool = True
    glucocorticoids: bool = False
    prednisolone_mg_per_day: Annotated[float, within(0, 100, "0-100 mg/day")] | None = None
    tool: str | None = None


class Patient(_Strict):
    """Everything ``bonecast assess`` reads about one patient."""

    sex: Literal["female", "male"]
    age_years: Annotated[float, within(18, 110, "18-110 years")]
    birth_date: date | None = None
    menopausal_status: Literal["premenopausal", "postmenopausal"] | None = None
    weight_kg: Annotated[float, within(20, 300, "20-300 kg")] | None = None
    height_cm: Annotated[float, within(100, 250, "100-250 cm")] | None = None
    ethnicity: Ethnicity = "white_or_not_recorded"
    risk_factors: RiskFactors = RiskFactors()
    scans: list[Scan] = Field(default_factory=list)
    treatments: list[Treatment] = Field(default_factory=list)
    labs: list[Lab] = Field(default_factory=list)
    frax: FraxResult | None = None
    high_recurrence_risk: bool = False
    as_of: date = Field(default_factory=date.today)

    @model_validator(mode="after")
    def _consistent(self) -> Patient:
        problems = list(self._date_problems())
        if self.sex == "female" and self.menopausal_status is None:
            problems.append(
                "menopausal_status: required for women (premenopausal or postmenopausal)"
            )
        if self.sex == "male" and self.menopausal_status is not None:
            problems.append("menopausal_status: only for women")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _date_problems(self) -> Iterator[str]:
        born = self.born
        if self.birth_date is not None:
            implied = (self.as_of - self.birth_date).days / DAYS_PER_YEAR
            if abs(implied - self.age_years) >= 1:
                yield (
                    f"age_years: {self.age_years:g} does not match birth_date {self.birth_date} "
                    f"(age {implied:.1f} on as_of {self.as_of})"
                )
        dated: list[tuple[str, date]] = [
            (f"scans[{i}].date", s.date) for i, s in enumerate(self.scans)
        ]
        dated += [(f"labs[{i}].date", lab.date) for i, lab in enumerate(self.labs)]
        for i, t in enumerate(self.treatments):
            dated.append((f"treatments[{i}].start_date", t.start_date))
            if t.last_dose_date is not None:
                dated.append((f"treatments[{i}].last_dose_date", t.last_dose_date))
        for where, day in dated:
            if day < born:
                yield f"{where}: {day} is before birth ({born})"
            elif day > self.as_of and not where.endswith("start_date"):
                yield f"{where}: {day} is in the future (after as_of {self.as_of})"
        seen: dict[date, int] = {}
        for i, scan in enumerate(self.scans):
            if scan.date in seen:
                yield f"scans[{i}].date: {scan.date} is also the date of scans[{seen[scan.date]}]"
            seen.setdefault(scan.date, i)

    @property
    def born(self) -> date:
        """Date of birth: given, or ``as_of`` minus ``age_years``."""
        if self.birth_date is not None:
            return self.birth_date
        return self.as_of - timedelta(days=round(self.age_years * DAYS_PER_YEAR))

    @property
    def bmi_kg_m2(self) -> float | None:
        """Body-mass index from weight and height, if both are given."""
        if self.weight_kg is None or self.height_cm is None:
            return None
        return self.weight_kg / (self.height_cm / 100) ** 2

    def age_on(self, day: date) -> float:
        """Age in years on ``day``."""
        return self.age_years - (self.as_of - day).days / DAYS_PER_YEAR

    def sorted_scans(self) -> list[Scan]:
        """Scans from the earliest to the latest."""
        return sorted(self.scans, key=lambda scan: scan.date)

    def treatments_of(self, *classes: DrugClass) -> list[Treatment]:
        """Treatments whose drug belongs to one of ``classes``."""
        return [t for t in self.treatments if t.drug_class in classes]


class PatientError(ValueError):
    """A patient file that cannot be assessed; ``problems`` lists 'field: what is wrong' lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"invalid patient {source}:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems
        self.source = source

    def __reduce__(self) -> tuple[type[PatientError], tuple[str, list[str]]]:
        """Pickled with its own arguments (it crosses from a forecast worker process)."""
        return (type(self), (self.source, self.problems))


def lab_tests() -> dict[str, dict[str, Any]]:
    """The accepted laboratory tests with their units (data/labs.yaml)."""
    tests: dict[str, dict[str, Any]] = read_data("labs.yaml")
    return tests


def _model_at(loc: Iterable[int | str]) -> type[BaseModel] | None:
    """The model class reached by following ``loc`` from :class:`Patient` (list indices skipped)."""
    current: type[BaseModel] | None = Patient
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part)) if current is not None else None
        if field is None:
            return None
        current = _inner_model(field.annotation)
    return current


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _location(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def describe_errors(error: ValidationError) -> list[str]:
    """One 'field: what is wrong' line per problem of a failed :class:`Patient` validation.

    Model validators name the field they concern at the start of their message
    ('drug: unknown drug ...'); it is joined to the location of the model.
    """
    lines = []
    for item in error.errors():
        loc = item["loc"]
        where = _location(loc)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            holder = _model_at(loc[:-1])
            accepted = ", ".join(holder.model_fields) if holder is not None else "none"
            message = f"unknown key; accepted: {accepted}"
        elif item["type"] == "missing":
            message = "required"
        holder = _model_at(loc)
        for line in message.split("\n"):
            head, sep, _ = line.partition(": ")
            if where and sep and holder is not None and head in holder.model_fields:
                lines.append(f"{where}.{line}")
            else:
                lines.append(f"{where}: {line}" if where else line)
    return lines


def parse_patient(data: str | bytes | Mapping[str, Any], source: str = "<patient>") -> Patient:
    """Validate a patient from JSON text or a decoded mapping; :class:`PatientError` on problems."""
    text = data if isinstance(data, str | bytes) else json.dumps(data, default=str)
    try:
        decoded = json.loads(text)
    except json.JSONDecodeError as error:
        raise PatientError(source, [f"not valid JSON: {error}"]) from None
    if not isinstance(decoded, dict):
        raise PatientError(source, ["the patient must be a JSON object"])
    try:
        return Patient.model_validate_json(text)
    except ValidationError as error:
        raise PatientError(source, describe_errors(error)) from None


def load_patient(path: str | Path) -> Patient:
    """Read and validate a patient JSON file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PatientError(str(path), [f"cannot read the file: {error.strerror}"]) from None
    return parse_patient(text, str(path))
