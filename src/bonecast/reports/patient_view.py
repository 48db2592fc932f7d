"""What the patient page, the clinician's report and the patient summary show, in words.

One builder for the three, so a label, a plan or a chart is made once: plans in full
(:mod:`bonecast.clinical.explain`), the treatment history from the registry with each regimen
in words (the drug catalogue's standard dose when the record gives none), marker verdicts with
their cited LSC, and the charts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from bonecast import DISCLAIMER, __version__, labels
from bonecast.clinical import Assessment
from bonecast.clinical.explain import agent_text, marker_verdict, plan_views
from bonecast.clinical.guidelines import load_rule_set
from bonecast.clinical.markers import marker_data
from bonecast.registry import PatientChart, TreatmentRecord
from bonecast.reports.patient_charts import MARKER_CODES, bmd_age_chart, bmd_chart, marker_chart
from bonecast.simulation import DRUGS, DrugClass


@dataclass(frozen=True)
class TreatmentRow:
    """One treatment of her history, in words."""

    drug: str
    kind: str
    regimen: str
    start: date
    planned_stop: date | None
    stopped: date | None
    status: str


def treatment_row(treatment: TreatmentRecord, today: date) -> TreatmentRow:
    """A registry treatment in words (the catalogue's standard dose where none is recorded)."""
    drug = DRUGS[treatment.drug]
    standard = drug.regimens[0]
    dose = treatment.dose_mg or standard.dose_mg
    route = treatment.route or drug.default_route
    every = treatment.interval_days or standard.interval_days
    if treatment.stop_date is not None and treatment.stop_date <= today:
        status = "stopped"
    elif treatment.start_date > today:
        status = "planned"
    else:
        status = "ongoing"
    return TreatmentRow(
        drug=labels.drug(treatment.drug),
        kind=labels.DRUG_CLASSES[drug.drug_class],
        regimen=labels.regimen(treatment.drug, dose, route, every),
        start=treatment.start_date,
        planned_stop=treatment.planned_stop_date,
        stopped=treatment.stop_date,
        status=status,
    )


@dataclass(frozen=True)
class MarkerRow:
    """One bone turnover marker: latest value, change, its own LSC (cited) and the verdict."""

    name: str
    latest: str
    date: date
    within_reference: str
    change: str
    lsc: str
    lsc_source: str
    verdict: str


def marker_rows(assessment: Assessment) -> list[MarkerRow]:
    """The markers of the assessment in words."""
    lscs = marker_data().lsc_pct
    rows = []
    for m in assessment.markers.results:
        reference = {None: "no reference for this assay", True: "yes", False: "no"}
        rows.append(
            MarkerRow(
                name=labels.marker(m.marker),
                latest=f"{m.latest_value:g} {m.unit}",
                date=m.latest_date,
                within_reference=reference[m.within_reference],
                change="" if m.pct_change is None else f"{m.pct_change:+.0f} %",
                lsc=f"{m.lsc_pct:g} %",
                lsc_source=labels.cite(lscs[m.marker].source) if m.marker in lscs else "",
                verdict=marker_verdict(m),
            )
        )
    return rows


CHARTS = ("bmd", "age", "markers")
"""The charts of a patient, by name: BMD over time, BMD against age, markers."""


def chart_svg(name: str, chart: PatientChart, assessment: Assessment) -> str | None:
    """One chart of :data:`CHARTS` as SVG text (None: markers without a marker result)."""
    if name == "bmd":
        return bmd_chart(chart, assessment)
    if name == "age":
        return bmd_age_chart(chart, assessment)
    if name == "markers":
        return marker_chart(chart)
    raise KeyError(f"unknown chart {name!r}; accepted: {', '.join(CHARTS)}")


def view(chart: PatientChart, assessment: Assessment) -> dict[str, Any]:
    """Everything the templates read except the charts (see :func:`chart_svg`)."""
    today = date.today()
    return {
        "chart": chart,
        "assessment": assessment,
        "labels": labels,
        "agent_text": agent_text,
        "plans": plan_views(assessment),
        "treatments": [treatment_row(t, today) for t in chart.treatments],
        "markers": marker_rows(assessment),
        "has_markers": any(lab.marker in MARKER_CODES for lab in chart.labs),
        "disclaimer": DISCLAIMER,
        "version": __version__,
        "printed": today,
    }


def _range(rule_set: str, low: str, high: str) -> str:
    settings = load_rule_set(rule_set).settings
    return f"{settings[low].value:g} to {settings[high].value:g}"


def _patient_site(code: str) -> str:
    return labels.PATIENT_SITES.get(code, labels.site(code).lower())


def summary_facts(chart: PatientChart, assessment: Assessment) -> dict[str, Any]:
    """The patient summary's facts in plain words (numbers from the assessment and rule set)."""
    a = assessment
    changes = []
    for c in a.changes:
        if not c.comparable or c.pct_change is None:
            continue
        where = _patient_site(c.site)
        if c.significant:
            way = "went down" if c.pct_change < 0 else "went up"
            changes.append(
                f"At your {where}, your bone {way} by {abs(c.pct_change):.1f} % since "
                f"{c.from_date}. That is more than the scan's own error, so it is a real change."
            )
        else:
            changes.append(
                f"At your {where}, your bone has not changed by more than the scan's own error "
                f"since {c.from_date}."
            )
    ais = [
        labels.drug(t.drug)
        for t in chart.treatments
        if DRUGS[t.drug].drug_class is DrugClass.AROMATASE_INHIBITOR
    ]
    forecast = []
    plans = plan_views(a)
    with_agent = next((p for p in plans if p.agent), None)
    without = next((p for p in plans if not p.agent), None)
    if with_agent and without and without.outlook:
        low = min(without.outlook, key=lambda o: o.t_score)
        other = next((o for o in with_agent.outlook if o.site == low.site), None)
        years = without.horizon_years
        forecast.append(
            f"A computer model made a guess for your {_patient_site(low.site)} in {years} years. "
            f"Without a bone medicine, your T-score could be about {low.t_score:.1f}."
        )
        if other is not None:
            forecast.append(f"With a bone medicine, it could be about {other.t_score:.1f}.")
        forecast.append("These are only guesses. Your bones may do better or worse.")
    rule_set = a.guideline.name
    return {
        "latest_scan": a.latest_scan_date,
        "lowest_site": _patient_site(a.lowest_t_score_site or ""),
        "zone": labels.category(a.who_category).split(" (")[0].lower(),
        "changes": changes,
        "ai_names": " and ".join(dict.fromkeys(ais)) or "an aromatase inhibitor",
        "agent": agent_text(a.recommendation.agents[0]) if a.recommendation.agents else None,
        "forecast": forecast,
        "calcium": _range(rule_set, "calcium_min_mg_per_day", "calcium_max_mg_per_day"),
        "vitamin_d": _range(rule_set, "vitamin_d_min_iu_per_day", "vitamin_d_max_iu_per_day"),
    }
