"""A clinician's visit in a real browser: sign in, find a patient, read her plans, treatments and
charts, add a scan (first a bad one), get the report and the patient summary; every page visited
passes axe-core (no serious or critical WCAG 2.1 AA violation); and the same walk by keyboard."""

from __future__ import annotations

import re
from datetime import date, timedelta
from io import BytesIO
from pathlib import Path

from accessibility import assert_accessible
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
    assert_accessible(page)
    page.get_by_label("Username").fill(DEMO_USERNAME)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/worklist$"))
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
    expect(page.locator("header")).to_contain_text("Demo Clinician (clinician)")
    assert_accessible(page)


def _open_from_worklist(page: Page, patient: TargetPatient) -> None:
    rows = page.locator("#worklist-rows tr")
    expect(rows).not_to_have_count(1)  # the whole demo list before searching
    page.get_by_label("Search").fill(patient.mrn)  # the list updates as one types
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(patient.mrn)
    rows.first.get_by_role("link", name=f"{patient.family_name}, {patient.given_name}").click()
    expect(page).to_have_url(re.compile(rf"/patients/{patient.id}$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(patient.mrn)
    assert_accessible(page)


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


def _loaded(image: Locator) -> bool:
    """Whether an <img> loads a picture (waits for it to finish loading)."""
    return bool(
        image.evaluate(
            """img => new Promise(done => {
                const check = () =>
                    img.complete ? done(img.naturalWidth > 0) : setTimeout(check, 50);
                check();
            })"""
        )
    )


def _chart_text(page: Page, image: Locator) -> str:
    """The SVG behind a chart image (its text stays text)."""
    response = page.request.get(str(image.get_attribute("src")))
    assert response.ok and response.headers["content-type"].startswith("image/svg+xml")
    return response.text()


def test_clinician_adds_a_scan_and_downloads_the_report(
    page: Page, live_app: LiveApp, target_patient: TargetPatient, tmp_path: Path
) -> None:
    patient = target_patient
    _sign_in(page)
    _open_from_worklist(page, patient)

    # Plans in full: agent, dose, route and interval, in words.
    plans = _card(page, "Plans and forecast")
    expect(plans).to_contain_text("Aromatase inhibitor as planned, plus a bone medicine")
    expect(plans.locator(".plan").filter(has_text="Agent:")).to_contain_text(
        re.compile(r"Agent: \w[\w ]* \d+(\.\d+)? mg (into a vein|by mouth|injection)[^.]* every")
    )
    treatments = _card(page, "Treatments").get_by_role("table")
    expect(treatments).to_contain_text("Dose and schedule")
    expect(treatments.locator("tr")).not_to_have_count(1)  # a row per treatment
    age_chart = _card(page, "BMD against age").get_by_role("img")
    expect(age_chart).to_have_attribute("alt", re.compile("WHO zones"))
    assert _loaded(age_chart)
    assert "osteoporosis" in _chart_text(page, age_chart)

    recommendation = _card(page, "Recommendation")
    expect(recommendation).to_contain_text("Next DXA due")
    advice_before = recommendation.inner_text()
    due_before = _next_dxa_due(recommendation)
    chart = _card(page, "BMD over time").get_by_role("img")
    assert _loaded(chart)
    chart_before = _chart_text(page, chart)
    scans_before = scan_count(live_app, patient.id)
    new_date = date.today() - timedelta(days=1)
    assert new_date.isoformat() not in page.locator("main").inner_text()

    # A total hip BMD of 2.5 g/cm2 is refused: a summary at the top, focused, links to the field.
    _fill_scan(page, new_date, patient.scanner, BAD_HIP_BMD)
    summary = page.locator("#error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_be_focused()
    link = summary.get_by_role("link", name="Total hip BMD: 2.5 is outside 0.2-2.0 g/cm2")
    expect(link).to_be_visible()
    hip_input = page.locator(f'input[name="{HIP_BMD_FIELD}"]')
    message = page.locator(".field.invalid").filter(has=hip_input).locator(".field-error")
    expect(message).to_contain_text("Total hip BMD: 2.5 is outside 0.2-2.0 g/cm2")
    expect(hip_input).to_have_value(BAD_HIP_BMD)  # what was typed is kept for fixing
    expect(hip_input).to_have_attribute("aria-invalid", "true")
    assert_accessible(page)
    link.click()
    expect(hip_input).to_be_focused()
    assert scan_count(live_app, patient.id) == scans_before
    assert new_date.isoformat() not in page.locator("main").inner_text()

    # Fixed, the scan is added and the page shows it, with the LSC band around the previous value.
    hip_input.fill(GOOD_HIP_BMD)
    page.get_by_role("button", name="Add scan").click()
    expect(page).to_have_url(re.compile(rf"/patients/{patient.id}$"))
    expect(page.locator(".field-error")).to_have_count(0)
    assert scan_count(live_app, patient.id) == scans_before + 1
    expect(_card(page, "BMD over time")).to_contain_text(new_date.isoformat())
    chart = _card(page, "BMD over time").get_by_role("img")
    assert _loaded(chart)
    chart_after = _chart_text(page, chart)
    assert chart_after != chart_before
    assert "previous value +/- least significant change" in chart_after
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

    # The report and the patient summary as pages; the summary's PDF has page numbers.
    page.get_by_role("link", name="report (HTML)").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("report")
    assert_accessible(page)
    page.go_back()
    page.get_by_role("link", name="patient summary", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your bone health summary")
    expect(page.locator("main")).to_contain_text("What you can do yourself")
    assert_accessible(page)
    page.go_back()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="patient summary (PDF)").click()
    summary_pdf = PdfReader(Path(download_info.value.path()))
    assert "Page 1 of" in summary_pdf.pages[0].extract_text()


def _tab_to(page: Page, target: Locator, most: int = 200) -> None:
    """Press Tab until ``target`` has the focus (fails after ``most`` presses)."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError(f"Tab never reached {target}")


def test_keyboard_only_sign_in_worklist_patient_and_form(
    page: Page, target_patient: TargetPatient
) -> None:
    """Sign in, search, open the patient and submit a form with the keyboard alone."""
    page.goto("/signin")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
    _tab_to(page, page.get_by_label("Username"), most=5)
    page.keyboard.type(DEMO_USERNAME)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(DEMO_PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/worklist$"))

    _tab_to(page, page.get_by_label("Search"), most=15)
    page.keyboard.type(target_patient.mrn)
    expect(page.locator("#worklist-rows tr")).to_have_count(1)
    name = f"{target_patient.family_name}, {target_patient.given_name}"
    _tab_to(page, page.get_by_role("link", name=name), most=15)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/patients/{target_patient.id}$"))

    # Tab to the scan form's button and submit it empty: the error summary takes the focus.
    button = page.get_by_role("button", name="Add scan")
    _tab_to(page, button)
    page.keyboard.press("Enter")
    expect(page.locator("#error-summary")).to_be_focused()
    page.keyboard.press("Tab")
    first_link = page.locator("#error-summary a").first
    expect(first_link).to_be_focused()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.tagName") in ("INPUT", "SELECT")
