"""The per-patient report: HTML (Jinja2, shipped templates) and PDF (WeasyPrint).

Demographics, scanner, results table, diagnosis, change against the previous scan with the LSC
verdict, fracture risk, recommendation with its source, next scan, the BMD chart and the
disclaimer. Not a medical device.
"""

from __future__ import annotations

import base64
from datetime import date

from jinja2 import Environment, PackageLoader, select_autoescape

from bonecast import DISCLAIMER, __version__
from bonecast.clinical import Assessment
from bonecast.registry import PatientChart
from bonecast.reports.patient_charts import bmd_chart

_environment = Environment(
    loader=PackageLoader("bonecast.reports", "templates"), autoescape=select_autoescape()
)


def _data_uri(svg: str) -> str:
    """An SVG as a data URI (an image to WeasyPrint, whose SVG renderer reads its styles)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def render_report_html(chart: PatientChart, assessment: Assessment) -> str:
    """The report of one patient as a standalone HTML page."""
    template = _environment.get_template("patient_report.html")
    return template.render(
        chart=chart,
        assessment=assessment,
        chart_src=_data_uri(bmd_chart(chart, assessment)),
        disclaimer=DISCLAIMER,
        version=__version__,
        printed=date.today(),
    )


def render_report_pdf(html: str) -> bytes:
    """The report HTML as a PDF document."""
    from weasyprint import HTML  # imported late: it loads Pango

    pdf: bytes = HTML(string=html).write_pdf()
    return pdf
