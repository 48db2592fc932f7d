"""Reading the reference data shipped in ``bonecast/clinical/data`` and the provenance type.

Every number in those files carries a ``source`` and a ``verification`` tag
(docs/clinical/index.md section 0): ``V`` verified against a retrievable source, ``V-2nd`` through a
secondary source, ``V-calc`` re-computed by us, ``UNVERIFIED`` not checked against the primary
source, and ``assumption`` for a choice bonecast made where the specification leaves it open.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict

_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML was built with it (about 10x faster, the same data), else
PyYAML's own."""

Verification = Literal["V", "V-2nd", "V-calc", "UNVERIFIED", "assumption"]


class Sourced(BaseModel):
    """A datum with the citation it comes from and how far it was checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    verification: Verification


class SourcedNumber(Sourced):
    """A number (unit in the field name that holds it) with its provenance."""

    value: float


@cache
def read_data(name: str) -> Any:
    """Decoded content of ``data/<name>`` (YAML, or JSON when the name ends in ``.json``)."""
    text = resources.files("bonecast.clinical").joinpath("data").joinpath(name).read_text("utf-8")
    return json.loads(text) if name.endswith(".json") else yaml.load(text, Loader=_YamlLoader)
