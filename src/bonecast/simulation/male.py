"""Male physiology: baseline hormones, testosterone replacement PK and bone's response in men.

The equations live in :mod:`bonecast.simulation.model` (``male_hormone_ratios``); this module
loads the male parameters (``data/male_physiology.yaml``, each with its source) and turns them
into per-patient values for :class:`~bonecast.simulation.model.ModelConstants`:

* untreated testosterone T_0 is lognormal around the typical value (no age trend after 40,
  Kelsey 2014); untreated estradiol E2_0 = ratio x T_0, the ratio lognormal (aromatisation);
* a man's bone reads estradiol with his own EC50 and Hill exponent, which replace the female
  ones; every other bone parameter is the woman's (assumption: the remodelling machinery is
  shared, men differ by their hormone milieu);
* testosterone replacement is represented by its absorbed dose rate averaged over the dosing
  interval (dose x testosterone fraction x bioavailability / interval): serum testosterone is
  the clearance-limited average level, without intramuscular peaks and troughs, which bone
  (remodelling over months) does not resolve.
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from bonecast.simulation.model import Array, IdArray
from bonecast.simulation.randomness import Stream, standard_normal

MALE_PARAMETER_FILE = "male_physiology.yaml"
MALE_STREAM_OFFSET = 1_000_000
"""Counter offset of the men's hormone draws in the variability stream (clear of the female
parameter set's counters, 1000 per variability item)."""


class MaleParameter(BaseModel):
    """One male parameter with its unit and source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float
    unit: str
    description: str
    source: str


class TestosteroneProduct(BaseModel):
    """How much testosterone reaches the blood per mg of a product given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    testosterone_fraction: float = Field(gt=0, le=1)
    bioavailability: float = Field(gt=0, le=1)
    source: str

    @property
    def absorbed_per_mg(self) -> float:
        """mg of testosterone absorbed per mg of product."""
        return self.testosterone_fraction * self.bioavailability


class MaleParameters(BaseModel):
    """The male parameter file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    description: str
    parameters: dict[str, MaleParameter]
    testosterone_drugs: dict[str, TestosteroneProduct]

    def value(self, name: str) -> float:
        """The value of parameter ``name``."""
        return self.parameters[name].value

    def with_values(self, **changes: float) -> MaleParameters:
        """A copy with some values replaced (used by the male fit)."""
        params = {
            name: p.model_copy(update={"value": changes[name]}) if name in changes else p
            for name, p in self.parameters.items()
        }
        return self.model_copy(update={"parameters": params})

    def typical_estradiol_pg_ml(self) -> float:
        """Untreated estradiol of the typical man (pg/mL)."""
        return self.value("testosterone_ng_dl") * self.value("estradiol_per_testosterone")

    def patient_values(
        self, patient_ids: IdArray, seed: int, variability: bool
    ) -> dict[str, Array]:
        """Per-man values (keys as :meth:`ModelConstants.from_values` reads them).

        Includes the female keys a man replaces: ``e2_post_pg_ml`` and ``e2_pre_pg_ml`` (his
        untreated estradiol), ``ec50_e2_pg_ml`` and ``n_e`` (his bone's estradiol response).
        """
        n = patient_ids.size
        t0 = np.full(n, self.value("testosterone_ng_dl"))
        ratio = np.full(n, self.value("estradiol_per_testosterone"))
        if variability:
            for k, (values, cv) in enumerate(
                ((t0, "testosterone_cv"), (ratio, "estradiol_per_testosterone_cv"))
            ):
                omega = math.sqrt(math.log1p(self.value(cv) ** 2))
                z = standard_normal(seed, Stream.VARIABILITY, patient_ids, MALE_STREAM_OFFSET + k)
                values *= np.exp(omega * z)
        e2 = t0 * ratio
        return {
            "male": np.ones(n),
            "male.testosterone_ng_dl": t0,
            "male.hpg_gain": np.full(n, self.value("hpg_gain")),
            "male.ai_effect": np.full(n, self.value("ai_effect")),
            "male.testosterone_clearance_l_per_day": np.full(
                n, self.value("testosterone_clearance_l_per_day")
            ),
            "e2_post_pg_ml": e2,
            "e2_pre_pg_ml": e2.copy(),
            "ec50_e2_pg_ml": np.full(n, self.value("ec50_e2_pg_ml")),
            "n_e": np.full(n, self.value("n_e")),
        }


FEMALE_DEFAULTS: dict[str, float] = {
    "male": 0.0,
    "male.testosterone_ng_dl": 1.0,
    "male.hpg_gain": 0.0,
    "male.ai_effect": 1.0,
    "male.testosterone_clearance_l_per_day": 1e5,
}
"""The ``male.*`` values a woman carries (neutral; her testosterone is not modelled)."""


@cache
def default_male_parameters() -> MaleParameters:
    """The packaged male parameters."""
    text = resources.files("bonecast.simulation").joinpath("data", MALE_PARAMETER_FILE)
    return MaleParameters.model_validate(yaml.safe_load(text.read_text(encoding="utf-8")))


def absorbed_testosterone_mg_per_day(drug: str, dose_mg: float, interval_days: float) -> float:
    """Average absorbed testosterone (mg/day) of ``dose_mg`` of ``drug`` every ``interval_days``."""
    product = default_male_parameters().testosterone_drugs[drug]
    return dose_mg * product.absorbed_per_mg / interval_days
