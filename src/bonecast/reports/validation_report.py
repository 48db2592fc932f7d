"""The validation report: target table (CSV), one figure per trial, the trial random effects
(table and forest plot), the fracture checks and an HTML summary."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import matplotlib
from jinja2 import Environment, PackageLoader, select_autoescape

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bonecast import DISCLAIMER
from bonecast.reports.plots import TITLES
from bonecast.reports.validation_groups import (
    bias_rows,
    femoral_neck_share,
    mean_absolute_error_pp,
    plot_after_stopping,
    plot_bias,
    plot_femoral_neck,
    write_bias_table,
)
from bonecast.simulation.calibration.fracture_fit import SHIPPED_STRUCTURE, LeaveOneOutRow
from bonecast.simulation.calibration.heterogeneity import PROVENANCE_KEY, Heterogeneity
from bonecast.simulation.calibration.validation import (
    TargetCheck,
    ValidationReport,
)
from bonecast.simulation.fracture import default_fracture_model
from bonecast.simulation.trials import Band, TrialResult

TABLE_COLUMNS = (
    "target_id",
    "trial",
    "arm",
    "quantity",
    "month_from",
    "month_to",
    "statistic",
    "target_pct",
    "model_pct",
    "difference_pp",
    "tolerance_pp",
    "weight",
    "verified",
    "fitted",
    "pass",
    "reason_if_missed",
    "predictive_low_pct",
    "predictive_high_pct",
    "in_predictive_interval",
)


def _tolerance(check: TargetCheck) -> float:
    return check.target.tolerance_pp(check.high_weight_rule)


def _passes(check: TargetCheck) -> bool:
    return check.passes(check.high_weight_rule)


def write_table(report: ValidationReport, path: Path) -> None:
    """One row per target: target vs model, difference, tolerance and pass flag."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(TABLE_COLUMNS)
        for c in report.checks:
            row, link = c.target.row, c.target.link
            diff = c.difference_pp
            writer.writerow(
                [
                    row.target_id,
                    row.trial,
                    " | ".join(link.arms) + (f" minus {link.minus}" if link.minus else ""),
                    link.quantity,
                    f"{row.month_from:g}",
                    f"{row.month_to:g}",
                    row.statistic,
                    "" if row.value_pct is None else f"{row.value_pct:g}",
                    f"{c.model_pct:.2f}",
                    "" if diff is None else f"{diff:.2f}",
                    f"{_tolerance(c):.2f}",
                    row.weight,
                    "yes" if row.verified else "no",
                    "yes" if c.fitted else "no (external check)",
                    "yes" if _passes(c) else "no",
                    ""
                    if _passes(c)
                    else report.miss_reasons.get(row.target_id, "no reason recorded"),
                    *_predictive_fields(c),
                ]
            )


def _predictive_fields(check: TargetCheck) -> list[str]:
    interval, covered = check.predictive_interval, check.covered()
    bounds = ["", ""] if interval is None else [f"{v:.2f}" for v in interval]
    return [*bounds, "" if covered is None else ("yes" if covered else "no")]


EFFECT_COLUMNS = ("trial", "site", "estimate_pp", "ci95_low_pp", "ci95_high_pp", "targets")
"""Columns of ``validation_trial_effects.csv``."""


def write_effects_table(heterogeneity: Heterogeneity, path: Path) -> None:
    """One row per trial and site: the estimated random effect with its 95 % interval."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(EFFECT_COLUMNS)
        for e in heterogeneity.effects:
            values = (e.estimate_pp, e.low_pp, e.high_pp)
            writer.writerow([e.trial, e.site, *(f"{v:.2f}" for v in values), e.targets])


def plot_forest(heterogeneity: Heterogeneity, path: Path) -> None:
    """Forest plot per site: each trial's effect (pp) with its 95 % interval, and the band
    +/- 1.96 tau in which a new trial's effect is expected to fall."""
    sites = list(heterogeneity.tau_pp)
    per_site = {s: [e for e in heterogeneity.effects if e.site == s] for s in sites}
    tallest = max(len(v) for v in per_site.values())
    fig, axes = plt.subplots(
        1, len(sites), figsize=(4.6 * len(sites), 0.9 + 0.32 * tallest), squeeze=False
    )
    for ax, site in zip(axes.flat, sites, strict=True):
        effects = per_site[site]
        tau, low, high = heterogeneity.tau_pp[site]
        ax.axvspan(-1.96 * tau, 1.96 * tau, color="0.85", lw=0)
        ax.axvline(0.0, color="0.4", lw=0.8)
        y = list(range(len(effects)))[::-1]
        ax.errorbar(
            [e.estimate_pp for e in effects],
            y,
            xerr=[
                [e.estimate_pp - e.low_pp for e in effects],
                [e.high_pp - e.estimate_pp for e in effects],
            ],
            fmt="s",
            color="k",
            ms=5,
            capsize=2,
        )
        ax.set_yticks(y, [f"{e.trial} ({e.targets})" for e in effects], fontsize=8)
        ax.set_ylim(-0.8, tallest - 0.2)
        ax.set_title(
            f"{TITLES.get(site, site)}\ntau {tau:.2f} pp (95 % {low:.2f}-{high:.2f})", fontsize=9
        )
        ax.set_xlabel("trial effect, pp (model + effect = trial)")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(
        "Trial random effects with 95 % intervals; grey: +/- 1.96 tau (number of targets)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mean_at(band: Band, month: float) -> float:
    """The band's mean at ``month`` (NaN when the trial does not report that month)."""
    months = list(band.months)
    return float(band.mean[months.index(month)]) if month in months else math.nan


def plot_trial_targets(report: ValidationReport, trial: str, path: Path) -> None:
    """Simulated mean and 5-95 % band per arm, with the published points and error bars.

    Change-from-baseline targets sit at their month; an interval target (month a -> b) is drawn
    at month b anchored at the simulated arm mean at month a. A between-arm target (arm minus
    another) is drawn on its arm where the published difference puts it, given the other arm's
    simulated change over the same interval.
    """
    result = report.results[trial]
    checks = [c for c in report.checks if c.target.link.trial == trial]
    quantities = [q for q in result.spec.outputs.quantities]
    fig, axes = plt.subplots(
        1, len(quantities), figsize=(5.0 * len(quantities), 4.2), squeeze=False
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    arm_colour = {arm: colours[k % len(colours)] for k, arm in enumerate(result.bands)}
    for ax, quantity in zip(axes.flat, quantities, strict=True):
        for arm, bands in result.bands.items():
            band = bands[quantity]
            ax.fill_between(
                band.months, band.p05, band.p95, color=arm_colour[arm], alpha=0.15, lw=0
            )
            ax.plot(band.months, band.mean, color=arm_colour[arm], lw=1.8, label=arm)
        for c in checks:
            row, link = c.target.row, c.target.link
            if row.value_pct is None or link.quantity != quantity:
                continue
            arm = link.arms[0]
            band = result.bands[arm][quantity]
            anchor = _mean_at(band, row.month_from) if row.month_from else 0.0
            if link.minus is not None:
                other = result.bands[link.minus][quantity]
                start = _mean_at(other, row.month_from) if row.month_from else 0.0
                anchor += _mean_at(other, row.month_to) - start
            if math.isnan(anchor):
                continue
            y = anchor + row.value_pct
            ax.errorbar(
                row.month_to,
                y,
                yerr=_tolerance(c),
                fmt="o" if _passes(c) else "X",
                color=arm_colour.get(arm, "k"),
                mec="k",
                capsize=3,
                ms=7,
                zorder=5,
            )
            ax.annotate(
                row.target_id,
                (row.month_to, y),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
        ax.axhline(0, color="0.5", lw=0.7)
        ax.set_title(TITLES.get(quantity, quantity))
        ax.set_xlabel("month")
        ax.set_ylabel("% change from baseline")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(
        f"{result.spec.name}: model (band 5-95 %) vs published (o pass, x miss; bars = tolerance)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


LARGE_TAU_PP = 1.5
"""Between-trial SD above which the report explains what drives it (issue 14)."""


def tau_notes(heterogeneity: Heterogeneity) -> list[str]:
    """For each site whose tau exceeds :data:`LARGE_TAU_PP`, the trials that carry it (the
    three largest effects), in words."""
    notes = []
    for site, (tau, low, high) in heterogeneity.tau_pp.items():
        if tau <= LARGE_TAU_PP:
            continue
        largest = sorted(
            (e for e in heterogeneity.effects if e.site == site),
            key=lambda e: -abs(e.estimate_pp),
        )[:3]
        named = ", ".join(f"{e.trial} {e.estimate_pp:+.2f} pp" for e in largest)
        notes.append(
            f"{TITLES.get(site, site)}: tau {tau:.2f} pp (95 % {low:.2f}-{high:.2f}) is above "
            f"{LARGE_TAU_PP:g} pp; it is carried mostly by {named}: the trials whose targets "
            "the fixed effects miss (see Misses for why each is believed to differ)."
        )
    return notes


FRACTURE_COLUMNS = (
    "target_id",
    "outcome",
    "role",
    "literature",
    "ci95_low",
    "ci95_high",
    "model",
    "inside_ci95",
    "predictive95_low",
    "predictive95_high",
    "inside_predictive95",
    "model_trial_left_out",
    "inside_ci95_trial_left_out",
    "source",
    "verified",
    "note",
)
"""Columns of ``validation_fractures.csv``."""


def write_fracture_table(report: ValidationReport, path: Path) -> None:
    """One row per fracture target: literature with its 95 % interval, model, inside or not,
    the model's predictive interval, and the prediction with the target's trial left out of the
    fit (the shipped structure)."""
    left_out = shipped_leave_one_out(report)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(FRACTURE_COLUMNS)
        for f in report.fractures:
            t = f.target
            loto = left_out.get(t.target_id)
            writer.writerow(
                [
                    t.target_id,
                    f.outcome,
                    t.role,
                    f"{t.value:.2f}",
                    f"{f.interval[0]:.2f}",
                    f"{f.interval[1]:.2f}",
                    f"{f.model:.2f}",
                    "yes" if f.passes else "no",
                    f"{f.predictive[0]:.2f}",
                    f"{f.predictive[1]:.2f}",
                    "yes" if f.covered else "no",
                    "" if loto is None else f"{loto.model:.2f}",
                    "" if loto is None else ("yes" if loto.inside else "no"),
                    t.citation,
                    t.verified,
                    t.note,
                ]
            )


def shipped_leave_one_out(report: ValidationReport) -> dict[str, LeaveOneOutRow]:
    """Leave-one-trial-out predictions of the shipped structure, by target id (none without a
    fit file)."""
    fit = report.fracture_fit
    if fit is None:
        return {}
    for result in fit.leave_one_trial_out:
        if result.structure == SHIPPED_STRUCTURE:
            return {row.target_id: row for row in result.rows}
    return {}


def plot_fractures(report: ValidationReport, path: Path) -> None:
    """Left: simulated clinical-fracture incidence by trial arm, each on its trial's spec, with
    the published incidences (95 % interval) at their months; right: every fracture target,
    published against simulated, with the model's 95 % predictive interval."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.0, 4.8))
    colours: dict[tuple[str, str], str] = {}
    for spec, result in report.fracture_results.items():
        for arm in result.spec.arms:
            colour = f"C{len(colours) % 10}"
            colours[(spec, arm.name)] = colour
            points = sorted(
                (r.month, r.mean_pct_change)
                for r in result.rows
                if r.arm == arm.name and r.quantity == "clinical_fracture" and r.month_from == 0
            )
            months, incidence = zip(*[(0.0, 0.0), *points], strict=True)
            trial = result.spec.name.split(" fractures")[0]
            left.plot(months, incidence, lw=1.4, color=colour, label=f"{trial}: {arm.name}")
    for f in report.fractures:
        t = f.target
        if t.statistic != "cumulative_incidence" or t.month_from != 0:
            continue
        low, high = f.interval
        colour = colours[(t.spec, t.arm)]
        left.errorbar(
            t.month_to,
            t.value,
            yerr=[[t.value - low], [high - t.value]],
            fmt="o" if t.role == "calibration" else "s",
            mfc=colour if t.role == "calibration" else "white",
            color=colour,
            capsize=3,
        )
    left.set_xlabel("month since the start of the simulated treatment")
    left.set_ylabel("clinical-fracture cumulative incidence, %")
    left.set_title("Simulated incidence by trial arm; published points (95 % interval)")
    left.grid(alpha=0.3)
    left.legend(fontsize=5.5, loc="upper left")
    for f in report.fractures:
        t = f.target
        low, high = f.interval
        scale = 1.0 if t.statistic == "cumulative_incidence" else 10.0
        right.errorbar(
            t.value * scale,
            f.model * scale,
            xerr=[[(t.value - low) * scale], [(high - t.value) * scale]],
            yerr=[[(f.model - f.predictive[0]) * scale], [(f.predictive[1] - f.model) * scale]],
            fmt="o" if t.role == "calibration" else "s",
            mfc="C0" if t.role == "calibration" else "white",
            color="C0" if f.passes else "C3",
            elinewidth=0.8,
            capsize=2,
        )
        right.annotate(
            t.target_id,
            (t.value * scale, f.model * scale),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    top = max(max(f.target.value, f.model) for f in report.fractures if f.target.unit == "%")
    right.plot([0, top * 1.1], [0, top * 1.1], color="0.5", lw=0.8)
    right.set_xlabel("published (incidence %, or hazard or odds ratio x 10)")
    right.set_ylabel("model")
    right.set_title("Every fracture target (red: outside its 95 % interval)", fontsize=9)
    right.grid(alpha=0.3)
    fig.suptitle(
        "Fracture model against published results (vertical bars: 95 % predictive interval)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_men_table(report: ValidationReport, path: Path) -> None:
    """The male targets in the target table's columns (``validation_men.csv``)."""
    assert report.men is not None
    write_table(dataclasses.replace(report, checks=report.men.checks), path)


def plot_trial_set(
    report: ValidationReport,
    checks: list[TargetCheck],
    results: dict[str, TrialResult],
    folder: Path,
    prefix: str,
) -> dict[str, str]:
    """One figure per trial of a set of targets beside the calibration targets (men, hold-out):
    model band vs published points; title -> file name."""
    view = dataclasses.replace(report, checks=checks, results=results)
    figures = {}
    for trial, result in results.items():
        name = f"{prefix}{trial}.png"
        plot_trial_targets(view, trial, folder / name)
        figures[result.spec.name] = name
    return figures


def plot_men(report: ValidationReport, folder: Path) -> dict[str, str]:
    """One figure per male trial (model band vs published points); title -> file name."""
    assert report.men is not None
    return plot_trial_set(report, report.men.checks, report.men.results, folder, "validation_men_")


def holdout_view(report: ValidationReport) -> ValidationReport:
    """The report seen through its hold-out rows (their checks and trial results)."""
    assert report.holdout is not None
    return dataclasses.replace(report, checks=report.holdout.checks, results=report.holdout.results)


def plot_holdout(report: ValidationReport, path: Path) -> None:
    """Every hold-out result: published (x, with its tolerance max(CI half-width, 1.0 pp)) against
    the model's fixed-effect prediction (y, with its 95 % predictive interval); the diagonal is
    perfect prediction, a point whose horizontal bar crosses it is within tolerance."""
    assert report.holdout is not None
    checks = [c for c in report.holdout.checks if c.target.row.value_pct is not None]
    fig, ax = plt.subplots(figsize=(7.6, 6.6))
    for c in checks:
        published = float(c.target.row.value_pct or 0.0)
        interval = c.predictive_interval
        yerr = (
            None if interval is None else [[c.model_pct - interval[0]], [interval[1] - c.model_pct]]
        )
        ok = _passes(c)
        ax.errorbar(
            published,
            c.model_pct,
            xerr=_tolerance(c),
            yerr=yerr,
            fmt="o" if ok else "X",
            color="C0" if ok else "C3",
            ecolor="0.6",
            elinewidth=0.8,
            capsize=2,
            ms=6,
        )
        ax.annotate(
            c.target.target_id,
            (published, c.model_pct),
            fontsize=6,
            xytext=(3, 3),
            textcoords="offset points",
        )
    values = [v for c in checks for v in (float(c.target.row.value_pct or 0.0), c.model_pct)]
    low, high = min(values) - 1.5, max(values) + 1.5
    ax.plot([low, high], [low, high], color="0.4", lw=0.8)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel("published % change (horizontal bar: tolerance)")
    ax.set_ylabel("model % change (vertical bar: 95 % predictive interval)")
    ax.set_title("Trials the model was never fitted to: o within tolerance, x outside", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_holdout(report: ValidationReport, folder: Path) -> dict[str, object]:
    """The hold-out table (``validation_holdout.csv``), the published-vs-model figure and one
    figure per hold-out trial; what the HTML page needs to show them."""
    assert report.holdout is not None
    view = holdout_view(report)
    write_table(view, folder / "validation_holdout.csv")
    plot_holdout(report, folder / "validation_holdout.png")
    figures = plot_trial_set(
        report, report.holdout.checks, report.holdout.results, folder, "validation_holdout_"
    )
    return {
        "head": report.holdout.headline(),
        "rows": [_summary(view, c) for c in report.holdout.checks],
        "bias": bias_rows(view),
        "figures": [{"title": t, "file": f} for t, f in figures.items()],
    }


def _summary(report: ValidationReport, check: TargetCheck) -> dict[str, object]:
    row, link = check.target.row, check.target.link
    ok = _passes(check)
    diff = check.difference_pp
    return {
        "id": row.target_id,
        "trial": row.trial,
        "quantity": link.quantity,
        "months": f"{row.month_from:g} -> {row.month_to:g}",
        "statistic": row.statistic,
        "target": "sign" if row.value_pct is None else f"{row.value_pct:g}",
        "model": f"{check.model_pct:.2f}",
        "diff": "" if diff is None else f"{diff:+.2f}",
        "tolerance": f"{_tolerance(check):.2f}",
        "weight": row.weight + ("" if row.verified else "*"),
        "ok": ok,
        "reason": "" if ok else report.miss_reasons.get(row.target_id, "no reason recorded"),
        "predictive": ""
        if check.predictive_interval is None
        else "{:.2f} to {:.2f}".format(*check.predictive_interval),
        "covered": {None: "", True: "yes", False: "no"}[check.covered()],
    }


def write_html(
    report: ValidationReport,
    path: Path,
    figures: dict[str, str],
    table: str,
    men_figures: dict[str, str] | None,
    groups: dict[str, object],
    holdout: dict[str, object] | None = None,
) -> None:
    """A short HTML summary: headline, bias by group, misses with reasons, the full table and
    the figures."""
    environment = Environment(
        loader=PackageLoader("bonecast.reports", "templates"), autoescape=select_autoescape()
    )
    rows = [_summary(report, c) for c in report.checks]
    params = report.parameter_set
    page = environment.get_template("validation.html").render(
        head=report.headline(),
        params=params,
        digest=params.digest(),
        provenance={k: v for k, v in params.provenance.items() if k != PROVENANCE_KEY},
        heterogeneity=report.heterogeneity,
        tau_notes=[] if report.heterogeneity is None else tau_notes(report.heterogeneity),
        table=table,
        misses=[r for r in rows if not r["ok"]],
        rows=rows,
        figures=[{"title": report.results[t].spec.name, "file": f} for t, f in figures.items()],
        fractures=report.fractures,
        fracture_inside=sum(f.passes for f in report.fractures),
        fracture_covered=sum(f.covered for f in report.fractures),
        fracture_model=default_fracture_model(),
        fracture_fit=report.fracture_fit,
        fracture_left_out=shipped_leave_one_out(report),
        fracture_effects=[]
        if report.fracture_fit is None
        else [(e.trial, *e.percent) for e in report.fracture_fit.trial_effects],
        shipped_structure=SHIPPED_STRUCTURE,
        men=None if report.men is None else [_summary(report, c) for c in report.men.checks],
        men_head=None if report.men is None else report.men.headline(),
        men_figures=[{"title": t, "file": f} for t, f in (men_figures or {}).items()],
        groups=groups,
        holdout=holdout,
        disclaimer=DISCLAIMER,
    )
    path.write_text(page, encoding="utf-8")


def write_validation_report(report: ValidationReport, folder: str | Path) -> Path:
    """Write the table, figures and HTML summary into ``folder``; returns the HTML path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_table(report, folder / "validation_targets.csv")
    figures = {}
    for trial in report.results:
        name = f"validation_{trial}.png"
        plot_trial_targets(report, trial, folder / name)
        figures[trial] = name
    if report.heterogeneity is not None:
        write_effects_table(report.heterogeneity, folder / "validation_trial_effects.csv")
        plot_forest(report.heterogeneity, folder / "validation_trial_effects.png")
    write_fracture_table(report, folder / "validation_fractures.csv")
    plot_fractures(report, folder / "validation_fractures.png")
    men_figures = None
    if report.men is not None:
        write_men_table(report, folder / "validation_men.csv")
        men_figures = plot_men(report, folder)
    holdout = None if report.holdout is None else write_holdout(report, folder)
    page = folder / "validation.html"
    write_html(
        report,
        page,
        figures,
        "validation_targets.csv",
        men_figures,
        write_group_figures(report, folder),
        holdout,
    )
    return page


def write_group_figures(report: ValidationReport, folder: Path) -> dict[str, object]:
    """The bias table and figure, the after-stopping and femoral-neck figures (issue 14); what
    the HTML page needs to show them."""
    rows = bias_rows(report)
    write_bias_table(rows, folder / "validation_bias.csv")
    plot_bias(rows, folder / "validation_bias.png")
    return {
        "bias": rows,
        "bmd_targets": sum(r.targets for r in rows if r.grouping == "site"),
        "mae": mean_absolute_error_pp(report),
        "after_stopping": plot_after_stopping(report, folder / "validation_after_stopping.png"),
        "femoral_neck": plot_femoral_neck(report, folder / "validation_femoral_neck.png"),
        "fn_share": femoral_neck_share(report),
    }
