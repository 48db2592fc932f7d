"""CDS Hooks 1.0 (docs/clinical/interoperability.md section 6.6): discovery and the ``patient-view``
service.

``GET /cds-services`` lists the service; ``POST /cds-services/{id}`` reads the prefetch (FHIR
R4 Patient, DXA Observations, MedicationStatements with their dosage;
:mod:`bonecast.services.fhir_input`), runs the assessment and answers with cards: the
recommendation (``critical`` when the denosumab-stop warning fires, ``warning`` when
bone-directed therapy is indicated or a DXA is needed, ``info`` otherwise) and the next DXA.

* A prefetch entry that is missing or an ``OperationOutcome`` is fetched from ``fhirServer``
  (:mod:`bonecast.api.cds_prefetch`); if it still cannot be had, the only card says which data
  are missing: no recommendation is computed without them.
* Card summaries are under 140 characters (the specification's limit), shortened at a word
  boundary; the full text is in ``detail``.
* CORS on every route, JWT verification optional (:mod:`bonecast.api.cds_settings`,
  :mod:`bonecast.api.cds_auth`). The recommendation card links to the patient's registry page
  only for a call whose JWT was verified for a trusted issuer; any other call gets advice from
  its prefetch alone and nothing from the registry.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from bonecast import DISCLAIMER, labels
from bonecast.api.auth import RegistryDep
from bonecast.api.cds_auth import verified_ehr
from bonecast.api.cds_prefetch import MISSING_LABELS, complete_prefetch
from bonecast.api.cds_settings import CdsSettings
from bonecast.clinical import Assessment, assess
from bonecast.registry import Registry
from bonecast.registry import terminology as codes
from bonecast.services import PrefetchError, patient_from_fhir
from bonecast.services.fhir_input import resources

router = APIRouter(prefix="/cds-services", tags=["CDS Hooks"])

SERVICE_ID = "aibl-bone-health"
SUMMARY_MAX = 139
"""Longest card summary: the specification asks for fewer than 140 characters."""
_PATIENT = "{{context.patientId}}"
PREFETCH = {
    "patient": f"Patient/{_PATIENT}",
    "dxa": f"Observation?patient={_PATIENT}&code="
    + ",".join(f"{codes.LOINC}|{code}" for code in codes.DXA_BY_LOINC),
    "medications": f"MedicationStatement?patient={_PATIENT}",
}

Indicator = Literal["info", "warning", "critical"]


class Link(BaseModel):
    """A card link (``absolute``: a web page)."""

    label: str
    url: str
    type: Literal["absolute", "smart"] = "absolute"


class Source(BaseModel):
    """Where a card's advice comes from."""

    label: str


class Card(BaseModel):
    """A CDS Hooks card."""

    uuid: str = Field(default_factory=lambda: str(uuid.uuid4()))
    summary: str = Field(max_length=SUMMARY_MAX)
    detail: str | None = None
    indicator: Indicator
    source: Source
    links: list[Link] = Field(default_factory=list)


class CdsResponse(BaseModel):
    """The cards of one hook call."""

    cards: list[Card]


class Service(BaseModel):
    """One service of the discovery document."""

    hook: str
    id: str
    title: str
    description: str
    prefetch: dict[str, str]


class Discovery(BaseModel):
    """The discovery document."""

    services: list[Service]


class CdsRequest(BaseModel):
    """A hook call (only what bonecast reads is checked; FHIR server fields are ignored)."""

    model_config = ConfigDict(extra="allow")

    hook: str
    hookInstance: str
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None


SERVICE = Service(
    hook="patient-view",
    id=SERVICE_ID,
    title="Bone health on aromatase inhibitors",
    description=(
        "Summarises the DXA results, fracture-risk estimate and AIBL recommendation, "
        "and when the next DXA is due."
    ),
    prefetch=PREFETCH,
)


def shorten(text: str, limit: int = SUMMARY_MAX) -> str:
    """``text`` if it fits in ``limit`` characters, else cut at a word boundary with '…'."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if not text[limit - 1].isspace() and " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-") + "…"


def _card(summary: str, detail: str, **fields: Any) -> Card:
    """A card whose summary fits; a shortened summary is given in full at the top of the detail."""
    short = shorten(summary)
    if short != summary and summary not in detail:
        detail = f"**{summary}**\n\n{detail}"
    return Card(summary=short, detail=detail, **fields)


def _indicator(result: Assessment) -> Indicator:
    recommendation = result.recommendation
    if any(advice.severity == "critical" for advice in recommendation.advice):
        return "critical"
    if recommendation.start_bone_protective_therapy or recommendation.decision == "get_dxa":
        return "warning"
    return "info"


def _detail(result: Assessment, notes: list[str]) -> str:
    """The card's detail in words (labels.py): the rule, scores, source, advice and notes."""
    recommendation = result.recommendation
    lowest = (
        f"{result.lowest_t_score:.1f} ({labels.site(result.lowest_t_score_site)})"
        if result.lowest_t_score is not None and result.lowest_t_score_site
        else "no DXA result"
    )
    lines = [
        f"**{labels.words(recommendation.rule)}**",
        "",
        f"Lowest T-score: {lowest}; WHO category: {labels.category(result.who_category)}.",
        f"{result.guideline.title}, version {result.guideline.version}; source: "
        f"{labels.cite(recommendation.source)}.",
        "",
        *(
            f"- {labels.SEVERITIES.get(advice.severity, advice.severity)}: "
            f"{labels.words(advice.text)}"
            for advice in recommendation.advice
        ),
        *(f"- Note: {labels.words(note)}" for note in [*result.warnings, *notes]),
        "",
        f"*{DISCLAIMER}*",
    ]
    return "\n".join(lines)


def _cards(result: Assessment, notes: list[str], link: Link | None) -> list[Card]:
    recommendation = result.recommendation
    source = Source(label=result.guideline.title)
    due = recommendation.next_dxa
    return [
        _card(
            f"{labels.decision(recommendation.decision)}: {labels.words(recommendation.rule)}",
            _detail(result, notes),
            indicator=_indicator(result),
            source=source,
            links=[link] if link else [],
        ),
        _card(
            f"Next DXA due {due.due}" + (" (overdue)" if due.overdue else ""),
            labels.words(due.reason),
            indicator="warning" if due.overdue else "info",
            source=source,
        ),
    ]


def missing_data_card(missing: dict[str, str]) -> Card:
    """The only card when data the assessment needs could not be had: no advice without it."""
    names = [MISSING_LABELS.get(key, key) for key in missing]
    detail = [
        "bonecast gives no bone-health advice without these data:",
        "",
        *(f"- {MISSING_LABELS.get(key, key)}: {why}" for key, why in missing.items()),
        "",
        f"*{DISCLAIMER}*",
    ]
    return _card(
        f"No bone-health advice: missing {', '.join(names)}",
        "\n".join(detail),
        indicator="warning",
        source=Source(label="bonecast"),
    )


@router.get("")
def discovery() -> Discovery:
    """The CDS Hooks discovery document."""
    return Discovery(services=[SERVICE])


def _mrn(patient: dict[str, Any]) -> str | None:
    identifiers = patient.get("identifier") or []
    chosen = [i for i in identifiers if i.get("system") == codes.MRN_SYSTEM] or identifiers
    return str(chosen[0].get("value")) if len(chosen) == 1 and chosen[0].get("value") else None


def _patient_link(registry: Registry, patient: dict[str, Any], base: str) -> Link | None:
    mrn = _mrn(patient)
    with registry.session() as session:
        record = session.find_patient(mrn) if mrn else None
    if record is None:
        return None
    return Link(label="Open the patient in bonecast", url=f"{base}/patients/{record.id}")


def _settings(request: Request) -> CdsSettings:
    settings: CdsSettings = request.app.state.cds_settings
    return settings


@router.post("/{service_id}", response_model_exclude_none=True)
def patient_view(
    registry: RegistryDep, request: Request, service_id: str, call: CdsRequest
) -> CdsResponse:
    """Answer a ``patient-view`` call with the recommendation and next-DXA cards."""
    if service_id != SERVICE_ID:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no CDS service {service_id}")
    if call.hook != SERVICE.hook:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"{service_id} answers {SERVICE.hook}, not {call.hook}"
        )
    settings = _settings(request)
    ehr = verified_ehr(request, settings)
    prefetch, missing = complete_prefetch(
        PREFETCH, call.model_dump(), lambda server: settings.may_fetch(server, ehr is not None)
    )
    if missing:
        return CdsResponse(cards=[missing_data_card(missing)])
    patients = resources(prefetch.get("patient"))
    others = [r for key in PREFETCH if key != "patient" for r in resources(prefetch.get(key))]
    try:
        patient, notes = patient_from_fhir(patients[0] if patients else None, others)
    except PrefetchError as error:
        return CdsResponse(cards=[missing_data_card({"patient": str(error)})])
    link = None
    if ehr is not None:  # registry data only for a verified EHR of a trusted issuer
        link = _patient_link(registry, patients[0], str(request.base_url).rstrip("/"))
    return CdsResponse(cards=_cards(assess(patient), notes, link))
