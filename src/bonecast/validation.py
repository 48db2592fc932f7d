"""Validation helpers shared by every edge that accepts user input (pydantic v2).

Each check also states what it accepts in the JSON schema (``minimum``/``maximum``, ``enum``),
so that the OpenAPI description, generated clients and fuzzers see the contract that is enforced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import AfterValidator, GetJsonSchemaHandler
from pydantic_core import CoreSchema


@dataclass(frozen=True, slots=True)
class CheckedValue(AfterValidator):
    """An :class:`~pydantic.AfterValidator` that adds ``schema`` (key, value pairs) to the JSON
    schema of the value it checks."""

    schema: tuple[tuple[str, Any], ...] = ()

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        json_schema: dict[str, Any] = handler(core_schema)
        json_schema.update((key, list(v) if isinstance(v, tuple) else v) for key, v in self.schema)
        return json_schema


def within(low: float, high: float, accepted: str) -> CheckedValue:
    """A range check whose message says what is accepted ('2.4 is outside 0.2-2.0 g/cm2')."""

    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(f"{value:g} is outside {accepted}")
        return value

    return CheckedValue(check, (("minimum", low), ("maximum", high)))


def one_of(what: str, accepted: tuple[str, ...]) -> CheckedValue:
    """A check that a text is one of ``accepted`` ("unknown site 'x'; accepted: ...")."""

    def check(value: str) -> str:
        if value not in accepted:
            raise ValueError(f"unknown {what} {value!r}; accepted: {', '.join(accepted)}")
        return value

    return CheckedValue(check, (("enum", accepted),))


def enum_schema(values: Callable[[], tuple[str, ...]] | tuple[str, ...]) -> dict[str, Any]:
    """``json_schema_extra`` listing the values a field-level validator accepts."""
    return {"enum": list(values() if callable(values) else values)}
