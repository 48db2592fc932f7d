"""Helpers of the browser tests: the running app, the patient the flow works on, scan counts."""

from __future__ import annotations

from dataclasses import dataclass

from bonecast.registry import Registry


@dataclass(frozen=True)
class LiveApp:
    """The running application: its address and registry."""

    base_url: str
    registry: Registry


@dataclass(frozen=True)
class TargetPatient:
    """A demo patient whose latest scan is over a year old (a new scan changes the advice)."""

    id: int
    mrn: str
    family_name: str
    given_name: str
    scanner: str


def scan_count(live_app: LiveApp, patient_id: int) -> int:
    """How many scans the registry holds for a patient."""
    with live_app.registry.session() as session:
        return len(session.list_scans(patient_id))
