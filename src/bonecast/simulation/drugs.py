"""The drug catalogue: what each drug is, how it may be given, and how the model represents it.

Adding a drug means adding one :class:`Drug` entry here and its parameters in the data file; the
regimen compiler and the model read these entries rather than testing drug names.

Two representations (docs/model/equations.md sections 5-6):

* **exposure drugs** (aromatase inhibitors, tamoxifen, goserelin) act through an on/off exposure
  while taken; the model represents only their standard doses, so other doses are refused;
* **dosed drugs** (bisphosphonates, denosumab) act through the amount given at each dose event;
  any positive dose and interval is simulated (dose-response);
* **testosterone replacement** (men only) acts through its absorbed dose rate averaged over the
  interval (:mod:`bonecast.simulation.male`); any positive dose and interval is simulated.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING


class DrugClass(StrEnum):
    """Pharmacological class, which decides the model pathway a drug acts through."""

    AROMATASE_INHIBITOR = "aromatase_inhibitor"
    SERM = "serm"
    OVARIAN_SUPPRESSION = "ovarian_suppression"
    BISPHOSPHONATE = "bisphosphonate"
    RANKL_ANTIBODY = "rankl_antibody"
    ANDROGEN = "androgen"


class Route(StrEnum):
    """Route of administration."""

    ORAL = "oral"
    IV = "iv"
    SC = "sc"
    IM = "im"
    TRANSDERMAL = "transdermal"


@dataclass(frozen=True)
class StandardRegimen:
    """A labelled dose and interval (mg every ``interval_days`` days) with its source."""

    dose_mg: float
    interval_days: float
    route: Route
    source: str


@dataclass(frozen=True)
class Drug:
    """One drug of the catalogue."""

    name: str
    drug_class: DrugClass
    routes: tuple[Route, ...]
    regimens: tuple[StandardRegimen, ...]

    @property
    def default_route(self) -> Route:
        """The route used when a treatment does not name one (the first listed)."""
        return self.routes[0]

    @property
    def is_exposure(self) -> bool:
        """True when the model represents the drug as an on/off exposure (standard dose only)."""
        return self.drug_class in EXPOSURE_CLASSES


EXPOSURE_CLASSES = frozenset(
    {DrugClass.AROMATASE_INHIBITOR, DrugClass.SERM, DrugClass.OVARIAN_SUPPRESSION}
)

_ADJ = "usual adjuvant dose (docs/model/equations.md section 5; UNVERIFIED against the label)"
_AIBL = "AIBL 2017 joint position statement, docs/clinical/aibl-algorithm.md section 1.4"
_MODEL = "docs/model/equations.md section 5 regimen list"
_TESTOSTERONE_IM = (
    "Depo-Testosterone / testosterone enanthate labels: 50-400 mg every 2-4 weeks; "
    "200 mg every 2 weeks is the usual replacement dose (Bhasin S et al. J Clin Endocrinol "
    "Metab 2018;103:1715, Endocrine Society testosterone guideline)"
)

DRUGS: dict[str, Drug] = {
    drug.name: drug
    for drug in (
        Drug(
            "anastrozole",
            DrugClass.AROMATASE_INHIBITOR,
            (Route.ORAL,),
            (StandardRegimen(1.0, 1.0, Route.ORAL, _ADJ),),
        ),
        Drug(
            "letrozole",
            DrugClass.AROMATASE_INHIBITOR,
            (Route.ORAL,),
            (StandardRegimen(2.5, 1.0, Route.ORAL, _ADJ),),
        ),
        Drug(
            "exemestane",
            DrugClass.AROMATASE_INHIBITOR,
            (Route.ORAL,),
            (StandardRegimen(25.0, 1.0, Route.ORAL, _ADJ),),
        ),
        Drug(
            "tamoxifen",
            DrugClass.SERM,
            (Route.ORAL,),
            (
                StandardRegimen(
                    20.0, 1.0, Route.ORAL, "docs/model/parameters.md section 7.1 (tau_T at 20 mg/d)"
                ),
            ),
        ),
        Drug(
            "goserelin",
            DrugClass.OVARIAN_SUPPRESSION,
            (Route.SC,),
            (
                StandardRegimen(3.6, 28.0, Route.SC, "Zoladex 3.6 mg implant every 28 days"),
                StandardRegimen(10.8, 84.0, Route.SC, "Zoladex 10.8 mg implant every 12 weeks"),
            ),
        ),
        Drug(
            "alendronate",
            DrugClass.BISPHOSPHONATE,
            (Route.ORAL,),
            (
                StandardRegimen(70.0, 7.0, Route.ORAL, _AIBL),
                StandardRegimen(10.0, 1.0, Route.ORAL, _MODEL),
            ),
        ),
        Drug(
            "risedronate",
            DrugClass.BISPHOSPHONATE,
            (Route.ORAL,),
            (
                StandardRegimen(35.0, 7.0, Route.ORAL, _AIBL),
                StandardRegimen(5.0, 1.0, Route.ORAL, _MODEL),
            ),
        ),
        Drug(
            "ibandronate",
            DrugClass.BISPHOSPHONATE,
            (Route.ORAL, Route.IV),
            (
                StandardRegimen(150.0, 30.0, Route.ORAL, _AIBL),
                StandardRegimen(3.0, 91.0, Route.IV, _MODEL),
            ),
        ),
        Drug(
            "zoledronic_acid",
            DrugClass.BISPHOSPHONATE,
            (Route.IV,),
            (
                StandardRegimen(4.0, 182.0, Route.IV, _AIBL),
                StandardRegimen(5.0, 365.0, Route.IV, _MODEL),
            ),
        ),
        Drug(
            "denosumab",
            DrugClass.RANKL_ANTIBODY,
            (Route.SC,),
            (
                StandardRegimen(
                    60.0,
                    182.0,
                    Route.SC,
                    "Prolia label; AIBL 2017, docs/clinical/aibl-algorithm.md section 1.4",
                ),
            ),
        ),
        Drug(
            "testosterone_cypionate",
            DrugClass.ANDROGEN,
            (Route.IM,),
            (StandardRegimen(200.0, 14.0, Route.IM, _TESTOSTERONE_IM),),
        ),
        Drug(
            "testosterone_enanthate",
            DrugClass.ANDROGEN,
            (Route.IM,),
            (StandardRegimen(200.0, 14.0, Route.IM, _TESTOSTERONE_IM),),
        ),
        Drug(
            "testosterone_gel",
            DrugClass.ANDROGEN,
            (Route.TRANSDERMAL,),
            (
                StandardRegimen(
                    50.0,
                    1.0,
                    Route.TRANSDERMAL,
                    "AndroGel 1 % label: 5 g of gel (50 mg testosterone) once a day",
                ),
            ),
        ),
    )
}
"""Every drug bonecast simulates, by the name used in trial specs."""

AROMATASE_INHIBITORS: tuple[str, ...] = tuple(
    name for name, d in DRUGS.items() if d.drug_class is DrugClass.AROMATASE_INHIBITOR
)
BISPHOSPHONATES: tuple[str, ...] = tuple(
    name for name, d in DRUGS.items() if d.drug_class is DrugClass.BISPHOSPHONATE
)
ANDROGENS: tuple[str, ...] = tuple(
    name for name, d in DRUGS.items() if d.drug_class is DrugClass.ANDROGEN
)


class DrugUse:
    """Mixin for input models that name a ``drug`` of the catalogue and an optional ``route``."""

    if TYPE_CHECKING:
        drug: str
        route: Route | None

    @property
    def drug_class(self) -> DrugClass:
        """The pharmacological class from the drug catalogue."""
        return DRUGS[self.drug].drug_class

    @property
    def given_route(self) -> Route:
        """The route given, else the drug's default."""
        return self.route or DRUGS[self.drug].default_route


def get_drug(name: str) -> Drug:
    """The catalogue entry for ``name``; a ``KeyError`` lists the accepted names."""
    try:
        return DRUGS[name]
    except KeyError:
        raise KeyError(f"unknown drug {name!r}; accepted: {', '.join(DRUGS)}") from None
