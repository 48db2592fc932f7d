"""Real HTTP servers for the CDS Hooks tests: uvicorn in a thread, and a stub EHR.

The stub EHR serves a FHIR R4 Patient, DXA Observations and MedicationStatements, and the JWKS
of its signing key; it records the Authorization header of every FHIR request.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Header, Response

from bonecast.registry import terminology as codes

EHR_ISSUER = "https://ehr.example.org"
KEY_ID = "ehr-key-1"


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def observation(code: str, value: float, unit: str, day: str = "2025-03-02") -> dict[str, Any]:
    """A DXA (or body) Observation with a LOINC code."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": codes.LOINC, "code": code}]},
        "effectiveDateTime": day,
        "valueQuantity": {"value": value, "unit": unit, "system": codes.UCUM, "code": unit},
    }


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    """A searchset Bundle of resources."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


def patient(mrn: str) -> dict[str, Any]:
    """A woman born 1958 with an MRN."""
    return {
        "resourceType": "Patient",
        "id": "ehr-1",
        "identifier": [{"system": codes.MRN_SYSTEM, "value": mrn}],
        "gender": "female",
        "birthDate": "1958-05-01",
    }


DXA = bundle(observation("38267-1", -2.6, "{T-score}"), observation("80948-3", -1.9, "{T-score}"))
ANASTROZOLE = {
    "resourceType": "MedicationStatement",
    "status": "active",
    "medicationCodeableConcept": {"coding": [{"system": codes.RXNORM, "code": "84857"}]},
    "effectivePeriod": {"start": "2025-04-01"},
}
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "exception", "diagnostics": "search failed"}],
}


class StubEhr:
    """A FHIR server and JWKS endpoint of an EHR; ``fail`` makes its FHIR searches answer 500."""

    def __init__(self, mrn: str) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.authorizations: list[str | None] = []
        self.fail = False
        app = FastAPI()
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk |= {"kid": KEY_ID, "alg": "RS384", "use": "sig"}

        def fhir(value: dict[str, Any], authorization: str | None) -> Response:
            self.authorizations.append(authorization)
            if self.fail:
                return Response(json.dumps(OUTCOME), status_code=500)
            return Response(json.dumps(value), media_type="application/fhir+json")

        @app.get("/jwks.json")
        def jwks() -> dict[str, Any]:
            return {"keys": [jwk]}

        @app.get("/fhir/Patient/{patient_id}")
        def get_patient(
            patient_id: str, authorization: Annotated[str | None, Header()] = None
        ) -> Response:
            return fhir(patient(mrn), authorization)

        @app.get("/fhir/Observation")
        def observations(authorization: Annotated[str | None, Header()] = None) -> Response:
            return fhir(DXA, authorization)

        @app.get("/fhir/MedicationStatement")
        def medications(authorization: Annotated[str | None, Header()] = None) -> Response:
            return fhir(bundle(ANASTROZOLE), authorization)

        self.app = app

    def token(self, audience: str, issuer: str = EHR_ISSUER, key: Any = None) -> str:
        """A CDS Hooks JWT for ``audience`` (the service URL), signed with the EHR's key."""
        now = int(time.time())
        claims = {
            "iss": issuer,
            "sub": "ehr-client",
            "aud": audience,
            "exp": now + 300,
            "iat": now,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, key or self.key, algorithm="RS384", headers={"kid": KEY_ID})
