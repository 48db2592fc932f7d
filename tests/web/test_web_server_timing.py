"""The patient page reports how long the server took (Server-Timing, issue 6 item 5)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_patient_page_has_a_server_timing_header(clinician: TestClient) -> None:
    response = clinician.get("/patients/1")
    assert response.status_code == 200
    assert re.fullmatch(r"app;dur=\d+\.\d", response.headers["Server-Timing"])
