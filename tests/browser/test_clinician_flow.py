"""A clinician's visit in a real browser: sign in, find a patient, add a scan, get the report."""

from __future__ import annotations

import re
from datetime import date, timedelta
from io import BytesIO
from pathlib import Path

from browser_samples import LiveApp, TargetPatient, scan_count
from playwright.sync_api import Locator, Page, expect
from pypdf import PdfReader

from bonecast.services.demo import DEMO_PASSWORD, DEMO_USERNAME

BAD_HIP_BMD = "2.5"
GOOD_HIP_BMD = "0.85"
HIP_BMD_FIELD = "sites.total_hip.bmd_g_cm2"


def _card(page: Page, heading: str) -> Locator:
    """The card section of the patient page under an <h2> heading."""
    return page.locator("section.card").filter(
        has=page.get_by_role("heading", name=heading, exact=True)
    )


def _sign_in(page: Page) -> None:
    page.goto("/worklist")
    expect(page).to_have_url(re.compile(r"/signin$"))  # signed out: sent to the sign-in form
    page.get_by_label("Username").fill(DEMO_USERNAME)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/worklist$"))
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
    expect(page.locator("header")).to_contain_text("Demo Clinician (clinician)")


def _open_from_worklist(page: Page, patient: TargetPatient) -> None:
    rows = page.locator("#worklist-rows tr")
    expect(rows).not_to_have_count(1)  # the whole demo list before searching
    page.get_by_label("Search").fill(patient.mrn)  # the list updates as one types
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(patient.mrn)
    rows.first.get_by_role("link", name=f"{patient.family_name}, {patient.given_name}").click()
    expect(page).to_have_url(re.compile(rf"/patients/{patient.id}$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(patient.mrn)


def _next_dxa_due(recommendation: Locator) -> date:
    match = re.search(r"Next DXA due (\d{4}-\d{2}-\d{2})", recommendation.inner_text())
    assert match, "the recommendation gives no next DXA date"
    return date.fromisoformat(match.group(1))


def _fill_scan(page: Page, scan_date: date, scanner: str, hip_bmd: str) -> None:
    form = page.locator(f'form[action="/patients/{page.url.rsplit("/", 1)[-1]}/scans"]')
    form.locator('input[name="scan_date"]').fill(scan_date.isoformat())
    form.locator('select[name="scanner"]').select_option(scanner)
    form.locator(f'input[name="{HIP_BMD_FIELD}"]').fill(hip_bmd)
    form.locator('input[name="sites.total_hip.t_score"]').fill("-0.8")
    form.get_by_role("button", name="Add scan").click()


def test_clinician_adds_a_scan_and_downloads_the_report(
    page: Page, live_app: LiveApp, target_patient: TargetPatient, tmp_path: Path
) -> None:
    patient = target_patient
    _sign_in(page)
    _open_from_worklist(page, patient)

    recommendation = _card(page, "Recommendation")
    expect(recommendation).to_contain_text("Next DXA due")
    advice_before = recommendation.inner_text()
    due_before = _next_dxa_due(recommendation)
    chart = _card(page, "BMD over time").locator("svg").first
    expect(chart).to_be_visible()
    chart_before = chart.inner_html()
    scans_before = scan_count(live_app, patient.id)
    new_date = date.today() - timedelta(days=1)
    assert new_date.isoformat() not in page.locator("main").inner_text()

    # A total hip BMD of 2.5 g/cm2 is refused: the message names the field and the range.
    _fill_scan(page, new_date, patient.scanner, BAD_HIP_BMD)
    hip_input = page.locator(f'input[name="{HIP_BMD_FIELD}"]')
    message = page.locator("label.invalid").filter(has=hip_input).locator(".field-error")
    expect(message).to_be_visible()
    expect(message).to_contain_text(HIP_BMD_FIELD)
    expect(message).to_contain_text("2.5 is outside 0.2-2.0 g/cm2")
    expect(hip_input).to_have_value(BAD_HIP_BMD)  # what was typed is kept for fixing
    assert scan_count(live_app, patient.id) == scans_before
    assert new_date.isoformat() not in page.locator("main").inner_text()

    # Fixed, the scan is added and the page shows it.
    hip_input.fill(GOOD_HIP_BMD)
    page.get_by_role("button", name="Add scan").click()
    expect(page).to_have_url(re.compile(rf"/patients/{patient.id}$"))
    expect(page.locator(".field-error")).to_have_count(0)
    assert scan_count(live_app, patient.id) == scans_before + 1
    expect(_card(page, "BMD over time")).to_contain_text(new_date.isoformat())
    chart = _card(page, "BMD over time").locator("svg").first
    expect(chart).to_be_visible()
    assert chart.inner_html() != chart_before
    expect(recommendation).not_to_have_text(advice_before)
    assert _next_dxa_due(recommendation) > due_before  # counted from the new scan
    page.screenshot(path=str(tmp_path / "patient.png"), full_page=True)

    # The PDF report, downloaded through its link, is a PDF with at least one page.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="report (PDF)").click()
    download = download_info.value
    assert download.suggested_filename == f"bonecast-report-{patient.id}.pdf"
    pdf = Path(download.path()).read_bytes()
    assert pdf.startswith(b"%PDF")
    assert len(PdfReader(BytesIO(pdf)).pages) >= 1
