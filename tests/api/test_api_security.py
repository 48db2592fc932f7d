"""The REST API's hardening: headers, no caching of patient data, throttled bad tokens, ids."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from api_samples import Headers
from fastapi.testclient import TestClient

from bonecast.api.params import MAX_RECORD_ID
from bonecast.api.throttle import ADDRESS_LIMIT
from bonecast.registry import Registry


def test_api_answers_carry_the_security_headers_and_are_not_cached(
    client: TestClient, clinician: Headers
) -> None:
    for response in (
        client.get("/api/v1/patients", headers=clinician),
        client.get("/api/v1/patients/1", headers=clinician),  # a 404 too
        client.get("/api/v1/patients"),  # and a 401
    ):
        assert response.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


def test_hsts_when_a_trusted_proxy_says_https(client: TestClient, clinician: Headers) -> None:
    secure = TestClient(client.app, base_url="https://testserver")
    assert "max-age=" in secure.get("/health").headers["strict-transport-security"]
    assert "strict-transport-security" not in client.get("/health").headers


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/patients/{id}",
        "/api/v1/patients/{id}/treatments",
        "/api/v1/patients/{id}/chart",
        "/api/v1/patients/{id}/fhir",
    ],
)
@pytest.mark.parametrize("record_id", [0, -1, MAX_RECORD_ID + 1, 2**64, 10**30])
def test_ids_outside_64_bits_are_refused_with_422_naming_the_field(
    client: TestClient, clinician: Headers, path: str, record_id: int
) -> None:
    response = client.get(path.format(id=record_id), headers=clinician)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "patient_id"]


def test_the_largest_id_is_a_plain_404(client: TestClient, clinician: Headers) -> None:
    response = client.get(f"/api/v1/patients/{MAX_RECORD_ID}", headers=clinician)
    assert response.status_code == 404 and isinstance(response.json()["detail"], str)


def test_the_openapi_schema_states_the_id_range(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    parameter = schema["paths"]["/api/v1/patients/{patient_id}"]["get"]["parameters"][0]
    assert parameter["schema"]["minimum"] == 1
    assert parameter["schema"]["maximum"] == MAX_RECORD_ID


def test_bad_tokens_lock_the_address_out_but_are_never_cached(
    client: TestClient, registry: Registry, login: Callable[[str], Headers]
) -> None:
    good = login("clinician")
    codes = [
        client.get(
            "/api/v1/patients", headers={"Authorization": f"Bearer bct_guess{k}"}
        ).status_code
        for k in range(ADDRESS_LIMIT + 1)
    ]
    assert codes == [401] * (ADDRESS_LIMIT - 1) + [429, 429]
    locked = client.get("/api/v1/patients", headers={"Authorization": "Bearer bct_more"})
    assert int(locked.headers["retry-after"]) > 0 and "detail" in locked.json()
    assert client.get("/api/v1/patients", headers=good).status_code == 200  # valid tokens pass
    with registry.session() as session:
        assert len(session.audit_log(entity="lockouts")) == 1
