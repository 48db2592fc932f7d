"""The per-patient reports: the clinician's report and the patient's summary, HTML and PDF.

HTML from shipped Jinja2 templates (the sections shared with the web page are in
``templates/_sections.html``), PDF from WeasyPrint: every page carries the patient, the report
date and "page x of y", and the PDF is tagged (PDF/UA-1) so screen readers can read it. Not a
medical device.
"""

from __future__ import annotations

import base64
from importlib.resources import files
from typing import Literal

from jinja2 import Environment, PackageLoader, select_autoescape

from bonecast.clinical import Assessment
from bonecast.registry import PatientChart
from bonecast.reports.patient_view import CHARTS, chart_svg, summary_facts, view

Audience = Literal["clinician", "patient"]
"""Who a report is written for."""

_environment = Environment(
    loader=PackageLoader("bonecast.reports", "templates"), autoescape=select_autoescape()
)
PDF_VARIANT = "pdf/ua-1"
"""WeasyPrint's tagged, accessible PDF variant."""


def stylesheet() -> str:
    """The reports' stylesheet (embedded in PDFs and saved files, linked from web pages)."""
    return files("bonecast.reports").joinpath("static/report.css").read_text(encoding="utf-8")


def _data_uri(svg: str) -> str:
    """An SVG as a data URI (an image to WeasyPrint, whose SVG renderer reads its styles)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def render_report_html(
    chart: PatientChart,
    assessment: Assessment,
    audience: Audience = "clinician",
    standalone: bool = True,
) -> str:
    """The report of one patient as an HTML page.

    ``standalone`` embeds the stylesheet and the charts (data URIs), for PDFs and saved files;
    otherwise they are linked (``/static/report.css``, ``/patients/{id}/charts/{name}.svg``).
    """
    context = view(chart, assessment)
    context["stylesheet"] = stylesheet() if standalone else None
    if audience == "patient":
        context["summary"] = summary_facts(chart, assessment)
        return _environment.get_template("patient_summary.html").render(**context)
    for name in CHARTS:
        if name == "markers" and not context["has_markers"]:
            context[f"{name}_src"] = None
        elif standalone:
            context[f"{name}_src"] = _data_uri(chart_svg(name, chart, assessment) or "")
        else:
            context[f"{name}_src"] = chart_url(chart.patient.id, name)
    return _environment.get_template("patient_report.html").render(**context)


def chart_url(patient_id: int, name: str) -> str:
    """Where the web app serves a patient's chart."""
    return f"/patients/{patient_id}/charts/{name}.svg"


def render_report_pdf(html: str) -> bytes:
    """A standalone report HTML as a tagged PDF document."""
    from weasyprint import HTML  # imported late: it loads Pango

    pdf: bytes = HTML(string=html).write_pdf(pdf_variant=PDF_VARIANT)
    return pdf
