"""CDS Hooks over real HTTP: bonecast and a stub EHR each served by uvicorn on a free port.

CORS preflights, prefetch completed from the EHR's FHIR server with its bearer token, the
missing-data card, JWT verification against the EHR's JWKS, and no registry information for an
unverified call (issue 15 item 4, issue 19 item 6).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cds_servers import ANASTROZOLE, DXA, EHR_ISSUER, OUTCOME, StubEhr, bundle, patient, serving
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from bonecast.api import create_app
from bonecast.api.cds_settings import CdsSettings
from bonecast.registry import PatientIn, Registry
from bonecast.registry.fhir import export_patient
from bonecast.services.demo import seed_demo

KNOWN_MRN = "BC-0100"
SERVICE = "/cds-services/aibl-bone-health"


@pytest.fixture(scope="module")
def ehr() -> Iterator[tuple[StubEhr, str]]:
    stub = StubEhr(KNOWN_MRN)
    with serving(stub.app) as url:
        yield stub, url


def _bonecast(tmp_path: Path, ehr_url: str, **settings: Any) -> Any:
    cds = CdsSettings(trusted_issuers={EHR_ISSUER: f"{ehr_url}/jwks.json"}, **settings)
    app = create_app(f"sqlite:///{tmp_path / 'cds.db'}", forecast_years=0, cds=cds)
    return app


@pytest.fixture
def bonecast(tmp_path: Path, ehr: tuple[StubEhr, str]) -> Iterator[tuple[str, Registry]]:
    app = _bonecast(tmp_path, ehr[1])
    with serving(app) as url:
        registry: Registry = app.state.registry
        with registry.session(actor="system:test") as session:
            session.create_patient(
                PatientIn.model_validate(
                    {
                        "mrn": KNOWN_MRN,
                        "birth_date": "1958-05-01",
                        "sex": "female",
                        "menopausal_status": "postmenopausal",
                    }
                )
            )
        yield url, registry


def _call(mrn: str, **prefetch: Any) -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": "ehr-1"},
        "prefetch": {"patient": patient(mrn), "dxa": DXA, "medications": bundle(ANASTROZOLE)}
        | prefetch,
    }


def _without_uuids(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in card.items() if k != "uuid"} for card in answer["cards"]]


def test_cors_preflight_and_headers_on_every_cds_route(bonecast: tuple[str, Registry]) -> None:
    url, _ = bonecast
    plain = httpx.options(f"{url}/cds-services")
    assert plain.status_code == 200
    assert plain.headers["access-control-allow-origin"] == "*"
    origin = {"Origin": "https://sandbox.cds-hooks.org"}
    preflight = httpx.options(
        f"{url}{SERVICE}",
        headers=origin
        | {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    discovery = httpx.get(f"{url}/cds-services", headers=origin)
    assert discovery.status_code == 200 and discovery.headers["access-control-allow-origin"] == "*"
    answer = httpx.post(f"{url}{SERVICE}", json=_call("X-1"), headers=origin)
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-origin" not in httpx.get(f"{url}/health", headers=origin).headers


def test_allowed_origins_are_configurable(tmp_path: Path, ehr: tuple[StubEhr, str]) -> None:
    app = _bonecast(tmp_path, ehr[1], allowed_origins=("https://ehr.example.org",))
    with serving(app) as url:
        ask = {"Access-Control-Request-Method": "POST"}
        good = httpx.options(f"{url}{SERVICE}", headers=ask | {"Origin": "https://ehr.example.org"})
        assert good.headers["access-control-allow-origin"] == "https://ehr.example.org"
        bad = httpx.options(f"{url}{SERVICE}", headers=ask | {"Origin": "https://evil.example"})
        assert bad.status_code == 403 and "access-control-allow-origin" not in bad.headers
        discovery = httpx.get(f"{url}/cds-services", headers={"Origin": "https://evil.example"})
        assert discovery.headers["access-control-allow-origin"] == "*"  # discovery stays public


def test_operation_outcome_prefetch_is_fetched_from_the_fhir_server_with_its_token(
    bonecast: tuple[str, Registry], ehr: tuple[StubEhr, str]
) -> None:
    url, _ = bonecast
    stub, ehr_url = ehr
    stub.authorizations.clear()
    call = _call(KNOWN_MRN, dxa=OUTCOME) | {
        "fhirServer": f"{ehr_url}/fhir",
        "fhirAuthorization": {
            "access_token": "ehr-access-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "bonecast",
        },
    }
    call["prefetch"].pop("medications")
    cards = httpx.post(f"{url}{SERVICE}", json=call).json()["cards"]
    assert cards[0]["summary"].startswith("Bone-directed therapy indicated")
    assert stub.authorizations == ["Bearer ehr-access-token"] * 2


def test_unfetchable_data_give_a_missing_data_card_not_advice(
    bonecast: tuple[str, Registry], ehr: tuple[StubEhr, str]
) -> None:
    url, _ = bonecast
    stub, ehr_url = ehr
    stub.fail = True
    try:
        call = _call(KNOWN_MRN, dxa=OUTCOME) | {"fhirServer": f"{ehr_url}/fhir"}
        [card] = httpx.post(f"{url}{SERVICE}", json=call).json()["cards"]
    finally:
        stub.fail = False
    assert card["summary"] == "No bone-health advice: missing the DXA results"
    assert "search failed" in card["detail"] and "answered 500" in card["detail"]


def test_fhir_server_allow_list_guards_unverified_calls(
    tmp_path: Path, ehr: tuple[StubEhr, str]
) -> None:
    """With BONECAST_CDS_FHIR_SERVERS set, an unverified call cannot make bonecast fetch from
    another server (no request leaves); a verified EHR's server is used."""
    stub, ehr_url = ehr
    app = _bonecast(tmp_path, ehr_url, fhir_servers=("https://fhir.hospital.example/",))
    with serving(app) as url:
        audience = f"{url}{SERVICE}"
        call = _call(KNOWN_MRN, dxa=OUTCOME) | {"fhirServer": f"{ehr_url}/fhir"}
        stub.authorizations.clear()
        [card] = httpx.post(audience, json=call).json()["cards"]
        assert card["summary"] == "No bone-health advice: missing the DXA results"
        assert "not one this service may fetch from" in card["detail"]
        assert stub.authorizations == []
        valid = {"Authorization": f"Bearer {stub.token(audience)}"}
        cards = httpx.post(audience, json=call, headers=valid).json()["cards"]
        assert cards[0]["summary"].startswith("Bone-directed therapy indicated")
        assert len(stub.authorizations) == 1


def test_registry_link_only_for_a_verified_trusted_ehr(
    bonecast: tuple[str, Registry], ehr: tuple[StubEhr, str]
) -> None:
    url, registry = bonecast
    stub, _ = ehr
    audience = f"{url}{SERVICE}"
    forged = stub.token(
        audience, key=rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    untrusted = stub.token(audience, issuer="https://other-ehr.example.org")
    wrong_audience = stub.token(f"{url}/cds-services/other")
    unverified = {}
    for name, headers in {
        "no token": {},
        "forged signature": {"Authorization": f"Bearer {forged}"},
        "untrusted issuer": {"Authorization": f"Bearer {untrusted}"},
        "wrong audience": {"Authorization": f"Bearer {wrong_audience}"},
        "not a JWT": {"Authorization": "Bearer not-a-jwt"},
    }.items():
        known = httpx.post(audience, json=_call(KNOWN_MRN), headers=headers)
        unknown = httpx.post(audience, json=_call("UNKNOWN-9"), headers=headers)
        assert known.status_code == unknown.status_code == 200, name
        assert _without_uuids(known.json()) == _without_uuids(unknown.json()), name
        assert all(card.get("links", []) == [] for card in known.json()["cards"]), name
        unverified[name] = _without_uuids(known.json())
    assert len({repr(v) for v in unverified.values()}) == 1

    valid = {"Authorization": f"Bearer {stub.token(audience)}"}
    known = httpx.post(audience, json=_call(KNOWN_MRN), headers=valid).json()
    with registry.session() as session:
        record = session.find_patient(KNOWN_MRN)
    assert record is not None
    assert known["cards"][0]["links"][0]["url"] == f"{url}/patients/{record.id}"
    unknown = httpx.post(audience, json=_call("UNKNOWN-9"), headers=valid).json()
    assert unknown["cards"][0].get("links", []) == []


def test_a_required_jwt_refuses_unverified_calls(tmp_path: Path, ehr: tuple[StubEhr, str]) -> None:
    stub, ehr_url = ehr
    with serving(_bonecast(tmp_path, ehr_url, require_jwt=True)) as url:
        audience = f"{url}{SERVICE}"
        refused = httpx.post(audience, json=_call(KNOWN_MRN))
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        valid = {"Authorization": f"Bearer {stub.token(audience)}"}
        assert httpx.post(audience, json=_call(KNOWN_MRN), headers=valid).status_code == 200
        assert httpx.get(f"{url}/cds-services").status_code == 200  # discovery stays public


def test_settings_from_the_environment() -> None:
    settings = CdsSettings.from_env(
        {
            "BONECAST_CDS_ALLOWED_ORIGINS": "https://a.example, https://b.example",
            "BONECAST_CDS_TRUSTED_ISSUERS": '{"https://ehr.example.org": "https://ehr.example.org/jwks"}',
            "BONECAST_CDS_REQUIRE_JWT": "true",
            "BONECAST_CDS_FHIR_SERVERS": "https://fhir.a.example/, https://fhir.b.example/",
        }
    )
    assert settings.fhir_servers == ("https://fhir.a.example/", "https://fhir.b.example/")
    assert settings.may_fetch("https://fhir.b.example/r4", verified=False)
    assert not settings.may_fetch("http://169.254.169.254/", verified=False)
    assert settings.may_fetch("http://169.254.169.254/", verified=True)
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.trusted_issuers == {"https://ehr.example.org": "https://ehr.example.org/jwks"}
    assert settings.require_jwt
    default = CdsSettings.from_env({})
    assert default.allowed_origins == ("*",) and not default.trusted_issuers
    assert not default.require_jwt and default.fhir_servers == ("*",)
    with pytest.raises(ValueError, match="BONECAST_CDS_TRUSTED_ISSUERS"):
        CdsSettings.from_env({"BONECAST_CDS_TRUSTED_ISSUERS": "not json"})


def test_every_demo_patient_gets_summaries_under_140_characters_in_words(tmp_path: Path) -> None:
    """The 50 demo patients, exported as FHIR and sent as a prefetch: every summary < 140, and
    no card a clinician reads carries an internal code (issue 16)."""
    app = create_app(f"sqlite:///{tmp_path / 'demo.db'}", forecast_years=0)
    with TestClient(app) as client:
        registry: Registry = app.state.registry
        seed_demo(registry)
        with registry.session() as session:
            ids = [p.id for p in session.list_patients(limit=100)]
            bundles = [export_patient(session, patient_id) for patient_id in ids]
        summaries: list[str] = []
        texts: list[str] = []
        for exported in bundles:
            found = [entry["resource"] for entry in exported["entry"]]
            kinds = {r["resourceType"]: r for r in found}
            call = _call("X") | {
                "prefetch": {
                    "patient": kinds["Patient"],
                    "dxa": bundle(
                        *(r for r in found if r["resourceType"] in ("Observation", "Device"))
                    ),
                    "medications": bundle(
                        *(r for r in found if r["resourceType"] == "MedicationStatement")
                    ),
                }
            }
            response = client.post(SERVICE, json=call)
            assert response.status_code == 200, response.text
            summaries += [card["summary"] for card in response.json()["cards"]]
            texts += [c["summary"] + (c.get("detail") or "") for c in response.json()["cards"]]
    assert len(ids) == 50 and len(summaries) >= 100
    assert max(len(s) for s in summaries) < 140
    assert not any(s.startswith("No bone-health advice") for s in summaries)
    codes = ("start_bta", "continue_ai", "lumbar_spine", "total_hip", "femoral_neck", ".md")
    leaks = {code for code in codes for text in texts if code in text}
    assert not leaks, f"internal codes on CDS cards: {sorted(leaks)}"
