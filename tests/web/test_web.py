"""The clinician web pages: sign-in, worklist, patient page, forms, roles, CSRF and reports."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from weasyprint import HTML
from web_samples import VIEWER_PASSWORD, SignIn, csrf_of

from bonecast import DISCLAIMER
from bonecast.registry import Registry, upgrade
from bonecast.services.demo import DEMO_PATIENTS, seed_demo

SCAN = {
    "scan_date": "2026-01-15",
    "scanner": "hologic",
    "sites.total_hip.bmd_g_cm2": "2.5",
    "sites.total_hip.t_score": "-1.2",
}


def _registry(client: TestClient) -> Registry:
    registry: Registry = client.app.state.registry  # type: ignore[attr-defined]
    return registry


def _scan_count(client: TestClient, patient_id: int) -> int:
    with _registry(client).session() as session:
        return len(session.list_scans(patient_id))


def test_unauthenticated_pages_redirect_to_sign_in(app_client: TestClient) -> None:
    response = app_client.get("/worklist", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/signin"
    page = app_client.get("/signin")
    assert DISCLAIMER in page.text
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_sign_in_and_out(clinician: TestClient) -> None:
    page = clinician.get("/worklist")
    assert page.status_code == 200 and "Demo Clinician" in page.text
    response = clinician.post(
        "/signout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False
    )
    assert response.status_code == 303
    assert clinician.get("/worklist", follow_redirects=False).status_code == 303


def test_wrong_password_fails(app_client: TestClient) -> None:
    token = csrf_of(app_client.get("/signin").text)
    response = app_client.post(
        "/signin",
        data={"username": "demo.clinician", "password": "wrong-password", "csrf_token": token},
    )
    assert response.status_code == 401
    assert "wrong password" in response.text
    assert app_client.get("/worklist", follow_redirects=False).status_code == 303


def test_missing_csrf_token_is_forbidden(app_client: TestClient) -> None:
    app_client.get("/signin")
    response = app_client.post(
        "/signin", data={"username": "demo.clinician", "password": "bonecast-demo-2026"}
    )
    assert response.status_code == 403


def test_worklist_lists_patients_with_overdue_flags(clinician: TestClient) -> None:
    page = clinician.get("/worklist")
    assert page.text.count('href="/patients/') == 12
    assert "overdue-flag" in page.text
    overdue = clinician.get("/worklist?show=overdue", headers={"HX-Request": "true"})
    assert "<html" not in overdue.text  # a partial: the rows only
    assert overdue.text.count('href="/patients/') == overdue.text.count("overdue-flag")
    found = clinician.get("/worklist?q=DEMO-0003&sort=due")
    assert found.text.count('href="/patients/') == 1


def test_patient_page_has_charts_and_recommendation(clinician: TestClient) -> None:
    page = clinician.get("/patients/1")
    assert page.status_code == 200
    for name in ("bmd", "age"):
        assert f'src="/patients/1/charts/{name}.svg"' in page.text
        chart = clinician.get(f"/patients/1/charts/{name}.svg")
        assert chart.headers["content-type"] == "image/svg+xml"
        assert "<svg" in chart.text and "Lumbar spine BMD" in chart.text
    assert clinician.get("/patients/1/charts/nothing.svg").status_code == 404
    assert "Recommendation" in page.text and "Rules that fired" in page.text
    assert "Treatment history" in page.text
    assert DISCLAIMER in page.text
    assert "Add a scan" in page.text


def test_invalid_scan_names_the_field_and_writes_nothing(clinician: TestClient) -> None:
    before = _scan_count(clinician, 1)
    token = csrf_of(clinician.get("/patients/1").text)
    response = clinician.post("/patients/1/scans", data=SCAN | {"csrf_token": token})
    assert response.status_code == 422
    summary = response.text.split('id="error-summary"', 1)[1].split("</div>", 1)[0]
    link = '<a href="#f-sites-total_hip-bmd_g_cm2">Total hip BMD: 2.5 is outside 0.2-2.0 g/cm2</a>'
    assert link in summary
    assert 'id="f-sites-total_hip-bmd_g_cm2"' in response.text  # the link's target
    assert 'value="2.5"' in response.text  # what was typed is kept
    assert _scan_count(clinician, 1) == before
    fixed = SCAN | {"sites.total_hip.bmd_g_cm2": "0.85", "csrf_token": token}
    response = clinician.post("/patients/1/scans", data=fixed, follow_redirects=False)
    assert response.status_code == 303
    assert _scan_count(clinician, 1) == before + 1


def test_lab_and_treatment_forms(clinician: TestClient) -> None:
    token = csrf_of(clinician.get("/patients/2").text)
    bad = clinician.post(
        "/patients/2/labs",
        data={
            "sample_date": "2026-01-01",
            "marker": "ctx",
            "value": "0.3",
            "unit": "mg/dL",
            "csrf_token": token,
        },
    )
    assert bad.status_code == 422 and "Unit: &#39;mg/dL&#39; is not a unit of ctx" in bad.text
    good = clinician.post(
        "/patients/2/treatments",
        data={"drug": "denosumab", "start_date": "2026-01-01", "csrf_token": token},
        follow_redirects=False,
    )
    assert good.status_code == 303


def test_viewer_sees_no_forms_and_cannot_write(sign_in: SignIn) -> None:
    client = sign_in("viewer", VIEWER_PASSWORD)
    page = client.get("/patients/1")
    assert page.status_code == 200 and "Add a scan" not in page.text
    response = client.post("/patients/1/scans", data=SCAN | {"csrf_token": csrf_of(page.text)})
    assert response.status_code == 403


def test_reports_html_and_pdf(clinician: TestClient) -> None:
    html = clinician.get("/patients/1/report")
    assert html.status_code == 200 and DISCLAIMER in html.text
    assert 'src="/patients/1/charts/bmd.svg"' in html.text
    assert "Scans and results" in html.text and "Treatment history" in html.text
    assert len(HTML(string=html.text).render().pages) >= 1
    for path in ("/patients/1/report.pdf", "/patients/1/summary.pdf"):
        pdf = clinician.get(path)
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF")
    summary = clinician.get("/patients/1/summary")
    assert summary.status_code == 200 and "Your bone health summary" in summary.text


def test_favicon(app_client: TestClient) -> None:
    icon = app_client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")


def test_seeding_makes_about_fifty_patients_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'seed.db'}"
    upgrade(url)
    registry = Registry(url)
    assert seed_demo(registry) == DEMO_PATIENTS
    assert seed_demo(registry) == 0
    with registry.session() as session:
        patients = session.list_patients(limit=1000)
        assert len(patients) == DEMO_PATIENTS
        scans = [len(session.list_scans(p.id)) for p in patients]
    assert min(scans) >= 1 and max(scans) <= 4
    registry.dispose()
