"""Errors the registry raises, and field-level problem lists for people to read.

Messages name the field and what is accepted; they may quote the offending value back to the
user who sent it, so the callers must not write them to application logs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class FieldProblem(BaseModel):
    """One problem with one field (``field`` is a dotted path, empty for the whole input)."""

    model_config = ConfigDict(frozen=True)

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class RegistryError(Exception):
    """Base class of the registry's errors; ``field`` names the input field at fault, if one."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field

    def problem(self) -> FieldProblem:
        """This error as a :class:`FieldProblem`."""
        return FieldProblem(field=self.field, message=str(self))


class NotFoundError(RegistryError, LookupError):
    """No row with that id (or key)."""

    def __init__(self, entity: str, key: object, field: str = "") -> None:
        super().__init__(f"no {entity} {key}", field)
        self.entity = entity


class ConflictError(RegistryError):
    """The write would duplicate a row that must be unique (same MRN, same scan date...)."""


class InvalidInputError(RegistryError, ValueError):
    """Input that failed validation; ``problems`` lists every bad field. Nothing was written."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("invalid input:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems

    @classmethod
    def from_validation(cls, error: ValidationError) -> InvalidInputError:
        """The problems of a failed pydantic validation."""
        return cls(field_problems(error))


def field_problems(error: ValidationError) -> list[FieldProblem]:
    """One :class:`FieldProblem` per error of a pydantic validation, with a dotted field path."""
    problems = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"] if part != "[key]")
        if item["type"] == "missing":
            message = "required"
        elif item["type"] == "extra_forbidden":
            message = "unknown field"
        else:
            message = item["msg"].removeprefix("Value error, ")
        problems.append(FieldProblem(field=path, message=message))
    return problems
