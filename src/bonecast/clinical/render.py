"""Readable text for an :class:`~bonecast.clinical.assessment.Assessment` (Rich renderables).

Words, not codes (:mod:`bonecast.labels`); tables fold long cells rather than cut them, so the
text wraps to the terminal's width and nothing is truncated.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bonecast import labels
from bonecast.clinical.assessment import Assessment
from bonecast.clinical.explain import agent_text, marker_verdict, plan_views
from bonecast.simulation import SITES

COUNTED_FROM = {
    "assessment": "this assessment",
    "latest_scan": "the latest scan",
    "therapy_start": "the start of treatment",
    "follow_on_start": "the follow-on bisphosphonate",
}
SEVERITY_STYLE = {"critical": "bold white on red", "warning": "bold yellow", "info": "cyan"}


def _checked(verification: str) -> str:
    return labels.VERIFICATION.get(verification, verification)


def _number(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _table(title: str, columns: Iterable[str], rows: Iterable[Iterable[str]]) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, expand=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def _header(a: Assessment) -> RenderableType:
    p = a.patient
    who = labels.category(a.who_category)
    risk_factors = [labels.words(t.text) for t in a.rule_trace if t.kind == "risk_factor"]
    lines = [
        f"[bold]Bone health assessment[/] as of {a.as_of} - guideline [bold]{a.guideline.title}[/] "
        f"({labels.VERIFICATION.get(a.guideline.verification, a.guideline.verification)})",
        ", ".join(
            part for part in (p.sex, f"{p.age_years:g} years", p.menopausal_status or "") if part
        )
        + f", BMI {_number(p.bmi_kg_m2)} kg/m2; "
        f"aromatase inhibitor: {'yes' if p.on_aromatase_inhibitor else 'no'}; "
        f"ovarian suppression: {'yes' if p.ovarian_suppression else 'no'}",
        f"Lowest T-score: [bold]{_number(a.lowest_t_score)}[/] "
        f"({labels.site(a.lowest_t_score_site) if a.lowest_t_score_site else 'no BMD'}); "
        f"WHO category: [bold]{who}[/]"
        + (f"; Z-scores: {labels.category(a.z_score_category)}" if a.z_score_category else ""),
        f"Risk factors counted: {'; '.join(risk_factors) or 'none'}",
    ]
    return Text.from_markup("\n".join(lines))


def _recommendation(a: Assessment) -> RenderableType:
    r = a.recommendation
    verdict = (
        "[bold red]Bone-directed therapy indicated[/]"
        if r.start_bone_protective_therapy
        else "[bold green]No bone-directed therapy now[/]"
    )
    dxa = r.next_dxa
    parts: list[RenderableType] = [
        Text.assemble(
            Text.from_markup(verdict),
            f"\n{labels.decision(r.decision)}: {labels.words(r.rule)}\n",
            (f"Source: {labels.cite(r.source)} ({_checked(r.verification)})\n", "dim"),
            f"Next DXA: due {dxa.due}{' (overdue)' if dxa.overdue else ''}, {dxa.months} months "
            f"after {COUNTED_FROM[dxa.counted_from]}: {labels.words(dxa.reason)}",
        )
    ]
    for g in r.agents:
        parts.append(
            Text.assemble(
                (f"- {agent_text(g)}", "bold"),
                f", {labels.words(g.duration)} ",
                (f"({labels.cite(g.source)}; {_checked(g.verification)})", "dim"),
            )
        )
    for advice in r.advice:
        style = SEVERITY_STYLE[advice.severity]
        parts.append(
            Text.assemble(
                (f" {labels.SEVERITIES[advice.severity]} ", style),
                f" {labels.words(advice.text)} ",
                (f"({labels.cite(advice.source)})", "dim"),
            )
        )
    return Panel(Group(*parts), title="Recommendation", title_align="left")


def _scores(a: Assessment) -> RenderableType:
    return _table(
        f"Latest scan {a.latest_scan_date or '(none)'}",
        ("site", "BMD g/cm2", "T", "Z", "sBMD mg/cm2", "T-score from"),
        (
            (
                labels.site(s.site),
                _number(s.bmd_g_cm2, 3),
                _number(s.t_score),
                _number(s.z_score),
                _number(s.sbmd_mg_cm2, 0),
                labels.words(s.t_score_source or "-")
                + (f"; excluded {', '.join(s.vertebrae_excluded)}" if s.vertebrae_excluded else ""),
            )
            for s in a.scores.values()
        ),
    )


def _changes(a: Assessment) -> RenderableType:
    return _table(
        "Scan-to-scan change",
        ("site", "from", "to", "change %", "%/year", "LSC %", "real change"),
        (
            (
                labels.site(c.site),
                str(c.from_date),
                str(c.to_date),
                _number(c.pct_change),
                _number(c.annualised_pct_change),
                _number(c.lsc_pct),
                {True: "yes", False: "no", None: f"not comparable ({labels.words(c.note or '')})"}[
                    c.significant
                ],
            )
            for c in a.changes
        ),
    )


def _fracture(a: Assessment) -> RenderableType:
    risk = a.fracture_risk
    table = _table(
        "Fracture risk",
        ("model", "outcome", "years", "risk %", "on AI %", "adjustments"),
        (
            (
                e.model,
                labels.outcome(e.outcome),
                str(e.horizon_years),
                _number(e.risk_pct),
                _number(e.risk_pct_on_ai),
                "; ".join(s.description for s in e.steps[1:]) or "-",
            )
            for e in risk.estimates
        ),
    )
    limits = {e.model: e.does_not_account_for for e in risk.estimates}
    notes = [
        f"{model} does not account for: {'; '.join(items)}." for model, items in limits.items()
    ]
    notes += [labels.words(line) for line in risk.not_computed]
    if any(e.model != "FRAX" for e in risk.estimates):
        notes += [risk.qfracture_attribution, risk.qfracture_disclaimer]
    return Group(table, Text("\n".join(notes), style="dim"))


def _markers(a: Assessment) -> RenderableType:
    def interval(low: float, high: float) -> str:
        return f"{low:g}-{high:g}"

    return _table(
        "Bone turnover markers"
        + (f" (response: {a.markers.response.replace('_', ' ')})" if a.markers.response else ""),
        ("marker", "latest", "reference", "change %", "LSC %", "verdict"),
        (
            (
                labels.marker(m.marker),
                f"{m.latest_value:g} {m.unit} ({m.latest_date})",
                interval(m.reference_interval.low, m.reference_interval.high)
                if m.reference_interval
                else "-",
                _number(m.pct_change),
                f"{m.lsc_pct:g}",
                marker_verdict(m),
            )
            for m in a.markers.results
        ),
    )


def _trace(a: Assessment) -> RenderableType:
    lines = Text("Rule trace\n", style="bold")
    for t in a.rule_trace:
        lines.append(f"- {t.kind.replace('_', ' ')}: ")
        lines.append(f"{labels.words(t.text)} ")
        lines.append(f"({labels.cite(t.source)}; {_checked(t.verification)})\n", style="dim")
    return lines


def _forecast(a: Assessment) -> RenderableType:
    details = a.forecast_details
    if details is None:
        return Text("")
    sites = sorted({p.site for p in a.forecast}, key=SITES.index)
    years = sorted({p.month for p in a.forecast})
    table = Table(
        title=f"BMD forecast ({details.horizon_years} years; T-score, 5-95 % band)",
        title_justify="left",
    )
    table.add_column("plan", overflow="fold")
    table.add_column("site", overflow="fold")
    for month in years:
        table.add_column(f"year {month // 12}", overflow="fold")
    for plan in details.plans:
        for site in sites:
            cells = [
                f"{p.t_score:.1f} ({p.t_score_low:.1f}/{p.t_score_high:.1f})"
                for month in years
                for p in a.forecast
                if p.plan == plan.name and p.site == site and p.month == month
            ]
            table.add_row(labels.plan(plan.name), labels.site(site), *cells)
    plans = "\n".join(
        f"- {v.title}: {v.what}" + (f"; agent {v.agent}, {v.duration}" if v.agent else "")
        for v in plan_views(a)
    )
    narrowing = ", ".join(
        f"{labels.site(k)} {v:g} %" for k, v in details.band_narrowing_pct.items()
    )
    lines = [plans]
    markers = (
        f" and {details.markers_conditioned_on} turnover marker value(s)"
        if details.markers_conditioned_on
        else ""
    )
    lines.append(
        f"Conditioned on {details.scans_conditioned_on} scan(s){markers}: band at the horizon "
        f"narrower than from her first scan alone by {narrowing} "
        f"({details.effective_twins:g} of {details.twins} twins)."
    )
    lines += [
        f"- {labels.site(fit.site)} {fit.date}: measured {fit.measured_bmd_g_cm2:.3f}, forecast "
        f"{fit.bmd_g_cm2:.3f} ({fit.bmd_low_g_cm2:.3f}-{fit.bmd_high_g_cm2:.3f}) g/cm2"
        for fit in details.fit_to_scans
    ]
    lines += [f"- {labels.words(note)}" for note in details.notes]
    return Group(table, Text("\n".join(lines), style="dim"))


def render_text(a: Assessment) -> RenderableType:
    """The assessment as Rich renderables: summary, recommendation, data, rule trace, disclaimer."""
    parts: list[RenderableType] = [_header(a), _recommendation(a)]
    if a.scores:
        parts.append(_scores(a))
    if a.changes:
        parts.append(_changes(a))
    if a.markers.results:
        parts.append(_markers(a))
    parts.append(_fracture(a))
    if a.forecast_details is not None:
        parts.append(_forecast(a))
    parts.append(_trace(a))
    if a.warnings:
        notes = "\n".join(f"- {labels.words(w)}" for w in a.warnings)
        parts.append(Text("Notes:\n" + notes, style="yellow"))
    parts.append(Text(a.disclaimer, style="bold"))
    return Group(*parts)
