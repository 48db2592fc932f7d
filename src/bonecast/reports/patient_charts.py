"""Server-side SVG charts of one patient, shared by the web page, the HTML report and the PDF.

* :func:`bmd_chart` - BMD per site over time: the band of the previous value +/- the least
  significant change (LSC), treatments as one lane each above the panels (bands never overlap,
  labels never collide), and the forecast per plan;
* :func:`bmd_age_chart` - BMD against age per site: WHO zones from the young-adult reference of
  her scanner (ISCD 2013: NHANES III for the hip, the maker's database for the spine), the
  age-matched average implied by each reported Z-score, her points and the forecast bands;
* :func:`marker_chart` - bone turnover markers over time, as % of the first result.

Forecast plans are told apart by colour (Okabe-Ito, colour-blind safe) and by dash pattern, with
a legend in words. Not a medical device.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib import dates
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bonecast import labels
from bonecast.clinical import Assessment
from bonecast.clinical.forecast import ForecastPoint
from bonecast.clinical.patient import Scanner
from bonecast.clinical.scores import convert_bmd_g_cm2, score_data
from bonecast.registry import PatientChart
from bonecast.simulation import DRUGS, SITES

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
"""Okabe & Ito (2008) colour-blind safe palette, for the forecast plans."""
DASHES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1)))
"""One dash pattern per plan, so plans differ without colour too."""
_CLASS_COLOURS = {
    "aromatase_inhibitor": "#D55E00",
    "bisphosphonate": "#009E73",
    "rankl_antibody": "#CC79A7",
    "serm": "#E69F00",
    "ovarian_suppression": "#56B4E9",
}
_DAYS_PER_YEAR = 365.25
MARKER_CODES = ("ctx", "p1np", "ntx", "balp")
"""Bone turnover markers drawn in the marker chart (codes of the lab catalogue)."""


def _day(day: date) -> float:
    """A date as Matplotlib's date number (for bars, whose width is a number of days)."""
    return float(dates.date2num(day))  # type: ignore[no-untyped-call]


def _svg(figure: Figure, title: str) -> str:
    """The figure as inline SVG (no XML prologue), with a title for screen readers."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text (readable, smaller)
        figure.savefig(buffer, format="svg")
    plt.close(figure)
    text = buffer.getvalue()
    svg = text[text.index("<svg") :]
    head, rest = svg.split(">", 1)
    return f'{head} role="img" aria-label="{title}"><title>{title}</title>{rest}'


def _sites(chart: PatientChart) -> list[str]:
    return [s for s in SITES if any(scan.sites.get(s) for scan in chart.scans)]


def _measured(chart: PatientChart, site: str) -> list[tuple[date, float]]:
    return [
        (scan.scan_date, value.bmd_g_cm2)
        for scan in chart.scans
        if (value := scan.sites.get(site)) is not None and value.bmd_g_cm2 is not None
    ]


def _plan_styles(assessment: Assessment) -> dict[str, tuple[str, object]]:
    plans = list(dict.fromkeys(p.plan for p in assessment.forecast))
    return {
        plan: (OKABE_ITO[k % len(OKABE_ITO)], DASHES[k % len(DASHES)])
        for k, plan in enumerate(plans)
    }


def _legend(figure: Figure) -> None:
    """One legend in words below the panels (each label once)."""
    entries: dict[str, Artist] = {}
    for ax in figure.axes:
        handles, names = ax.get_legend_handles_labels()
        for handle, name in zip(handles, names, strict=True):
            entries.setdefault(name, handle)
    if entries:
        figure.legend(
            list(entries.values()),
            list(entries),
            loc="outside lower center",
            fontsize=7,
            frameon=False,
            ncols=1,
        )


def _forecast_band(
    ax: Axes,
    x: list[float],
    points: Sequence[ForecastPoint],
    plan: str,
    colour: str,
    dash: object,
) -> None:
    """One plan's forecast: its 5-95 % band shaded and its median as a line, labelled in words."""
    ax.fill_between(
        x,
        [p.bmd_low_g_cm2 for p in points],
        [p.bmd_high_g_cm2 for p in points],
        color=colour,
        alpha=0.12,
        lw=0,
    )
    ax.plot(
        x,
        [p.bmd_g_cm2 for p in points],
        color=colour,
        ls=dash,
        lw=1.6,
        label=f"forecast: {labels.plan(plan)}",
    )


def _treatment_lanes(ax: Axes, chart: PatientChart, today: date) -> None:
    """One lane per treatment: a bar from start to stop (or planned stop, or today)."""
    treatments = chart.treatments
    for row, treatment in enumerate(treatments):
        colour = _CLASS_COLOURS.get(DRUGS[treatment.drug].drug_class.value, "#7f7f7f")
        stop = treatment.stop_date or treatment.planned_stop_date or today
        start = _day(treatment.start_date)
        ax.barh(
            row,
            _day(stop) - start,
            left=start,
            height=0.6,
            color=colour,
            alpha=0.55,
        )
    ax.set_yticks(range(len(treatments)))
    ax.set_yticklabels([labels.drug(t.drug) for t in treatments], fontsize=7)
    ax.set_ylim(len(treatments) - 0.5, -0.5)
    ax.set_title("Treatments", fontsize=9, loc="left")
    ax.tick_params(labelsize=7)
    ax.grid(axis="x", alpha=0.3)


def bmd_chart(chart: PatientChart, assessment: Assessment) -> str:
    """BMD per measured site over time, with LSC band, treatment lanes and forecast (SVG)."""
    sites = _sites(chart)
    lanes = 1 if chart.treatments else 0
    heights = [0.35 * max(len(chart.treatments), 1) + 0.5] * lanes + [2.6] * max(len(sites), 1)
    figure, axes = plt.subplots(
        len(heights),
        1,
        figsize=(7.5, sum(heights) + 1.2),
        sharex=True,
        layout="constrained",
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    today = date.today()
    if lanes:
        _treatment_lanes(axes[0, 0], chart, today)
    styles = _plan_styles(assessment)
    for ax, site in zip(axes[lanes:, 0], sites, strict=False):
        measured = _measured(chart, site)
        lsc = assessment.lsc.get(site)
        if len(measured) >= 2 and lsc is not None:
            (previous_day, previous), (latest_day, _) = measured[-2], measured[-1]
            half = lsc.lsc_g_cm2 or previous * lsc.lsc_pct / 100
            ax.fill_between(
                [previous_day, max(latest_day, today)],
                previous - half,
                previous + half,
                color="0.55",
                alpha=0.3,
                lw=0,
                label="previous value +/- least significant change (a change outside is real)",
            )
        if measured:
            days, values = zip(*measured, strict=True)
            ax.plot(days, values, "o-", color="black", lw=1.5, label="measured")
        for plan, (colour, dash) in styles.items():
            points = [p for p in assessment.forecast if p.plan == plan and p.site == site]
            if not points:
                continue
            _forecast_band(ax, [_day(p.date) for p in points], points, plan, colour, dash)
        ax.set_title(f"{labels.site(site)} BMD", fontsize=9, loc="left")
        ax.set_ylabel("g/cm²", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if not sites:
        axes[lanes, 0].text(0.5, 0.5, "no BMD recorded", ha="center", va="center")
        axes[lanes, 0].axis("off")
    _legend(figure)
    return _svg(figure, "BMD over time per site, with treatments and forecast")


def _age(chart: PatientChart, day: date) -> float:
    return (day - chart.patient.birth_date).days / _DAYS_PER_YEAR


def _reference_sd(site: str, scanner: Scanner) -> float | None:
    """The young-adult SD at ``site`` in the units of ``scanner`` (None without a reference)."""
    references = score_data().references.get(site, {})
    if scanner in references:
        return references[scanner].sd_g_cm2
    if "hologic" in references:
        return abs(_threshold_bmd(site, scanner, 1.0) - _threshold_bmd(site, scanner, 0.0))
    return None


def _threshold_bmd(site: str, scanner: Scanner, t: float) -> float:
    """The BMD of T-score ``t`` on ``scanner`` (the Hologic reference converted via sBMD)."""
    references = score_data().references[site]
    if scanner in references:
        ref = references[scanner]
        return ref.mean_g_cm2 + t * ref.sd_g_cm2
    ref = references["hologic"]
    return convert_bmd_g_cm2(site, "hologic", ref.mean_g_cm2 + t * ref.sd_g_cm2, to=scanner)


def bmd_age_chart(chart: PatientChart, assessment: Assessment) -> str:
    """Her BMD against her age per site: WHO zones, age-matched average, points, forecast."""
    sites = _sites(chart)
    figure, axes = plt.subplots(
        max(len(sites), 1),
        1,
        figsize=(7.5, 2.8 * max(len(sites), 1) + 1.2),
        squeeze=False,
        layout="constrained",
    )
    data = score_data()
    osteopenia = data.who.osteopenia_below.value
    osteoporosis = data.who.osteoporosis_at_most.value
    styles = _plan_styles(assessment)
    for ax, site in zip(axes[:, 0], sites, strict=False):
        scans = [s for s in chart.scans if s.sites.get(site) and s.sites[site].bmd_g_cm2]
        ages = [_age(chart, s.scan_date) for s in scans]
        forecast = [p for p in assessment.forecast if p.site == site]
        ages_all = ages + [_age(chart, p.date) for p in forecast]
        low_age, high_age = min(ages_all) - 2, max(ages_all) + 2
        scanner: Scanner = scans[-1].scanner if scans else "hologic"
        sd = _reference_sd(site, scanner)
        if sd is not None:

            def bmd_at(t: float, site: str = site, scanner: Scanner = scanner) -> float:
                return _threshold_bmd(site, scanner, t)

            top, mean = bmd_at(0.5), bmd_at(0.0)
            bottom = min([bmd_at(osteoporosis - 1.0)] + [p.bmd_low_g_cm2 for p in forecast])
            zones = [
                (bmd_at(osteopenia), top, "#d9efe0", "normal"),
                (bmd_at(osteoporosis), bmd_at(osteopenia), "#fbeacc", "osteopenia"),
                (bottom, bmd_at(osteoporosis), "#f6d4d4", "osteoporosis"),
            ]
            for low, high, colour, name in zones:
                ax.axhspan(low, high, color=colour, lw=0)
                ax.text(high_age + 0.2, (low + high) / 2, name, fontsize=7, va="center")
            ax.axhline(mean, color="0.35", lw=0.8, ls=":", label="young-adult average (T-score 0)")
            ax.set_ylim(bottom, top)
        matched = [
            (age, bmd - z_score * sd)
            for age, s in zip(ages, scans, strict=True)
            if sd is not None
            and (bmd := s.sites[site].bmd_g_cm2) is not None
            and (z_score := s.sites[site].z_score) is not None
        ]
        if matched:
            ax.plot(
                *zip(*matched, strict=True),
                color="0.25",
                ls="--",
                lw=1.0,
                label="average for her age (from the reported Z-score)",
            )
        ax.plot(
            ages,
            [s.sites[site].bmd_g_cm2 for s in scans],
            "o-",
            color="black",
            lw=1.4,
            label="her scans",
        )
        for plan, (colour, dash) in styles.items():
            points = [p for p in forecast if p.plan == plan]
            if points:
                x = [_age(chart, p.date) for p in points]
                _forecast_band(ax, x, points, plan, colour, dash)
        z = assessment.scores.get(site)
        title = f"{labels.site(site)} BMD by age"
        if z is not None and z.z_score is not None:
            title += f" - latest Z-score {z.z_score:+.1f}"
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xlim(low_age, high_age + 4)
        ax.set_xlabel("age (years)", fontsize=8)
        ax.set_ylabel("g/cm²", fontsize=8)
        ax.tick_params(labelsize=7)
    if not sites:
        axes[0, 0].text(0.5, 0.5, "no BMD recorded", ha="center", va="center")
        axes[0, 0].axis("off")
    _legend(figure)
    return _svg(figure, "BMD against age per site, with WHO zones and forecast")


def marker_chart(chart: PatientChart) -> str | None:
    """Bone turnover markers over time as % of each marker's first result (SVG); None if none."""
    series: dict[str, list[tuple[date, float]]] = {}
    for lab in chart.labs:
        if lab.marker in MARKER_CODES:
            series.setdefault(lab.marker, []).append((lab.sample_date, lab.value))
    if not series:
        return None
    figure, ax = plt.subplots(figsize=(7.5, 2.4), layout="constrained")
    for k, (name, values) in enumerate(sorted(series.items())):
        values.sort()
        first = values[0][1]
        ax.plot(
            [_day(d) for d, _ in values],
            [100 * v / first for _, v in values],
            marker="o",
            color=OKABE_ITO[k % len(OKABE_ITO)],
            ls=DASHES[k % len(DASHES)],
            label=labels.marker(name),
        )
    ax.axhline(100, color="0.5", lw=0.8)
    ax.set_ylabel("% of first result", fontsize=8)
    ax.set_title("Bone turnover markers", fontsize=9, loc="left")
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _svg(figure, "Bone turnover markers over time")
