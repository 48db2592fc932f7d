"""Regimens for the Python API: one plan of treatments that every patient follows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from bonecast.python_api.populations import _describe
from bonecast.simulation.drugs import Route, get_drug
from bonecast.simulation.regimens import AdherenceModel, Treatment


@dataclass(frozen=True)
class Regimen:
    """Treatments given to every patient (each with its adherence model and rules).

    Combine regimens with ``+`` (drugs given together or one after the other).
    """

    treatments: tuple[Treatment, ...]

    @classmethod
    def standard(cls, drug: str, **overrides: Any) -> Regimen:
        """``drug`` at its first labelled dose and interval, from month 0 for the whole run.

        ``overrides`` are any :class:`~bonecast.simulation.regimens.Treatment` field:
        ``dose_mg`` (mg), ``interval_days`` (days), ``start_month``, ``stop_month`` (months
        from baseline), ``route``, ``adherence`` (a probability of taking each oral dose or an
        :class:`~bonecast.simulation.regimens.AdherenceModel` / its mapping), ``start_when`` and
        ``stop_when`` (T-score rules). An unknown drug or a bad value raises ``ValueError``
        naming the field and the accepted values.
        """
        try:
            standard = get_drug(drug).regimens[0]
        except KeyError as error:
            raise ValueError(str(error).strip("'\"")) from None
        fields: dict[str, Any] = {
            "drug": drug,
            "dose_mg": standard.dose_mg,
            "interval_days": standard.interval_days,
            "route": standard.route,
        }
        if "start_when" not in overrides:
            fields["start_month"] = 0.0
        fields.update(overrides)
        try:
            return cls((Treatment.model_validate(fields),))
        except ValidationError as error:
            raise ValueError(_describe(error, f"Regimen.standard({drug!r})")) from None

    @classmethod
    def of(cls, treatments: Sequence[Treatment]) -> Regimen:
        """A regimen of already validated treatments."""
        return cls(tuple(treatments))

    def __add__(self, other: Regimen) -> Regimen:
        return Regimen(self.treatments + other.treatments)

    def switch_to(self, drug: str, month: float, **overrides: Any) -> Regimen:
        """Stop every treatment still given at ``month`` and start ``drug`` then (its standard
        regimen, ``overrides`` as in :meth:`standard`)."""
        kept = []
        for t in self.treatments:
            if t.start_month is not None and t.start_month >= month:
                continue
            if t.stop_month is None or t.stop_month > month:
                t = t.model_copy(update={"stop_month": month})
            kept.append(t)
        return Regimen(tuple(kept)) + Regimen.standard(drug, **{"start_month": month, **overrides})

    def with_adherence(self, **model: Any) -> Regimen:
        """Every treatment with the :class:`~bonecast.simulation.regimens.AdherenceModel`
        ``model`` (fields not given keep their defaults); take-probability and injection delays
        apply only where the route allows them (oral / injected doses)."""
        out = []
        for t in self.treatments:
            fields = dict(model)
            if t.given_route is not Route.ORAL:
                fields.pop("take_probability", None)
            if t.given_route is Route.ORAL or get_drug(t.drug).is_exposure:
                fields.pop("injection_delay_days", None)
            adherence = AdherenceModel.model_validate(fields)
            out.append(Treatment.model_validate({**t.model_dump(), "adherence": adherence}))
        return Regimen(tuple(out))
