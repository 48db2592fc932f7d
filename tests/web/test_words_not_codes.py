"""What a person reads speaks in words: pages, reports, PDFs, the patient summary and CLI text.

Every page, report (HTML and PDF text) and CLI text of demo patients is rendered and searched for
the internal codes users complained about; the patient summary of every demo patient is measured
for readability (Flesch reading ease, textstat) and its PDF for the running header and page
numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path

import pytest
import textstat
from fastapi.testclient import TestClient
from pypdf import PdfReader
from typer.testing import CliRunner
from web_samples import csrf_of

from bonecast.api import create_app
from bonecast.cli import app as cli
from bonecast.registry import Registry
from bonecast.reports.patient_report import render_report_html, render_report_pdf
from bonecast.services.assessments import current_assessment
from bonecast.services.demo import DEMO_PASSWORD, DEMO_PATIENTS, DEMO_USERNAME, seed_demo

CODES = (
    "ai_plus_agent",
    "start_bta",
    "continue_ai",
    "stop_ai",
    "ai_without_testosterone",
    "lumbar_spine",
    "total_hip",
    "docs/clinical/index.md",
    "docs/model/index.md",
)
"""Internal codes that must never reach a reader (issue 16)."""
FORECAST_PATIENTS = 3
"""Demo patients rendered with a forecast (its plans are where plan codes could leak)."""
MIN_FLESCH = 60.0
"""Flesch reading ease of plain English, about a reading age of 12-13 (Flesch 1948)."""


class _Visible(HTMLParser):
    """The text a person sees or hears: text nodes, alt, title and aria-label attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script"):
            self._hidden += 1
        self.parts += [v for k, v in attrs if k in ("alt", "title", "aria-label") and v]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def visible_text(html: str) -> str:
    """The visible text of an HTML page or SVG, whitespace collapsed."""
    parser = _Visible()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def pdf_text(pdf: bytes) -> list[str]:
    """The text of each page of a PDF."""
    return [page.extract_text() for page in PdfReader(BytesIO(pdf)).pages]


def assert_no_codes(text: str, where: str) -> None:
    found = [code for code in CODES if code in text]
    assert not found, f"{where} shows {found}"


@pytest.fixture(scope="module")
def forecast_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A clinician signed in to an app with a 5-year forecast, on a few demo patients."""
    folder = tmp_path_factory.mktemp("words")
    with TestClient(create_app(f"sqlite:///{folder / 'words.db'}", forecast_years=5)) as client:
        seed_demo(client.app.state.registry, patients=FORECAST_PATIENTS)  # type: ignore[attr-defined]
        token = csrf_of(client.get("/signin").text)
        client.post(
            "/signin",
            data={"username": DEMO_USERNAME, "password": DEMO_PASSWORD, "csrf_token": token},
        )
        yield client


def test_pages_reports_and_pdfs_with_forecasts_show_no_codes(forecast_client: TestClient) -> None:
    worklist = forecast_client.get("/worklist")
    assert worklist.status_code == 200
    assert_no_codes(visible_text(worklist.text), "the worklist")
    for patient in range(1, FORECAST_PATIENTS + 1):
        page = forecast_client.get(f"/patients/{patient}")
        text = visible_text(page.text)
        assert "Plans and forecast" in text and "every 6 months" in text  # plans in full
        assert_no_codes(text, f"patient page {patient}")
        for chart in ("bmd", "age"):
            svg = forecast_client.get(f"/patients/{patient}/charts/{chart}.svg").text
            assert "forecast: " in visible_text(svg)
            assert_no_codes(visible_text(svg), f"chart {chart} of patient {patient}")
        for path in ("report", "summary"):
            html = forecast_client.get(f"/patients/{patient}/{path}").text
            assert_no_codes(visible_text(html), f"{path} of patient {patient}")
            pdf = forecast_client.get(f"/patients/{patient}/{path}.pdf").content
            assert_no_codes(" ".join(pdf_text(pdf)), f"{path} PDF of patient {patient}")


def test_a_rejected_scan_names_fields_in_words(forecast_client: TestClient) -> None:
    token = csrf_of(forecast_client.get("/patients/1").text)
    bad = {"scan_date": "2026-01-15", "scanner": "hologic", "csrf_token": token}
    bad["sites.lumbar_spine.bmd_g_cm2"] = "9"
    response = forecast_client.post("/patients/1/scans", data=bad)
    assert response.status_code == 422
    text = visible_text(response.text)
    assert "Lumbar spine BMD: 9" in text and "0.2-2.0 g/cm2" in text
    assert_no_codes(text, "the rejected scan form")


@pytest.fixture(scope="module")
def demo_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry with every demo patient (no forecast is computed from it here)."""
    folder = tmp_path_factory.mktemp("summaries")
    with TestClient(create_app(f"sqlite:///{folder / 'demo.db'}", forecast_years=0)) as client:
        registry: Registry = client.app.state.registry  # type: ignore[attr-defined]
        seed_demo(registry)
        yield registry


def test_every_demo_patient_has_a_readable_summary_with_page_numbers(
    demo_registry: Registry,
) -> None:
    with demo_registry.session() as session:
        patients = session.list_patients(limit=1000)
    assert len(patients) == DEMO_PATIENTS
    for patient in patients:
        chart, assessment = current_assessment(demo_registry, patient.id)
        html = render_report_html(chart, assessment, "patient")
        text = visible_text(html.split("<main", 1)[1])
        assert_no_codes(text, f"the summary of {patient.mrn}")
        assert textstat.flesch_reading_ease(text) >= MIN_FLESCH, patient.mrn
        assert "calcium" in text and "vitamin D" in text and "falls" in text
        assert "not a diagnosis" in text
        pages = pdf_text(render_report_pdf(html))
        assert len(pages) == 1, f"the summary of {patient.mrn} is not one page"
        assert f"MRN {patient.mrn}" in pages[0] and "Page 1 of 1" in pages[0]


def test_clinician_report_pdf_is_tagged_and_its_pages_carry_patient_date_and_page_x_of_y(
    demo_registry: Registry,
) -> None:
    chart, assessment = current_assessment(demo_registry, 1)
    pdf = render_report_pdf(render_report_html(chart, assessment))
    pages = pdf_text(pdf)
    assert len(pages) >= 2
    for number, page in enumerate(pages, start=1):
        assert f"MRN {chart.patient.mrn}" in page
        assert re.search(r"Report date \d{4}-\d{2}-\d{2}", page)
        assert f"Page {number} of {len(pages)}" in page
    root = PdfReader(BytesIO(pdf)).trailer["/Root"]  # tagged (PDF/UA-1) for screen readers
    assert "/StructTreeRoot" in root and root["/MarkInfo"]["/Marked"]
    assert root["/Lang"] == "en"


def test_cli_report_text_and_files_show_no_codes(demo_registry: Registry, tmp_path: Path) -> None:
    runner = CliRunner()
    database = str(demo_registry.engine.url)
    mrn = "DEMO-0001"
    for audience in ("clinician", "patient"):
        result = runner.invoke(
            cli,
            [
                "report",
                mrn,
                "--database",
                database,
                "--audience",
                audience,
                "--forecast-years",
                "0",
            ],
            env={"COLUMNS": "70"},
        )
        assert result.exit_code == 0, result.output
        assert_no_codes(result.stdout, f"bonecast report --audience {audience}")
        assert max(len(line) for line in result.stdout.splitlines()) <= 70
    out = tmp_path / "summary.pdf"
    result = runner.invoke(
        cli,
        ["report", mrn, "--database", database, "--audience", "patient", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF")
    unknown = runner.invoke(cli, ["report", "NOPE-1", "--database", database])
    assert unknown.exit_code != 0 and "no patient with MRN" in unknown.output


EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "patients").glob("*.json"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_cli_assess_text_shows_no_codes(example: Path) -> None:
    result = CliRunner().invoke(cli, ["assess", str(example), "--forecast-years", "5"])
    assert result.exit_code == 0, result.output
    assert_no_codes(result.stdout, f"bonecast assess {example.name}")
