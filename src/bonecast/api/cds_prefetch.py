"""The prefetch of a CDS Hooks call, completed from the EHR's FHIR server when needed.

A prefetch entry that is missing, ``null`` or an ``OperationOutcome`` (the EHR could not fetch
it) is fetched from ``fhirServer`` with the ``fhirAuthorization`` access token as a bearer
token, when the call gives a server (CDS Hooks 1.0, "FHIR resource access"). What still cannot
be had is returned as missing, with the reason, so that no advice is computed without it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

FETCH_TIMEOUT_S = 10.0
MISSING_LABELS = {
    "patient": "the patient record (birth date and sex)",
    "dxa": "the DXA results",
    "medications": "the medication list",
}
"""What each prefetch key holds, in words (for the missing-data card)."""


def _outcome_text(resource: Mapping[str, Any]) -> str:
    issues = resource.get("issue") or []
    texts = [
        str(i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code") or "")
        for i in issues
        if isinstance(i, Mapping)
    ]
    return "; ".join(t for t in texts if t) or "no detail given"


def _unusable(value: Any) -> str | None:
    """Why a prefetch value cannot be used, or ``None`` when it can."""
    if value is None:
        return "not sent by the EHR"
    if not isinstance(value, Mapping):
        return "not a FHIR resource"
    if value.get("resourceType") == "OperationOutcome":
        return f"the EHR could not fetch it ({_outcome_text(value)})"
    return None


def _fetch(
    client: httpx.Client, server: str, query: str, headers: dict[str, str]
) -> tuple[Any, str | None]:
    url = f"{server.rstrip('/')}/{query}"
    try:
        response = client.get(url, headers=headers)
    except httpx.HTTPError as error:
        return None, f"the FHIR server did not answer ({type(error).__name__})"
    if response.status_code != 200:
        return None, f"the FHIR server answered {response.status_code}"
    try:
        value = response.json()
    except ValueError:
        return None, "the FHIR server's answer is not JSON"
    return value, _unusable(value)


def complete_prefetch(
    templates: Mapping[str, str], call: Mapping[str, Any], may_fetch: Callable[[str], bool]
) -> tuple[dict[str, Any], dict[str, str]]:
    """(prefetch, missing): the call's prefetch with unusable entries fetched from its FHIR
    server (when ``may_fetch(server)``), and the keys still missing with the reason."""
    prefetch = dict(call.get("prefetch") or {})
    patient_id = str((call.get("context") or {}).get("patientId") or "")
    server = call.get("fhirServer")
    if isinstance(server, str) and server and not may_fetch(server):
        server = None
        refused = "; its fhirServer is not one this service may fetch from"
    else:
        refused = "; no fhirServer to fetch it from"
    authorization = call.get("fhirAuthorization") or {}
    headers = {"Accept": "application/fhir+json"}
    if isinstance(authorization, Mapping) and authorization.get("access_token"):
        headers["Authorization"] = f"Bearer {authorization['access_token']}"
    missing: dict[str, str] = {}
    todo = {key: why for key in templates if (why := _unusable(prefetch.get(key)))}
    if todo and isinstance(server, str) and server and patient_id:
        with httpx.Client(timeout=FETCH_TIMEOUT_S) as client:
            for key in list(todo):
                query = templates[key].replace("{{context.patientId}}", patient_id)
                value, why = _fetch(client, server, query, headers)
                if why is None:
                    prefetch[key] = value
                    del todo[key]
                else:
                    todo[key] = f"{todo[key]}; fetching it: {why}"
    elif todo:
        todo = {key: f"{why}{refused}" for key, why in todo.items()}
    missing.update(todo)
    return prefetch, missing
