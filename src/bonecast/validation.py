"""Validation helpers shared by every edge that accepts user input (pydantic v2)."""

from __future__ import annotations

from pydantic import AfterValidator


def within(low: float, high: float, accepted: str) -> AfterValidator:
    """A range check whose message says what is accepted ('2.4 is outside 0.2-2.0 g/cm2')."""

    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(f"{value:g} is outside {accepted}")
        return value

    return AfterValidator(check)
