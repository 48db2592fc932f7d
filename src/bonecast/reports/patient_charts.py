"""Server-side SVG charts of one patient: BMD over time per site, LSC band, treatments, forecast."""

from __future__ import annotations

import io
from datetime import date

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from bonecast.clinical import Assessment
from bonecast.registry import PatientChart
from bonecast.reports.plots import TITLES
from bonecast.simulation import DRUGS, SITES

_CLASS_COLOURS = {
    "aromatase_inhibitor": "#d62728",
    "bisphosphonate": "#2ca02c",
    "rankl_antibody": "#9467bd",
}


def _svg(figure: Figure) -> str:
    """The figure as inline SVG (without the XML prologue)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def bmd_chart(chart: PatientChart, assessment: Assessment) -> str:
    """BMD per measured site over time (inline SVG).

    The band around the previous scan's value is +/- the LSC up to the latest scan; treatment
    periods are shaded by drug class; forecast bands (5-95 %) per plan follow the last scan.
    """
    sites = [s for s in SITES if any(scan.sites.get(s) for scan in chart.scans)]
    figure, axes = plt.subplots(
        max(len(sites), 1), 1, figsize=(7.5, 2.6 * max(len(sites), 1)), squeeze=False
    )
    today = date.today()
    plans = sorted({point.plan for point in assessment.forecast})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, site in zip(axes[:, 0], sites, strict=False):
        measured = [
            (scan.scan_date, value.bmd_g_cm2)
            for scan in chart.scans
            if (value := scan.sites.get(site)) is not None and value.bmd_g_cm2 is not None
        ]
        for treatment in chart.treatments:
            colour = _CLASS_COLOURS.get(DRUGS[treatment.drug].drug_class.value, "#7f7f7f")
            stop = treatment.stop_date or treatment.planned_stop_date or today
            ax.axvspan(treatment.start_date, stop, color=colour, alpha=0.08, lw=0)
            ax.text(
                treatment.start_date,
                1.0,
                treatment.drug,
                transform=ax.get_xaxis_transform(),
                fontsize=6,
                va="top",
                color=colour,
            )
        lsc = assessment.lsc.get(site)
        if len(measured) >= 2 and lsc is not None and lsc.lsc_g_cm2 is not None:
            (previous_day, previous), (latest_day, _) = measured[-2], measured[-1]
            ax.fill_between(
                [previous_day, latest_day],
                previous - lsc.lsc_g_cm2,
                previous + lsc.lsc_g_cm2,
                color="0.6",
                alpha=0.35,
                lw=0,
                label=f"previous +/- LSC ({lsc.lsc_g_cm2:.3f})",
            )
        if measured:
            days, values = zip(*measured, strict=True)
            ax.plot(days, values, "o-", color="black", lw=1.5, label="measured")
        for k, plan in enumerate(plans):
            points = [p for p in assessment.forecast if p.plan == plan and p.site == site]
            if not points:
                continue
            colour = colours[k % len(colours)]
            ax.fill_between(
                [p.date for p in points],
                [p.bmd_low_g_cm2 for p in points],
                [p.bmd_high_g_cm2 for p in points],
                color=colour,
                alpha=0.18,
                lw=0,
            )
            ax.plot(
                [p.date for p in points],
                [p.bmd_g_cm2 for p in points],
                color=colour,
                lw=1.2,
                label=f"forecast: {plan}",
            )
        ax.set_title(TITLES[site], fontsize=9)
        ax.set_ylabel("g/cm²", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower left")
    if not sites:
        axes[0, 0].text(0.5, 0.5, "no BMD recorded", ha="center", va="center")
        axes[0, 0].axis("off")
    figure.tight_layout()
    return _svg(figure)
